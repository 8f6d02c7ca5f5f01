#include "postern/server/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "postern/server/delivery_hub.h"
#include "postern/server/detail/attachment_http.h"
#include "postern/crypto/secret.h"
#include "postern/server/detail/http_types.h"
#include "postern/server/detail/listen.h"
#include "postern/server/errors.h"
#include "postern/transport/net/front.h"
#include "postern/transport/net/inner_stream.h"

namespace postern::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const std::string& cert_file,
                                                             const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use,
                   ec);
  if (ec) return Errc::tls_failure;
  if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) return Errc::tls_failure;
  // Idle connections (most delivery WebSockets) give their 2 x 16 KiB record buffers back.
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return Errc::tls_failure;
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return Errc::tls_failure;
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) return Errc::tls_failure;
  return ctx;
}

namespace {

using detail::HeaderParser;
using detail::run_on;
using detail::Stream;

http::status to_status(unsigned code) {
  return static_cast<http::status>(code);
}

// What a read error means for the client: a response to send before closing, or none.
std::optional<ApiResponse> read_error_response(const beast::error_code& ec) {
  if (ec == http::error::header_limit) return error_response(431, "header_too_large", "request header too large");
  if (ec == http::error::body_limit) return error_response(413, "body_too_large", "request body too large");
  if (ec.category() == beast::error_code(http::error::end_of_stream).category() && ec != http::error::end_of_stream &&
      ec != http::error::partial_message) {
    return error_response(400, "bad_request", "malformed HTTP request");
  }
  return std::nullopt;
}

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  // What shutdown() needs of a session, touched only on the session's strand.
  struct SessionState {
    asio::any_io_executor executor;
    beast::tcp_stream* socket = nullptr;
    bool idle = true;
  };

  Impl(asio::io_context& io_, asio::ssl::context& tls_, asio::thread_pool& workers_, Api& api_,
       const HttpLimits& limits_, AttachmentService* attachments_, DeliveryHub* delivery_,
       const FrontConfig* front_param)
      : io(io_),
        tls(tls_),
        workers(workers_),
        api(api_),
        limits(limits_),
        attachments(attachments_),
        delivery(delivery_),
        front(front_param),
        acceptor(asio::make_strand(io_)) {}

  asio::io_context& io;
  asio::ssl::context& tls;
  asio::thread_pool& workers;
  Api& api;
  const HttpLimits& limits;
  AttachmentService* attachments;  // null: /v1/attachments is not served (tests of the API alone)
  DeliveryHub* delivery;           // null: /v1/websocket is not served
  const FrontConfig* front;        // null: no camouflage, the API straight over TLS
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> active{0};
  std::mutex sessions_mutex;  // guards sessions and next_id only; never held across co_await
  std::unordered_map<std::uint64_t, std::weak_ptr<SessionState>> sessions;
  std::uint64_t next_id = 0;

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(io), asio::as_tuple(use_awaitable));
      if (stopping || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        spdlog::warn("accept: {}", ec.message());
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
          co_await pause.async_wait(asio::as_tuple(use_awaitable));
        }
        continue;
      }
      if (active.load() >= limits.max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        bump(api.metrics().connections_refused);
        spdlog::warn("connection refused: {} connections open (the cap)", limits.max_connections);
        continue;
      }
      // Small answers (a WebSocket frame, a JSON reply) go out at once instead of waiting for the
      // peer's delayed ACK (Nagle): 40 ms per exchange otherwise.
      boost::system::error_code nodelay_ec;
      socket.set_option(tcp::no_delay(true), nodelay_ec);
      ++active;
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(std::move(socket)), [self = shared_from_this()](std::exception_ptr e) {
        --self->active;
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            spdlog::error("session ended by an exception: {}", x.what());
          } catch (...) {
            spdlog::error("session ended by an unknown exception");
          }
        }
      });
    }
  }

  std::uint64_t register_session(const std::shared_ptr<SessionState>& state) {
    std::lock_guard lock(sessions_mutex);
    const std::uint64_t id = next_id++;
    sessions.emplace(id, state);
    return id;
  }
  void unregister_session(std::uint64_t id) {
    std::lock_guard lock(sessions_mutex);
    sessions.erase(id);
  }

  awaitable<bool> write(Stream& stream, const ApiResponse& r, unsigned version, bool keep_alive) {
    http::response<http::string_body> res{to_status(r.status), version};
    res.set(http::field::server, "postern/" POSTERN_VERSION);
    res.set(http::field::cache_control, "no-store");
    if (!r.body.empty()) res.set(http::field::content_type, "application/json");
    for (const auto& [name, value] : r.headers) res.set(name, value);
    res.keep_alive(keep_alive);
    res.body() = r.body;
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(limits.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(use_awaitable));
    co_return !ec;
  }

  // After an error answer to a request whose body we did not read (413), reads and discards what
  // the client is still sending, for a bounded time and amount ("lingering close", as nginx does):
  // closing at once would reset the connection under a client still writing, and it would never
  // see the answer.
  awaitable<void> drain(Stream& stream) {
    constexpr std::size_t kMaxDrainBytes = 1024 * 1024;
    std::array<char, 16 * 1024> scratch;
    std::size_t drained = 0;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
    while (drained < kMaxDrainBytes) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(scratch), asio::as_tuple(use_awaitable));
      if (ec) break;
      drained += n;
    }
  }

  // The connection's stream once the front (or, without a front, the TLS handshake) is done;
  // nullopt when the connection ended there.
  awaitable<std::optional<Stream>> open_stream(tcp::socket socket, beast::flat_buffer& buffer) {
    if (front == nullptr) {
      transport::net::TlsStream tls_stream(std::move(socket), tls);
      beast::get_lowest_layer(tls_stream).expires_after(limits.handshake_timeout);
      auto [hs_ec] =
          co_await tls_stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(use_awaitable));
      if (hs_ec) {
        bump(api.metrics().tls_handshake_failures);
        co_return std::nullopt;
      }
      co_return Stream(std::move(tls_stream));
    }
    transport::net::FrontResult result = co_await transport::net::run_front(std::move(socket), tls, front->front);
    switch (result.kind) {
      case transport::net::FrontResult::Kind::done:
        co_return std::nullopt;
      case transport::net::FrontResult::Kind::open_api: {
        auto space = buffer.prepare(result.leftover.size());
        asio::buffer_copy(space, asio::buffer(result.leftover));
        buffer.commit(result.leftover.size());
        crypto::wipe(result.leftover.data(), result.leftover.size());
        co_return Stream(std::move(*result.tls));
      }
      case transport::net::FrontResult::Kind::tunnel: {
        auto inner = co_await transport::net::accept_inner(std::move(*result.tls), std::move(result.leftover),
                                                           std::move(result.websocket_key), front->inner);
        if (!inner) {
          spdlog::debug("inner channel refused: {}", inner.error().message());
          co_return std::nullopt;
        }
        co_return Stream(std::move(*inner));
      }
    }
    co_return std::nullopt;
  }

  awaitable<void> session(tcp::socket socket) {
    boost::system::error_code addr_ec;
    const std::string address = socket.remote_endpoint(addr_ec).address().to_string();
    auto state = std::make_shared<SessionState>();
    state->executor = co_await asio::this_coro::executor;
    const std::uint64_t id = register_session(state);
    // Until the connection is handed to the delivery WebSocket (which tracks it itself).
    struct Unregister {
      Impl& impl;
      std::uint64_t id;
      SessionState& state;
      bool attached = true;
      void detach() {
        if (!attached) return;
        attached = false;
        state.socket = nullptr;
        impl.unregister_session(id);
      }
      ~Unregister() { detach(); }
    } unregister{*this, id, *state};

    if (stopping) co_return;
    beast::flat_buffer buffer;
    std::optional<Stream> opened = co_await open_stream(std::move(socket), buffer);
    if (!opened || stopping) co_return;
    Stream& stream = *opened;
    state->socket = &beast::get_lowest_layer(stream);
    api.metrics().tls_connections.fetch_add(1, std::memory_order_relaxed);
    struct CountDown {
      ServerMetrics& m;
      ~CountDown() { m.tls_connections.fetch_sub(1, std::memory_order_relaxed); }
    } count_down{api.metrics()};

    bool close_gracefully = true;
    while (!stopping) {
      HeaderParser header_parser;
      header_parser.header_limit(limits.header_bytes);
      header_parser.body_limit(boost::none);  // each route sets its own below
      state->idle = true;
      beast::get_lowest_layer(stream).expires_after(limits.idle_timeout);
      auto [ec, header_bytes] =
          co_await http::async_read_header(stream, buffer, header_parser, asio::as_tuple(use_awaitable));
      (void)header_bytes;
      state->idle = false;
      if (!ec) {
        const auto& head = header_parser.get();
        const std::string_view head_target(head.target().data(), head.target().size());
        const std::string_view head_path = head_target.substr(0, head_target.find('?'));
        if (head_path == "/v1/websocket" && delivery != nullptr && beast::websocket::is_upgrade(head)) {
          // The connection becomes a delivery WebSocket; the session ends with it.
          unregister.detach();
          co_await delivery->serve(std::move(stream), std::move(buffer), header_parser.release(), address);
          co_return;
        }
        if ((head_path == "/v1/attachments" || head_path.starts_with("/v1/attachments/")) && attachments != nullptr) {
          detail::AttachmentHttpContext ctx{api, *attachments, workers, limits, api.metrics()};
          const bool keep = co_await detail::serve_attachment_request(ctx, stream, buffer, header_parser, address);
          if (!keep || stopping) break;
          continue;
        }
      }
      http::request_parser<http::string_body> parser(std::move(header_parser));
      // The larger of the two limits until the header names the route.
      parser.body_limit(std::max(limits.body_bytes, limits.message_body_bytes));
      const auto& head = parser.get();
      if (!ec && !Api::is_message_send(std::string_view(head.method_string().data(), head.method_string().size()),
                                       std::string_view(head.target().data(), head.target().size()))) {
        const auto length = parser.content_length();
        if (length && *length > limits.body_bytes) {
          ec = http::error::body_limit;
        } else {
          parser.body_limit(limits.body_bytes);  // nothing of the body is read yet
        }
      } else if (!ec) {
        const auto length = parser.content_length();
        if (length && *length > limits.message_body_bytes) ec = http::error::body_limit;
      }
      if (!ec && !parser.is_done()) {
        beast::get_lowest_layer(stream).expires_after(limits.read_timeout);
        std::tie(ec, std::ignore) = co_await http::async_read(stream, buffer, parser, asio::as_tuple(use_awaitable));
      }
      if (ec) {
        if (auto response = read_error_response(ec)) {
          spdlog::debug("read error answered with {}: {}", response->status, ec.message());
          api.metrics().count_http_status(response->status);
          if (co_await write(stream, *response, 11, false)) co_await drain(stream);
        } else if (ec != http::error::end_of_stream) {
          close_gracefully = false;  // timeout, reset or cancelled: do not wait for the peer
        }
        break;
      }

      const auto& req = parser.get();
      const auto started = std::chrono::steady_clock::now();
      const std::string method(req.method_string());
      const std::string target(req.target());
      const auto auth = req.find(http::field::authorization);
      ApiRequest api_request{method, target, auth == req.end() ? std::string_view() : std::string_view(auth->value()),
                             req.body(), address};
      ApiResponse response = co_await run_on(workers, [this, &api_request] { return api.handle(api_request); });
      // The body may carry a password and the header a bearer token: wiped before they are freed.
      crypto::wipe(parser.get().body().data(), parser.get().body().size());
      if (auth != req.end()) crypto::wipe(const_cast<char*>(auth->value().data()), auth->value().size());
      const auto elapsed_us =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
      spdlog::debug("{} {} {} {}us", method, Api::route_name(target), response.status, elapsed_us);
      api.metrics().count_http_status(response.status);

      const bool keep_alive = req.keep_alive() && !stopping;
      if (!co_await write(stream, response, req.version(), keep_alive)) {
        close_gracefully = false;
        break;
      }
      if (!keep_alive) break;
    }
    if (close_gracefully) {
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(asio::as_tuple(use_awaitable));
    }
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
};

HttpServer::HttpServer(asio::io_context& io, asio::ssl::context& tls, asio::thread_pool& workers, Api& api,
                       const HttpLimits& limits, AttachmentService* attachments, DeliveryHub* delivery,
                       const FrontConfig* front)
    : impl_(std::make_shared<Impl>(io, tls, workers, api, limits, attachments, delivery, front)) {}

HttpServer::~HttpServer() = default;

namespace detail {

Result<HostPort> open_listener(tcp::acceptor& acceptor, const HostPort& at) {
  boost::system::error_code ec;
  const std::string host = at.host == "localhost" ? "127.0.0.1" : at.host;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return Errc::bad_address;
  const tcp::endpoint endpoint(address, at.port);
  if (acceptor.open(endpoint.protocol(), ec); ec) return std::error_code(ec.value(), std::system_category());
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) return std::error_code(ec.value(), std::system_category());
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return std::error_code(ec.value(), std::system_category());
  }
  const auto bound = acceptor.local_endpoint(ec);
  if (ec) return std::error_code(ec.value(), std::system_category());
  return HostPort{bound.address().to_string(), bound.port()};
}

}  // namespace detail

Result<HostPort> HttpServer::listen(const HostPort& at) {
  return detail::open_listener(impl_->acceptor, at);
}

void HttpServer::start() {
  asio::co_spawn(impl_->acceptor.get_executor(), impl_->accept_loop(), asio::detached);
}

std::size_t HttpServer::active_connections() const {
  return impl_->active.load();
}

void HttpServer::shutdown() {
  auto impl = impl_;
  impl->stopping = true;
  asio::post(impl->acceptor.get_executor(), [impl] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  std::lock_guard lock(impl->sessions_mutex);
  for (auto& [id, weak] : impl->sessions) {
    if (auto state = weak.lock()) {
      asio::post(state->executor, [state] {
        if (state->socket != nullptr && state->idle) state->socket->cancel();
      });
    }
  }
}

}  // namespace postern::server
