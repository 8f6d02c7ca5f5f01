// The HTTP/1.1 WebSocket upgrade (RFC 6455 section 4) that opens the inner channel, sans-I/O.
//
// Client: "GET /<front token> HTTP/1.1" with Host, Upgrade, Connection, Sec-WebSocket-Key and
// Sec-WebSocket-Version, immediately followed (pipelined, same write) by the first Noise
// message in a WebSocket frame. Server (the front, once the token verified): reads that frame,
// then answers "101 Switching Protocols" with Sec-WebSocket-Accept and, in the same write, the
// second Noise message. Anything else the client gets back is the camouflage site's answer,
// i.e. the token was refused; its Date header lets the client correct its clock and retry once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "postern/crypto/random.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::upgrade {

inline constexpr std::size_t kMaxResponseHead = 16 * 1024;

// A fresh Sec-WebSocket-Key: base64 of 16 random bytes.
std::string make_key(crypto::Rng& rng);
// base64(SHA-1(key || "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string accept_for(std::string_view key);

std::string client_request(std::string_view host_header, std::string_view token, std::string_view key);
std::string server_response(std::string_view key);

struct ResponseHead {
  unsigned status = 0;
  std::size_t head_size = 0;           // bytes through the blank line
  std::string accept;                  // Sec-WebSocket-Accept, if any
  std::optional<std::int64_t> date;    // the Date header as unix seconds, if present and valid
  bool upgrade_websocket = false;      // Upgrade: websocket and Connection: upgrade present
};
// std::nullopt until the blank line has arrived; Errc::too_large past kMaxResponseHead;
// Errc::bad_frame for a status line that is not HTTP/1.x NNN.
Result<std::optional<ResponseHead>> parse_response_head(ByteView buffered);

// "Sun, 06 Nov 1994 08:49:37 GMT" -> unix seconds (IMF-fixdate only).
std::optional<std::int64_t> parse_http_date(std::string_view text);

}  // namespace postern::transport::upgrade
