// The TLS listener and HTTP sessions of postern-server (Boost.Beast over asio::ssl, C++20
// coroutines). The shape is Beast's server examples': a listener coroutine accepts, and each
// connection runs as one coroutine on its own strand, reading one request at a time and writing
// its response before reading the next (so never two writes in flight). Requests are handled by
// Api::handle on a worker pool, because Argon2id and SQLite block; the session resumes on its
// strand with the response. No lock is held across a co_await.
//
// Limits: header and body sizes (431 / 413), a TLS handshake timeout, an idle timeout while
// waiting for a request, a read timeout for the rest of it, a write timeout, and a connection cap
// (connections over it are closed at once). A request that does not parse as HTTP gets 400 and
// the connection is closed.
//
// Shutdown (SIGTERM): stop accepting, close connections that are idle (no request in progress),
// let the requests in progress finish and answer with "Connection: close".
#pragma once

#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/transport/net/front.h"
#include "postern/transport/net/inner_stream.h"
#include "postern/util/result.h"

namespace postern::server {

// A TLS 1.2/1.3 server context with the PEM certificate chain and key. Errors: Errc::tls_failure.
Result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(const std::string& cert_file,
                                                                    const std::string& key_file);

class AttachmentService;
class DeliveryHub;

// The camouflage front and the inner channel (issue 5, docs/transport.md). Owned by the caller,
// alive as long as the server.
struct FrontConfig {
  transport::net::FrontSettings front;
  transport::net::InnerServerOptions inner;
  transport::net::FrontCounters counters;  // front.counters points here (for /metrics)
};

class HttpServer {
 public:
  // `attachments` serves /v1/attachments and `delivery` the /v1/websocket upgrade; either may be
  // null (that route then answers 404 like any unknown one). `front`: every connection first
  // goes through the camouflage front (the API is reached through the inner channel, or
  // directly for /v1/ paths when front->front.open_api); null: the API straight over TLS.
  HttpServer(boost::asio::io_context& io, boost::asio::ssl::context& tls, boost::asio::thread_pool& workers,
             Api& api, const HttpLimits& limits, AttachmentService* attachments = nullptr,
             DeliveryHub* delivery = nullptr, const FrontConfig* front = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on the address (a numeric IP, or "localhost"); returns the bound address
  // with the real port when `at.port` is 0. Errors: Errc::bad_address, or the system's error.
  Result<HostPort> listen(const HostPort& at);
  // Starts accepting (call once, after listen).
  void start();
  // Stops accepting and closes idle connections; requests in progress finish. Any thread.
  void shutdown();
  // Connections open now (sessions that have not ended).
  std::size_t active_connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace postern::server
