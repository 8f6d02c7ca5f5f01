// Errors of the server layer (postern::server::Errc, category "postern.server"), for the start-up
// paths (data directory, certificate, addresses) that report failures as values. Registered with
// std::error_code, the pattern Asio's own codes follow, so they mix with boost::system codes.
#pragma once

#include <system_error>

namespace postern::server {

enum class Errc {
  bad_address = 1,  // HOST:PORT that does not parse
  io_error,         // a file in the data directory could not be created, read or written
  bad_secret,       // the server secret file has the wrong size
  tls_failure,      // OpenSSL failed to create or load a certificate or key
};

std::error_code make_error_code(Errc e);
const std::error_category& server_category();

}  // namespace postern::server

template <>
struct std::is_error_code_enum<postern::server::Errc> : std::true_type {};
