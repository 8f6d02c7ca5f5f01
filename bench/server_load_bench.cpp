// postern-loadbench: a load generator for postern-server on loopback (docs/benchmarks.md, "Server
// load"). It starts the real postern-server binary as a child process with a temporary data
// directory and a configuration that lowers the costs not under test (proof of work, Argon2id
// limits, rate limits), creates accounts and devices over the HTTPS JSON API, then drives the
// delivery WebSocket (GET /v1/websocket, protobuf frames of src/postern/server/proto/delivery.proto):
//   a  relay throughput: P sender/receiver pairs, W envelopes in flight per pair (sent and not yet
//      received), 100-byte envelopes, delivered envelopes per second counted at the receivers;
//   b  latency at a fixed offered rate (open loop: sends are timed by a schedule, not by answers, and
//      latency runs from the scheduled send time to the receipt, so a stall is not hidden);
//   c  server memory per idle authenticated WebSocket (VmRSS of the server process before and after
//      N connections, each of which has received its queue_empty);
//   d  time to drain N envelopes queued for an offline device, from the TCP connect to queue_empty;
//   e  connect-and-authenticate rate: TCP + TLS handshake + WebSocket upgrade with the bearer token
//      until the first frame (queue_empty), by several concurrent connectors.
// The load generator shares the machine with the server (2 io threads here, 2 io + 2 worker
// threads there). Every figure is measured in the run that prints it.
#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "postern/account/proof_of_work.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/server/delivery_frames.h"
#include "postern/server/proto/delivery.pb.h"
#include "postern/util/bytes.h"
#include "bench_server.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace pb = postern::delivery::v1;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;
using postern::bench::find_server;
using postern::bench::seconds_since;
using postern::bench::ServerProcess;
using postern::bench::sleep_ms;
using json = nlohmann::json;

constexpr std::size_t kContentBytes = 100;
constexpr std::size_t kAckBatch = 32;
constexpr const char* kPassword = "Bench1pass";

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

double own_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Waits (polling) until pred() or the timeout; returns pred().
bool wait_until(const std::function<bool()>& pred, double timeout_s) {
  const auto start = Clock::now();
  while (!pred()) {
    if (seconds_since(start) > timeout_s) return pred();
    sleep_ms(2);
  }
  return true;
}

// Plain HTTP GET of the admin listener (for /metrics); empty on failure.
std::string admin_get(std::uint16_t port, const std::string& target) {
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return res.body();
  } catch (const std::exception&) {
    return {};
  }
}

// A sample's value from a Prometheus text body (name with labels as printed), -1 if absent.
double metric_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(name + " ")) return std::atof(line.c_str() + name.size() + 1);
  }
  return -1;
}

// ---- the HTTPS JSON API (set-up), synchronous ----

class HttpsClient {
 public:
  HttpsClient(asio::ssl::context& tls, std::uint16_t port) : tls_(tls), port_(port) {}

  std::pair<unsigned, json> request(http::verb method, const std::string& target, const json& body = nullptr,
                                    const std::string& token = {}) {
    for (int attempt = 0;; ++attempt) {
      try {
        if (!stream_) connect();
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, "127.0.0.1");
        if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
        if (!body.is_null()) {
          req.set(http::field::content_type, "application/json");
          req.body() = body.dump();
        }
        req.keep_alive(true);
        req.prepare_payload();
        http::write(*stream_, req);
        http::response<http::string_body> res;
        http::read(*stream_, buffer_, res);
        if (!res.keep_alive()) stream_.reset();
        json parsed = res.body().empty() ? json() : json::parse(res.body(), nullptr, false);
        return {res.result_int(), parsed};
      } catch (const std::exception&) {
        stream_.reset();
        buffer_.clear();
        if (attempt >= 2) throw;
      }
    }
  }

 private:
  void connect() {
    stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io_, tls_);
    beast::get_lowest_layer(*stream_).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    stream_->handshake(asio::ssl::stream_base::client);
  }

  asio::io_context io_;
  asio::ssl::context& tls_;
  std::uint16_t port_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream_;
  beast::flat_buffer buffer_;
};

struct Device {
  std::int64_t account_id = 0;
  std::uint32_t device_id = 0;
  std::string token;
};

std::string g_identity_hex;  // one identity key for every bench device (the server only stores it)

std::int64_t create_account(HttpsClient& c, const std::string& email) {
  auto [st, challenge] = c.request(http::verb::post, "/v1/challenge");
  if (st != 200) throw std::runtime_error("challenge: " + std::to_string(st));
  const std::string token = challenge["token"];
  const auto nonce = postern::account::solve(token, challenge["difficulty"].get<unsigned>());
  if (!nonce) throw std::runtime_error("solving the challenge failed");
  json form = {{"email", email},
               {"password", kPassword},
               {"birthdate", "1990-05-17"},
               {"accept_terms", true},
               {"pow", {{"token", token}, {"nonce", *nonce}}}};
  auto [status, body] = c.request(http::verb::post, "/v1/accounts", form);
  if (status != 201) throw std::runtime_error("register: " + std::to_string(status) + " " + body.dump());
  return body["account_id"].get<std::int64_t>();
}

Device login(HttpsClient& c, const std::string& email, std::uint32_t registration_id) {
  json form = {{"email", email},
               {"password", kPassword},
               {"device",
                {{"name", "bench"}, {"identity_key", g_identity_hex}, {"registration_id", registration_id}}}};
  auto [status, body] = c.request(http::verb::post, "/v1/sessions", form);
  if (status != 201) throw std::runtime_error("login: " + std::to_string(status) + " " + body.dump());
  return Device{body["account_id"].get<std::int64_t>(), body["device_id"].get<std::uint32_t>(),
                body["token"].get<std::string>()};
}

// Runs f(client, i) for i in [0, n) on `threads` threads, each with its own keep-alive connection.
void parallel_setup(asio::ssl::context& tls, std::uint16_t port, std::size_t n, unsigned threads,
                    const std::function<void(HttpsClient&, std::size_t)>& f) {
  std::atomic<std::size_t> next{0};
  std::mutex error_mutex;
  std::string error;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      HttpsClient client(tls, port);
      for (std::size_t i; (i = next.fetch_add(1)) < n;) {
        try {
          f(client, i);
        } catch (const std::exception& e) {
          std::lock_guard lock(error_mutex);
          error = e.what();
          next = n;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  if (!error.empty()) throw std::runtime_error(error);
}

// `accounts` accounts named PREFIX-i@bench.example, each logged in `devices_each` times.
std::vector<Device> make_devices(asio::ssl::context& tls, std::uint16_t port, const std::string& prefix,
                                 std::size_t accounts, std::size_t devices_each) {
  std::vector<std::string> emails(accounts);
  for (std::size_t i = 0; i < accounts; ++i) emails[i] = prefix + "-" + std::to_string(i) + "@bench.example";
  parallel_setup(tls, port, accounts, 4,
                 [&](HttpsClient& c, std::size_t i) { create_account(c, emails[i]); });
  std::vector<Device> devices(accounts * devices_each);
  parallel_setup(tls, port, devices.size(), 4, [&](HttpsClient& c, std::size_t i) {
    devices[i] = login(c, emails[i % accounts], static_cast<std::uint32_t>(i + 1));
  });
  return devices;
}

// ---- delivery WebSocket client ----

using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using WsStream = websocket::stream<TlsStream>;

std::string send_frame(std::uint64_t request_id, std::int64_t recipient, std::uint32_t device,
                       std::uint64_t tag, std::int64_t stamp_ns) {
  pb::ClientFrame frame;
  auto* send = frame.mutable_send();
  send->set_request_id(request_id);
  send->set_recipient_account(recipient);
  auto* e = send->add_envelopes();
  e->set_device_id(device);
  e->set_type(1);
  std::string content(kContentBytes, '\x5a');
  std::memcpy(content.data(), &stamp_ns, sizeof stamp_ns);
  e->set_content(std::move(content));
  std::string client_id(16, '\0');
  std::memcpy(client_id.data(), &tag, sizeof tag);
  std::memcpy(client_id.data() + 8, &request_id, sizeof request_id);
  e->set_client_id(std::move(client_id));
  e->set_timestamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count());
  return frame.SerializeAsString();
}

std::int64_t stamp_of(const pb::Envelope& e) {
  std::int64_t stamp = 0;
  if (e.content().size() >= sizeof stamp) std::memcpy(&stamp, e.content().data(), sizeof stamp);
  return stamp;
}

std::atomic<std::uint64_t> g_frame_errors{0};  // FrameError frames and failed sends
std::atomic<std::uint64_t> g_connect_failures{0};

// One WebSocket connection. Everything of it runs on its strand: one read loop, one write queue
// (never two writes in flight), acknowledgements batched by kAckBatch or flushed after 5 ms.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  using FrameHandler = std::function<void(Conn&, const pb::ServerFrame&)>;

  Conn(asio::io_context& io, asio::ssl::context& tls)
      : strand_(asio::make_strand(io)), ws_(strand_, tls), ack_timer_(strand_) {}

  asio::strand<asio::io_context::executor_type>& strand() { return strand_; }
  FrameHandler on_frame;
  std::atomic<bool> got_queue_empty{false};
  std::atomic<bool> closed{false};
  std::uint64_t envelopes = 0;  // received (strand only)

  // TCP connect, TLS, upgrade with the token. Runs on the strand.
  awaitable<bool> open(std::uint16_t port, const std::string& token) {
    auto& socket = beast::get_lowest_layer(ws_);
    socket.expires_after(std::chrono::seconds(30));
    auto [ec] = co_await socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                              asio::as_tuple(use_awaitable));
    if (ec) co_return false;
    boost::system::error_code ignored;
    socket.socket().set_option(tcp::no_delay(true), ignored);  // small frames: no Nagle delay
    std::tie(ec) = co_await ws_.next_layer().async_handshake(asio::ssl::stream_base::client,
                                                             asio::as_tuple(use_awaitable));
    if (ec) co_return false;
    socket.expires_never();
    websocket::stream_base::timeout timeouts =
        websocket::stream_base::timeout::suggested(beast::role_type::client);
    timeouts.handshake_timeout = std::chrono::seconds(30);
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [token](websocket::request_type& req) { req.set(http::field::authorization, "Bearer " + token); }));
    std::tie(ec) = co_await ws_.async_handshake("127.0.0.1:" + std::to_string(port), "/v1/websocket",
                                                asio::as_tuple(use_awaitable));
    if (ec) co_return false;
    ws_.binary(true);
    ws_.read_message_max(64 * 1024 * 1024);
    co_return true;
  }

  // Opens, then reads until the connection ends. on_open runs (on the strand) once it is open.
  void start(std::uint16_t port, std::string token, std::function<void(bool)> on_open = {}) {
    asio::co_spawn(strand_, run(port, std::move(token), std::move(on_open)), asio::detached);
  }

  // Queues a frame (any thread).
  void send(std::string frame) {
    asio::post(strand_,
               [self = shared_from_this(), f = std::move(frame)]() mutable { self->enqueue(std::move(f)); });
  }
  // Strand only.
  void enqueue(std::string frame) {
    if (closed) return;
    out_.push_back(std::move(frame));
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(strand_, write_loop(), asio::detached);
    }
  }

  // Closes the TCP connection at once (any thread).
  void abort() {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed = true;
      boost::system::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().close(ignored);
    });
  }

 private:
  awaitable<void> run(std::uint16_t port, std::string token, std::function<void(bool)> on_open) {
    auto self = shared_from_this();
    const bool ok = co_await open(port, token);
    if (on_open) on_open(ok);
    if (!ok) {
      g_connect_failures.fetch_add(1, std::memory_order_relaxed);
      closed = true;
      co_return;
    }
    beast::flat_buffer buffer;
    pb::ServerFrame frame;
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buffer, asio::as_tuple(use_awaitable));
      if (ec) break;
      const auto data = buffer.cdata();
      if (!frame.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
        g_frame_errors.fetch_add(1, std::memory_order_relaxed);
      } else if (frame.has_batch()) {
        for (const auto& inner : frame.batch().frames()) process(inner);
      } else {
        process(frame);
      }
      buffer.consume(buffer.size());
    }
    closed = true;
  }

  void process(const pb::ServerFrame& frame) {
    auto self = shared_from_this();
    if (frame.has_envelope()) {
      ++envelopes;
      acks_.push_back(frame.envelope().server_id());
      if (acks_.size() >= kAckBatch) {
        flush_acks();
      } else if (!ack_timer_armed_) {
        ack_timer_armed_ = true;
        ack_timer_.expires_after(std::chrono::milliseconds(5));
        ack_timer_.async_wait([self](const boost::system::error_code&) {
          self->ack_timer_armed_ = false;
          self->flush_acks();
        });
      }
    } else if (frame.has_queue_empty()) {
      flush_acks();
    } else if (frame.has_error() || (frame.has_send_response() && frame.send_response().status() != 200)) {
      g_frame_errors.fetch_add(1, std::memory_order_relaxed);
    }
    if (on_frame) on_frame(*this, frame);
    if (frame.has_queue_empty()) got_queue_empty = true;
  }

  void flush_acks() {
    if (acks_.empty() || closed) return;
    pb::ClientFrame frame;
    for (auto id : acks_) frame.mutable_ack()->add_server_ids(id);
    acks_.clear();
    enqueue(frame.SerializeAsString());
  }

  awaitable<void> write_loop() {
    auto self = shared_from_this();
    while (!out_.empty() && !closed) {
      // What has piled up goes as one ClientFrame{batch}, as a real client would send it.
      std::string message;
      if (out_.size() == 1) {
        message = std::move(out_.front());
        out_.pop_front();
      } else {
        std::vector<std::string> held;
        while (!out_.empty() && held.size() < 256) {
          held.push_back(std::move(out_.front()));
          out_.pop_front();
        }
        std::vector<const std::string*> parts;
        for (const auto& h : held) parts.push_back(&h);
        message = postern::server::encode_client_batch_frame(parts);
      }
      auto [ec, n] = co_await ws_.async_write(asio::buffer(message), asio::as_tuple(use_awaitable));
      if (ec) {
        closed = true;
        break;
      }
    }
    out_.clear();
    writing_ = false;
  }

  asio::strand<asio::io_context::executor_type> strand_;
  WsStream ws_;
  asio::steady_timer ack_timer_;
  bool ack_timer_armed_ = false;
  std::vector<std::uint64_t> acks_;
  std::deque<std::string> out_;
  bool writing_ = false;
};

// Opens a connection per token, `concurrency` at a time, and waits for every queue_empty.
std::vector<std::shared_ptr<Conn>> open_all(asio::io_context& io, asio::ssl::context& tls, std::uint16_t port,
                                            const std::vector<Device>& devices, std::size_t concurrency,
                                            const Conn::FrameHandler& handler = {}) {
  std::vector<std::shared_ptr<Conn>> conns(devices.size());
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> in_progress{0};
  std::atomic<std::size_t> done{0};
  std::function<void()> launch = [&] {
    const std::size_t i = next.fetch_add(1);
    if (i >= devices.size()) return;
    ++in_progress;
    auto c = std::make_shared<Conn>(io, tls);
    c->on_frame = [&, handler](Conn& conn, const pb::ServerFrame& f) {
      if (handler) handler(conn, f);
      if (f.has_queue_empty()) {
        ++done;
        --in_progress;
        launch();
      }
    };
    conns[i] = c;
    c->start(port, devices[i].token, [&](bool ok) {
      if (!ok) {
        ++done;
        --in_progress;
        launch();
      }
    });
  };
  for (std::size_t k = 0; k < concurrency && k < devices.size(); ++k) launch();
  wait_until([&] { return done.load() == devices.size(); }, 600);
  // The handlers above capture locals: detach them from the connections before returning.
  for (auto& c : conns) {
    if (!c) continue;
    std::promise<void> p;
    asio::post(c->strand(), [&p, &c, handler] {
      c->on_frame = handler;
      p.set_value();
    });
    p.get_future().wait();
  }
  return conns;
}

void close_all(std::vector<std::shared_ptr<Conn>>& conns) {
  for (auto& c : conns) {
    if (c) c->abort();
  }
  wait_until(
      [&] { return std::all_of(conns.begin(), conns.end(), [](auto& c) { return !c || c->closed.load(); }); },
      30);
  conns.clear();
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return NAN;
  const auto k = static_cast<std::size_t>(
      std::min<double>(static_cast<double>(v.size() - 1), std::ceil(p * static_cast<double>(v.size())) - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// ---- results ----

struct Row {
  std::string metric;
  double ours = NAN;
  std::string unit;
  std::string target;
  bool met = false;
  bool has_target = false;
  double ejabberd = NAN;
  std::string ejabberd_text;
  double prosody = NAN;
  bool higher_is_better = true;
};

std::vector<Row> g_rows;

std::string fmt(double v, int precision = 0) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

void print_table() {
  std::printf(
      "\n| metric | ours | target | met | ejabberd 23.01* | Prosody 0.12* | ours/ejabberd | ours/Prosody "
      "|\n");
  std::printf("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |\n");
  for (const auto& r : g_rows) {
    const int prec = r.ours < 10 ? 2 : 0;
    const std::string ratio_e = std::isnan(r.ejabberd) ? "-" : fmt(r.ours / r.ejabberd, 2);
    const std::string ratio_p = std::isnan(r.prosody) ? "-" : fmt(r.ours / r.prosody, 2);
    std::printf(
        "| %s | %s %s | %s | %s | %s | %s | %s | %s |\n", r.metric.c_str(), fmt(r.ours, prec).c_str(),
        r.unit.c_str(), r.target.empty() ? "-" : r.target.c_str(),
        r.has_target ? (r.met ? "yes" : "NO") : "-",
        r.ejabberd_text.empty() ? fmt(r.ejabberd, r.ejabberd < 10 ? 2 : 0).c_str() : r.ejabberd_text.c_str(),
        fmt(r.prosody, r.prosody < 10 ? 2 : 0).c_str(), ratio_e.c_str(), ratio_p.c_str());
  }
  std::printf(
      "\n* ejabberd and Prosody figures are from the issue, measured on this machine by the issue's author\n"
      "  (100 pairs, 100-byte bodies, 64 in flight per pair, TLS); they were not run by this program.\n"
      "  Ratios: ours divided by theirs (for latency, memory and drain time lower is better).\n");
}

struct Options {
  std::string server;
  std::string scenarios = "abcde";
  bool quick = false;
  std::size_t pairs = 100;
  std::size_t in_flight = 64;
  double duration = 10;
  double rate = 2000;
  double latency_duration = 10;
  std::size_t idle = 10'000;
  std::size_t queued = 10'000;
  double connect_duration = 5;
  std::size_t connectors = 16;
  unsigned threads = 2;
};

struct Pair {
  std::shared_ptr<Conn> sender;
  std::shared_ptr<Conn> receiver;
  std::int64_t recipient_account = 0;
  std::uint32_t recipient_device = 0;
  // Sender strand only.
  std::size_t in_flight = 0;
  std::uint64_t next_request = 1;
};

class Bench {
 public:
  Bench(const Options& o, ServerProcess& server, asio::io_context& io, asio::ssl::context& tls)
      : o_(o), server_(server), io_(io), tls_(tls) {}

  void run() {
    const auto has = [&](char c) { return o_.scenarios.find(c) != std::string::npos; };
    // Idle connections first, right after their set-up: the server's heap has seen the least load
    // then, so the RSS growth is not absorbed by memory freed by earlier scenarios.
    if (has('c')) scenario_idle();
    if (has('e')) scenario_connect();
    if (has('d')) scenario_drain();
    if (has('a') || has('b')) setup_pairs();
    if (has('a')) scenario_throughput();
    if (has('b')) scenario_latency();
    if (!pairs_.empty()) {
      std::vector<std::shared_ptr<Conn>> all;
      for (auto& p : pairs_) {
        all.push_back(p.sender);
        all.push_back(p.receiver);
      }
      pairs_.clear();
      close_all(all);
    }
  }

 private:
  void note(const char* fmt_text, auto... args) {
    std::fprintf(stderr, fmt_text, args...);
    std::fputc('\n', stderr);
  }

  // (c)
  void scenario_idle() {
    const std::size_t per_account = 500;
    const std::size_t accounts = (o_.idle + per_account - 1) / per_account;
    auto t = Clock::now();
    idle_devices_ = make_devices(tls_, server_.port, "idle", accounts, (o_.idle + accounts - 1) / accounts);
    idle_devices_.resize(o_.idle);
    note("c: %zu devices on %zu accounts set up in %.1f s", idle_devices_.size(), accounts, seconds_since(t));
    sleep_ms(1000);
    const std::int64_t before = server_.rss();
    t = Clock::now();
    auto conns = open_all(io_, tls_, server_.port, idle_devices_, 64);
    const double open_s = seconds_since(t);
    sleep_ms(2000);  // let the server settle (buffers of the handshakes freed)
    const std::int64_t after = server_.rss();
    const std::string metrics = admin_get(server_.admin_port, "/metrics");
    const double ws_open = metric_value(metrics, "postern_ws_connections");
    const std::size_t open_count = static_cast<std::size_t>(
        std::count_if(conns.begin(), conns.end(), [](auto& c) { return c && c->got_queue_empty.load(); }));
    const double per_conn =
        static_cast<double>(after - before) / static_cast<double>(std::max<std::size_t>(open_count, 1));
    note(
        "c: %zu/%zu connections open in %.1f s (server ws_connections %.0f); server RSS %.1f MiB -> %.1f MiB",
        open_count, conns.size(), open_s, ws_open, static_cast<double>(before) / 1048576.0,
        static_cast<double>(after) / 1048576.0);
    g_rows.push_back(
        Row{"(c) server memory per idle authenticated WebSocket, " + std::to_string(open_count) + " open",
            per_conn / 1024.0, "KiB", "<= 20 KB (19.5 KiB)", per_conn <= 20'000.0 && open_count == o_.idle,
            true, 116, "116-612", 48, false});
    close_all(conns);
    wait_until(
        [&] {
          return metric_value(admin_get(server_.admin_port, "/metrics"), "postern_ws_connections") <= 0;
        },
        30);
  }

  // (e)
  void scenario_connect() {
    std::vector<Device> pool = idle_devices_;
    if (pool.empty()) pool = make_devices(tls_, server_.port, "connect", 4, 64);
    std::atomic<std::size_t> next{0};
    std::atomic<std::uint64_t> completed{0};
    std::atomic<bool> running{true};
    std::mutex lat_mutex;
    std::vector<double> latencies;
    std::atomic<std::size_t> active{0};
    // One connector: connect, wait for queue_empty, close, again.
    std::function<void()> connect_one = [&] {
      if (!running) {
        --active;
        return;
      }
      const auto& device = pool[next.fetch_add(1) % pool.size()];
      auto c = std::make_shared<Conn>(io_, tls_);
      const auto started = Clock::now();
      c->on_frame = [&, started](Conn& conn, const pb::ServerFrame& f) {
        if (!f.has_queue_empty()) return;
        {
          std::lock_guard lock(lat_mutex);
          latencies.push_back(seconds_since(started) * 1000.0);
        }
        completed.fetch_add(1);
        conn.abort();
        connect_one();
      };
      c->start(server_.port, device.token, [&](bool ok) {
        if (!ok) connect_one();
      });
    };
    const auto t0 = Clock::now();
    active = o_.connectors;
    for (std::size_t k = 0; k < o_.connectors; ++k) asio::post(io_, connect_one);
    sleep_ms(static_cast<int>(o_.connect_duration * 1000));
    const auto n = completed.load();
    const double elapsed = seconds_since(t0);
    running = false;
    wait_until([&] { return active.load() == 0; }, 30);
    const double rate = static_cast<double>(n) / elapsed;
    std::vector<double> lat;
    {
      std::lock_guard lock(lat_mutex);
      lat = latencies;
    }
    note("e: %llu connects in %.1f s by %zu connectors; connect-to-queue_empty p50 %.1f ms p99 %.1f ms",
         static_cast<unsigned long long>(n), elapsed, o_.connectors, percentile(lat, 0.5),
         percentile(lat, 0.99));
    g_rows.push_back(Row{"(e) connect + TLS + authenticated WebSocket upgrade to first frame, " +
                             std::to_string(o_.connectors) + " connectors",
                         rate, "/s", ">= 1000/s", rate >= 1000, true, 87, "", 117, true});
    wait_until(
        [&] {
          return metric_value(admin_get(server_.admin_port, "/metrics"), "postern_ws_connections") <= 0;
        },
        30);
  }

  // (d)
  void scenario_drain() {
    auto devices = make_devices(tls_, server_.port, "drain", 2, 1);
    const Device& sender_dev = devices[0];
    const Device& offline = devices[1];
    std::vector<Device> one{sender_dev};
    auto conns = open_all(io_, tls_, server_.port, one, 1);
    auto sender = conns.at(0);
    // Queue o_.queued envelopes, at most 64 sends unanswered.
    std::atomic<std::uint64_t> answered{0};
    std::atomic<std::uint64_t> ok{0};
    std::uint64_t sent = 0;
    const std::uint64_t total = o_.queued;
    std::function<void()> top_up = [&] {
      while (sent < total && sent - answered.load() < 64) {
        ++sent;
        sender->enqueue(send_frame(sent, offline.account_id, offline.device_id, 0xD, now_ns()));
      }
    };
    std::promise<void> attached;
    asio::post(sender->strand(), [&] {
      sender->on_frame = [&](Conn&, const pb::ServerFrame& f) {
        if (!f.has_send_response()) return;
        if (f.send_response().status() == 200) ok.fetch_add(1);
        answered.fetch_add(1);
        top_up();
      };
      top_up();
      attached.set_value();
    });
    attached.get_future().wait();
    auto t = Clock::now();
    wait_until([&] { return answered.load() >= total; }, 600);
    note("d: %llu of %llu envelopes queued (200) in %.1f s", static_cast<unsigned long long>(ok.load()),
         static_cast<unsigned long long>(total), seconds_since(t));
    sleep_ms(500);
    // The offline device connects.
    auto receiver = std::make_shared<Conn>(io_, tls_);
    std::atomic<double> upgrade_s{0};
    std::atomic<double> drained_s{0};
    std::atomic<std::uint64_t> received{0};
    const auto t0 = Clock::now();
    receiver->on_frame = [&](Conn& c, const pb::ServerFrame& f) {
      if (f.has_queue_empty()) {
        drained_s = seconds_since(t0);
        received = c.envelopes;
      }
    };
    receiver->start(server_.port, offline.token, [&](bool) { upgrade_s = seconds_since(t0); });
    wait_until([&] { return receiver->got_queue_empty.load() || receiver->closed.load(); }, 120);
    const double d = drained_s.load();
    note("d: connected (TCP+TLS+upgrade) in %.1f ms; %llu envelopes and queue_empty after %.1f ms",
         upgrade_s.load() * 1e3, static_cast<unsigned long long>(received.load()), d * 1e3);
    g_rows.push_back(Row{"(d) drain " + std::to_string(total) + " queued envelopes, connect to queue_empty",
                         d, "s", "< 0.5 s", d < 0.5 && received.load() == total && ok.load() == total, true,
                         1.76, "", 3.9, false});
    sleep_ms(200);  // the last acknowledgements
    std::vector<std::shared_ptr<Conn>> all{sender, receiver};
    close_all(all);
  }

  void setup_pairs() {
    auto t = Clock::now();
    // Account i*2 sends to account i*2+1 (one device each: a send must address all devices).
    auto devices = make_devices(tls_, server_.port, "pair", o_.pairs * 2, 1);
    auto conns = open_all(io_, tls_, server_.port, devices, 64);
    for (std::size_t i = 0; i < o_.pairs; ++i) {
      Pair p;
      p.sender = conns[2 * i];
      p.receiver = conns[2 * i + 1];
      p.recipient_account = devices[2 * i + 1].account_id;
      p.recipient_device = devices[2 * i + 1].device_id;
      pairs_.push_back(std::move(p));
    }
    note("pairs: %zu pairs set up and connected in %.1f s", o_.pairs, seconds_since(t));
  }

  // Replaces the handlers of every pair (on their strands) and waits until that is done.
  void set_handlers(const std::function<void(std::size_t)>& install) {
    for (std::size_t i = 0; i < pairs_.size(); ++i) {
      std::promise<void> a;
      std::promise<void> b;
      asio::post(pairs_[i].sender->strand(), [&, i] {
        install(i);
        a.set_value();
      });
      a.get_future().wait();
      asio::post(pairs_[i].receiver->strand(), [&b] { b.set_value(); });
      b.get_future().wait();
    }
  }

  // (a)
  void scenario_throughput() {
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<bool> running{true};
    const std::size_t window = o_.in_flight;
    // Sends until `window` envelopes of the pair are unreceived; sender strand only.
    auto top_up = [this, window, &running](std::size_t i) {
      Pair& p = pairs_[i];
      while (running && p.in_flight < window) {
        ++p.in_flight;
        p.sender->enqueue(
            send_frame(p.next_request++, p.recipient_account, p.recipient_device, 0xA0000 + i, now_ns()));
      }
    };
    for (std::size_t i = 0; i < pairs_.size(); ++i) {
      std::promise<void> done;
      asio::post(pairs_[i].receiver->strand(), [&, i] {
        pairs_[i].receiver->on_frame = [&, i](Conn&, const pb::ServerFrame& f) {
          if (!f.has_envelope()) return;
          delivered.fetch_add(1, std::memory_order_relaxed);
          asio::post(pairs_[i].sender->strand(), [&, i] {
            --pairs_[i].in_flight;
            top_up(i);
          });
        };
        done.set_value();
      });
      done.get_future().wait();
    }
    set_handlers([&](std::size_t i) {
      pairs_[i].sender->on_frame = nullptr;
      top_up(i);
    });
    sleep_ms(1000);  // warm-up
    const auto c0 = delivered.load();
    const double cpu0 = server_.cpu_seconds();
    const double self0 = own_cpu_seconds();
    const std::string m0 = admin_get(server_.admin_port, "/metrics");
    const auto t0 = Clock::now();
    sleep_ms(static_cast<int>(o_.duration * 1000));
    const auto c1 = delivered.load();
    const double elapsed = seconds_since(t0);
    const double cpu = server_.cpu_seconds() - cpu0;
    const double self_cpu = own_cpu_seconds() - self0;
    const std::string m1 = admin_get(server_.admin_port, "/metrics");
    const auto delta = [&](const char* name) { return metric_value(m1, name) - metric_value(m0, name); };
    const double rounds = delta("postern_group_commit_rounds_total");
    note("a: group commit %.0f rounds/s, %.1f envelopes per round; load generator CPU %.0f%% of one core",
         rounds / elapsed, delta("postern_group_commit_envelopes_total") / std::max(rounds, 1.0),
         100.0 * self_cpu / elapsed);
    running = false;
    // Let what is in flight arrive, then detach the handlers.
    wait_until(
        [&] {
          std::uint64_t left = 0;
          for (auto& p : pairs_) {
            std::promise<std::size_t> n;
            asio::post(p.sender->strand(), [&] { n.set_value(p.in_flight); });
            left += n.get_future().get();
          }
          return left == 0;
        },
        30);
    for (auto& p : pairs_) {
      std::promise<void> done;
      asio::post(p.receiver->strand(), [&] {
        p.receiver->on_frame = nullptr;
        done.set_value();
      });
      done.get_future().wait();
    }
    const double rate = static_cast<double>(c1 - c0) / elapsed;
    note(
        "a: %llu envelopes delivered in %.1f s by %zu pairs (%zu in flight each); server CPU %.0f%% of one "
        "core; "
        "%llu frame errors",
        static_cast<unsigned long long>(c1 - c0), elapsed, pairs_.size(), window, 100.0 * cpu / elapsed,
        static_cast<unsigned long long>(g_frame_errors.load()));
    g_rows.push_back(Row{"(a) delivered envelopes/s, " + std::to_string(pairs_.size()) + " pairs, " +
                             std::to_string(window) + " in flight each, 100 B",
                         rate, "/s", ">= 40000/s", rate >= 40'000, true, 13'700, "", 11'300, true});
  }

  // (b)
  void scenario_latency() {
    std::mutex mutex;
    std::vector<double> latencies;  // ms
    std::atomic<std::uint64_t> received{0};
    std::atomic<std::uint64_t> sent{0};
    const double warmup = std::min(1.0, o_.latency_duration / 4);
    const auto start = Clock::now() + std::chrono::milliseconds(100);
    const std::int64_t record_from =
        std::chrono::duration_cast<std::chrono::nanoseconds>(
            (start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup)))
                .time_since_epoch())
            .count();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(warmup + o_.latency_duration));
    for (auto& p : pairs_) {
      std::promise<void> done;
      asio::post(p.receiver->strand(), [&] {
        p.receiver->on_frame = [&](Conn&, const pb::ServerFrame& f) {
          if (!f.has_envelope()) return;
          received.fetch_add(1, std::memory_order_relaxed);
          const std::int64_t stamp = stamp_of(f.envelope());
          if (stamp < record_from) return;
          const double ms = static_cast<double>(now_ns() - stamp) / 1e6;
          std::lock_guard lock(mutex);
          latencies.push_back(ms);
        };
        done.set_value();
      });
      done.get_future().wait();
    }
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(pairs_.size()) / o_.rate));
    std::atomic<std::size_t> finished{0};
    for (std::size_t i = 0; i < pairs_.size(); ++i) {
      Pair& p = pairs_[i];
      // Senders are spread evenly over one interval.
      const auto first = start + interval * static_cast<long>(i) / static_cast<long>(pairs_.size());
      asio::co_spawn(
          p.sender->strand(),
          [&p, &sent, &finished, first, interval, end, i]() -> awaitable<void> {
            asio::steady_timer timer(co_await asio::this_coro::executor);
            for (auto at = first; at < end; at += interval) {
              timer.expires_at(at);
              co_await timer.async_wait(asio::as_tuple(use_awaitable));
              const std::int64_t stamp =
                  std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
              p.sender->enqueue(
                  send_frame(p.next_request++, p.recipient_account, p.recipient_device, 0xB0000 + i, stamp));
              sent.fetch_add(1, std::memory_order_relaxed);
            }
            ++finished;
          },
          asio::detached);
    }
    wait_until([&] { return finished.load() == pairs_.size(); }, o_.latency_duration + 60);
    wait_until([&] { return received.load() >= sent.load(); }, 10);
    std::vector<double> lat;
    {
      std::lock_guard lock(mutex);
      lat = latencies;
    }
    const double p50 = percentile(lat, 0.5);
    const double p99 = percentile(lat, 0.99);
    const double p999 = percentile(lat, 0.999);
    const double max = lat.empty() ? NAN : *std::max_element(lat.begin(), lat.end());
    note(
        "b: offered %.0f/s over %zu pairs for %.0f s: %zu samples, sent %llu received %llu; p50 %.3f p99 "
        "%.3f "
        "p99.9 %.3f max %.3f ms",
        o_.rate, pairs_.size(), o_.latency_duration, lat.size(), static_cast<unsigned long long>(sent.load()),
        static_cast<unsigned long long>(received.load()), p50, p99, p999, max);
    const std::string at = " at " + fmt(o_.rate) + "/s offered";
    g_rows.push_back(Row{"(b) latency p50" + at, p50, "ms", "", false, false, NAN, "", NAN, false});
    g_rows.push_back(Row{"(b) latency p99" + at, p99, "ms", "<= 3 ms at 2000/s", p99 <= 3.0, o_.rate >= 2000,
                         3.4, "", 13.3, false});
    g_rows.push_back(Row{"(b) latency p99.9" + at, p999, "ms", "", false, false, NAN, "", NAN, false});
    for (auto& p : pairs_) {
      std::promise<void> done;
      asio::post(p.receiver->strand(), [&] {
        p.receiver->on_frame = nullptr;
        done.set_value();
      });
      done.get_future().wait();
    }
  }

  const Options& o_;
  ServerProcess& server_;
  asio::io_context& io_;
  asio::ssl::context& tls_;
  std::vector<Device> idle_devices_;
  std::vector<Pair> pairs_;
};

std::string server_config(const Options& o) {
  const std::size_t conns = std::max<std::size_t>(o.idle * 2 + 1000, 30'000);
  std::string text =
      "[server]\nio_threads = 2\nworker_threads = 2\n"
      "[pow]\ndifficulty = 8\n"
      "[password]\nopslimit = 1\nmemlimit = 8192\n"
      // The load generator speaks the API straight over TLS (the front's camouflage and inner
      // channel are measured by postern-clientbench and postern-relaybench).
      "[front]\nopen_api = true\n"
      "[http]\nmax_connections = " +
      std::to_string(conns) +
      "\n"
      "[rate_limits]\n";
  for (const char* key : {"registration_per_address", "challenges_per_address", "login_per_account",
                          "login_per_address", "sends_per_account"}) {
    text += std::string(key) + " = { capacity = 1000000000, refill_per_second = 1000000000 }\n";
  }
  return text;
}

void raise_nofile() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int run(int argc, char** argv) {
  Options o;
  CLI::App app{"postern-loadbench: load generator for postern-server on loopback"};
  app.add_option("--server", o.server,
                 "path of postern-server (default: BUILD/apps/postern-server/postern-server)");
  app.add_option("--scenarios", o.scenarios, "which of a b c d e to run, e.g. ab")->capture_default_str();
  app.add_flag("--quick", o.quick, "small counts for a CI smoke run (< 60 s)");
  app.add_option("--pairs", o.pairs, "(a, b) sender/receiver pairs")->capture_default_str();
  app.add_option("--in-flight", o.in_flight, "(a) envelopes in flight per pair")->capture_default_str();
  app.add_option("--duration", o.duration, "(a) seconds measured")->capture_default_str();
  app.add_option("--rate", o.rate, "(b) offered envelopes per second, all pairs together")
      ->capture_default_str();
  app.add_option("--latency-duration", o.latency_duration, "(b) seconds measured")->capture_default_str();
  app.add_option("--idle", o.idle, "(c) idle WebSocket connections")->capture_default_str();
  app.add_option("--queued", o.queued, "(d) envelopes queued for the offline device")->capture_default_str();
  app.add_option("--connect-duration", o.connect_duration, "(e) seconds of connecting")
      ->capture_default_str();
  app.add_option("--connectors", o.connectors, "(e) concurrent connectors")->capture_default_str();
  app.add_option("--threads", o.threads, "io threads of the load generator")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    o.pairs = 10;
    o.duration = 3;
    o.rate = 500;
    o.latency_duration = 3;
    o.idle = 500;
    o.queued = 1000;
    o.connect_duration = 2;
    o.connectors = 8;
  }
  o.pairs = std::max<std::size_t>(o.pairs, 1);
  o.in_flight = std::max<std::size_t>(o.in_flight, 1);
  o.threads = std::max(o.threads, 1U);

  postern::crypto::SystemRng rng;
  const auto identity = postern::crypto::KeyPair::generate(rng);
  const auto serialized = identity.public_key.serialize();
  g_identity_hex = postern::to_hex(postern::ByteView(serialized.data(), serialized.size()));

  raise_nofile();  // before the fork: the server inherits it
  ServerProcess server;
  server.start(find_server(o.server), server_config(o));
  std::fprintf(stderr, "server pid %d on 127.0.0.1:%u (admin %u), data in %s\n", static_cast<int>(server.pid),
               server.port, server.admin_port, server.dir.c_str());

  // Loopback benchmark: the certificate is not checked (no pin needed here).
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_verify_mode(asio::ssl::verify_none);
  SSL_CTX_set_mode(tls.native_handle(), SSL_MODE_RELEASE_BUFFERS);

  asio::io_context io(static_cast<int>(o.threads));
  auto guard = asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < o.threads; ++i) threads.emplace_back([&io] { io.run(); });
  int rc = 0;
  try {
    Bench bench(o, server, io, tls);
    bench.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postern-loadbench: %s\n", e.what());
    rc = 1;
  }
  guard.reset();
  io.stop();
  for (auto& t : threads) t.join();
  if (g_connect_failures.load() != 0 || g_frame_errors.load() != 0) {
    std::fprintf(stderr, "connect failures %llu, frame errors %llu\n",
                 static_cast<unsigned long long>(g_connect_failures.load()),
                 static_cast<unsigned long long>(g_frame_errors.load()));
  }
  print_table();
  server.stop();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postern-loadbench: %s\n", e.what());
    return 1;
  }
}
