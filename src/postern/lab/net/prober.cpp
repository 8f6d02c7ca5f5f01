// See prober.h. A request's probes go to a small pool of workers (at most `parallel` sends in
// flight); each (probe, target) pair is one job, so the server and the baseline see the same
// bytes at about the same time. Everything runs on the runtime's io_context thread.
#include "postern/lab/net/prober.h"

#include <algorithm>
#include <memory>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "postern/lab/net/middlebox.h"

namespace postern::lab::net {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

// One probe's connection and its watchdog (the timer's handler may outlive the coroutine's step).
struct ProbeIo {
  explicit ProbeIo(const asio::any_io_executor& ex) : socket(ex), timer(ex) {}
  tcp::socket socket;
  asio::steady_timer timer;
  bool expired = false;
};

void arm(const std::shared_ptr<ProbeIo>& io, Clock::time_point until) {
  io->expired = false;
  io->timer.expires_at(until);
  io->timer.async_wait([io](const error_code& ec) {
    if (ec) return;
    io->expired = true;
    error_code ignored;
    io->socket.cancel(ignored);
  });
}

std::chrono::milliseconds since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t);
}

// Jobs of one request, shared by its workers.
struct Batch {
  explicit Batch(const asio::any_io_executor& ex) : done(ex) {}
  struct Job {
    std::size_t probe;
    bool baseline;
    std::optional<asio::ip::address_v4> source;
  };
  std::vector<Job> jobs;
  std::size_t next = 0;
  std::size_t workers = 0;
  std::vector<Probe> probes;
  std::vector<Reaction> server, baseline;
  tcp::endpoint server_ep, baseline_ep;
  std::chrono::milliseconds window{3000};
  std::size_t max_reaction = 0;
  asio::steady_timer done;  // cancelled by the last worker
};

awaitable<void> worker(std::shared_ptr<Batch> b) {
  auto ex = co_await asio::this_coro::executor;
  while (b->next < b->jobs.size()) {
    const Batch::Job job = b->jobs[b->next++];
    const tcp::endpoint target = job.baseline ? b->baseline_ep : b->server_ep;
    Bytes payload = b->probes[job.probe].payload;
    Reaction r = co_await send_probe(ex, job.source, target, std::move(payload), b->window, b->max_reaction);
    (job.baseline ? b->baseline : b->server)[job.probe] = std::move(r);
  }
  if (--b->workers == 0) b->done.cancel();
}

}  // namespace

awaitable<Reaction> send_probe(asio::any_io_executor ex, std::optional<asio::ip::address_v4> source,
                               tcp::endpoint target, Bytes payload, std::chrono::milliseconds window,
                               std::size_t max_reaction) {
  auto io = std::make_shared<ProbeIo>(ex);
  Reaction r;
  error_code ec;
  io->socket.open(tcp::v4(), ec);
  if (!ec && source) io->socket.bind(tcp::endpoint(*source, 0), ec);
  if (ec) {
    r.end = Reaction::End::connect_failed;
    co_return r;
  }
  const auto connect_start = Clock::now();
  arm(io, connect_start + window);
  auto [cec] = co_await io->socket.async_connect(target, asio::as_tuple(use_awaitable));
  io->timer.cancel();
  if (cec) {
    r.end = Reaction::End::connect_failed;
    r.after = since(connect_start);
    co_return r;
  }
  if (!payload.empty()) {
    arm(io, Clock::now() + window);
    auto [wec, wn] = co_await asio::async_write(io->socket, asio::buffer(payload), asio::as_tuple(use_awaitable));
    (void)wn;
    io->timer.cancel();
    if (wec) {
      r.end = wec == asio::error::connection_reset ? Reaction::End::rst : Reaction::End::fin;
      r.after = std::chrono::milliseconds(0);
      error_code ignored;
      io->socket.close(ignored);
      co_return r;
    }
  }
  const auto sent = Clock::now();
  arm(io, sent + window);
  std::vector<std::uint8_t> buf(4096);
  r.end = Reaction::End::open;
  for (;;) {
    auto [rec, rn] = co_await io->socket.async_read_some(asio::buffer(buf), asio::as_tuple(use_awaitable));
    if (!rec && rn > 0) {
      const std::size_t keep = std::min(rn, max_reaction - std::min(max_reaction, r.data.size()));
      r.data.insert(r.data.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(keep));
      continue;
    }
    if (rec == asio::error::operation_aborted && io->expired) {
      r.end = Reaction::End::open;
      r.after = window;
    } else if (rec == asio::error::connection_reset) {
      r.end = Reaction::End::rst;
      r.after = since(sent);
    } else {
      r.end = Reaction::End::fin;  // eof (or another error that ends the connection)
      r.after = since(sent);
    }
    break;
  }
  io->timer.cancel();
  error_code ignored;
  io->socket.set_option(asio::socket_base::linger(true, 0), ignored);  // do not leave TIME_WAITs behind
  io->socket.close(ignored);
  co_return r;
}

ProbeVerdict compare_reactions(const std::vector<Probe>& probes, const std::vector<Reaction>& server,
                               const std::vector<Reaction>& baseline) {
  const std::size_t n = std::min({probes.size(), server.size(), baseline.size()});
  for (std::size_t i = 0; i < n; ++i) {
    if (!same_reaction(server[i], baseline[i])) {
      return {true, probes[i].name + ": server=" + reaction_class(server[i]) +
                        " baseline=" + reaction_class(baseline[i])};
    }
  }
  return {false, std::to_string(n) + " probes alike"};
}

std::optional<asio::ip::address_v4> Prober::next_source() {
  if (config_.sources.empty()) return std::nullopt;
  return config_.sources[next_++ % config_.sources.size()];
}

void Prober::submit(ProbeRequest r) { asio::co_spawn(rt_.io(), run(std::move(r)), asio::detached); }

awaitable<void> Prober::run(ProbeRequest r) {
  auto ex = co_await asio::this_coro::executor;
  {
    asio::steady_timer wait(ex);
    wait.expires_at(r.not_before);
    auto [wec] = co_await wait.async_wait(asio::as_tuple(use_awaitable));
    (void)wec;
  }
  if (rt_.stopped()) co_return;
  error_code aec;
  const auto addr = asio::ip::make_address_v4(r.server, aec);
  if (aec) {
    rt_.log(2, "prober: not an IPv4 address: " + r.server);
    co_return;
  }
  auto b = std::make_shared<Batch>(ex);
  b->probes = replay_probes(r.first_flight, rt_.rng());
  auto more = random_probes(rt_.rng());
  b->probes.insert(b->probes.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  b->server.resize(b->probes.size());
  b->baseline.resize(b->probes.size());
  b->server_ep = tcp::endpoint(addr, r.port);
  b->baseline_ep = config_.baseline;
  b->window = rt_.settings().probe_window;
  b->max_reaction = config_.max_reaction;
  for (std::size_t i = 0; i < b->probes.size(); ++i) {
    const auto source = next_source();
    b->jobs.push_back({i, false, source});
    b->jobs.push_back({i, true, source});  // the same address probes the baseline
  }
  rt_.log(1, "probing " + r.server + ":" + std::to_string(r.port) + " with " + std::to_string(b->probes.size()) +
                 " probes (" + r.module + ")");
  b->workers = std::min(std::max<std::size_t>(config_.parallel, 1), b->jobs.size());
  b->done.expires_at(Clock::time_point::max());
  const std::size_t workers = b->workers;
  for (std::size_t i = 0; i < workers; ++i) asio::co_spawn(ex, worker(b), asio::detached);
  if (b->workers > 0) {
    auto [dec] = co_await b->done.async_wait(asio::as_tuple(use_awaitable));
    (void)dec;
  }
  if (rt_.stopped()) co_return;
  const ProbeVerdict v = compare_reactions(b->probes, b->server, b->baseline);
  rt_.censor().on_probe_result(r.server, r.port, v.differs, v.detail, Clock::now());
  rt_.pump();
}

}  // namespace postern::lab::net
