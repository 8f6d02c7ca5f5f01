// UsedChallenges in memory: for tests and for a single-process server that accepts that a restart
// forgets which open challenges were redeemed (each could then be redeemed once more before it
// expires). Expired ids are pruned on every call, so memory is bounded by the number of challenges
// solved within one challenge lifetime, and each of those cost a client the proof of work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <utility>

#include "postern/account/proof_of_work.h"
#include "postern/util/clock.h"

namespace postern::account {

class InMemoryUsedChallenges final : public UsedChallenges {
 public:
  explicit InMemoryUsedChallenges(const Clock& clock) : clock_(clock) {}

  Result<bool> mark_used(const ChallengeId& id, std::int64_t expires_ms) override;

  // Number of ids held (after pruning those expired by now).
  std::size_t size();

 private:
  void prune_locked();

  const Clock& clock_;
  std::mutex mutex_;  // the server verifies from several threads
  std::set<ChallengeId> ids_;
  std::set<std::pair<std::int64_t, ChallengeId>> by_expiry_;
};

}  // namespace postern::account
