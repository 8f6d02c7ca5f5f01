// The censor's transparent middlebox (docs/censorship.md). The firewall (firewall.h) redirects
// every TCP connection arriving from the users' side to one listening port; SO_ORIGINAL_DST gives
// the server the client asked for. Each flow: the Censor (censor.h) is told of the connection, the
// middlebox connects to the server at once (as the SYN would have gone on, and server-first
// protocols get their banner), reads the client's first flight (up to 16 KiB, giving up after
// 3 s of silence), asks the Censor, and passes, resets or black-holes the flow. Passed flows feed
// a TLS-in-TLS detector with both directions until it decides. Each flow's end is logged as a
// "flow" event (bytes each way, duration, verdict), so the lab can tell which path carried bytes.
//
// CensorRuntime is what the middlebox, the DNS injector (dns.h) and the prober (prober.h) share:
// the one Censor (not thread-safe: everything runs on one io_context thread), the firewall, and
// the events file. pump() drains the Censor's queues after every decision: events to the file,
// firewall actions to iptables (each removed again when its duration ends), probe requests to
// the prober. iptables is a fork, exec and wait of tens of milliseconds, which would stall every
// relayed flow on the io thread: the rules are added and removed on a thread of their own, one
// at a time in the order asked (so a rule's removal never overtakes its addition), and each
// outcome comes back to the io thread to be logged.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include "postern/lab/censor.h"
#include "postern/lab/net/firewall.h"
#include "postern/util/result.h"

namespace postern::lab::net {

class Prober;

// Where the daemon's diagnostics go (level: 0 debug, 1 info, 2 warning, 3 error). Never given
// payload bytes.
using LogFn = std::function<void(int level, const std::string& line)>;

struct MiddleboxLimits {
  std::chrono::milliseconds first_flight_silence{3000};  // give up waiting for more of the first flight
  std::size_t first_flight_max = 16 * 1024;
  std::chrono::seconds blackhole_hold{300};               // a black-holed flow is kept this long at most
  std::chrono::seconds connect_timeout{10};               // to the original destination
};

class CensorRuntime {
 public:
  // `firewall` may be null (then run-time firewall actions are dropped); it must outlive the
  // runtime. `events_path` empty: events are dropped. Errc::io_error when the events file cannot
  // be opened.
  static Result<std::unique_ptr<CensorRuntime>> create(boost::asio::io_context& io, CensorSettings settings,
                                                       RuntimeRules* firewall, const std::string& events_path,
                                                       LogFn log);
  CensorRuntime(const CensorRuntime&) = delete;
  CensorRuntime& operator=(const CensorRuntime&) = delete;
  ~CensorRuntime();

  boost::asio::io_context& io() noexcept { return io_; }
  Censor& censor() noexcept { return censor_; }
  const CensorSettings& settings() const noexcept { return censor_.settings(); }
  Clock::time_point start() const noexcept { return start_; }
  std::mt19937_64& rng() noexcept { return rng_; }
  void set_prober(Prober* p) noexcept { prober_ = p; }
  void log(int level, const std::string& line) const {
    if (log_) log_(level, line);
  }

  // Drains the Censor's events, firewall actions and probe requests (call after every decision).
  void pump();
  // Appends one event (e.g. a flow's end) to the events file at once.
  void write_event(const Event& e);
  // Seconds since start, for events.
  double elapsed(Clock::time_point now) const;
  // Stops (on the io thread): no more rules are added, and the run-time rules are no longer
  // removed by their timers (Firewall::remove_all does it). Rules waiting for the firewall thread
  // are dropped; an iptables run in progress is waited for, so that the firewall is idle when
  // this returns.
  void stop();
  bool stopped() const noexcept { return stopped_; }

 private:
  CensorRuntime(boost::asio::io_context& io, CensorSettings settings, RuntimeRules* firewall, LogFn log);
  enum class RuleOp : std::uint8_t { add, remove };
  // Queues `op` for the firewall thread; its outcome comes back to settled() on the io thread
  // (nullopt: done, else why not).
  void submit(RuleOp op, FirewallAction a);
  void settled(RuleOp op, FirewallAction a, const std::optional<std::string>& error);
  boost::asio::awaitable<void> expire(FirewallAction a);

  boost::asio::io_context& io_;
  Clock::time_point start_;
  Censor censor_;
  RuntimeRules* firewall_;
  Prober* prober_ = nullptr;
  std::ofstream events_;
  LogFn log_;
  std::mt19937_64 rng_;
  std::atomic<bool> stopped_{false};  // read by the firewall thread's queued work
  // The firewall thread; the strand keeps its work in the order it was posted.
  boost::asio::thread_pool firewall_thread_{1};
  boost::asio::strand<boost::asio::thread_pool::executor_type> firewall_queue_{firewall_thread_.get_executor()};
};

// Accepts the redirected connections on `listen_port` (all addresses) and handles each flow.
class Middlebox {
 public:
  Middlebox(CensorRuntime& rt, std::uint16_t listen_port, MiddleboxLimits limits = {});
  // Errc::io_error when the port cannot be bound.
  Status open();
  // Starts accepting (on the runtime's io_context).
  void start();
  // Stops accepting and logs the flows still open (a black-holed flow whose client's packets the
  // firewall now drops never sees the client close); they are left to the io_context's end.
  void close();

  struct FlowTable;  // the flows in progress (middlebox.cpp)

 private:
  boost::asio::awaitable<void> accept_loop();
  CensorRuntime& rt_;
  std::uint16_t port_;
  MiddleboxLimits limits_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<FlowTable> flows_;
};

// SO_ORIGINAL_DST of a REDIRECTed IPv4 socket; nullopt when there is none.
std::optional<boost::asio::ip::tcp::endpoint> original_destination(boost::asio::ip::tcp::socket& s);

// The name of a verdict for the log ("pass", "need-more", "rst", "blackhole").
const char* to_string(Verdict v);

}  // namespace postern::lab::net
