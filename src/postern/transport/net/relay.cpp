// See relay.h.
#include "postern/transport/net/relay.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/transport/net/tls_client.h"
#include "postern/transport/upgrade.h"

namespace postern::transport::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kPumpChunk = 16 * 1024;

std::int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void close_both(TlsStream& a, TlsStream& b) {
  error_code ignored;
  beast::get_lowest_layer(a).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(a).socket().close(ignored);
  beast::get_lowest_layer(b).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(b).socket().close(ignored);
}

struct Activity {
  std::int64_t last_us = steady_us();
};

// Copies from `from` to `to` until either fails; then closes both, which ends the other pump.
awaitable<void> pump(TlsStream& from, TlsStream& to, const RelayOptions& options, ByteRateLimiter* own_limit,
                     std::atomic<std::uint64_t>* counter, Activity& activity) {
  std::vector<std::uint8_t> buffer(kPumpChunk);
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (;;) {
    beast::get_lowest_layer(from).expires_after(options.idle_timeout);
    auto [rec, n] = co_await from.async_read_some(asio::buffer(buffer), asio::as_tuple(use_awaitable));
    if (rec == beast::error::timeout &&
        steady_us() - activity.last_us < std::chrono::duration_cast<std::chrono::microseconds>(options.idle_timeout).count()) {
      continue;  // this direction is quiet, the other is not
    }
    if (rec) break;
    activity.last_us = steady_us();
    std::chrono::microseconds wait{0};
    if (own_limit != nullptr) wait = std::max(wait, own_limit->charge(n));
    if (options.shared_limit != nullptr) wait = std::max(wait, options.shared_limit->charge(n));
    if (wait.count() > 0) {
      pause.expires_after(wait);
      co_await pause.async_wait(asio::as_tuple(use_awaitable));
    }
    beast::get_lowest_layer(to).expires_after(options.idle_timeout);
    auto [wec, written] = co_await asio::async_write(to, asio::buffer(buffer.data(), n), asio::as_tuple(use_awaitable));
    if (wec) break;
    if (counter != nullptr) counter->fetch_add(written, std::memory_order_relaxed);
  }
  close_both(from, to);
}

}  // namespace

ByteRateLimiter::ByteRateLimiter(std::uint64_t bytes_per_second, std::uint64_t burst_bytes)
    : rate_(bytes_per_second), capacity_(static_cast<double>(burst_bytes != 0 ? burst_bytes : bytes_per_second)) {}

std::chrono::microseconds ByteRateLimiter::charge(std::uint64_t bytes) {
  if (rate_ == 0) return std::chrono::microseconds(0);
  const double per_byte_us = 1e6 / static_cast<double>(rate_);
  const auto cost = static_cast<std::int64_t>(static_cast<double>(bytes) * per_byte_us);
  const auto burst = static_cast<std::int64_t>(capacity_ * per_byte_us);
  const std::int64_t now = steady_us();
  std::int64_t old = next_free_us_.load(std::memory_order_relaxed);
  for (;;) {
    const std::int64_t next = std::max(old, now) + cost;
    if (next_free_us_.compare_exchange_weak(old, next, std::memory_order_relaxed)) {
      const std::int64_t excess = next - now - burst;
      return std::chrono::microseconds(excess > 0 ? excess : 0);
    }
  }
}

awaitable<void> relay_tunnel(TlsStream client, Bytes leftover, std::string client_websocket_key,
                             const RelayUpstream& upstream, asio::ssl::context& upstream_tls,
                             const RelayOptions& options) {
  RelayCounters* counters = options.counters;
  auto failed = [counters] {
    if (counters != nullptr) counters->upstream_failures.fetch_add(1, std::memory_order_relaxed);
  };
  if (upstream.auth == nullptr) co_return;
  auto ex = co_await asio::this_coro::executor;

  // The upstream connection: TCP, TLS pinned to the upstream invite's key.
  const auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  if (const auto address = asio::ip::make_address(upstream.dial_host, ec); !ec) {
    endpoints.emplace_back(address, upstream.dial_port);
  } else {
    tcp::resolver resolver(ex);
    auto [rec, results] = co_await resolver.async_resolve(upstream.dial_host, std::to_string(upstream.dial_port),
                                                          asio::as_tuple(use_awaitable));
    if (rec || results.empty()) {
      failed();
      co_return;
    }
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }
  beast::tcp_stream socket(ex);
  socket.expires_at(deadline);
  auto [cec, endpoint] = co_await socket.async_connect(endpoints, asio::as_tuple(use_awaitable));
  (void)endpoint;
  if (cec) {
    failed();
    co_return;
  }
  error_code ignored;
  socket.socket().set_option(tcp::no_delay(true), ignored);
  TlsStream server(socket.release_socket(), upstream_tls, asio::ssl::stream_base::client);
  if (!set_server_name(server.native_handle(), upstream.tls_name)) {
    failed();
    co_return;
  }
  beast::get_lowest_layer(server).expires_at(deadline);
  auto [hec] = co_await server.async_handshake(asio::ssl::stream_base::client, asio::as_tuple(use_awaitable));
  if (hec || !peer_key_matches(server.native_handle(), upstream.pin)) {
    failed();
    co_return;
  }

  // The upstream front: our own upgrade request with a fresh token, then the client's first
  // Noise message (already framed and masked by the client) as it came.
  crypto::SystemRng rng;
  const std::string key = upgrade::make_key(rng);
  const std::string token = upstream.auth->make_token(rng, unix_now(), key);
  const std::string request = upgrade::client_request(upstream.host_header, token, key);
  Bytes out(request.begin(), request.end());
  out.insert(out.end(), leftover.begin(), leftover.end());
  {
    auto [wec, n] = co_await asio::async_write(server, asio::buffer(out), asio::as_tuple(use_awaitable));
    (void)n;
    if (wec) {
      failed();
      co_return;
    }
  }
  Bytes in;
  std::array<std::uint8_t, 4096> chunk{};
  upgrade::ResponseHead head;
  for (;;) {
    auto parsed = upgrade::parse_response_head(in);
    if (!parsed) {
      failed();
      co_return;
    }
    if (*parsed) {
      head = std::move(**parsed);
      break;
    }
    auto [rec, n] = co_await server.async_read_some(asio::buffer(chunk), asio::as_tuple(use_awaitable));
    if (rec) {
      failed();
      co_return;
    }
    in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
  const std::string expected = upgrade::accept_for(key);
  if (head.status != 101 || !head.upgrade_websocket ||
      !crypto::constant_time_equal(as_bytes(head.accept), as_bytes(expected))) {
    failed();
    co_return;
  }
  // The client's answer: our 101 for its key, then whatever the server sent after its head.
  const std::string response = upgrade::server_response(client_websocket_key);
  Bytes down(response.begin(), response.end());
  down.insert(down.end(), in.begin() + static_cast<std::ptrdiff_t>(head.head_size), in.end());
  beast::get_lowest_layer(client).expires_after(options.connect_timeout);
  {
    auto [wec, n] = co_await asio::async_write(client, asio::buffer(down), asio::as_tuple(use_awaitable));
    (void)n;
    if (wec) co_return;
  }

  if (counters != nullptr) {
    counters->tunnels_open.fetch_add(1, std::memory_order_relaxed);
    counters->tunnels_total.fetch_add(1, std::memory_order_relaxed);
  }
  std::unique_ptr<ByteRateLimiter> own;
  if (options.bytes_per_second_per_connection != 0) {
    own = std::make_unique<ByteRateLimiter>(options.bytes_per_second_per_connection);
  }
  Activity activity;
  using namespace asio::experimental::awaitable_operators;
  co_await (pump(client, server, options, own.get(), counters ? &counters->bytes_up : nullptr, activity) &&
            pump(server, client, options, own.get(), counters ? &counters->bytes_down : nullptr, activity));
  if (counters != nullptr) counters->tunnels_open.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace postern::transport::net
