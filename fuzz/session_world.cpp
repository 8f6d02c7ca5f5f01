#include "session_world.h"

#include <string_view>

#include "postern/protocol/group_cipher.h"
#include "postern/protocol/session_builder.h"

namespace postern::fuzz {

using protocol::PreKeyBundle;
using protocol::PreKeyRecord;
using protocol::SignedPreKeyRecord;

FuzzParty::FuzzParty(std::string n, crypto::Rng& rng)
    : name(std::move(n)),
      store(protocol::IdentityKeyPair::generate(rng), protocol::generate_registration_id(rng)) {}

Bytes FuzzParty::session_with(const FuzzParty& other) {
  auto b = store.load_session(other.address());
  if (!b) fail("in-memory load_session failed");
  return b->has_value() ? **b : Bytes{};
}

Bytes FuzzParty::sender_key(const protocol::SenderKeyName& key_name) {
  auto b = store.load_sender_key(key_name);
  if (!b) fail("in-memory load_sender_key failed");
  return b->has_value() ? **b : Bytes{};
}

namespace {

// Alice runs X3DH with Bob's signed prekey and the given one-time prekey of his.
void alice_starts_session(SessionWorld& w, const SignedPreKeyRecord& spk, const PreKeyRecord& one_time) {
  auto identity = w.bob.store.identity_key_pair();
  if (!identity) fail("identity_key_pair");
  PreKeyBundle bundle;
  bundle.registration_id = *w.bob.store.local_registration_id();
  bundle.device_id = w.bob.device;
  bundle.pre_key_id = one_time.id;
  bundle.pre_key = one_time.key_pair.public_key;
  bundle.signed_pre_key_id = spk.id;
  bundle.signed_pre_key = spk.key_pair.public_key;
  bundle.signed_pre_key_signature = spk.signature;
  bundle.identity_key = identity->public_key;
  if (!protocol::process_pre_key_bundle(w.alice.store.session_stores(), w.bob.address(), bundle, w.rng)) {
    fail("Alice could not process Bob's bundle");
  }
}

// Alice's next message to Bob, which must be a PreKeySignalMessage; Bob decrypts it if `deliver`.
Bytes alice_prekey_message(SessionWorld& w, std::string_view text, bool deliver) {
  auto m = w.alice.cipher_to(w.bob, w.rng).encrypt(as_bytes(text));
  if (!m || m->type != protocol::CiphertextType::prekey) fail("expected a PreKeySignalMessage from Alice");
  if (deliver) {
    auto got = w.bob.cipher_to(w.alice, w.rng).decrypt(m->type, m->serialized);
    if (!got || as_chars(*got) != text) fail("Bob could not decrypt Alice's PreKeySignalMessage");
  }
  return m->serialized;
}

}  // namespace

SessionWorld::SessionWorld() {
  // Bob's prekeys: one signed prekey, two one-time prekeys Alice will use, one spare.
  auto identity = bob.store.identity_key_pair();
  if (!identity) fail("identity_key_pair");
  auto spk = SignedPreKeyRecord::generate(kBobSignedPreKeyId, *identity, 0, rng);
  auto first = PreKeyRecord::generate(kBobFirstPreKeyId, rng);
  auto used = PreKeyRecord::generate(kBobUsedPreKeyId, rng);
  auto spare = PreKeyRecord::generate(kBobSparePreKeyId, rng);
  for (const PreKeyRecord* pk : {&first, &used, &spare}) {
    if (!bob.store.store_pre_key(pk->id, pk->serialize())) fail("storing Bob's prekeys");
  }
  if (!bob.store.store_signed_pre_key(spk.id, spk.serialize())) fail("storing Bob's signed prekey");

  // A first session, which the second one will archive; one of its messages is kept back.
  alice_starts_session(*this, spk, first);
  (void)alice_prekey_message(*this, "first session", true);
  const Bytes archived = alice_prekey_message(*this, "first session, late", false);

  // The current session: Alice's first message, Bob's answer.
  alice_starts_session(*this, spk, used);
  const Bytes hello = alice_prekey_message(*this, "hello Bob", true);
  const std::string reply_text = "hello Alice";
  auto reply = bob.cipher_to(alice, rng).encrypt(as_bytes(reply_text));
  if (!reply || reply->type != protocol::CiphertextType::signal) fail("Bob's reply");
  auto got_reply = alice.cipher_to(bob, rng).decrypt(reply->type, reply->serialized);
  if (!got_reply || as_chars(*got_reply) != reply_text) fail("Alice could not decrypt Bob's reply");

  // Alice's sender key, processed by Bob, and one group message.
  auto skdm = protocol::create_sender_key_distribution(alice.store, group, rng);
  if (!skdm) fail("create_sender_key_distribution");
  if (!protocol::process_sender_key_distribution(bob.store, group, *skdm))
    fail("process_sender_key_distribution");
  const std::string group_text = "hello group";
  auto g = protocol::GroupCipher(alice.store, group, rng).encrypt(as_bytes(group_text));
  if (!g) fail("group encrypt");
  auto got_group = protocol::GroupCipher(bob.store, group, rng).decrypt(*g);
  if (!got_group || as_chars(*got_group) != group_text) fail("Bob could not decrypt the group message");

  transcript = WorldTranscript{archived, hello, reply->serialized, skdm->serialized(), *g};
  snapshot();
}

void SessionWorld::snapshot() {
  saved_.alice_session = alice.session_with(bob);
  saved_.bob_session = bob.session_with(alice);
  saved_.alice_sender_key = alice.sender_key(group);
  saved_.bob_sender_key = bob.sender_key(group);
  auto spare = bob.store.load_pre_key(kBobSparePreKeyId);
  if (!spare || !spare->has_value()) fail("Bob's spare prekey is missing");
  saved_.bob_spare_pre_key = **spare;
}

void SessionWorld::restore() {
  if (!alice.store.store_session(bob.address(), saved_.alice_session) ||
      !bob.store.store_session(alice.address(), saved_.bob_session) ||
      !alice.store.store_sender_key(group, saved_.alice_sender_key) ||
      !bob.store.store_sender_key(group, saved_.bob_sender_key) ||
      !bob.store.store_pre_key(kBobSparePreKeyId, saved_.bob_spare_pre_key)) {
    fail("restoring the world's records");
  }
}

}  // namespace postern::fuzz
