// The camouflage site as a reverse proxy to a real web site (`--cover-origin URL`): what stock
// nginx 1.22.1 does with `location / { proxy_pass URL; }` and nothing else configured (Debian
// 12's package, checked against it in tests/integration/probe_test.py; docs/transport.md).
//
// Sans-I/O, like site.h: the Asio front (transport/net/front.cpp) connects, reads and writes;
// this file says what goes to the origin and what comes back to the visitor.
//
// What nginx does by default, and so what this does:
// - to the origin: HTTP/1.0, the request target as the visitor sent it, "Host:" the origin's
//   host[:port], "Connection: close", the body (read in full first, client_max_body_size 1m,
//   a chunked body re-sent with Content-Length), then the visitor's headers minus Host,
//   Connection, Keep-Alive, TE, Upgrade, Expect, Content-Length and Transfer-Encoding;
// - back to the visitor: the origin's status line (its reason phrase kept), nginx's own Server
//   and Date, Content-Type, Content-Length and Location in nginx's fixed places (a Location under
//   the origin's URL rewritten to ours, relative ones made absolute), then the origin's other
//   headers in their order minus Server, Date, X-Pad, X-Accel-*, Connection, Keep-Alive and
//   Transfer-Encoding; a body without a length goes out chunked to HTTP/1.1 visitors and up to
//   the close to HTTP/1.0 ones; a response that is not HTTP (no "HTTP/" status line) is passed
//   through raw, as nginx's HTTP/0.9 support does;
// - errors: no connection or a broken answer is nginx's 502 page, a timeout its 504 page.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/transport/site.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::cover {

struct OriginUrl {
  bool tls = false;          // https://
  std::string host;          // a name or an IP literal (IPv6 without brackets)
  std::uint16_t port = 80;
  std::string host_header;   // nginx's $proxy_host: the host (IPv6 in brackets), ":port" unless the default
  std::string redirect_from; // proxy_redirect default: "scheme://host[:port]/", replaced by "/"
};

// "http://HOST[:PORT][/]" or "https://HOST[:PORT][/]"; HOST a name, an IPv4 address or [IPv6].
// Nothing else: no user info, path, query or fragment (nginx's proxy_pass with a URI part
// rewrites paths, which a cover site does not need). Errc::bad_config otherwise.
Result<OriginUrl> parse_origin_url(std::string_view url);

// nginx's proxy limits that the front copies (their defaults).
struct ProxyLimits {
  std::chrono::milliseconds connect_timeout{60'000};  // proxy_connect_timeout: then 504
  std::chrono::milliseconds read_timeout{60'000};     // proxy_read_timeout: between two reads
  std::chrono::milliseconds send_timeout{60'000};     // proxy_send_timeout
  std::uint64_t client_max_body_size = 1024 * 1024;   // client_max_body_size 1m: over it, 413
  std::size_t buffer_size = 4096;                     // proxy_buffer_size (one page): a longer head is 502
};

// The request head sent to the origin for `visitor`'s request; `body_length` when the visitor
// sent a body (its length after de-chunking).
std::string origin_request_head(const site::RequestHead& visitor, const OriginUrl& origin,
                                std::optional<std::uint64_t> body_length);

// The origin's answer, parsed as nginx's upstream module does.
struct OriginResponse {
  enum class State : std::uint8_t {
    incomplete,  // read more (or, at the origin's close, 502)
    complete,    // a head; the body follows at head_size
    http09,      // not HTTP: everything is body, up to the origin's close
    error        // an invalid or too long head: 502
  };
  State state = State::incomplete;
  int status = 0;
  std::string status_line;  // after "HTTP/x.y ": "200 OK", as the origin sent it
  std::vector<std::pair<std::string, std::string>> headers;  // in order, values trimmed
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  std::size_t head_size = 0;
};
OriginResponse parse_origin_response(ByteView buffered, std::size_t max_head = ProxyLimits{}.buffer_size);

// How a body travels: its length known, chunked, up to the close, or none.
enum class Framing : std::uint8_t { none, length, chunked, until_close };

struct VisitorHead {
  std::string head;        // empty for an HTTP/0.9 visitor or an http09 origin answer
  Framing origin_body = Framing::none;   // how to read the body from the origin
  Framing visitor_body = Framing::none;  // how to send it on
  std::uint64_t length = 0;              // Framing::length: the body's size
  bool keep_alive = true;                // the visitor's connection stays open afterwards
};
// The head nginx sends the visitor for `response` from `origin` to `visitor`'s request on
// `listener`; `keep_alive`: what the request itself allows (nginx's keep-alive rules, site.h).
VisitorHead visitor_head(const OriginResponse& response, const site::RequestHead& visitor, const OriginUrl& origin,
                         const site::Listener& listener, bool keep_alive, std::chrono::system_clock::time_point now);

// "1a\r\n" + data + "\r\n" (empty data: the last chunk "0\r\n\r\n").
std::string chunk(ByteView data);

// A chunked body's decoder (RFC 9112 section 7.1, with nginx's leniency: a bare LF ends a line;
// chunk extensions and trailers are skipped). Limits: a chunk size of at most 15 hex digits,
// extension and trailer lines of at most `max_line` bytes.
class ChunkedDecoder {
 public:
  enum class Status : std::uint8_t { more, done, error };
  explicit ChunkedDecoder(std::size_t max_line = 4096) : max_line_(max_line) {}
  // Consumes bytes from the front of `in` (stopping after the body's end), appends the data to
  // `out`; `consumed` is how many bytes of `in` were used.
  Status feed(ByteView in, std::size_t& consumed, Bytes& out);
  std::uint64_t body_size() const noexcept { return total_; }

 private:
  enum class S : std::uint8_t { size, ext, size_lf, data, data_cr, data_lf, trailer_start, trailer, final_lf, done, error };
  S s_ = S::size;
  std::uint64_t left_ = 0;
  std::uint64_t total_ = 0;
  unsigned digits_ = 0;
  std::size_t line_ = 0;
  std::size_t max_line_;
};

}  // namespace postern::transport::cover
