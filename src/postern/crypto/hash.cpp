#include "postern/crypto/hash.h"

#include "postern/crypto/secret.h"

namespace postern::crypto {

Sha256Digest sha256(ByteView data) {
  Sha256Digest out;
  crypto_hash_sha256(out.data(), data.data(), data.size());
  return out;
}

Sha512Digest sha512(ByteView data) {
  Sha512Digest out;
  crypto_hash_sha512(out.data(), data.data(), data.size());
  return out;
}

Sha512::Sha512() { crypto_hash_sha512_init(&state_); }
Sha512::~Sha512() { wipe(&state_, sizeof state_); }
Sha512& Sha512::update(ByteView data) {
  crypto_hash_sha512_update(&state_, data.data(), data.size());
  return *this;
}
Sha512Digest Sha512::finish() {
  Sha512Digest out;
  crypto_hash_sha512_final(&state_, out.data());
  return out;
}

HmacSha256::HmacSha256(ByteView key) { crypto_auth_hmacsha256_init(&state_, key.data(), key.size()); }
HmacSha256::~HmacSha256() { wipe(&state_, sizeof state_); }
HmacSha256& HmacSha256::update(ByteView data) {
  crypto_auth_hmacsha256_update(&state_, data.data(), data.size());
  return *this;
}
Hmac256Tag HmacSha256::finish() {
  Hmac256Tag out;
  crypto_auth_hmacsha256_final(&state_, out.data());
  return out;
}

Hmac256Tag hmac_sha256(ByteView key, ByteView data) {
  HmacSha256 mac(key);
  mac.update(data);
  return mac.finish();
}

}  // namespace postern::crypto
