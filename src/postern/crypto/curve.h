// Curve25519 keys as Signal serialises them: a public key is 33 bytes, 0x05 || X25519 u
// (little-endian); a private key is the 32-byte clamped scalar. Key agreement is X25519
// (libsodium), refusing all-zero results from small-order peer keys.
#pragma once

#include <array>
#include <cstdint>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::crypto {

inline constexpr std::uint8_t kDjbKeyType = 0x05;
inline constexpr std::size_t kPublicKeySize = 33;  // serialized, with the type byte
inline constexpr std::size_t kKeySize = 32;

class PublicKey {
 public:
  PublicKey() { u_.fill(0); }
  explicit PublicKey(const std::array<std::uint8_t, 32>& u) : u_(u) {}

  // Exactly 33 bytes with type 0x05.
  static Result<PublicKey> deserialize(ByteView serialized);

  const std::array<std::uint8_t, 32>& raw() const { return u_; }
  std::array<std::uint8_t, kPublicKeySize> serialize() const;
  void serialize_to(std::uint8_t* out33) const;

  friend bool operator==(const PublicKey& a, const PublicKey& b) { return a.u_ == b.u_; }
  friend auto operator<=>(const PublicKey& a, const PublicKey& b) { return a.u_ <=> b.u_; }

 private:
  std::array<std::uint8_t, 32> u_;
};

class PrivateKey {
 public:
  PrivateKey() = default;
  // 32 bytes; clamped on the way in (harmless for X25519, required before Edwards arithmetic).
  static Result<PrivateKey> deserialize(ByteView bytes);
  static PrivateKey generate(Rng& rng);

  const SecretArray<32>& scalar() const { return k_; }
  PublicKey public_key() const;

 private:
  SecretArray<32> k_;
};

struct KeyPair {
  PublicKey public_key;
  PrivateKey private_key;
  static KeyPair generate(Rng& rng);
  static KeyPair from_private(PrivateKey priv);
};

// X25519(ours, theirs). Fails with weak_key when the result is all zero.
Result<SecretArray<32>> agreement(const PrivateKey& ours, const PublicKey& theirs);

}  // namespace postern::crypto
