// Token-bucket rate limits: a bucket holds up to `capacity` tokens, refills continuously at
// `refill_per_second`, and an action proceeds only if it can take its cost out. Bursts up to the
// capacity pass at once; the sustained rate is the refill rate. Time comes from the injected Clock.
//
// RateLimiter keeps one bucket per key (an account, an address) in bounded memory. A bucket that
// has refilled to capacity is indistinguishable from a new one, so it is dropped as soon as it is
// found at the idle end of the LRU list; when the key count still reaches its maximum, the least
// recently used bucket is evicted even if not full (its key starts over with a full bucket). That
// choice fails open for the oldest key under a flood of distinct keys rather than refusing every
// new key, which would let the flood lock everyone out; evictions() exposes it for metrics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "postern/util/clock.h"

namespace postern::account {

struct RateLimit {
  double capacity = 1;           // the largest burst, in tokens (requests, or bytes)
  double refill_per_second = 1;  // the sustained rate
};

// retry_after_ms() when waiting cannot help: the cost exceeds the capacity or nothing refills.
inline constexpr std::int64_t kNeverMs = std::numeric_limits<std::int64_t>::max();

// Recommended server limits (docs/accounts.md explains each).
namespace recommended_limits {
inline constexpr RateLimit kRegistrationPerAddress{5, 5.0 / 3600};  // 5 at once, 5 an hour
inline constexpr RateLimit kChallengesPerAddress{30, 1.0};          // challenges are cheap to issue
inline constexpr RateLimit kLoginPerAccount{10, 1.0 / 60};          // 10 at once, 1 a minute
inline constexpr RateLimit kLoginPerAddress{30, 10.0 / 60};         // 30 at once, 10 a minute
inline constexpr RateLimit kSendsPerAccount{2000, 1000};            // envelopes (one per device)
inline constexpr RateLimit kAttachmentBytesPerAccount{1024.0 * 1024 * 1024, 16.0 * 1024 * 1024};
inline constexpr RateLimit kDirectoryLookupsPerAccount{100, 1.0};
inline constexpr std::size_t kMaxKeys = 100000;  // per limiter; about 100 bytes a key
}  // namespace recommended_limits

// One bucket, starting full. Not thread-safe (one owner, or the caller's lock).
class TokenBucket {
 public:
  TokenBucket(RateLimit limit, const Clock& clock);
  TokenBucket(double capacity, double refill_per_second, const Clock& clock)
      : TokenBucket(RateLimit{capacity, refill_per_second}, clock) {}

  // Takes n tokens if that many are available now. A cost above the capacity never succeeds.
  bool try_take(double n = 1);
  // Tokens available now.
  double available() const;
  // Milliseconds until n tokens will be available (0 if now, kNeverMs if never); for Retry-After.
  std::int64_t retry_after_ms(double n = 1) const;

  const RateLimit& limit() const { return limit_; }

 private:
  RateLimit limit_;
  const Clock& clock_;
  double tokens_;
  std::int64_t last_ms_;
};

// Buckets by key, all with the same limit, at most max_keys of them. Thread-safe.
class RateLimiter {
 public:
  RateLimiter(RateLimit limit, std::size_t max_keys, const Clock& clock);

  bool try_take(std::string_view key, double n = 1);
  std::int64_t retry_after_ms(std::string_view key, double n = 1);

  // Buckets held now (idle full ones may still be counted until they are found and dropped).
  std::size_t size();
  // Buckets evicted before they were full because max_keys was reached.
  std::uint64_t evictions();

  const RateLimit& limit() const { return limit_; }

 private:
  struct Entry {
    std::string key;
    double tokens;
    std::int64_t last_ms;
  };
  using Lru = std::list<Entry>;  // front: most recently used

  void drop_idle_locked(std::int64_t now);

  RateLimit limit_;
  std::size_t max_keys_;
  const Clock& clock_;
  std::mutex mutex_;
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
  std::uint64_t evictions_ = 0;
};

}  // namespace postern::account
