// Client side of the proxy protocols a path may go through (sans-I/O): SOCKS5 (RFC 1928, with
// RFC 1929 username/password) and HTTP CONNECT (RFC 9110 section 9.3.6). With them Postern runs
// over Tor, obfs4, Snowflake or Shadowsocks (all offer a local SOCKS5 port) or a corporate
// HTTP proxy. The target host name is sent to the proxy as a name (SOCKS5 ATYP 3), never
// resolved locally, so no DNS query leaks around the proxy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport {

struct ProxyCredentials {
  std::string username;  // 1..255 bytes
  std::string password;  // 1..255 bytes
};

namespace socks5 {

// VER=5, the methods offered: "no authentication" and, with credentials, "username/password".
Bytes greeting(bool with_credentials);
// The server's 2-byte method choice: 0x00 or 0x02 (only when offered). Errc::proxy_refused for
// 0xFF or an unoffered method, Errc::bad_frame for a wrong version.
Result<std::uint8_t> parse_method_choice(ByteView reply, bool offered_credentials);
// RFC 1929 request; Errc::bad_config when a field is empty or over 255 bytes.
Result<Bytes> credentials_request(const ProxyCredentials& credentials);
Status parse_credentials_reply(ByteView reply);  // 2 bytes; status 0 = success
// CONNECT to host:port: ATYP 1/4 for numeric IPv4/IPv6 (an IPv6 literal may be bracketed, "[::1]"),
// else 3 (name, 1..255 bytes). Errc::bad_config for an empty or over-long name, or port 0.
Result<Bytes> connect_request(std::string_view host, std::uint16_t port);
// Given the first bytes of the reply: its total size once the header tells it (at least 5 bytes
// are needed), std::nullopt when more are needed. Errc::bad_frame for a bad version/ATYP.
Result<std::optional<std::size_t>> connect_reply_size(ByteView prefix);
// The whole reply, exactly connect_reply_size() bytes (else Errc::bad_frame): success, or
// Errc::proxy_refused (reply_text(reply[1]) names the REP code).
Status parse_connect_reply(ByteView reply);
std::string_view reply_text(std::uint8_t rep);

}  // namespace socks5

namespace http_connect {

// "CONNECT host:port HTTP/1.1" with Host and, with credentials, Proxy-Authorization: Basic.
// An IPv6 literal (bracketed or not) is written in brackets; control bytes and spaces in `host`
// are dropped so that no host can inject a header.
std::string request(std::string_view host, std::uint16_t port, const std::optional<ProxyCredentials>& credentials);
struct Reply {
  unsigned status = 0;
  std::size_t head_size = 0;  // bytes up to and including the blank line
};
// std::nullopt until the blank line arrived (head over 16 KiB: Errc::too_large).
// Errc::bad_frame for a malformed status line (judged as soon as it is complete, or as soon as the
// first bytes cannot start "HTTP/1.") or header line. Any status is returned; 2xx means tunnel
// open. Bytes after head_size already belong to the tunnel.
Result<std::optional<Reply>> parse_reply(ByteView buffered);

}  // namespace http_connect

}  // namespace postern::transport
