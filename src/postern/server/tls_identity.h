// The server's TLS identity: a self-signed certificate created on first start when none is
// configured, and its pin for invite links.
//
// The self-signed pair is ECDSA P-256 (every TLS 1.2 and 1.3 client supports it), valid for ten
// years, CN = the advertised host, subjectAltName = that host plus DNS:localhost and
// IP:127.0.0.1. Clients do not rely on a CA for it: they pin it. The pin is
// "sha256/" + unpadded base64url of SHA-256 over the DER SubjectPublicKeyInfo (the key, not the
// certificate), so that a certificate re-issued for the same key keeps existing invites valid.
#pragma once

#include <string>
#include <string_view>

#include "postern/util/result.h"

namespace postern::server {

// Creates cert_path (PEM, 0644) and key_path (PEM PKCS#8, 0600) unless cert_path already exists.
// Errors: Errc::tls_failure, Errc::io_error.
Status ensure_self_signed_certificate(const std::string& cert_path, const std::string& key_path,
                                      std::string_view host);

// "sha256/<base64url of SHA-256(DER SubjectPublicKeyInfo)>" of the first certificate in the PEM
// file. Errors: Errc::tls_failure, Errc::io_error.
Result<std::string> certificate_pin(const std::string& cert_path);

// Unpadded base64url (RFC 4648 section 5).
std::string base64url(std::string_view bytes);

}  // namespace postern::server
