// Errors of the transport layer (registered as an error-code enum, as every layer does). Codes
// are stable: `postern doctor --json` and the logs carry them.
#pragma once

#include <system_error>

namespace postern::transport {

enum class Errc {
  ok = 0,
  // Noise
  unsupported_protocol = 1,  // a Noise protocol name we do not implement
  bad_key = 2,               // a key of the wrong size, or a low-order point (all-zero DH)
  handshake_failed = 3,      // a handshake message that does not decrypt or has the wrong size
  wrong_state = 4,           // write/read out of turn, split before the end, a used-up nonce
  decrypt_failed = 5,        // a transport message that does not authenticate
  too_large = 6,             // over a stated limit (65535-byte Noise message, a frame, a header)
  // framing
  bad_frame = 7,             // a WebSocket frame or inner record that breaks the rules
  // front authentication
  bad_token = 8,             // malformed, wrong tag, out of the time window, or replayed
  // dialing
  proxy_refused = 9,         // the SOCKS5 / HTTP proxy refused or answered nonsense
  bad_dns_message = 10,      // a DNS message that does not parse
  // HTTP (the site's parser)
  bad_request = 11,
  io_error = 12,             // a file or socket operation failed
  bad_config = 13,           // an option out of range
  unreachable = 14,          // no connection to the peer
  timeout = 15,
};

const std::error_category& transport_category();

inline std::error_code make_error_code(Errc e) { return {static_cast<int>(e), transport_category()}; }

}  // namespace postern::transport

template <>
struct std::is_error_code_enum<postern::transport::Errc> : std::true_type {};
