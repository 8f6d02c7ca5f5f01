// The inner channel (src/postern/transport/net/inner_stream.h) end to end on 127.0.0.1: a client
// (connect_inner over a client TlsStream) and a server (run_front, then accept_inner), with Beast
// HTTP and WebSocket on top, the failure paths (wrong server key, refused and replayed tokens),
// and what the records look like on the wire (seen by a TLS-terminating relay in the middle).
#include "postern/transport/net/inner_stream.h"

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <gtest/gtest.h>

#include "postern/crypto/random.h"
#include "loopback.h"
#include "postern/server/tls_identity.h"
#include "postern/transport/errors.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/inner_record.h"
#include "postern/transport/net/any_stream.h"
#include "postern/transport/net/front.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/noise.h"
#include "postern/transport/site.h"
#include "postern/transport/upgrade.h"
#include "postern/transport/ws_frame.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
namespace pt = postern::transport;
namespace net = postern::transport::net;
namespace noise = postern::transport::noise;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using boost::system::error_code;
using net::AnyStream;
using net::InnerStream;
using net::TlsStream;
using postern::Bytes;
using postern::Result;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

#define CO_CHECK(cond)                                                                                        \
  do {                                                                                                        \
    if (!(cond))                                                                                              \
      throw std::runtime_error(std::string("check failed: ") + #cond + " at line " + std::to_string(__LINE__)); \
  } while (0)
#define CO_CHECK_EC(ec)                                                                                        \
  do {                                                                                                         \
    if (ec) throw std::runtime_error("error " + (ec).message() + " at line " + std::to_string(__LINE__));     \
  } while (0)

// ---- fixtures ----

const postern::transport::net::test::TempIdentity& identity() {
  static const postern::transport::net::test::TempIdentity id("inner_stream_test",
                                                             "<html><body>just a site</body></html>\n");
  return id;
}

using postern::transport::net::test::Runner;

// A server (front + inner channel) and what a client needs to reach it.
struct Env {
  std::shared_ptr<ssl::context> server_ctx;
  std::unique_ptr<ssl::context> client_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  postern::crypto::SystemRng rng;
  noise::KeyPair server_key = noise::KeyPair::generate(rng);
  std::optional<pt::FrontAuthenticator> auth;
  std::unique_ptr<pt::ReplayFilter> replay;
  std::optional<pt::site::Site> site;
  net::FrontCounters counters;
  net::FrontSettings settings;
  Runner r;  // after the contexts: destroyed first
  tcp::acceptor acceptor{r.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};

  Env() {
    auto ctx = net::make_front_tls_context(identity().cert, identity().key);
    if (!ctx) throw std::runtime_error("make_front_tls_context failed");
    server_ctx = *ctx;
    client_ctx->set_verify_mode(ssl::verify_none);
    auto a = pt::FrontAuthenticator::create(Bytes(pt::kFrontSecretSize, 0x42));
    if (!a) throw std::runtime_error("FrontAuthenticator::create failed");
    auth.emplace(std::move(*a));
    auto f = pt::ReplayFilter::open("", 120);
    if (!f) throw std::runtime_error("ReplayFilter::open failed");
    replay = std::move(*f);
    pt::site::NginxLimits limits;
    limits.client_header_timeout = 3000ms;
    limits.keepalive_timeout = 3000ms;
    limits.send_timeout = 3000ms;
    limits.client_body_timeout = 3000ms;
    limits.lingering_time = 2000ms;
    limits.lingering_timeout = 1000ms;
    auto s = pt::site::Site::open(identity().dir + "/site", limits);
    if (!s) throw std::runtime_error("Site::open failed");
    site.emplace(std::move(*s));
    settings.site = &*site;
    settings.auth = &*auth;
    settings.replay = replay.get();
    settings.counters = &counters;
  }
  ~Env() {
    // Let background work (cover timers, closes) finish before the io_context goes.
    r.io.restart();
    r.io.run_for(50ms);
  }
  ssl::context& tls() { return *server_ctx; }
  tcp::endpoint endpoint() const { return acceptor.local_endpoint(); }

  net::InnerClientOptions client_options() const {
    net::InnerClientOptions o;
    o.host_header = "localhost";
    o.auth = &*auth;
    o.server_key = server_key.public_key;
    o.timeout = 5000ms;
    return o;
  }
  net::InnerServerOptions server_options() const {
    net::InnerServerOptions o;
    o.static_key = &server_key;
    o.timeout = 5000ms;
    return o;
  }
};

awaitable<TlsStream> connect_tls(asio::io_context& io, tcp::endpoint ep, ssl::context& ctx) {
  tcp::socket s(io);
  co_await s.async_connect(ep, use_awaitable);
  TlsStream tls(std::move(s), ctx, ssl::stream_base::client);
  beast::get_lowest_layer(tls).expires_after(5s);
  co_await tls.async_handshake(ssl::stream_base::client, use_awaitable);
  beast::get_lowest_layer(tls).expires_never();
  co_return tls;
}

// The server's side of one connection as http_server.cpp does it: the front, then the channel.
awaitable<Result<InnerStream>> accept_channel(Env& env, net::InnerServerOptions options) {
  tcp::socket s = co_await env.acceptor.async_accept(use_awaitable);
  net::FrontResult fr = co_await net::run_front(std::move(s), env.tls(), env.settings);
  CO_CHECK(fr.kind == net::FrontResult::Kind::tunnel);
  CO_CHECK(fr.tls.has_value());
  co_return co_await net::accept_inner(std::move(*fr.tls), std::move(fr.leftover), std::move(fr.websocket_key),
                                       options);
}

using Body = std::function<awaitable<void>(InnerStream&)>;

// Opens a channel (client through `via`, default: straight to the server) and runs the two
// bodies, each owning its end.
void with_channel(Env& env, Body client_body, Body server_body, net::InnerClientOptions copts,
                  net::InnerServerOptions sopts, std::optional<tcp::endpoint> via = std::nullopt,
                  std::chrono::milliseconds limit = 8000ms) {
  const tcp::endpoint target = via ? *via : env.endpoint();
  env.r.spawn([&env, client_body, copts, target]() -> awaitable<void> {
    TlsStream tls = co_await connect_tls(env.r.io, target, *env.client_ctx);
    net::InnerClientReport report;
    auto inner = co_await net::connect_inner(std::move(tls), copts, &report);
    if (!inner) throw std::runtime_error("connect_inner failed: " + inner.error().message());
    CO_CHECK(report.http_status == 0);
    CO_CHECK(inner->handshake_hash().size() == 64);  // BLAKE2b
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    CO_CHECK(std::abs(inner->peer_unix_time() - now) < 60);
    co_await client_body(*inner);
  });
  env.r.spawn([&env, server_body, sopts]() -> awaitable<void> {
    auto inner = co_await accept_channel(env, sopts);
    if (!inner) throw std::runtime_error("accept_inner failed: " + inner.error().message());
    co_await server_body(*inner);
  });
  env.r.run(limit);
}

void with_channel(Env& env, Body client_body, Body server_body) {
  with_channel(env, std::move(client_body), std::move(server_body), env.client_options(), env.server_options());
}

unsigned char pattern(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  return static_cast<unsigned char>(x >> 56);
}

template <class Stream>
awaitable<void> send_pattern(Stream& s, std::uint64_t seed, std::uint64_t total) {
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::vector<unsigned char> msg;
  std::uint64_t offset = 0;
  while (offset < total) {
    const std::size_t size = static_cast<std::size_t>(
        std::min<std::uint64_t>(total - offset, std::uniform_int_distribution<std::size_t>(1, 150000)(rng)));
    msg.resize(size);
    for (std::size_t k = 0; k < size; ++k) msg[k] = pattern(seed, offset + k);
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(msg), tuple_awaitable);
    CO_CHECK_EC(ec);
    CO_CHECK(n == size);
    offset += size;
  }
}

template <class Stream>
awaitable<void> receive_pattern(Stream& s, std::uint64_t seed, std::uint64_t total) {
  std::mt19937 rng(static_cast<std::uint32_t>(seed * 7 + 1));
  std::vector<unsigned char> buf(100000);
  std::uint64_t offset = 0;
  while (offset < total) {
    const std::size_t want = std::uniform_int_distribution<std::size_t>(1, buf.size())(rng);
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf.data(), want), tuple_awaitable);
    CO_CHECK_EC(ec);
    CO_CHECK(n > 0);
    for (std::size_t k = 0; k < n; ++k) {
      if (buf[k] != pattern(seed, offset + k)) throw std::runtime_error("data mismatch at " + std::to_string(offset + k));
    }
    offset += n;
  }
  CO_CHECK(offset == total);
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

awaitable<std::string> read_exactly(InnerStream& s, std::size_t n) {
  std::string out(n, '\0');
  auto [ec, got] = co_await asio::async_read(s, asio::buffer(out), tuple_awaitable);
  CO_CHECK_EC(ec);
  CO_CHECK(got == n);
  co_return out;
}

awaitable<void> write_string(InnerStream& s, const std::string& data) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), tuple_awaitable);
  CO_CHECK_EC(ec);
  CO_CHECK(n == data.size());
}

// Reads until the peer's close: eof, after no further data.
awaitable<void> expect_eof(InnerStream& s) {
  char c = 0;
  auto [ec, n] = co_await s.async_read_some(asio::buffer(&c, 1), tuple_awaitable);
  if (ec != asio::error::eof) throw std::runtime_error("expected eof, got " + ec.message() + " n=" + std::to_string(n));
}

// ---- data ----

TEST(InnerStreamTest, SmallMessagesBothWays) {
  Env env;
  with_channel(
      env,
      [](InnerStream& s) -> awaitable<void> {
        for (int i = 0; i < 30; ++i) {
          const std::string m = "ping " + std::to_string(i) + std::string(static_cast<std::size_t>(i * 37), 'p');
          co_await write_string(s, m);
          const std::string expect = "pong " + std::to_string(i) + std::string(static_cast<std::size_t>(i * 53), 'q');
          CO_CHECK(co_await read_exactly(s, expect.size()) == expect);
        }
        // One byte, then an empty write (completes with 0 and sends nothing).
        co_await write_string(s, "!");
        auto [ec, n] = co_await s.async_write_some(asio::const_buffer(), tuple_awaitable);
        CO_CHECK_EC(ec);
        CO_CHECK(n == 0);
        auto [sec] = co_await s.async_shutdown(tuple_awaitable);
        CO_CHECK_EC(sec);
      },
      [](InnerStream& s) -> awaitable<void> {
        for (int i = 0; i < 30; ++i) {
          const std::string expect = "ping " + std::to_string(i) + std::string(static_cast<std::size_t>(i * 37), 'p');
          CO_CHECK(co_await read_exactly(s, expect.size()) == expect);
          co_await write_string(s, "pong " + std::to_string(i) + std::string(static_cast<std::size_t>(i * 53), 'q'));
        }
        CO_CHECK(co_await read_exactly(s, 1) == "!");
        co_await expect_eof(s);
      });
  EXPECT_EQ(env.counters.tunnels.load(), 1u);
  EXPECT_EQ(env.counters.site_requests.load(), 0u);
}

TEST(InnerStreamTest, OneMebibyteEachWayFullDuplex) {
  Env env;
  constexpr std::uint64_t kTotal = 1 << 20;
  auto body = [&env](std::uint64_t send_seed, std::uint64_t receive_seed) {
    return [&env, send_seed, receive_seed](InnerStream& s) -> awaitable<void> {
      bool sent = false;
      env.r.spawn([&s, &sent, send_seed]() -> awaitable<void> {
        co_await send_pattern(s, send_seed, kTotal);
        sent = true;
      });
      co_await receive_pattern(s, receive_seed, kTotal);
      while (!sent) co_await sleep_for(5ms);
      // Both directions done; wait for the peer's close so neither side resets the other.
      co_await sleep_for(20ms);
    };
  };
  const auto start = Clock::now();
  with_channel(env, body(11, 22), body(22, 11));
  std::printf("[ inner ] 1 MiB each way in %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()));
}

// ---- Beast on top ----

TEST(InnerStreamTest, BeastHttpOverAnyStream) {
  Env env;
  const std::string big(100000, 'b');
  with_channel(
      env,
      [&big](InnerStream& inner) -> awaitable<void> {
        AnyStream s(std::move(inner));
        beast::flat_buffer buffer;
        for (int i = 0; i < 3; ++i) {
          http::request<http::string_body> req{http::verb::post, "/v1/item/" + std::to_string(i), 11};
          req.set(http::field::host, "localhost");
          req.body() = std::to_string(i) + big;
          req.prepare_payload();
          co_await http::async_write(s, req, use_awaitable);
          http::response<http::string_body> res;
          co_await http::async_read(s, buffer, res, use_awaitable);
          CO_CHECK(res.result() == http::status::ok);
          CO_CHECK(res.body() == "got " + std::to_string(i) + " " + std::to_string(big.size() + 1));
        }
        auto [ec] = co_await s.async_shutdown(tuple_awaitable);
        CO_CHECK_EC(ec);
      },
      [&big](InnerStream& inner) -> awaitable<void> {
        AnyStream s(std::move(inner));
        beast::flat_buffer buffer;
        for (int i = 0; i < 3; ++i) {
          http::request<http::string_body> req;
          auto [ec, n] = co_await http::async_read(s, buffer, req, tuple_awaitable);
          CO_CHECK_EC(ec);
          CO_CHECK(req.method() == http::verb::post);
          CO_CHECK(req.target() == "/v1/item/" + std::to_string(i));
          CO_CHECK(req.body() == std::to_string(i) + big);
          http::response<http::string_body> res{http::status::ok, 11};
          res.body() = "got " + std::to_string(i) + " " + std::to_string(req.body().size());
          res.prepare_payload();
          co_await http::async_write(s, res, use_awaitable);
        }
        http::request<http::string_body> req;
        auto [ec, n] = co_await http::async_read(s, buffer, req, tuple_awaitable);
        CO_CHECK(ec == http::error::end_of_stream);
      });
}

TEST(InnerStreamTest, WebSocketOverInnerChannel) {
  Env env;
  constexpr int kMessages = 20;
  auto message = [](const char* dir, int i) {
    std::string m = std::string(dir) + std::to_string(i) + ":";
    for (int k = 0; k < i * 3001; ++k) m.push_back(static_cast<char>(pattern(static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(k))));
    return m;
  };
  bool client_closed = false, server_saw_close = false;
  with_channel(
      env,
      [&](InnerStream& inner) -> awaitable<void> {
        websocket::stream<AnyStream> ws(AnyStream(std::move(inner)));
        co_await ws.async_handshake("localhost", "/ws", use_awaitable);
        ws.binary(true);
        bool writes_done = false;
        env.r.spawn([&]() -> awaitable<void> {
          for (int i = 0; i < kMessages; ++i) {
            const std::string m = message("up", i);
            co_await ws.async_write(asio::buffer(m), use_awaitable);
          }
          writes_done = true;
        });
        beast::flat_buffer buffer;
        for (int i = 0; i < kMessages; ++i) {
          buffer.clear();
          co_await ws.async_read(buffer, use_awaitable);
          CO_CHECK(ws.got_binary());
          CO_CHECK(beast::buffers_to_string(buffer.data()) == message("down", i));
        }
        while (!writes_done) co_await sleep_for(5ms);
        auto [ec] = co_await ws.async_close(websocket::close_code::normal, tuple_awaitable);
        CO_CHECK_EC(ec);
        client_closed = true;
      },
      [&](InnerStream& inner) -> awaitable<void> {
        websocket::stream<AnyStream> ws(AnyStream(std::move(inner)));
        co_await ws.async_accept(use_awaitable);
        ws.binary(true);
        env.r.spawn([&]() -> awaitable<void> {
          for (int i = 0; i < kMessages; ++i) {
            const std::string m = message("down", i);
            co_await ws.async_write(asio::buffer(m), use_awaitable);
          }
        });
        beast::flat_buffer buffer;
        for (int i = 0;; ++i) {
          buffer.clear();
          auto [ec, n] = co_await ws.async_read(buffer, tuple_awaitable);
          if (ec == websocket::error::closed) {
            CO_CHECK(i == kMessages);
            CO_CHECK(ws.reason().code == websocket::close_code::normal);
            server_saw_close = true;
            break;
          }
          CO_CHECK_EC(ec);
          CO_CHECK(beast::buffers_to_string(buffer.data()) == message("up", i));
        }
      });
  EXPECT_TRUE(client_closed);
  EXPECT_TRUE(server_saw_close);
}

// ---- refusals ----

TEST(InnerStreamTest, WrongServerKeyFailsTheHandshake) {
  Env env;
  auto copts = env.client_options();
  copts.server_key = noise::KeyPair::generate(env.rng).public_key;  // not the server's
  std::optional<std::error_code> client_error, server_error;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await connect_tls(env.r.io, env.endpoint(), *env.client_ctx);
    net::InnerClientReport report;
    auto inner = co_await net::connect_inner(std::move(tls), copts, &report);
    CO_CHECK(!inner);  // never a stream
    client_error = inner.error();
    CO_CHECK(report.http_status == 0);
  });
  env.r.spawn([&]() -> awaitable<void> {
    auto inner = co_await accept_channel(env, env.server_options());
    CO_CHECK(!inner);
    server_error = inner.error();
  });
  env.r.run();
  ASSERT_TRUE(client_error.has_value());
  ASSERT_TRUE(server_error.has_value());
  EXPECT_EQ(*client_error, pt::Errc::handshake_failed) << client_error->message();
  EXPECT_EQ(*server_error, pt::Errc::handshake_failed) << server_error->message();
  EXPECT_EQ(env.counters.tunnels.load(), 1u);  // the front let it through: the token was right
}

TEST(InnerStreamTest, WrongFrontSecretGetsTheSite) {
  Env env;
  auto other = pt::FrontAuthenticator::create(Bytes(pt::kFrontSecretSize, 0x17));
  ASSERT_TRUE(other.ok());
  auto copts = env.client_options();
  copts.auth = &*other;
  std::optional<std::error_code> client_error;
  net::InnerClientReport report;
  std::optional<net::FrontResult::Kind> front_kind;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await connect_tls(env.r.io, env.endpoint(), *env.client_ctx);
    auto inner = co_await net::connect_inner(std::move(tls), copts, &report);
    CO_CHECK(!inner);
    client_error = inner.error();
  });
  env.r.spawn([&]() -> awaitable<void> {
    tcp::socket s = co_await env.acceptor.async_accept(use_awaitable);
    net::FrontResult fr = co_await net::run_front(std::move(s), env.tls(), env.settings);
    front_kind = fr.kind;
    CO_CHECK(!fr.tls.has_value());
  });
  env.r.run();
  ASSERT_TRUE(client_error.has_value());
  EXPECT_EQ(*client_error, pt::Errc::bad_token) << client_error->message();
  EXPECT_EQ(report.http_status, 404u);
  ASSERT_TRUE(report.server_date.has_value());
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LT(std::abs(*report.server_date - now), 60);
  ASSERT_TRUE(front_kind.has_value());
  EXPECT_EQ(*front_kind, net::FrontResult::Kind::done);
  EXPECT_EQ(env.counters.tokens_refused.load(), 1u);
  // The 404, then (as nginx does with pipelined bytes after a keep-alive answer) a 400 for the
  // WebSocket frame that followed the request head.
  EXPECT_EQ(env.counters.site_requests.load(), 2u);
  EXPECT_EQ(env.counters.tunnels.load(), 0u);
}

TEST(InnerStreamTest, ClockOutsideTheWindowGetsTheSite) {
  Env env;
  auto copts = env.client_options();
  copts.clock_offset_seconds = -3600;
  std::optional<std::error_code> client_error;
  net::InnerClientReport report;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await connect_tls(env.r.io, env.endpoint(), *env.client_ctx);
    auto inner = co_await net::connect_inner(std::move(tls), copts, &report);
    CO_CHECK(!inner);
    client_error = inner.error();
  });
  env.r.spawn([&]() -> awaitable<void> {
    tcp::socket s = co_await env.acceptor.async_accept(use_awaitable);
    net::FrontResult fr = co_await net::run_front(std::move(s), env.tls(), env.settings);
    CO_CHECK(fr.kind == net::FrontResult::Kind::done);
  });
  env.r.run();
  ASSERT_TRUE(client_error.has_value());
  EXPECT_EQ(*client_error, pt::Errc::bad_token);
  EXPECT_EQ(report.http_status, 404u);
  EXPECT_TRUE(report.server_date.has_value());
  EXPECT_EQ(env.counters.tokens_refused.load(), 1u);
}

// The same upgrade request bytes on two connections: the first is handed over, the second is
// answered by the site.
TEST(InnerStreamTest, ReplayedUpgradeRequestGetsTheSite) {
  Env env;
  const std::string key = pt::upgrade::make_key(env.rng);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string token = env.auth->make_token(env.rng, now, key);
  const std::string request = pt::upgrade::client_request("localhost", token, key);
  std::vector<net::FrontResult::Kind> kinds;
  std::vector<std::string> answers;
  env.r.spawn([&]() -> awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      tcp::socket s = co_await env.acceptor.async_accept(use_awaitable);
      net::FrontResult fr = co_await net::run_front(std::move(s), env.tls(), env.settings);
      kinds.push_back(fr.kind);
      if (fr.kind == net::FrontResult::Kind::tunnel) {
        CO_CHECK(fr.leftover.empty());  // nothing came after the head
        CO_CHECK(fr.websocket_key == key);
      }
      // fr.tls (if any) is dropped here: the connection closes.
    }
  });
  env.r.spawn([&]() -> awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      TlsStream tls = co_await connect_tls(env.r.io, env.endpoint(), *env.client_ctx);
      co_await asio::async_write(tls, asio::buffer(request), use_awaitable);
      beast::get_lowest_layer(tls).expires_after(5s);
      std::string got;
      char buf[4096];
      for (;;) {
        auto [ec, n] = co_await tls.async_read_some(asio::buffer(buf), tuple_awaitable);
        got.append(buf, n);
        if (ec) {
          CO_CHECK(ec != beast::error::timeout);
          break;
        }
        if (got.find("\r\n\r\n") != std::string::npos) break;
      }
      answers.push_back(got);
    }
  });
  env.r.run();
  ASSERT_EQ(kinds.size(), 2u);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(kinds[0], net::FrontResult::Kind::tunnel);
  EXPECT_EQ(answers[0], "");  // handed over: the front itself answers nothing
  EXPECT_EQ(kinds[1], net::FrontResult::Kind::done);
  EXPECT_EQ(answers[1].rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << answers[1];
  EXPECT_EQ(answers[1].find("101"), std::string::npos);
  EXPECT_EQ(env.counters.tunnels.load(), 1u);
  EXPECT_EQ(env.counters.tokens_replayed.load(), 1u);
  EXPECT_EQ(env.counters.tokens_refused.load(), 0u);
}

// ---- shutdown ----

void shutdown_gives_eof(bool client_shuts_down) {
  Env env;
  auto closer = [](InnerStream& s) -> awaitable<void> {
    co_await write_string(s, "last words");
    auto [ec] = co_await s.async_shutdown(tuple_awaitable);
    CO_CHECK_EC(ec);
    // Nothing more can be written.
    auto [wec, n] = co_await s.async_write_some(asio::buffer("x", 1), tuple_awaitable);
    CO_CHECK(wec);
    CO_CHECK(n == 0);
    co_await sleep_for(50ms);  // keep the socket open until the peer has read
  };
  auto reader = [](InnerStream& s) -> awaitable<void> {
    CO_CHECK(co_await read_exactly(s, 10) == "last words");
    co_await expect_eof(s);
    co_await expect_eof(s);  // and stays so
  };
  if (client_shuts_down) {
    with_channel(env, closer, reader);
  } else {
    with_channel(env, reader, closer);
  }
}

TEST(InnerStreamTest, ClientShutdownGivesServerEof) { shutdown_gives_eof(true); }
TEST(InnerStreamTest, ServerShutdownGivesClientEof) { shutdown_gives_eof(false); }

// ---- on the wire ----

// WebSocket frames of one direction, as a TLS-terminating relay sees them after the HTTP head.
struct FrameLog {
  bool masked = false;
  Bytes buf;
  bool head_done = false;
  struct Frame {
    Clock::time_point at;
    pt::ws::Opcode opcode;
    std::uint64_t payload;
  };
  std::vector<Frame> frames;
  std::string error;

  void feed(const std::uint8_t* p, std::size_t n) {
    buf.insert(buf.end(), p, p + n);
    if (!head_done) {
      static const std::string kEnd = "\r\n\r\n";
      auto it = std::search(buf.begin(), buf.end(), kEnd.begin(), kEnd.end());
      if (it == buf.end()) return;
      buf.erase(buf.begin(), it + 4);
      head_done = true;
    }
    for (;;) {
      auto h = pt::ws::parse_frame_header(buf, masked, noise::kMaxMessage);
      if (!h) {
        error = "bad frame: " + h.error().message();
        buf.clear();
        return;
      }
      if (!*h) return;
      const std::size_t size = (*h)->header_size + static_cast<std::size_t>((*h)->payload_size);
      if (buf.size() < size) return;
      frames.push_back({Clock::now(), (*h)->opcode, (*h)->payload_size});
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(size));
    }
  }
};

awaitable<void> pump(TlsStream& from, TlsStream& to, FrameLog& log) {
  std::vector<std::uint8_t> buf(32 * 1024);
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), tuple_awaitable);
    if (ec == asio::error::eof) {
      // close_notify: pass the half-close on, the other direction goes on.
      co_await to.async_shutdown(tuple_awaitable);
      co_return;
    }
    if (ec) break;
    log.feed(buf.data(), n);
    auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), tuple_awaitable);
    if (wec) break;
  }
  error_code ignored;
  beast::get_lowest_layer(from).socket().close(ignored);
  beast::get_lowest_layer(to).socket().close(ignored);
}

// A relay that terminates the client's TLS and opens its own to the server, logging the frames
// in each direction. Ends when either side closes.
struct Relay {
  tcp::acceptor acceptor;
  FrameLog up, down;
  explicit Relay(asio::io_context& io) : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    up.masked = true;
  }
  void start(Env& env) {
    env.r.spawn([this, &env]() -> awaitable<void> {
      tcp::socket a = co_await acceptor.async_accept(use_awaitable);
      auto in = std::make_shared<TlsStream>(std::move(a), env.tls(), ssl::stream_base::server);
      co_await in->async_handshake(ssl::stream_base::server, use_awaitable);
      auto out = std::make_shared<TlsStream>(co_await connect_tls(env.r.io, env.endpoint(), *env.client_ctx));
      env.r.spawn([in, out, this]() -> awaitable<void> { co_await pump(*out, *in, down); });
      co_await pump(*in, *out, up);
    });
  }
};

std::set<std::uint64_t> allowed_payload_sizes(const pt::inner::ShapingPolicy& p) {
  std::set<std::uint64_t> sizes;
  for (auto b : p.padding.buckets) sizes.insert(b + noise::kTagSize);
  for (auto b : p.first_burst_up) sizes.insert(b + noise::kTagSize);
  for (auto b : p.first_burst_down) sizes.insert(b + noise::kTagSize);
  return sizes;
}

TEST(InnerStreamTest, RecordsArePaddedOnTheWire) {
  Env env;
  Relay relay(env.r.io);
  relay.start(env);
  const auto policy = pt::inner::ShapingPolicy::defaults();
  const std::string big(3000, 'B');
  with_channel(
      env,
      [&](InnerStream& s) -> awaitable<void> {
        for (int i = 0; i < 4; ++i) {
          co_await write_string(s, std::string(1, static_cast<char>('a' + i)));
          CO_CHECK(co_await read_exactly(s, 1) == std::string(1, static_cast<char>('A' + i)));
        }
        co_await write_string(s, big);
        CO_CHECK(co_await read_exactly(s, big.size()) == big);
        auto [ec] = co_await s.async_shutdown(tuple_awaitable);
        CO_CHECK_EC(ec);
        co_await expect_eof(s);
      },
      [&](InnerStream& s) -> awaitable<void> {
        for (int i = 0; i < 4; ++i) {
          CO_CHECK(co_await read_exactly(s, 1) == std::string(1, static_cast<char>('a' + i)));
          co_await write_string(s, std::string(1, static_cast<char>('A' + i)));
        }
        CO_CHECK(co_await read_exactly(s, big.size()) == big);
        co_await write_string(s, big);
        co_await expect_eof(s);
        auto [ec] = co_await s.async_shutdown(tuple_awaitable);
        CO_CHECK_EC(ec);
      },
      env.client_options(), env.server_options(), relay.acceptor.local_endpoint());
  ASSERT_EQ(relay.up.error, "");
  ASSERT_EQ(relay.down.error, "");
  auto payloads = [](const FrameLog& log) {
    std::vector<std::uint64_t> out;
    for (const auto& f : log.frames) {
      EXPECT_EQ(f.opcode, pt::ws::Opcode::binary);
      out.push_back(f.payload);
    }
    return out;
  };
  const std::uint64_t tag = noise::kTagSize;
  const std::uint64_t handshake = noise::kDhSize + policy.handshake_padding + tag;  // 248
  const std::uint64_t smallest = policy.padding.buckets.front() + tag;
  // Client: handshake, the three first-burst records (1 byte each), then the smallest bucket for
  // 1 byte, the 4072 bucket for 3000 bytes, and the close record (smallest bucket).
  const std::vector<std::uint64_t> up_expected = {handshake,
                                                  policy.first_burst_up[0] + tag,
                                                  policy.first_burst_up[1] + tag,
                                                  policy.first_burst_up[2] + tag,
                                                  smallest,
                                                  4072 + tag,
                                                  smallest};
  const std::vector<std::uint64_t> down_expected = {handshake,
                                                    policy.first_burst_down[0] + tag,
                                                    policy.first_burst_down[1] + tag,
                                                    policy.first_burst_down[2] + tag,
                                                    smallest,
                                                    4072 + tag,
                                                    smallest};
  EXPECT_EQ(payloads(relay.up), up_expected);
  EXPECT_EQ(payloads(relay.down), down_expected);
  const auto allowed = allowed_payload_sizes(policy);
  for (const auto* log : {&relay.up, &relay.down}) {
    for (std::size_t i = 1; i < log->frames.size(); ++i) {
      EXPECT_TRUE(allowed.count(log->frames[i].payload)) << "frame " << i << ": " << log->frames[i].payload;
    }
  }
}

TEST(InnerStreamTest, CoverRecordsWhenIdleAreNotData) {
  Env env;
  Relay relay(env.r.io);
  relay.start(env);
  auto copts = env.client_options();
  copts.shaping.cover_interval = 100ms;
  auto sopts = env.server_options();
  sopts.shaping.cover_interval = 100ms;
  constexpr auto kIdle = 700ms;
  Clock::time_point opened{}, x_sent{}, y_sent{};
  with_channel(
      env,
      [&](InnerStream& s) -> awaitable<void> {
        opened = Clock::now();
        bool got_y = false;
        env.r.spawn([&]() -> awaitable<void> {
          char buf[64];
          auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tuple_awaitable);
          CO_CHECK_EC(ec);
          CO_CHECK(n == 1 && buf[0] == 'y');  // the cover records before it were not data
          CO_CHECK(Clock::now() >= opened + kIdle);
          got_y = true;
        });
        co_await sleep_for(kIdle);
        x_sent = Clock::now();
        co_await write_string(s, "x");
        while (!got_y) co_await sleep_for(5ms);
        auto [ec] = co_await s.async_shutdown(tuple_awaitable);
        CO_CHECK_EC(ec);
        co_await expect_eof(s);
      },
      [&](InnerStream& s) -> awaitable<void> {
        char buf[64];
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tuple_awaitable);
        CO_CHECK_EC(ec);
        CO_CHECK(n == 1 && buf[0] == 'x');
        co_await sleep_for(50ms);
        y_sent = Clock::now();
        co_await write_string(s, "y");
        co_await expect_eof(s);
        auto [sec] = co_await s.async_shutdown(tuple_awaitable);
        CO_CHECK_EC(sec);
      },
      copts, sopts, relay.acceptor.local_endpoint());
  ASSERT_EQ(relay.up.error, "");
  ASSERT_EQ(relay.down.error, "");
  const auto policy = pt::inner::ShapingPolicy::defaults();
  const std::uint64_t smallest = policy.padding.buckets.front() + noise::kTagSize;
  // Frames sent while idle (after the handshake frame, before the data): all cover records of
  // the smallest bucket, 50..150 ms apart.
  auto check_idle = [&](const FrameLog& log, Clock::time_point data_at, const char* what) {
    ASSERT_GE(log.frames.size(), 2u) << what;
    std::vector<Clock::time_point> covers;
    for (std::size_t i = 1; i < log.frames.size() && log.frames[i].at < data_at; ++i) {
      EXPECT_EQ(log.frames[i].payload, smallest) << what << " frame " << i;
      covers.push_back(log.frames[i].at);
    }
    EXPECT_GE(covers.size(), 3u) << what;
    EXPECT_LE(covers.size(), 16u) << what;
    for (std::size_t i = 1; i < covers.size(); ++i) {
      EXPECT_GE(covers[i] - covers[i - 1], 40ms) << what << " cover " << i;
    }
    std::printf("[ cover ] %s: %zu cover records in %lld ms of silence\n", what, covers.size(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(data_at - opened).count()));
  };
  check_idle(relay.up, x_sent, "client");
  check_idle(relay.down, x_sent, "server");  // the server is idle until it reads "x"
  (void)y_sent;
}

}  // namespace
