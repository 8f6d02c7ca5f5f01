// A type-erased byte stream for Beast: the server's HTTP session, its delivery WebSocket and the
// client's link run over one type whatever carries the bytes: a TLS stream straight to the peer
// (TlsStream) or the inner channel (InnerStream: Noise records in WebSocket frames inside TLS,
// possibly through a relay). Without it every session, route handler and WebSocket would be a
// template instantiated once per carrier.
//
// AnyStream models AsyncReadStream and AsyncWriteStream (one read and one write in flight at a
// time, as Beast requires), has next_layer() = the TCP stream at the bottom, so
// beast::get_lowest_layer(stream).expires_after(...) sets the timeouts of the raw socket
// operations as before, and supports Beast's WebSocket teardown. Handlers are type-erased with
// asio::any_completion_handler (associated executor and cancellation slot kept). A write
// gathers at most kMaxWriteBuffers buffers per call (Beast's serializers pass a few).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/error_code.hpp>

namespace postern::transport::net {

namespace any_stream_detail {
// Outside any class, so that unqualified lookup does not stop at a member named teardown and
// argument-dependent lookup finds the carrier's own teardown functions.
template <class T>
void call_teardown(boost::beast::role_type role, T& s, boost::system::error_code& ec) {
  teardown(role, s, ec);
}
template <class T, class H>
void call_async_teardown(boost::beast::role_type role, T& s, H&& handler) {
  async_teardown(role, s, std::forward<H>(handler));
}
}  // namespace any_stream_detail

class AnyStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using next_layer_type = boost::beast::tcp_stream;
  using error_code = boost::system::error_code;
  using IoHandler = boost::asio::any_completion_handler<void(error_code, std::size_t)>;
  using DoneHandler = boost::asio::any_completion_handler<void(error_code)>;

  static constexpr std::size_t kMaxWriteBuffers = 16;
  // Unused entries are empty buffers, so the array is itself a valid buffer sequence.
  using WriteBuffers = std::array<boost::asio::const_buffer, kMaxWriteBuffers>;

  // What a carrier implements (Model<S> below adapts any stream with the usual member names).
  class Impl {
   public:
    virtual ~Impl() = default;
    virtual executor_type get_executor() = 0;
    virtual next_layer_type& lowest_layer() = 0;
    virtual void read_some(boost::asio::mutable_buffer buffer, IoHandler handler) = 0;
    virtual void write_some(const WriteBuffers& buffers, IoHandler handler) = 0;
    // Orderly end of our sending direction (TLS close_notify, the inner channel's close record);
    // does not wait for the peer's.
    virtual void shutdown(DoneHandler handler) = 0;
    // WebSocket close over this stream (Beast's teardown customisation point).
    virtual void teardown(boost::beast::role_type role, error_code& ec) = 0;
    virtual void async_teardown(boost::beast::role_type role, DoneHandler handler) = 0;
  };

  explicit AnyStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Wraps a concrete stream (moved in): TlsStream, InnerStream.
  template <class S, class = std::enable_if_t<!std::is_same_v<std::decay_t<S>, AnyStream>>>
  explicit AnyStream(S&& stream);

  AnyStream(AnyStream&&) noexcept = default;
  AnyStream& operator=(AnyStream&&) noexcept = default;
  ~AnyStream() = default;

  executor_type get_executor() noexcept { return impl_->get_executor(); }
  next_layer_type& next_layer() noexcept { return impl_->lowest_layer(); }
  Impl& impl() noexcept { return *impl_; }

  template <class MutableBufferSequence,
            class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_read_some(const MutableBufferSequence& buffers,
                       CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    return boost::asio::async_initiate<CompletionToken, void(error_code, std::size_t)>(
        [](auto handler, Impl* impl, boost::asio::mutable_buffer b) {
          impl->read_some(b, IoHandler(std::move(handler)));
        },
        token, impl_.get(), first_buffer(buffers));
  }

  template <class ConstBufferSequence,
            class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_write_some(const ConstBufferSequence& buffers,
                        CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    return boost::asio::async_initiate<CompletionToken, void(error_code, std::size_t)>(
        [](auto handler, Impl* impl, const WriteBuffers& b) { impl->write_some(b, IoHandler(std::move(handler))); },
        token, impl_.get(), gather(buffers));
  }

  template <class CompletionToken = boost::asio::default_completion_token_t<executor_type>>
  auto async_shutdown(CompletionToken&& token = boost::asio::default_completion_token_t<executor_type>{}) {
    return boost::asio::async_initiate<CompletionToken, void(error_code)>(
        [](auto handler, Impl* impl) { impl->shutdown(DoneHandler(std::move(handler))); }, token, impl_.get());
  }

  template <class S>
  class Model;

 private:
  template <class Buffers>
  static boost::asio::mutable_buffer first_buffer(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() != 0) return b;
    }
    return {};
  }
  template <class Buffers>
  static WriteBuffers gather(const Buffers& buffers) {
    WriteBuffers out{};
    std::size_t i = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && i < kMaxWriteBuffers; ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() != 0) out[i++] = b;
    }
    return out;
  }

  std::unique_ptr<Impl> impl_;
};

// Adapts a stream with async_read_some / async_write_some / async_shutdown members and
// teardown / async_teardown free functions (found by argument-dependent lookup).
template <class S>
class AnyStream::Model final : public AnyStream::Impl {
 public:
  explicit Model(S&& s) : s_(std::move(s)) {}
  S& stream() noexcept { return s_; }
  executor_type get_executor() override { return s_.get_executor(); }
  next_layer_type& lowest_layer() override { return boost::beast::get_lowest_layer(s_); }
  // Handlers are bound to the stream's executor: the carriers' operations (and Beast's TCP
  // ones) post through the handler's associated executor, which must be a full I/O executor,
  // and any_completion_handler's own is not. The callers run on that executor anyway.
  void read_some(boost::asio::mutable_buffer buffer, IoHandler handler) override {
    s_.async_read_some(buffer, boost::asio::bind_executor(s_.get_executor(), std::move(handler)));
  }
  void write_some(const WriteBuffers& buffers, IoHandler handler) override {
    s_.async_write_some(buffers, boost::asio::bind_executor(s_.get_executor(), std::move(handler)));
  }
  void shutdown(DoneHandler handler) override {
    s_.async_shutdown(boost::asio::bind_executor(s_.get_executor(), std::move(handler)));
  }
  void teardown(boost::beast::role_type role, error_code& ec) override {
    any_stream_detail::call_teardown(role, s_, ec);
  }
  void async_teardown(boost::beast::role_type role, DoneHandler handler) override {
    any_stream_detail::call_async_teardown(role, s_, boost::asio::bind_executor(s_.get_executor(), std::move(handler)));
  }

 private:
  S s_;
};

template <class S, class>
AnyStream::AnyStream(S&& stream) : impl_(std::make_unique<Model<std::decay_t<S>>>(std::forward<S>(stream))) {}

// Beast's WebSocket teardown customisation points for AnyStream.
inline void teardown(boost::beast::role_type role, AnyStream& stream, boost::system::error_code& ec) {
  stream.impl().teardown(role, ec);
}
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, AnyStream& stream, TeardownHandler&& handler) {
  stream.impl().async_teardown(role, AnyStream::DoneHandler(std::forward<TeardownHandler>(handler)));
}

}  // namespace postern::transport::net
