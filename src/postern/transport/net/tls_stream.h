// A TLS stream over beast::tcp_stream with a small idle footprint, usable wherever the server
// used beast::ssl_stream<beast::tcp_stream> (HTTP via Beast, websocket::stream<TlsStream>).
//
// Why: asio::ssl::stream keeps two 17 KiB vectors (stream_core) and a BIO pair with two 17 KiB
// buffers per connection, whether the connection is busy or idle. Here the SSL object is bound to
// a custom BIO that reads ciphertext from our own small input buffer and appends output to a
// vector that is released once written. With SSL_MODE_RELEASE_BUFFERS, an idle connection costs
// OpenSSL's SSL object plus our ~2 KiB input buffer (held by the pending read).
//
// Concurrency: at most one read-side operation (async_handshake, async_read_some) and one
// write-side operation (async_write_some, async_shutdown) in flight at a time, all on the
// stream's executor (one thread or a strand, as with asio::ssl::stream). Raw socket writes go
// through one path: whichever operation holds the "writer" role sends everything OpenSSL has
// produced (its own output and the other operation's), never two tcp_stream writes at once;
// raw reads likewise. An operation that must wait for the other's raw I/O waits on a timer used
// as an event.
//
// Timeouts: raw I/O goes through the tcp_stream's async_read_some/async_write_some, so
// beast::get_lowest_layer(stream).expires_after(...) applies to these operations.
//
// Errors: the peer's close_notify -> asio::error::eof; TCP EOF without close_notify ->
// asio::ssl::error::stream_truncated; OpenSSL failures -> error_code(ERR value,
// asio::error::get_ssl_category()).
#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>

typedef struct ssl_st SSL;

namespace postern::transport::net {

namespace tls_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

// The result of one call into OpenSSL: finished (successfully or with an error), or it needs
// more ciphertext from the socket.
enum class Want : unsigned char { done, read };

// Whether an operation must see all its output written before it completes (handshake, write,
// shutdown) or only sends it when the writer role is free (read: output produced by SSL_read,
// e.g. a KeyUpdate reply, is sent by whoever writes).
enum class FlushMode : unsigned char { required, opportunistic };

// Everything the operations share. Heap-allocated once per TlsStream so that the stream can be
// moved while the BIO keeps a stable pointer.
class Core {
 public:
  static constexpr std::size_t kSmallInput = 2048;        // per raw read while idle
  static constexpr std::size_t kLargeInput = 17 * 1024;   // after a read filled the small one
  static constexpr std::size_t kMaxWriteChunk = 16 * 1024;  // plaintext per SSL_write (1 record)
  static constexpr std::size_t kKeepOutputCapacity = 256;  // kept for small frames (pings)

  Core(asio::ip::tcp::socket&& socket, asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type role);
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  ~Core();

  beast::tcp_stream tcp;
  asio::steady_timer write_done;  // "event": cancelled when the writer role is released
  asio::steady_timer read_done;   // "event": cancelled when a raw read completes
  bool writing = false;           // a raw write is in flight
  bool reading = false;           // a raw read is in flight
  bool tcp_eof = false;           // the socket reported EOF
  error_code write_error;         // sticky: a raw write failed, output can no longer be sent

  SSL* ssl() const noexcept { return ssl_; }
  void set_role(asio::ssl::stream_base::handshake_type role);

  // Calls into OpenSSL. n = bytes read or written.
  Want do_handshake(error_code& ec);
  Want do_read(void* data, std::size_t size, std::size_t& n, error_code& ec);
  Want do_write(const void* data, std::size_t size, std::size_t& n, error_code& ec);
  Want do_shutdown(error_code& ec);

  // Ciphertext input: the free space for the next raw read (large = use the big buffer), then
  // commit what arrived. release_input() shrinks back to the small buffer when possible.
  asio::mutable_buffer prepare_input(bool large);
  void commit_input(std::size_t n) noexcept { in_end_ += n; }
  void release_input();
  std::size_t input_capacity() const noexcept { return in_cap_; }

  // Ciphertext output: has_output() = bytes not yet written; next_output() = the bytes for the
  // next raw write (stable while it is in flight); consume_output() after the write;
  // release_output() frees the storage when drained (keeps a small capacity).
  bool has_output() const noexcept { return flight_off_ < flight_.size() || !pending_.empty(); }
  asio::const_buffer next_output();
  void consume_output(std::size_t n) noexcept { flight_off_ += n; }
  void release_output();
  void discard_output() noexcept;
  // Writes all pending output with blocking socket writes (synchronous teardown only).
  void flush_output_sync(error_code& ec);
  std::size_t buffered_bytes() const noexcept { return in_cap_ + flight_.capacity() + pending_.capacity(); }

  // Called by the BIO.
  int bio_read(char* out, int len) noexcept;
  int bio_write(const char* data, int len) noexcept;

 private:
  Want finish(int ret, error_code& ec);

  SSL* ssl_ = nullptr;
  bool fatal_ = false;  // SSL_ERROR_SSL / SYSCALL seen: SSL_shutdown must not be called
  std::unique_ptr<unsigned char[]> in_;
  std::size_t in_cap_ = 0, in_begin_ = 0, in_end_ = 0;
  std::vector<unsigned char> pending_;  // appended to by the BIO
  std::vector<unsigned char> flight_;   // being written by the raw writer
  std::size_t flight_off_ = 0;
};

template <class Buffers>
asio::mutable_buffer first_mutable(const Buffers& buffers) {
  for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
    asio::mutable_buffer b(*it);
    if (b.size() != 0) return b;
  }
  return {};
}

struct HandshakeAction {
  static constexpr bool with_size = false;
  static constexpr FlushMode flush = FlushMode::required;
  static constexpr bool read_side = true;
  Want operator()(Core& c, error_code& ec, std::size_t&) { return c.do_handshake(ec); }
  bool empty() const noexcept { return false; }
};

struct ShutdownAction {
  static constexpr bool with_size = false;
  static constexpr FlushMode flush = FlushMode::required;
  static constexpr bool read_side = false;
  Want operator()(Core& c, error_code& ec, std::size_t&) { return c.do_shutdown(ec); }
  bool empty() const noexcept { return false; }
};

template <class Buffers>
struct ReadAction {
  static constexpr bool with_size = true;
  static constexpr FlushMode flush = FlushMode::opportunistic;
  static constexpr bool read_side = true;
  Buffers buffers;
  Want operator()(Core& c, error_code& ec, std::size_t& n) {
    asio::mutable_buffer b = first_mutable(buffers);
    return c.do_read(b.data(), b.size(), n, ec);
  }
  bool empty() const noexcept { return asio::buffer_size(buffers) == 0; }
};

template <class Buffers>
struct WriteAction {
  static constexpr bool with_size = true;
  static constexpr FlushMode flush = FlushMode::required;
  static constexpr bool read_side = false;
  Buffers buffers;
  Want operator()(Core& c, error_code& ec, std::size_t& n) {
    const std::size_t total = std::min(asio::buffer_size(buffers), Core::kMaxWriteChunk);
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
      asio::const_buffer b(*it);
      if (b.size() == 0) continue;
      if (b.size() >= total) return c.do_write(b.data(), total, n, ec);
      break;
    }
    return gather(c, total, ec, n);
  }
  Want gather(Core& c, std::size_t total, error_code& ec, std::size_t& n) {
    // Several small buffers (e.g. a Beast header and body): one record, not one per buffer.
    unsigned char tmp[Core::kMaxWriteChunk];
    const std::size_t copied = asio::buffer_copy(asio::buffer(tmp, total), buffers);
    return c.do_write(tmp, copied, n, ec);
  }
  bool empty() const noexcept { return asio::buffer_size(buffers) == 0; }
};

// One composed operation: calls the action until it is done, doing raw reads when OpenSSL wants
// input and raw writes (as the writer) when it produced output.
template <class Action>
class IoOp {
 public:
  IoOp(Core& core, Action action) : c_(&core), action_(std::move(action)) {}

  template <class Self>
  void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
    switch (std::exchange(step_, Step::none)) {
      case Step::none:
        if (action_.empty()) return finish(self, {}, 0);
        break;
      case Step::posted:
        return complete(self, ec_, n_);
      case Step::raw_write:
        if (ec) {
          c_->writing = false;
          c_->write_error = ec;
          c_->discard_output();
          c_->write_done.cancel();
          if (done_ && (Action::flush == FlushMode::opportunistic || ec_)) return finish(self, ec_, n_);
          return finish(self, ec, 0);
        }
        c_->consume_output(n);
        if (c_->has_output()) return start_write(self);  // keep the writer role until drained
        c_->writing = false;
        c_->release_output();
        c_->write_done.cancel();
        break;
      case Step::raw_read:
        c_->reading = false;
        c_->read_done.cancel();
        if (ec == asio::error::eof) {
          c_->tcp_eof = true;
        } else if (ec) {
          return finish(self, ec, 0);
        } else {
          if (n == read_space_) large_ = true;
          c_->commit_input(n);
        }
        break;
      case Step::wait:
        if (self.cancelled() != asio::cancellation_type::none) return finish(self, asio::error::operation_aborted, 0);
        break;
    }
    run(self);
  }

 private:
  enum class Step : unsigned char { none, posted, raw_write, raw_read, wait };

  template <class Self>
  void run(Self& self) {
    for (;;) {
      if (done_) {
        if (c_->has_output()) {
          if (c_->write_error) {
            c_->discard_output();
          } else if (!c_->writing) {
            return start_write(self);
          } else if (Action::flush == FlushMode::required) {
            return wait(self, c_->write_done);
          }
        } else if (Action::flush == FlushMode::required && c_->writing) {
          return wait(self, c_->write_done);  // our bytes are in the other op's flight
        }
        if (Action::flush == FlushMode::required && c_->write_error && !ec_) return finish(self, c_->write_error, 0);
        return finish(self, ec_, n_);
      }
      if (Action::flush == FlushMode::required && c_->write_error) return finish(self, c_->write_error, 0);
      if (!Action::read_side && c_->writing) {
        // Write side: let the current writer drain first, so that our output's completion is ours.
        return wait(self, c_->write_done);
      }
      error_code ec;
      std::size_t n = 0;
      const Want want = action_(*c_, ec, n);
      if (want == Want::done) {
        done_ = true;
        ec_ = ec;
        n_ = n;
        continue;
      }
      // OpenSSL needs input. Send what it produced first (a handshake flight must go out before
      // the peer answers); if another op is the writer, it sends our output too.
      if (c_->has_output() && !c_->writing && !c_->write_error) return start_write(self);
      if (c_->reading) return wait(self, c_->read_done);
      return start_read(self);
    }
  }

  template <class Self>
  void start_write(Self& self) {
    c_->writing = true;
    started_ = true;
    step_ = Step::raw_write;
    const asio::const_buffer out = c_->next_output();
    c_->tcp.async_write_some(out, std::move(self));
  }

  template <class Self>
  void start_read(Self& self) {
    c_->reading = true;
    started_ = true;
    step_ = Step::raw_read;
    const asio::mutable_buffer in = c_->prepare_input(large_);
    read_space_ = in.size();
    c_->tcp.async_read_some(in, std::move(self));
  }

  template <class Self>
  void wait(Self& self, asio::steady_timer& event) {
    started_ = true;
    step_ = Step::wait;
    event.expires_at(asio::steady_timer::time_point::max());
    event.async_wait(std::move(self));
  }

  template <class Self>
  void finish(Self& self, error_code ec, std::size_t n) {
    if (!c_->reading) c_->release_input();
    if (!started_) {
      // Never complete from inside the initiating function.
      started_ = true;
      ec_ = ec;
      n_ = n;
      step_ = Step::posted;
      return asio::post(c_->tcp.get_executor(), std::move(self));
    }
    complete(self, ec, n);
  }

  template <class Self>
  static void complete(Self& self, error_code ec, std::size_t n) {
    if constexpr (Action::with_size) {
      self.complete(ec, n);
    } else {
      self.complete(ec);
    }
  }

  Core* c_;
  Action action_;
  error_code ec_;
  std::size_t n_ = 0;
  std::size_t read_space_ = 0;
  Step step_ = Step::none;
  bool done_ = false;
  bool started_ = false;
  bool large_ = false;
};

}  // namespace tls_detail

class TlsStream {
 public:
  using next_layer_type = boost::beast::tcp_stream;
  using executor_type = boost::beast::tcp_stream::executor_type;

  // role: server (the default, as the server uses it) or client; async_handshake's argument
  // may also choose the role before the handshake starts.
  TlsStream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& ctx,
            boost::asio::ssl::stream_base::handshake_type role = boost::asio::ssl::stream_base::server);
  TlsStream(TlsStream&&) noexcept = default;
  TlsStream& operator=(TlsStream&&) noexcept = default;
  ~TlsStream();

  executor_type get_executor() noexcept { return core_->tcp.get_executor(); }
  next_layer_type& next_layer() noexcept { return core_->tcp; }
  const next_layer_type& next_layer() const noexcept { return core_->tcp; }
  SSL* native_handle() noexcept { return core_->ssl(); }

  // Bytes of our own buffers currently allocated (for tests and metrics).
  std::size_t buffer_bytes() const noexcept;

  template <class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type,
                       CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    core_->set_role(type);
    return boost::asio::async_compose<CompletionToken, void(boost::system::error_code)>(
        tls_detail::IoOp<tls_detail::HandshakeAction>(*core_, tls_detail::HandshakeAction{}), token,
        core_->tcp);
  }

  // Sends close_notify and completes; does not wait for the peer's.
  template <class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_shutdown(CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    return boost::asio::async_compose<CompletionToken, void(boost::system::error_code)>(
        tls_detail::IoOp<tls_detail::ShutdownAction>(*core_, tls_detail::ShutdownAction{}), token,
        core_->tcp);
  }

  template <class MutableBufferSequence,
            class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_read_some(const MutableBufferSequence& buffers,
                       CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    using Op = tls_detail::IoOp<tls_detail::ReadAction<MutableBufferSequence>>;
    return boost::asio::async_compose<CompletionToken, void(boost::system::error_code, std::size_t)>(
        Op(*core_, tls_detail::ReadAction<MutableBufferSequence>{buffers}), token, core_->tcp);
  }

  template <class ConstBufferSequence,
            class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_write_some(const ConstBufferSequence& buffers,
                        CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    using Op = tls_detail::IoOp<tls_detail::WriteAction<ConstBufferSequence>>;
    return boost::asio::async_compose<CompletionToken, void(boost::system::error_code, std::size_t)>(
        Op(*core_, tls_detail::WriteAction<ConstBufferSequence>{buffers}), token, core_->tcp);
  }

 private:
  friend void teardown(boost::beast::role_type role, TlsStream& stream, boost::system::error_code& ec);
  std::unique_ptr<tls_detail::Core> core_;
};

// WebSocket close: send close_notify, then tear the TCP connection down as Beast does for TCP
// (shutdown send, read until EOF, close).
void teardown(boost::beast::role_type role, TlsStream& stream, boost::system::error_code& ec);

namespace tls_detail {

template <class Stream>
class TeardownOp {
 public:
  TeardownOp(Stream& s, beast::role_type role) : s_(&s), role_(role) {}
  template <class Self>
  void operator()(Self& self, error_code ec = {}) {
    switch (step_) {
      case 0:
        step_ = 1;
        return s_->async_shutdown(std::move(self));
      case 1:
        ec_ = ec;
        step_ = 2;
        {
          using boost::beast::websocket::async_teardown;
          return async_teardown(role_, s_->next_layer(), std::move(self));
        }
      default:
        // A failed close_notify (the peer already gone) does not hide the TCP result.
        self.complete(ec ? ec : ec_ == asio::ssl::error::stream_truncated ? error_code{} : ec_);
    }
  }

 private:
  Stream* s_;
  beast::role_type role_;
  error_code ec_;
  int step_ = 0;
};

}  // namespace tls_detail

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, TlsStream& stream, TeardownHandler&& handler) {
  boost::asio::async_compose<TeardownHandler, void(boost::system::error_code)>(
      tls_detail::TeardownOp<TlsStream>(stream, role), handler, stream);
}

}  // namespace postern::transport::net
