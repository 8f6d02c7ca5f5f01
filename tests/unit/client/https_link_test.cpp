// HttpsLink (src/postern/client/net/https_link.h) against the real server in-process (Api over
// SQLite in a temp directory, HttpServer with attachments and the delivery hub on 127.0.0.1:0),
// and against small raw servers in the test for the transport failures: a wrong pin, a refused
// connection, a TLS peer that never answers, a TCP peer that never speaks TLS, oversized answers.
#include "postern/client/net/https_link.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "postern/account/proof_of_work.h"
#include "postern/client/errors.h"
#include "postern/client/invite.h"
#include "postern/crypto/random.h"
#include "postern/server/api.h"
#include "postern/server/attachments.h"
#include "postern/server/config.h"
#include "postern/server/data_dir.h"
#include "postern/server/delivery_hub.h"
#include "postern/server/http_server.h"
#include "postern/server/proto/delivery.pb.h"
#include "postern/server/tls_identity.h"
#include "postern/store/sqlite_server_store.h"
#include "postern/util/clock.h"

namespace postern::client::net {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string make_temp_dir() {
  std::string pattern = "/tmp/postern-https-link-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  return pattern;
}

Invite invite_for(std::uint16_t port, const std::string& pin_text) {
  auto invite = parse_invite("postern://localhost:" + std::to_string(port) + "?pin=" + pin_text);
  EXPECT_TRUE(invite.ok());
  return invite.ok() ? *invite : Invite{};
}

// The real server, wired as apps/postern-server/main.cpp does, with cheap password hashing and
// proof of work.
class TestServer {
 public:
  explicit TestServer(std::chrono::milliseconds idle_timeout = 60s) : dir_(make_temp_dir()) {
    config_.data_dir = dir_;
    config_.listen = {"127.0.0.1", 0};
    config_.pow_difficulty = 4;
    config_.password = account::PasswordHashParams::minimum();
    config_.http.idle_timeout = idle_timeout;
    config_.worker_threads = 2;
    config_.io_threads = 1;
    const std::string db = dir_ + "/postern.db";
    auto store = store::SqliteServerStore::open(db);
    auto attachment_store = store::SqliteServerStore::open(db);
    if (!store || !attachment_store) throw std::runtime_error("store");
    store_ = std::move(*store);
    attachment_store_ = std::move(*attachment_store);
    auto secret = server::load_or_create_secret(dir_ + "/pow.secret", rng_);
    if (!secret) throw std::runtime_error("secret");
    const std::string cert = dir_ + "/cert.pem";
    const std::string key = dir_ + "/key.pem";
    if (!server::ensure_self_signed_certificate(cert, key, "localhost")) throw std::runtime_error("cert");
    auto pin = server::certificate_pin(cert);
    auto tls = server::make_tls_context(cert, key);
    if (!pin || !tls) throw std::runtime_error("tls");
    pin_ = *pin;
    tls_ = *tls;
    api_ = std::make_unique<server::Api>(*store_, config_, secret->view(), clock_, rng_);
    attachments_ = std::make_unique<server::AttachmentService>(*attachment_store_, config_.attachments,
                                                               dir_ + "/attachments", api_->metrics(), clock_, rng_);
    if (!attachments_->open_directory()) throw std::runtime_error("attachments");
    api_->set_upload_files_deleter([this](const std::vector<std::string>& ids) { attachments_->delete_files(ids); });
    io_ = std::make_unique<asio::io_context>(1);
    workers_ = std::make_unique<asio::thread_pool>(2);
    delivery_ = std::make_unique<server::DeliveryHub>(*workers_, *api_, config_);
    server_ = std::make_unique<server::HttpServer>(*io_, *tls_, *workers_, *api_, config_.http, attachments_.get(),
                                                   delivery_.get());
    auto bound = server_->listen(config_.listen);
    if (!bound) throw std::runtime_error("listen");
    port_ = bound->port;
    server_->start();
    thread_ = std::thread([this] { io_->run(); });
  }

  ~TestServer() {
    server_->shutdown();
    delivery_->shutdown();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (server_->active_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    io_->stop();
    thread_.join();
    workers_->join();
    api_->stop();
    server_.reset();
    delivery_.reset();
    workers_.reset();
    io_.reset();
    attachments_.reset();
    api_.reset();
    attachment_store_.reset();
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  Invite invite() const { return invite_for(port_, pin_); }
  server::ServerMetrics& metrics() { return api_->metrics(); }

 private:
  std::string dir_;
  server::ServerConfig config_;
  SystemClock clock_;
  crypto::SystemRng rng_;
  std::unique_ptr<store::SqliteServerStore> store_;
  std::unique_ptr<store::SqliteServerStore> attachment_store_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::string pin_;
  std::unique_ptr<server::Api> api_;
  std::unique_ptr<server::AttachmentService> attachments_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<asio::thread_pool> workers_;
  std::unique_ptr<server::DeliveryHub> delivery_;
  std::unique_ptr<server::HttpServer> server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

HttpRequest request(std::string method, std::string target, std::string body = {}) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  if (!r.body.empty()) r.headers.push_back({"Content-Type", "application/json"});
  r.io_timeout = 10s;
  return r;
}

// Registers an account and logs a device in through the link; returns the bearer token.
std::string register_and_login(HttpsLink& link, const std::string& email) {
  auto challenge = link.send(request("POST", "/v1/challenge"));
  EXPECT_TRUE(challenge.ok());
  if (!challenge) return {};
  EXPECT_EQ(challenge->status, 200u) << challenge->body;
  const auto c = nlohmann::json::parse(challenge->body);
  const std::string token = c["token"];
  auto nonce = account::solve(token, c["difficulty"].get<unsigned>());
  EXPECT_TRUE(nonce.ok());
  const nlohmann::json form = {{"email", email},         {"password", "Secret1"},
                               {"birthdate", "1990-05-17"}, {"accept_terms", true},
                               {"pow", {{"token", token}, {"nonce", nonce.ok() ? *nonce : 0}}}};
  auto created = link.send(request("POST", "/v1/accounts", form.dump()));
  EXPECT_TRUE(created.ok());
  if (!created) return {};
  EXPECT_EQ(created->status, 201u) << created->body;
  const nlohmann::json login = {
      {"email", email},
      {"password", "Secret1"},
      {"device", {{"name", "laptop"}, {"identity_key", "05" + std::string(64, '1')}, {"registration_id", 42}}}};
  auto session = link.send(request("POST", "/v1/sessions", login.dump()));
  EXPECT_TRUE(session.ok());
  if (!session) return {};
  EXPECT_EQ(session->status, 201u) << session->body;
  return nlohmann::json::parse(session->body)["token"];
}

// A raw peer on 127.0.0.1 for the transport failures, on its own io thread. With TLS, it
// handshakes and then counts what the client sends; it answers `reply` (when set) once it has
// read a request header, else never.
class RawServer {
 public:
  RawServer(bool tls, std::optional<std::string> reply = std::nullopt)
      : tls_enabled_(tls), reply_(std::move(reply)), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    if (tls) {
      dir_ = make_temp_dir();
      const std::string cert = dir_ + "/cert.pem";
      const std::string key = dir_ + "/key.pem";
      if (!server::ensure_self_signed_certificate(cert, key, "localhost")) throw std::runtime_error("cert");
      pin_ = *server::certificate_pin(cert);
      tls_ = *server::make_tls_context(cert, key);
    }
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RawServer() {
    io_.stop();
    thread_.join();
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  const std::string& pin() const { return pin_; }
  // Waits until `n` connections have ended (the client went away).
  bool wait_ended(int n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 5s, [&] { return ended_ >= n; });
  }
  // Waits (without a limit) until `n` connections were accepted, or some bytes were received
  // (after the TLS handshake, with TLS).
  void wait_accepted(int n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return accepted_ >= n; });
  }
  void wait_received() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return received_ > 0; });
  }
  std::size_t bytes_received() {
    std::lock_guard lock(mutex_);
    return received_;
  }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      {
        std::lock_guard lock(mutex_);
        ++accepted_;
        cv_.notify_all();
      }
      asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
  }

  awaitable<void> serve(tcp::socket socket) {
    if (!tls_enabled_) {
      std::array<char, 1024> sink;
      for (;;) {  // never speaks
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), kTuple);
        if (ec) break;
      }
    } else {
      asio::ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
      auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
      std::string seen;
      bool replied = false;
      if (!hec) {
        std::array<char, 4096> buffer;
        for (;;) {
          auto [ec, n] = co_await stream.async_read_some(asio::buffer(buffer), kTuple);
          if (ec) break;
          {
            std::lock_guard lock(mutex_);
            received_ += n;
            cv_.notify_all();
          }
          seen.append(buffer.data(), n);
          if (reply_ && !replied && seen.find("\r\n\r\n") != std::string::npos) {
            replied = true;
            co_await asio::async_write(stream, asio::buffer(*reply_), kTuple);
          }
        }
      }
    }
    std::lock_guard lock(mutex_);
    ++ended_;
    cv_.notify_all();
  }

  bool tls_enabled_;
  std::optional<std::string> reply_;
  std::string dir_;
  std::string pin_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t received_ = 0;
  int accepted_ = 0;
  int ended_ = 0;
};

std::string wrong_pin() {
  return "sha256/" + server::base64url(std::string(32, 'x'));
}

// ---- against the real server ----

TEST(HttpsLinkServer, ChallengeAndUnauthorizedRoute) {
  TestServer server;
  HttpsLink link(server.invite());
  EXPECT_EQ(link.describe().rfind("direct localhost:", 0), 0u) << link.describe();
  auto challenge = link.send(request("POST", "/v1/challenge"));
  ASSERT_TRUE(challenge.ok()) << challenge.error().message();
  EXPECT_EQ(challenge->status, 200u);
  const auto body = nlohmann::json::parse(challenge->body);
  EXPECT_TRUE(body["token"].is_string());
  EXPECT_EQ(challenge->header("cache-control").value_or(""), "no-store");

  auto devices = link.send(request("GET", "/v1/devices"));
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->status, 401u);
  EXPECT_EQ(devices->header("WWW-Authenticate").value_or(""), "Bearer");
  EXPECT_EQ(nlohmann::json::parse(devices->body)["error"]["code"], "unauthorized");

  auto bogus = request("GET", "/v1/devices");
  bogus.bearer = std::string(43, 'A');
  auto refused = link.send(bogus);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 401u);
}

TEST(HttpsLinkServer, AuthenticatedRouteWithBearer) {
  TestServer server;
  HttpsLink link(server.invite());
  const std::string token = register_and_login(link, "alice@example.com");
  ASSERT_FALSE(token.empty());
  auto r = request("GET", "/v1/devices");
  r.bearer = token;
  auto devices = link.send(r);
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->status, 200u) << devices->body;
  EXPECT_EQ(nlohmann::json::parse(devices->body)["devices"].size(), 1u);
}

TEST(HttpsLinkServer, KeepAliveUsesOneConnection) {
  TestServer server;
  HttpsLink link(server.invite());
  for (int i = 0; i < 6; ++i) {
    auto r = link.send(request("GET", "/v1/devices"));
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->status, 401u);
  }
  EXPECT_EQ(link.connections_opened(), 1u);
}

TEST(HttpsLinkServer, RetriesOnceWhenTheServerClosedAnIdleConnection) {
  TestServer server(200ms);  // the server drops idle connections after 200 ms
  HttpsLink link(server.invite());
  auto first = link.send(request("GET", "/v1/devices"));
  ASSERT_TRUE(first.ok());
  std::this_thread::sleep_for(600ms);
  auto second = link.send(request("GET", "/v1/devices"));
  ASSERT_TRUE(second.ok()) << second.error().message();
  EXPECT_EQ(second->status, 401u);
  EXPECT_EQ(link.connections_opened(), 2u);

  // A streamed body cannot be sent twice: no retry, the caller resumes (TUS HEAD, then PATCH).
  std::this_thread::sleep_for(600ms);
  auto patch = request("PATCH", "/v1/attachments/" + std::string(43, 'A'));
  patch.headers = {{"Tus-Resumable", "1.0.0"}, {"Upload-Offset", "0"}};
  patch.body_length = 1000;
  patch.body_source = [](std::span<std::uint8_t> out) -> Result<std::size_t> {
    std::fill(out.begin(), out.end(), std::uint8_t{7});
    return out.size();
  };
  auto streamed = link.send(patch);
  ASSERT_FALSE(streamed.ok());
  EXPECT_EQ(streamed.error(), make_error_code(Errc::unreachable));
  EXPECT_EQ(link.connections_opened(), 2u);
  auto third = link.send(request("GET", "/v1/devices"));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(link.connections_opened(), 3u);
}

TEST(HttpsLinkServer, ConcurrentSendsFromFourThreads) {
  TestServer server;
  HttpsLink link(server.invite());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto r = link.send(request("GET", "/v1/devices"));
        if (r.ok() && r->status == 401u) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
  // Separate connections for requests in flight together, reused afterwards.
  EXPECT_GE(link.connections_opened(), 1u);
  EXPECT_LE(link.connections_opened(), 8u);
}

TEST(HttpsLinkServer, TusUploadStreamedAndDownloadedIntoASink) {
  TestServer server;
  HttpsLink link(server.invite());
  const std::string token = register_and_login(link, "bob@example.com");
  ASSERT_FALSE(token.empty());
  constexpr std::uint64_t kLength = 3 * 1024 * 1024 + 123;
  auto byte_at = [](std::uint64_t i) { return static_cast<std::uint8_t>((i * 131 + (i >> 11)) & 0xff); };

  auto create = request("POST", "/v1/attachments");
  create.bearer = token;
  create.headers = {{"Tus-Resumable", "1.0.0"}, {"Upload-Length", std::to_string(kLength)}};
  auto created = link.send(create);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->status, 201u) << created->body;
  const std::string location(created->header("Location").value_or(""));
  ASSERT_EQ(location.rfind("/v1/attachments/", 0), 0u);

  std::uint64_t produced = 0;
  std::size_t largest_pull = 0;
  auto patch = request("PATCH", location);
  patch.bearer = token;
  patch.headers = {{"Tus-Resumable", "1.0.0"},
                   {"Upload-Offset", "0"},
                   {"Content-Type", "application/offset+octet-stream"}};
  patch.body_length = kLength;
  patch.body_source = [&](std::span<std::uint8_t> out) -> Result<std::size_t> {
    largest_pull = std::max(largest_pull, out.size());
    const std::size_t n = std::min<std::size_t>(out.size(), 10'000);  // shorter than asked, on purpose
    for (std::size_t i = 0; i < n; ++i) out[i] = byte_at(produced + i);
    produced += n;
    return n;
  };
  auto patched = link.send(patch);
  ASSERT_TRUE(patched.ok()) << patched.error().message();
  EXPECT_EQ(patched->status, 204u) << patched->body;
  EXPECT_EQ(patched->header("Upload-Offset").value_or(""), std::to_string(kLength));
  EXPECT_EQ(produced, kLength);
  EXPECT_LE(largest_pull, 256u * 1024);  // the link pulls streamed bodies in pieces of at most 256 KiB

  auto head = request("HEAD", location);
  head.bearer = token;
  head.headers = {{"Tus-Resumable", "1.0.0"}};
  auto headed = link.send(head);
  ASSERT_TRUE(headed.ok()) << headed.error().message();
  EXPECT_EQ(headed->status, 200u);
  EXPECT_EQ(headed->header("Upload-Length").value_or(""), std::to_string(kLength));

  std::uint64_t received = 0;
  std::size_t pieces = 0;
  bool same = true;
  auto get = request("GET", location);
  get.bearer = token;
  get.body_sink = [&](ByteView piece) -> Status {
    ++pieces;
    for (std::size_t i = 0; i < piece.size(); ++i) same = same && piece[i] == byte_at(received + i);
    received += piece.size();
    return {};
  };
  auto got = link.send(get);
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_EQ(got->status, 200u);
  EXPECT_TRUE(got->body.empty());
  EXPECT_EQ(received, kLength);
  EXPECT_TRUE(same);
  EXPECT_GT(pieces, 10u);

  // An error answer goes into `body`, not the sink.
  auto missing = request("GET", "/v1/attachments/" + std::string(43, 'A'));
  missing.bearer = token;
  bool sunk = false;
  missing.body_sink = [&](ByteView) -> Status {
    sunk = true;
    return {};
  };
  auto not_found = link.send(missing);
  ASSERT_TRUE(not_found.ok());
  EXPECT_EQ(not_found->status, 404u);
  EXPECT_FALSE(sunk);
  EXPECT_NE(not_found->body.find("not_found"), std::string::npos);
  // Everything above went over one kept-alive connection.
  EXPECT_EQ(link.connections_opened(), 1u);
}

// The next ServerFrame, unpacking batches.
std::vector<delivery::v1::ServerFrame> frames_of(const Bytes& message) {
  delivery::v1::ServerFrame frame;
  std::vector<delivery::v1::ServerFrame> out;
  if (!frame.ParseFromArray(message.data(), static_cast<int>(message.size()))) return out;
  if (frame.has_batch()) {
    for (const auto& f : frame.batch().frames()) out.push_back(f);
  } else {
    out.push_back(frame);
  }
  return out;
}

TEST(HttpsLinkServer, DeliverySocketRefusedWithoutTokenThenQueueEmptyAndReplaced) {
  TestServer server;
  HttpsLink link(server.invite());
  auto refused = link.open_delivery(std::string(43, 'A'));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error(), make_error_code(Errc::server_error));
  EXPECT_EQ(refused.error().message().find(std::string(43, 'A')), std::string::npos);

  const std::string token = register_and_login(link, "carol@example.com");
  ASSERT_FALSE(token.empty());
  auto opened = link.open_delivery(token);
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  auto& socket = **opened;

  bool queue_empty = false;
  for (int i = 0; i < 5 && !queue_empty; ++i) {
    auto m = socket.receive(5s);
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(m->has_value());
    for (const auto& f : frames_of(**m)) queue_empty = queue_empty || f.has_queue_empty();
  }
  EXPECT_TRUE(queue_empty);

  // A timeout leaves the socket usable.
  auto quiet = socket.receive(100ms);
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(quiet->has_value());

  // A frame the server cannot parse is answered with a FrameError on the same socket.
  const Bytes garbage = {0xff, 0xff, 0xff, 0x01};
  ASSERT_TRUE(socket.send(garbage).ok());
  auto answer = socket.receive(5s);
  ASSERT_TRUE(answer.ok());
  ASSERT_TRUE(answer->has_value());
  const auto frames = frames_of(**answer);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].has_error());

  // A second connection of the same device replaces this one: closed with 4000.
  auto second = link.open_delivery(token);
  ASSERT_TRUE(second.ok());
  Result<std::optional<Bytes>> end = std::optional<Bytes>{};
  for (int i = 0; i < 10; ++i) {
    end = socket.receive(2s);
    if (!end.ok()) break;
  }
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.error(), make_error_code(Errc::connection_closed));
  EXPECT_EQ(socket.close_code(), std::optional<std::uint16_t>(4000));
  EXPECT_EQ(socket.send(garbage).error(), make_error_code(Errc::connection_closed));
  socket.close();
  socket.close();
  (*second)->close();
  (*second)->close();
  // What arrived before the close is still handed out, then the end.
  Result<std::optional<Bytes>> after = std::optional<Bytes>{};
  for (int i = 0; i < 10 && after.ok(); ++i) after = (*second)->receive(2s);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error(), make_error_code(Errc::connection_closed));
}

TEST(HttpsLinkServer, DeliverySocketOutlivingItsLinkIsSafe) {
  TestServer server;
  std::unique_ptr<DeliverySocket> socket;
  {
    HttpsLink link(server.invite());
    const std::string token = register_and_login(link, "dave@example.com");
    auto opened = link.open_delivery(token);
    ASSERT_TRUE(opened.ok());
    socket = std::move(*opened);
  }
  auto m = socket->receive(5s);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->has_value());
  socket.reset();  // the destructor closes
}

// ---- transport failures ----

TEST(HttpsLink, WrongPinFailsBeforeAnyRequestByte) {
  RawServer peer(true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  HttpsLink link(invite_for(peer.port(), wrong_pin()));
  auto r = link.send(request("POST", "/v1/challenge"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), make_error_code(Errc::pin_mismatch));
  ASSERT_TRUE(peer.wait_ended(1));
  EXPECT_EQ(peer.bytes_received(), 0u);
  auto ws = link.open_delivery("token");
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(ws.error(), make_error_code(Errc::pin_mismatch));

  // The right pin on the same peer: the request goes through.
  HttpsLink good(invite_for(peer.port(), peer.pin()));
  auto answered = good.send(request("POST", "/v1/challenge"));
  ASSERT_TRUE(answered.ok()) << answered.error().message();
  EXPECT_EQ(answered->status, 200u);
  EXPECT_GT(peer.bytes_received(), 0u);
}

TEST(HttpsLink, ConnectionRefusedIsUnreachable) {
  std::uint16_t port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }  // closed: nothing listens there now
  HttpsLink link(invite_for(port, wrong_pin()));
  auto r = link.send(request("GET", "/"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), make_error_code(Errc::unreachable));
  auto ws = link.open_delivery("token");
  EXPECT_EQ(ws.error(), make_error_code(Errc::unreachable));
}

TEST(HttpsLink, HostOverrideDialsAnotherAddressWithTheSamePin) {
  RawServer peer(true, "HTTP/1.1 204 No Content\r\n\r\n");
  Invite invite = invite_for(1, peer.pin());  // nothing listens on port 1
  HttpsLinkOptions options;
  options.connect_host = "127.0.0.1";
  options.connect_port = peer.port();
  HttpsLink link(invite, options);
  auto r = link.send(request("GET", "/"));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status, 204u);
  EXPECT_NE(link.describe().find("127.0.0.1:" + std::to_string(peer.port())), std::string::npos);
}

TEST(HttpsLink, SilentServerTimesOut) {
  RawServer peer(true);  // handshakes, reads, never answers
  HttpsLink link(invite_for(peer.port(), peer.pin()));
  auto r = request("GET", "/v1/devices");
  r.io_timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  auto answer = link.send(r);
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error(), make_error_code(Errc::timeout));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_GT(peer.bytes_received(), 0u);  // the request was sent; only the answer never came
}

TEST(HttpsLink, PeerThatNeverSpeaksTlsTimesOut) {
  RawServer peer(false);
  HttpsLinkOptions options;
  options.connect_timeout = 300ms;
  HttpsLink link(invite_for(peer.port(), wrong_pin()), options);
  auto answer = link.send(request("GET", "/"));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error(), make_error_code(Errc::timeout));
}

// A call waiting on a handshake that never comes, with a timeout far away: a cancel from another
// thread ends it (Errc::cancelled) and closes its connection, for each kind of call.
TEST(HttpsLink, CancelStopsACallWaitingOnTheHandshake) {
  RawServer peer(false);  // accepts, reads the ClientHello, never answers
  HttpsLinkOptions options;
  options.connect_timeout = 60s;
  HttpsLink link(invite_for(peer.port(), wrong_pin()), options);
  const std::vector<std::function<std::error_code(const std::shared_ptr<CancelToken>&)>> calls = {
      [&](const std::shared_ptr<CancelToken>& cancel) { return link.prepare(cancel.get()).error(); },
      [&](const std::shared_ptr<CancelToken>& cancel) {
        return link.open_delivery_cancellable("token", *cancel).error();
      },
      [&](const std::shared_ptr<CancelToken>& cancel) {
        auto r = request("GET", "/");
        r.cancel = cancel;
        return link.send(r).error();
      },
  };
  int connections = 0;
  for (const auto& call : calls) {
    SCOPED_TRACE(connections);
    auto cancel = std::make_shared<CancelToken>();
    std::error_code got;
    std::thread caller([&] { got = call(cancel); });
    peer.wait_accepted(++connections);  // connected: the handshake is under way
    cancel->cancel();
    caller.join();
    EXPECT_EQ(got, make_error_code(Errc::cancelled));
    EXPECT_TRUE(peer.wait_ended(connections));  // the client closed its side
  }
  // Cancelled before it starts: no connection at all.
  const auto opened = link.connections_opened();
  auto early = std::make_shared<CancelToken>();
  early->cancel();
  EXPECT_EQ(link.prepare(early.get()).error(), make_error_code(Errc::cancelled));
  EXPECT_EQ(link.connections_opened(), opened);
}

// A cancelled request closes the connection it was using; the link goes on as before.
TEST(HttpsLink, ACancelledRequestLeavesTheLinkUsable) {
  RawServer peer(true);  // handshakes, reads, never answers
  HttpsLink link(invite_for(peer.port(), peer.pin()));
  ASSERT_TRUE(link.prepare().ok());  // a connection waits in the pool
  auto r = request("GET", "/v1/devices");
  r.io_timeout = 60s;
  r.cancel = std::make_shared<CancelToken>();
  Result<HttpResponse> answer = Errc::unreachable;
  std::thread caller([&] { answer = link.send(r); });
  peer.wait_received();  // the request went out on the pooled connection
  r.cancel->cancel();
  caller.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error(), make_error_code(Errc::cancelled));
  EXPECT_TRUE(peer.wait_ended(1));
  EXPECT_EQ(link.connections_opened(), 1u);
  // The next call opens a fresh connection, untouched by the cancel.
  EXPECT_TRUE(link.prepare().ok());
  EXPECT_EQ(link.connections_opened(), 2u);
  // A token cancelled after its call has finished changes nothing.
  auto late = std::make_shared<CancelToken>();
  EXPECT_TRUE(link.prepare(late.get()).ok());
  late->cancel();
  EXPECT_EQ(link.connections_opened(), 3u);
}

TEST(HttpsLink, OversizedAnswersAreProtocolErrors) {
  {
    RawServer peer(true, "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n");
    HttpsLink link(invite_for(peer.port(), peer.pin()));
    auto r = link.send(request("GET", "/"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), make_error_code(Errc::protocol_error));
  }
  {
    RawServer peer(true, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(17 * 1024 * 1024) + "\r\n\r\n");
    HttpsLink link(invite_for(peer.port(), peer.pin()));
    auto r = link.send(request("GET", "/"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), make_error_code(Errc::protocol_error));
  }
  {
    RawServer peer(true, "this is not HTTP\r\n\r\n");
    HttpsLink link(invite_for(peer.port(), peer.pin()));
    auto r = link.send(request("GET", "/"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), make_error_code(Errc::protocol_error));
  }
}

TEST(HttpsLink, RefusesHeaderInjection) {
  RawServer peer(true, "HTTP/1.1 204 No Content\r\n\r\n");
  HttpsLink link(invite_for(peer.port(), peer.pin()));
  auto r = request("GET", "/");
  r.headers.push_back({"X-Evil", "a\r\nInjected: 1"});
  EXPECT_EQ(link.send(r).error(), make_error_code(Errc::invalid_argument));
  auto bad_bearer = request("GET", "/");
  bad_bearer.bearer = "t\r\nX: 1";
  EXPECT_EQ(link.send(bad_bearer).error(), make_error_code(Errc::invalid_argument));
}

}  // namespace
}  // namespace postern::client::net
