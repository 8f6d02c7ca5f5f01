#include "postern/crypto/curve.h"

#include <sodium.h>

#include <algorithm>

#include "postern/crypto/errors.h"

namespace postern::crypto {
namespace {

void clamp(std::uint8_t* k) {
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
}

}  // namespace

Result<PublicKey> PublicKey::deserialize(ByteView serialized) {
  if (serialized.size() != kPublicKeySize) return Errc::bad_key_length;
  if (serialized[0] != kDjbKeyType) return Errc::bad_key_type;
  std::array<std::uint8_t, 32> u;
  std::copy_n(serialized.begin() + 1, 32, u.begin());
  return PublicKey(u);
}

std::array<std::uint8_t, kPublicKeySize> PublicKey::serialize() const {
  std::array<std::uint8_t, kPublicKeySize> out;
  serialize_to(out.data());
  return out;
}

void PublicKey::serialize_to(std::uint8_t* out33) const {
  out33[0] = kDjbKeyType;
  std::copy(u_.begin(), u_.end(), out33 + 1);
}

Result<PrivateKey> PrivateKey::deserialize(ByteView bytes) {
  if (bytes.size() != kKeySize) return Errc::bad_key_length;
  PrivateKey k;
  std::copy(bytes.begin(), bytes.end(), k.k_.data());
  clamp(k.k_.data());
  return k;
}

PrivateKey PrivateKey::generate(Rng& rng) {
  PrivateKey k;
  rng.fill(k.k_.span());
  clamp(k.k_.data());
  return k;
}

PublicKey PrivateKey::public_key() const {
  ensure_sodium();
  std::array<std::uint8_t, 32> u;
  crypto_scalarmult_base(u.data(), k_.data());
  return PublicKey(u);
}

KeyPair KeyPair::generate(Rng& rng) {
  return from_private(PrivateKey::generate(rng));
}

KeyPair KeyPair::from_private(PrivateKey priv) {
  KeyPair kp;
  kp.public_key = priv.public_key();
  kp.private_key = std::move(priv);
  return kp;
}

Result<SecretArray<32>> agreement(const PrivateKey& ours, const PublicKey& theirs) {
  ensure_sodium();
  SecretArray<32> shared;
  if (crypto_scalarmult(shared.data(), ours.scalar().data(), theirs.raw().data()) != 0) {
    return Errc::weak_key;
  }
  return shared;
}

}  // namespace postern::crypto
