// A relay's forwarding (docs/relay.md): after the relay's own front accepted a client's tunnel
// request (the relay's secret, from its share link), the relay opens its own TLS connection to
// the upstream server (pinned to the upstream invite's certificate key), opens the upstream's
// front with a fresh token of the deployment secret, forwards the client's first Noise message,
// answers the client's upgrade with its own 101 and the server's second Noise message, and from
// then on copies the WebSocket byte stream both ways without parsing it. The Noise handshake
// runs end to end between the client and the server (the client pins the server's static key),
// so the relay handles only inner-channel ciphertext and cannot read or alter what it carries.
// No TLS runs inside TLS: each hop has its own TLS session and the stream inside is Noise.
//
// Limits: a per-connection byte rate (token bucket, both directions together) and a shared one
// for the whole relay, an idle timeout, and the caller's connection cap.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include "postern/transport/front_auth.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/util/bytes.h"

namespace postern::transport::net {

struct RelayUpstream {
  std::string dial_host;  // the upstream server (name or IP literal)
  std::uint16_t dial_port = 0;
  std::string tls_name;   // SNI (empty for an IP literal)
  std::string host_header;
  std::array<std::uint8_t, 32> pin{};  // SHA-256 of the upstream certificate's SubjectPublicKeyInfo
  const FrontAuthenticator* auth = nullptr;  // the deployment secret (the upstream invite's)
};

// A byte-rate limiter shared by coroutines on any thread (token bucket; rate 0 = unlimited).
class ByteRateLimiter {
 public:
  explicit ByteRateLimiter(std::uint64_t bytes_per_second, std::uint64_t burst_bytes = 0);
  // How long the caller must wait before sending `bytes` (it is charged now).
  std::chrono::microseconds charge(std::uint64_t bytes);

 private:
  std::uint64_t rate_;
  double capacity_;
  std::atomic<std::int64_t> next_free_us_{0};  // the virtual time when the bucket is full again
};

struct RelayCounters {
  std::atomic<std::uint64_t> tunnels_open{0};
  std::atomic<std::uint64_t> tunnels_total{0};
  std::atomic<std::uint64_t> upstream_failures{0};
  std::atomic<std::uint64_t> bytes_up{0};    // client -> server
  std::atomic<std::uint64_t> bytes_down{0};  // server -> client
};

struct RelayOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds idle_timeout{300'000};  // no byte either way for this long: closed
  std::uint64_t bytes_per_second_per_connection = 0;  // 0: unlimited
  ByteRateLimiter* shared_limit = nullptr;            // the relay's total, or null
  RelayCounters* counters = nullptr;
};

// Forwards one accepted tunnel (FrontResult::Kind::tunnel) to the upstream until either side
// closes. `upstream_tls` is a client context from make_client_tls_context() (tls_client.h): the
// same ClientHello as Postern's client, no CA (the pin is checked).
boost::asio::awaitable<void> relay_tunnel(TlsStream client, Bytes leftover, std::string client_websocket_key,
                                          const RelayUpstream& upstream, boost::asio::ssl::context& upstream_tls,
                                          const RelayOptions& options);

}  // namespace postern::transport::net
