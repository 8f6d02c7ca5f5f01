// The front (src/postern/transport/net/front.h) on 127.0.0.1: plain HTTP on the TLS port, TLS
// garbage, the site over TLS with keep-alive, the open API and tunnel hand-overs, and its counters.
#include "postern/transport/net/front.h"

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <gtest/gtest.h>

#include "postern/crypto/random.h"
#include "loopback.h"
#include "postern/server/tls_identity.h"
#include "postern/transport/errors.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/site.h"
#include "postern/transport/upgrade.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace pt = postern::transport;
namespace net = postern::transport::net;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using boost::system::error_code;
using net::FrontResult;
using net::TlsStream;
using postern::Bytes;
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

const std::string kIndex = "<html><body><h1>Welcome to our bakery</h1></body></html>\n";

const postern::transport::net::test::TempIdentity& files() {
  static const postern::transport::net::test::TempIdentity f("front_test", kIndex);
  return f;
}

using postern::transport::net::test::Runner;

struct Env {
  std::shared_ptr<ssl::context> server_ctx;
  ssl::context client_ctx{ssl::context::tls_client};
  postern::crypto::SystemRng rng;
  std::optional<pt::FrontAuthenticator> auth;
  std::unique_ptr<pt::ReplayFilter> replay;
  std::optional<pt::site::Site> site;
  net::FrontCounters counters;
  net::FrontSettings settings;
  Runner r;
  tcp::acceptor acceptor{r.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::vector<FrontResult> results;

  Env() {
    auto ctx = net::make_front_tls_context(files().cert, files().key);
    if (!ctx) throw std::runtime_error("make_front_tls_context failed");
    server_ctx = *ctx;
    client_ctx.set_verify_mode(ssl::verify_none);
    auto a = pt::FrontAuthenticator::create(Bytes(pt::kFrontSecretSize, 0x33));
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
    auto s = pt::site::Site::open(files().site, limits);
    if (!s) throw std::runtime_error("Site::open failed");
    site.emplace(std::move(*s));
    settings.site = &*site;
    settings.auth = &*auth;
    settings.replay = replay.get();
    settings.counters = &counters;
  }

  // Runs the front on the next `connections` accepted connections, one after the other;
  // `handed` is called for each hand-over (with the result, which it may use).
  template <class F>
  void serve(int connections, F handed) {
    r.spawn([this, connections, handed]() mutable -> awaitable<void> {
      for (int i = 0; i < connections; ++i) {
        tcp::socket s = co_await acceptor.async_accept(use_awaitable);
        FrontResult fr = co_await net::run_front(std::move(s), *server_ctx, settings);
        if (fr.kind != FrontResult::Kind::done) co_await handed(fr);
        results.push_back(std::move(fr));
      }
    });
  }
  void serve(int connections) {
    // A handed-over connection is dropped (closed).
    serve(connections, [](FrontResult& fr) -> awaitable<void> {
      fr.tls.reset();
      co_return;
    });
  }

  awaitable<TlsStream> connect_tls() {
    tcp::socket s(r.io);
    co_await s.async_connect(acceptor.local_endpoint(), use_awaitable);
    TlsStream tls(std::move(s), client_ctx, ssl::stream_base::client);
    beast::get_lowest_layer(tls).expires_after(5s);
    co_await tls.async_handshake(ssl::stream_base::client, use_awaitable);
    co_return tls;
  }

  std::uint64_t count(std::atomic<std::uint64_t> net::FrontCounters::*field) const { return (counters.*field).load(); }
};

// Reads until EOF or an error (bounded by a 5 s timeout, which fails the check).
template <class Stream>
awaitable<std::string> read_to_end(Stream& s) {
  beast::get_lowest_layer(s).expires_after(5s);
  std::string got;
  char buf[4096];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tuple_awaitable);
    got.append(buf, n);
    if (ec) {
      CO_CHECK(ec != beast::error::timeout);
      break;
    }
  }
  co_return got;
}

http::request<http::empty_body> get(const std::string& target) {
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::user_agent, "curl/7.88.1");
  return req;
}

TEST(FrontTest, PlainHttpOnTheTlsPort) {
  Env env;
  env.serve(1);
  std::string answer;
  env.r.spawn([&]() -> awaitable<void> {
    beast::tcp_stream s(env.r.io);
    co_await s.async_connect(env.acceptor.local_endpoint(), use_awaitable);
    const std::string req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    co_await asio::async_write(s, asio::buffer(req), use_awaitable);
    answer = co_await read_to_end(s);
  });
  env.r.run();
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("The plain HTTP request was sent to HTTPS port"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Server: nginx/1.22.1"), std::string::npos) << answer;
  ASSERT_EQ(env.results.size(), 1u);
  EXPECT_EQ(env.results[0].kind, FrontResult::Kind::done);
  EXPECT_EQ(env.count(&net::FrontCounters::connections), 1u);
  EXPECT_EQ(env.count(&net::FrontCounters::plain_http), 1u);
  EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 1u);
  EXPECT_EQ(env.count(&net::FrontCounters::tls_handshake_failures), 0u);
}

TEST(FrontTest, TlsRecordByteThenGarbageIsClosedWithoutHttp) {
  Env env;
  env.serve(2);
  std::vector<std::string> answers;
  env.r.spawn([&]() -> awaitable<void> {
    std::mt19937 rng(5);
    for (int i = 0; i < 2; ++i) {
      beast::tcp_stream s(env.r.io);
      co_await s.async_connect(env.acceptor.local_endpoint(), use_awaitable);
      std::string junk(1, '\x16');
      if (i == 0) {
        // A handshake record header announcing a ClientHello that is garbage.
        junk += std::string("\x03\x01\x00\x40", 4);
        for (int k = 0; k < 0x40; ++k) junk.push_back(static_cast<char>(rng()));
      } else {
        // Garbage right after the first byte, then the client stops sending.
        junk += "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
      }
      co_await asio::async_write(s, asio::buffer(junk), use_awaitable);
      error_code ignored;
      s.socket().shutdown(tcp::socket::shutdown_send, ignored);
      answers.push_back(co_await read_to_end(s));
    }
  });
  env.r.run();
  ASSERT_EQ(answers.size(), 2u);
  for (const auto& a : answers) {
    EXPECT_EQ(a.find("HTTP/"), std::string::npos) << a;
    // At most a TLS alert record.
    if (!a.empty()) {
      EXPECT_EQ(static_cast<unsigned char>(a[0]), 0x15u);
    }
  }
  ASSERT_EQ(env.results.size(), 2u);
  EXPECT_EQ(env.count(&net::FrontCounters::connections), 2u);
  EXPECT_EQ(env.count(&net::FrontCounters::tls_handshake_failures), 2u);
  EXPECT_EQ(env.count(&net::FrontCounters::plain_http), 0u);
  EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 0u);
}

// GET / (200, index.html), GET /nothing (404), GET / again: one connection, kept alive.
TEST(FrontTest, SiteOverTlsWithKeepAlive) {
  Env env;
  env.serve(1);
  std::vector<http::response<http::string_body>> responses;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await env.connect_tls();
    beast::flat_buffer buffer;
    for (const char* target : {"/", "/nothing", "/"}) {
      auto req = get(target);
      co_await http::async_write(tls, req, use_awaitable);
      http::response<http::string_body> res;
      co_await http::async_read(tls, buffer, res, use_awaitable);
      CO_CHECK(res.keep_alive());
      responses.push_back(std::move(res));
    }
    auto [ec] = co_await tls.async_shutdown(tuple_awaitable);
    CO_CHECK_EC(ec);
    // The front answers our close_notify and closes.
    const std::string rest = co_await read_to_end(tls);
    CO_CHECK(rest.empty());
  });
  env.r.run();
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[0].result_int(), 200u);
  EXPECT_EQ(responses[0].body(), kIndex);
  EXPECT_EQ(responses[0][http::field::server], "nginx/1.22.1");
  EXPECT_EQ(responses[0][http::field::content_type], "text/html");
  EXPECT_EQ(responses[1].result_int(), 404u);
  EXPECT_NE(responses[1].body().find("<center><h1>404 Not Found</h1></center>"), std::string::npos)
      << responses[1].body();
  EXPECT_EQ(responses[2].result_int(), 200u);
  EXPECT_EQ(responses[2].body(), kIndex);
  ASSERT_EQ(env.results.size(), 1u);
  EXPECT_EQ(env.results[0].kind, FrontResult::Kind::done);
  EXPECT_FALSE(env.results[0].tls.has_value());
  EXPECT_EQ(env.count(&net::FrontCounters::connections), 1u);
  EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 3u);
  EXPECT_EQ(env.count(&net::FrontCounters::tunnels), 0u);
  EXPECT_EQ(env.count(&net::FrontCounters::tokens_refused), 0u);  // none looked like a tunnel
}

// Two requests in one write (pipelined): both answered, in order.
TEST(FrontTest, PipelinedRequests) {
  Env env;
  env.serve(1);
  std::vector<unsigned> statuses;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await env.connect_tls();
    const std::string two = "GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    co_await asio::async_write(tls, asio::buffer(two), use_awaitable);
    beast::flat_buffer buffer;
    for (int i = 0; i < 2; ++i) {
      http::response<http::string_body> res;
      co_await http::async_read(tls, buffer, res, use_awaitable);
      statuses.push_back(res.result_int());
    }
  });
  env.r.run();
  EXPECT_EQ(statuses, (std::vector<unsigned>{404, 200}));
  EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 2u);
}

void open_api(bool enabled) {
  Env env;
  env.settings.open_api = enabled;
  const std::string request = "GET /v1/x HTTP/1.1\r\nHost: localhost\r\nUser-Agent: postern\r\n\r\n";
  env.serve(1, [](FrontResult& fr) -> awaitable<void> {
    // The open API's HTTP server takes over the stream: answer one request on it.
    CO_CHECK(fr.tls.has_value());
    const std::string res = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\napi";
    co_await asio::async_write(*fr.tls, asio::buffer(res), use_awaitable);
    co_await fr.tls->async_shutdown(tuple_awaitable);
    fr.tls.reset();
  });
  unsigned status = 0;
  std::string body;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await env.connect_tls();
    co_await asio::async_write(tls, asio::buffer(request), use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(tls, buffer, res, use_awaitable);
    status = res.result_int();
    body = res.body();
  });
  env.r.run();
  ASSERT_EQ(env.results.size(), 1u);
  if (enabled) {
    EXPECT_EQ(env.results[0].kind, FrontResult::Kind::open_api);
    EXPECT_EQ(std::string(env.results[0].leftover.begin(), env.results[0].leftover.end()), request);
    EXPECT_EQ(status, 200u);
    EXPECT_EQ(body, "api");
    EXPECT_EQ(env.count(&net::FrontCounters::open_api), 1u);
    EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 0u);
  } else {
    EXPECT_EQ(env.results[0].kind, FrontResult::Kind::done);
    EXPECT_EQ(status, 404u);
    EXPECT_EQ(env.count(&net::FrontCounters::open_api), 0u);
    EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 1u);
  }
}

TEST(FrontTest, OpenApiHandsOverV1Requests) { open_api(true); }
TEST(FrontTest, OpenApiOffServesTheSite) { open_api(false); }

// Only the first request of a connection may be handed over to the open API.
TEST(FrontTest, OpenApiOnlyForTheFirstRequest) {
  Env env;
  env.settings.open_api = true;
  env.serve(1);
  std::vector<unsigned> statuses;
  env.r.spawn([&]() -> awaitable<void> {
    TlsStream tls = co_await env.connect_tls();
    beast::flat_buffer buffer;
    for (const char* target : {"/", "/v1/x"}) {
      auto req = get(target);
      co_await http::async_write(tls, req, use_awaitable);
      http::response<http::string_body> res;
      co_await http::async_read(tls, buffer, res, use_awaitable);
      statuses.push_back(res.result_int());
    }
  });
  env.r.run();
  EXPECT_EQ(statuses, (std::vector<unsigned>{200, 404}));
  EXPECT_EQ(env.count(&net::FrontCounters::open_api), 0u);
}

// A valid upgrade request: handed over with the bytes after its head and its key; a bad token
// (wrong secret) and a second request carrying a valid token are the site's.
TEST(FrontTest, TunnelHandOverAndRefusals) {
  Env env;
  auto other = pt::FrontAuthenticator::create(Bytes(pt::kFrontSecretSize, 0x34));
  ASSERT_TRUE(other.ok());
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::string> keys, requests;
  for (int i = 0; i < 3; ++i) {
    keys.push_back(pt::upgrade::make_key(env.rng));
    const auto& auth = i == 1 ? *other : *env.auth;
    requests.push_back(pt::upgrade::client_request("localhost", auth.make_token(env.rng, now, keys.back()), keys.back()));
  }
  env.serve(3);
  std::vector<std::string> answers;
  env.r.spawn([&]() -> awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      TlsStream tls = co_await env.connect_tls();
      std::string out;
      if (i == 2) out = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";  // a first request, then a valid token
      out += requests[static_cast<std::size_t>(i)];
      if (i == 0) out += "EXTRA";
      co_await asio::async_write(tls, asio::buffer(out), use_awaitable);
      beast::get_lowest_layer(tls).expires_after(5s);
      std::string got;
      char buf[4096];
      // Until the last expected answer's head (the 404 page's body ends with "</html>\r\n").
      const std::size_t want_heads = i == 2 ? 2 : 1;
      for (;;) {
        auto [ec, n] = co_await tls.async_read_some(asio::buffer(buf), tuple_awaitable);
        got.append(buf, n);
        if (ec) {
          CO_CHECK(ec != beast::error::timeout);
          break;
        }
        std::size_t heads = 0;
        for (std::size_t at = got.find("HTTP/1.1 "); at != std::string::npos; at = got.find("HTTP/1.1 ", at + 1)) ++heads;
        if (heads >= want_heads && got.ends_with("</html>\r\n")) break;
      }
      answers.push_back(got);
    }
  });
  env.r.run();
  ASSERT_EQ(env.results.size(), 3u);
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(env.results[0].kind, FrontResult::Kind::tunnel);
  EXPECT_EQ(env.results[0].websocket_key, keys[0]);
  EXPECT_EQ(std::string(env.results[0].leftover.begin(), env.results[0].leftover.end()), "EXTRA");
  EXPECT_EQ(answers[0], "");
  EXPECT_EQ(env.results[1].kind, FrontResult::Kind::done);
  EXPECT_EQ(answers[1].rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << answers[1];
  EXPECT_EQ(env.results[2].kind, FrontResult::Kind::done);
  EXPECT_EQ(answers[2].rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answers[2];
  EXPECT_NE(answers[2].find("HTTP/1.1 404 Not Found\r\n"), std::string::npos) << answers[2];
  EXPECT_EQ(env.count(&net::FrontCounters::connections), 3u);
  EXPECT_EQ(env.count(&net::FrontCounters::tunnels), 1u);
  EXPECT_EQ(env.count(&net::FrontCounters::tokens_refused), 1u);
  EXPECT_EQ(env.count(&net::FrontCounters::site_requests), 3u);
}

TEST(FrontTest, TlsContextRefusesBadFiles) {
  auto missing = net::make_front_tls_context(files().dir + "/none.pem", files().key);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), pt::Errc::bad_config);
  // A key that does not match the certificate.
  const std::string other_cert = files().dir + "/other-cert.pem", other_key = files().dir + "/other-key.pem";
  ASSERT_TRUE(postern::server::ensure_self_signed_certificate(other_cert, other_key, "localhost").ok());
  auto mismatch = net::make_front_tls_context(files().cert, other_key);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.error(), pt::Errc::bad_config);
  auto good = net::make_front_tls_context(files().cert, files().key);
  EXPECT_TRUE(good.ok());
}

}  // namespace
