// Attachments: the storage side of resumable uploads (TUS 1.0) and Range downloads, without Boost.
// The HTTP layer (detail/attachment_http.h) parses requests and streams bodies; this class decides
// (sizes, quota, rate limit, ownership, offsets) and does the file and store work. Every method
// may block (files, fdatasync, the store) and is meant for the worker pool.
//
// Files: one per upload, DIR/attachments/<id>, mode 0600, where <id> is 43 characters of base64url
// (32 bytes from the injected Rng). The id is also the download capability, so it is never logged.
// The record (AttachmentStore) holds the declared length and the durable offset; the file may be
// longer than the offset after a crash mid-PATCH, and the next PATCH truncates it back first.
//
// Durability: a PATCH writes through an UploadWriter, which fdatasyncs the file before it records
// a new offset (at checkpoints and at the end, including when the connection was cut), so the
// offset a HEAD reports is always backed by bytes on disk.
//
// Concurrency: one store connection used under store_mutex_ (never held across file I/O), and a set
// of uploads being written: a second PATCH (or a DELETE) of an upload in progress gets 423.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "postern/account/rate_limit.h"
#include "postern/crypto/random.h"
#include "postern/server/config.h"
#include "postern/server/metrics.h"
#include "postern/store/server_store.h"
#include "postern/util/bytes.h"
#include "postern/util/clock.h"
#include "postern/util/result.h"

namespace postern::server {

// Why a request failed: the HTTP status and the JSON error's code and message.
struct AttachmentError {
  unsigned status = 500;
  std::string code;
  std::string message;
  std::int64_t retry_after_ms = 0;  // 429 only
};

// A value or an AttachmentError.
template <class T>
class [[nodiscard]] Outcome {
 public:
  Outcome(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Outcome(AttachmentError error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const AttachmentError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, AttachmentError> v_;
};

struct UploadInfo {
  std::string id;
  std::int64_t length = 0;
  std::int64_t offset = 0;
  bool complete = false;
  std::int64_t expires_ms = 0;
};

// ---- header syntax (pure functions, for the HTTP layer and its tests) ----

// A non-negative decimal integer of at most 18 digits, nothing else (no sign, no spaces).
std::optional<std::int64_t> parse_decimal(std::string_view text);
// Whether `text` is valid Upload-Metadata: comma-separated "key" or "key base64value" pairs, keys
// non-empty without spaces or commas, unique.
bool valid_upload_metadata(std::string_view text);
// Whether `id` has the shape of an upload id (43 base64url characters).
bool valid_upload_id(std::string_view id);

struct ByteRange {
  std::int64_t first = 0;
  std::int64_t last = 0;  // inclusive
};
enum class RangeKind {
  whole,          // no Range header, one we ignore (not "bytes=", malformed), or several ranges
  partial,        // one satisfiable range
  unsatisfiable,  // one syntactically valid range outside the content: 416
};
struct RangeRequest {
  RangeKind kind = RangeKind::whole;
  ByteRange range;
};
// Interprets a Range header (RFC 9110 section 14) for content of `length` bytes: "bytes=a-b",
// "bytes=a-", "bytes=-n". A header that does not parse is ignored, as the RFC says; a request of
// several ranges is answered whole (we do not produce multipart/byteranges).
RangeRequest parse_range(std::string_view header, std::int64_t length);

class AttachmentService {
 public:
  // `directory`: where the files go (DATA_DIR/attachments); created by open_directory().
  // `store` must be a connection of its own (it is used under this object's lock).
  AttachmentService(store::AttachmentStore& store, const AttachmentLimits& limits, std::string directory,
                    ServerMetrics& metrics, const Clock& clock, crypto::Rng& rng);
  ~AttachmentService();
  AttachmentService(const AttachmentService&) = delete;
  AttachmentService& operator=(const AttachmentService&) = delete;

  // Creates the directory (mode 0700) if missing. Call once before serving. Errors: io_error.
  Status open_directory();

  const AttachmentLimits& limits() const { return limits_; }

  // A new upload of `length` bytes for the account: 413 too_large (over max_upload_bytes), 413
  // quota_exceeded, 429 rate_limited. Purges expired uploads first when it is time.
  Outcome<UploadInfo> create(std::int64_t account_id, std::int64_t length);
  // The account's own upload (404 not_found for an unknown, expired or other account's id).
  Outcome<UploadInfo> head(std::int64_t account_id, std::string_view id);

  // Appends the body of one PATCH. Blocking methods; use from one thread at a time.
  class UploadWriter {
   public:
    ~UploadWriter();  // finish()es if not done yet, and releases the upload's lock
    UploadWriter(const UploadWriter&) = delete;
    UploadWriter& operator=(const UploadWriter&) = delete;

    // Appends bytes at the current end. Never past the declared length (too_large).
    Status write(ByteView data);
    // Makes what was written durable (fdatasync) and records the new offset; every
    // checkpoint_bytes written this happens on its own inside write().
    Status checkpoint();
    // checkpoint(), then marks the upload complete if the offset reached its length. Idempotent.
    Outcome<UploadInfo> finish();
    std::int64_t offset() const { return offset_; }
    std::int64_t length() const { return info_.length; }

   private:
    friend class AttachmentService;
    UploadWriter(AttachmentService& service, UploadInfo info, int fd);

    AttachmentService& service_;
    UploadInfo info_;
    int fd_;
    std::int64_t offset_;          // bytes in the file (written, maybe not yet durable)
    std::int64_t durable_offset_;  // recorded in the store
    bool finished_ = false;
  };
  static constexpr std::int64_t kCheckpointBytes = 64LL * 1024 * 1024;

  // Starts a PATCH of `body_length` bytes at `offset` on the account's upload: 404 not_found,
  // 409 offset_mismatch, 413 too_large (the body would go past the declared length), 423 locked
  // (another PATCH of it is in progress). (The byte rate limit is charged at creation.)
  Outcome<std::unique_ptr<UploadWriter>> begin_patch(std::int64_t account_id, std::string_view id,
                                                     std::int64_t offset, std::int64_t body_length);

  // Reads a complete upload. Blocking; one thread at a time.
  class Download {
   public:
    ~Download();
    Download(const Download&) = delete;
    Download& operator=(const Download&) = delete;
    std::int64_t length() const { return length_; }
    // Reads up to out.size() bytes at `offset`; the count (0 at the end). Errors: io_error.
    Result<std::size_t> read(std::int64_t offset, MutableByteView out);

   private:
    friend class AttachmentService;
    Download(int fd, std::int64_t length) : fd_(fd), length_(length) {}
    int fd_;
    std::int64_t length_;
  };
  // Any account may download (the id is the capability): 404 not_found (unknown or expired),
  // 409 upload_incomplete.
  Outcome<std::unique_ptr<Download>> open_download(std::string_view id);

  // The owner's termination of an upload: 404 not_found, 423 locked.
  Outcome<bool> remove(std::int64_t account_id, std::string_view id);

  // Deletes the files of these uploads (their records are gone: account deletion). Never throws.
  void delete_files(const std::vector<std::string>& ids) noexcept;
  // Deletes expired uploads (files, then records), skipping those being written; returns how many.
  // Unless `force`, does nothing when the last purge is less than purge_interval_ms old.
  std::size_t purge_expired(bool force);

 private:
  std::string path_of(std::string_view id) const;
  void release(const std::string& id);
  // Records the offset (and completion) of a writer; under store_mutex_.
  Status record_offset(const std::string& id, std::int64_t offset);
  Status record_complete(const std::string& id);

  template <class F>
  auto with_store(F&& f) {
    std::lock_guard lock(store_mutex_);
    return std::forward<F>(f)(store_);
  }

  store::AttachmentStore& store_;
  AttachmentLimits limits_;
  std::string directory_;
  ServerMetrics& metrics_;
  const Clock& clock_;
  crypto::Rng& rng_;
  account::RateLimiter bytes_per_account_;
  std::mutex store_mutex_;
  std::mutex rng_mutex_;
  std::mutex locks_mutex_;
  std::set<std::string, std::less<>> writing_;  // ids with a PATCH in progress
  std::mutex purge_mutex_;
  std::int64_t last_purge_ms_ = 0;
  bool purged_once_ = false;
};

}  // namespace postern::server
