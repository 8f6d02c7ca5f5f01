// The front's first-request token and its replay filter.
//
// Token: HKDF/HMAC from postern/crypto (OpenSSL underneath); base64url is written here with a
// strict decoder (exactly 54 characters of the URL-safe alphabet, and the 4 unused low bits of
// the last character zero), so each 40-byte token has exactly one accepted spelling.
//
// ReplayFilter: a hash set of nonces (SipHash keyed per process, since nonces come from clients)
// with their timestamps, plus an append-only file of 24-byte records (nonce || timestamp,
// big-endian). A nonce is recorded with one write() before it is accepted, so a crash or restart
// never forgets an accepted nonce; a torn last record (a crash mid-write) is dropped on open.
// A nonce is live while its token could still verify (timestamp + window >= now); dead ones are
// pruned from memory every quarter window or when full, and the file is rewritten with the live
// ones (temp file, fsync, rename) once it holds more than twice as many records plus slack. The
// file is flock()ed so that two processes cannot share it (each would miss the other's nonces).
#include "postern/transport/front_auth.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "postern/crypto/hash.h"
#include "postern/crypto/hkdf.h"
#include "postern/crypto/secret.h"
#include "postern/transport/errors.h"

namespace postern::transport {
namespace {

constexpr std::string_view kKdfInfo = "postern front auth v1";
constexpr std::string_view kMacLabel = "postern front v1";
constexpr std::size_t kTimestampSize = 8;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kTokenBytes = kTimestampSize + kFrontNonceSize + kTagSize;  // 40
static_assert((kTokenBytes * 8 + 5) / 6 == kFrontTokenChars);

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(ByteView in) {
  std::string out;
  out.reserve((in.size() * 8 + 5) / 6);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint8_t b : in) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Strict: only the alphabet, no padding, and the leftover bits of the last character zero.
std::optional<std::array<std::uint8_t, kTokenBytes>> decode_token(std::string_view text) {
  if (text.size() != kFrontTokenChars) return std::nullopt;
  std::array<std::uint8_t, kTokenBytes> out{};
  std::size_t n = 0;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = static_cast<std::uint8_t>(acc >> bits);
    }
  }
  if (n != kTokenBytes || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

void put_be64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}

std::uint64_t get_be64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// a + b saturated to the int64 range (client timestamps are arbitrary 64-bit values).
std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
  }
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Result<FrontAuthenticator> FrontAuthenticator::create(ByteView deployment_secret) {
  if (deployment_secret.size() != kFrontSecretSize) return Errc::bad_key;
  FrontAuthenticator a;
  Status s = crypto::hkdf_sha256(deployment_secret, {}, as_bytes(kKdfInfo),
                                 MutableByteView(a.key_.data(), a.key_.size()));
  if (!s.ok()) return Errc::bad_key;
  return a;
}

namespace {

std::array<std::uint8_t, kTagSize> compute_tag(const crypto::SecretArray<32>& key,
                                               ByteView timestamp_and_nonce, std::string_view binding) {
  crypto::HmacSha256 mac(key.view());
  mac.update(as_bytes(kMacLabel)).update(timestamp_and_nonce).update(as_bytes(binding));
  crypto::Hmac256Tag full = mac.finish();
  std::array<std::uint8_t, kTagSize> tag{};
  std::copy_n(full.begin(), kTagSize, tag.begin());
  crypto::wipe(full.data(), full.size());
  return tag;
}

}  // namespace

std::string FrontAuthenticator::make_token(std::int64_t unix_seconds, const FrontNonce& nonce,
                                           std::string_view binding) const {
  std::array<std::uint8_t, kTokenBytes> raw{};
  put_be64(raw.data(), static_cast<std::uint64_t>(unix_seconds));
  std::copy(nonce.begin(), nonce.end(), raw.begin() + kTimestampSize);
  const auto tag = compute_tag(key_, ByteView(raw.data(), kTimestampSize + kFrontNonceSize), binding);
  std::copy(tag.begin(), tag.end(), raw.begin() + kTimestampSize + kFrontNonceSize);
  return base64url(raw);
}

std::string FrontAuthenticator::make_token(crypto::Rng& rng, std::int64_t unix_seconds,
                                           std::string_view binding) const {
  return make_token(unix_seconds, rng.bytes<kFrontNonceSize>(), binding);
}

Result<FrontAuthenticator::Verified> FrontAuthenticator::verify(std::string_view token,
                                                                std::string_view binding,
                                                                std::int64_t now_unix_seconds,
                                                                std::int64_t window_seconds) const {
  const auto raw = decode_token(token);
  if (!raw) return Errc::bad_token;
  const auto expected = compute_tag(key_, ByteView(raw->data(), kTimestampSize + kFrontNonceSize), binding);
  const bool tag_ok = crypto::constant_time_equal(
      expected, ByteView(raw->data() + kTimestampSize + kFrontNonceSize, kTagSize));
  if (!tag_ok) return Errc::bad_token;
  Verified v;
  v.timestamp = static_cast<std::int64_t>(get_be64(raw->data()));
  std::copy_n(raw->begin() + kTimestampSize, kFrontNonceSize, v.nonce.begin());
  // |timestamp - now| <= window, computed without overflow for any 64-bit timestamp.
  if (window_seconds < 0) return Errc::bad_token;
  if (v.timestamp < saturating_add(now_unix_seconds, -window_seconds) ||
      v.timestamp > saturating_add(now_unix_seconds, window_seconds)) {
    return Errc::bad_token;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::size_t kRecordSize = kFrontNonceSize + 8;
// Compaction when the file holds more than 2 * live + this many records (~96 KiB of slack), so
// a small filter does not rewrite its file every few requests.
constexpr std::size_t kCompactionSlack = 4096;
// The file could not be kept aligned after a failed write: every nonce is refused (io_error).
constexpr int kBrokenFd = -2;

struct NonceHash {
  std::array<std::uint8_t, crypto_shorthash_KEYBYTES> key{};
  std::size_t operator()(const FrontNonce& n) const noexcept {
    std::array<std::uint8_t, crypto_shorthash_BYTES> h{};
    crypto_shorthash(h.data(), n.data(), n.size(), key.data());
    std::uint64_t v = 0;
    for (std::uint8_t b : h) v = (v << 8) | b;
    return static_cast<std::size_t>(v);
  }
};

bool write_all_once(int fd, const std::uint8_t* data, std::size_t size) {
  // One write() per call; on a regular file it is complete unless the disk is full or failing.
  for (;;) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    return n == static_cast<ssize_t>(size);
  }
}

bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void encode_record(std::uint8_t* out, const FrontNonce& nonce, std::int64_t timestamp) {
  std::copy(nonce.begin(), nonce.end(), out);
  put_be64(out + kFrontNonceSize, static_cast<std::uint64_t>(timestamp));
}

}  // namespace

struct ReplayFilter::Impl {
  std::mutex mutex;
  std::filesystem::path path;
  int fd = -1;
  std::int64_t window = 0;
  std::size_t max_entries = 0;
  std::unordered_map<FrontNonce, std::int64_t, NonceHash> seen;  // nonce -> latest timestamp
  std::size_t file_records = 0;
  std::optional<std::int64_t> last_prune;
  std::size_t retry_compaction_at = 0;  // after a failed compaction

  explicit Impl(NonceHash hash) : seen(16, std::move(hash)) {}
  ~Impl() {
    if (fd >= 0) ::close(fd);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // The nonce can no longer be replayed once now > timestamp + window (verify refuses it).
  bool expired(std::int64_t timestamp, std::int64_t now) const {
    return saturating_add(timestamp, window) < now;
  }

  void prune(std::int64_t now) {
    last_prune = now;
    for (auto it = seen.begin(); it != seen.end();) {
      it = expired(it->second, now) ? seen.erase(it) : std::next(it);
    }
  }

  // Rewrites the file with the live entries. Failure is not fatal: the old file still holds
  // every live nonce, so we keep appending to it.
  void compact() {
    if (fd < 0) return;
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    const int tfd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (tfd < 0) return;
    std::vector<std::uint8_t> buf(seen.size() * kRecordSize);
    std::size_t off = 0;
    for (const auto& [nonce, ts] : seen) {
      encode_record(buf.data() + off, nonce, ts);
      off += kRecordSize;
    }
    // fsync before rename: after a power loss the name must not point at an empty file. The
    // new descriptor is locked before the rename, so no other process can take the new file.
    const bool ok = ::flock(tfd, LOCK_EX | LOCK_NB) == 0 && write_all(tfd, buf.data(), buf.size()) &&
                    ::fsync(tfd) == 0 && ::fcntl(tfd, F_SETFL, O_APPEND) == 0 &&
                    ::rename(tmp.c_str(), path.c_str()) == 0;
    if (!ok) {
      ::close(tfd);
      ::unlink(tmp.c_str());
      // Not again on every request: wait until the file has grown by as much again.
      retry_compaction_at = file_records + std::max(file_records, kCompactionSlack);
      return;
    }
    ::close(fd);
    fd = tfd;
    file_records = seen.size();
  }
};

ReplayFilter::ReplayFilter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReplayFilter::~ReplayFilter() = default;

Result<std::unique_ptr<ReplayFilter>> ReplayFilter::open(const std::filesystem::path& file,
                                                         std::int64_t window_seconds,
                                                         std::size_t max_entries) {
  if (window_seconds <= 0 || max_entries == 0) return Errc::bad_config;
  crypto::ensure_sodium();
  NonceHash hash;
  randombytes_buf(hash.key.data(), hash.key.size());
  auto impl = std::make_unique<Impl>(std::move(hash));
  impl->path = file;
  impl->window = window_seconds;
  impl->max_entries = max_entries;
  if (file.empty()) return std::unique_ptr<ReplayFilter>(new ReplayFilter(std::move(impl)));

  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Errc::io_error;
  impl->fd = fd;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return Errc::io_error;  // another filter has it
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Errc::io_error;
  const auto size = static_cast<std::size_t>(st.st_size);
  std::vector<std::uint8_t> buf(size);
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd, buf.data() + got, size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errc::io_error;
    got += static_cast<std::size_t>(n);
  }
  const std::size_t records = size / kRecordSize;
  for (std::size_t i = 0; i < records; ++i) {
    const std::uint8_t* p = buf.data() + i * kRecordSize;
    FrontNonce nonce{};
    std::copy_n(p, kFrontNonceSize, nonce.begin());
    const auto ts = static_cast<std::int64_t>(get_be64(p + kFrontNonceSize));
    auto [it, inserted] = impl->seen.emplace(nonce, ts);
    if (!inserted) it->second = std::max(it->second, ts);
  }
  // A torn last record: cut it off, or every later record would be misaligned.
  if (size % kRecordSize != 0 && ::ftruncate(fd, static_cast<off_t>(records * kRecordSize)) != 0) {
    return Errc::io_error;
  }
  impl->file_records = records;
  // Without a clock here every distinct nonce counts as live; the first check prunes by time.
  if (impl->file_records > 2 * impl->seen.size() + kCompactionSlack) impl->compact();
  return std::unique_ptr<ReplayFilter>(new ReplayFilter(std::move(impl)));
}

Result<bool> ReplayFilter::check_and_record(const FrontNonce& nonce, std::int64_t timestamp,
                                            std::int64_t now_unix_seconds) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  const std::int64_t prune_every = std::max<std::int64_t>(1, s.window / 4);
  if (!s.last_prune || saturating_add(*s.last_prune, prune_every) <= now_unix_seconds ||
      *s.last_prune > now_unix_seconds) {
    s.prune(now_unix_seconds);
  }
  // A token this old cannot verify any more; recording it would only waste room.
  if (s.expired(timestamp, now_unix_seconds)) return false;
  if (s.seen.contains(nonce)) return false;
  if (s.seen.size() >= s.max_entries) {
    if (*s.last_prune != now_unix_seconds) s.prune(now_unix_seconds);
    if (s.seen.size() >= s.max_entries) return false;  // full: fail closed
  }
  if (s.fd == kBrokenFd) return Errc::io_error;
  if (s.fd >= 0) {
    std::array<std::uint8_t, kRecordSize> rec{};
    encode_record(rec.data(), nonce, timestamp);
    if (!write_all_once(s.fd, rec.data(), rec.size())) {
      // Remove a partial record so that later appends stay aligned.
      if (::ftruncate(s.fd, static_cast<off_t>(s.file_records * kRecordSize)) != 0) {
        ::close(s.fd);
        s.fd = kBrokenFd;  // misaligned from now on: refuse everything rather than lose nonces
      }
      return Errc::io_error;
    }
    ++s.file_records;
  }
  s.seen.emplace(nonce, timestamp);
  if (s.fd >= 0 && s.file_records > 2 * s.seen.size() + kCompactionSlack &&
      s.file_records >= s.retry_compaction_at) {
    s.compact();
  }
  return true;
}

std::size_t ReplayFilter::size() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->seen.size();
}

}  // namespace postern::transport
