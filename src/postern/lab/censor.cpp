// The censor's decision engine. Each report from the middlebox is checked against the switched-on
// modules in a fixed order; a block is logged as an Event, and the firewall rules and probes it
// implies are queued for the middlebox to drain. All randomness comes from one seeded
// std::mt19937_64, drawn only when a probability is strictly between 0 and 1, so a run with the
// same seed and the same reports decides the same.
#include "postern/lab/censor.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "postern/lab/first_flight.h"

namespace postern::lab {
namespace {

// A first flight that starts like TLS is read until its ClientHello is complete, up to this much.
constexpr std::size_t kMaxHelloWait = 16 * 1024;
// Names and details from the wire are cut to this length in decisions and the log.
constexpr std::size_t kMaxDetail = 256;
// The penalty box and the run-time blocks are swept of expired entries past this many.
constexpr std::size_t kSweepAbove = 4096;

// Lower case, without a trailing dot (how the lists are kept).
std::string normal_name(std::string_view s) {
  if (s.size() > kMaxDetail) s = s.substr(0, kMaxDetail);
  std::string out(s);
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool on_list(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

bool name_listed(const std::vector<std::string>& names, const std::string& name) {
  if (name.empty()) return false;
  return std::any_of(names.begin(), names.end(), [&](const std::string& p) { return name_matches(name, p); });
}

// FNV-1a, 64 bits: a hash that is the same on every platform and run (std::hash is not).
std::uint64_t stable_hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

template <class Map>
void sweep(Map& m, Clock::time_point now) {
  if (m.size() <= kSweepAbove) return;
  std::erase_if(m, [&](const auto& entry) { return entry.second <= now; });
}

Decision decided(Verdict v, std::string module, std::string detail) {
  return Decision{v, std::move(module), std::move(detail)};
}

}  // namespace

std::string to_json_line(const Event& e) {
  const nlohmann::json j = {{"t", e.t},           {"module", e.module}, {"action", e.action}, {"client", e.client},
                            {"server", e.server}, {"port", e.port},     {"detail", e.detail}};
  // Details carry names from the wire: bytes that are not UTF-8 become U+FFFD rather than throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Censor::Censor(CensorSettings settings, Clock::time_point start)
    : settings_(std::move(settings)), start_(start), rng_(settings_.seed) {}

void Censor::log(Clock::time_point now, std::string module, std::string action, const FlowKey& k,
                 std::string detail) {
  Event e;
  e.t = std::chrono::duration<double>(now - start_).count();
  e.module = std::move(module);
  e.action = std::move(action);
  e.client = k.client;
  e.server = k.server;
  e.port = k.port;
  e.detail = std::move(detail);
  events_.push_back(std::move(e));
}

bool Censor::chance(double p) {
  if (p <= 0.0) return false;
  if (p >= 1.0) return true;
  // 53 random bits as a double in [0, 1): the same on every standard library (the distributions
  // of <random> are not specified bit for bit).
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return u < p;
}

void Censor::block_address(const std::string& server, std::uint16_t port, const std::string& module,
                           Clock::time_point now) {
  sweep(blocked_until_, now);
  blocked_until_[server] = now + settings_.address_block;
  FirewallAction a;
  a.kind = FirewallAction::Kind::drop_address;
  a.key = FlowKey{"", server, port};
  a.duration = settings_.address_block;
  a.module = module;
  firewall_.push_back(std::move(a));
}

Decision Censor::on_connect(const FlowKey& k, Clock::time_point now) {
  if (const auto it = blocked_until_.find(k.server); it != blocked_until_.end()) {
    if (now < it->second) {
      log(now, "address", "blackhole", k, "blocked at run time");
      return decided(Verdict::blackhole, "address", "blocked at run time");
    }
    blocked_until_.erase(it);
  }
  if (const auto it = penalty_until_.find(k); it != penalty_until_.end()) {
    if (now < it->second) {
      if (chance(settings_.sni_penalty_probability)) {
        log(now, "sni-penalty", "rst", k, "penalty box");
        return decided(Verdict::rst, "sni-penalty", "penalty box");
      }
      return {};
    }
    penalty_until_.erase(it);
  }
  return {};
}

Decision Censor::on_first_flight(const FlowKey& k, ByteView flight, Clock::time_point now) {
  if (flight.empty()) return decided(Verdict::need_more, "", "");
  const Modules& on = settings_.on;
  const LabKnowledge& known = settings_.known;

  HelloResult hello;  // not_tls unless a module needs the ClientHello
  if (on.sni_filter || on.tls_fingerprint) {
    hello = parse_client_hello(flight);
    if (hello.status == HelloParse::incomplete && flight.size() < kMaxHelloWait) {
      return decided(Verdict::need_more, "", "");
    }
  }
  const bool tls = hello.status == HelloParse::ok;

  if (on.sni_filter) {
    std::string detail;
    if (tls) {
      const std::string sni = normal_name(hello.hello.server_name);
      if (name_listed(known.known_names, sni)) detail = "sni=" + sni;
    } else if (const auto host = http_host(flight)) {
      const std::string name = normal_name(*host);
      if (name_listed(known.known_names, name)) detail = "host=" + name;
    }
    if (!detail.empty()) {
      sweep(penalty_until_, now);
      penalty_until_[k] = now + settings_.sni_penalty;
      log(now, "sni", "rst", k, detail);
      return decided(Verdict::rst, "sni", std::move(detail));
    }
  }

  if (on.tls_fingerprint && tls) {
    const std::string j4 = ja4(hello.hello);
    const std::string j3 = ja3_hash(hello.hello);
    std::string module;
    std::string detail;
    if (on_list(known.ja4_deny, j4)) {
      module = "ja4";
      detail = "ja4=" + j4 + " denied";
    } else if (on_list(known.ja3_deny, j3)) {
      module = "ja3";
      detail = "ja3=" + j3 + " denied";
    } else if (!known.ja4_allow.empty() && !on_list(known.ja4_allow, j4)) {
      module = "ja4";
      detail = "ja4=" + j4 + " not allowed";
    }
    if (!module.empty()) {
      firewall_.push_back(FirewallAction{FirewallAction::Kind::drop_flow, k, settings_.fet_residual, module});
      log(now, module, "blackhole", k, detail);
      return decided(Verdict::blackhole, std::move(module), std::move(detail));
    }
  }

  // FET and probing both look at the flight: a flight that fails the FET rule may be spared by
  // the draw and still get its server probed (as the GFW's probers follow flows it let through).
  bool fet_failed = false;
  Decision result;
  if (on.fet) {
    const FetExemption ex = fet_exemption(flight);
    fet_failed = ex == FetExemption::none;
    if (fet_failed && chance(settings_.fet_probability)) {
      std::string detail = std::string("exemption=") + to_string(ex);
      firewall_.push_back(FirewallAction{FirewallAction::Kind::drop_flow, k, settings_.fet_residual, "fet"});
      log(now, "fet", "blackhole", k, detail);
      result = decided(Verdict::blackhole, "fet", std::move(detail));
    }
  }

  if (on.active_probing && (settings_.probe_every_new_server || fet_failed)) {
    auto server = std::make_pair(k.server, k.port);
    if (!probed_.contains(server)) {
      probed_.insert(std::move(server));
      ProbeRequest p;
      p.server = k.server;
      p.port = k.port;
      p.first_flight.assign(flight.begin(), flight.end());
      p.not_before = now + settings_.probe_delay;
      p.module = fet_failed ? "fet" : "new-server";
      log(now, "probe", "queue", k, "trigger=" + p.module);
      probes_.push_back(std::move(p));
    }
  }
  return result;
}

void Censor::on_bytes(const FlowKey& k, std::uint64_t n, Clock::time_point now) {
  if (!settings_.on.volume) return;
  Volume& v = volume_[k.server];
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  v.bytes = n > kMax - v.bytes ? kMax : v.bytes + n;
  // More than the limit's worth of clients never escalates, so the set stops growing there.
  if (v.clients.size() <= settings_.volume_max_clients) v.clients.insert(k.client);
  if (v.escalated || v.bytes <= settings_.volume_bytes || v.clients.size() > settings_.volume_max_clients) return;
  v.escalated = true;
  log(now, "volume", "probe", k,
      "bytes=" + std::to_string(v.bytes) + " clients=" + std::to_string(v.clients.size()));
  probed_.insert(std::make_pair(k.server, k.port));
  ProbeRequest p;
  p.server = k.server;
  p.port = k.port;
  p.not_before = now + settings_.probe_delay;
  p.module = "volume";
  probes_.push_back(std::move(p));
}

Decision Censor::on_tls_in_tls(const FlowKey& k, const std::string& bursts, Clock::time_point now) {
  std::string detail = "bursts=" + bursts.substr(0, kMaxDetail);
  if (!settings_.on.tls_in_tls) {
    log(now, "tls-in-tls", "pass", k, detail + " (module off)");
    return {};
  }
  firewall_.push_back(FirewallAction{FirewallAction::Kind::drop_flow, k, settings_.fet_residual, "tls-in-tls"});
  log(now, "tls-in-tls", "blackhole", k, detail);
  return decided(Verdict::blackhole, "tls-in-tls", std::move(detail));
}

void Censor::on_probe_result(const std::string& server, std::uint16_t port, bool differs, const std::string& detail,
                             Clock::time_point now) {
  const FlowKey k{"", server, port};
  if (differs) {
    block_address(server, port, "probe", now);
    log(now, "probe", "probe-differs", k, detail.substr(0, kMaxDetail));
  } else {
    log(now, "probe", "probe-same", k, detail.substr(0, kMaxDetail));
  }
}

std::vector<std::string> Censor::on_dns_query(const std::string& client, const std::string& resolver,
                                              const std::string& name, Clock::time_point now) {
  const auto& known = settings_.known;
  if (!settings_.on.dns_injection || known.forged_pool.empty()) return {};
  const std::string n = normal_name(name);
  if (!name_listed(known.known_names, n)) return {};
  // Like the GFW's ordered pools: the same name always gets the same forged address.
  const std::string& forged = known.forged_pool[stable_hash(n) % known.forged_pool.size()];
  log(now, "dns", "forged", FlowKey{client, resolver, 53}, "name=" + n + " a=" + forged);
  return {forged};
}

std::vector<FirewallAction> Censor::take_firewall_actions() { return std::exchange(firewall_, {}); }

std::vector<ProbeRequest> Censor::take_probe_requests() { return std::exchange(probes_, {}); }

std::vector<Event> Censor::take_events() { return std::exchange(events_, {}); }

}  // namespace postern::lab
