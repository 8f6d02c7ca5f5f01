// Long-term and medium-term keys of a party: identity key pair, registration id, signed prekeys
// and one-time prekeys, and the bundle a server hands to whoever starts a session with us.
#pragma once

#include <cstdint>
#include <optional>

#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/crypto/xeddsa.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol {

using crypto::KeyPair;
using crypto::PrivateKey;
using crypto::PublicKey;
using crypto::Signature;

struct IdentityKeyPair {
  PublicKey public_key;
  PrivateKey private_key;
  static IdentityKeyPair generate(crypto::Rng& rng);
};

// 1..16380, as libsignal-protocol-c (14 bits, never 0).
std::uint32_t generate_registration_id(crypto::Rng& rng);

// The id libsignal treats as a "last resort" one-time prekey: never deleted after use.
inline constexpr std::uint32_t kLastResortPreKeyId = 0xFFFFFF;

struct PreKeyRecord {
  std::uint32_t id = 0;
  KeyPair key_pair;

  static PreKeyRecord generate(std::uint32_t id, crypto::Rng& rng);
  Bytes serialize() const;
  static Result<PreKeyRecord> deserialize(ByteView bytes);
};

struct SignedPreKeyRecord {
  std::uint32_t id = 0;
  KeyPair key_pair;
  Signature signature{};
  std::int64_t timestamp_ms = 0;

  // Signs the 33-byte serialized public key with the identity key.
  static SignedPreKeyRecord generate(std::uint32_t id, const IdentityKeyPair& identity, std::int64_t now_ms,
                                     crypto::Rng& rng);
  Bytes serialize() const;
  static Result<SignedPreKeyRecord> deserialize(ByteView bytes);
};

struct PreKeyBundle {
  std::uint32_t registration_id = 0;
  std::uint32_t device_id = 0;
  std::optional<std::uint32_t> pre_key_id;
  std::optional<PublicKey> pre_key;
  std::uint32_t signed_pre_key_id = 0;
  PublicKey signed_pre_key;
  Signature signed_pre_key_signature{};
  PublicKey identity_key;

  // True when the signed prekey's signature verifies under the identity key.
  bool signature_valid() const;
};

}  // namespace postern::protocol
