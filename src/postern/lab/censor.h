// The censor's decisions, sans-I/O (docs/censorship.md): the middlebox (lab/net/middlebox.h)
// reports what it sees on the TCP flows it intercepts and the DNS queries it answers; this class
// says what to do with each (pass, reset, black-hole), which firewall rules to add (drop a
// 3-tuple for a while, drop an address) and which servers to probe, and keeps the log of what it
// flagged. Randomness (blocking probabilities) comes from a seeded generator, so a run is
// repeatable.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "postern/lab/profile.h"
#include "postern/util/bytes.h"

namespace postern::lab {

using Clock = std::chrono::steady_clock;

struct FlowKey {
  std::string client;  // IPv4 literal
  std::string server;
  std::uint16_t port = 0;
  auto operator<=>(const FlowKey&) const = default;
};

enum class Verdict : std::uint8_t {
  pass,       // forward both ways
  need_more,  // read more of the first flight (an incomplete ClientHello), then ask again
  rst,        // reset both sides (rst_count RSTs towards the client)
  blackhole   // stop forwarding client-to-server bytes, keep the connection open
};

struct Decision {
  Verdict verdict = Verdict::pass;
  std::string module;  // the technique that decided ("sni", "fet", ...), empty for a plain pass
  std::string detail;  // for the log ("sni=chat.example", "ja4=t13d...")
};

struct FirewallAction {
  enum class Kind : std::uint8_t { drop_flow, drop_address } kind = Kind::drop_flow;
  FlowKey key;                      // drop_flow: the 3-tuple; drop_address: key.server only
  std::chrono::seconds duration{0};
  std::string module;
};

struct ProbeRequest {
  std::string server;
  std::uint16_t port = 0;
  Bytes first_flight;               // for R1-R5 (empty: only NR1/NR2)
  Clock::time_point not_before;     // the delay after the trigger
  std::string module;               // what triggered it ("new-server", "fet", "volume")
};

// One line of the censor's log (JSON Lines in the events file the lab reads).
struct Event {
  double t = 0;            // seconds since the censor started
  std::string module;      // "sni", "fet", "dns", "probe", "ip", "ja4", "tls-in-tls", "volume", ...
  std::string action;      // "rst", "blackhole", "forged", "probe-differs", "probe-same", "block-address", ...
  std::string client, server;
  std::uint16_t port = 0;
  std::string detail;
};
std::string to_json_line(const Event& e);

class Censor {
 public:
  Censor(CensorSettings settings, Clock::time_point start);

  const CensorSettings& settings() const noexcept { return settings_; }

  // A new intercepted TCP connection (it got past the firewall rules): the penalty box of the
  // SNI filter and run-time address blocks are checked here.
  Decision on_connect(const FlowKey& k, Clock::time_point now);
  // The client's first bytes (all read so far; called again with more after need_more). In
  // order: SNI/Host (rst, then the penalty box), fingerprints (blackhole), FET (blackhole with
  // fet_probability); the probe of a new server is queued whatever FET decided (a flight the
  // draw spared is still suspicious), but not after an SNI or fingerprint block. Every block
  // also queues a drop_flow firewall action for fet_residual (SNI: the penalty box instead).
  Decision on_first_flight(const FlowKey& k, ByteView first_flight, Clock::time_point now);
  // Bytes carried on a flow in either direction (volume escalation).
  void on_bytes(const FlowKey& k, std::uint64_t n, Clock::time_point now);
  // The TLS-in-TLS detector of a flow found it suspicious (`bursts` for the log).
  Decision on_tls_in_tls(const FlowKey& k, const std::string& bursts, Clock::time_point now);
  // The prober's verdict on a server: `differs` from the nginx baseline on the probe `detail`.
  void on_probe_result(const std::string& server, std::uint16_t port, bool differs, const std::string& detail,
                       Clock::time_point now);
  // A DNS query for `name` from `client` to `resolver`: the forged addresses to answer with, or
  // nothing (forward the query).
  std::vector<std::string> on_dns_query(const std::string& client, const std::string& resolver,
                                        const std::string& name, Clock::time_point now);

  // Work for the middlebox, drained by it.
  std::vector<FirewallAction> take_firewall_actions();
  std::vector<ProbeRequest> take_probe_requests();
  std::vector<Event> take_events();

 private:
  void log(Clock::time_point now, std::string module, std::string action, const FlowKey& k, std::string detail);
  bool chance(double p);
  void block_address(const std::string& server, std::uint16_t port, const std::string& module, Clock::time_point now);

  CensorSettings settings_;
  Clock::time_point start_;
  std::mt19937_64 rng_;
  std::map<FlowKey, Clock::time_point> penalty_until_;          // SNI penalty box per 3-tuple
  std::map<std::string, Clock::time_point> blocked_until_;      // run-time address blocks
  std::set<std::pair<std::string, std::uint16_t>> probed_;      // servers probed (or being probed)
  struct Volume {
    std::uint64_t bytes = 0;
    std::set<std::string> clients;
    bool escalated = false;
  };
  std::map<std::string, Volume> volume_;
  std::vector<FirewallAction> firewall_;
  std::vector<ProbeRequest> probes_;
  std::vector<Event> events_;
};

}  // namespace postern::lab
