// Signatures with Curve25519 (X25519) keys, as libsignal deploys them.
//
// Signing follows the XEdDSA specification: the Edwards public key A is forced to sign bit 0
// (the scalar negated when needed), r = SHA-512(0xFE || 0xFF*31 || a || M || Z) mod L with
// 64 fresh random bytes Z, and the signature is R || S with the top bit of S clear.
//
// Verification follows libsignal (C, Rust, JS): the Edwards sign bit of A is taken from the
// top bit of signature byte 63, so signatures made by libsignal (which stores A's real sign bit
// there) verify, and so do spec signatures (bit 0). A strict spec verifier would reject about
// half of libsignal's signatures. The Edwards equation itself is checked by libsodium's Ed25519
// verifier, which also rejects non-canonical S and small-order R or A.
#pragma once

#include <array>
#include <cstdint>

#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/util/bytes.h"

namespace postern::crypto {

using Signature = std::array<std::uint8_t, 64>;
inline constexpr std::size_t kSignatureSize = 64;

Signature xeddsa_sign(const PrivateKey& key, ByteView message, Rng& rng);

// Precomputed signing state for a key that signs many messages (a group's sender key): saves
// the fixed-base multiplication that derives A on every signature.
class XeddsaSigner {
 public:
  explicit XeddsaSigner(const PrivateKey& key);
  // From a previously computed Edwards public key A (sign bit 0) and whether the scalar had to be
  // negated: no curve multiplication at all.
  XeddsaSigner(const PrivateKey& key, const std::array<std::uint8_t, 32>& edwards_public, bool negated);
  Signature sign(ByteView message, Rng& rng) const;

  const std::array<std::uint8_t, 32>& edwards_public() const { return A_; }
  bool negated() const { return negated_; }

 private:
  SecretArray<32> a_;  // the scalar, negated if needed so that A has sign bit 0
  std::array<std::uint8_t, 32> A_;
  bool negated_ = false;
};

// False for a bad signature, a wrong-length signature, or a key with no Edwards form.
bool xeddsa_verify(const PublicKey& key, ByteView message, ByteView signature);

// The Edwards y coordinate (with sign bit 0) of a Montgomery u, y = (u - 1) / (u + 1);
// fails for u = -1. Exposed so that a verifier of many signatures can cache it.
Result<std::array<std::uint8_t, 32>> montgomery_to_edwards_y(const PublicKey& key);

// Verification with a cached Edwards y from montgomery_to_edwards_y.
bool xeddsa_verify_with_edwards(const std::array<std::uint8_t, 32>& edwards_y, ByteView message,
                                ByteView signature);

}  // namespace postern::crypto
