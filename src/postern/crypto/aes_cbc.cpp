#include "postern/crypto/aes_cbc.h"

#include <openssl/evp.h>

#include <memory>

#include "postern/crypto/errors.h"
#include "postern/crypto/secret.h"

namespace postern::crypto {
namespace {

// OpenSSL 3 resolves algorithms by name on every implicit use; fetching once and keeping one
// context per thread removes that cost from every message. The per-thread context holds the last
// key schedule until the next call re-keys it (documented in docs/protocol-core.md).
const EVP_CIPHER* cipher_for(std::size_t key_len) {
  static EVP_CIPHER* const k128 = EVP_CIPHER_fetch(nullptr, "AES-128-CBC", nullptr);
  static EVP_CIPHER* const k192 = EVP_CIPHER_fetch(nullptr, "AES-192-CBC", nullptr);
  static EVP_CIPHER* const k256 = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  switch (key_len) {
    case 16:
      return k128;
    case 24:
      return k192;
    case 32:
      return k256;
    default:
      return nullptr;
  }
}

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

struct ThreadCipher {
  std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter> ctx{EVP_CIPHER_CTX_new()};
  const EVP_CIPHER* cipher = nullptr;  // what ctx was last set up for (then only key and IV change)
  int encrypt = -1;
};

ThreadCipher& thread_cipher() {
  thread_local ThreadCipher c;
  return c;
}

Result<Bytes> run(bool encrypt, ByteView key, ByteView iv, ByteView in) {
  const EVP_CIPHER* cipher = cipher_for(key.size());
  if (cipher == nullptr || iv.size() != 16) return Errc::bad_key_length;
  if (!encrypt && (in.empty() || in.size() % 16 != 0)) return Errc::bad_length;
  if (in.size() > static_cast<std::size_t>(INT32_MAX) - 32) return Errc::bad_length;
  ThreadCipher& tc = thread_cipher();
  EVP_CIPHER_CTX* ctx = tc.ctx.get();
  if (ctx == nullptr) return Errc::backend_failure;
  const int enc = encrypt ? 1 : 0;
  const bool same = tc.cipher == cipher && tc.encrypt == enc;
  tc.cipher = nullptr;  // unknown until this set-up succeeded
  if (EVP_CipherInit_ex2(ctx, same ? nullptr : cipher, key.data(), iv.data(), enc, nullptr) != 1) {
    return Errc::backend_failure;
  }
  tc.cipher = cipher;
  tc.encrypt = enc;
  Bytes out(in.size() + 16);
  int n1 = 0;
  int n2 = 0;
  if (EVP_CipherUpdate(ctx, out.data(), &n1, in.data(), static_cast<int>(in.size())) != 1) {
    return Errc::backend_failure;
  }
  if (EVP_CipherFinal_ex(ctx, out.data() + n1, &n2) != 1) {
    wipe(out);
    return encrypt ? Errc::backend_failure : Errc::bad_padding;
  }
  out.resize(static_cast<std::size_t>(n1 + n2));
  return out;
}

}  // namespace

Result<Bytes> aes_cbc_encrypt(ByteView key, ByteView iv, ByteView plaintext) {
  return run(true, key, iv, plaintext);
}

Result<Bytes> aes_cbc_decrypt(ByteView key, ByteView iv, ByteView ciphertext) {
  return run(false, key, iv, ciphertext);
}

}  // namespace postern::crypto
