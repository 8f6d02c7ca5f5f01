#include "postern/server/admin_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "postern/server/api.h"
#include "postern/server/detail/listen.h"
#include "postern/server/errors.h"
#include "postern/server/http_server.h"
#include "postern/server/metrics.h"

namespace postern::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

constexpr std::uint32_t kHeaderBytes = 8 * 1024;
constexpr std::chrono::seconds kTimeout{5};
constexpr std::size_t kMaxConnections = 64;

}  // namespace

struct AdminServer::Impl : std::enable_shared_from_this<AdminServer::Impl> {
  Impl(asio::io_context& io_, MetricsSource metrics_)
      : io(io_), metrics(std::move(metrics_)), acceptor(asio::make_strand(io_)) {}

  asio::io_context& io;
  MetricsSource metrics;
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> active{0};
  std::mutex sessions_mutex;  // guards sessions and next_id; never held across co_await
  std::unordered_map<std::uint64_t, std::weak_ptr<beast::tcp_stream>> sessions;
  std::uint64_t next_id = 0;

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] =
          co_await acceptor.async_accept(asio::make_strand(io), asio::as_tuple(use_awaitable));
      if (stopping || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        spdlog::warn("admin accept: {}", ec.message());
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
          co_await pause.async_wait(asio::as_tuple(use_awaitable));
        }
        continue;
      }
      if (active.load() >= kMaxConnections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      ++active;
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(std::move(socket)),
                     [self = shared_from_this()](const std::exception_ptr& e) {
                       --self->active;
                       if (e) spdlog::error("admin session ended by an exception");
                     });
    }
  }

  http::response<http::string_body> answer(const http::request<http::empty_body>& req) {
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "postern/" POSTERN_VERSION);
    res.set(http::field::cache_control, "no-store");
    const bool known = path == "/metrics" || path == "/healthz";
    if (!known) {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "not found\n";
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "method not allowed\n";
    } else if (path == "/metrics") {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = metrics ? metrics() : std::string();
    } else {
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "ok\n";
    }
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();  // Content-Length stays that of GET
    return res;
  }

  awaitable<void> session(tcp::socket socket) {
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    std::uint64_t id = 0;
    {
      std::lock_guard lock(sessions_mutex);
      id = next_id++;
      sessions.emplace(id, stream);
    }
    struct Unregister {
      Impl& impl;
      std::uint64_t id;
      ~Unregister() {
        std::lock_guard lock(impl.sessions_mutex);
        impl.sessions.erase(id);
      }
    } unregister{*this, id};

    beast::flat_buffer buffer(kHeaderBytes);
    while (!stopping) {
      http::request_parser<http::empty_body> parser;
      parser.header_limit(kHeaderBytes);
      parser.body_limit(0);
      stream->expires_after(kTimeout);
      auto [ec, n] = co_await http::async_read(*stream, buffer, parser, asio::as_tuple(use_awaitable));
      (void)n;
      if (ec) {
        if (ec == http::error::header_limit || ec == http::error::body_limit ||
            (ec.category() == beast::error_code(http::error::end_of_stream).category() &&
             ec != http::error::end_of_stream && ec != http::error::partial_message)) {
          const bool too_large = ec == http::error::header_limit;
          http::response<http::string_body> res{
              too_large ? http::status::request_header_fields_too_large : http::status::bad_request, 11};
          res.set(http::field::content_type, "text/plain; charset=utf-8");
          res.body() = too_large ? "request header too large\n" : "bad request\n";
          res.keep_alive(false);
          res.prepare_payload();
          stream->expires_after(kTimeout);
          co_await http::async_write(*stream, res, asio::as_tuple(use_awaitable));
        }
        break;
      }
      const auto& req = parser.get();
      auto res = answer(req);
      const bool keep_alive = req.keep_alive() && !stopping;
      res.keep_alive(keep_alive);
      stream->expires_after(kTimeout);
      auto [wec, wn] = co_await http::async_write(*stream, res, asio::as_tuple(use_awaitable));
      (void)wn;
      if (wec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
};

std::string render_server_metrics(Api& api, const HttpServer& server,
                                  std::chrono::steady_clock::time_point started,
                                  const transport::net::FrontCounters* front) {
  const auto commits = api.group_commit_stats();
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto d = [](auto v) { return static_cast<double>(v); };
  const auto f = [front](std::atomic<std::uint64_t> transport::net::FrontCounters::*field) {
    return front == nullptr ? 0.0 : static_cast<double>((front->*field).load(std::memory_order_relaxed));
  };
  using FC = transport::net::FrontCounters;
  return render_prometheus(
      api.metrics(),
      {
          {"postern_front_connections_total", "Connections accepted by the camouflage front.", true,
           f(&FC::connections), ""},
          {"postern_front_site_requests_total", "Requests answered by the camouflage web site.", true,
           f(&FC::site_requests), ""},
          {"postern_front_plain_http_total", "Connections that sent plain HTTP to the TLS port.", true,
           f(&FC::plain_http), ""},
          {"postern_front_tls_handshake_failures_total", "TLS handshakes that failed at the front.", true,
           f(&FC::tls_handshake_failures), ""},
          {"postern_front_tunnels_total", "Inner-channel tunnels opened (valid first-request tokens).", true,
           f(&FC::tunnels), ""},
          {"postern_front_tokens_refused_total", "Tunnel requests whose token was invalid or out of its window.",
           true, f(&FC::tokens_refused), ""},
          {"postern_front_tokens_replayed_total", "Tunnel requests whose valid token had been used before.", true,
           f(&FC::tokens_replayed), ""},
          {"postern_connections", "Connections open on the TLS listener (HTTP and WebSocket).", false,
           d(server.active_connections()), ""},
          {"postern_group_commit_rounds_total", "Group commit transactions (rounds) made.", true,
           d(commits.rounds), ""},
          {"postern_group_commit_submissions_total", "Sends answered by the group committer.", true,
           d(commits.submissions), ""},
          {"postern_group_commit_envelopes_total", "Envelopes made durable by the group committer.", true,
           d(commits.envelopes), ""},
          {"postern_group_commit_failed_rounds_total", "Group commit rounds that failed.", true,
           d(commits.failed_rounds), ""},
          {"process_resident_memory_bytes", "Resident memory of the process (VmRSS).", false,
           d(process_resident_bytes()), ""},
          {"process_open_fds", "Open file descriptors of the process.", false, d(process_open_fds()), ""},
          {"postern_uptime_seconds", "Seconds since the server started.", false, uptime, ""},
          {"postern_build_info", "Always 1; the version of postern-server as a label.", false, 1,
           "version=\"" + escape_label_value(POSTERN_VERSION) + "\""},
      });
}

AdminServer::AdminServer(asio::io_context& io, MetricsSource metrics)
    : impl_(std::make_shared<Impl>(io, std::move(metrics))) {}

AdminServer::~AdminServer() = default;

Result<HostPort> AdminServer::listen(const HostPort& at) {
  return detail::open_listener(impl_->acceptor, at);
}

void AdminServer::start() {
  asio::co_spawn(impl_->acceptor.get_executor(), impl_->accept_loop(), asio::detached);
}

void AdminServer::shutdown() {
  auto impl = impl_;
  impl->stopping = true;
  asio::post(impl->acceptor.get_executor(), [impl] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  std::lock_guard lock(impl->sessions_mutex);
  for (auto& [id, weak] : impl->sessions) {
    if (auto stream = weak.lock()) {
      asio::post(stream->get_executor(), [stream] { stream->cancel(); });
    }
  }
}

std::size_t AdminServer::active_connections() const {
  return impl_->active.load();
}

}  // namespace postern::server
