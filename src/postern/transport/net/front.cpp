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
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <openssl/ssl.h>

#include "postern/crypto/secret.h"
#include "postern/transport/errors.h"

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

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

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

// Reads and discards a request body of known length (nginx discards the body of a request it
// answers without reading it, then goes on with the next request).
template <class Stream>
awaitable<bool> discard_body(Stream& s, Connection& c, std::uint64_t length) {
  const std::uint64_t buffered = std::min<std::uint64_t>(length, c.in.size());
  c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(buffered));
  length -= buffered;
  std::array<std::uint8_t, kReadChunk> sink{};
  tcp_of(s).expires_after(c.limits.client_body_timeout);
  while (length > 0) {
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
    const site::Response r = site.respond(head, plain, now, c.requests, c.listener);
    bump(c.settings.counters, &FrontCounters::site_requests);
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(head.head_size));
    if (!co_await send_response(s, r, c.limits)) {
      co_await close_connection(s, false);
      co_return Step::closed;
    }
    if (r.after == site::After::lingering_close) {
      co_await lingering_close(s, c.limits);
      co_return Step::closed;
    }
    if (r.after == site::After::close) {
      co_await close_connection(s, true);
      co_return Step::closed;
    }
    if (r.discard_body) {
      if (head.chunked) {
        // Discarding a chunked body needs its parser; such a request ends the connection here.
        co_await lingering_close(s, c.limits);
        co_return Step::closed;
      }
      if (head.content_length && !co_await discard_body(s, c, *head.content_length)) {
        co_await close_connection(s, false);
        co_return Step::closed;
      }
    }
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

}  // namespace postern::transport::net
