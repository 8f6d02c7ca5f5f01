#include "postern/account/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace postern::account {
namespace {

// The bucket's level at `now`. A clock that stepped backwards refills nothing; the last time is
// kept so that the same interval is not credited twice when the clock comes forward again.
double level_at(const RateLimit& limit, double tokens, std::int64_t last_ms, std::int64_t now) {
  if (now <= last_ms) return tokens;
  const double elapsed_s = static_cast<double>(now - last_ms) / 1000.0;
  return std::min(limit.capacity, tokens + elapsed_s * limit.refill_per_second);
}

void refill(const RateLimit& limit, double& tokens, std::int64_t& last_ms, std::int64_t now) {
  tokens = level_at(limit, tokens, last_ms, now);
  last_ms = std::max(last_ms, now);
}

// Refill sums fractions that binary floating point cannot hold exactly (0.998 + 0.002 may fall a
// hair short of 1). A relative slack far below any meaningful amount keeps "wait the advertised
// time, then succeed" true; it can let through at most a billionth of a token more.
constexpr double kSlack = 1e-9;

bool enough(double tokens, double n) {
  return tokens >= n - n * kSlack;
}

bool take(double& tokens, double n) {
  if (n < 0 || !enough(tokens, n)) return false;
  tokens = std::max(0.0, tokens - n);
  return true;
}

std::int64_t wait_ms(const RateLimit& limit, double tokens, double n) {
  if (enough(tokens, n)) return 0;
  if (n > limit.capacity || limit.refill_per_second <= 0) return kNeverMs;
  const double ms = std::ceil((n - tokens) * 1000.0 / limit.refill_per_second * (1 - kSlack));
  return ms >= static_cast<double>(kNeverMs) ? kNeverMs : static_cast<std::int64_t>(ms);
}

}  // namespace

TokenBucket::TokenBucket(RateLimit limit, const Clock& clock)
    : limit_(limit), clock_(clock), tokens_(limit.capacity), last_ms_(clock.now_ms()) {}

bool TokenBucket::try_take(double n) {
  refill(limit_, tokens_, last_ms_, clock_.now_ms());
  return take(tokens_, n);
}

double TokenBucket::available() const {
  return level_at(limit_, tokens_, last_ms_, clock_.now_ms());
}

std::int64_t TokenBucket::retry_after_ms(double n) const {
  return wait_ms(limit_, available(), n);
}

RateLimiter::RateLimiter(RateLimit limit, std::size_t max_keys, const Clock& clock)
    : limit_(limit), max_keys_(std::max<std::size_t>(max_keys, 1)), clock_(clock) {}

void RateLimiter::drop_idle_locked(std::int64_t now) {
  while (!lru_.empty()) {
    const Entry& oldest = lru_.back();
    if (level_at(limit_, oldest.tokens, oldest.last_ms, now) < limit_.capacity) break;
    index_.erase(oldest.key);
    lru_.pop_back();
  }
}

bool RateLimiter::try_take(std::string_view key, double n) {
  if (n < 0) return false;
  const std::lock_guard lock(mutex_);
  const std::int64_t now = clock_.now_ms();
  drop_idle_locked(now);
  auto found = index_.find(std::string(key));
  if (found == index_.end()) {
    // A new key starts with a full bucket; a cost it could never pay is refused without storing
    // anything.
    if (n > limit_.capacity) return false;
    if (index_.size() >= max_keys_) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
      ++evictions_;
    }
    lru_.push_front(Entry{std::string(key), limit_.capacity - n, now});
    index_.emplace(lru_.front().key, lru_.begin());
    return true;
  }
  lru_.splice(lru_.begin(), lru_, found->second);
  Entry& e = *found->second;
  refill(limit_, e.tokens, e.last_ms, now);
  return take(e.tokens, n);
}

std::int64_t RateLimiter::retry_after_ms(std::string_view key, double n) {
  const std::lock_guard lock(mutex_);
  const std::int64_t now = clock_.now_ms();
  const auto found = index_.find(std::string(key));
  const double tokens = found == index_.end()
                            ? limit_.capacity
                            : level_at(limit_, found->second->tokens, found->second->last_ms, now);
  return wait_ms(limit_, tokens, n);
}

std::size_t RateLimiter::size() {
  const std::lock_guard lock(mutex_);
  drop_idle_locked(clock_.now_ms());
  return index_.size();
}

std::uint64_t RateLimiter::evictions() {
  const std::lock_guard lock(mutex_);
  return evictions_;
}

}  // namespace postern::account
