// GroupCommitter: concurrent submissions share store transactions, every submitter gets its own
// results, a failed round fails only its own submitters, and a retried client id keeps its id.
#include "postern/server/group_committer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "postern/store/errors.h"
#include "postern/store/sqlite_server_store.h"
#include "store/temp_dir.h"

namespace postern::server {
namespace {

using store::Envelope;
using store::Enqueued;

Envelope envelope(std::int64_t sender, std::uint32_t recipient_device, const std::string& client_id,
                  std::int32_t type = 1) {
  Envelope e;
  e.recipient_account = 1;
  e.recipient_device = recipient_device;
  e.sender_account = sender;
  e.sender_device = 1;
  e.client_id = Bytes(client_id.begin(), client_id.end());
  e.type = type;
  e.timestamp_ms = 1000;
  e.content = Bytes{1, 2, 3};
  e.expires_ms = 1'000'000;
  return e;
}

// A store stand-in: numbers envelopes from 1, fails a batch holding an envelope of type -1 with
// Errc::io_error and one of type -2 with Errc::not_found, and can hold each call at a gate.
class FakeQueue {
 public:
  Result<std::vector<Enqueued>> commit(std::span<const Envelope> batch) {
    {
      std::unique_lock lock(mutex_);
      ++calls_;
      batch_sizes_.push_back(batch.size());
      cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
    }
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    for (const Envelope& e : batch) {
      if (e.type == -1) return store::Errc::io_error;
      if (e.type == -2) return store::Errc::not_found;
    }
    std::vector<Enqueued> out;
    for (std::size_t i = 0; i < batch.size(); ++i) out.push_back({next_id_++, false});
    return out;
  }
  void set_open(bool open) {
    std::lock_guard lock(mutex_);
    open_ = open;
    cv_.notify_all();
  }
  void wait_for_calls(int n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return calls_ >= n; });
  }
  int calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::chrono::milliseconds delay_{0};

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = true;
  int calls_ = 0;
  std::vector<std::size_t> batch_sizes_;
  std::int64_t next_id_ = 1;  // only touched by the committer thread
};

GroupCommitter::CommitFn fn(FakeQueue& q) {
  return [&q](std::span<const Envelope> b) { return q.commit(b); };
}

void wait_until_waiting(const GroupCommitter& c, std::size_t n) {
  while (c.waiting() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TEST(GroupCommitter, EmptySubmissionReturnsAtOnce) {
  FakeQueue q;
  GroupCommitter c(fn(q));
  auto r = c.submit({});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(q.calls(), 0);
}

TEST(GroupCommitter, AsyncSubmissionsAreAnsweredInOrderAfterTheHookSawTheirCommit) {
  FakeQueue q;
  q.set_open(false);  // hold the first round so that the others queue up behind it
  std::mutex m;
  std::vector<std::string> events;  // "commit:<client id>" from the hook, "done:<n>" from callbacks
  GroupCommitter c(
      fn(q), 4096, [&](std::span<const Envelope> batch, std::span<const Enqueued> results) {
        std::lock_guard lock(m);
        ASSERT_EQ(batch.size(), results.size());
        for (const auto& e : batch) events.push_back("commit:" + std::string(e.client_id.begin(), e.client_id.end()));
      });
  std::atomic<int> answered{0};
  for (int i = 0; i < 5; ++i) {
    c.submit_async({envelope(1, 1, "c" + std::to_string(i))}, [&, i](Result<std::vector<Enqueued>> r) {
      ASSERT_TRUE(r);
      ASSERT_EQ(r->size(), 1u);
      std::lock_guard lock(m);
      events.push_back("done:" + std::to_string(i));
      ++answered;
    });
  }
  q.wait_for_calls(1);
  q.set_open(true);
  while (answered.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::lock_guard lock(m);
  // Every submission's commit was seen by the hook before its callback ran, in submission order.
  for (int i = 0; i < 5; ++i) {
    const auto commit = std::find(events.begin(), events.end(), "commit:c" + std::to_string(i));
    const auto done = std::find(events.begin(), events.end(), "done:" + std::to_string(i));
    ASSERT_NE(commit, events.end());
    ASSERT_NE(done, events.end());
    EXPECT_LT(commit - events.begin(), done - events.begin());
    if (i > 0) {
      const auto previous = std::find(events.begin(), events.end(), "done:" + std::to_string(i - 1));
      EXPECT_LT(previous - events.begin(), done - events.begin());
    }
  }
}

TEST(GroupCommitter, TheHookDoesNotSeeAFailedRound) {
  FakeQueue q;
  int seen = 0;
  GroupCommitter c(fn(q), 4096, [&](std::span<const Envelope> batch, std::span<const Enqueued>) {
    seen += static_cast<int>(batch.size());
  });
  EXPECT_FALSE(c.submit({envelope(1, 1, "bad", -1)}));
  EXPECT_EQ(seen, 0);
  EXPECT_TRUE(c.submit({envelope(1, 1, "good")}));
  EXPECT_EQ(seen, 1);
}

TEST(GroupCommitter, ConcurrentSubmittersShareTransactionsAndGetTheirOwnIds) {
  FakeQueue q;
  q.delay_ = std::chrono::milliseconds(2);  // like an fsync: submissions pile up meanwhile
  GroupCommitter c(fn(q));
  constexpr int kThreads = 16;
  constexpr int kPerThread = 20;
  std::vector<std::vector<std::int64_t>> ids(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Two envelopes per submission (two recipient devices).
        auto r = c.submit({envelope(t + 1, 1, std::to_string(i)), envelope(t + 1, 2, std::to_string(i))});
        if (!r || r->size() != 2) {
          ++failures;
          continue;
        }
        ids[static_cast<std::size_t>(t)].push_back((*r)[0].server_id);
        ids[static_cast<std::size_t>(t)].push_back((*r)[1].server_id);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::set<std::int64_t> all;
  for (const auto& per : ids) {
    ASSERT_EQ(per.size(), 2u * kPerThread);
    for (std::size_t i = 1; i < per.size(); ++i) EXPECT_LT(per[i - 1], per[i]) << "a submitter's ids increase";
    all.insert(per.begin(), per.end());
  }
  EXPECT_EQ(all.size(), 2u * kThreads * kPerThread) << "no id is handed to two envelopes";
  const auto stats = c.stats();
  EXPECT_EQ(stats.submissions, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(stats.envelopes, static_cast<std::uint64_t>(2 * kThreads * kPerThread));
  EXPECT_LT(stats.rounds, stats.submissions) << "group commit batched nothing";
  EXPECT_EQ(static_cast<std::uint64_t>(q.calls()), stats.rounds);
}

TEST(GroupCommitter, FailureReachesOnlyTheWaitersOfItsRound) {
  FakeQueue q;
  GroupCommitter c(fn(q));
  q.set_open(false);
  Result<std::vector<Enqueued>> first = store::Errc::sqlite_error, bad = first, good = first, later = first;
  std::thread t1([&] { first = c.submit({envelope(1, 1, "a")}); });
  q.wait_for_calls(1);  // round 1 (only "a") is in the store, held at the gate
  std::thread t2([&] { bad = c.submit({envelope(2, 1, "b", -1)}); });
  std::thread t3([&] { good = c.submit({envelope(3, 1, "c")}); });
  wait_until_waiting(c, 2);  // both queued behind round 1: they form round 2 together
  q.set_open(true);
  t1.join();
  t2.join();
  t3.join();
  later = c.submit({envelope(4, 1, "d")});
  ASSERT_TRUE(first);
  EXPECT_FALSE(bad);
  EXPECT_EQ(bad.error(), store::Errc::io_error);
  EXPECT_FALSE(good) << "an I/O failure fails its whole round";
  EXPECT_EQ(good.error(), store::Errc::io_error);
  ASSERT_TRUE(later) << "the next round is not affected";
  EXPECT_EQ(later->size(), 1u);
  EXPECT_EQ(c.stats().failed_rounds, 1u);
  EXPECT_EQ(q.calls(), 3);
}

TEST(GroupCommitter, ARejectedSubmissionDoesNotFailOthersInItsRound) {
  FakeQueue q;
  GroupCommitter c(fn(q));
  q.set_open(false);
  Result<std::vector<Enqueued>> first = store::Errc::sqlite_error, bad = first, good = first;
  std::thread t1([&] { first = c.submit({envelope(1, 1, "a")}); });
  q.wait_for_calls(1);
  std::thread t2([&] { bad = c.submit({envelope(2, 1, "b", -2)}); });  // e.g. a device removed meanwhile
  std::thread t3([&] { good = c.submit({envelope(3, 1, "c"), envelope(3, 2, "c")}); });
  wait_until_waiting(c, 2);
  q.set_open(true);
  t1.join();
  t2.join();
  t3.join();
  ASSERT_TRUE(first);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), store::Errc::not_found);
  ASSERT_TRUE(good) << "retried alone after the round failed";
  EXPECT_EQ(good->size(), 2u);
}

TEST(GroupCommitter, WithTheSqliteStoreRetriedClientIdsKeepTheirServerId) {
  store::store_test::TempDir dir;
  auto opened = store::SqliteServerStore::open(dir.file("server.db"));
  ASSERT_TRUE(opened);
  auto& s = **opened;
  auto account = s.create_account("r@example.com", "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", 1000);
  ASSERT_TRUE(account);
  Bytes key(33, 0x11);
  key[0] = 0x05;
  ASSERT_TRUE(s.add_device(*account, key, 1, "one", 1000));
  ASSERT_TRUE(s.add_device(*account, key, 2, "two", 1000));
  std::mutex store_mutex;  // one connection, as in the Api
  GroupCommitter c([&](std::span<const Envelope> b) {
    std::lock_guard lock(store_mutex);
    return s.enqueue(b);
  });

  constexpr int kThreads = 8;
  std::vector<Result<std::vector<Enqueued>>> firsts(kThreads, store::Errc::sqlite_error);
  std::vector<Result<std::vector<Enqueued>>> retries(kThreads, store::Errc::sqlite_error);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto make = [&] {
        std::vector<Envelope> v{envelope(*account, 1, "m" + std::to_string(t)),
                                envelope(*account, 2, "m" + std::to_string(t))};
        for (auto& e : v) e.recipient_account = *account;
        return v;
      };
      firsts[static_cast<std::size_t>(t)] = c.submit(make());
      retries[static_cast<std::size_t>(t)] = c.submit(make());
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    const auto& f = firsts[static_cast<std::size_t>(t)];
    const auto& r = retries[static_cast<std::size_t>(t)];
    ASSERT_TRUE(f);
    ASSERT_TRUE(r);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_FALSE((*f)[i].duplicate);
      EXPECT_TRUE((*r)[i].duplicate);
      EXPECT_EQ((*f)[i].server_id, (*r)[i].server_id);
    }
  }
  auto queued1 = s.queued_count(*account, 1);
  ASSERT_TRUE(queued1);
  EXPECT_EQ(*queued1, kThreads) << "each retried envelope stored once";

  // A device that does not exist fails only that submission.
  auto bad = c.submit({[&] {
    auto e = envelope(*account, 9, "x");
    e.recipient_account = *account;
    return e;
  }()});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), store::Errc::not_found);
}

}  // namespace
}  // namespace postern::server
