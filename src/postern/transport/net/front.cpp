// See front.h. One coroutine per connection, on the connection's strand. The site's answers
// and nginx's rules come from transport/site.h; this file only does the I/O in nginx's order:
// the same reads (so the same timeouts), the same writes, the same way of closing.
#include "postern/transport/net/front.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <tuple>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <openssl/ssl.h>

#include "postern/crypto/secret.h"
#include "postern/transport/ascii.h"
#include "postern/transport/errors.h"
#include "postern/transport/net/tls_client.h"

namespace postern::transport::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kReadChunk = 4096;
constexpr std::size_t kFileChunk = 64 * 1024;

void bump(FrontCounters* c, std::atomic<std::uint64_t> FrontCounters::*field) {
  if (c != nullptr) (c->*field).fetch_add(1, std::memory_order_relaxed);
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

using ascii::iequals;

// nginx's ALPN choice for an HTTP/1.x server: the first of its protocols the client offers;
// none in common is a fatal handshake alert.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
  static constexpr unsigned char kOurs[] = "\x08http/1.1\x08http/1.0\x08http/0.9";
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  if (SSL_select_next_proto(&selected, &selected_len, kOurs, sizeof(kOurs) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  *outlen = selected_len;
  return SSL_TLSEXT_ERR_OK;
}

// The connection under the front: plain TCP (plain HTTP on the TLS port) or TLS.
template <class Stream>
beast::tcp_stream& tcp_of(Stream& s) {
  return beast::get_lowest_layer(s);
}

enum class Step : std::uint8_t { next_request, closed, tunnel, open_api };


struct Connection {
  const FrontSettings& settings;
  const site::NginxLimits& limits;
  Bytes in;  // bytes read and not yet consumed
  unsigned requests = 0;
  site::RequestHead tunnel_head;
  site::Listener listener;  // this connection's local address and port (nginx's redirects name them)
};

// Reads more bytes into c.in. false: the peer closed, the read failed or timed out.
template <class Stream>
awaitable<bool> read_more(Stream& s, Connection& c) {
  std::array<std::uint8_t, kReadChunk> chunk{};
  auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), asio::as_tuple(use_awaitable));
  if (ec || n == 0) co_return false;
  c.in.insert(c.in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  crypto::wipe(chunk.data(), n);
  co_return true;
}

template <class Stream>
awaitable<bool> write_all(Stream& s, asio::const_buffer b, const site::NginxLimits& limits) {
  tcp_of(s).expires_after(limits.send_timeout);
  auto [ec, n] = co_await asio::async_write(s, b, asio::as_tuple(use_awaitable));
  (void)n;
  co_return !ec;
}

// Closing as nginx does: after a response that ends the connection, TLS sends close_notify;
// a timed-out or failed connection is closed without one.
template <class Stream>
awaitable<void> close_connection(Stream& s, bool graceful) {
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    if (graceful) {
      tcp_of(s).expires_after(std::chrono::seconds(5));
      co_await s.async_shutdown(asio::as_tuple(use_awaitable));
    }
  }
  error_code ignored;
  tcp_of(s).socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp_of(s).socket().close(ignored);
}

// nginx's lingering close: stop sending, then read and discard what the client still sends,
// each read waiting at most lingering_timeout, for at most lingering_time in all.
template <class Stream>
awaitable<void> lingering_close(Stream& s, const site::NginxLimits& limits) {
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    tcp_of(s).expires_after(std::chrono::seconds(5));
    co_await s.async_shutdown(asio::as_tuple(use_awaitable));
  }
  auto& tcp_stream = tcp_of(s);
  error_code ignored;
  tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  const auto until = std::chrono::steady_clock::now() + limits.lingering_time;
  std::array<std::uint8_t, kReadChunk> sink{};
  while (std::chrono::steady_clock::now() < until) {
    tcp_stream.expires_after(std::min<std::chrono::steady_clock::duration>(
        limits.lingering_timeout, until - std::chrono::steady_clock::now()));
    auto [ec, n] = co_await tcp_stream.async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
    (void)n;
    if (ec) break;
  }
  tcp_stream.socket().close(ignored);
}

// Reads and discards a request body of known length after the answer, as nginx does (to go on
// with the next request, or before a lingering close): each read waits at most
// lingering_timeout, all of them lingering_time; then the connection is dropped.
template <class Stream>
awaitable<bool> discard_body(Stream& s, Connection& c, std::uint64_t length) {
  const std::uint64_t buffered = std::min<std::uint64_t>(length, c.in.size());
  c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(buffered));
  length -= buffered;
  std::array<std::uint8_t, kReadChunk> sink{};
  const auto until = std::chrono::steady_clock::now() + c.limits.lingering_time;
  while (length > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) co_return false;
    tcp_of(s).expires_after(std::min<std::chrono::steady_clock::duration>(c.limits.lingering_timeout, until - now));
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(length, sink.size()));
    auto [ec, n] = co_await s.async_read_some(asio::buffer(sink.data(), want), asio::as_tuple(use_awaitable));
    if (ec) co_return false;
    length -= n;
  }
  co_return true;
}

template <class Stream>
awaitable<bool> send_response(Stream& s, const site::Response& r, const site::NginxLimits& limits) {
  if (r.file.empty()) {
    std::string whole = r.head;
    whole += r.body;
    co_return co_await write_all(s, asio::buffer(whole), limits);
  }
  std::ifstream file(r.file, std::ios::binary);
  if (!file) co_return false;  // the site checked it a moment ago; gone now: drop the connection
  file.seekg(static_cast<std::streamoff>(r.file_offset));
  // The head and the start of the file in one write, as nginx's sendfile path sends them.
  std::string buffer = r.head;
  std::uint64_t left = r.file_length;
  bool first = true;
  while (first || left > 0) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, kFileChunk));
    const std::size_t at = buffer.size();
    buffer.resize(at + want);
    file.read(buffer.data() + at, static_cast<std::streamsize>(want));
    if (static_cast<std::size_t>(file.gcount()) != want) co_return false;
    left -= want;
    first = false;
    if (!co_await write_all(s, asio::buffer(buffer), limits)) co_return false;
    buffer.clear();
  }
  co_return true;
}

// Reads and discards a chunked request body (nginx reads it to keep the connection).
template <class Stream>
awaitable<bool> discard_chunked_body(Stream& s, Connection& c) {
  cover::ChunkedDecoder decoder(c.limits.large_header_buffer);
  Bytes sink;
  const auto until = std::chrono::steady_clock::now() + c.limits.lingering_time;
  for (;;) {
    std::size_t used = 0;
    const auto status = decoder.feed(c.in, used, sink);
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(used));
    sink.clear();
    if (status == cover::ChunkedDecoder::Status::done) co_return true;
    if (status == cover::ChunkedDecoder::Status::error) co_return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) co_return false;
    tcp_of(s).expires_after(std::min<std::chrono::steady_clock::duration>(c.limits.lingering_timeout, until - now));
    const bool more = co_await read_more(s, c);
    if (!more) co_return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The cover origin (transport/cover_origin.h): one connection to it per request, as nginx's
// proxy_pass without an upstream keep-alive pool.

enum class OriginFail : std::uint8_t { none, bad_gateway, timeout };

// A connection to the origin: TCP, with TLS on top for https origins.
struct Upstream {
  std::optional<beast::tcp_stream> tcp;
  std::optional<TlsStream> tls;

  beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *tcp; }

  // (No structured bindings of the same names in two branches of one coroutine: GCC 12
  // miscompiles that.)
  awaitable<std::tuple<error_code, std::size_t>> read_some(asio::mutable_buffer b) {
    std::tuple<error_code, std::size_t> result;
    if (tls) {
      result = co_await tls->async_read_some(b, asio::as_tuple(use_awaitable));
    } else {
      result = co_await tcp->async_read_some(b, asio::as_tuple(use_awaitable));
    }
    co_return result;
  }

  awaitable<error_code> write(asio::const_buffer b) {
    std::tuple<error_code, std::size_t> result;
    if (tls) {
      result = co_await asio::async_write(*tls, b, asio::as_tuple(use_awaitable));
    } else {
      result = co_await asio::async_write(*tcp, b, asio::as_tuple(use_awaitable));
    }
    co_return std::get<0>(result);
  }

  void close() {
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
  }
};

OriginFail fail_of(const error_code& ec) {
  return ec == beast::error::timeout ? OriginFail::timeout : OriginFail::bad_gateway;
}

awaitable<OriginFail> connect_origin(Upstream& up, const CoverOrigin& origin) {
  auto executor = co_await asio::this_coro::executor;
  up.tcp.emplace(executor);
  // The name is resolved per request (nginx resolves it once at start); a resolver that hangs
  // is bounded by the connect timeout.
  tcp::resolver resolver(executor);
  asio::steady_timer deadline(executor);
  deadline.expires_after(origin.limits.connect_timeout);
  bool timed_out = false;
  deadline.async_wait([&resolver, &timed_out](const error_code& ec) {
    if (!ec) {
      timed_out = true;
      resolver.cancel();
    }
  });
  const std::string port = std::to_string(origin.url.port);
  auto [rec, results] = co_await resolver.async_resolve(origin.url.host, port, asio::as_tuple(use_awaitable));
  deadline.cancel();
  if (rec) co_return timed_out ? OriginFail::timeout : OriginFail::bad_gateway;
  up.tcp->expires_after(origin.limits.connect_timeout);
  auto [cec, endpoint] = co_await up.tcp->async_connect(results, asio::as_tuple(use_awaitable));
  (void)endpoint;
  if (cec) co_return fail_of(cec);
  if (!origin.url.tls) co_return OriginFail::none;
  up.tls.emplace(up.tcp->release_socket(), *origin.tls, asio::ssl::stream_base::client);
  up.tcp.reset();
  SSL* ssl = up.tls->native_handle();
  if (!set_server_name(ssl, origin.url.host) || SSL_set1_host(ssl, origin.url.host.c_str()) != 1) {
    co_return OriginFail::bad_gateway;
  }
  up.lowest().expires_after(origin.limits.connect_timeout);
  auto [hec] = co_await up.tls->async_handshake(asio::ssl::stream_base::client, asio::as_tuple(use_awaitable));
  if (hec) co_return fail_of(hec);
  co_return OriginFail::none;
}

// Sends an answer and ends it as nginx does: a request body it did not read is discarded first
// (`head` given: lingering timeouts, then the connection is dropped), then the connection is
// kept, closed, or closed lingering. The step after it.
template <class Stream>
awaitable<Step> send_page(Stream& s, Connection& c, site::Response r, const site::RequestHead* head) {
  // (co_await never inside a condition: GCC 12 miscompiles it here.)
  const bool sent = co_await send_response(s, r, c.limits);
  if (!sent) {
    co_await close_connection(s, false);
    co_return Step::closed;
  }
  if (r.discard_body && head != nullptr) {
    bool discarded = true;
    if (head->chunked) {
      discarded = co_await discard_chunked_body(s, c);
    } else if (head->content_length) {
      const std::uint64_t length = *head->content_length;
      discarded = co_await discard_body(s, c, length);
    }
    if (!discarded) {
      co_await close_connection(s, false);
      co_return Step::closed;
    }
  }
  if (r.after == site::After::lingering_close) {
    co_await lingering_close(s, c.limits);
    co_return Step::closed;
  }
  if (r.after == site::After::close) {
    co_await close_connection(s, true);
    co_return Step::closed;
  }
  co_return Step::next_request;
}

// Reads the visitor's request body as nginx does before proxying (proxy_request_buffering):
// in full, de-chunked. 0: read; else the status to answer (400, 413); -1: the connection failed.
template <class Stream>
awaitable<int> read_request_body(Stream& s, Connection& c, const site::RequestHead& head, const CoverOrigin& origin,
                                 Bytes& body) {
  tcp_of(s).expires_after(c.limits.client_body_timeout);
  if (!head.chunked) {
    const std::uint64_t length = head.content_length.value_or(0);
    while (c.in.size() < length) {
      const bool more = co_await read_more(s, c);
      if (!more) co_return -1;
    }
    body.assign(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(length));
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(length));
    co_return 0;
  }
  cover::ChunkedDecoder decoder(c.limits.large_header_buffer);
  for (;;) {
    std::size_t used = 0;
    const auto status = decoder.feed(c.in, used, body);
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(used));
    if (body.size() > origin.limits.client_max_body_size) co_return 413;
    if (status == cover::ChunkedDecoder::Status::done) co_return 0;
    if (status == cover::ChunkedDecoder::Status::error) co_return 400;
    const bool more = co_await read_more(s, c);
    if (!more) co_return -1;
  }
}

// Moves the origin's body to the visitor. false: it ended early or failed (the visitor's
// connection is then closed, as nginx closes it).
template <class Stream>
awaitable<bool> relay_body(Stream& s, Connection& c, Upstream& up, const cover::VisitorHead& vh, Bytes& pending,
                           const cover::ProxyLimits& limits) {
  if (vh.origin_body == cover::Framing::none) co_return true;
  const bool chunk_out = vh.visitor_body == cover::Framing::chunked;
  std::uint64_t left = vh.length;
  cover::ChunkedDecoder decoder;
  std::array<std::uint8_t, kFileChunk> buffer{};
  bool at_end = false;
  for (;;) {
    // What `pending` holds of the body, in the visitor's framing.
    Bytes data;
    bool finished = false;
    if (vh.origin_body == cover::Framing::length) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, pending.size()));
      data.assign(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
      left -= n;
      finished = left == 0;
    } else if (vh.origin_body == cover::Framing::chunked) {
      std::size_t used = 0;
      const auto status = decoder.feed(pending, used, data);
      if (status == cover::ChunkedDecoder::Status::error) co_return false;
      finished = status == cover::ChunkedDecoder::Status::done;
    } else {
      data = pending;
      finished = at_end;
    }
    pending.clear();
    std::string out;
    if (chunk_out) {
      if (!data.empty()) out = cover::chunk(data);
      if (finished) out += cover::chunk({});
    } else {
      out.assign(data.begin(), data.end());
    }
    if (!out.empty()) {
      const asio::const_buffer to_visitor = asio::buffer(out);
      const bool written = co_await write_all(s, to_visitor, c.limits);
      if (!written) co_return false;
    }
    if (finished) co_return true;
    if (at_end) co_return false;  // the origin closed before the body's end
    up.lowest().expires_after(limits.read_timeout);
    const asio::mutable_buffer into = asio::buffer(buffer);
    auto [ec, n] = co_await up.read_some(into);
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      at_end = true;
      if (vh.origin_body != cover::Framing::until_close) co_return false;
    } else if (ec) {
      co_return false;
    }
    pending.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

// Answers one request from the cover origin, as nginx's proxy_pass does.
template <class Stream>
awaitable<Step> proxy_request(Stream& s, Connection& c, const site::RequestHead& head) {
  const site::Site& site = *c.settings.site;
  const CoverOrigin& origin = *c.settings.origin;
  c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(head.head_size));
  const bool keep_alive = site.keep_alive_allowed(head, c.requests);

  std::optional<std::uint64_t> body_length;
  Bytes body;
  if (head.content_length || head.chunked) {
    if (head.content_length && *head.content_length > origin.limits.client_max_body_size) {
      // nginx answers before reading the body, then discards it, then closes lingering.
      const site::Response r = site.status_page(413, head, false, std::chrono::system_clock::now());
      const Step after_page = co_await send_page(s, c, r, &head);
      co_return after_page;
    }
    const auto expect = head.header("Expect");
    if (head.version >= 11 && expect && iequals(*expect, "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      const asio::const_buffer interim = asio::buffer(kContinue);
      const bool written = co_await write_all(s, interim, c.limits);
      if (!written) {
        co_await close_connection(s, false);
        co_return Step::closed;
      }
    }
    const int status = co_await read_request_body(s, c, head, origin, body);
    if (status < 0) {
      co_await close_connection(s, false);
      co_return Step::closed;
    }
    if (status > 0) {
      const site::Response r = site.status_page(status, head, false, std::chrono::system_clock::now());
      const Step after_page = co_await send_page(s, c, r, nullptr);
      co_return after_page;
    }
    body_length = body.size();
  }

  Upstream up;
  OriginFail failed = co_await connect_origin(up, origin);
  cover::OriginResponse parsed;
  Bytes from_origin;
  if (failed == OriginFail::none) {
    std::string request = cover::origin_request_head(head, origin.url, body_length);
    request.append(body.begin(), body.end());
    crypto::wipe(body.data(), body.size());
    up.lowest().expires_after(origin.limits.send_timeout);
    const asio::const_buffer out = asio::buffer(request);
    const error_code wec = co_await up.write(out);
    if (wec) failed = fail_of(wec);
  }
  std::array<std::uint8_t, kReadChunk> chunk{};
  while (failed == OriginFail::none) {
    parsed = cover::parse_origin_response(from_origin, origin.limits.buffer_size);
    if (parsed.state != cover::OriginResponse::State::incomplete) break;
    up.lowest().expires_after(origin.limits.read_timeout);
    const asio::mutable_buffer into = asio::buffer(chunk);
    auto [ec, n] = co_await up.read_some(into);
    if (ec) {
      failed = fail_of(ec);
      break;
    }
    from_origin.insert(from_origin.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
  if (failed == OriginFail::none && parsed.state == cover::OriginResponse::State::error) failed = OriginFail::bad_gateway;
  if (failed != OriginFail::none) {
    if (up.tcp || up.tls) up.close();
    const int status = failed == OriginFail::timeout ? 504 : 502;
    const site::Response r = site.status_page(status, head, keep_alive, std::chrono::system_clock::now());
    const Step after_page = co_await send_page(s, c, r, nullptr);
      co_return after_page;
  }

  const cover::VisitorHead vh =
      cover::visitor_head(parsed, head, origin.url, c.listener, keep_alive, std::chrono::system_clock::now());
  from_origin.erase(from_origin.begin(), from_origin.begin() + static_cast<std::ptrdiff_t>(parsed.head_size));
  if (!vh.head.empty()) {
    const asio::const_buffer head_out = asio::buffer(vh.head);
    const bool written = co_await write_all(s, head_out, c.limits);
    if (!written) {
      up.close();
      co_await close_connection(s, false);
      co_return Step::closed;
    }
  }
  const bool complete = co_await relay_body(s, c, up, vh, from_origin, origin.limits);
  up.close();
  if (!complete || !vh.keep_alive) {
    co_await close_connection(s, true);
    co_return Step::closed;
  }
  co_return Step::next_request;
}

bool looks_like_tunnel(const site::RequestHead& head) {
  if (head.method != "GET" || head.version != 11) return false;
  if (head.target.size() != 1 + kFrontTokenChars || head.target[0] != '/') return false;
  const auto upgrade = head.header("Upgrade");
  return upgrade && iequals(*upgrade, "websocket") && head.header("Sec-WebSocket-Key").has_value();
}

// Checks the token of a tunnel request: valid, fresh and unused.
bool accept_token(const site::RequestHead& head, const FrontSettings& settings) {
  if (settings.auth == nullptr || settings.replay == nullptr) return false;
  const std::string_view token = std::string_view(head.target).substr(1);
  const std::string_view key = *head.header("Sec-WebSocket-Key");
  const std::int64_t now = unix_now();
  auto verified = settings.auth->verify(token, key, now, settings.window_seconds);
  if (!verified) {
    bump(settings.counters, &FrontCounters::tokens_refused);
    return false;
  }
  auto fresh = settings.replay->check_and_record(verified->nonce, verified->timestamp, now);
  if (!fresh || !*fresh) {
    bump(settings.counters, &FrontCounters::tokens_replayed);
    return false;
  }
  return true;
}

// Serves requests from the site until the connection ends or is handed over.
template <class Stream>
awaitable<Step> serve(Stream& s, Connection& c, bool plain) {
  const site::Site& site = *c.settings.site;
  for (;;) {
    // The next request's head: keepalive_timeout until its first byte (after a first request),
    // then client_header_timeout for the whole head (nginx sets that timer once, not per read).
    if (c.in.empty() && c.requests > 0) {
      tcp_of(s).expires_after(c.limits.keepalive_timeout);
      if (!co_await read_more(s, c)) {
        co_await close_connection(s, true);
        co_return Step::closed;
      }
    }
    tcp_of(s).expires_after(c.limits.client_header_timeout);
    site::ParseResult parsed;
    for (;;) {
      parsed = site::parse_request_head(c.in, c.limits);
      if (parsed.state != site::ParseState::incomplete) break;
      if (!co_await read_more(s, c)) {
        co_await close_connection(s, false);
        co_return Step::closed;
      }
    }
    const auto now = std::chrono::system_clock::now();
    if (parsed.state == site::ParseState::error) {
      if (parsed.error_status == 0) {
        co_await close_connection(s, false);
        co_return Step::closed;
      }
      const site::Response r = site.error_response(parsed, plain, now);
      bump(c.settings.counters, &FrontCounters::site_requests);
      if (!co_await send_response(s, r, c.limits)) {
        co_await close_connection(s, false);
        co_return Step::closed;
      }
      if (r.after == site::After::lingering_close) {
        co_await lingering_close(s, c.limits);
      } else {
        co_await close_connection(s, true);
      }
      co_return Step::closed;
    }
    ++c.requests;
    const site::RequestHead& head = parsed.head;
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      if (c.requests == 1 && looks_like_tunnel(head) && accept_token(head, c.settings)) {
        c.tunnel_head = head;
        c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(head.head_size));
        co_return Step::tunnel;
      }
      if (c.requests == 1 && c.settings.open_api && head.path.starts_with("/v1/")) co_return Step::open_api;
    }
    if (c.settings.origin != nullptr && !plain) {
      bump(c.settings.counters, &FrontCounters::site_requests);
      const Step step = co_await proxy_request(s, c, head);
      if (step != Step::next_request) co_return step;
      continue;
    }
    const site::Response r = site.respond(head, plain, now, c.requests, c.listener);
    bump(c.settings.counters, &FrontCounters::site_requests);
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(head.head_size));
    const Step after_page = co_await send_page(s, c, r, &head);
    if (after_page != Step::next_request) co_return after_page;
  }
}

}  // namespace

awaitable<FrontResult> run_front(tcp::socket socket, asio::ssl::context& tls, const FrontSettings& settings) {
  FrontResult result;
  bump(settings.counters, &FrontCounters::connections);
  const site::NginxLimits& limits = settings.site->limits();
  Connection c{settings, limits, {}, 0, {}, {}};
  {
    error_code ec;
    const auto local = socket.local_endpoint(ec);
    if (!ec) {
      c.listener.local_address =
          local.address().is_v6() ? "[" + local.address().to_string() + "]" : local.address().to_string();
      c.listener.port = local.port();
    }
  }

  // nginx peeks at the first byte to choose between TLS and plain HTTP, within
  // client_header_timeout of the accept.
  std::array<std::uint8_t, 1> first{};
  {
    asio::steady_timer deadline(co_await asio::this_coro::executor);
    deadline.expires_after(limits.client_header_timeout);
    deadline.async_wait([&socket](const error_code& ec) {
      if (!ec) {
        error_code ignored;
        socket.cancel(ignored);
      }
    });
    auto [ec, n] = co_await socket.async_receive(asio::buffer(first), tcp::socket::message_peek,
                                                 asio::as_tuple(use_awaitable));
    deadline.cancel();
    if (ec || n == 0) {
      error_code ignored;
      socket.close(ignored);
      co_return result;
    }
  }

  if (!site::first_byte_is_tls(first[0])) {
    bump(settings.counters, &FrontCounters::plain_http);
    c.listener.tls = false;
    beast::tcp_stream plain(std::move(socket));
    (void)co_await serve(plain, c, true);
    co_return result;
  }

  TlsStream stream(std::move(socket), tls);
  tcp_of(stream).expires_after(limits.client_header_timeout);
  auto [hs_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(use_awaitable));
  if (hs_ec) {
    bump(settings.counters, &FrontCounters::tls_handshake_failures);
    co_await close_connection(stream, false);
    co_return result;
  }
  const Step step = co_await serve(stream, c, false);
  if (step == Step::tunnel) {
    bump(settings.counters, &FrontCounters::tunnels);
    result.kind = FrontResult::Kind::tunnel;
    result.websocket_key = std::string(*c.tunnel_head.header("Sec-WebSocket-Key"));
    result.leftover = std::move(c.in);
    tcp_of(stream).expires_never();
    result.tls.emplace(std::move(stream));
  } else if (step == Step::open_api) {
    bump(settings.counters, &FrontCounters::open_api);
    result.kind = FrontResult::Kind::open_api;
    result.leftover = std::move(c.in);
    tcp_of(stream).expires_never();
    result.tls.emplace(std::move(stream));
  }
  co_return result;
}

Result<std::shared_ptr<asio::ssl::context>> make_front_tls_context(const std::string& cert_file,
                                                                   const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  // What nginx 1.22 sets up with Debian's nginx.conf ("ssl_protocols TLSv1 TLSv1.1 TLSv1.2
  // TLSv1.3; ssl_prefer_server_ciphers on;") and its defaults (ssl_ciphers HIGH:!aNULL:!MD5,
  // session tickets on); OpenSSL's system policy then rules out the old protocol versions.
  SSL_CTX_set_options(native, SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_COMPRESSION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);  // client renegotiation is off by default in OpenSSL 3
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
  if (SSL_CTX_set_cipher_list(native, "HIGH:!aNULL:!MD5") != 1) return Errc::bad_config;
  SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return Errc::bad_config;
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return Errc::bad_config;
  if (SSL_CTX_check_private_key(native) != 1) return Errc::bad_config;
  return ctx;
}

Result<CoverOrigin> make_cover_origin(std::string_view url) {
  auto parsed = cover::parse_origin_url(url);
  if (!parsed) return parsed.error();
  CoverOrigin origin;
  origin.url = std::move(*parsed);
  if (origin.url.tls) {
    origin.tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX* native = origin.tls->native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    if (SSL_CTX_set_default_verify_paths(native) != 1) return Errc::bad_config;
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
  }
  return origin;
}

}  // namespace postern::transport::net
