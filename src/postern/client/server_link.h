// How the client talks to its server, as an interface: the messenger core (Boost-free) speaks
// HTTP requests and delivery-socket frames through a ServerLink, and does not know what carries
// them. Today's implementation is client/net/https_link.h (TLS to the server, pinned key);
// issue 5 adds links over relays, SOCKS/HTTP proxies and a Noise inner channel behind the same
// interface, so nothing above this header changes when the path does.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::client {

// Stops a blocking call of a ServerLink from another thread. MultiPathLink gives each attempt of a
// race its own token and cancels the attempts that lost as soon as one has won, and those still
// running when it is destroyed: nothing waits out a connect timeout on a path nobody needs.
//
// The running call installs what stops it (HttpsLink: cancelling the call's pending socket
// operations on its io thread) with on_cancel(), for as long as it runs; cancel() runs that at once,
// or, when it comes before the call has installed anything, on_cancel() runs it on installing. A
// stopped call returns Errc::cancelled, which says nothing about the path (it did not fail). A
// token stays cancelled: one per call (or per series of calls to stop together).
class CancelToken {
 public:
  // While alive, the installed stop function may run; the destructor uninstalls it (waiting for a
  // run in progress on another thread), so it never runs after the call has returned.
  class Hook {
   public:
    Hook() = default;
    explicit Hook(CancelToken* token) : token_(token) {}
    Hook(Hook&& other) noexcept : token_(std::exchange(other.token_, nullptr)) {}
    Hook& operator=(Hook&& other) noexcept;
    Hook(const Hook&) = delete;
    Hook& operator=(const Hook&) = delete;
    ~Hook();

   private:
    CancelToken* token_ = nullptr;
  };

  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void cancel();
  bool cancelled() const;
  // Installs `stop` (one at a time: a second call replaces the first). It runs on the cancelling
  // thread, or on this one when the token is cancelled already, under the token's lock: it must be
  // short and must not use the token.
  [[nodiscard]] Hook on_cancel(std::function<void()> stop);

 private:
  mutable std::mutex mutex_;
  bool cancelled_ = false;
  std::function<void()> stop_;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

// Pulls the next bytes of a streamed request body into `out`; returns how many were written
// (0 only at the end). Used for TUS PATCH bodies, which are never held whole in memory.
using BodySource = std::function<Result<std::size_t>(std::span<std::uint8_t> out)>;
// Receives a streamed response body piece by piece (downloads). An error aborts the request.
using BodySink = std::function<Status(ByteView piece)>;

struct HttpRequest {
  std::string method;  // "GET", "POST", "PUT", "PATCH", "HEAD", "DELETE", "OPTIONS"
  std::string target;  // origin-form, e.g. "/v1/keys/7?x=1"
  std::vector<HttpHeader> headers;  // besides Host, Content-Length, Authorization (set by the link)
  std::string body;                 // JSON text, or empty
  // Bearer token for authenticated routes (sent as Authorization; never logged).
  std::optional<std::string> bearer;
  // When set, `body` is ignored and exactly `body_length` bytes are pulled from the source.
  BodySource body_source;
  std::uint64_t body_length = 0;
  // Streams the response body into the sink instead of HttpResponse::body (2xx answers only;
  // error answers are always read into `body`, they are small JSON).
  BodySink body_sink;
  // Longest silence while sending or receiving (not a bound on the whole transfer).
  std::chrono::milliseconds io_timeout{30000};
  // When set, cancelling it from another thread stops the request (Errc::cancelled).
  std::shared_ptr<CancelToken> cancel;
};

struct HttpResponse {
  unsigned status = 0;
  std::vector<HttpHeader> headers;
  std::string body;
  // Case-insensitive lookup of the first header with this name.
  std::optional<std::string_view> header(std::string_view name) const;
};

// The delivery WebSocket of one device (docs/protocol.md: ServerFrame / ClientFrame protobufs).
// send() may be called from another thread than receive().
class DeliverySocket {
 public:
  virtual ~DeliverySocket() = default;
  // Sends one binary message (a serialised ClientFrame).
  virtual Status send(ByteView frame) = 0;
  // The next binary message (a serialised ServerFrame), or std::nullopt when `timeout` passed
  // without one. Errc::connection_closed once the socket is closed (close_code() tells by whom).
  virtual Result<std::optional<Bytes>> receive(std::chrono::milliseconds timeout) = 0;
  // The close code the server sent (4000 replaced, 4001 device removed, 1001 going away), if any.
  virtual std::optional<std::uint16_t> close_code() const = 0;
  virtual void close() = 0;
};

class ServerLink {
 public:
  virtual ~ServerLink() = default;
  // One HTTP request and its answer. Any HTTP status is a success here; errors are transport
  // failures only (Errc::unreachable, pin_mismatch, timeout, protocol_error). Thread-safe:
  // concurrent requests use separate connections.
  virtual Result<HttpResponse> send(const HttpRequest& request) = 0;
  // Opens the delivery WebSocket with this bearer token. A refused upgrade (401, 503) gives
  // Errc::server_error.
  virtual Result<std::unique_ptr<DeliverySocket>> open_delivery(std::string_view bearer) = 0;
  // open_delivery() that `cancel` stops from another thread (Errc::cancelled). The default ignores
  // the token: enough for links whose calls cannot hang (test fakes).
  virtual Result<std::unique_ptr<DeliverySocket>> open_delivery_cancellable(std::string_view bearer,
                                                                            CancelToken& cancel) {
    (void)cancel;
    return open_delivery(bearer);
  }
  // A short description of the path for logs and `doctor` ("direct 127.0.0.1:8443").
  virtual std::string describe() const = 0;
};

}  // namespace postern::client
