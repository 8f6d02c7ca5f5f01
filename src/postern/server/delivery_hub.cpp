#include "postern/server/delivery_hub.h"

#include <chrono>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <spdlog/spdlog.h>

#include "postern/crypto/secret.h"
#include "postern/server/delivery_frames.h"

namespace postern::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using asio::use_awaitable;
using detail::run_on;
using detail::Stream;

namespace {

// Close codes of our own (4000-4999 are for applications, RFC 6455 section 7.4.2).
constexpr std::uint16_t kCloseReplaced = 4000;      // a newer connection of the same device
constexpr std::uint16_t kCloseUnauthorized = 4001;  // the device was removed or signed out
// A batch of frames written at once holds at most this many frames and about this many bytes.
constexpr std::size_t kMaxBatchFrames = 256;
constexpr std::size_t kMaxBatchBytes = 256 * 1024;

using Frame = std::shared_ptr<const std::string>;

Frame share(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}

// A FIFO that holds no memory while empty (std::deque allocates a map and a 512-byte block even
// then): most connections are idle most of the time, and each byte counts 10,000 times.
template <class T>
class LeanQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  void push_back(T value) { items_.push_back(std::move(value)); }
  void pop_front() {
    ++head_;
    if (empty()) {
      clear();
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {  // never drained: drop the dead prefix
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    std::vector<T>().swap(items_);
    head_ = 0;
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

struct DeviceKey {
  std::int64_t account = 0;
  std::uint32_t device = 0;
  bool operator==(const DeviceKey&) const = default;
};

struct DeviceKeyHash {
  std::size_t operator()(const DeviceKey& k) const noexcept {
    return std::hash<std::int64_t>()(k.account) * 1000003u ^ std::hash<std::uint32_t>()(k.device);
  }
};

}  // namespace

// One authenticated WebSocket. Every member is touched only on the connection's strand (the
// executor of its socket), except `key` and `owner`, which are set before it is shared.
struct Connection : std::enable_shared_from_this<Connection> {
  explicit Connection(Stream&& stream) : ws(std::move(stream)), slot_free(ws.get_executor()) {}

  websocket::stream<Stream> ws;
  asio::steady_timer slot_free;  // the reader waits here while too many sends are in flight
  DeviceKey key;
  store::TokenOwner owner;

  LeanQueue<Frame> outbox;         // frames waiting to be written, in order
  std::size_t live_frames = 0;     // envelopes pushed live that are in the outbox
  bool writing = false;            // the pump coroutine is running
  bool live = false;               // pushing live; false: sending from the store
  bool dirty = false;              // a push arrived while reading from the store
  bool queue_empty_sent = false;
  bool closed = false;             // reading ended or a close was started: write nothing more
  std::optional<std::uint16_t> close_code;  // a close to send once the current write is done
  std::int64_t last_id = 0;        // highest server id put into the outbox
  std::size_t sends_in_flight = 0;  // read and not yet answered

  // Sends waiting to be checked and submitted, in arrival order (run_sends, on a worker).
  std::mutex sends_mutex;
  LeanQueue<SendFrame> pending_sends;
  bool sends_running = false;
};

struct DeliveryHub::Impl : std::enable_shared_from_this<DeliveryHub::Impl> {
  Impl(asio::thread_pool& workers_, Api& api_, const ServerConfig& config_)
      : workers(workers_), api(api_), config(config_), metrics(api_.metrics()) {}

  asio::thread_pool& workers;
  Api& api;
  const ServerConfig& config;
  ServerMetrics& metrics;

  mutable std::mutex mutex;  // guards the members below; never held across a co_await
  std::unordered_map<DeviceKey, std::shared_ptr<Connection>, DeviceKeyHash> connections;
  bool stopping = false;

  // ---- on the connection's strand ----

  // Starts the writer if it is not running.
  void kick(const std::shared_ptr<Connection>& c) {
    if (c->writing) return;
    c->writing = true;
    asio::co_spawn(c->ws.get_executor(), pump(c), asio::detached);
  }

  void enqueue(const std::shared_ptr<Connection>& c, Frame frame) {
    if (c->closed) return;
    c->outbox.push_back(std::move(frame));
    kick(c);
  }

  void push_live(const std::shared_ptr<Connection>& c, std::int64_t server_id, Frame frame) {
    if (c->closed) return;
    if (!c->live) {
      c->dirty = true;  // the store read in progress may have missed it: read again
      return;
    }
    if (server_id <= c->last_id) return;  // already sent from the store
    if (c->live_frames >= config.messages.ws_outbox_frames) {
      // A slow reader: stop pushing; the store has everything, read it again when caught up.
      c->live = false;
      c->dirty = true;
      kick(c);
      return;
    }
    c->last_id = server_id;
    ++c->live_frames;
    bump(metrics.messages_pushed);
    c->outbox.push_back(std::move(frame));
    kick(c);
  }

  void request_close(const std::shared_ptr<Connection>& c, std::uint16_t code) {
    if (c->closed || c->close_code) return;
    c->close_code = code;
    kick(c);
  }

  // The single writer of a connection: writes the outbox, reads the queue from the store when
  // not live, and sends a requested close. Ends when there is nothing to do.
  awaitable<void> pump(std::shared_ptr<Connection> c) {
    auto self = shared_from_this();
    for (;;) {
      if (c->close_code) {
        const websocket::close_reason reason(*c->close_code);
        c->close_code.reset();
        c->closed = true;
        c->outbox.clear();
        co_await c->ws.async_close(reason, asio::as_tuple(use_awaitable));
        break;
      }
      if (c->closed) break;
      if (!c->outbox.empty()) {
        // What has piled up goes out as one batch: one TLS record and one system call.
        Frame frame = std::move(c->outbox.front());
        c->outbox.pop_front();
        if (!c->outbox.empty()) {
          std::vector<Frame> held{std::move(frame)};
          std::size_t bytes = held.front()->size();
          while (!c->outbox.empty() && held.size() < kMaxBatchFrames && bytes < kMaxBatchBytes) {
            bytes += c->outbox.front()->size();
            held.push_back(std::move(c->outbox.front()));
            c->outbox.pop_front();
          }
          std::vector<const std::string*> parts;
          parts.reserve(held.size());
          for (const auto& f : held) parts.push_back(f.get());
          frame = share(encode_batch_frame(parts));
        }
        c->ws.binary(true);
        auto [ec, n] = co_await c->ws.async_write(asio::buffer(*frame), asio::as_tuple(use_awaitable));
        (void)n;
        if (ec) {
          c->closed = true;  // the reader sees the failure too and ends the connection
          break;
        }
        continue;
      }
      c->live_frames = 0;  // the outbox is empty
      if (!c->live) {
        c->dirty = false;
        const std::int64_t after = c->last_id;
        const store::TokenOwner owner = c->owner;
        const std::size_t page = config.messages.ws_fetch_page;
        auto fetched = co_await run_on(workers, [this, owner, after, page] { return api.fetch_queued(owner, after, page); });
        if (!fetched) {
          spdlog::error("reading a queue for delivery: {}", fetched.error().message());
          c->close_code = static_cast<std::uint16_t>(websocket::close_code::internal_error);
          continue;
        }
        for (const auto& stored : *fetched) {
          if (stored.server_id <= c->last_id) continue;
          c->last_id = stored.server_id;
          c->outbox.push_back(share(encode_envelope_frame(stored.envelope, stored.server_id)));
        }
        bump(metrics.messages_pushed, fetched->size());
        if (fetched->empty() && !c->dirty) {
          c->live = true;
          if (!c->queue_empty_sent) {
            c->queue_empty_sent = true;
            c->outbox.push_back(share(encode_queue_empty_frame()));
            bump(metrics.queue_drains);
          }
        }
        continue;
      }
      break;
    }
    c->writing = false;
  }

  void handle_send(const std::shared_ptr<Connection>& c, SendFrame send) {
    ++c->sends_in_flight;
    bool start = false;
    {
      std::lock_guard lock(c->sends_mutex);
      if (!c->sends_running && c->pending_sends.empty()) {
        // Nothing of this connection is waiting on a worker, so order allows doing it here, and
        // with the recipient's devices cached it does not block: one thread hop less.
        const std::uint64_t request_id = send.request_id;
        const std::size_t count = send.envelopes.size();
        auto done = answer(c, request_id, count);
        if (api.try_send_without_blocking(c->owner, send.recipient_account, send.envelopes, done)) return;
      }
      c->pending_sends.push_back(std::move(send));
      if (!c->sends_running) start = c->sends_running = true;
    }
    if (start) asio::post(workers, [self = shared_from_this(), c] { self->run_sends(c); });
  }

  // The completion of a send: the answer goes back to the connection's strand.
  std::function<void(SendOutcome)> answer(const std::shared_ptr<Connection>& c, std::uint64_t request_id,
                                          std::size_t count) {
    return [self = shared_from_this(), c, executor = c->ws.get_executor(), request_id, count](SendOutcome outcome) {
      if (outcome.status == 200) bump(self->metrics.messages_sent_ws, count);
      Frame frame = share(encode_send_response_frame(request_id, outcome));
      asio::post(executor, [self, c, frame = std::move(frame)]() mutable {
        --c->sends_in_flight;
        c->slot_free.cancel();
        self->enqueue(c, std::move(frame));
      });
    };
  }

  // On a worker: checks and submits the connection's pending sends one after another, in the
  // order they arrived, so that the group commit stores them in that order (order per sending
  // device). Each returns as soon as it is submitted; the answers come back from the committer.
  void run_sends(const std::shared_ptr<Connection>& c) {
    for (;;) {
      SendFrame send;
      {
        std::lock_guard lock(c->sends_mutex);
        if (c->pending_sends.empty()) {
          c->sends_running = false;
          return;
        }
        send = std::move(c->pending_sends.front());
        c->pending_sends.pop_front();
      }
      auto done = answer(c, send.request_id, send.envelopes.size());
      api.send_async(c->owner, send.recipient_account, std::move(send.envelopes), std::move(done));
    }
  }

  // Reads client frames until the connection ends.
  awaitable<void> read_loop(std::shared_ptr<Connection> c) {
    beast::flat_buffer buffer;
    for (;;) {
      auto [ec, n] = co_await c->ws.async_read(buffer, asio::as_tuple(use_awaitable));
      (void)n;
      if (ec) break;
      if (!c->ws.got_binary()) {
        buffer.consume(buffer.size());
        enqueue(c, share(encode_error_frame({"text_frame", "frames are binary protobuf (ClientFrame)"})));
        continue;
      }
      const auto data = buffer.cdata();
      std::vector<ClientFrameValue> frames =
          decode_client_message(ByteView(static_cast<const std::uint8_t*>(data.data()), data.size()));
      buffer.consume(buffer.size());
      buffer.shrink_to_fit();  // an idle connection holds no read buffer
      for (auto& frame : frames) {
        if (auto* ack = std::get_if<AckFrame>(&frame)) {
          api.ack_async(c->owner, ack->server_ids);
        } else if (auto* send = std::get_if<SendFrame>(&frame)) {
          handle_send(c, std::move(*send));
        } else {
          enqueue(c, share(encode_error_frame(std::get<FrameProblem>(frame))));
        }
      }
      while (c->sends_in_flight >= config.messages.ws_max_sends_in_flight && !c->closed) {
        c->slot_free.expires_at(asio::steady_timer::time_point::max());
        co_await c->slot_free.async_wait(asio::as_tuple(use_awaitable));
      }
    }
    c->closed = true;
    c->outbox.clear();
  }

  // Registers the connection as its device's, closing the one it replaces.
  bool attach(const std::shared_ptr<Connection>& c) {
    std::shared_ptr<Connection> replaced;
    {
      std::lock_guard lock(mutex);
      if (stopping) return false;
      auto& slot = connections[c->key];
      replaced = std::move(slot);
      slot = c;
    }
    if (replaced) {
      bump(metrics.ws_replaced);
      asio::post(replaced->ws.get_executor(), [self = shared_from_this(), replaced] {
        self->request_close(replaced, kCloseReplaced);
      });
    }
    return true;
  }

  void detach(const std::shared_ptr<Connection>& c) {
    std::lock_guard lock(mutex);
    const auto it = connections.find(c->key);
    if (it != connections.end() && it->second == c) connections.erase(it);
  }
};

DeliveryHub::DeliveryHub(asio::thread_pool& workers, Api& api, const ServerConfig& config)
    : impl_(std::make_shared<Impl>(workers, api, config)) {
  api.add_delivery_notifier(*this);
}

DeliveryHub::~DeliveryHub() = default;

void DeliveryHub::shutdown() {
  std::vector<std::shared_ptr<Connection>> all;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    for (auto& [key, c] : impl_->connections) all.push_back(c);
  }
  for (auto& c : all) {
    asio::post(c->ws.get_executor(), [impl = impl_, c] {
      impl->request_close(c, static_cast<std::uint16_t>(websocket::close_code::going_away));
    });
  }
}

void DeliveryHub::on_enqueued(const store::Envelope& envelope, std::int64_t server_id) noexcept {
  std::shared_ptr<Connection> c;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->connections.find(DeviceKey{envelope.recipient_account, envelope.recipient_device});
    if (it == impl_->connections.end()) return;
    c = it->second;
  }
  try {
    Frame frame = share(encode_envelope_frame(envelope, server_id));
    asio::post(c->ws.get_executor(), [impl = impl_, c, server_id, frame = std::move(frame)]() mutable {
      impl->push_live(c, server_id, std::move(frame));
    });
  } catch (const std::exception& e) {
    // Out of memory: the envelope stays queued and is sent on the next connection.
    spdlog::warn("pushing an envelope: {}", e.what());
  }
}

void DeliveryHub::on_device_removed(std::int64_t account_id, std::uint32_t device_id) noexcept {
  std::vector<std::shared_ptr<Connection>> gone;
  {
    std::lock_guard lock(impl_->mutex);
    for (auto& [key, c] : impl_->connections) {
      if (key.account == account_id && (device_id == 0 || key.device == device_id)) gone.push_back(c);
    }
  }
  for (auto& c : gone) {
    asio::post(c->ws.get_executor(), [impl = impl_, c] { impl->request_close(c, kCloseUnauthorized); });
  }
}

awaitable<void> DeliveryHub::serve(Stream stream, beast::flat_buffer buffer, http::request<http::empty_body> upgrade,
                                   std::string client_address) {
  (void)client_address;  // not logged: addresses are personal data
  (void)buffer;          // a client must wait for the 101 before sending frames (RFC 6455 4.1)
  auto impl = impl_;
  const auto refuse = [&](unsigned status, std::string_view code, std::string_view message) -> awaitable<void> {
    const ApiResponse r = error_response(status, code, message);
    http::response<http::string_body> res{static_cast<http::status>(status), upgrade.version()};
    res.set(http::field::server, "postern/" POSTERN_VERSION);
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : r.headers) res.set(name, value);
    res.keep_alive(false);
    res.body() = r.body;
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(impl->config.http.write_timeout);
    co_await http::async_write(stream, res, asio::as_tuple(use_awaitable));
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(asio::as_tuple(use_awaitable));
    impl->api.metrics().count_http_status(status);
  };

  bool stopping = false;
  {
    std::lock_guard lock(impl->mutex);
    stopping = impl->stopping;
  }
  if (stopping) {
    co_await refuse(503, "shutting_down", "the server is shutting down");
    co_return;
  }
  // The bearer token is looked up straight from the request (which outlives the lookup) and
  // wiped afterwards, so no copy of it stays in this long-lived frame.
  const std::string_view authorization = upgrade[http::field::authorization];
  // A named lambda: GCC 12 destroys the captures of a lambda temporary inside a co_await
  // expression twice.
  auto authenticate = [impl, authorization] {
    std::error_code ec;
    auto found = impl->api.authenticate_bearer(authorization, ec);
    return std::make_pair(found, ec);
  };
  auto [owner, failure] = co_await run_on(impl->workers, std::move(authenticate));
  crypto::wipe(const_cast<char*>(authorization.data()), authorization.size());
  if (failure) {
    spdlog::error("authenticating a WebSocket: {}", failure.message());
    co_await refuse(500, "internal", "internal server error");
    co_return;
  }
  if (!owner) {
    bump(impl->metrics.ws_auth_failures);
    co_await refuse(401, "unauthorized", "a valid bearer token is required");
    co_return;
  }

  auto c = std::make_shared<Connection>(std::move(stream));
  c->owner = *owner;
  c->key = DeviceKey{owner->account_id, owner->device_id};
  // Beast's own timeouts replace the TCP stream's: a ping after half the idle time, closed when
  // nothing at all arrives for the whole of it.
  beast::get_lowest_layer(c->ws).expires_never();
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = impl->config.http.handshake_timeout;
  timeouts.idle_timeout = std::chrono::milliseconds(2 * impl->config.messages.ws_ping_interval_ms);
  timeouts.keep_alive_pings = true;
  c->ws.set_option(timeouts);
  c->ws.read_message_max(impl->config.messages.ws_max_frame_bytes);
  c->ws.auto_fragment(false);
  c->ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(http::field::server, "postern/" POSTERN_VERSION);
  }));
  auto [accept_ec] = co_await c->ws.async_accept(upgrade, asio::as_tuple(use_awaitable));
  if (accept_ec) co_return;
  upgrade = {};  // its header fields are not needed any more
  client_address = {};
  if (!impl->attach(c)) {
    co_await c->ws.async_close(websocket::close_code::going_away, asio::as_tuple(use_awaitable));
    co_return;
  }
  bump(impl->metrics.ws_connects);
  impl->metrics.ws_connections.fetch_add(1, std::memory_order_relaxed);
  impl->kick(c);  // sends the queue from the store, then QueueEmpty
  co_await impl->read_loop(c);
  impl->detach(c);
  impl->metrics.ws_connections.fetch_sub(1, std::memory_order_relaxed);
  c->slot_free.cancel();
}

}  // namespace postern::server
