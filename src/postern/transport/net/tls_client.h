// Client-side TLS shared by Postern's client and its relays (their upstream connections).
//
// The ClientHello is that of curl 7.88 on this system's OpenSSL 3 (docs/transport.md, "TLS
// fingerprint"): the largest crowd of OpenSSL clients (JA4 t13d3112h2_e8f1e7e78f70_b26ce05bbdd6
// as measured here). Trust is not a CA's: the server's certificate key is pinned (the SHA-256 of
// its DER SubjectPublicKeyInfo, from the invite or relay link) and compared in constant time.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

typedef struct ssl_st SSL;

namespace postern::transport::net {

using CertificatePin = std::array<std::uint8_t, 32>;

// A client context: TLS 1.2-1.3, SSL_OP_ALL, no session tickets, post-handshake auth offered,
// ALPN "h2, http/1.1", no certificate verification (pinning instead).
std::shared_ptr<boost::asio::ssl::context> make_client_tls_context();

// Sets the SNI name on a connection unless `host` is an IP literal (curl sends none for those).
bool set_server_name(SSL* ssl, const std::string& host);

// Whether the peer certificate's key hashes to `pin` (constant-time comparison).
bool peer_key_matches(SSL* ssl, const CertificatePin& pin);

bool is_ip_literal(const std::string& host);

}  // namespace postern::transport::net
