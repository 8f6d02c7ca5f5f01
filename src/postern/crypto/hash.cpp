#include "postern/crypto/hash.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <vector>

#include "postern/crypto/secret.h"

namespace postern::crypto {
namespace {

// An internal failure of OpenSSL's hash or MAC (out of memory) leaves nothing sensible to return
// from these infallible functions; stop rather than continue with a wrong digest.
void require(int ok) {
  if (ok != 1) std::abort();
}

const EVP_MD* md_sha256() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
const EVP_MD* md_sha512() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  return md;
}

EVP_MAC_CTX* new_hmac_ctx() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) std::abort();
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) std::abort();
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  require(EVP_MAC_CTX_set_params(ctx, params));
  return ctx;
}

// Per-thread pool of HMAC contexts: creating one costs more than the HMAC itself. A pooled
// context keeps the last key's inner/outer hash state until it is keyed again; the pool is small.
class HmacPool {
 public:
  ~HmacPool() {
    for (EVP_MAC_CTX* c : free_) EVP_MAC_CTX_free(c);
  }
  EVP_MAC_CTX* take() {
    if (free_.empty()) return new_hmac_ctx();
    EVP_MAC_CTX* c = free_.back();
    free_.pop_back();
    return c;
  }
  void give(EVP_MAC_CTX* c) {
    if (free_.size() < 8) {
      free_.push_back(c);
    } else {
      EVP_MAC_CTX_free(c);
    }
  }

 private:
  std::vector<EVP_MAC_CTX*> free_;
};

HmacPool& pool() {
  thread_local HmacPool p;
  return p;
}

template <std::size_t N>
std::array<std::uint8_t, N> digest(const EVP_MD* md, ByteView data) {
  std::array<std::uint8_t, N> out;
  unsigned int n = 0;
  require(EVP_Digest(data.data(), data.size(), out.data(), &n, md, nullptr));
  return out;
}

}  // namespace

Sha256Digest sha256(ByteView data) {
  return digest<32>(md_sha256(), data);
}
Sha512Digest sha512(ByteView data) {
  return digest<64>(md_sha512(), data);
}

Sha512::Sha512() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();
  require(EVP_DigestInit_ex2(ctx_, md_sha512(), nullptr));
}
Sha512::~Sha512() {
  EVP_MD_CTX_free(ctx_);
}
Sha512& Sha512::update(ByteView data) {
  require(EVP_DigestUpdate(ctx_, data.data(), data.size()));
  return *this;
}
Sha512Digest Sha512::finish() {
  Sha512Digest out;
  unsigned int n = 0;
  require(EVP_DigestFinal_ex(ctx_, out.data(), &n));
  require(EVP_DigestInit_ex2(ctx_, nullptr, nullptr));
  return out;
}

HmacSha256::HmacSha256(ByteView key) : ctx_(pool().take()) {
  static const std::uint8_t kEmpty = 0;
  // OpenSSL treats a null key as "reuse the previous key", so an empty key needs a real pointer.
  require(EVP_MAC_init(ctx_, key.empty() ? &kEmpty : key.data(), key.size(), nullptr));
}
// The per-thread context keyed with the empty key; one user at a time (a second concurrent user
// on the same thread falls back to a pooled context).
struct ZeroKeyContext {
  EVP_MAC_CTX* ctx = nullptr;
  bool in_use = false;
  ~ZeroKeyContext() { EVP_MAC_CTX_free(ctx); }
};

HmacSha256 HmacSha256::zero_key() {
  return HmacSha256(ZeroKey{});
}

HmacSha256::HmacSha256(ZeroKey) {
  static const std::uint8_t kEmpty = 0;
  thread_local ZeroKeyContext zero;
  if (zero.ctx == nullptr) {
    zero.ctx = new_hmac_ctx();
    require(EVP_MAC_init(zero.ctx, &kEmpty, 0, nullptr));
  }
  if (!zero.in_use) {
    zero.in_use = true;
    borrowed_ = &zero.in_use;
    ctx_ = zero.ctx;
    fresh_ = false;  // the next update() resets it to the keyed state
  } else {
    ctx_ = pool().take();
    require(EVP_MAC_init(ctx_, &kEmpty, 0, nullptr));
  }
}

HmacSha256::~HmacSha256() {
  if (borrowed_ != nullptr) {
    *borrowed_ = false;
  } else {
    pool().give(ctx_);
  }
}
HmacSha256& HmacSha256::update(ByteView data) {
  if (!fresh_) {
    require(EVP_MAC_init(ctx_, nullptr, 0, nullptr));
    fresh_ = true;
  }
  require(EVP_MAC_update(ctx_, data.data(), data.size()));
  return *this;
}
Hmac256Tag HmacSha256::finish() {
  if (!fresh_) require(EVP_MAC_init(ctx_, nullptr, 0, nullptr));
  Hmac256Tag out;
  std::size_t n = 0;
  require(EVP_MAC_final(ctx_, out.data(), &n, out.size()));
  fresh_ = false;
  return out;
}

Hmac256Tag hmac_sha256(ByteView key, ByteView data) {
  HmacSha256 mac(key);
  mac.update(data);
  return mac.finish();
}

}  // namespace postern::crypto
