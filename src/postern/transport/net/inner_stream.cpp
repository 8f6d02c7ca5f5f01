// See inner_stream.h. Each operation is a small coroutine spawned on the stream's executor; the
// state they share lives in one heap object so that the stream can be moved while they run.
#include "postern/transport/net/inner_stream.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <exception>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/transport/errors.h"
#include "postern/transport/upgrade.h"
#include "postern/transport/ws_frame.h"

namespace postern::transport::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::size_t kMaxWriteChunk = 64 * 1024;
constexpr std::size_t kHelloSize = 1 + 8;  // version, the sender's unix time (server) or zero

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::error_code map_io_error(const error_code& ec) {
  if (ec == beast::error::timeout) return Errc::timeout;
  return Errc::unreachable;
}

Bytes make_hello(std::int64_t time) {
  Bytes hello(kHelloSize, 0);
  hello[0] = kInnerVersion;
  const auto t = static_cast<std::uint64_t>(time);
  for (int i = 0; i < 8; ++i) hello[1 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(t >> (56 - 8 * i));
  return hello;
}

Result<std::int64_t> read_hello(ByteView hello) {
  if (hello.size() < kHelloSize || hello[0] != kInnerVersion) return Errc::handshake_failed;
  std::uint64_t t = 0;
  for (std::size_t i = 1; i < kHelloSize; ++i) t = (t << 8) | hello[i];
  return static_cast<std::int64_t>(t);
}

}  // namespace

struct InnerStream::State {
  State(TlsStream&& t, noise::TransportPair pair, const inner::ShapingPolicy& shaping_policy, ws::Role own_role,
        ByteView leftover)
      : tls(std::move(t)),
        writer(std::move(pair.send), shaping_policy, own_role, rng),
        reader(std::move(pair.receive), own_role == ws::Role::client ? ws::Role::server : ws::Role::client),
        write_done(tls.get_executor()),
        cover_timer(tls.get_executor()),
        shaping(shaping_policy),
        handshake_hash(std::move(pair.handshake_hash)) {
    if (!leftover.empty()) reader.feed(leftover);
  }

  crypto::SystemRng rng;  // before writer, which keeps a reference
  TlsStream tls;
  inner::RecordWriter writer;
  inner::RecordReader reader;
  asio::steady_timer write_done;  // an event: cancelled when the writer role is released
  asio::steady_timer cover_timer;
  inner::ShapingPolicy shaping;
  Bytes handshake_hash;
  std::int64_t peer_time = 0;

  Bytes plain;  // decrypted data not yet handed to a reader
  std::size_t plain_off = 0;
  Bytes rx;       // raw TLS plaintext (WebSocket bytes) read and not yet fed
  Bytes scratch;  // the plaintext of the write in progress (wiped after sealing)
  Bytes out;      // sealed frames being written
  bool writing = false;
  bool failed = false;       // a record failed to open: nothing more is read
  bool peer_closed = false;  // close record or WebSocket close seen
  bool we_closed = false;    // our close record sent (or being sent)
  bool destroyed = false;    // the InnerStream is gone: background work stops
  error_code write_error;
  std::chrono::steady_clock::time_point last_send = std::chrono::steady_clock::now();
};

namespace {

using State = InnerStream::State;

awaitable<void> wait_writer(State& st) {
  while (st.writing) {
    st.write_done.expires_at(asio::steady_timer::time_point::max());
    co_await st.write_done.async_wait(asio::as_tuple(use_awaitable));
  }
}

// Writes st.out (already sealed) as the writer; the caller checked !st.writing.
awaitable<error_code> flush(State& st) {
  st.writing = true;
  auto [ec, n] = co_await asio::async_write(st.tls, asio::buffer(st.out), asio::as_tuple(use_awaitable));
  (void)n;
  st.writing = false;
  st.write_done.cancel();
  if (ec) {
    st.write_error = ec;
  } else {
    st.last_send = std::chrono::steady_clock::now();
  }
  co_return ec;
}

awaitable<std::pair<error_code, std::size_t>> read_op(std::shared_ptr<State> st, asio::mutable_buffer b) {
  bool suspended = false;
  std::pair<error_code, std::size_t> result{};
  for (;;) {
    if (st->plain_off < st->plain.size()) {
      const std::size_t n = std::min(b.size(), st->plain.size() - st->plain_off);
      std::memcpy(b.data(), st->plain.data() + st->plain_off, n);
      st->plain_off += n;
      if (st->plain_off == st->plain.size()) {
        crypto::wipe(st->plain.data(), st->plain.size());
        st->plain.clear();
        st->plain_off = 0;
      }
      result = {{}, n};
      break;
    }
    if (b.size() == 0) break;
    if (st->failed) {
      result = {asio::error::connection_aborted, 0};
      break;
    }
    if (st->peer_closed) {
      result = {asio::error::eof, 0};
      break;
    }
    auto event = st->reader.next();
    if (!event) {
      st->failed = true;
      continue;
    }
    if (event->has_value()) {
      inner::Event& e = **event;
      switch (e.kind) {
        case inner::Event::Kind::data:
          st->plain = std::move(e.data);
          st->plain_off = 0;
          break;
        case inner::Event::Kind::close:
        case inner::Event::Kind::ws_close:
          st->peer_closed = true;
          break;
        case inner::Event::Kind::cover:
        case inner::Event::Kind::ws_ping:
          break;
      }
      continue;
    }
    st->rx.resize(kReadChunk);
    suspended = true;
    auto [ec, n] = co_await st->tls.async_read_some(asio::buffer(st->rx), asio::as_tuple(use_awaitable));
    if (ec) {
      result = {ec, 0};
      break;
    }
    st->reader.feed(ByteView(st->rx.data(), n));
  }
  // Never complete from inside the initiating function.
  if (!suspended) co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
  co_return result;
}

awaitable<std::pair<error_code, std::size_t>> write_op(std::shared_ptr<State> st, AnyStream::WriteBuffers buffers) {
  co_await wait_writer(*st);
  if (st->write_error) co_return std::pair<error_code, std::size_t>{st->write_error, 0};
  if (st->we_closed) co_return std::pair<error_code, std::size_t>{asio::error::shut_down, 0};
  st->scratch.clear();
  for (const auto& b : buffers) {
    if (b.size() == 0) continue;
    const std::size_t take = std::min(b.size(), kMaxWriteChunk - st->scratch.size());
    const auto* p = static_cast<const std::uint8_t*>(b.data());
    st->scratch.insert(st->scratch.end(), p, p + take);
    if (st->scratch.size() == kMaxWriteChunk) break;
  }
  if (st->scratch.empty()) {
    co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
    co_return std::pair<error_code, std::size_t>{};
  }
  const std::size_t taken = st->scratch.size();
  st->out.clear();
  const Status sealed = st->writer.write_data(st->scratch, st->out);
  crypto::wipe(st->scratch.data(), st->scratch.size());
  if (!sealed) co_return std::pair<error_code, std::size_t>{asio::error::invalid_argument, 0};
  const error_code ec = co_await flush(*st);
  co_return std::pair<error_code, std::size_t>{ec, ec ? 0 : taken};
}

awaitable<error_code> shutdown_op(std::shared_ptr<State> st, bool teardown) {
  co_await wait_writer(*st);
  error_code result = st->write_error;
  st->cover_timer.cancel();
  if (!st->we_closed && !result) {
    st->we_closed = true;
    st->out.clear();
    if (st->writer.write_close(st->out)) result = co_await flush(*st);
  }
  if (!result) {
    auto [ec] = co_await st->tls.async_shutdown(asio::as_tuple(use_awaitable));
    result = ec;
  }
  if (teardown) {
    auto& tcp = beast::get_lowest_layer(st->tls);
    error_code ignored;
    tcp.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    std::array<std::uint8_t, 1024> sink{};
    for (;;) {
      auto [ec, n] = co_await tcp.async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
      (void)n;
      if (ec) break;
    }
    tcp.socket().close(ignored);
    result = {};
  }
  co_return result;
}

awaitable<void> cover_loop(std::shared_ptr<State> st) {
  for (;;) {
    const auto delay = st->shaping.next_cover_delay(st->rng);
    st->cover_timer.expires_after(delay);
    auto [ec] = co_await st->cover_timer.async_wait(asio::as_tuple(use_awaitable));
    if (ec || st->destroyed || st->we_closed || st->write_error) co_return;
    if (st->writing || std::chrono::steady_clock::now() - st->last_send < delay) continue;
    st->out.clear();
    if (!st->writer.write_cover(st->out)) co_return;
    if (co_await flush(*st)) co_return;
  }
}

void start_cover(const std::shared_ptr<State>& st) {
  if (!st->shaping.enabled || st->shaping.cover_interval.count() <= 0) return;
  asio::co_spawn(st->tls.get_executor(), cover_loop(st), asio::detached);
}

// Completions run on the stream's executor (the strand its users run on); a type-erased
// handler's own executor cannot be posted to.
template <class Handler>
auto bind_to_handler(const std::shared_ptr<State>& st, Handler&) {
  return st->tls.get_executor();
}

}  // namespace

InnerStream::InnerStream(std::shared_ptr<State> state) : state_(std::move(state)) {}

InnerStream::~InnerStream() {
  if (!state_) return;  // moved from
  state_->destroyed = true;
  state_->cover_timer.cancel();
  error_code ignored;
  beast::get_lowest_layer(state_->tls).socket().close(ignored);
}

InnerStream::executor_type InnerStream::get_executor() noexcept { return state_->tls.get_executor(); }
InnerStream::next_layer_type& InnerStream::next_layer() noexcept { return beast::get_lowest_layer(state_->tls); }
const Bytes& InnerStream::handshake_hash() const noexcept { return state_->handshake_hash; }
std::int64_t InnerStream::peer_unix_time() const noexcept { return state_->peer_time; }

void InnerStream::start_read(std::shared_ptr<State> st, asio::mutable_buffer buffer, AnyStream::IoHandler handler) {
  auto ex = st->tls.get_executor();
  auto handler_ex = bind_to_handler(st, handler);
  asio::co_spawn(ex, read_op(std::move(st), buffer),
                 asio::bind_executor(handler_ex, [h = std::move(handler)](
                                                     std::exception_ptr e,
                                                     std::pair<error_code, std::size_t> r) mutable {
                   if (e) r = {asio::error::no_memory, 0};
                   std::move(h)(r.first, r.second);
                 }));
}

void InnerStream::start_write(std::shared_ptr<State> st, const AnyStream::WriteBuffers& buffers,
                              AnyStream::IoHandler handler) {
  auto ex = st->tls.get_executor();
  auto handler_ex = bind_to_handler(st, handler);
  asio::co_spawn(ex, write_op(std::move(st), buffers),
                 asio::bind_executor(handler_ex, [h = std::move(handler)](
                                                     std::exception_ptr e,
                                                     std::pair<error_code, std::size_t> r) mutable {
                   if (e) r = {asio::error::no_memory, 0};
                   std::move(h)(r.first, r.second);
                 }));
}

void InnerStream::start_shutdown(std::shared_ptr<State> st, AnyStream::DoneHandler handler, bool teardown) {
  auto ex = st->tls.get_executor();
  auto handler_ex = bind_to_handler(st, handler);
  asio::co_spawn(ex, shutdown_op(std::move(st), teardown),
                 asio::bind_executor(handler_ex, [h = std::move(handler)](std::exception_ptr e, error_code ec) mutable {
                   if (e) ec = asio::error::no_memory;
                   std::move(h)(ec);
                 }));
}

void teardown(boost::beast::role_type, InnerStream& stream, boost::system::error_code& ec) {
  stream.next_layer().socket().close(ec);
}

// ---- opening the channel ----

namespace {

// Reads until `in` holds one whole WebSocket frame at its start; returns its header.
awaitable<Result<ws::FrameHeader>> read_frame(TlsStream& tls, Bytes& in, bool expect_masked) {
  std::array<std::uint8_t, 4096> chunk{};
  for (;;) {
    auto header = ws::parse_frame_header(in, expect_masked, noise::kMaxMessage);
    if (!header) co_return header.error();
    if (*header && in.size() >= (*header)->header_size + (*header)->payload_size) {
      if ((*header)->opcode != ws::Opcode::binary) co_return Errc::bad_frame;
      co_return **header;
    }
    auto [ec, n] = co_await tls.async_read_some(asio::buffer(chunk), asio::as_tuple(use_awaitable));
    if (ec) co_return map_io_error(ec);
    in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

Bytes prologue() {
  return Bytes(kInnerPrologue.begin(), kInnerPrologue.end());
}

}  // namespace

awaitable<Result<InnerStream>> connect_inner(TlsStream tls, const InnerClientOptions& options,
                                             InnerClientReport* report) {
  if (options.auth == nullptr) co_return Errc::bad_config;
  crypto::SystemRng rng;
  const std::string key = upgrade::make_key(rng);
  const std::string token = options.auth->make_token(rng, unix_now() + options.clock_offset_seconds, key);

  noise::HandshakeOptions ho;
  ho.protocol_name = std::string(kInnerProtocol);
  ho.initiator = true;
  ho.prologue = prologue();
  ho.remote_static = options.server_key;
  auto hs = noise::HandshakeState::start(ho, rng);
  if (!hs) co_return hs.error();
  const std::size_t padding = options.shaping.enabled ? options.shaping.handshake_padding : 0;
  auto msg1 = hs->write_message(inner::pad_handshake_payload(make_hello(0), padding));
  if (!msg1) co_return msg1.error();

  const std::string request = upgrade::client_request(options.host_header, token, key);
  Bytes out(request.begin(), request.end());
  ws::append_frame(out, ws::Opcode::binary, *msg1, ws::Role::client, rng);

  auto& tcp = beast::get_lowest_layer(tls);
  tcp.expires_after(options.timeout);
  {
    auto [ec, n] = co_await asio::async_write(tls, asio::buffer(out), asio::as_tuple(use_awaitable));
    (void)n;
    if (ec) co_return map_io_error(ec);
  }

  // The answer: 101 and the second Noise message, or the web site's answer to a refused token.
  Bytes in;
  std::array<std::uint8_t, 4096> chunk{};
  upgrade::ResponseHead head;
  for (;;) {
    auto parsed = upgrade::parse_response_head(in);
    if (!parsed) co_return parsed.error();
    if (*parsed) {
      head = std::move(**parsed);
      break;
    }
    auto [ec, n] = co_await tls.async_read_some(asio::buffer(chunk), asio::as_tuple(use_awaitable));
    if (ec) {
      // The server reads the first Noise message before answering; a connection closed without
      // a byte of answer means it could not decrypt it: the invite's server key is wrong.
      if (in.empty() && (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)) {
        co_return Errc::handshake_failed;
      }
      co_return map_io_error(ec);
    }
    in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
  if (head.status != 101 || !head.upgrade_websocket) {
    if (report != nullptr) {
      report->http_status = head.status;
      report->server_date = head.date;
    }
    co_return Errc::bad_token;
  }
  const std::string expected_accept = upgrade::accept_for(key);
  if (!crypto::constant_time_equal(as_bytes(head.accept), as_bytes(expected_accept))) co_return Errc::bad_frame;
  in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(head.head_size));

  auto frame = co_await read_frame(tls, in, false);
  if (!frame) co_return frame.error();
  const ByteView msg2(in.data() + frame->header_size, static_cast<std::size_t>(frame->payload_size));
  auto payload = hs->read_message(msg2);
  if (!payload) co_return Errc::handshake_failed;
  auto hello = inner::unpad_handshake_payload(*payload);
  if (!hello) co_return Errc::handshake_failed;
  auto server_time = read_hello(*hello);
  if (!server_time) co_return server_time.error();
  in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(frame->header_size + frame->payload_size));

  auto pair = hs->split();
  if (!pair) co_return pair.error();
  tcp.expires_never();
  auto st = std::make_shared<State>(std::move(tls), std::move(*pair), options.shaping, ws::Role::client, in);
  st->peer_time = *server_time;
  start_cover(st);
  co_return InnerStream(std::move(st));
}

awaitable<Result<InnerStream>> accept_inner(TlsStream tls, Bytes in, std::string websocket_key,
                                            const InnerServerOptions& options) {
  if (options.static_key == nullptr) co_return Errc::bad_config;
  auto& tcp = beast::get_lowest_layer(tls);
  tcp.expires_after(options.timeout);
  auto frame = co_await read_frame(tls, in, true);
  if (!frame) co_return frame.error();
  Bytes msg1(in.begin() + static_cast<std::ptrdiff_t>(frame->header_size),
             in.begin() + static_cast<std::ptrdiff_t>(frame->header_size + frame->payload_size));
  ws::apply_mask(msg1, frame->mask, 0);
  in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(frame->header_size + frame->payload_size));

  crypto::SystemRng rng;
  noise::HandshakeOptions ho;
  ho.protocol_name = std::string(kInnerProtocol);
  ho.initiator = false;
  ho.prologue = prologue();
  ho.local_static = options.static_key;
  auto hs = noise::HandshakeState::start(ho, rng);
  if (!hs) co_return hs.error();
  auto payload = hs->read_message(msg1);
  if (!payload) co_return Errc::handshake_failed;
  auto hello = inner::unpad_handshake_payload(*payload);
  if (!hello || !read_hello(*hello)) co_return Errc::handshake_failed;

  const std::size_t padding = options.shaping.enabled ? options.shaping.handshake_padding : 0;
  auto msg2 = hs->write_message(inner::pad_handshake_payload(make_hello(unix_now()), padding));
  if (!msg2) co_return msg2.error();
  const std::string response = upgrade::server_response(websocket_key);
  Bytes out(response.begin(), response.end());
  ws::append_frame(out, ws::Opcode::binary, *msg2, ws::Role::server, rng);
  {
    auto [ec, n] = co_await asio::async_write(tls, asio::buffer(out), asio::as_tuple(use_awaitable));
    (void)n;
    if (ec) co_return map_io_error(ec);
  }
  auto pair = hs->split();
  if (!pair) co_return pair.error();
  tcp.expires_never();
  auto st = std::make_shared<State>(std::move(tls), std::move(*pair), options.shaping, ws::Role::server, in);
  start_cover(st);
  co_return InnerStream(std::move(st));
}

}  // namespace postern::transport::net
