// TlsStream (src/postern/transport/net/tls_stream.h) against asio::ssl::stream as the reference
// peer, in-process on 127.0.0.1.
#include "postern/transport/net/tls_stream.h"

#include <malloc.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "loopback.h"
#include "postern/server/tls_identity.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using boost::system::error_code;
using postern::transport::net::TlsStream;
using ClientStream = ssl::stream<tcp::socket>;
using postern::transport::net::test::Runner;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

const postern::transport::net::test::TempIdentity& identity() {
  static const postern::transport::net::test::TempIdentity id("tls_stream_test");
  return id;
}

// As http_server.cpp's make_tls_context.
std::unique_ptr<ssl::context> server_context() {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  ctx->use_certificate_chain_file(identity().cert);
  ctx->use_private_key_file(identity().key, ssl::context::pem);
  return ctx;
}

std::unique_ptr<ssl::context> client_context(int max_version = 0) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_verify_mode(ssl::verify_none);
  if (max_version != 0) SSL_CTX_set_max_proto_version(ctx->native_handle(), max_version);
  return ctx;
}

// A connected pair of sockets on 127.0.0.1.
std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  return {std::move(server), std::move(client)};
}

#define CO_CHECK(cond)                                                                   \
  do {                                                                                   \
    if (!(cond)) throw std::runtime_error(std::string("check failed: ") + #cond + " at line " + \
                                          std::to_string(__LINE__));                    \
  } while (0)
#define CO_CHECK_EC(ec)                                                                          \
  do {                                                                                           \
    if (ec) throw std::runtime_error("error " + (ec).message() + " at line " + std::to_string(__LINE__)); \
  } while (0)

// Deterministic byte stream for the echo tests: byte i of stream `seed`.
unsigned char pattern(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  return static_cast<unsigned char>(x >> 56);
}

std::vector<std::size_t> message_sizes(std::uint32_t seed, std::size_t count) {
  std::mt19937 rng(seed);
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < count; ++i) {
    // Log-uniform between 1 B and 1 MiB.
    std::uniform_real_distribution<double> d(0.0, 20.0);
    sizes.push_back(static_cast<std::size_t>(std::exp2(d(rng))));
  }
  return sizes;
}

// Writes messages of the given sizes (pattern `seed`), optionally requesting a TLS 1.3 KeyUpdate
// from the peer every few messages.
template <class Stream>
awaitable<void> send_pattern(Stream& s, std::uint64_t seed, std::vector<std::size_t> sizes, bool key_updates) {
  std::uint64_t offset = 0;
  std::vector<unsigned char> msg;
  int i = 0;
  for (std::size_t size : sizes) {
    msg.resize(size);
    for (std::size_t k = 0; k < size; ++k) msg[k] = pattern(seed, offset + k);
    if (key_updates && ++i % 7 == 0 && SSL_version(s.native_handle()) == TLS1_3_VERSION) {
      CO_CHECK(SSL_key_update(s.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
    }
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(msg), tuple_awaitable);
    CO_CHECK_EC(ec);
    CO_CHECK(n == size);
    offset += size;
  }
}

template <class Stream>
awaitable<void> receive_pattern(Stream& s, std::uint64_t seed, std::uint64_t total,
                                std::chrono::microseconds pause = std::chrono::microseconds(0)) {
  asio::steady_timer timer(s.get_executor());
  unsigned reads = 0;
  std::vector<unsigned char> buf(70000);
  std::uint64_t offset = 0;
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  while (offset < total) {
    // Vary the read size too (small reads leave records half-consumed in OpenSSL).
    std::size_t want = std::uniform_int_distribution<std::size_t>(1, buf.size())(rng);
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf.data(), want), tuple_awaitable);
    CO_CHECK_EC(ec);
    for (std::size_t k = 0; k < n; ++k) {
      if (buf[k] != pattern(seed, offset + k)) throw std::runtime_error("data mismatch at " + std::to_string(offset + k));
    }
    offset += n;
    if (pause.count() != 0 && ++reads % 64 == 0) {
      timer.expires_after(pause);
      co_await timer.async_wait(use_awaitable);
    }
  }
  CO_CHECK(offset == total);
}

std::uint64_t sum(const std::vector<std::size_t>& v) {
  std::uint64_t t = 0;
  for (auto x : v) t += x;
  return t;
}

class TlsStreamTest : public ::testing::Test {
 protected:
  std::unique_ptr<ssl::context> server_ctx = server_context();
};

void handshake_then_talk(int client_max_version, int expect_version) {
  Runner r;
  auto server_ctx = server_context();
  auto client_ctx = client_context(client_max_version);
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  r.spawn([&]() -> awaitable<void> {
    auto [ec] = co_await server.async_handshake(ssl::stream_base::server, tuple_awaitable);
    CO_CHECK_EC(ec);
    CO_CHECK(SSL_version(server.native_handle()) == expect_version);
    std::string buf(5, '\0');
    auto [rec, n] = co_await asio::async_read(server, asio::buffer(buf), tuple_awaitable);
    CO_CHECK_EC(rec);
    CO_CHECK(buf == "hello");
    auto [wec, wn] = co_await asio::async_write(server, asio::buffer(std::string("world!")), tuple_awaitable);
    CO_CHECK_EC(wec);
    auto [sec] = co_await server.async_shutdown(tuple_awaitable);
    CO_CHECK_EC(sec);
  });
  r.spawn([&]() -> awaitable<void> {
    co_await client.async_handshake(ssl::stream_base::client, use_awaitable);
    co_await asio::async_write(client, asio::buffer(std::string("hello")), use_awaitable);
    std::string buf(6, '\0');
    co_await asio::async_read(client, asio::buffer(buf), use_awaitable);
    CO_CHECK(buf == "world!");
    char c;
    auto [ec, n] = co_await client.async_read_some(asio::buffer(&c, 1), tuple_awaitable);
    CO_CHECK(ec == asio::error::eof);  // our close_notify
  });
  r.run();
}

TEST_F(TlsStreamTest, HandshakeTls13) { handshake_then_talk(0, TLS1_3_VERSION); }
TEST_F(TlsStreamTest, HandshakeTls12) { handshake_then_talk(TLS1_2_VERSION, TLS1_2_VERSION); }

TEST_F(TlsStreamTest, CallbackTokens) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  bool done = false;
  std::string got(3, '\0');
  server.async_handshake(ssl::stream_base::server, [&](error_code ec) {
    ASSERT_FALSE(ec) << ec.message();
    asio::async_read(server, asio::buffer(got), [&](error_code rec, std::size_t) {
      ASSERT_FALSE(rec) << rec.message();
      done = true;
    });
  });
  client.async_handshake(ssl::stream_base::client, [&](error_code ec) {
    ASSERT_FALSE(ec) << ec.message();
    asio::async_write(client, asio::buffer("abc", 3), [](error_code wec, std::size_t) { ASSERT_FALSE(wec); });
  });
  // Zero-size operations complete (posted, not inline) with 0 bytes.
  bool zero_done = false;
  server.async_write_some(asio::const_buffer(), [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec);
    EXPECT_EQ(n, 0u);
    zero_done = true;
  });
  EXPECT_FALSE(zero_done);
  r.io.run_for(std::chrono::seconds(10));
  EXPECT_TRUE(done);
  EXPECT_TRUE(zero_done);
  EXPECT_EQ(got, "abc");
}

// Both directions at once, a read and a write in flight on each side, random sizes 1 B..1 MiB,
// with KeyUpdate requests from the client (our SSL_read must answer with a write while our
// writer may be busy).
void echo_both_directions(int client_max_version, bool ours_as_client_too, bool slow_client_reads = false) {
  Runner r;
  auto server_ctx = server_context();
  auto client_ctx = client_context(client_max_version);
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  const auto up = message_sizes(1, 40);
  const auto down = message_sizes(2, 40);
  r.spawn([&]() -> awaitable<void> {
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    r.spawn([&] { return send_pattern(server, 200, down, false); });
    co_await receive_pattern(server, 100, sum(up));
  });
  std::shared_ptr<void> keep;
  if (ours_as_client_too) {
    // Owned by the test body, not the coroutines: a socket closed with unread data (the server's
    // KeyUpdate answers) would reset the connection before the server has read everything.
    auto client = std::make_shared<TlsStream>(std::move(cs), *client_ctx, ssl::stream_base::client);
    keep = client;
    r.spawn([&, client]() -> awaitable<void> {
      co_await client->async_handshake(ssl::stream_base::client, use_awaitable);
      r.spawn([&, client] { return send_pattern(*client, 100, up, true); });
      co_await receive_pattern(*client, 200, sum(down));
    });
  } else {
    auto client = std::make_shared<ClientStream>(std::move(cs), *client_ctx);
    keep = client;
    r.spawn([&, client]() -> awaitable<void> {
      co_await client->async_handshake(ssl::stream_base::client, use_awaitable);
      r.spawn([&, client] { return send_pattern(*client, 100, up, true); });
      // Pauses in the client's reads vary the interleaving of the server's read and write ops.
      co_await receive_pattern(*client, 200, sum(down),
                               std::chrono::microseconds(slow_client_reads ? 300 : 0));
    });
  }
  r.run(std::chrono::seconds(120));
}

TEST_F(TlsStreamTest, EchoBothDirectionsTls13) { echo_both_directions(0, false); }
TEST_F(TlsStreamTest, EchoBothDirectionsTls12) { echo_both_directions(TLS1_2_VERSION, false); }
TEST_F(TlsStreamTest, EchoBothDirectionsOursBothSides) { echo_both_directions(0, true); }
TEST_F(TlsStreamTest, EchoBothDirectionsSlowPeer) { echo_both_directions(0, false, true); }

// The read op becomes the writer (it sends a KeyUpdate that SSL_read produces) while the socket
// is full; a write started meanwhile must queue behind it, and both complete once the peer reads.
TEST_F(TlsStreamTest, WriteQueuesBehindReadSideFlush) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  ss.set_option(asio::socket_base::send_buffer_size(4096));
  cs.set_option(asio::socket_base::receive_buffer_size(4096));
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  std::uint64_t sent = 0;
  bool filled = false, write_done = false;
  r.spawn([&]() -> awaitable<void> {
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    // Fill the socket with completed writes (no write op left pending).
    std::vector<unsigned char> chunk(100);
    for (int i = 0; i < 100000; ++i) {
      pollfd p{beast::get_lowest_layer(server).socket().native_handle(), POLLOUT, 0};
      if (::poll(&p, 1, 0) == 0) break;
      for (std::size_t k = 0; k < chunk.size(); ++k) chunk[k] = pattern(300, sent + k);
      auto [ec, n] = co_await server.async_write_some(asio::buffer(chunk), tuple_awaitable);
      CO_CHECK_EC(ec);
      sent += n;
    }
    filled = true;
    // SSL_read will now send a KeyUpdate: the read op takes the writer role and blocks.
    CO_CHECK(SSL_key_update(server.native_handle(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    bool read_done = false;
    char in[8];
    server.async_read_some(asio::buffer(in), [&](error_code ec, std::size_t n) {
      EXPECT_FALSE(ec) << ec.message();
      EXPECT_EQ(std::string(in, n), "x");
      read_done = true;
    });
    for (std::size_t k = 0; k < chunk.size(); ++k) chunk[k] = pattern(300, sent + k);
    auto [ec, n] = co_await asio::async_write(server, asio::buffer(chunk), tuple_awaitable);
    CO_CHECK_EC(ec);
    sent += n;
    write_done = true;
    asio::steady_timer t(server.get_executor());
    while (!read_done) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(use_awaitable);
    }
  });
  r.spawn([&]() -> awaitable<void> {
    co_await client.async_handshake(ssl::stream_base::client, use_awaitable);
    asio::steady_timer t(client.get_executor());
    while (!filled) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(use_awaitable);
    }
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(use_awaitable);
    // (Typically the write is still queued behind the read op's KeyUpdate flush here; the
    // kernel may also have accepted both.)
    std::vector<unsigned char> buf(65536);
    std::uint64_t got = 0;
    while (!write_done || got < sent) {
      auto [ec, n] = co_await client.async_read_some(asio::buffer(buf), tuple_awaitable);
      CO_CHECK_EC(ec);
      for (std::size_t k = 0; k < n; ++k) CO_CHECK(buf[k] == pattern(300, got + k));
      got += n;
    }
    co_await asio::async_write(client, asio::buffer("x", 1), use_awaitable);
  });
  r.run();
  EXPECT_TRUE(write_done);
}

TEST_F(TlsStreamTest, BeastHttp) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  const std::string big(300000, 'x');
  r.spawn([&]() -> awaitable<void> {
    beast::get_lowest_layer(server).expires_after(std::chrono::seconds(10));
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    beast::flat_buffer buffer;
    for (int i = 0; i < 3; ++i) {
      http::request<http::string_body> req;
      auto [ec, n] = co_await http::async_read(server, buffer, req, tuple_awaitable);
      CO_CHECK_EC(ec);
      CO_CHECK(req.target() == "/item/" + std::to_string(i));
      CO_CHECK(req.body() == big);
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = "item " + std::to_string(i) + big;
      res.prepare_payload();
      co_await http::async_write(server, res, use_awaitable);
    }
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(server, buffer, req, tuple_awaitable);
    CO_CHECK(ec == http::error::end_of_stream);  // the client's close_notify
    auto [sec] = co_await server.async_shutdown(tuple_awaitable);  // answer it, as the server does
    CO_CHECK_EC(sec);
    beast::get_lowest_layer(server).expires_never();
  });
  r.spawn([&]() -> awaitable<void> {
    co_await client.async_handshake(ssl::stream_base::client, use_awaitable);
    beast::flat_buffer buffer;
    for (int i = 0; i < 3; ++i) {
      http::request<http::string_body> req{http::verb::post, "/item/" + std::to_string(i), 11};
      req.body() = big;
      req.prepare_payload();
      co_await http::async_write(client, req, use_awaitable);
      http::response<http::string_body> res;
      co_await http::async_read(client, buffer, res, use_awaitable);
      CO_CHECK(res.result() == http::status::ok);
      CO_CHECK(res.body() == "item " + std::to_string(i) + big);
    }
    auto [ec] = co_await client.async_shutdown(tuple_awaitable);  // waits for the server's close_notify
    CO_CHECK(!ec || ec == asio::error::eof);
  });
  r.run();
}

void websocket_exchange(bool server_closes) {
  Runner r;
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  websocket::stream<TlsStream> server(std::move(ss), *server_ctx);
  websocket::stream<ClientStream> client(std::move(cs), *client_ctx);
  r.spawn([&]() -> awaitable<void> {
    co_await server.next_layer().async_handshake(ssl::stream_base::server, use_awaitable);
    co_await server.async_accept(use_awaitable);
    beast::flat_buffer buffer;
    // Write frames while reading (one read and one write in flight at once).
    bool writes_done = false;
    r.spawn([&]() -> awaitable<void> {
          for (int i = 0; i < 50; ++i) {
            std::string m = "down " + std::to_string(i) + std::string(static_cast<std::size_t>(i) * 997, 'd');
            co_await server.async_write(asio::buffer(m), use_awaitable);
          }
          writes_done = true;
          if (server_closes) co_await server.async_close(websocket::close_code::normal, use_awaitable);
        });
    for (int i = 0;; ++i) {
      buffer.clear();
      auto [ec, n] = co_await server.async_read(buffer, tuple_awaitable);
      if (ec == websocket::error::closed) {
        CO_CHECK(!server_closes);
        CO_CHECK(i == 50);
        break;
      }
      if (server_closes && i == 50) {
        // After our close frame, Beast reads until the peer's close: the read ends with closed
        // or operation_aborted depending on which op observes the close first.
        CO_CHECK(ec == websocket::error::closed || ec == asio::error::operation_aborted);
        break;
      }
      CO_CHECK_EC(ec);
      CO_CHECK(beast::buffers_to_string(buffer.data()) == "up " + std::to_string(i));
    }
    CO_CHECK(writes_done || !server_closes);
  });
  r.spawn([&]() -> awaitable<void> {
    co_await client.next_layer().async_handshake(ssl::stream_base::client, use_awaitable);
    co_await client.async_handshake("localhost", "/", use_awaitable);
    r.spawn([&]() -> awaitable<void> {
          for (int i = 0; i < 50; ++i) {
            std::string m = "up " + std::to_string(i);
            co_await client.async_write(asio::buffer(m), use_awaitable);
          }
        });
    beast::flat_buffer buffer;
    for (int i = 0; i < 50; ++i) {
      buffer.clear();
      co_await client.async_read(buffer, use_awaitable);
      CO_CHECK(beast::buffers_to_string(buffer.data()).rfind("down " + std::to_string(i), 0) == 0);
    }
    if (server_closes) {
      buffer.clear();
      auto [ec, n] = co_await client.async_read(buffer, tuple_awaitable);
      CO_CHECK(ec == websocket::error::closed);
    } else {
      co_await client.async_close(websocket::close_code::normal, use_awaitable);
    }
  });
  r.run();
}

TEST_F(TlsStreamTest, WebSocketClientCloses) { websocket_exchange(false); }
TEST_F(TlsStreamTest, WebSocketServerCloses) { websocket_exchange(true); }

TEST_F(TlsStreamTest, PeerClosesWithoutCloseNotifyIsTruncated) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  r.spawn([&]() -> awaitable<void> {
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    char buf[16];
    auto [ec, n] = co_await server.async_read_some(asio::buffer(buf), tuple_awaitable);
    CO_CHECK(ec == ssl::error::stream_truncated);
  });
  r.spawn([&]() -> awaitable<void> {
    co_await client.async_handshake(ssl::stream_base::client, use_awaitable);
    client.next_layer().close();
  });
  r.run();
}

TEST_F(TlsStreamTest, ReadTimeoutFires) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  r.spawn([&]() -> awaitable<void> {
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    beast::get_lowest_layer(server).expires_after(std::chrono::milliseconds(100));
    const auto start = std::chrono::steady_clock::now();
    char buf[16];
    auto [ec, n] = co_await server.async_read_some(asio::buffer(buf), tuple_awaitable);
    CO_CHECK(ec == beast::error::timeout);
    CO_CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  });
  r.spawn([&]() -> awaitable<void> { co_await client.async_handshake(ssl::stream_base::client, use_awaitable); });
  r.run();
}

TEST_F(TlsStreamTest, HandshakeTimeoutFires) {
  Runner r;
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  r.spawn([&]() -> awaitable<void> {
    beast::get_lowest_layer(server).expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await server.async_handshake(ssl::stream_base::server, tuple_awaitable);
    CO_CHECK(ec == beast::error::timeout);
  });
  r.run();
}

TEST_F(TlsStreamTest, PerOperationCancellation) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  r.spawn([&]() -> awaitable<void> {
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    asio::cancellation_signal signal;
    error_code got;
    bool done = false;
    char buf[16];
    server.async_read_some(asio::buffer(buf), asio::bind_cancellation_slot(signal.slot(), [&](error_code ec, std::size_t) {
                             got = ec;
                             done = true;
                           }));
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
    co_await t.async_wait(use_awaitable);
    signal.emit(asio::cancellation_type::terminal);
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(use_awaitable);
    CO_CHECK(done);
    CO_CHECK(got == asio::error::operation_aborted);
  });
  r.spawn([&]() -> awaitable<void> { co_await client.async_handshake(ssl::stream_base::client, use_awaitable); });
  r.run();
}

TEST_F(TlsStreamTest, GarbageInsteadOfClientHello) {
  Runner r;
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  tcp::socket raw = std::move(cs);
  r.spawn([&]() -> awaitable<void> {
    auto [ec] = co_await server.async_handshake(ssl::stream_base::server, tuple_awaitable);
    CO_CHECK(ec);
    CO_CHECK(ec.category() == asio::error::get_ssl_category() || ec == ssl::error::stream_truncated);
    std::printf("[ garbage ] handshake error: %s\n", ec.message().c_str());
    beast::get_lowest_layer(server).close();  // as the server does after a failed handshake
  });
  r.spawn([&]() -> awaitable<void> {
    std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) garbage.push_back(static_cast<char>(rng()));
    co_await asio::async_write(raw, asio::buffer(garbage), use_awaitable);
    char buf[256];
    for (;;) {  // the alert, then EOF or reset
      auto [ec, n] = co_await raw.async_read_some(asio::buffer(buf), tuple_awaitable);
      if (ec) break;
    }
  });
  r.run();
}

// Garbage after a TLS record header that announces a huge record: no crash, an error.
TEST_F(TlsStreamTest, GarbageRecordAfterHandshake) {
  Runner r;
  auto client_ctx = client_context();
  auto [ss, cs] = socket_pair(r.io);
  TlsStream server(std::move(ss), *server_ctx);
  ClientStream client(std::move(cs), *client_ctx);
  r.spawn([&]() -> awaitable<void> {
    co_await server.async_handshake(ssl::stream_base::server, use_awaitable);
    char buf[64];
    auto [ec, n] = co_await server.async_read_some(asio::buffer(buf), tuple_awaitable);
    CO_CHECK(ec);
  });
  r.spawn([&]() -> awaitable<void> {
    co_await client.async_handshake(ssl::stream_base::client, use_awaitable);
    std::string junk("\x17\x03\x03\x40\x00", 5);
    junk.append(std::string(0x4000, 'j'));
    co_await asio::async_write(client.next_layer(), asio::buffer(junk), use_awaitable);
  });
  r.run();
}

// Heap held per idle server connection: handshake done, one async_read_some pending.
template <class ServerStream>
double idle_bytes_per_connection(std::size_t count, bool pending_read = true, std::size_t* our_buffers = nullptr) {
  asio::io_context io;
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  std::vector<std::unique_ptr<ClientStream>> clients;
  std::vector<std::unique_ptr<ServerStream>> servers;
  std::vector<char> sink(16);
  std::size_t handshakes = 0;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  for (std::size_t i = 0; i < count; ++i) {
    tcp::socket c(io);
    c.connect(acceptor.local_endpoint());
    tcp::socket s = acceptor.accept();
    clients.push_back(std::make_unique<ClientStream>(std::move(c), *client_ctx));
    servers.push_back(std::make_unique<ServerStream>(std::move(s), *server_ctx));
  }
  for (std::size_t i = 0; i < count; ++i) {
    clients[i]->async_handshake(ssl::stream_base::client, [&](error_code ec) {
      EXPECT_FALSE(ec);
      ++handshakes;
    });
    ServerStream& s = *servers[i];
    s.async_handshake(ssl::stream_base::server, [&](error_code ec) {
      EXPECT_FALSE(ec);
      ++handshakes;
      if (pending_read) s.async_read_some(asio::buffer(sink), [](error_code, std::size_t) {});
    });
  }
  while (handshakes < 2 * count) {
    if (io.run_one_for(std::chrono::seconds(10)) == 0) break;
  }
  io.poll();
  EXPECT_EQ(handshakes, 2 * count);
  const std::size_t with = mallinfo2().uordblks;
  if constexpr (std::is_same_v<ServerStream, TlsStream>) {
    if (our_buffers != nullptr) *our_buffers = servers.front()->buffer_bytes();
  }
  // Free only the server side: close, let the pending reads complete, destroy.
  for (auto& s : servers) {
    error_code ignored;
    beast::get_lowest_layer(*s).socket().close(ignored);
  }
  io.restart();
  io.poll();
  servers.clear();
  io.poll();
  const std::size_t without = mallinfo2().uordblks;
  clients.clear();
  io.poll();
  return (static_cast<double>(with) - static_cast<double>(without)) / static_cast<double>(count);
}

TEST_F(TlsStreamTest, IdleHeapPerConnection) {
  constexpr std::size_t kCount = 500;
  (void)idle_bytes_per_connection<TlsStream>(20);  // warm up OpenSSL's lazily built tables
  std::size_t buffers = 0;
  const double ours = idle_bytes_per_connection<TlsStream>(kCount, true, &buffers);
  const double ours_no_read = idle_bytes_per_connection<TlsStream>(kCount, false);
  const double reference = idle_bytes_per_connection<beast::ssl_stream<beast::tcp_stream>>(kCount);
  std::printf("[ heap/idle conn ] TlsStream: %.0f bytes (own buffers %zu; %.0f without a pending read), "
              "beast::ssl_stream<tcp_stream>: %.0f bytes (%zu connections; 0 = malloc replaced, e.g. ASan)\n",
              ours, buffers, ours_no_read, reference, kCount);
  EXPECT_LT(ours, 20.0 * 1024);
}

}  // namespace
