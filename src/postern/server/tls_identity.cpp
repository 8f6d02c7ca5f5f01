#include "postern/server/tls_identity.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "postern/crypto/hash.h"
#include "postern/server/data_dir.h"
#include "postern/server/errors.h"

namespace postern::server {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
};
template <class T>
using Owned = std::unique_ptr<T, Free>;

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  Owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

}  // namespace

std::string base64url(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  const auto b = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(bytes[k])); };
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    const unsigned v = (b(i) << 16) | (rest == 2 ? b(i + 1) << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (rest == 2) out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

Status ensure_self_signed_certificate(const std::string& cert_path, const std::string& key_path,
                                      std::string_view host_view) {
  std::error_code fs_error;
  if (std::filesystem::exists(cert_path, fs_error)) return {};
  const std::string host(host_view);

  Owned<EVP_PKEY> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  Owned<X509> cert(X509_new());
  if (!key || !cert) return Errc::tls_failure;

  // A random positive serial of 127 bits (RFC 5280: positive, at most 20 octets).
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return Errc::tls_failure;
  serial_bytes[0] &= 0x7f;
  Owned<BIGNUM> serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  if (!serial || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return Errc::tls_failure;
  }
  constexpr long kTenYears = 10L * 365 * 24 * 3600;
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn = host.size() <= 64 ? host : "postern";  // CN is at most 64 characters
  if (X509_set_version(cert.get(), 2) != 1 || X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), kTenYears) == nullptr ||
      X509_set_pubkey(cert.get(), key.get()) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                 -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1) {
    return Errc::tls_failure;
  }
  std::string san = "DNS:localhost,IP:127.0.0.1";
  if (host != "localhost" && host != "127.0.0.1") san += (is_ip_literal(host) ? ",IP:" : ",DNS:") + host;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  if (!add_extension(cert.get(), &ctx, NID_subject_alt_name, san) ||
      !add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature") ||
      !add_extension(cert.get(), &ctx, NID_ext_key_usage, "serverAuth") ||
      X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return Errc::tls_failure;
  }

  Owned<BIO> key_bio(BIO_new(BIO_s_mem()));
  Owned<BIO> cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1) {
    return Errc::tls_failure;
  }
  // The key first: a certificate without its key would be kept by the exists() check above.
  POSTERN_CHECK(write_file_atomically(key_path, bio_contents(key_bio.get()), 0600));
  return write_file_atomically(cert_path, bio_contents(cert_bio.get()), 0644);
}

Result<std::string> certificate_pin(const std::string& cert_path) {
  FILE* file = std::fopen(cert_path.c_str(), "rb");
  if (file == nullptr) return Errc::io_error;
  Owned<X509> cert(PEM_read_X509(file, nullptr, nullptr, nullptr));
  std::fclose(file);
  if (!cert) return Errc::tls_failure;
  unsigned char* der = nullptr;
  const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &der);
  if (n <= 0) return Errc::tls_failure;
  const auto digest = crypto::sha256(ByteView(der, static_cast<std::size_t>(n)));
  OPENSSL_free(der);
  return "sha256/" + base64url(as_chars(digest));
}

}  // namespace postern::server
