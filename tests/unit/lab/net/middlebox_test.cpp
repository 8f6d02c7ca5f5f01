// CensorRuntime's firewall thread, with a fake firewall that records each call and the thread it
// came on: rules are added and removed off the io thread (the first test would hang if an add ran
// on it), in order, failures are logged, and stop() drops what is queued after waiting for the
// run in progress.
#include "postern/lab/net/middlebox.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "postern/lab/errors.h"
#include "postern/lab/first_flight.h"
#include "store/temp_dir.h"

namespace postern::lab::net {
namespace {

namespace asio = boost::asio;

class FakeRules final : public RuntimeRules {
 public:
  struct Call {
    std::string op;
    FlowKey key;
    std::thread::id thread;
  };

  Status add(const FirewallAction& a) override { return record("add", a); }
  Status remove(const FirewallAction& a) override { return record("remove", a); }
  const std::string& last_error() const noexcept override { return error_; }

  std::vector<Call> calls() {
    const std::lock_guard lock(mutex_);
    return calls_;
  }

  std::function<void(const std::string& op)> before;  // runs first in each call
  bool fail = false;

 private:
  Status record(const std::string& op, const FirewallAction& a) {
    if (before) before(op);
    const std::lock_guard lock(mutex_);
    calls_.push_back(Call{op, a.key, std::this_thread::get_id()});
    if (fail) return Errc::failed;
    return {};
  }

  std::mutex mutex_;
  std::vector<Call> calls_;
  std::string error_ = "iptables -w -t raw -I POSTERN-LAB ...: exit 1: no chain";
};

CensorSettings fet_settings() {
  CensorSettings s;
  s.profile = "fet";
  s.on.fet = true;
  s.fet_probability = 1.0;
  s.fet_residual = std::chrono::seconds{1};  // the drop_flow each block queues, removed after 1 s
  return s;
}

// Random bytes that no FET exemption lets through.
Bytes unexempt_flight() {
  std::mt19937_64 rng(7);
  Bytes b(200);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  b[0] = 0x8f;  // neither a TLS record nor printable
  return b;
}

const FlowKey kFlow{"10.10.0.2", "10.20.0.40", 443};

TEST(LabCensorRuntime, AddsAndRemovesRulesOffTheIoThreadInOrder) {
  ASSERT_EQ(fet_exemption(unexempt_flight()), FetExemption::none);
  store::store_test::TempDir dir;
  asio::io_context io;
  FakeRules fw;
  // The add waits until the io thread has run a handler posted after pump(): it would wait
  // forever if the add ran on the io thread, inside pump().
  std::promise<void> io_free;
  std::shared_future<void> io_free_seen = io_free.get_future().share();
  fw.before = [io_free_seen](const std::string& op) {
    if (op == "add") io_free_seen.wait();
  };
  auto rt = CensorRuntime::create(io, fet_settings(), &fw, dir.file("events.jsonl"), {});
  ASSERT_TRUE(rt.ok());
  std::thread::id io_thread;
  asio::post(io, [&] {
    io_thread = std::this_thread::get_id();
    EXPECT_EQ((*rt)->censor().on_first_flight(kFlow, unexempt_flight(), Clock::now()).verdict, Verdict::blackhole);
    (*rt)->pump();
    asio::post(io, [&] { io_free.set_value(); });
  });
  io.run();  // returns when the rule has been added, has expired and has been removed

  const auto calls = fw.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].op, "add");
  EXPECT_EQ(calls[1].op, "remove");
  for (const auto& c : calls) {
    EXPECT_EQ(c.key, kFlow);
    EXPECT_NE(c.thread, io_thread);
  }
  EXPECT_EQ(calls[0].thread, calls[1].thread);

  std::ifstream in(dir.file("events.jsonl"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"action\":\"blackhole\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"action\":\"unblock-flow\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"module\":\"fet\""), std::string::npos) << lines[1];
}

TEST(LabCensorRuntime, AFailedAddIsLoggedAndNeverRemoved) {
  asio::io_context io;
  FakeRules fw;
  fw.fail = true;
  std::vector<std::pair<int, std::string>> log;  // written on the io thread only
  auto rt = CensorRuntime::create(io, fet_settings(), &fw, "", [&](int level, const std::string& line) {
    log.emplace_back(level, line);
  });
  ASSERT_TRUE(rt.ok());
  asio::post(io, [&] {
    (void)(*rt)->censor().on_first_flight(kFlow, unexempt_flight(), Clock::now());
    (*rt)->pump();
  });
  io.run();

  const auto calls = fw.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].op, "add");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].first, 3);
  EXPECT_EQ(log[0].second, "firewall: " + fw.last_error());
}

TEST(LabCensorRuntime, StopWaitsForTheRunningRuleAndDropsTheQueuedOnes) {
  asio::io_context io;  // not run: this thread plays the io thread
  FakeRules fw;
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool first = true;  // read and written on the firewall thread only
  fw.before = [&started, released, &first](const std::string&) {
    if (!first) return;
    first = false;
    started.set_value();
    released.wait();
  };
  auto rt = CensorRuntime::create(io, fet_settings(), &fw, "", {});
  ASSERT_TRUE(rt.ok());
  for (const std::uint16_t port : {std::uint16_t{1001}, std::uint16_t{1002}, std::uint16_t{1003}}) {
    (void)(*rt)->censor().on_first_flight(FlowKey{"10.10.0.2", "10.20.0.40", port}, unexempt_flight(), Clock::now());
  }
  (*rt)->pump();  // three adds queued
  started.get_future().wait();  // the first is running
  std::thread stopper([&] { (*rt)->stop(); });
  while (!(*rt)->stopped()) std::this_thread::yield();
  release.set_value();
  stopper.join();  // stop() returned: the firewall thread is idle

  const auto calls = fw.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].key.port, 1001);
}

}  // namespace
}  // namespace postern::lab::net
