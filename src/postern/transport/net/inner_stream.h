// The inner channel as a byte stream (docs/transport.md): Noise_NK transport messages, one
// padded record each (transport/inner_record.h), in WebSocket frames, inside TLS. The client
// knows the server's static Noise key from the invite, so whatever sits between them (a relay,
// a TLS-terminating proxy) sees only ciphertext and cannot pose as the server. Beast's HTTP and
// WebSocket code runs over it unchanged (wrapped in AnyStream).
//
// connect_inner (client) and accept_inner (server) run the WebSocket upgrade and the Noise
// handshake on an established TLS stream; the resulting InnerStream owns that TLS stream.
//
// Concurrency as for any Asio stream: one read and one write in flight, all on the stream's
// executor (a strand). Cover keep-alives (a cover record after a silence of
// ShapingPolicy::cover_interval +- jitter) are written by the stream itself between user writes.
// Errors: the peer's close record or WebSocket close -> asio::error::eof; a record that does not
// authenticate or breaks the framing -> asio::error::connection_aborted (the connection is
// unusable afterwards).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "postern/transport/front_auth.h"
#include "postern/transport/inner_record.h"
#include "postern/transport/net/any_stream.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/noise.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::net {

inline constexpr std::string_view kInnerProtocol = "Noise_NK_25519_ChaChaPoly_BLAKE2b";
inline constexpr std::string_view kInnerPrologue = "postern inner v1";
inline constexpr std::uint8_t kInnerVersion = 1;

class InnerStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using next_layer_type = boost::beast::tcp_stream;
  using error_code = boost::system::error_code;

  struct State;
  explicit InnerStream(std::shared_ptr<State> state);
  InnerStream(InnerStream&&) noexcept = default;
  InnerStream& operator=(InnerStream&&) noexcept = default;
  // Stops the cover keep-alives and closes the socket (any operation still in flight ends with
  // operation_aborted).
  ~InnerStream();

  executor_type get_executor() noexcept;
  next_layer_type& next_layer() noexcept;
  // The Noise handshake hash (channel binding), and the peer's clock from the handshake
  // (the server's, seen by a client; 0 on the server).
  const Bytes& handshake_hash() const noexcept;
  std::int64_t peer_unix_time() const noexcept;

  template <class MutableBufferSequence,
            class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_read_some(const MutableBufferSequence& buffers,
                       CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    boost::asio::mutable_buffer first{};
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() != 0) {
        first = b;
        break;
      }
    }
    return boost::asio::async_initiate<CompletionToken, void(error_code, std::size_t)>(
        [](auto handler, std::shared_ptr<State> st, boost::asio::mutable_buffer b) {
          start_read(std::move(st), b, AnyStream::IoHandler(std::move(handler)));
        },
        token, state_, first);
  }

  template <class ConstBufferSequence,
            class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_write_some(const ConstBufferSequence& buffers,
                        CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    AnyStream::WriteBuffers gathered{};
    std::size_t i = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && i < gathered.size(); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() != 0) gathered[i++] = b;
    }
    return boost::asio::async_initiate<CompletionToken, void(error_code, std::size_t)>(
        [](auto handler, std::shared_ptr<State> st, const AnyStream::WriteBuffers& b) {
          start_write(std::move(st), b, AnyStream::IoHandler(std::move(handler)));
        },
        token, state_, gathered);
  }

  // Sends the close record and TLS close_notify; does not wait for the peer.
  template <class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_shutdown(CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    return boost::asio::async_initiate<CompletionToken, void(error_code)>(
        [](auto handler, std::shared_ptr<State> st) {
          start_shutdown(std::move(st), AnyStream::DoneHandler(std::move(handler)), false);
        },
        token, state_);
  }

  static void start_read(std::shared_ptr<State> st, boost::asio::mutable_buffer buffer, AnyStream::IoHandler handler);
  static void start_write(std::shared_ptr<State> st, const AnyStream::WriteBuffers& buffers,
                          AnyStream::IoHandler handler);
  // teardown = true: also shut the TCP send side down and read until the peer closes (Beast's
  // WebSocket close), bounded by the TCP stream's timeout.
  static void start_shutdown(std::shared_ptr<State> st, AnyStream::DoneHandler handler, bool teardown);
  const std::shared_ptr<State>& shared_state() const noexcept { return state_; }

 private:
  std::shared_ptr<State> state_;
};

void teardown(boost::beast::role_type role, InnerStream& stream, boost::system::error_code& ec);
template <class TeardownHandler>
void async_teardown(boost::beast::role_type, InnerStream& stream, TeardownHandler&& handler) {
  InnerStream::start_shutdown(stream.shared_state(), AnyStream::DoneHandler(std::forward<TeardownHandler>(handler)),
                              true);
}

// ---- opening the channel ----

struct InnerClientOptions {
  std::string host_header;                       // the Host of the upgrade request
  const FrontAuthenticator* auth = nullptr;      // the deployment's (direct) or the relay's secret
  noise::PublicKey server_key{};                 // from the invite: the end of the channel
  inner::ShapingPolicy shaping = inner::ShapingPolicy::defaults();
  std::int64_t clock_offset_seconds = 0;         // added to the local clock for the token
  std::chrono::milliseconds timeout{15'000};     // the whole upgrade and handshake
};

// Why connect_inner failed, for the retry logic and `postern doctor`.
struct InnerClientReport {
  unsigned http_status = 0;                 // the front answered this instead of 101 (token refused)
  std::optional<std::int64_t> server_date;  // its Date header (clock correction)
};

// Errors: transport::Errc::bad_token (the front answered as a web site: wrong secret, or the
// clock is off by more than the window — see report), handshake_failed (the Noise handshake did
// not complete: the peer does not hold the server key from the invite), bad_frame, timeout,
// unreachable (the connection broke).
boost::asio::awaitable<Result<InnerStream>> connect_inner(TlsStream tls, const InnerClientOptions& options,
                                                          InnerClientReport* report = nullptr);

struct InnerServerOptions {
  const noise::KeyPair* static_key = nullptr;
  inner::ShapingPolicy shaping = inner::ShapingPolicy::defaults();
  std::chrono::milliseconds timeout{15'000};
};

// The front verified the first request (its head is consumed; `leftover` = the bytes that came
// after it, normally the start of the first Noise message). Reads that message, answers 101 and
// the second one. Errors: handshake_failed, bad_frame, timeout, unreachable.
boost::asio::awaitable<Result<InnerStream>> accept_inner(TlsStream tls, Bytes leftover, std::string websocket_key,
                                                         const InnerServerOptions& options);

}  // namespace postern::transport::net
