// postern-demo: the end-to-end encryption core at work, in one process. Alice and Bob each own
// their keys and stores; everything between them is bytes, as it would be through a server.
// (The server issue replaces this as the README's main command.)
#include <cstdio>
#include <string>

#include "postern/protocol/fingerprint.h"
#include "postern/protocol/group_cipher.h"
#include "postern/protocol/in_memory_store.h"
#include "postern/protocol/session_builder.h"
#include "postern/protocol/session_cipher.h"

namespace {

using namespace postern;
using namespace postern::protocol;

struct Person {
  std::string name;
  InMemoryProtocolStore store;
  Person(std::string n, crypto::Rng& rng)
      : name(std::move(n)), store(IdentityKeyPair::generate(rng), generate_registration_id(rng)) {}
  ProtocolAddress address() const { return {name, 1}; }
  PublicKey identity() { return store.identity_key_pair()->public_key; }
};

std::string short_hex(ByteView b) {
  std::string h = to_hex(b);
  return h.size() > 48 ? h.substr(0, 48) + "... (" + std::to_string(b.size()) + " bytes)" : h;
}

int fail(const char* what, std::error_code e) {
  std::fprintf(stderr, "demo failed: %s: %s\n", what, e.message().c_str());
  return 1;
}

const char* type_name(CiphertextType t) {
  return t == CiphertextType::prekey ? "PreKeySignalMessage" : "SignalMessage";
}

}  // namespace

int main() {
  crypto::SystemRng rng;
  Person alice("alice", rng), bob("bob", rng);
  std::printf("Alice and Bob create identity keys.\n  Alice: %s\n  Bob:   %s\n",
              to_hex(alice.identity().serialize()).c_str(), to_hex(bob.identity().serialize()).c_str());

  // Bob publishes a bundle (through the server, in the real system).
  auto bob_id = *bob.store.identity_key_pair();
  auto spk = SignedPreKeyRecord::generate(1, bob_id, 0, rng);
  auto opk = PreKeyRecord::generate(100, rng);
  (void)bob.store.store_signed_pre_key(1, spk.serialize());
  (void)bob.store.store_pre_key(100, opk.serialize());
  PreKeyBundle bundle{*bob.store.local_registration_id(),
                      1,
                      100,
                      opk.key_pair.public_key,
                      1,
                      spk.key_pair.public_key,
                      spk.signature,
                      bob_id.public_key};
  std::printf(
      "\nBob publishes a prekey bundle: signed prekey 1 (signature verifies: %s), one-time prekey 100.\n",
      bundle.signature_valid() ? "yes" : "no");

  if (auto s = process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng); !s) {
    return fail("Alice processes Bob's bundle", s.error());
  }
  std::printf("Alice runs X3DH with the bundle and opens a session.\n\n");

  SessionCipher alice_to_bob(alice.store.session_stores(), bob.address(), rng);
  SessionCipher bob_to_alice(bob.store.session_stores(), alice.address(), rng);
  const char* lines[][2] = {{"alice", "Hi Bob, can you read this?"},
                            {"bob", "Yes! Only we can read it."},
                            {"alice", "Sending the pictures later."},
                            {"alice", "They are large."},
                            {"bob", "Fine, they will wait for me on the server."}};
  for (auto& [who, text] : lines) {
    const bool from_alice = std::string(who) == "alice";
    SessionCipher& tx = from_alice ? alice_to_bob : bob_to_alice;
    SessionCipher& rx = from_alice ? bob_to_alice : alice_to_bob;
    auto c = tx.encrypt(as_bytes(text));
    if (!c) return fail("encrypt", c.error());
    std::printf("%s encrypts \"%s\"\n  -> %s %s\n", who, text, type_name(c->type),
                short_hex(c->serialized).c_str());
    auto p = rx.decrypt(c->type, c->serialized);
    if (!p) return fail("decrypt", p.error());
    std::printf("  %s decrypts: \"%s\"\n", from_alice ? "bob" : "alice", std::string(as_chars(*p)).c_str());
  }

  // A tampered message is refused and the session keeps working.
  auto c = alice_to_bob.encrypt(as_bytes("this one gets tampered with"));
  if (!c) return fail("encrypt", c.error());
  Bytes bad = c->serialized;
  bad[bad.size() / 2] ^= 0x01;
  auto refused = bob_to_alice.decrypt(c->type, bad);
  std::printf("\nA byte of a message is flipped in transit: Bob's decrypt says \"%s\".\n",
              refused ? "accepted (BUG)" : refused.error().message().c_str());
  auto replay = bob_to_alice.decrypt(c->type, c->serialized);
  std::printf("The untouched message still decrypts: \"%s\".\n",
              replay ? std::string(as_chars(*replay)).c_str() : replay.error().message().c_str());
  auto again = bob_to_alice.decrypt(c->type, c->serialized);
  std::printf("Delivered twice, it is refused: \"%s\".\n",
              again ? "accepted (BUG)" : again.error().message().c_str());

  // Group message with Sender Keys: Alice's key travels to Bob inside their 1:1 session.
  SenderKeyName alice_in_group{"family", alice.address()};
  auto skdm = create_sender_key_distribution(alice.store, alice_in_group, rng);
  if (!skdm) return fail("sender key", skdm.error());
  auto wrapped = alice_to_bob.encrypt(skdm->serialized());
  auto unwrapped = bob_to_alice.decrypt(wrapped->type, wrapped->serialized);
  auto parsed = SenderKeyDistributionMessage::parse(*unwrapped);
  if (auto s = process_sender_key_distribution(bob.store, alice_in_group, *parsed); !s) {
    return fail("process sender key", s.error());
  }
  GroupCipher alice_group(alice.store, alice_in_group, rng), bob_view(bob.store, alice_in_group, rng);
  auto g = alice_group.encrypt(as_bytes("Happy birthday, everyone!"));
  auto gp = bob_view.decrypt(*g);
  std::printf("\nAlice sends to group \"family\" with her sender key: %s\n  Bob decrypts: \"%s\"\n",
              short_hex(*g).c_str(), std::string(as_chars(*gp)).c_str());

  // Safety numbers: both sides compute the same 60 digits.
  auto fa = create_fingerprint(kFingerprintIterations, 1, "alice", alice.identity(), "bob", bob.identity());
  auto fb = create_fingerprint(kFingerprintIterations, 1, "bob", bob.identity(), "alice", alice.identity());
  auto match = scannable_fingerprints_match(fa->scannable, fb->scannable);
  std::string digits = fa->displayable;
  std::printf("\nSafety number on Alice's screen: ");
  for (std::size_t i = 0; i < digits.size(); i += 5) std::printf("%s ", digits.substr(i, 5).c_str());
  std::printf("\nSame on Bob's screen: %s; QR codes match: %s\n",
              fa->displayable == fb->displayable ? "yes" : "NO", match && *match ? "yes" : "NO");
  return fa->displayable == fb->displayable && match && *match ? 0 : 1;
}
