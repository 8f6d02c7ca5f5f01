// See tls_stream.h.
#include "postern/transport/net/tls_stream.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace postern::transport::net {

namespace tls_detail {

namespace {

Core* core_of(BIO* bio) { return static_cast<Core*>(BIO_get_data(bio)); }

int bio_write_cb(BIO* bio, const char* data, int len) {
  BIO_clear_retry_flags(bio);
  return core_of(bio)->bio_write(data, len);
}

int bio_read_cb(BIO* bio, char* out, int len) {
  BIO_clear_retry_flags(bio);
  const int n = core_of(bio)->bio_read(out, len);
  if (n < 0) BIO_set_retry_read(bio);
  return n;
}

long bio_ctrl_cb(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return core_of(bio)->tcp_eof ? 1 : 0;
    default:
      return 0;
  }
}

int bio_create_cb(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int bio_destroy_cb(BIO*) { return 1; }

BIO_METHOD* bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "postern-tls-stream");
    if (m == nullptr || BIO_meth_set_write(m, bio_write_cb) != 1 || BIO_meth_set_read(m, bio_read_cb) != 1 ||
        BIO_meth_set_ctrl(m, bio_ctrl_cb) != 1 || BIO_meth_set_create(m, bio_create_cb) != 1 ||
        BIO_meth_set_destroy(m, bio_destroy_cb) != 1) {
      throw std::bad_alloc();
    }
    return m;
  }();
  return method;
}

}  // namespace

Core::Core(asio::ip::tcp::socket&& socket, asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type role)
    : tcp(std::move(socket)), write_done(tcp.get_executor()), read_done(tcp.get_executor()) {
  ssl_ = SSL_new(ctx.native_handle());
  if (ssl_ == nullptr) {
    throw boost::system::system_error(
        error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()), "SSL_new");
  }
  BIO* bio = BIO_new(bio_method());
  if (bio == nullptr) {
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by the SSL
  // Our BIO accepts every write, so SSL_write never returns partially; the plaintext pointer
  // may differ between retries (WriteAction gathers into a stack buffer).
  SSL_set_mode(ssl_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  SSL_set_options(ssl_, SSL_OP_NO_RENEGOTIATION);
  set_role(role);
}

Core::~Core() { SSL_free(ssl_); }

void Core::set_role(asio::ssl::stream_base::handshake_type role) {
  if (role == asio::ssl::stream_base::client) {
    SSL_set_connect_state(ssl_);
  } else {
    SSL_set_accept_state(ssl_);
  }
}

Want Core::finish(int ret, error_code& ec) {
  const int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      ERR_clear_error();
      return Want::read;
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      ec = asio::error::eof;
      return Want::done;
    default:
      break;
  }
  fatal_ = err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL;
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (tcp_eof && (e == 0 || ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    ec = asio::ssl::error::stream_truncated;
  } else if (e != 0) {
    ec = error_code(static_cast<int>(e), asio::error::get_ssl_category());
  } else {
    ec = asio::ssl::error::unexpected_result;
  }
  return Want::done;
}

Want Core::do_handshake(error_code& ec) {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) return Want::done;
  return finish(r, ec);
}

Want Core::do_read(void* data, std::size_t size, std::size_t& n, error_code& ec) {
  ERR_clear_error();
  const int r = SSL_read_ex(ssl_, data, size, &n);
  if (r == 1) return Want::done;
  n = 0;
  return finish(r, ec);
}

Want Core::do_write(const void* data, std::size_t size, std::size_t& n, error_code& ec) {
  ERR_clear_error();
  const int r = SSL_write_ex(ssl_, data, size, &n);
  if (r == 1) return Want::done;
  n = 0;
  return finish(r, ec);
}

Want Core::do_shutdown(error_code& ec) {
  if (fatal_) {
    // OpenSSL forbids SSL_shutdown after a fatal error; there is nothing to close cleanly.
    ec = asio::ssl::error::stream_truncated;
    return Want::done;
  }
  if ((SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0) return Want::done;
  ERR_clear_error();
  const int r = SSL_shutdown(ssl_);
  if (r >= 0) return Want::done;  // close_notify queued; we do not wait for the peer's
  const Want w = finish(r, ec);
  if (w == Want::read) {
    // Only possible mid-handshake; do not wait for the peer.
    ec = asio::ssl::error::stream_truncated;
  }
  return Want::done;
}

asio::mutable_buffer Core::prepare_input(bool large) {
  const std::size_t have = in_end_ - in_begin_;
  if (have != 0 && in_begin_ != 0) std::memmove(in_.get(), in_.get() + in_begin_, have);
  in_begin_ = 0;
  in_end_ = have;
  std::size_t want_cap = large ? kLargeInput : kSmallInput;
  if (have >= want_cap) want_cap = have + kSmallInput;  // cannot happen with OpenSSL's reads
  if (in_cap_ < want_cap) {
    std::unique_ptr<unsigned char[]> bigger(new unsigned char[want_cap]);
    if (have != 0) std::memcpy(bigger.get(), in_.get(), have);
    in_ = std::move(bigger);
    in_cap_ = want_cap;
  }
  return {in_.get() + in_end_, in_cap_ - in_end_};
}

void Core::release_input() {
  if (in_cap_ <= kSmallInput) return;
  const std::size_t have = in_end_ - in_begin_;
  if (have > kSmallInput) return;
  std::unique_ptr<unsigned char[]> small(new unsigned char[kSmallInput]);
  if (have != 0) std::memcpy(small.get(), in_.get() + in_begin_, have);
  in_ = std::move(small);
  in_cap_ = kSmallInput;
  in_begin_ = 0;
  in_end_ = have;
}

asio::const_buffer Core::next_output() {
  if (flight_off_ >= flight_.size()) {
    flight_.clear();
    flight_off_ = 0;
    flight_.swap(pending_);
  }
  return {flight_.data() + flight_off_, flight_.size() - flight_off_};
}

void Core::release_output() {
  if (flight_off_ >= flight_.size()) {
    flight_.clear();
    flight_off_ = 0;
  }
  if (flight_.empty() && flight_.capacity() > kKeepOutputCapacity) std::vector<unsigned char>().swap(flight_);
  if (pending_.empty() && pending_.capacity() > kKeepOutputCapacity) std::vector<unsigned char>().swap(pending_);
}

void Core::discard_output() noexcept {
  std::vector<unsigned char>().swap(flight_);
  std::vector<unsigned char>().swap(pending_);
  flight_off_ = 0;
}

void Core::flush_output_sync(error_code& ec) {
  while (!ec && has_output()) {
    const asio::const_buffer out = next_output();
    const std::size_t n = asio::write(tcp.socket(), out, ec);
    consume_output(n);
  }
  release_output();
}

int Core::bio_read(char* out, int len) noexcept {
  const std::size_t have = in_end_ - in_begin_;
  if (have == 0) return tcp_eof ? 0 : -1;
  const std::size_t n = std::min(have, static_cast<std::size_t>(len));
  std::memcpy(out, in_.get() + in_begin_, n);
  in_begin_ += n;
  if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
  return static_cast<int>(n);
}

int Core::bio_write(const char* data, int len) noexcept {
  if (write_error) return len;  // nothing can be sent any more; the op reports write_error
  try {
    // As unsigned bytes, so that the insert is one memmove (a char range converts byte by byte).
    const auto* bytes = reinterpret_cast<const unsigned char*>(data);
    pending_.insert(pending_.end(), bytes, bytes + len);
  } catch (const std::bad_alloc&) {
    return -1;
  }
  return len;
}

}  // namespace tls_detail

TlsStream::TlsStream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& ctx,
                     boost::asio::ssl::stream_base::handshake_type role)
    : core_(std::make_unique<tls_detail::Core>(std::move(socket), ctx, role)) {}

TlsStream::~TlsStream() = default;

std::size_t TlsStream::buffer_bytes() const noexcept { return core_ ? core_->buffered_bytes() : 0; }

void teardown(boost::beast::role_type role, TlsStream& stream, boost::system::error_code& ec) {
  // Synchronous close (not used by the server): send close_notify directly on the socket.
  boost::system::error_code ignored;
  SSL* ssl = stream.native_handle();
  ERR_clear_error();
  if ((SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) == 0) (void)SSL_shutdown(ssl);
  ERR_clear_error();
  stream.core_->flush_output_sync(ignored);
  using boost::beast::websocket::teardown;
  teardown(role, stream.next_layer().socket(), ec);
}

}  // namespace postern::transport::net
