#include "postern/client/net/path_link.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "postern/client/errors.h"

namespace postern::client::net {
namespace {

// ---------------------------------------------------------------- proxy URLs

TEST(ProxyUrl, Socks5WithoutCredentials) {
  auto p = parse_proxy_url("socks5://127.0.0.1:9050");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, ProxyConfig::Kind::socks5);
  EXPECT_EQ(p->host, "127.0.0.1");
  EXPECT_EQ(p->port, 9050);
  EXPECT_FALSE(p->credentials.has_value());
  EXPECT_EQ(p->describe(), "socks5://127.0.0.1:9050");
}

TEST(ProxyUrl, Socks5hIsSocks5) {
  auto p = parse_proxy_url(" socks5h://proxy.example:1080/\n");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, ProxyConfig::Kind::socks5);
  EXPECT_EQ(p->host, "proxy.example");
  EXPECT_EQ(p->port, 1080);
}

TEST(ProxyUrl, HttpWithCredentialsPercentDecoded) {
  auto p = parse_proxy_url("http://al%40ice:p%3Ass@wd@corp-proxy.local:3128");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, ProxyConfig::Kind::http_connect);
  EXPECT_EQ(p->host, "corp-proxy.local");
  EXPECT_EQ(p->port, 3128);
  ASSERT_TRUE(p->credentials.has_value());
  EXPECT_EQ(p->credentials->username, "al@ice");
  EXPECT_EQ(p->credentials->password, "p:ss@wd");
  // describe() never shows the credentials.
  EXPECT_EQ(p->describe(), "http://corp-proxy.local:3128");
}

TEST(ProxyUrl, Ipv6InBrackets) {
  auto p = parse_proxy_url("socks5://[::1]:1080");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->host, "::1");
  EXPECT_EQ(p->describe(), "socks5://[::1]:1080");
  EXPECT_FALSE(parse_proxy_url("socks5://::1:1080").ok());
  EXPECT_FALSE(parse_proxy_url("socks5://[::1]1080").ok());
}

TEST(ProxyUrl, RefusedWithAReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty"},
      {"127.0.0.1:1080", "starts with socks5:// or http://"},
      {"ftp://h:1", "starts with socks5:// or http://"},
      {"https://h:443", "not supported"},
      {"socks5://host", ":PORT"},
      {"socks5://host:0", "port"},
      {"socks5://host:65536", "port"},
      {"socks5://host:12x", "port"},
      {"socks5://host:", "port"},
      {"socks5://:1080", "host is empty"},
      {"socks5://ho st:1080", "not allowed"},
      {"socks5://host:1080/path", "end after HOST:PORT"},
      {"socks5://host:1080?x=1", "end after HOST:PORT"},
      {"socks5://user@host:1080", "user:password@"},
      {"socks5://:pw@host:1080", "user name"},
      {"socks5://user:@host:1080", "password"},
      {"socks5://us%zzer:pw@host:1080", "%-escape"},
      {"socks5://user:pw%4@host:1080", "%-escape"},
      {"socks5://" + std::string(256, 'u') + ":pw@host:1080", "user name"},
  };
  for (const auto& [url, reason] : cases) {
    SCOPED_TRACE(url);
    auto p = parse_proxy_url(url);
    EXPECT_FALSE(p.ok());
    if (!p.ok()) {
      EXPECT_EQ(p.error(), make_error_code(Errc::invalid_argument));
    }
    const std::string why = explain_proxy_url_error(url);
    EXPECT_NE(why.find(reason), std::string::npos) << why;
  }
  EXPECT_EQ(explain_proxy_url_error("socks5://u:pw@h:1"), "");
}

TEST(ProxyUrl, ErrorNeverEchoesThePassword) {
  const std::string why = explain_proxy_url_error("socks5://user:hunter2@bad host:1080");
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(why.find("hunter2"), std::string::npos);
}

// ---------------------------------------------------------------- MultiPathLink over fakes

// A path that answers 200 or fails in transport, after a delay; counts what it was asked. With
// `hang` set, its probes and cancellable opens block until their token is cancelled, with no
// timeout of their own (a black-holed path whose connect timeout is far away): a test that does
// not cancel them hangs until ctest's timeout.
class FakeLink final : public ServerLink {
 public:
  explicit FakeLink(std::string name) : name_(std::move(name)) {}
  std::atomic<bool> up{true};
  std::atomic<int> delay_ms{0};
  std::atomic<int> requests{0};
  std::atomic<int> opens{0};
  std::atomic<bool> hang{false};
  std::atomic<int> cancels{0};   // counted by the token's stop function, when cancel() runs it
  std::atomic<int> finished{0};  // hanging calls that have returned

  // Waits until `n` calls are hanging.
  void wait_hanging(int n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return hanging_ >= n; });
  }
  // Waits until `n` hanging calls have returned.
  void wait_finished(int n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return finished >= n; });
  }

  Result<HttpResponse> send(const HttpRequest&) override {
    ++requests;
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    if (!up.load()) return Errc::unreachable;
    HttpResponse r;
    r.status = 200;
    r.body = name_;
    return r;
  }
  Result<std::unique_ptr<DeliverySocket>> open_delivery(std::string_view) override {
    ++opens;
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    if (!up.load()) return Errc::unreachable;
    return std::unique_ptr<DeliverySocket>(std::make_unique<Socket>(this));
  }
  Result<std::unique_ptr<DeliverySocket>> open_delivery_cancellable(std::string_view bearer,
                                                                    CancelToken& cancel) override {
    if (hang.load()) {
      ++opens;
      return block_until_cancelled(cancel);
    }
    return open_delivery(bearer);
  }
  std::string describe() const override { return name_; }

  Status probe(CancelToken& cancel) {
    if (hang.load()) return block_until_cancelled(cancel);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    if (!up.load()) return Errc::unreachable;
    return Status{};
  }

  // As a path that never answers: only the token ends the wait.
  std::error_code block_until_cancelled(CancelToken& cancel) {
    bool stop = false;
    {
      auto hook = cancel.on_cancel([&] {
        ++cancels;
        std::lock_guard lock(mutex_);
        stop = true;
        cv_.notify_all();
      });
      std::unique_lock lock(mutex_);
      ++hanging_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return stop; });
      --hanging_;
      ++finished;
      cv_.notify_all();
    }
    return make_error_code(Errc::cancelled);
  }

  class Socket final : public DeliverySocket {
   public:
    explicit Socket(FakeLink* link) : link_(link) {}
    Status send(ByteView) override { return link_->up.load() ? Status{} : Status{Errc::connection_closed}; }
    Result<std::optional<Bytes>> receive(std::chrono::milliseconds) override {
      if (!link_->up.load()) return Errc::connection_closed;
      return std::optional<Bytes>(Bytes(link_->name_.begin(), link_->name_.end()));
    }
    std::optional<std::uint16_t> close_code() const override { return std::nullopt; }
    void close() override {}

   private:
    FakeLink* link_;
  };

 private:
  std::string name_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int hanging_ = 0;
};

struct Fakes {
  std::shared_ptr<FakeLink> direct = std::make_shared<FakeLink>("direct");
  std::shared_ptr<FakeLink> relay = std::make_shared<FakeLink>("relay");
  std::shared_ptr<FakeLink> relay2 = std::make_shared<FakeLink>("relay2");
  // Paths direct and relay, and relay2 when `three`.
  std::unique_ptr<MultiPathLink> make(MultiPathOptions options = {}, bool three = false) {
    std::vector<MultiPathLink::Path> paths;
    std::vector<std::shared_ptr<FakeLink>> links = {direct, relay};
    if (three) links.push_back(relay2);
    for (auto& f : links) {
      MultiPathLink::Path p;
      p.key = f->describe();
      p.link = f;
      p.probe = [f](CancelToken& cancel) { return f->probe(cancel); };
      paths.push_back(std::move(p));
    }
    return std::make_unique<MultiPathLink>(std::move(paths), std::move(options));
  }
};

MultiPathOptions fast_race() {
  MultiPathOptions options;
  options.race_delay = std::chrono::milliseconds(20);
  return options;
}

HttpRequest get() {
  HttpRequest r;
  r.method = "GET";
  r.target = "/v1/x";
  return r;
}

TEST(MultiPathLink, FallsBackAndRemembersThePathThatWorked) {
  Fakes f;
  std::string switched;
  MultiPathOptions options;
  options.on_switch = [&](const std::string& key) { switched = key; };
  auto link = f.make(options);
  f.direct->up = false;
  auto r = link->send(get());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "relay");
  EXPECT_EQ(link->current_key(), "relay");
  EXPECT_EQ(switched, "relay");
  // The next request starts on the relay: the direct path is backing off.
  f.direct->up = true;
  const int direct_before = f.direct->requests.load();
  r = link->send(get());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "relay");
  EXPECT_EQ(f.direct->requests.load(), direct_before);
}

TEST(MultiPathLink, StartsOnThePreferredPath) {
  Fakes f;
  MultiPathOptions options;
  options.preferred = "relay";
  auto link = f.make(options);
  auto r = link->send(get());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "relay");
  EXPECT_EQ(f.direct->requests.load(), 0);
}

TEST(MultiPathLink, RacesASlowPath) {
  Fakes f;
  f.direct->delay_ms = 3000;  // hangs (a black hole until its timeout)
  MultiPathOptions options;
  options.race_delay = std::chrono::milliseconds(200);
  auto link = f.make(options);
  const auto start = std::chrono::steady_clock::now();
  auto socket = link->open_delivery("token");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(socket.ok());
  EXPECT_LT(took, std::chrono::milliseconds(2000));
  EXPECT_EQ(link->current_key(), "relay");
  auto got = (*socket)->receive(std::chrono::milliseconds(10));
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(std::string((*got)->begin(), (*got)->end()), "relay");
}

TEST(MultiPathLink, DeliverySocketMovesToAnotherPathWhenItsPathDies) {
  Fakes f;
  auto link = f.make();
  auto socket = link->open_delivery("token");
  ASSERT_TRUE(socket.ok());
  EXPECT_EQ(link->current_key(), "direct");
  f.direct->up = false;  // the path dies (no close code from the server)
  auto got = (*socket)->receive(std::chrono::milliseconds(10));
  ASSERT_TRUE(got.ok());  // reopened: nothing yet
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(link->current_key(), "relay");
  got = (*socket)->receive(std::chrono::milliseconds(10));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(std::string((*got)->begin(), (*got)->end()), "relay");
  EXPECT_TRUE((*socket)->send(ByteView()).ok());
}

TEST(MultiPathLink, AllPathsDownIsUnreachable) {
  Fakes f;
  f.direct->up = false;
  f.relay->up = false;
  auto link = f.make();
  auto r = link->send(get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), make_error_code(Errc::unreachable));
  auto s = link->open_delivery("token");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), make_error_code(Errc::unreachable));
}

// ---------------------------------------------------------------- cancelling the racers

TEST(CancelToken, RunsTheStopFunctionOnceWhileInstalled) {
  CancelToken token;
  int stops = 0;
  {
    auto hook = token.on_cancel([&] { ++stops; });
    EXPECT_FALSE(token.cancelled());
    token.cancel();
    token.cancel();  // a second cancel does nothing more
  }
  EXPECT_TRUE(token.cancelled());
  EXPECT_EQ(stops, 1);
  // Installed after the cancel: runs at once.
  auto late = token.on_cancel([&] { ++stops; });
  EXPECT_EQ(stops, 2);
  // Uninstalled: a cancel no longer reaches it.
  CancelToken other;
  { auto hook = other.on_cancel([&] { ++stops; }); }
  other.cancel();
  EXPECT_EQ(stops, 2);
}

TEST(MultiPathLink, TheLoserOfARaceIsCancelledAndNotMarkedFailed) {
  Fakes f;
  f.direct->hang = true;  // black-holed: would never answer
  f.relay2->hang = true;  // (so that only the relay can win, however late it starts)
  auto link = f.make(fast_race(), /*three=*/true);
  auto socket = link->open_delivery("token");
  ASSERT_TRUE(socket.ok()) << socket.error().message();
  EXPECT_EQ(link->current_key(), "relay");
  // The direct attempt was cancelled when the relay won.
  f.direct->wait_finished(1);
  EXPECT_EQ(f.direct->cancels.load(), 1);
  // Not marked failed: after the relay, the direct path keeps its place before relay2 (a failed
  // path would back off and come last).
  EXPECT_EQ(link->candidate_keys(), (std::vector<std::string>{"relay", "direct", "relay2"}));
  // It is usable at once: when the relay goes down, the next request goes direct.
  f.direct->hang = false;
  f.relay->up = false;
  auto r = link->send(get());
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->body, "direct");
}

TEST(MultiPathLink, ASendRaceCancelsTheLosingProbe) {
  Fakes f;
  f.direct->hang = true;
  auto link = f.make(fast_race());
  auto r = link->send(get());
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->body, "relay");
  link.reset();  // joins the probe's thread: it ended when cancelled
  EXPECT_EQ(f.direct->cancels.load(), 1);
  EXPECT_EQ(f.direct->finished.load(), 1);
}

TEST(MultiPathLink, DestroyingTheLinkEndsTheAttemptsInFlight) {
  Fakes f;
  f.direct->hang = true;
  auto link = f.make(fast_race());
  auto socket = link->open_delivery("token");
  ASSERT_TRUE(socket.ok());
  (*socket).reset();
  link.reset();  // without cancelling, this would wait for the direct attempt forever
  EXPECT_EQ(f.direct->cancels.load(), 1);
  EXPECT_EQ(f.direct->finished.load(), 1);
}

TEST(MultiPathLink, TheCallersTokenStopsARaceWithoutMarkingItsPaths) {
  Fakes f;
  f.direct->hang = true;
  f.relay->hang = true;
  auto link = f.make(fast_race());
  CancelToken cancel;
  Result<std::unique_ptr<DeliverySocket>> opened = Errc::unreachable;
  std::thread caller([&] { opened = link->open_delivery_cancellable("token", cancel); });
  f.direct->wait_hanging(1);
  f.relay->wait_hanging(1);
  cancel.cancel();
  caller.join();
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error(), make_error_code(Errc::cancelled));
  EXPECT_EQ(f.direct->cancels.load(), 1);
  EXPECT_EQ(f.relay->cancels.load(), 1);
  // Neither path failed: none is backing off.
  EXPECT_EQ(link->candidate_keys(), (std::vector<std::string>{"direct", "relay"}));

  // The same for a request carrying a token: its probe race stops.
  f.direct->hang = true;
  f.relay->hang = true;
  auto fresh = f.make(fast_race());
  auto request = get();
  request.cancel = std::make_shared<CancelToken>();
  Result<HttpResponse> answer = Errc::unreachable;
  std::thread sender([&] { answer = fresh->send(request); });
  f.direct->wait_hanging(1);
  f.relay->wait_hanging(1);
  request.cancel->cancel();
  sender.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error(), make_error_code(Errc::cancelled));
}

TEST(MultiPathLink, ClosingTheDeliverySocketStopsItsReopen) {
  Fakes f;
  MultiPathOptions one_at_a_time;
  one_at_a_time.race_delay = std::chrono::hours(1);  // the next path only once the last has failed
  auto link = f.make(one_at_a_time);
  auto socket = link->open_delivery("token");
  ASSERT_TRUE(socket.ok());
  EXPECT_EQ(link->current_key(), "direct");
  f.relay->hang = true;  // the reopen through the relay hangs...
  f.direct->up = false;  // ...once the direct path dies
  Result<std::optional<Bytes>> got = std::optional<Bytes>{};
  std::thread reader([&] { got = (*socket)->receive(std::chrono::milliseconds(10)); });
  f.relay->wait_hanging(1);
  (*socket)->close();
  reader.join();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error(), make_error_code(Errc::connection_closed));
  EXPECT_EQ(f.relay->cancels.load(), 1);
}

}  // namespace
}  // namespace postern::client::net
