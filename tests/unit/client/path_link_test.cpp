#include "postern/client/net/path_link.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
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

// A path that answers 200 or fails in transport, after a delay; counts what it was asked.
class FakeLink final : public ServerLink {
 public:
  explicit FakeLink(std::string name) : name_(std::move(name)) {}
  std::atomic<bool> up{true};
  std::atomic<int> delay_ms{0};
  std::atomic<int> requests{0};
  std::atomic<int> opens{0};

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
  std::string describe() const override { return name_; }

  Status probe() {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    if (!up.load()) return Errc::unreachable;
    return Status{};
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
};

struct Fakes {
  std::shared_ptr<FakeLink> direct = std::make_shared<FakeLink>("direct");
  std::shared_ptr<FakeLink> relay = std::make_shared<FakeLink>("relay");
  std::unique_ptr<MultiPathLink> make(MultiPathOptions options = {}) {
    std::vector<MultiPathLink::Path> paths;
    for (auto& f : {direct, relay}) {
      MultiPathLink::Path p;
      p.key = f->describe();
      p.link = f;
      p.probe = [f] { return f->probe(); };
      paths.push_back(std::move(p));
    }
    return std::make_unique<MultiPathLink>(std::move(paths), std::move(options));
  }
};

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

}  // namespace
}  // namespace postern::client::net
