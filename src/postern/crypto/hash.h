// SHA-256, SHA-512 and HMAC-SHA256 over OpenSSL 3 (which uses the CPU's SHA extensions).
// OpenSSL 3 is slow when algorithms are looked up by name on every call, so the algorithm
// objects are fetched once and MAC contexts are pooled per thread; the Signal ratchet computes
// several HMACs under one key, which reset() allows without repeating the key schedule.
#pragma once

#include <array>
#include <cstdint>

#include "postern/util/bytes.h"

struct evp_mac_ctx_st;
struct evp_md_ctx_st;

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
  // Finishes and starts over (the object can hash another message).
  Sha512Digest finish();

 private:
  evp_md_ctx_st* ctx_;
};

// HMAC-SHA256 under one key. finish() returns the tag and makes the object ready for another
// message under the same key.
class HmacSha256 {
 public:
  explicit HmacSha256(ByteView key);
  // HMAC under the empty key (equivalently 32 zero bytes, HKDF's default salt), from a per-thread
  // context keyed once: skips the key schedule on every use.
  static HmacSha256 zero_key();
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  HmacSha256& update(ByteView data);
  HmacSha256& update(std::uint8_t byte) { return update(ByteView(&byte, 1)); }
  Hmac256Tag finish();

 private:
  struct ZeroKey {};
  explicit HmacSha256(ZeroKey);

  evp_mac_ctx_st* ctx_;
  bool fresh_ = true;
  bool* borrowed_ = nullptr;  // set while this object uses the per-thread zero-key context
};

Hmac256Tag hmac_sha256(ByteView key, ByteView data);

}  // namespace postern::crypto
