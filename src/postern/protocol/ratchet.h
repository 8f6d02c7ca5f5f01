// Key derivation of the Double Ratchet as Signal v3 defines it:
//   root step:   HKDF(IKM = DH, salt = RK, info = "WhisperRatchet", 64) -> RK', CK
//   chain step:  seed = HMAC(CK, 0x01), CK' = HMAC(CK, 0x02)
//   message key: HKDF(seed, salt = 0^32, info = "WhisperMessageKeys", 80) -> cipher[32] mac[32] iv[16]
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "postern/crypto/curve.h"
#include "postern/crypto/secret.h"
#include "postern/util/result.h"

namespace postern::protocol {

using ChainKey = crypto::SecretArray<32>;
using RootKey = crypto::SecretArray<32>;
using MessageKeySeed = crypto::SecretArray<32>;

struct MessageKeys {
  crypto::SecretArray<32> cipher_key;
  crypto::SecretArray<32> mac_key;
  crypto::SecretArray<16> iv;
};

// One step of a symmetric chain: seed = HMAC(CK, 0x01), next = HMAC(CK, 0x02), under one keyed HMAC.
struct ChainStep {
  MessageKeySeed seed;
  ChainKey next;
};
ChainStep chain_step(const ChainKey& chain_key);
MessageKeys derive_message_keys(const MessageKeySeed& seed);

inline constexpr std::size_t kMaxSkippedMessageKeys = 2000;  // kept per receiving chain
inline constexpr std::uint32_t kMaxForwardJump = 2000;       // skipped keys derived for one message

struct SkippedKey {
  std::uint32_t index = 0;
  MessageKeySeed seed;
};

// The receiving side of one symmetric chain (1:1 receiver chain or a group sender key): where it
// stands and the keys of messages it skipped over.
struct ChainCursor {
  ChainKey& key;
  std::uint32_t& index;              // index of the next key the chain will derive
  std::vector<SkippedKey>& skipped;  // oldest first, at most kMaxSkippedMessageKeys
};

// The message key for `index`, found or derived without changing the chain; commit() applies it
// once the message has been authenticated. Errors: duplicate_message (an index already used),
// invalid_message (more than kMaxForwardJump keys ahead).
class MessageKeyLookup {
 public:
  static Result<MessageKeyLookup> find(const ChainKey& key, std::uint32_t chain_index,
                                       const std::vector<SkippedKey>& skipped, std::uint32_t index);
  const MessageKeySeed& seed() const { return seed_; }
  void commit(ChainCursor chain) &&;

 private:
  MessageKeySeed seed_;
  std::uint32_t index_ = 0;
  std::optional<std::size_t> skipped_slot_;
  std::vector<SkippedKey> new_skipped_;
  ChainKey next_key_;
};

struct RootStep {
  RootKey root_key;
  ChainKey chain_key;
};
Result<RootStep> root_step(const RootKey& root_key, const crypto::PrivateKey& ours,
                           const crypto::PublicKey& theirs);

}  // namespace postern::protocol
