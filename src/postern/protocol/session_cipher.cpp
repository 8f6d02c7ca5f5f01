#include "postern/protocol/session_cipher.h"

#include <algorithm>

#include "postern/crypto/aes_cbc.h"
#include "postern/crypto/secret.h"
#include "postern/protocol/detail/x3dh.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/session_record.h"

namespace postern::protocol {
namespace {

Result<std::optional<SessionRecord>> load_record(SessionStore& store, const ProtocolAddress& address) {
  POSTERN_TRY(std::optional<Bytes> bytes, store.load_session(address));
  if (!bytes) return std::optional<SessionRecord>{};
  const crypto::SecretBytes stored(std::move(*bytes));  // wiped once parsed
  POSTERN_TRY(SessionRecord record, SessionRecord::deserialize(stored.view()));
  return std::optional<SessionRecord>{std::move(record)};
}

// A DH ratchet step computed but not yet applied.
struct PendingRatchet {
  RootKey root_key;
  ChainKey receiver_chain_key;
  KeyPair sender_ratchet;
  ChainKey sender_chain_key;
};

// Decrypts with one state, committing into it only on success.
Result<Bytes> decrypt_with_state(SessionState& state, const SignalMessage& message, crypto::Rng& rng) {
  if (message.version() != state.version) return Errc::invalid_message;

  ReceiverChain* chain = state.find_receiver_chain(message.ratchet_key());
  std::optional<PendingRatchet> ratchet;
  const ChainKey* chain_key = nullptr;
  std::uint32_t chain_index = 0;
  if (chain != nullptr) {
    chain_key = &chain->key;
    chain_index = chain->index;
  } else {
    auto receiving = root_step(state.root_key, state.sender_ratchet.private_key, message.ratchet_key());
    if (!receiving) return Errc::invalid_message;
    KeyPair next = KeyPair::generate(rng);
    auto sending = root_step(receiving->root_key, next.private_key, message.ratchet_key());
    if (!sending) return Errc::invalid_message;
    ratchet = PendingRatchet{sending->root_key, receiving->chain_key, std::move(next), sending->chain_key};
    chain_key = &ratchet->receiver_chain_key;
  }

  static const std::vector<SkippedKey> kNoSkipped;
  POSTERN_TRY(MessageKeyLookup lookup,
              MessageKeyLookup::find(*chain_key, chain_index, chain ? chain->skipped : kNoSkipped,
                                     message.counter()));
  MessageKeys keys = derive_message_keys(lookup.seed());
  if (!message.verify_mac(state.remote_identity, state.local_identity, keys.mac_key.view())) {
    return Errc::invalid_mac;
  }
  auto plaintext = crypto::aes_cbc_decrypt(keys.cipher_key.view(), keys.iv.view(), message.ciphertext());
  if (!plaintext) return Errc::invalid_message;

  // Commit.
  if (ratchet) {
    ReceiverChain fresh;
    fresh.ratchet_key = message.ratchet_key();
    fresh.key = ratchet->receiver_chain_key;
    state.add_receiver_chain(std::move(fresh));
    chain = &state.receiver_chains.back();
    state.root_key = ratchet->root_key;
    state.previous_counter = state.sender_chain_index > 0 ? state.sender_chain_index - 1 : 0;
    state.sender_ratchet = std::move(ratchet->sender_ratchet);
    state.sender_chain_key = ratchet->sender_chain_key;
    state.sender_chain_index = 0;
  }
  std::move(lookup).commit(ChainCursor{chain->key, chain->index, chain->skipped});
  state.pending_pre_key.reset();
  return std::move(plaintext).value();
}

// Current state first, then archived ones; an archived state that decrypts becomes current.
Result<Bytes> decrypt_with_record(SessionRecord& record, const SignalMessage& message, crypto::Rng& rng) {
  if (!record.has_current()) return Errc::no_session;
  auto fallback_allowed = [](std::error_code e) {
    return e == Errc::invalid_message || e == Errc::invalid_mac;
  };
  auto r = decrypt_with_state(record.current(), message, rng);
  if (r) return r;
  if (!fallback_allowed(r.error())) return r.error();
  for (std::size_t i = 0; i < record.previous().size(); ++i) {
    auto p = decrypt_with_state(record.previous()[i], message, rng);
    if (p) {
      record.promote_archived(i);
      return p;
    }
    if (!fallback_allowed(p.error())) return p.error();
  }
  return Errc::invalid_message;
}

}  // namespace

Result<CiphertextMessage> SessionCipher::encrypt(ByteView plaintext) {
  POSTERN_TRY(std::optional<SessionRecord> record, load_record(stores_.sessions, remote_));
  if (!record || !record->has_current()) return Errc::no_session;
  SessionState& state = record->current();
  POSTERN_TRY(bool trusted,
              stores_.identity.is_trusted_identity(remote_, state.remote_identity, Direction::sending));
  if (!trusted) return Errc::untrusted_identity;
  if (state.sender_chain_index == UINT32_MAX) return Errc::invalid_message;  // counter would wrap

  ChainStep step = chain_step(state.sender_chain_key);
  MessageKeys keys = derive_message_keys(step.seed);
  POSTERN_TRY(Bytes body, crypto::aes_cbc_encrypt(keys.cipher_key.view(), keys.iv.view(), plaintext));
  SignalMessage message =
      SignalMessage::create(state.sender_ratchet.public_key, state.sender_chain_index, state.previous_counter,
                            body, keys.mac_key.view(), state.local_identity, state.remote_identity);

  CiphertextMessage out;
  if (state.pending_pre_key) {
    const PendingPreKey& p = *state.pending_pre_key;
    PreKeySignalMessage pre =
        PreKeySignalMessage::create(state.local_registration_id, p.pre_key_id, p.signed_pre_key_id,
                                    p.base_key, state.local_identity, std::move(message));
    out = CiphertextMessage{CiphertextType::prekey, std::move(pre).take_serialized()};
  } else {
    out = CiphertextMessage{CiphertextType::signal, std::move(message).take_serialized()};
  }
  state.sender_chain_key = step.next;
  ++state.sender_chain_index;
  POSTERN_CHECK(stores_.sessions.store_session(remote_, crypto::SecretBytes(record->serialize()).view()));
  return out;
}

Result<Bytes> SessionCipher::decrypt(CiphertextType type, ByteView serialized) {
  switch (type) {
    case CiphertextType::signal: {
      POSTERN_TRY(SignalMessage m, SignalMessage::parse(serialized));
      return decrypt(m);
    }
    case CiphertextType::prekey: {
      POSTERN_TRY(PreKeySignalMessage m, PreKeySignalMessage::parse(serialized));
      return decrypt(m);
    }
    default:
      return Errc::invalid_message;
  }
}

Result<Bytes> SessionCipher::decrypt(const SignalMessage& message) {
  POSTERN_TRY(std::optional<SessionRecord> record, load_record(stores_.sessions, remote_));
  if (!record) return Errc::no_session;
  POSTERN_TRY(Bytes plaintext, decrypt_with_record(*record, message, rng_));
  POSTERN_TRY(bool trusted, stores_.identity.is_trusted_identity(remote_, record->current().remote_identity,
                                                                 Direction::receiving));
  if (!trusted) return Errc::untrusted_identity;
  POSTERN_CHECK(stores_.sessions.store_session(remote_, crypto::SecretBytes(record->serialize()).view()));
  return plaintext;
}

Result<Bytes> SessionCipher::decrypt(const PreKeySignalMessage& message) {
  POSTERN_TRY(bool trusted,
              stores_.identity.is_trusted_identity(remote_, message.identity_key(), Direction::receiving));
  if (!trusted) return Errc::untrusted_identity;
  POSTERN_TRY(std::optional<SessionRecord> loaded, load_record(stores_.sessions, remote_));
  SessionRecord record = loaded ? std::move(*loaded) : SessionRecord{};

  // A repeated PreKeySignalMessage of a session we already built skips X3DH (libsignal does the
  // same) and is then handled by the ratchet, which rejects a true duplicate.
  std::optional<std::uint32_t> used_pre_key;
  if (!record.has_state_with_base_key(message.base_key())) {
    POSTERN_TRY(std::optional<Bytes> spk_bytes,
                stores_.signed_pre_keys.load_signed_pre_key(message.signed_pre_key_id()));
    if (!spk_bytes) return Errc::invalid_key_id;
    POSTERN_TRY(SignedPreKeyRecord signed_pre_key, SignedPreKeyRecord::deserialize(*spk_bytes));
    std::optional<KeyPair> one_time;
    if (message.pre_key_id()) {
      POSTERN_TRY(std::optional<Bytes> pk_bytes, stores_.pre_keys.load_pre_key(*message.pre_key_id()));
      if (!pk_bytes) return Errc::invalid_key_id;
      POSTERN_TRY(PreKeyRecord pre_key, PreKeyRecord::deserialize(*pk_bytes));
      one_time = std::move(pre_key.key_pair);
    }
    POSTERN_TRY(IdentityKeyPair ours, stores_.identity.identity_key_pair());
    POSTERN_TRY(std::uint32_t local_registration_id, stores_.identity.local_registration_id());
    POSTERN_TRY(SessionState state, detail::initialize_bob(ours, signed_pre_key.key_pair, one_time,
                                                           message.identity_key(), message.base_key()));
    state.local_registration_id = local_registration_id;
    state.remote_registration_id = message.registration_id();
    state.alice_base_key = message.base_key();
    record.promote_state(std::move(state));
    if (message.pre_key_id() && *message.pre_key_id() != kLastResortPreKeyId)
      used_pre_key = message.pre_key_id();
  }

  POSTERN_TRY(Bytes plaintext, decrypt_with_record(record, message.message(), rng_));
  POSTERN_CHECK(stores_.sessions.store_session(remote_, crypto::SecretBytes(record.serialize()).view()));
  POSTERN_TRY(bool replaced, stores_.identity.save_identity(remote_, message.identity_key()));
  (void)replaced;
  if (used_pre_key) POSTERN_CHECK(stores_.pre_keys.remove_pre_key(*used_pre_key));
  return plaintext;
}

Result<std::optional<std::uint32_t>> SessionCipher::remote_registration_id() {
  POSTERN_TRY(std::optional<SessionRecord> record, load_record(stores_.sessions, remote_));
  if (!record || !record->has_current()) return std::optional<std::uint32_t>{};
  return std::optional<std::uint32_t>{record->current().remote_registration_id};
}

}  // namespace postern::protocol
