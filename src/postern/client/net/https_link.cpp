// HttpsLink: see https_link.h for the design. Everything that touches a socket runs on the link's
// one io thread (no strands or locks needed there); user threads only start coroutines and wait
// for their results, and the delivery socket hands messages over through a mutex-guarded queue.
#include "postern/client/net/https_link.h"

#include "postern/client/net/doh.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "postern/client/errors.h"
#include "postern/crypto/hash.h"
#include "postern/crypto/secret.h"
#include "postern/transport/errors.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/net/any_stream.h"
#include "postern/transport/net/inner_stream.h"
#include "postern/transport/net/tls_client.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/proxy_handshake.h"

namespace postern::client::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using asio::awaitable;
using tcp = asio::ip::tcp;
using Stream = transport::net::AnyStream;
using WsStream = websocket::stream<Stream>;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::size_t kPieceBytes = 256 * 1024;  // streamed bodies move in pieces of this size
constexpr std::size_t kMaxInbox = 256;          // delivery messages waiting for receive()
constexpr std::chrono::seconds kWsSendTimeout{30};
constexpr std::chrono::seconds kWsCloseWait{2};

std::string bracket(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// Header names, values and the target go on the wire verbatim: no CR, LF or NUL (injection).
bool clean(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// A transport error while no response byte has arrived: the connection is gone (or never was).
std::error_code io_error(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return Errc::timeout;
  return Errc::unreachable;
}

// An error while reading a response that has begun.
std::error_code response_error(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return Errc::timeout;
  return Errc::protocol_error;
}

struct Conn {
  explicit Conn(Stream&& s) : stream(std::move(s)) {}
  Stream stream;  // TLS straight to the server, or the inner channel
  beast::flat_buffer buffer;  // bytes read past the last response (none, unless the server misbehaves)
  std::chrono::steady_clock::time_point idle_since;
};

// What one request/response exchange did, for the caller's retry and reuse decision.
struct Exchange {
  bool response_started = false;
  bool keep_alive = false;
};

template <class Fields>
void wipe_authorization(Fields& fields) {
  auto it = fields.find(http::field::authorization);
  if (it != fields.end()) crypto::wipe(const_cast<char*>(it->value().data()), it->value().size());
}

// The delivery WebSocket's state, shared by the user-facing socket and the io-thread coroutines.
struct WsState {
  explicit WsState(Stream&& stream) : ws(std::move(stream)), resume(ws.get_executor()) {}

  struct Out {
    Bytes data;
    bool close = false;
    std::shared_ptr<std::promise<Status>> done;
  };

  WsStream ws;
  asio::steady_timer resume;  // wakes the reader when it paused on a full inbox
  // io thread only
  std::deque<Out> outbox;
  bool writing = false;
  bool write_failed = false;
  bool close_sent = false;
  // shared with user threads
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Bytes> inbox;
  bool closed = false;
  bool reader_paused = false;
  std::optional<std::uint16_t> close_code;
};

awaitable<void> ws_read_loop(std::shared_ptr<WsState> s) {
  for (;;) {
    bool pause = false;
    {
      std::lock_guard lock(s->mutex);
      if (s->inbox.size() >= kMaxInbox) pause = s->reader_paused = true;
    }
    if (pause) {
      // receive() posts a cancel once it has taken messages; the post runs on this thread only
      // after this wait has started, so the wake-up cannot be lost.
      s->resume.expires_at(asio::steady_timer::time_point::max());
      co_await s->resume.async_wait(kTuple);
      continue;
    }
    beast::flat_buffer buffer;
    auto [ec, n] = co_await s->ws.async_read(buffer, kTuple);
    (void)n;
    if (ec) {
      std::lock_guard lock(s->mutex);
      s->closed = true;
      if (ec == websocket::error::closed) s->close_code = static_cast<std::uint16_t>(s->ws.reason().code);
      s->cv.notify_all();
      co_return;
    }
    if (!s->ws.got_binary()) continue;  // the protocol has binary messages only
    const auto data = buffer.cdata();
    const auto* begin = static_cast<const std::uint8_t*>(data.data());
    Bytes message(begin, begin + data.size());
    std::lock_guard lock(s->mutex);
    s->inbox.push_back(std::move(message));
    s->cv.notify_all();
  }
}

// One write or close at a time (Beast allows one of each kind in flight), in the order queued.
awaitable<void> ws_write_loop(std::shared_ptr<WsState> s) {
  while (!s->outbox.empty()) {
    WsState::Out out = std::move(s->outbox.front());
    s->outbox.pop_front();
    if (s->close_sent || s->write_failed) {
      out.done->set_value(out.close ? Status{} : Status{Errc::connection_closed});
      continue;
    }
    if (out.close) {
      s->close_sent = true;
      auto [ec] = co_await s->ws.async_close(websocket::close_code::normal, kTuple);
      (void)ec;  // the peer may be gone already; the socket is closed either way
      s->resume.cancel();  // a reader parked on a full inbox wakes, finds the socket closed and ends
      out.done->set_value(Status{});
      continue;
    }
    auto [ec, n] = co_await s->ws.async_write(asio::buffer(out.data), kTuple);
    (void)n;
    if (ec) {
      s->write_failed = true;
      out.done->set_value(ec == beast::error::timeout ? Errc::timeout : Errc::connection_closed);
    } else {
      out.done->set_value(Status{});
    }
  }
  s->writing = false;
}

void ws_enqueue(const std::shared_ptr<WsState>& s, WsState::Out out) {
  s->outbox.push_back(std::move(out));
  if (!s->writing) {
    s->writing = true;
    asio::co_spawn(s->ws.get_executor(), ws_write_loop(s), asio::detached);
  }
}

}  // namespace

struct HttpsLink::Core {
  Core(Invite invite_in, HttpsLinkOptions options_in)
      : invite(std::move(invite_in)),
        options(std::move(options_in)),
        dial_host(options.connect_host.value_or(invite.host)),
        dial_port(options.connect_port.value_or(invite.port)),
        host_header(bracket(invite.host) + ":" + std::to_string(invite.port)),
        tls(transport::net::make_client_tls_context()),
        io(1),
        work(asio::make_work_guard(io)) {
    if (invite.server_key && invite.front_secret) {
      auto authenticator = transport::FrontAuthenticator::create(ByteView(*invite.front_secret));
      if (authenticator) front_auth.emplace(std::move(*authenticator));
    }
    thread = std::thread([this] {
      for (;;) {
        try {
          io.run();
          return;
        } catch (...) {  // nothing of ours throws on the io thread; keep serving if a handler did
        }
      }
    });
  }

  ~Core() {
    work.reset();
    io.stop();
    if (thread.joinable()) thread.join();
    idle.clear();
  }

  const Invite invite;
  const HttpsLinkOptions options;
  const std::string dial_host;
  const std::uint16_t dial_port;
  const std::string host_header;
  std::optional<transport::FrontAuthenticator> front_auth;  // with the invite's key and secret
  std::atomic<std::int64_t> clock_offset{0};  // server clock - ours, learnt from its answers
  // The ClientHello of curl on this system (transport/net/tls_client.h); no CA, the pin is checked.
  std::shared_ptr<ssl::context> tls;  // before io: SSL objects still alive in io's handlers refer to it
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::vector<std::unique_ptr<Conn>> idle;  // io thread only
  std::atomic<std::uint64_t> opened{0};
  std::thread thread;

  bool on_io_thread() { return io.get_executor().running_in_this_thread(); }

  // Runs `op` on the io thread and waits for its result.
  template <class T>
  static awaitable<void> deliver(awaitable<Result<T>> op, std::shared_ptr<std::promise<Result<T>>> promise) {
    Result<T> result = co_await std::move(op);
    promise->set_value(std::move(result));
  }

  // The cancellation of one call, io thread only. The signal outlives the call's coroutine (its
  // cancellation state lives in the signal's slot) and is never emitted once the call has ended.
  struct CallCancel {
    asio::cancellation_signal signal;
    bool ended = false;
  };

  // Cancels the operation the call waits on, and again every kCancelAgain until the call has
  // ended. Once is not always enough: a cancellation that lands between two steps of a composed
  // operation (the TLS handshake's write, then its read) is not seen by the next step, and a
  // system resolve cannot be cancelled (its successor is).
  static constexpr std::chrono::milliseconds kCancelAgain{20};
  void stop_call(const std::shared_ptr<CallCancel>& call) {
    if (call->ended) return;
    call->signal.emit(asio::cancellation_type::terminal);
    auto again = std::make_shared<asio::steady_timer>(io, kCancelAgain);
    again->async_wait([this, call, again](const boost::system::error_code& ec) {
      if (!ec) stop_call(call);
    });
  }

  // Runs `op` on the io thread and waits for its result; `cancel` (may be null) stops it. Once
  // cancelled, the operation the coroutine waits on ends with operation_aborted and any further
  // co_await throws it (Asio's throw_if_cancelled): either way the call ends with an error, which
  // is reported as Errc::cancelled. A call that had finished before the cancel keeps its result.
  template <class T>
  Result<T> run(awaitable<Result<T>> op, CancelToken* cancel = nullptr) {
    if (cancel && cancel->cancelled()) return Errc::cancelled;
    auto promise = std::make_shared<std::promise<Result<T>>>();
    auto future = promise->get_future();
    auto call = std::make_shared<CallCancel>();
    auto on_exit = [this, promise, call](std::exception_ptr e) {
      call->ended = true;
      if (e) promise->set_value(Errc::protocol_error);
      // The coroutine's cancellation state lives in the signal and is torn down after this
      // handler, in the same turn of the io thread: the signal goes only after that.
      asio::post(io, [call] {});
    };
    asio::co_spawn(io, deliver<T>(std::move(op), promise),
                   asio::bind_cancellation_slot(call->signal.slot(), on_exit));
    if (!cancel) return future.get();
    Result<T> result = [&] {
      auto hook = cancel->on_cancel([this, call] { asio::post(io, [this, call] { stop_call(call); }); });
      return future.get();
    }();
    if (!result && cancel->cancelled()) return Errc::cancelled;
    return result;
  }

  // A fresh connection: resolve, TCP connect, TLS handshake, pin check; then, when the invite
  // has the server's key and secret, the inner channel (retried once with the clock corrected
  // by the server's Date header when the front did not accept the token).
  awaitable<Result<std::unique_ptr<Conn>>> connect() {
    auto tls_stream = co_await connect_tls();
    if (!tls_stream) co_return tls_stream.error();
    if (!front_auth) co_return std::make_unique<Conn>(Stream(std::move(*tls_stream)));
    transport::net::InnerClientOptions inner_options;
    inner_options.host_header = host_header;
    inner_options.auth = &*front_auth;
    inner_options.server_key = *invite.server_key;
    inner_options.timeout = options_timeout();
    inner_options.clock_offset_seconds = clock_offset.load();
    transport::net::InnerClientReport report;
    auto inner = co_await transport::net::connect_inner(std::move(*tls_stream), inner_options, &report);
    if (!inner && inner.error() == transport::Errc::bad_token && report.server_date) {
      const std::int64_t ours = std::chrono::duration_cast<std::chrono::seconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count();
      const std::int64_t offset = *report.server_date - ours;
      if (std::abs(offset - inner_options.clock_offset_seconds) > 30) {
        clock_offset.store(offset);
        inner_options.clock_offset_seconds = offset;
        auto again = co_await connect_tls();
        if (!again) co_return again.error();
        inner = co_await transport::net::connect_inner(std::move(*again), inner_options, &report);
      }
    }
    if (!inner) {
      if (inner.error() == transport::Errc::timeout) co_return Errc::timeout;
      if (inner.error() == transport::Errc::handshake_failed) co_return Errc::pin_mismatch;
      co_return Errc::unreachable;  // a refused token (bad_token) included
    }
    co_return std::make_unique<Conn>(Stream(std::move(*inner)));
  }

  std::chrono::milliseconds options_timeout() const { return options.connect_timeout; }

  // Resolves (unless numeric) and connects to host:port before the deadline.
  awaitable<Status> tcp_connect(beast::tcp_stream& socket, const std::string& host, std::uint16_t port,
                                std::chrono::steady_clock::time_point deadline) {
    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code ec;
    if (const auto address = asio::ip::make_address(host, ec); !ec) {
      endpoints.emplace_back(address, port);
    } else {
      tcp::resolver resolver(io);
      asio::steady_timer guard(io);
      guard.expires_at(deadline);
      auto on_expiry = [&resolver](const boost::system::error_code& wait_ec) {
        if (!wait_ec) resolver.cancel();
      };
      guard.async_wait(on_expiry);
      auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), kTuple);
      guard.cancel();
      if (rec || results.empty()) co_return Errc::unreachable;
      for (const auto& entry : results) endpoints.push_back(entry.endpoint());
    }
    socket.expires_at(deadline);
    auto [cec, endpoint] = co_await socket.async_connect(endpoints, kTuple);
    (void)endpoint;
    if (cec) co_return Errc::unreachable;
    co_return Status{};
  }

  // Connects to the first of these addresses that answers.
  awaitable<Status> tcp_connect_any(beast::tcp_stream& socket, const std::vector<std::string>& addresses,
                                    std::uint16_t port, std::chrono::steady_clock::time_point deadline) {
    std::vector<tcp::endpoint> endpoints;
    for (const auto& text : addresses) {
      boost::system::error_code ec;
      const auto address = asio::ip::make_address(text, ec);
      if (!ec) endpoints.emplace_back(address, port);
    }
    if (endpoints.empty()) co_return Errc::unreachable;
    socket.expires_at(deadline);
    auto [cec, endpoint] = co_await socket.async_connect(endpoints, kTuple);
    (void)endpoint;
    if (cec) co_return Errc::unreachable;
    co_return Status{};
  }

  // Reads exactly out.size() bytes (the deadline is already set on the socket).
  static awaitable<Status> read_exact(beast::tcp_stream& socket, std::span<std::uint8_t> out) {
    auto [ec, n] = co_await asio::async_read(socket, asio::buffer(out.data(), out.size()), kTuple);
    (void)n;
    if (ec) co_return ec == beast::error::timeout ? Errc::timeout : Errc::unreachable;
    co_return Status{};
  }
  static awaitable<Status> write_all(beast::tcp_stream& socket, ByteView data) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(data.data(), data.size()), kTuple);
    (void)n;
    if (ec) co_return ec == beast::error::timeout ? Errc::timeout : Errc::unreachable;
    co_return Status{};
  }

  // The proxy's handshake on a connected socket: afterwards the socket is a byte pipe to
  // dial_host:dial_port (the name travels to the proxy; nothing is resolved here). A refusal or a
  // malformed answer is Errc::unreachable: this path does not reach the server.
  awaitable<Status> proxy_handshake(beast::tcp_stream& socket) {
    const ProxyConfig& proxy = *options.proxy;
    if (proxy.kind == ProxyConfig::Kind::socks5) {
      namespace s5 = transport::socks5;
      const bool with_credentials = proxy.credentials.has_value();
      const Bytes greeting = s5::greeting(with_credentials);
      if (auto w = co_await write_all(socket, ByteView(greeting)); !w) co_return w;
      std::array<std::uint8_t, 2> choice{};
      if (auto r = co_await read_exact(socket, choice); !r) co_return r;
      auto method = s5::parse_method_choice(ByteView(choice.data(), choice.size()), with_credentials);
      if (!method) co_return Errc::unreachable;
      if (*method == 0x02) {
        auto request = s5::credentials_request(*proxy.credentials);
        if (!request) co_return Errc::invalid_argument;
        auto w = co_await write_all(socket, ByteView(*request));
        crypto::wipe(request->data(), request->size());
        if (!w) co_return w;
        std::array<std::uint8_t, 2> reply{};
        if (auto r = co_await read_exact(socket, reply); !r) co_return r;
        if (!s5::parse_credentials_reply(ByteView(reply.data(), reply.size()))) co_return Errc::unreachable;
      }
      auto request = s5::connect_request(dial_host, dial_port);
      if (!request) co_return Errc::invalid_argument;
      if (auto w = co_await write_all(socket, ByteView(*request)); !w) co_return w;
      Bytes reply(5);
      if (auto r = co_await read_exact(socket, reply); !r) co_return r;
      auto size = s5::connect_reply_size(ByteView(reply));
      if (!size || !*size || **size < reply.size()) co_return Errc::unreachable;
      const std::size_t have = reply.size();
      reply.resize(**size);
      if (auto r = co_await read_exact(socket, std::span<std::uint8_t>(reply.data() + have, reply.size() - have)); !r)
        co_return r;
      if (!s5::parse_connect_reply(ByteView(reply))) co_return Errc::unreachable;
      co_return Status{};
    }
    std::string request = transport::http_connect::request(dial_host, dial_port, proxy.credentials);
    auto w = co_await write_all(socket, ByteView(reinterpret_cast<const std::uint8_t*>(request.data()), request.size()));
    crypto::wipe(request.data(), request.size());
    if (!w) co_return w;
    // Byte by byte: nothing past the blank line may be consumed (the TLS server speaks only after
    // our ClientHello, so nothing should follow it anyway). The head is small.
    Bytes head;
    for (;;) {
      std::array<std::uint8_t, 1> byte{};
      if (auto r = co_await read_exact(socket, byte); !r) co_return r;
      head.push_back(byte[0]);
      auto reply = transport::http_connect::parse_reply(ByteView(head));
      if (!reply) co_return Errc::unreachable;
      if (!*reply) continue;
      if ((*reply)->status / 100 != 2) co_return Errc::unreachable;
      co_return Status{};
    }
  }

  awaitable<Result<transport::net::TlsStream>> connect_tls() {
    const auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
    beast::tcp_stream socket(io.get_executor());
    if (options.proxy) {
      if (auto c = co_await tcp_connect(socket, options.proxy->host, options.proxy->port, deadline); !c) co_return c.error();
    } else {
      // A name: the invite's addr= addresses, else DNS-over-HTTPS, else the system's resolver.
      std::vector<std::string> addresses;
      if (!transport::net::is_ip_literal(dial_host) && !options.connect_host) {
        addresses = invite.addresses;
        if (addresses.empty() && options.doh) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
          auto resolved = co_await resolve_doh(*options.doh, dial_host, left);
          if (!resolved || resolved->empty()) co_return Errc::unreachable;
          addresses = std::move(*resolved);
        }
      }
      Status c = addresses.empty() ? co_await tcp_connect(socket, dial_host, dial_port, deadline)
                                   : co_await tcp_connect_any(socket, addresses, dial_port, deadline);
      if (!c) co_return c.error();
    }
    opened.fetch_add(1, std::memory_order_relaxed);
    boost::system::error_code ignored;
    socket.socket().set_option(tcp::no_delay(true), ignored);
    if (options.proxy) {
      socket.expires_at(deadline);
      if (auto h = co_await proxy_handshake(socket); !h) co_return h.error();
    }
    transport::net::TlsStream stream(socket.release_socket(), *tls, ssl::stream_base::client);

    if (!transport::net::set_server_name(stream.native_handle(), invite.host)) co_return Errc::unreachable;
    beast::get_lowest_layer(stream).expires_at(deadline);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kTuple);
    if (hec) co_return io_error(hec);
    if (!transport::net::peer_key_matches(stream.native_handle(), invite.pin)) {
      beast::get_lowest_layer(stream).close();
      co_return Errc::pin_mismatch;
    }
    beast::get_lowest_layer(stream).expires_never();
    co_return std::move(stream);
  }

  std::unique_ptr<Conn> take_idle() {
    const auto now = std::chrono::steady_clock::now();
    while (!idle.empty()) {
      auto conn = std::move(idle.back());
      idle.pop_back();
      if (now - conn->idle_since < options.max_idle_time) return conn;
    }
    return nullptr;
  }

  void put_idle(std::unique_ptr<Conn> conn) {
    if (options.max_idle_connections == 0) return;
    if (idle.size() >= options.max_idle_connections) idle.erase(idle.begin());  // the oldest goes
    conn->idle_since = std::chrono::steady_clock::now();
    idle.push_back(std::move(conn));
  }

  template <class Message>
  void set_common_headers(Message& m, const HttpRequest& req) const {
    m.set(http::field::host, host_header);
    for (const auto& h : req.headers) m.set(h.name, h.value);
    if (req.bearer) m.set(http::field::authorization, "Bearer " + *req.bearer);
  }

  awaitable<Status> write_request(Conn& c, const HttpRequest& req, http::verb verb) {
    auto& socket = beast::get_lowest_layer(c.stream);
    if (!req.body_source) {
      http::request<http::string_body> message{verb, req.target, 11};
      set_common_headers(message, req);
      message.body() = req.body;
      message.prepare_payload();
      socket.expires_after(req.io_timeout);
      auto [ec, n] = co_await http::async_write(c.stream, message, kTuple);
      (void)n;
      wipe_authorization(message);
      if (ec) co_return io_error(ec);
      co_return Status{};
    }
    http::request<http::empty_body> head{verb, req.target, 11};
    set_common_headers(head, req);
    head.content_length(req.body_length);
    http::request_serializer<http::empty_body> serializer{head};
    socket.expires_after(req.io_timeout);
    auto [ec, n] = co_await http::async_write_header(c.stream, serializer, kTuple);
    (void)n;
    wipe_authorization(head);
    if (ec) co_return io_error(ec);
    // The body follows the header verbatim (Content-Length framing), one piece at a time.
    std::vector<std::uint8_t> piece(static_cast<std::size_t>(std::min<std::uint64_t>(kPieceBytes, req.body_length)));
    std::uint64_t left = req.body_length;
    while (left > 0) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, piece.size()));
      auto got = req.body_source(std::span<std::uint8_t>(piece.data(), want));
      if (!got) co_return got.error();
      if (*got == 0 || *got > want) co_return Errc::invalid_argument;  // the source ended early
      socket.expires_after(req.io_timeout);
      auto [wec, written] = co_await asio::async_write(c.stream, asio::buffer(piece.data(), *got), kTuple);
      (void)written;
      if (wec) co_return io_error(wec);
      left -= *got;
    }
    co_return Status{};
  }

  awaitable<Result<HttpResponse>> exchange(Conn& c, const HttpRequest& req, Exchange& x) {
    const http::verb verb = http::string_to_verb(req.method);
    if (auto written = co_await write_request(c, req, verb); !written) co_return written.error();

    auto& socket = beast::get_lowest_layer(c.stream);
    http::response_parser<http::empty_body> head_parser;
    head_parser.header_limit(static_cast<std::uint32_t>(kMaxResponseHeaderBytes));
    head_parser.body_limit(boost::none);  // set below, once the header tells where the body goes
    if (verb == http::verb::head) head_parser.skip(true);
    socket.expires_after(req.io_timeout);
    auto [hec, header_bytes] = co_await http::async_read_header(c.stream, c.buffer, head_parser, kTuple);
    (void)header_bytes;
    x.response_started = head_parser.got_some() || c.buffer.size() > 0;
    if (hec) {
      if (hec == beast::error::timeout) co_return Errc::timeout;
      if (!x.response_started) co_return Errc::unreachable;
      co_return Errc::protocol_error;
    }

    HttpResponse response;
    response.status = head_parser.get().result_int();
    for (const auto& field : head_parser.get()) {
      response.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    if (head_parser.is_done()) {
      x.keep_alive = head_parser.keep_alive();
      co_return response;
    }
    if (req.body_sink && response.status / 100 == 2) {
      http::response_parser<http::buffer_body> parser(std::move(head_parser));
      std::vector<std::uint8_t> piece(kPieceBytes);
      while (!parser.is_done()) {
        parser.get().body().data = piece.data();
        parser.get().body().size = piece.size();
        socket.expires_after(req.io_timeout);
        auto [ec, n] = co_await http::async_read_some(c.stream, c.buffer, parser, kTuple);
        (void)n;
        if (ec && ec != http::error::need_buffer) co_return response_error(ec);
        const std::size_t got = piece.size() - parser.get().body().size;
        if (got > 0) {
          if (auto sunk = req.body_sink(ByteView(piece.data(), got)); !sunk) co_return sunk.error();
        }
      }
      x.keep_alive = parser.keep_alive();
      co_return response;
    }
    http::response_parser<http::string_body> parser(std::move(head_parser));
    // Beast checks Content-Length against the limit only while parsing the header (unlimited then).
    if (const auto length = parser.content_length(); length && *length > kMaxResponseBodyBytes) {
      co_return Errc::protocol_error;
    }
    parser.body_limit(kMaxResponseBodyBytes);
    while (!parser.is_done()) {
      socket.expires_after(req.io_timeout);
      auto [ec, n] = co_await http::async_read_some(c.stream, c.buffer, parser, kTuple);
      (void)n;
      if (ec) co_return response_error(ec);
    }
    x.keep_alive = parser.keep_alive();
    response.body = std::move(parser.get().body());
    co_return response;
  }

  // What would not go on the wire as given (or would smuggle header lines) is refused up front.
  static bool valid(const HttpRequest& req) {
    if (http::string_to_verb(req.method) == http::verb::unknown || req.target.empty() || req.target.front() != '/' ||
        !clean(req.target) || req.target.find(' ') != std::string::npos) {
      return false;
    }
    for (const auto& h : req.headers) {
      if (h.name.empty() || !clean(h.name) || !clean(h.value) || h.name.find_first_of(": ") != std::string::npos) {
        return false;
      }
    }
    return !req.bearer || clean(*req.bearer);
  }

  awaitable<Result<HttpResponse>> send(const HttpRequest& req) {
    if (!valid(req)) co_return Errc::invalid_argument;
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<Conn> conn = take_idle();
      const bool reused = conn != nullptr;
      if (!conn) {
        auto fresh = co_await connect();
        if (!fresh) co_return fresh.error();
        conn = std::move(*fresh);
      }
      Exchange x;
      auto result = co_await exchange(*conn, req, x);
      if (result) {
        if (x.keep_alive && conn->buffer.size() == 0) put_idle(std::move(conn));
        co_return result;
      }
      // A kept-alive connection the server has closed meanwhile fails before any answer: once
      // more on a fresh one, unless the body came from a source that cannot be rewound.
      const bool retry = reused && attempt == 0 && !x.response_started && !req.body_source &&
                         result.error() == make_error_code(Errc::unreachable);
      if (!retry) co_return result;
    }
  }

  awaitable<Result<std::shared_ptr<WsState>>> open_delivery(std::string bearer) {
    struct Wipe {
      std::string& s;
      ~Wipe() { crypto::wipe(s.data(), s.size()); }
    } wipe{bearer};
    auto conn = co_await connect();
    if (!conn) co_return conn.error();
    auto state = std::make_shared<WsState>(std::move((*conn)->stream));
    auto& ws = state->ws;
    beast::get_lowest_layer(ws).expires_never();  // the WebSocket keeps its own timeouts
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = options.connect_timeout;
    if (options.delivery_idle_timeout.count() > 0) {
      // Beast pings after half the idle time without a frame and fails the read (timeout) when
      // the whole idle time passes without one: a black-holed path ends within it.
      timeouts.idle_timeout = options.delivery_idle_timeout;
      timeouts.keep_alive_pings = true;
    } else {
      timeouts.idle_timeout = websocket::stream_base::none();
      timeouts.keep_alive_pings = false;
    }
    ws.set_option(timeouts);
    ws.read_message_max(kMaxDeliveryMessageBytes);
    ws.binary(true);
    auto decorate = [&bearer](websocket::request_type& request) {
      request.set(http::field::authorization, "Bearer " + bearer);
    };
    ws.set_option(websocket::stream_base::decorator(decorate));
    websocket::response_type answer;
    auto [ec] = co_await ws.async_handshake(answer, host_header, "/v1/websocket", kTuple);
    ws.set_option(websocket::stream_base::decorator([](websocket::request_type&) {}));
    if (ec) {
      if (ec == websocket::error::upgrade_declined) co_return Errc::server_error;
      if (ec == beast::error::timeout) co_return Errc::timeout;
      co_return Errc::protocol_error;
    }
    asio::co_spawn(io, ws_read_loop(state), asio::detached);
    co_return state;
  }
};

namespace {

class HttpsDeliverySocket final : public DeliverySocket {
 public:
  HttpsDeliverySocket(std::shared_ptr<HttpsLink::Core> core, std::shared_ptr<WsState> state)
      : core_(std::move(core)), state_(std::move(state)) {}
  ~HttpsDeliverySocket() override { close(); }
  HttpsDeliverySocket(const HttpsDeliverySocket&) = delete;
  HttpsDeliverySocket& operator=(const HttpsDeliverySocket&) = delete;

  Status send(ByteView frame) override {
    if (core_->on_io_thread()) return Errc::invalid_argument;
    {
      std::lock_guard lock(state_->mutex);
      if (state_->closed) return Errc::connection_closed;
    }
    auto done = std::make_shared<std::promise<Status>>();
    auto future = done->get_future();
    auto enqueue = [s = state_, data = Bytes(frame.begin(), frame.end()), done]() mutable {
      ws_enqueue(s, WsState::Out{std::move(data), false, std::move(done)});
    };
    asio::post(core_->io, std::move(enqueue));
    if (future.wait_for(kWsSendTimeout) != std::future_status::ready) {
      // The server does not take what we write: give the connection up.
      asio::post(core_->io, [s = state_] { beast::get_lowest_layer(s->ws).close(); });
      return Errc::timeout;
    }
    return future.get();
  }

  Result<std::optional<Bytes>> receive(std::chrono::milliseconds timeout) override {
    bool wake_reader = false;
    std::optional<Bytes> message;
    {
      std::unique_lock lock(state_->mutex);
      state_->cv.wait_for(lock, timeout, [this] { return !state_->inbox.empty() || state_->closed; });
      if (!state_->inbox.empty()) {
        message = std::move(state_->inbox.front());
        state_->inbox.pop_front();
        if (state_->reader_paused) {
          state_->reader_paused = false;
          wake_reader = true;
        }
      } else if (state_->closed) {
        return Errc::connection_closed;
      }
    }
    if (wake_reader) asio::post(core_->io, [s = state_] { s->resume.cancel(); });
    return message;
  }

  std::optional<std::uint16_t> close_code() const override {
    std::lock_guard lock(state_->mutex);
    return state_->close_code;
  }

  void close() override {
    if (closing_.exchange(true)) return;
    auto done = std::make_shared<std::promise<Status>>();
    auto future = done->get_future();
    auto enqueue = [s = state_, done]() mutable { ws_enqueue(s, WsState::Out{Bytes{}, true, std::move(done)}); };
    asio::post(core_->io, std::move(enqueue));
    if (core_->on_io_thread()) return;
    (void)future.wait_for(kWsCloseWait);
  }

 private:
  std::shared_ptr<HttpsLink::Core> core_;  // keeps the io thread alive while the socket exists
  std::shared_ptr<WsState> state_;
  std::atomic<bool> closing_{false};
};

}  // namespace

HttpsLink::HttpsLink(Invite invite, HttpsLinkOptions options)
    : core_(std::make_shared<Core>(std::move(invite), std::move(options))) {}

HttpsLink::~HttpsLink() = default;

Result<HttpResponse> HttpsLink::send(const HttpRequest& request) {
  if (core_->on_io_thread()) return Errc::invalid_argument;  // from a body callback: would deadlock
  return core_->run<HttpResponse>(core_->send(request), request.cancel.get());
}

namespace {

Result<std::unique_ptr<DeliverySocket>> open_delivery_on(const std::shared_ptr<HttpsLink::Core>& core,
                                                         std::string_view bearer, CancelToken* cancel) {
  if (core->on_io_thread()) return Errc::invalid_argument;
  if (!clean(bearer)) return Errc::invalid_argument;
  auto state = core->run<std::shared_ptr<WsState>>(core->open_delivery(std::string(bearer)), cancel);
  if (!state) return state.error();
  return std::unique_ptr<DeliverySocket>(std::make_unique<HttpsDeliverySocket>(core, std::move(*state)));
}

}  // namespace

Result<std::unique_ptr<DeliverySocket>> HttpsLink::open_delivery(std::string_view bearer) {
  return open_delivery_on(core_, bearer, nullptr);
}

Result<std::unique_ptr<DeliverySocket>> HttpsLink::open_delivery_cancellable(std::string_view bearer,
                                                                             CancelToken& cancel) {
  return open_delivery_on(core_, bearer, &cancel);
}

std::string HttpsLink::describe() const {
  std::string text = (core_->invite.relay ? "relay " : "direct ") + bracket(core_->dial_host) + ":" + std::to_string(core_->dial_port);
  if (core_->options.connect_host || core_->options.connect_port) text += " (for " + core_->host_header + ")";
  if (core_->options.proxy) text += " via " + core_->options.proxy->describe();
  return text;
}

Status HttpsLink::prepare(CancelToken* cancel) {
  if (core_->on_io_thread()) return Errc::invalid_argument;
  auto op = [](std::shared_ptr<Core> core) -> awaitable<Result<bool>> {
    auto conn = co_await core->connect();
    if (!conn) co_return conn.error();
    core->put_idle(std::move(*conn));
    co_return true;
  };
  auto done = core_->run<bool>(op(core_), cancel);
  if (!done) return done.error();
  return Status{};
}

std::string ProxyConfig::describe() const {
  return std::string(kind == Kind::socks5 ? "socks5://" : "http://") + bracket(host) + ":" + std::to_string(port);
}

std::uint64_t HttpsLink::connections_opened() const {
  return core_->opened.load(std::memory_order_relaxed);
}

}  // namespace postern::client::net
