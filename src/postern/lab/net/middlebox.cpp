// See middlebox.h. One io_context thread runs everything, so the Censor and the flows need no
// locks. A flow is two coroutines sharing one Flow: client_side (the first flight, the verdict,
// client-to-server bytes) and server_side (the connect, server-to-client bytes). Each socket has
// one writer: the server socket is written by client_side only, the client socket by server_side
// only. The flow is logged when both have ended.
#include "postern/lab/net/middlebox.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "postern/lab/errors.h"
#include "postern/lab/net/prober.h"
#include "postern/lab/tls_in_tls.h"

namespace postern::lab::net {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

// linux/netfilter_ipv4.h's SO_ORIGINAL_DST (that header does not mix well with netinet/in.h).
constexpr int kSoOriginalDst = 80;
constexpr std::size_t kChunk = 16 * 1024;

struct Flow : std::enable_shared_from_this<Flow> {
  Flow(CensorRuntime& runtime, tcp::socket c, MiddleboxLimits l)
      : rt(runtime),
        client(std::move(c)),
        server(client.get_executor()),
        connected_signal(client.get_executor()),
        connect_timer(client.get_executor()),
        silence_timer(client.get_executor()),
        hold_timer(client.get_executor()),
        limits(l),
        detector(runtime.settings().tls_in_tls) {
    connected_signal.expires_at(asio::steady_timer::time_point::max());
  }

  CensorRuntime& rt;
  tcp::socket client;
  tcp::socket server;
  asio::steady_timer connected_signal;  // cancelled when the connect to the server has finished
  asio::steady_timer connect_timer;
  asio::steady_timer silence_timer;
  asio::steady_timer hold_timer;  // a black-holed flow's end
  MiddleboxLimits limits;
  FlowKey key;
  tcp::endpoint destination;
  Clock::time_point started;

  enum class State : std::uint8_t { deciding, pass, blackhole, closed } state = State::deciding;
  bool connect_done = false;
  bool connected = false;
  bool silence_fired = false;
  std::uint64_t silence_gen = 0;
  std::uint64_t up = 0, down = 0, dropped = 0;
  TlsInTlsDetector detector;
  bool detecting = false;
  std::string verdict = "pass", module, detail;
  int running = 0;
  bool logged = false;
  std::uint64_t id = 0;
  std::shared_ptr<Middlebox::FlowTable> table;
};
using FlowPtr = std::shared_ptr<Flow>;

void close_socket(tcp::socket& s, bool reset) {
  if (!s.is_open()) return;
  error_code ignored;
  if (reset) s.set_option(asio::socket_base::linger(true, 0), ignored);
  s.close(ignored);
}

// Resets both sides. SO_LINGER {1, 0} makes the kernel send one RST on each socket; a real GFW
// injects several (rst_count) with guessed sequence numbers, which a userspace box cannot do.
void reset_both(Flow& f) {
  f.state = Flow::State::closed;
  close_socket(f.client, true);
  close_socket(f.server, true);
  f.hold_timer.cancel();
  f.connected_signal.cancel();
}

void close_both(Flow& f) {
  f.state = Flow::State::closed;
  close_socket(f.client, false);
  close_socket(f.server, false);
  f.hold_timer.cancel();
  f.connected_signal.cancel();
}

void act(const FlowPtr& f, const Decision& d) {
  if (f->state == Flow::State::closed) return;
  if (!d.module.empty()) {
    f->module = d.module;
    f->detail = d.detail;
  }
  switch (d.verdict) {
    case Verdict::rst:
      f->verdict = "rst";
      reset_both(*f);
      break;
    case Verdict::blackhole:
      f->verdict = "blackhole";
      f->state = Flow::State::blackhole;
      f->detecting = false;
      f->hold_timer.expires_after(f->limits.blackhole_hold);
      f->hold_timer.async_wait([f](const error_code& ec) {
        if (!ec) close_both(*f);
      });
      break;
    case Verdict::pass:
    case Verdict::need_more:  // the first flight ended before the Censor could decide: it passes
      f->state = Flow::State::pass;
      break;
  }
}

void log_flow(Flow& f, const char* note);

void finish(const FlowPtr& f) {
  if (--f->running > 0) return;
  close_socket(f->client, false);
  close_socket(f->server, false);
  f->hold_timer.cancel();
  log_flow(*f, "");
}

}  // namespace

struct Middlebox::FlowTable {
  std::map<std::uint64_t, std::weak_ptr<Flow>> live;
  std::uint64_t next = 0;
};

namespace {

void log_flow(Flow& fl, const char* note) {
  if (fl.logged) return;
  fl.logged = true;
  if (fl.table) fl.table->live.erase(fl.id);
  Flow* f = &fl;
  const auto now = Clock::now();
  Event e;
  e.t = f->rt.elapsed(now);
  e.module = "flow";
  e.action = f->verdict;
  e.client = f->key.client;
  e.server = f->key.server;
  e.port = f->key.port;
  e.detail = "up=" + std::to_string(f->up) + " down=" + std::to_string(f->down) +
             " dropped=" + std::to_string(f->dropped) + " ms=" +
             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - f->started).count());
  if (!f->module.empty()) e.detail += " by=" + f->module;
  if (!f->detail.empty()) e.detail += " " + f->detail;
  if (*note != '\0') e.detail += std::string(" ") + note;
  f->rt.write_event(e);
}

void count_bytes(const FlowPtr& f, std::size_t n) {
  f->rt.censor().on_bytes(f->key, n, Clock::now());
  f->rt.pump();
}

void feed_detector(const FlowPtr& f, Direction d, ByteView bytes) {
  if (!f->detecting || f->state != Flow::State::pass) return;
  f->detector.feed(d, bytes);
  if (f->detector.suspicious()) {
    f->detecting = false;
    const Decision decision = f->rt.censor().on_tls_in_tls(f->key, f->detector.describe(), Clock::now());
    f->rt.pump();
    act(f, decision);
  } else if (f->detector.decided()) {
    f->detecting = false;
    // The sizes it judged, in the flow's closing event: how a system passed the heuristic.
    f->detail += (f->detail.empty() ? "" : " ") + std::string("bursts=") + f->detector.describe();
  }
}

// One read from the client that gives up after `silence`; the third value says it did.
awaitable<std::tuple<error_code, std::size_t, bool>> read_within(FlowPtr f, asio::mutable_buffer b,
                                                                 std::chrono::milliseconds silence) {
  const std::uint64_t gen = ++f->silence_gen;
  f->silence_fired = false;
  f->silence_timer.expires_after(silence);
  f->silence_timer.async_wait([f, gen](const error_code& ec) {
    if (ec || f->silence_gen != gen) return;
    f->silence_fired = true;
    error_code ignored;
    f->client.cancel(ignored);
  });
  auto [ec, n] = co_await f->client.async_read_some(b, asio::as_tuple(use_awaitable));
  const bool timed_out = f->silence_fired && ec == asio::error::operation_aborted;
  ++f->silence_gen;
  f->silence_timer.cancel();
  co_return std::make_tuple(ec, n, timed_out);
}

awaitable<bool> write_server(FlowPtr f, ByteView bytes) {
  auto [ec, n] = co_await asio::async_write(f->server, asio::buffer(bytes.data(), bytes.size()),
                                            asio::as_tuple(use_awaitable));
  if (ec) co_return false;
  f->up += n;
  co_return true;
}

awaitable<void> client_side(FlowPtr f) {
  Bytes first;
  std::vector<std::uint8_t> buf(kChunk);
  bool client_done = false;
  if (f->state == Flow::State::deciding) {
    Decision decision;
    decision.verdict = Verdict::need_more;
    while (first.size() < f->limits.first_flight_max) {
      const std::size_t room = std::min(buf.size(), f->limits.first_flight_max - first.size());
      auto [rec, rn, silent] = co_await read_within(f, asio::buffer(buf.data(), room), f->limits.first_flight_silence);
      if (f->state == Flow::State::closed) break;
      if (silent) break;
      if (rec || rn == 0) {
        client_done = true;
        break;
      }
      first.insert(first.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(rn));
      decision = f->rt.censor().on_first_flight(f->key, first, Clock::now());
      f->rt.pump();
      if (decision.verdict != Verdict::need_more) break;
    }
    if (f->state != Flow::State::closed) act(f, decision);
    if (f->state == Flow::State::blackhole) f->dropped += first.size();
  }
  if (f->state == Flow::State::pass) {
    if (!f->connect_done) {
      auto [wec] = co_await f->connected_signal.async_wait(asio::as_tuple(use_awaitable));
      (void)wec;
    }
    if (f->state == Flow::State::pass && !f->connected) {
      f->verdict = "connect-failed";
      reset_both(*f);
    }
  }
  if (f->state == Flow::State::pass && !first.empty()) {
    feed_detector(f, Direction::client_to_server, first);
    if (f->state == Flow::State::pass) {
      const bool wrote = co_await write_server(f, first);
      if (!wrote) close_both(*f);
      else count_bytes(f, first.size());
    }
  }
  while (!client_done && f->state != Flow::State::closed) {
    auto [ec, n] = co_await f->client.async_read_some(asio::buffer(buf), asio::as_tuple(use_awaitable));
    if (f->state == Flow::State::closed) break;
    if (ec || n == 0) {
      client_done = true;
      if (ec && ec != asio::error::eof) close_both(*f);
      break;
    }
    const ByteView got(buf.data(), n);
    if (f->state == Flow::State::blackhole) {
      f->dropped += n;  // read and discarded: the server never sees them
      continue;
    }
    feed_detector(f, Direction::client_to_server, got);
    if (f->state != Flow::State::pass) {
      if (f->state == Flow::State::blackhole) f->dropped += n;
      continue;
    }
    const bool wrote = co_await write_server(f, got);
    if (!wrote) {
      close_both(*f);
      break;
    }
    count_bytes(f, n);
  }
  if (f->state == Flow::State::pass) {
    error_code ignored;
    f->server.shutdown(tcp::socket::shutdown_send, ignored);  // the client's FIN goes on
  } else if (f->state == Flow::State::blackhole) {
    close_both(*f);  // the client has gone: so does the held connection
  }
  finish(f);
}

awaitable<void> server_side(FlowPtr f) {
  f->connect_timer.expires_after(f->limits.connect_timeout);
  f->connect_timer.async_wait([f](const error_code& ec) {
    if (ec || f->connect_done) return;
    error_code ignored;
    f->server.close(ignored);
  });
  auto [cec] = co_await f->server.async_connect(f->destination, asio::as_tuple(use_awaitable));
  f->connect_timer.cancel();
  f->connect_done = true;
  f->connected = !cec && f->server.is_open();
  f->connected_signal.cancel();
  if (!f->connected) {
    if (f->state == Flow::State::pass || f->state == Flow::State::deciding) {
      f->verdict = "connect-failed";
      reset_both(*f);
    }
    finish(f);
    co_return;
  }
  std::vector<std::uint8_t> buf(kChunk);
  while (f->state != Flow::State::closed) {
    auto [ec, n] = co_await f->server.async_read_some(asio::buffer(buf), asio::as_tuple(use_awaitable));
    if (f->state == Flow::State::closed) break;
    if (ec || n == 0) {
      if (ec == asio::error::eof || (!ec && n == 0)) {
        error_code ignored;
        f->client.shutdown(tcp::socket::shutdown_send, ignored);
      } else {
        reset_both(*f);  // the server reset: so does the client's side
      }
      break;
    }
    const ByteView got(buf.data(), n);
    feed_detector(f, Direction::server_to_client, got);
    if (f->state == Flow::State::closed) break;
    auto [wec, wn] = co_await asio::async_write(f->client, asio::buffer(got.data(), got.size()),
                                                asio::as_tuple(use_awaitable));
    if (wec) {
      close_both(*f);
      break;
    }
    f->down += wn;
    count_bytes(f, wn);
  }
  finish(f);
}

}  // namespace

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::need_more: return "need-more";
    case Verdict::rst: return "rst";
    case Verdict::blackhole: return "blackhole";
  }
  return "?";
}

std::optional<tcp::endpoint> original_destination(tcp::socket& s) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (::getsockopt(s.native_handle(), SOL_IP, kSoOriginalDst, &addr, &len) != 0 || addr.sin_family != AF_INET) {
    return std::nullopt;
  }
  const asio::ip::address_v4 a(ntohl(addr.sin_addr.s_addr));
  return tcp::endpoint(a, ntohs(addr.sin_port));
}

// ---- CensorRuntime ----

CensorRuntime::CensorRuntime(asio::io_context& io, CensorSettings settings, RuntimeRules* firewall, LogFn log)
    : io_(io),
      start_(Clock::now()),
      censor_(settings, start_),
      firewall_(firewall),
      log_(std::move(log)),
      rng_(settings.seed ^ 0x9e3779b97f4a7c15ull) {}

CensorRuntime::~CensorRuntime() {
  // The firewall thread's queued work refers to this object: skipped, and the run in progress
  // waited for, before the members go.
  stop();
}

Result<std::unique_ptr<CensorRuntime>> CensorRuntime::create(asio::io_context& io, CensorSettings settings,
                                                             RuntimeRules* firewall, const std::string& events_path,
                                                             LogFn log) {
  std::unique_ptr<CensorRuntime> rt(new CensorRuntime(io, std::move(settings), firewall, std::move(log)));
  if (!events_path.empty()) {
    rt->events_.open(events_path, std::ios::out | std::ios::app);
    if (!rt->events_) return Errc::io_error;
  }
  return rt;
}

double CensorRuntime::elapsed(Clock::time_point now) const {
  return std::chrono::duration<double>(now - start_).count();
}

void CensorRuntime::write_event(const Event& e) {
  if (!events_.is_open()) return;
  events_ << to_json_line(e) << '\n';
  events_.flush();
}

void CensorRuntime::stop() {
  stopped_ = true;
  // join() waits until the queue is empty: work that starts from now on sees stopped_ and does
  // nothing (Firewall::remove_all follows and takes every rule away).
  firewall_thread_.join();
}

void CensorRuntime::submit(RuleOp op, FirewallAction a) {
  // The work guard keeps the io_context running until the outcome is back on it.
  asio::post(firewall_queue_, [this, op, a = std::move(a), work = asio::make_work_guard(io_)]() mutable {
    if (stopped_) return;
    const Status st = op == RuleOp::add ? firewall_->add(a) : firewall_->remove(a);
    std::optional<std::string> error;
    // last_error() describes a failed iptables run only (an earlier one's text would mislead).
    if (!st) error = st.error() == Errc::failed ? firewall_->last_error() : st.error().message();
    asio::post(io_, [this, op, a = std::move(a), error = std::move(error)]() mutable {
      settled(op, std::move(a), error);
    });
  });
}

void CensorRuntime::settled(RuleOp op, FirewallAction a, const std::optional<std::string>& error) {
  if (error) {
    log(op == RuleOp::add ? 3 : 2, "firewall: " + *error);
    return;
  }
  if (op == RuleOp::add) {
    log(1, std::string(a.kind == FirewallAction::Kind::drop_flow ? "drop flow " : "drop address ") + a.key.server +
               " for " + std::to_string(a.duration.count()) + " s (" + a.module + ")");
    // The duration counts from when the rule is in place.
    if (a.duration.count() > 0 && !stopped_) asio::co_spawn(io_, expire(std::move(a)), asio::detached);
    return;
  }
  Event e;
  e.t = elapsed(Clock::now());
  e.module = a.module;
  e.action = a.kind == FirewallAction::Kind::drop_flow ? "unblock-flow" : "unblock-address";
  e.client = a.key.client;
  e.server = a.key.server;
  e.port = a.key.port;
  write_event(e);
}

awaitable<void> CensorRuntime::expire(FirewallAction a) {
  asio::steady_timer timer(io_);
  timer.expires_after(a.duration);
  auto [ec] = co_await timer.async_wait(asio::as_tuple(use_awaitable));
  if (ec || stopped_) co_return;
  submit(RuleOp::remove, std::move(a));
}

void CensorRuntime::pump() {
  for (const auto& e : censor_.take_events()) write_event(e);
  for (auto& a : censor_.take_firewall_actions()) {
    if (firewall_ != nullptr && !stopped_) submit(RuleOp::add, std::move(a));
  }
  for (auto& r : censor_.take_probe_requests()) {
    if (prober_ != nullptr && !stopped_) prober_->submit(std::move(r));
  }
}

// ---- Middlebox ----

Middlebox::Middlebox(CensorRuntime& rt, std::uint16_t listen_port, MiddleboxLimits limits)
    : rt_(rt), port_(listen_port), limits_(limits), acceptor_(rt.io()), flows_(std::make_shared<FlowTable>()) {}

Status Middlebox::open() {
  error_code ec;
  const tcp::endpoint ep(asio::ip::address_v4::any(), port_);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    rt_.log(3, "middlebox: cannot listen on port " + std::to_string(port_) + ": " + ec.message());
    return Errc::io_error;
  }
  return {};
}

void Middlebox::start() { asio::co_spawn(rt_.io(), accept_loop(), asio::detached); }

void Middlebox::close() {
  error_code ignored;
  acceptor_.close(ignored);
  const auto live = flows_->live;  // log_flow erases from the table
  for (const auto& [id, weak] : live) {
    if (auto f = weak.lock()) log_flow(*f, "open-at-exit");
  }
}

awaitable<void> Middlebox::accept_loop() {
  while (acceptor_.is_open()) {
    auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
    if (ec) {
      rt_.log(2, "middlebox: accept: " + ec.message());
      asio::steady_timer pause(rt_.io());
      pause.expires_after(std::chrono::milliseconds(100));
      auto [pec] = co_await pause.async_wait(asio::as_tuple(use_awaitable));
      (void)pec;
      continue;
    }
    const auto dst = original_destination(sock);
    error_code rec;
    const auto peer = sock.remote_endpoint(rec);
    if (!dst || rec) {
      error_code ignored;
      sock.close(ignored);  // not redirected (someone dialled the port itself): nothing to relay
      continue;
    }
    auto f = std::make_shared<Flow>(rt_, std::move(sock), limits_);
    f->started = Clock::now();
    f->destination = *dst;
    f->key = FlowKey{peer.address().to_string(), dst->address().to_string(), dst->port()};
    f->detecting = rt_.settings().on.tls_in_tls;
    f->table = flows_;
    f->id = flows_->next++;
    flows_->live[f->id] = f;
    const Decision d = rt_.censor().on_connect(f->key, f->started);
    rt_.pump();
    if (d.verdict == Verdict::blackhole) {
      act(f, d);
    } else if (d.verdict == Verdict::rst) {
      f->running = 1;
      act(f, d);
      finish(f);
      continue;
    }
    f->running = f->state == Flow::State::blackhole ? 1 : 2;
    if (f->state != Flow::State::blackhole) asio::co_spawn(rt_.io(), server_side(f), asio::detached);
    asio::co_spawn(rt_.io(), client_side(f), asio::detached);
  }
}

}  // namespace postern::lab::net
