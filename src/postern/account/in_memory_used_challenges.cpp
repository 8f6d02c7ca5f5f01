#include "postern/account/in_memory_used_challenges.h"

namespace postern::account {

void InMemoryUsedChallenges::prune_locked() {
  const std::int64_t now = clock_.now_ms();
  while (!by_expiry_.empty() && by_expiry_.begin()->first <= now) {
    ids_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
  }
}

Result<bool> InMemoryUsedChallenges::mark_used(const ChallengeId& id, std::int64_t expires_ms) {
  const std::lock_guard lock(mutex_);
  prune_locked();
  if (!ids_.insert(id).second) return false;
  by_expiry_.emplace(expires_ms, id);
  return true;
}

std::size_t InMemoryUsedChallenges::size() {
  const std::lock_guard lock(mutex_);
  prune_locked();
  return ids_.size();
}

}  // namespace postern::account
