// See tls_client.h.
#include "postern/transport/net/tls_client.h"

#include <boost/asio/ip/address.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "postern/crypto/hash.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"

namespace postern::transport::net {

std::shared_ptr<boost::asio::ssl::context> make_client_tls_context() {
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_options(native, SSL_OP_ALL | SSL_OP_NO_TICKET | SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 |
                                  SSL_OP_NO_TLSv1_1);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_post_handshake_auth(native, 1);
  static constexpr unsigned char kAlpn[] = "\x02h2\x08http/1.1";
  SSL_CTX_set_alpn_protos(native, kAlpn, sizeof(kAlpn) - 1);
  SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);  // pinned instead (peer_key_matches)
  return ctx;
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(host, ec);
  return !ec;
}

bool set_server_name(SSL* ssl, const std::string& host) {
  if (is_ip_literal(host)) return true;
  // SSL_set_tlsext_host_name, without the macro's C cast.
  return SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str())) == 1;
}

bool peer_key_matches(SSL* ssl, const CertificatePin& pin) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return false;
  bool match = false;
  if (EVP_PKEY* key = X509_get0_pubkey(cert); key != nullptr) {
    const int length = i2d_PUBKEY(key, nullptr);
    if (length > 0) {
      Bytes der(static_cast<std::size_t>(length));
      unsigned char* out = der.data();
      if (i2d_PUBKEY(key, &out) == length) {
        const auto digest = crypto::sha256(der);
        match = crypto::constant_time_equal(digest, pin);
      }
    }
  }
  X509_free(cert);
  return match;
}

}  // namespace postern::transport::net
