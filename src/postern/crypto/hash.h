// SHA-256, SHA-512 and HMAC-SHA256 over libsodium (no allocation, no OpenSSL per-call fetches).
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>

#include "postern/util/bytes.h"

namespace postern::crypto {

using Sha256Digest = std::array<std::uint8_t, 32>;
using Sha512Digest = std::array<std::uint8_t, 64>;
using Hmac256Tag = std::array<std::uint8_t, 32>;

Sha256Digest sha256(ByteView data);
Sha512Digest sha512(ByteView data);

class Sha512 {
 public:
  Sha512();
  ~Sha512();
  Sha512(const Sha512&) = delete;
  Sha512& operator=(const Sha512&) = delete;
  Sha512& update(ByteView data);
  Sha512Digest finish();

 private:
  crypto_hash_sha512_state state_;
};

class HmacSha256 {
 public:
  explicit HmacSha256(ByteView key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  HmacSha256& update(ByteView data);
  HmacSha256& update(std::uint8_t byte) { return update(ByteView(&byte, 1)); }
  Hmac256Tag finish();

 private:
  crypto_auth_hmacsha256_state state_;
};

Hmac256Tag hmac_sha256(ByteView key, ByteView data);

}  // namespace postern::crypto
