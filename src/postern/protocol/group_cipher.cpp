#include "postern/protocol/group_cipher.h"

#include <algorithm>

#include "postern/crypto/aes_cbc.h"
#include "postern/crypto/hkdf.h"
#include "postern/crypto/secret.h"
#include "postern/crypto/xeddsa.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/sender_key_record.h"

namespace postern::protocol {
namespace {

constexpr std::string_view kGroupInfo = "WhisperGroup";

struct GroupKeys {
  crypto::SecretArray<16> iv;
  crypto::SecretArray<32> cipher_key;
};

// HKDF(seed, 0^32, "WhisperGroup", 48) -> iv [0:16], key [16:48] (IV first, unlike 1:1 keys).
GroupKeys derive_group_keys(const MessageKeySeed& seed) {
  crypto::SecretArray<48> okm;
  (void)crypto::hkdf_sha256(seed.view(), {}, as_bytes(kGroupInfo), okm.span());
  GroupKeys k;
  std::copy_n(okm.data(), 16, k.iv.data());
  std::copy_n(okm.data() + 16, 32, k.cipher_key.data());
  return k;
}

Result<std::optional<SenderKeyRecord>> load(SenderKeyStore& store, const SenderKeyName& name) {
  POSTERN_TRY(std::optional<Bytes> bytes, store.load_sender_key(name));
  if (!bytes) return std::optional<SenderKeyRecord>{};
  const crypto::SecretBytes stored(std::move(*bytes));  // wiped once parsed
  POSTERN_TRY(SenderKeyRecord record, SenderKeyRecord::deserialize(stored.view()));
  return std::optional<SenderKeyRecord>{std::move(record)};
}

}  // namespace

Result<SenderKeyDistributionMessage> create_sender_key_distribution(SenderKeyStore& store,
                                                                    const SenderKeyName& name,
                                                                    crypto::Rng& rng) {
  POSTERN_TRY(std::optional<SenderKeyRecord> loaded, load(store, name));
  SenderKeyRecord record = loaded ? std::move(*loaded) : SenderKeyRecord{};
  if (record.empty() || !record.newest().signing_private) {
    SenderKeyState s;
    s.key_id = rng.next_u32() & 0x7fffffffu;
    rng.fill(s.chain_key.span());
    KeyPair signing = KeyPair::generate(rng);
    crypto::XeddsaSigner signer(signing.private_key);
    s.signing_public = signing.public_key;
    s.signing_edwards_y = signer.edwards_public();
    s.signing_negated = signer.negated();
    s.signing_private = std::move(signing.private_key);
    record = SenderKeyRecord{};
    record.add_state(std::move(s));
    POSTERN_CHECK(store.store_sender_key(name, crypto::SecretBytes(record.serialize()).view()));
  }
  const SenderKeyState& s = record.newest();
  return SenderKeyDistributionMessage::create(s.key_id, s.iteration, s.chain_key.view(), s.signing_public);
}

Status rotate_sender_key(SenderKeyStore& store, const SenderKeyName& name) {
  return store.store_sender_key(name, SenderKeyRecord{}.serialize());
}

Status process_sender_key_distribution(SenderKeyStore& store, const SenderKeyName& name,
                                       const SenderKeyDistributionMessage& message) {
  POSTERN_TRY(std::optional<SenderKeyRecord> loaded, load(store, name));
  SenderKeyRecord record = loaded ? std::move(*loaded) : SenderKeyRecord{};
  if (SenderKeyState* existing = record.find(message.key_id());
      existing != nullptr && existing->signing_public == message.signing_key()) {
    return {};
  }
  POSTERN_TRY(auto edwards_y, crypto::montgomery_to_edwards_y(message.signing_key()));
  SenderKeyState s;
  s.key_id = message.key_id();
  s.iteration = message.iteration();
  std::copy_n(message.chain_key().begin(), 32, s.chain_key.data());
  s.signing_public = message.signing_key();
  s.signing_edwards_y = edwards_y;
  record.add_state(std::move(s));
  return store.store_sender_key(name, crypto::SecretBytes(record.serialize()).view());
}

Result<Bytes> GroupCipher::encrypt(ByteView plaintext) {
  POSTERN_TRY(std::optional<SenderKeyRecord> record, load(store_, name_));
  if (!record || record->empty()) return Errc::no_session;
  SenderKeyState& s = record->newest();
  if (!s.signing_private) return Errc::no_session;
  if (s.iteration == UINT32_MAX) return Errc::invalid_message;  // iteration would wrap

  ChainStep step = chain_step(s.chain_key);
  GroupKeys keys = derive_group_keys(step.seed);
  POSTERN_TRY(Bytes body, crypto::aes_cbc_encrypt(keys.cipher_key.view(), keys.iv.view(), plaintext));
  crypto::XeddsaSigner signer(*s.signing_private, s.signing_edwards_y, s.signing_negated);
  SenderKeyMessage message = SenderKeyMessage::create(s.key_id, s.iteration, body, signer, rng_);
  s.chain_key = step.next;
  ++s.iteration;
  POSTERN_CHECK(store_.store_sender_key(name_, crypto::SecretBytes(record->serialize()).view()));
  return message.serialized();
}

Result<Bytes> GroupCipher::decrypt(ByteView serialized) {
  POSTERN_TRY(SenderKeyMessage message, SenderKeyMessage::parse(serialized));
  POSTERN_TRY(std::optional<SenderKeyRecord> record, load(store_, name_));
  if (!record) return Errc::no_session;
  SenderKeyState* s = record->find(message.key_id());
  if (s == nullptr) return Errc::no_session;
  if (!message.verify_signature(s->signing_edwards_y)) return Errc::invalid_message;

  POSTERN_TRY(MessageKeyLookup lookup,
              MessageKeyLookup::find(s->chain_key, s->iteration, s->skipped, message.iteration()));
  GroupKeys keys = derive_group_keys(lookup.seed());
  auto plaintext = crypto::aes_cbc_decrypt(keys.cipher_key.view(), keys.iv.view(), message.ciphertext());
  if (!plaintext) return Errc::invalid_message;

  std::move(lookup).commit(ChainCursor{s->chain_key, s->iteration, s->skipped});
  POSTERN_CHECK(store_.store_sender_key(name_, crypto::SecretBytes(record->serialize()).view()));
  return std::move(plaintext).value();
}

}  // namespace postern::protocol
