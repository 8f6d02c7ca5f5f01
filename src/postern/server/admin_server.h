// The admin listener of postern-server (--admin-listen, default 127.0.0.1:9090): plain HTTP/1.1,
// no TLS, meant for loopback or a private network only (it has no authentication). It serves
//   GET /metrics  the Prometheus text exposition format 0.0.4 (render_prometheus, metrics.h)
//   GET /healthz  200 "ok"
// HEAD is accepted where GET is; any other method on those paths is 405, any other path 404.
// Requests carry no body (a request with one gets 400 and the connection is closed).
//
// Same shape as http_server.h: a listener coroutine, one coroutine per connection on its own
// strand, one request at a time. Limits are fixed and small: an 8 KiB header, a read, write and
// idle timeout of 5 s, at most 64 connections (more are closed at once). shutdown() closes every
// connection, idle or not (a scrape is cheap to repeat).
#pragma once

#include "postern/transport/net/front.h"

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "postern/server/config.h"
#include "postern/util/result.h"

namespace postern::server {

class Api;
class HttpServer;

// The /metrics body of postern-server: ServerMetrics (api.metrics()), then the connections of the
// TLS listener, the group commit statistics, the process's resident memory and open descriptors,
// the uptime since `started` and postern_build_info{version="..."}.
std::string render_server_metrics(Api& api, const HttpServer& server,
                                  std::chrono::steady_clock::time_point started,
                                  const transport::net::FrontCounters* front = nullptr);

class AdminServer {
 public:
  // The body of GET /metrics, computed for each scrape on the connection's thread; must not block
  // for long and must not throw.
  using MetricsSource = std::function<std::string()>;

  AdminServer(boost::asio::io_context& io, MetricsSource metrics);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and listens (a numeric IP or "localhost"); returns the bound address with the real port
  // when `at.port` is 0. Errors: Errc::bad_address, or the system's error.
  Result<HostPort> listen(const HostPort& at);
  // Starts accepting (call once, after listen).
  void start();
  // Stops accepting and closes every connection. Any thread.
  void shutdown();
  std::size_t active_connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace postern::server
