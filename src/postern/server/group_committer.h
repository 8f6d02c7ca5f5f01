// Group commit of message envelopes. Each send request hands its envelopes to submit(), which
// blocks until they are durable; one committer thread collects what concurrent requests submitted
// and writes it with ONE MessageQueue::enqueue(batch) call (one transaction, one fsync) per round,
// then wakes every submitter of that round with its own results. While a round is being written,
// new submissions queue up and form the next round, so under load many requests share one fsync
// and the throughput does not fall with the disk's sync latency; an idle server commits a lone
// request at once (no timer, no added latency).
//
// Guarantees:
// - A submission is never split across rounds: its envelopes are stored all or none.
// - Results come back in the submission's own order (server ids, duplicate flags).
// - A failed round fails only its own submitters. When the failure is one a single submission can
//   cause (Errc::not_found for a device removed meanwhile, Errc::invalid_argument, Errc::too_large),
//   a round of several submissions is retried one submission at a time, so only the culprit fails.
// - Rounds run in submission order, so the server ids of one submitter's successive calls
//   increase (order per sending device is kept when a device sends one request after another).
//
// - After each successful commit, and before any submitter is answered, the optional on_commit
//   hook sees the envelopes just made durable with their results (the WebSocket delivery pushes
//   them from there): the hook runs on the committer thread, in commit order.
// - submit_async() does not block: its callback runs on the committer thread once the round is
//   done (it must be quick and must not call back into the committer). submit() blocks.
//
// Plain std::thread + mutex + condition variable: no Asio, testable with a fake commit function.
// Header-only, so that its unit test needs no server library (only the store's headers and types).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <span>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "postern/store/errors.h"
#include "postern/store/server_store.h"
#include "postern/util/result.h"

namespace postern::server {

class GroupCommitter {
 public:
  // Writes one batch durably; the Api passes MessageQueue::enqueue under its store lock.
  using CommitFn = std::function<Result<std::vector<store::Enqueued>>(std::span<const store::Envelope>)>;
  // Sees every batch that was committed (same length spans), on the committer thread.
  using OnCommitFn = std::function<void(std::span<const store::Envelope>, std::span<const store::Enqueued>)>;
  using Callback = std::function<void(Result<std::vector<store::Enqueued>>)>;

  struct Stats {
    std::uint64_t rounds = 0;       // commit calls made (including single-submission retries)
    std::uint64_t submissions = 0;  // submit() calls answered
    std::uint64_t envelopes = 0;    // envelopes in them
    std::uint64_t failed_rounds = 0;
  };

  // `max_round_envelopes`: a round takes queued submissions until it holds this many envelopes
  // (a bigger single submission still goes alone, whole). Starts the committer thread.
  explicit GroupCommitter(CommitFn commit, std::size_t max_round_envelopes = 4096, OnCommitFn on_commit = {});
  // Commits what is queued, then stops the thread. submit() must not be called any more.
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Blocks until the envelopes are durable (one result each, in order) or their round failed. An
  // empty submission returns an empty vector at once.
  Result<std::vector<store::Enqueued>> submit(std::vector<store::Envelope> envelopes);
  // The same without blocking: `done` gets the result on the committer thread (at once, on the
  // calling thread, for an empty submission).
  void submit_async(std::vector<store::Envelope> envelopes, Callback done);

  Stats stats() const;
  // Submissions queued and not yet taken into a round (for metrics and tests).
  std::size_t waiting() const;

 private:
  struct Submission {
    std::vector<store::Envelope> envelopes;
    Result<std::vector<store::Enqueued>> result{std::vector<store::Enqueued>{}};
    Callback done;
  };

  void run();
  void commit_round(std::vector<Submission*>& round);

  CommitFn commit_;
  OnCommitFn on_commit_;
  std::size_t max_round_envelopes_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;  // the committer waits for submissions
  std::deque<Submission*> queue_;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

// ---- implementation ----

namespace group_committer_detail {

// Failures that one submission's content can cause (so retrying the others alone can succeed).
inline bool caused_by_one_submission(const std::error_code& e) {
  return e == store::Errc::not_found || e == store::Errc::invalid_argument || e == store::Errc::too_large;
}

}  // namespace group_committer_detail

inline GroupCommitter::GroupCommitter(CommitFn commit, std::size_t max_round_envelopes, OnCommitFn on_commit)
    : commit_(std::move(commit)),
      on_commit_(std::move(on_commit)),
      max_round_envelopes_(max_round_envelopes == 0 ? 1 : max_round_envelopes) {
  thread_ = std::thread([this] { run(); });
}

inline GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

inline Result<std::vector<store::Enqueued>> GroupCommitter::submit(std::vector<store::Envelope> envelopes) {
  if (envelopes.empty()) return std::vector<store::Enqueued>{};
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  Result<std::vector<store::Enqueued>> out{std::vector<store::Enqueued>{}};
  submit_async(std::move(envelopes), [&](Result<std::vector<store::Enqueued>> r) {
    std::lock_guard lock(m);
    out = std::move(r);
    finished = true;
    cv.notify_one();  // under the lock: the waiter cannot return and destroy cv before this
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return finished; });
  return out;
}

inline void GroupCommitter::submit_async(std::vector<store::Envelope> envelopes, Callback done) {
  if (envelopes.empty()) {
    done(std::vector<store::Enqueued>{});
    return;
  }
  auto s = std::make_unique<Submission>();
  s->envelopes = std::move(envelopes);
  s->done = std::move(done);
  std::lock_guard lock(mutex_);
  queue_.push_back(s.release());
  work_cv_.notify_one();
}

inline GroupCommitter::Stats GroupCommitter::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

inline std::size_t GroupCommitter::waiting() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

inline void GroupCommitter::run() {
  std::vector<Submission*> round;
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything queued has been committed
    round.clear();
    std::size_t envelopes = 0;
    while (!queue_.empty()) {
      Submission* next = queue_.front();
      if (!round.empty() && envelopes + next->envelopes.size() > max_round_envelopes_) break;
      envelopes += next->envelopes.size();
      round.push_back(next);
      queue_.pop_front();
    }
    lock.unlock();
    commit_round(round);
    std::uint64_t answered = 0;
    for (const Submission* s : round) answered += s->result ? s->result->size() : 0;
    {
      std::lock_guard stats_lock(mutex_);  // counted before anyone is answered
      stats_.submissions += round.size();
      stats_.envelopes += answered;
    }
    for (Submission* s : round) {
      std::unique_ptr<Submission> owned(s);
      s->done(std::move(s->result));
    }
    lock.lock();
  }
}

// Runs without the lock: the submissions of `round` belong to this thread until marked done.
inline void GroupCommitter::commit_round(std::vector<Submission*>& round) {
  std::uint64_t rounds = 0;
  std::uint64_t failed = 0;
  const auto commit_one = [&](std::span<const store::Envelope> batch) -> Result<std::vector<store::Enqueued>> {
    ++rounds;
    Result<std::vector<store::Enqueued>> r = commit_(batch);
    if (r && r->size() != batch.size()) r = store::Errc::sqlite_error;  // a broken store; never acknowledge
    if (!r) ++failed;
    if (r && on_commit_) on_commit_(batch, *r);
    return r;
  };

  if (round.size() == 1) {
    round.front()->result = commit_one(round.front()->envelopes);
  } else {
    std::vector<store::Envelope> batch;
    std::size_t total = 0;
    for (const Submission* s : round) total += s->envelopes.size();
    batch.reserve(total);
    for (Submission* s : round) {
      std::move(s->envelopes.begin(), s->envelopes.end(), std::back_inserter(batch));
    }
    Result<std::vector<store::Enqueued>> all = commit_one(batch);
    std::size_t at = 0;
    for (Submission* s : round) {
      const std::size_t n = s->envelopes.size();
      if (all) {
        s->result = std::vector<store::Enqueued>(all->begin() + static_cast<std::ptrdiff_t>(at),
                                                 all->begin() + static_cast<std::ptrdiff_t>(at + n));
      } else {
        // Give each submission its envelopes back (moved-from slots keep their size).
        for (std::size_t i = 0; i < n; ++i) s->envelopes[i] = std::move(batch[at + i]);
        s->result = all.error();
      }
      at += n;
    }
    if (!all && group_committer_detail::caused_by_one_submission(all.error())) {
      for (Submission* s : round) s->result = commit_one(s->envelopes);
    }
  }
  std::lock_guard lock(mutex_);
  stats_.rounds += rounds;
  stats_.failed_rounds += failed;
}

}  // namespace postern::server
