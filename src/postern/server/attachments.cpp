#include "postern/server/attachments.h"

#include <errno.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <limits>

#include "postern/server/data_dir.h"
#include "postern/server/errors.h"
#include "postern/store/errors.h"

namespace postern::server {

namespace {

constexpr std::size_t kIdRandomBytes = 32;
constexpr std::size_t kIdChars = 43;  // base64url of 32 bytes, unpadded
constexpr std::size_t kPurgeBatch = 1000;

AttachmentError fail(unsigned status, std::string code, std::string message) {
  return AttachmentError{status, std::move(code), std::move(message), 0};
}

AttachmentError internal(const char* what, std::error_code ec) {
  spdlog::error("attachments: {}: {}", what, ec.message());
  return fail(500, "internal_error", "internal server error");
}

AttachmentError not_found() {
  return fail(404, "not_found", "no such upload");
}

bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool is_base64(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

std::string base64url(ByteView data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint8_t b : data) {
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

std::error_code last_errno() {
  return std::error_code(errno, std::system_category());
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

// ---- header syntax ----

std::optional<std::int64_t> parse_decimal(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool valid_upload_metadata(std::string_view text) {
  std::set<std::string_view> keys;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string_view pair =
        trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    const std::size_t space = pair.find(' ');
    const std::string_view key = pair.substr(0, space);
    if (key.empty()) return false;
    for (char c : key) {
      if (c == ',' || c == '\t' || static_cast<unsigned char>(c) < 0x21 ||
          static_cast<unsigned char>(c) > 0x7E) {
        return false;
      }
    }
    if (!keys.insert(key).second) return false;
    if (space != std::string_view::npos) {
      const std::string_view value = pair.substr(space + 1);
      if (value.size() % 4 != 0) return false;
      std::size_t pad = 0;
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '=') {
          if (i + 2 < value.size()) return false;
          ++pad;
        } else if (pad > 0 || !is_base64(value[i])) {
          return false;
        }
      }
    }
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

bool valid_upload_id(std::string_view id) {
  return id.size() == kIdChars && std::all_of(id.begin(), id.end(), is_base64url);
}

RangeRequest parse_range(std::string_view header, std::int64_t length) {
  RangeRequest whole;
  header = trim(header);
  constexpr std::string_view kUnit = "bytes=";
  if (header.size() < kUnit.size()) return whole;
  for (std::size_t i = 0; i < kUnit.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kUnit[i]) return whole;
  }
  const std::string_view spec = trim(header.substr(kUnit.size()));
  if (spec.find(',') != std::string_view::npos) return whole;  // several ranges: answered whole
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return whole;
  const std::string_view a = trim(spec.substr(0, dash));
  const std::string_view b = trim(spec.substr(dash + 1));
  RangeRequest r{RangeKind::partial, {}};
  if (a.empty()) {  // suffix: the last n bytes
    const auto n = parse_decimal(b);
    if (!n) return whole;
    if (*n == 0 || length == 0) return RangeRequest{RangeKind::unsatisfiable, {}};
    r.range.first = length - std::min(*n, length);
    r.range.last = length - 1;
    return r;
  }
  const auto first = parse_decimal(a);
  if (!first) return whole;
  std::optional<std::int64_t> last;
  if (!b.empty()) {
    last = parse_decimal(b);
    if (!last || *last < *first) return whole;  // invalid syntax: ignored (RFC 9110 14.1.1)
  }
  if (*first >= length) return RangeRequest{RangeKind::unsatisfiable, {}};
  r.range.first = *first;
  r.range.last = last ? std::min(*last, length - 1) : length - 1;
  return r;
}

// ---- the service ----

AttachmentService::AttachmentService(store::AttachmentStore& store, const AttachmentLimits& limits,
                                     std::string directory, ServerMetrics& metrics, const Clock& clock,
                                     crypto::Rng& rng)
    : store_(store),
      limits_(limits),
      directory_(std::move(directory)),
      metrics_(metrics),
      clock_(clock),
      rng_(rng),
      bytes_per_account_(limits.bytes_per_account, account::recommended_limits::kMaxKeys, clock) {}

AttachmentService::~AttachmentService() = default;

Status AttachmentService::open_directory() {
  POSTERN_CHECK(ensure_directory(directory_));
  if (::chmod(directory_.c_str(), 0700) != 0) return Errc::io_error;
  return {};
}

std::string AttachmentService::path_of(std::string_view id) const {
  std::string p = directory_;
  p.push_back('/');
  p.append(id);
  return p;
}

Outcome<UploadInfo> AttachmentService::create(std::int64_t account_id, std::int64_t length) {
  if (length < 0)
    return fail(400, "bad_upload_length", "Upload-Length must be a non-negative decimal integer");
  if (length > limits_.max_upload_bytes) {
    return fail(
        413, "too_large",
        "Upload-Length is over the largest upload (" + std::to_string(limits_.max_upload_bytes) + " bytes)");
  }
  purge_expired(false);

  std::string id;
  {
    std::array<std::uint8_t, kIdRandomBytes> raw{};
    std::lock_guard lock(rng_mutex_);
    rng_.fill(raw);
    id = base64url(raw);
  }
  const std::int64_t now = clock_.now_ms();
  UploadInfo info{id, length, 0, false, now + limits_.expiry_ms};

  // The file first: a record never names a file that is not there.
  const std::string path = path_of(id);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return internal("creating an upload file", last_errno());
  ::close(fd);

  std::optional<AttachmentError> refused;
  const Status created = with_store([&](store::AttachmentStore& s) -> Status {
    auto used = s.account_upload_bytes(account_id);
    if (!used) return used.error();
    if (*used > limits_.quota_bytes - length) {
      refused = fail(413, "quota_exceeded",
                     "this upload would take the account over its attachment quota (" +
                         std::to_string(limits_.quota_bytes) + " bytes of uploads not yet expired)");
      return {};
    }
    // The byte bucket, charged with the declared length (at most the capacity, so that an upload
    // larger than the bucket needs a full bucket rather than being impossible).
    const double cost = std::clamp(static_cast<double>(length), 1.0, limits_.bytes_per_account.capacity);
    const std::string key = std::to_string(account_id);
    if (!bytes_per_account_.try_take(key, cost)) {
      AttachmentError e = fail(429, "rate_limited", "too many attachment bytes; try again later");
      e.retry_after_ms = bytes_per_account_.retry_after_ms(key, cost);
      refused = std::move(e);
      return {};
    }
    POSTERN_CHECK(s.create_upload(id, account_id, length, now, info.expires_ms));
    // An empty upload has nothing to wait for: complete at once, downloadable without a PATCH.
    if (length == 0) return s.complete_upload(id);
    return {};
  });
  if (refused || !created) {
    ::unlink(path.c_str());
    if (refused) return *refused;
    if (created.error() == store::Errc::not_found) return fail(401, "unauthorized", "the account is gone");
    return internal("recording an upload", created.error());
  }
  bump(metrics_.uploads_created);
  if (length == 0) {
    info.complete = true;
    bump(metrics_.uploads_completed);
  }
  return info;
}

Outcome<UploadInfo> AttachmentService::head(std::int64_t account_id, std::string_view id) {
  if (!valid_upload_id(id)) return not_found();
  auto up = with_store([&](store::AttachmentStore& s) { return s.get_upload(id); });
  if (!up) {
    if (up.error() == store::Errc::not_found) return not_found();
    return internal("reading an upload", up.error());
  }
  if (up->account_id != account_id || up->expires_ms <= clock_.now_ms()) return not_found();
  return UploadInfo{up->id, up->length, up->offset, up->complete, up->expires_ms};
}

Outcome<std::unique_ptr<AttachmentService::UploadWriter>> AttachmentService::begin_patch(
    std::int64_t account_id, std::string_view id, std::int64_t offset, std::int64_t body_length) {
  auto info = head(account_id, id);
  if (!info) return info.error();
  {
    std::lock_guard lock(locks_mutex_);
    if (!writing_.insert(std::string(id)).second) {
      return fail(423, "upload_locked", "another PATCH of this upload is in progress");
    }
  }
  // From here on the lock is ours: released on every failure below, or by the writer.
  struct Release {
    AttachmentService* self;
    std::string id;
    ~Release() {
      if (self != nullptr) self->release(id);
    }
  } release_guard{this, std::string(id)};

  // Read again under the lock: a PATCH that just ended may have moved the offset.
  info = head(account_id, id);
  if (!info) return info.error();
  if (offset != info->offset) {
    return fail(409, "offset_mismatch",
                "Upload-Offset " + std::to_string(offset) + " is not the upload's offset " +
                    std::to_string(info->offset));
  }
  if (body_length > info->length - info->offset) {
    return fail(413, "too_large", "the body goes past Upload-Length");
  }
  const std::string path = path_of(id);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return internal("opening an upload file", last_errno());
  // Bytes past the durable offset (a crash mid-PATCH) are not part of the upload.
  if (::ftruncate(fd, info->offset) != 0) {
    const auto ec = last_errno();
    ::close(fd);
    return internal("truncating an upload file", ec);
  }
  release_guard.self = nullptr;
  return std::unique_ptr<UploadWriter>(new UploadWriter(*this, std::move(*info), fd));
}

void AttachmentService::release(const std::string& id) {
  std::lock_guard lock(locks_mutex_);
  writing_.erase(id);
}

Status AttachmentService::record_offset(const std::string& id, std::int64_t offset) {
  return with_store([&](store::AttachmentStore& s) { return s.set_upload_offset(id, offset); });
}

Status AttachmentService::record_complete(const std::string& id) {
  return with_store([&](store::AttachmentStore& s) { return s.complete_upload(id); });
}

AttachmentService::UploadWriter::UploadWriter(AttachmentService& service, UploadInfo info, int fd)
    : service_(service),
      info_(std::move(info)),
      fd_(fd),
      offset_(info_.offset),
      durable_offset_(info_.offset) {}

AttachmentService::UploadWriter::~UploadWriter() {
  if (!finished_) (void)finish();
  ::close(fd_);
  service_.release(info_.id);
}

Status AttachmentService::UploadWriter::write(ByteView data) {
  if (finished_) return Errc::io_error;
  if (static_cast<std::int64_t>(data.size()) > info_.length - offset_) return store::Errc::too_large;
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset_));
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("attachments: writing an upload file: {}", last_errno().message());
      return Errc::io_error;
    }
    done += static_cast<std::size_t>(n);
    offset_ += n;
  }
  bump(service_.metrics_.upload_bytes, data.size());
  if (offset_ - durable_offset_ >= kCheckpointBytes) return checkpoint();
  return {};
}

Status AttachmentService::UploadWriter::checkpoint() {
  if (offset_ == durable_offset_) return {};
  if (::fdatasync(fd_) != 0) {
    spdlog::error("attachments: fdatasync of an upload file: {}", last_errno().message());
    return Errc::io_error;
  }
  if (auto s = service_.record_offset(info_.id, offset_); !s) {
    // not_found: the upload was deleted meanwhile (its account, or expiry); nothing to keep.
    if (s.error() != store::Errc::not_found)
      spdlog::error("attachments: recording an offset: {}", s.error().message());
    return s;
  }
  durable_offset_ = offset_;
  return {};
}

Outcome<UploadInfo> AttachmentService::UploadWriter::finish() {
  if (!finished_) {
    finished_ = true;
    if (auto s = checkpoint(); !s) {
      if (s.error() == store::Errc::not_found) return not_found();
      return fail(500, "internal_error", "internal server error");
    }
    if (durable_offset_ == info_.length && !info_.complete) {
      if (auto s = service_.record_complete(info_.id); !s) {
        if (s.error() == store::Errc::not_found) return not_found();
        return internal("completing an upload", s.error());
      }
      info_.complete = true;
      bump(service_.metrics_.uploads_completed);
    }
    info_.offset = durable_offset_;
  }
  return info_;
}

Outcome<std::unique_ptr<AttachmentService::Download>> AttachmentService::open_download(std::string_view id) {
  if (!valid_upload_id(id)) return not_found();
  auto up = with_store([&](store::AttachmentStore& s) { return s.get_upload(id); });
  if (!up) {
    if (up.error() == store::Errc::not_found) return not_found();
    return internal("reading an upload", up.error());
  }
  if (up->expires_ms <= clock_.now_ms()) return not_found();
  if (!up->complete) return fail(409, "upload_incomplete", "the upload is not complete yet");
  const std::string path = path_of(id);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return not_found();  // deleted between the record read and now
    return internal("opening an upload file", last_errno());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < up->length) {
    ::close(fd);
    return internal("an upload file is shorter than its record", std::make_error_code(std::errc::io_error));
  }
  return std::unique_ptr<Download>(new Download(fd, up->length));
}

AttachmentService::Download::~Download() {
  ::close(fd_);
}

Result<std::size_t> AttachmentService::Download::read(std::int64_t offset, MutableByteView out) {
  if (offset >= length_ || out.empty()) return std::size_t{0};
  const std::size_t want = static_cast<std::size_t>(std::min<std::int64_t>(length_ - offset, out.size()));
  for (;;) {
    const ssize_t n = ::pread(fd_, out.data(), want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return last_errno();
    return static_cast<std::size_t>(n);
  }
}

Outcome<bool> AttachmentService::remove(std::int64_t account_id, std::string_view id) {
  auto info = head(account_id, id);
  if (!info) return info.error();
  {
    std::lock_guard lock(locks_mutex_);
    if (writing_.contains(id)) return fail(423, "upload_locked", "a PATCH of this upload is in progress");
  }
  if (::unlink(path_of(id).c_str()) != 0 && errno != ENOENT)
    return internal("deleting an upload file", last_errno());
  auto deleted = with_store([&](store::AttachmentStore& s) { return s.delete_upload(id); });
  if (!deleted) return internal("deleting an upload record", deleted.error());
  return *deleted;
}

void AttachmentService::delete_files(const std::vector<std::string>& ids) noexcept {
  for (const auto& id : ids) {
    if (!valid_upload_id(id)) continue;  // never a path outside the directory
    if (::unlink(path_of(id).c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("attachments: deleting an upload file: {}", last_errno().message());
    }
  }
}

std::size_t AttachmentService::purge_expired(bool force) {
  std::unique_lock purge_lock(purge_mutex_, std::try_to_lock);
  if (!purge_lock.owns_lock()) return 0;  // another thread is purging
  const std::int64_t now = clock_.now_ms();
  if (!force && purged_once_ && now - last_purge_ms_ < limits_.purge_interval_ms) return 0;
  purged_once_ = true;
  last_purge_ms_ = now;
  std::size_t purged = 0;
  for (;;) {
    auto expired =
        with_store([&](store::AttachmentStore& s) { return s.list_expired_uploads(now, kPurgeBatch); });
    if (!expired) {
      spdlog::error("attachments: listing expired uploads: {}", expired.error().message());
      break;
    }
    std::size_t skipped = 0;
    for (const auto& up : *expired) {
      {
        std::lock_guard lock(locks_mutex_);
        if (writing_.contains(up.id)) {
          ++skipped;  // its PATCH ends soon; the next purge takes it
          continue;
        }
      }
      if (valid_upload_id(up.id) && ::unlink(path_of(up.id).c_str()) != 0 && errno != ENOENT) {
        spdlog::warn("attachments: deleting an expired upload file: {}", last_errno().message());
        ++skipped;
        continue;
      }
      auto deleted = with_store([&](store::AttachmentStore& s) { return s.delete_upload(up.id); });
      if (!deleted) {
        spdlog::error("attachments: deleting an expired upload: {}", deleted.error().message());
        ++skipped;
        continue;
      }
      ++purged;
      bump(metrics_.uploads_expired);
    }
    if (expired->size() < kPurgeBatch || skipped == expired->size()) break;
  }
  if (purged > 0) spdlog::info("attachments: purged {} expired upload(s)", purged);
  return purged;
}

}  // namespace postern::server
