// ServerLink over TLS to the server itself, trusting the invite's pinned key instead of a CA.
//
// Design: the link owns one io_context and the one thread that runs it; every connection, the
// idle pool and every WebSocket live on that thread only, so none of them needs a lock. The
// public methods are blocking: they start a coroutine on the io thread and wait for its result,
// so the Boost-free messenger core can call them from any thread (concurrent requests run as
// separate coroutines on separate connections). This header includes no Boost.
//
// Trust: no CA verification. After the TLS handshake (1.2 or 1.3) the SHA-256 of the peer
// certificate's DER SubjectPublicKeyInfo is compared, in constant time, with the invite's pin; on
// a mismatch the connection is dropped before any request byte is written (Errc::pin_mismatch).
//
// HTTP/1.1 keep-alive with a small pool of idle connections; a request that fails on a reused
// connection before any response byte arrived is retried once on a fresh one (not when its body
// is streamed from a body_source, which cannot be rewound). Bodies can be streamed both ways.
//
// BodySource / BodySink callbacks run on the link's io thread: they must not block for long and
// must not call back into the link.
//
// Cancellation (CancelToken, server_link.h): a call's coroutine is spawned with an Asio
// cancellation slot; cancel() posts a terminal cancellation to the io thread, which aborts the
// socket operation the call is waiting on (connect, TLS or inner handshake, read, write) and any
// later one, and the call returns Errc::cancelled. The connection it was making or using is closed;
// the pool and other calls are untouched, so the link works as before for the next call. Name
// resolution by the system resolver cannot be interrupted: the call stops when it ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "postern/client/invite.h"
#include "postern/client/net/doh_config.h"
#include "postern/client/server_link.h"
#include "postern/transport/proxy_handshake.h"

namespace postern::client::net {

// A proxy every connection of the link goes through (parse_proxy_url in path_link.h reads it from
// socks5://[user:pass@]HOST:PORT or http://[user:pass@]HOST:PORT). The server's (or relay's) host
// name is handed to the proxy as a name, never resolved locally.
struct ProxyConfig {
  enum class Kind { socks5, http_connect };
  Kind kind = Kind::socks5;
  std::string host;  // a name, an IPv4 address or an IPv6 address without brackets
  std::uint16_t port = 0;
  std::optional<transport::ProxyCredentials> credentials;  // the password is never printed
  // "socks5://HOST:PORT" (credentials left out), for describe() and logs.
  std::string describe() const;
};

struct HttpsLinkOptions {
  // Longest time for resolving, connecting and the TLS handshake of one connection.
  std::chrono::milliseconds connect_timeout{10'000};
  // Dial this address instead of the invite's host/port (tests, a port forward); the pin, the
  // SNI name and the Host header still come from the invite.
  std::optional<std::string> connect_host;
  std::optional<std::uint16_t> connect_port;
  // Idle keep-alive connections kept for reuse (at most), and how long one may wait unused (the
  // server drops idle connections after 60 s).
  std::size_t max_idle_connections = 4;
  std::chrono::milliseconds max_idle_time{45'000};
  // Connect through this proxy (SOCKS5 or HTTP CONNECT) to the dialled host:port.
  std::optional<ProxyConfig> proxy;
  // How the server's name is resolved when it is not an IP literal and there is no proxy: the
  // invite's addr= addresses first, else this DNS-over-HTTPS server, else the system's resolver.
  std::optional<DohConfig> doh;
  // The delivery WebSocket pings after half of this much silence and gives up (the socket reports
  // Errc::connection_closed without a close code) when nothing came back within it: a
  // black-holed path is noticed within this time. 0 turns the pings off.
  std::chrono::milliseconds delivery_idle_timeout{6'000};
};

class HttpsLink final : public ServerLink {
 public:
  explicit HttpsLink(Invite invite, HttpsLinkOptions options = {});
  ~HttpsLink() override;
  HttpsLink(const HttpsLink&) = delete;
  HttpsLink& operator=(const HttpsLink&) = delete;

  Result<HttpResponse> send(const HttpRequest& request) override;
  Result<std::unique_ptr<DeliverySocket>> open_delivery(std::string_view bearer) override;
  Result<std::unique_ptr<DeliverySocket>> open_delivery_cancellable(std::string_view bearer,
                                                                    CancelToken& cancel) override;
  std::string describe() const override;

  // Opens one connection (TCP, proxy, TLS, pin, inner channel) and keeps it idle for the next
  // request: a probe of the path that costs nothing when the path works (MultiPathLink races these).
  // `cancel`, when given, stops it from another thread (Errc::cancelled).
  Status prepare(CancelToken* cancel = nullptr);

  // TCP connections opened so far (HTTP and WebSocket), for diagnostics and tests of reuse.
  std::uint64_t connections_opened() const;

  // Limits on what the server sends (beyond them: Errc::protocol_error).
  static constexpr std::size_t kMaxResponseHeaderBytes = 64 * 1024;
  static constexpr std::size_t kMaxResponseBodyBytes = 16 * 1024 * 1024;  // bodies not streamed
  static constexpr std::size_t kMaxDeliveryMessageBytes = 8 * 1024 * 1024;

  struct Core;  // the io thread, the TLS context and the pool (https_link.cpp)

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace postern::client::net
