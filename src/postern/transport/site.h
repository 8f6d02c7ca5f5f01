// The camouflage web site: what anyone without the deployment's secret gets from the server's or
// a relay's TLS port (docs/transport.md). It must be indistinguishable from stock nginx 1.22.1
// (Debian 12) serving the same directory with its defaults, so this file holds our own
// implementation of what nginx does, byte for byte where a prober can see it: its request-head
// parser's acceptance rules (what is 400, 414, or still incomplete), its status lines, header
// names and order, its error pages, and its keep-alive / close decisions. Checked against a real
// nginx in tests/integration/probe_test.py. Sans-I/O: the Asio front
// (transport/net/front.h) does the reading, the writing, the timeouts and the closing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::site {

// nginx 1.22's defaults for what the front must copy (timeouts, buffer limits).
struct NginxLimits {
  std::size_t client_header_buffer = 1024;      // client_header_buffer_size
  std::size_t large_header_buffer = 8 * 1024;   // large_client_header_buffers 4 8k
  std::size_t large_header_buffers = 4;
  std::chrono::milliseconds client_header_timeout{60'000};  // also the TLS handshake's
  std::chrono::milliseconds keepalive_timeout{75'000};
  std::chrono::milliseconds send_timeout{60'000};
  std::chrono::milliseconds client_body_timeout{60'000};
  std::chrono::milliseconds lingering_time{30'000};
  std::chrono::milliseconds lingering_timeout{5'000};
  unsigned keepalive_requests = 1000;
};

// nginx on an "ssl" listener peeks at the first byte: 0x16 (a TLS handshake record) or a byte
// with the high bit set (an SSLv2-style hello) go to TLS, anything else is read as plain HTTP
// (and answered 400 "The plain HTTP request was sent to HTTPS port").
bool first_byte_is_tls(std::uint8_t first) noexcept;

struct RequestHead {
  std::string method;
  std::string target;  // as sent
  std::string path;    // decoded, normalised ("/a/../b" -> "/b"), without the query
  std::string query;
  unsigned version = 11;  // 9 (HTTP/0.9), 10, 11
  // Names as sent, in order; values without nginx's leading/trailing spaces. Lines nginx ignores
  // (names with '_' or other characters outside [A-Za-z0-9-]) are left out, as nginx leaves them.
  std::vector<std::pair<std::string, std::string>> headers;
  std::size_t head_size = 0;  // bytes of the head, request line to the blank line inclusive
  bool keep_alive = true;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  // The validated server name (request-line host, else Host), lower case, without port or a
  // trailing dot; empty when neither was sent. nginx builds redirect Locations from it.
  std::string host;
  // Case-insensitive lookup of the first header with this name.
  std::optional<std::string_view> header(std::string_view name) const;
};

enum class ParseState : std::uint8_t { incomplete, complete, error };
struct ParseResult {
  ParseState state = ParseState::incomplete;
  RequestHead head;  // complete: the request; error: what was parsed (may be partial)
  // error: the status nginx answers with (400, 414, 494 = "Request Header Or Cookie Too Large"
  // sent as 400, 501, 505, ...), or 0 when nginx closes without an answer.
  int error_status = 0;
  // error: found only after the blank line ending the head (missing Host, a bad Content-Length
  // or Transfer-Encoding, TRACE). nginx then closes plainly instead of lingering.
  bool head_complete = false;
};
// Parses the request head at the start of `buffered` with nginx's rules and limits.
// `incomplete` also means "nginx would keep waiting" (until client_header_timeout).
ParseResult parse_request_head(ByteView buffered, const NginxLimits& limits = {});

// How the front must end or continue after sending a response.
enum class After : std::uint8_t {
  keep_alive,      // wait for the next request (keepalive_timeout)
  close,           // close at once after sending (FIN)
  lingering_close  // shut down the write side, read and discard for up to lingering_time, close
};

struct Response {
  std::string head;  // status line and headers, ending in CRLF CRLF
  std::string body;  // error pages and small bodies
  // A file body streamed after `head` (GET of a static file); empty path = none.
  std::filesystem::path file;
  std::uint64_t file_offset = 0;
  std::uint64_t file_length = 0;
  // The request's body (Content-Length or chunked) must be read and discarded first.
  bool discard_body = false;
  After after = After::keep_alive;
  int status = 0;
};

// The listening socket as nginx sees it: it builds a 301's Location from the scheme, the local
// address (when the request named no host) and the port (left out when it is the scheme's default).
struct Listener {
  std::string local_address = "127.0.0.1";  // as text; IPv6 in brackets
  std::uint16_t port = 443;
  bool tls = true;
};

class Site {
 public:
  // The directory to serve (index.html as the index). Errc::bad_config when it is not a
  // readable directory.
  static Result<Site> open(const std::filesystem::path& root, NginxLimits limits = {});

  // nginx's answer to a complete request head on this server. `plain_http_on_tls_port`: the
  // request came as plain HTTP to the TLS port (nginx answers 400 "The plain HTTP request was
  // sent to HTTPS port", and closes). `requests_on_connection` counts this one (keepalive_requests).
  Response respond(const RequestHead& head, bool plain_http_on_tls_port, std::chrono::system_clock::time_point now,
                   unsigned requests_on_connection = 1) const;
  // The same, for a connection accepted on `listener` (the other overload uses listener()).
  Response respond(const RequestHead& head, bool plain_http_on_tls_port, std::chrono::system_clock::time_point now,
                   unsigned requests_on_connection, const Listener& listener) const;
  // nginx's answer to a head that failed to parse with `error_status` (ParseResult).
  Response error_response(int error_status, bool plain_http_on_tls_port,
                          std::chrono::system_clock::time_point now) const;
  // The same, with what was parsed: an HTTP/0.9 request line gets the page without a head, a
  // Chrome or MSIE User-Agent gets nginx's msie_padding, and errors found after the head close
  // plainly (After::close) where errors inside it linger (After::lingering_close).
  Response error_response(const ParseResult& failed, bool plain_http_on_tls_port,
                          std::chrono::system_clock::time_point now) const;

  // Whether nginx keeps the connection open after answering `head` (its HTTP version and
  // Connection header, keepalive_requests, the MSIE 6 POST rule).
  bool keep_alive_allowed(const RequestHead& head, unsigned requests_on_connection) const;
  // nginx's own page for `status` (413, 502, 504, ...) as the answer to `head`; the connection
  // stays open when `keep_alive`, else it closes (lingering when a body was sent).
  Response status_page(int status, const RequestHead& head, bool keep_alive,
                       std::chrono::system_clock::time_point now) const;

  void set_listener(Listener listener) { listener_ = std::move(listener); }
  const Listener& listener() const noexcept { return listener_; }

  const NginxLimits& limits() const noexcept { return limits_; }
  const std::filesystem::path& root() const noexcept { return root_; }

 private:
  Site(std::filesystem::path root, NginxLimits limits)
      : root_(std::move(root)), limits_(limits), multipart_boundary_(std::make_shared<std::atomic<std::uint64_t>>(0)) {}
  std::filesystem::path root_;
  NginxLimits limits_;
  Listener listener_;
  // nginx numbers multipart/byteranges boundaries with a process-wide counter from 1; shared by
  // copies of this Site so that, like nginx's, it only grows.
  std::shared_ptr<std::atomic<std::uint64_t>> multipart_boundary_;
};

// "Sun, 29 Nov 2026 19:44:49 GMT" (RFC 9110 IMF-fixdate, as nginx writes Date/Last-Modified).
std::string http_date(std::chrono::system_clock::time_point t);

}  // namespace postern::transport::site
