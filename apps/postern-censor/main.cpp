// postern-censor: the censor of the censor lab (docs/censorship.md).
//
//   postern-censor run --settings FILE.json --user-if IFACE --listen-port 15001 --dns-port 15053
//       --resolver 10.20.0.53:53 --prober-address 10.20.0.201 [--prober-address ...]
//       --baseline 10.20.0.30:443 --events FILE.jsonl [--log-level info]
//   postern-censor resolver --listen 10.20.0.53:53 --record NAME=IPv4 [--record ...]
//   postern-censor profile NAME [--known-name N ...] [--known-address A ...] [--forged A ...]
//       [--seed N] [--probe-delay-ms N] [--probe-window-ms N] [--address-block-s N] ...
//
// `run` works inside the censor's network namespace (the router between the users' interface
// and the abroad side): it installs its iptables rules (firewall.h), the middlebox, the DNS
// injector and the prober, prints "censor ready", and on SIGTERM/SIGINT removes every rule it
// added and exits 0. It needs CAP_NET_ADMIN and iptables: without them one line on stderr, exit 2.
// `resolver` is the lab's DNS server abroad ("resolver ready"). `profile` prints a profile's
// settings as the JSON `run` reads (the lab runner uses it too). One io_context thread.
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "postern/lab/errors.h"
#include "postern/lab/net/dns.h"
#include "postern/lab/net/firewall.h"
#include "postern/lab/net/middlebox.h"
#include "postern/lab/net/prober.h"
#include "postern/lab/profile.h"

namespace {

using namespace postern;
using namespace postern::lab;
namespace asio = boost::asio;
constexpr int kExitNoPrivilege = 2;

// HOST:PORT with an IPv4 literal.
std::optional<std::pair<asio::ip::address_v4, std::uint16_t>> parse_host_port(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address_v4(s.substr(0, colon), ec);
  if (ec) return std::nullopt;
  try {
    const unsigned long port = std::stoul(s.substr(colon + 1));
    if (port == 0 || port > 65535) return std::nullopt;
    return std::make_pair(addr, static_cast<std::uint16_t>(port));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Whether this process has CAP_NET_ADMIN (bit 12 of CapEff), which iptables needs.
bool has_net_admin() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    try {
      const unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps & (1ull << 12)) != 0;
    } catch (const std::exception&) {
      return false;
    }
  }
  return ::geteuid() == 0;
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("censor");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

net::LogFn spdlog_sink() {
  return [](int level, const std::string& line) {
    switch (level) {
      case 0: spdlog::debug("{}", line); break;
      case 1: spdlog::info("{}", line); break;
      case 2: spdlog::warn("{}", line); break;
      default: spdlog::error("{}", line); break;
    }
  };
}

struct RunOptions {
  std::string settings, user_if, resolver, baseline, events, log_level = "info";
  std::uint16_t listen_port = 15001, dns_port = 15053;
  std::vector<std::string> prober_addresses;
};

int run(const RunOptions& o) {
  if (!has_net_admin()) {
    std::cerr << "postern-censor: needs root (CAP_NET_ADMIN) to install firewall rules\n";
    return kExitNoPrivilege;
  }
  if (!net::find_program("iptables")) {
    std::cerr << "postern-censor: iptables is not installed (Debian package iptables)\n";
    return kExitNoPrivilege;
  }
  setup_logging(o.log_level);
  std::ifstream in(o.settings);
  if (!in) {
    std::cerr << "postern-censor: cannot read " << o.settings << "\n";
    return 1;
  }
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto settings = settings_from_json(json);
  if (!settings) {
    std::cerr << "postern-censor: " << o.settings << ": " << settings.error().message() << "\n";
    return 1;
  }
  const auto resolver = parse_host_port(o.resolver);
  const auto baseline = parse_host_port(o.baseline);
  if (!resolver || !baseline) {
    std::cerr << "postern-censor: --resolver and --baseline take IPv4:PORT\n";
    return 1;
  }
  std::vector<asio::ip::address_v4> sources;
  for (const auto& a : o.prober_addresses) {
    boost::system::error_code ec;
    sources.push_back(asio::ip::make_address_v4(a, ec));
    if (ec) {
      std::cerr << "postern-censor: --prober-address " << a << " is not an IPv4 address\n";
      return 1;
    }
  }

  asio::io_context io(1);
  net::Firewall firewall(net::FirewallConfig{o.user_if, o.listen_port, o.dns_port});
  auto runtime_or = net::CensorRuntime::create(io, *settings, &firewall, o.events, spdlog_sink());
  if (!runtime_or) {
    std::cerr << "postern-censor: cannot open " << o.events << "\n";
    return 1;
  }
  auto& rt = **runtime_or;
  net::Middlebox middlebox(rt, o.listen_port);
  net::DnsInjector dns(rt, o.dns_port, asio::ip::udp::endpoint(resolver->first, resolver->second));
  net::Prober prober(rt, net::ProberConfig{sources, asio::ip::tcp::endpoint(baseline->first, baseline->second)});
  rt.set_prober(&prober);
  if (!middlebox.open() || !dns.open()) return 1;
  if (auto st = firewall.install(*settings); !st) {
    std::cerr << "postern-censor: installing firewall rules failed: " << firewall.last_error() << "\n";
    return st.error() == Errc::tool_missing ? kExitNoPrivilege : 1;
  }
  middlebox.start();
  dns.start();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    spdlog::info("stopping");
    rt.stop();  // first: it waits for an iptables run in progress, so remove_all does not race it
    middlebox.close();
    dns.close();
    firewall.remove_all();
    io.stop();
  });
  spdlog::info("profile {}: listening on {} (tcp) and {} (dns), users on {}", settings->profile, o.listen_port,
               o.dns_port, o.user_if);
  std::cout << "censor ready" << std::endl;
  io.run();
  rt.stop();
  firewall.remove_all();
  return 0;
}

int resolver(const std::string& listen, const std::vector<std::string>& records) {
  const auto ep = parse_host_port(listen);
  if (!ep) {
    std::cerr << "postern-censor: --listen takes IPv4:PORT\n";
    return 1;
  }
  std::map<std::string, std::string> table;
  for (const auto& r : records) {
    const auto eq = r.find('=');
    boost::system::error_code ec;
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "postern-censor: --record takes NAME=IPv4\n";
      return 1;
    }
    const auto addr = asio::ip::make_address_v4(r.substr(eq + 1), ec);
    if (ec) {
      std::cerr << "postern-censor: --record " << r << ": not an IPv4 address\n";
      return 1;
    }
    std::string name = r.substr(0, eq);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name.ends_with('.')) name.pop_back();
    table[name] = addr.to_string();
  }
  asio::io_context io(1);
  net::LabResolver server(io, asio::ip::udp::endpoint(ep->first, ep->second), std::move(table));
  if (!server.open()) {
    std::cerr << "postern-censor: cannot bind " << listen << "\n";
    return 1;
  }
  server.start();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    server.close();
    io.stop();
  });
  std::cout << "resolver ready" << std::endl;
  io.run();
  return 0;
}

struct ProfileOptions {
  std::string name;
  LabKnowledge known;
  std::uint64_t seed = 1;
  std::optional<long> probe_delay_ms, probe_window_ms, address_block_s, sni_penalty_s, fet_residual_s;
  std::optional<bool> probe_every_new_server;
};

int profile(const ProfileOptions& o) {
  auto s = make_profile(o.name, o.known, o.seed);
  if (!s) {
    std::cerr << "postern-censor: unknown profile " << o.name << " (known:";
    for (const auto& p : profiles()) std::cerr << " " << p.name;
    std::cerr << ")\n";
    return 1;
  }
  if (o.probe_delay_ms) s->probe_delay = std::chrono::milliseconds(*o.probe_delay_ms);
  if (o.probe_window_ms) s->probe_window = std::chrono::milliseconds(*o.probe_window_ms);
  if (o.address_block_s) s->address_block = std::chrono::seconds(*o.address_block_s);
  if (o.sni_penalty_s) s->sni_penalty = std::chrono::seconds(*o.sni_penalty_s);
  if (o.fet_residual_s) s->fet_residual = std::chrono::seconds(*o.fet_residual_s);
  if (o.probe_every_new_server) s->probe_every_new_server = *o.probe_every_new_server;
  std::cout << to_json(*s) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"postern-censor: the censor lab's middlebox, DNS resolver and profiles"};
  app.require_subcommand(1);

  RunOptions ro;
  auto* run_cmd = app.add_subcommand("run", "run the censor inside its network namespace");
  run_cmd->add_option("--settings", ro.settings, "CensorSettings JSON (postern-censor profile ...)")->required();
  run_cmd->add_option("--user-if", ro.user_if, "interface towards the users")->required();
  run_cmd->add_option("--listen-port", ro.listen_port, "the middlebox's port");
  run_cmd->add_option("--dns-port", ro.dns_port, "the DNS injector's port");
  run_cmd->add_option("--resolver", ro.resolver, "the real resolver, IPv4:PORT")->required();
  run_cmd->add_option("--prober-address", ro.prober_addresses, "a source address of the prober (repeatable)");
  run_cmd->add_option("--baseline", ro.baseline, "the stock nginx the prober compares with, IPv4:PORT")->required();
  run_cmd->add_option("--events", ro.events, "the events file (JSON lines, appended)")->required();
  run_cmd->add_option("--log-level", ro.log_level, "trace, debug, info, warn, error");

  std::string listen;
  std::vector<std::string> records;
  auto* res_cmd = app.add_subcommand("resolver", "the lab's authoritative DNS server");
  res_cmd->add_option("--listen", listen, "IPv4:PORT")->required();
  res_cmd->add_option("--record", records, "NAME=IPv4 (repeatable)");

  ProfileOptions po;
  auto* prof_cmd = app.add_subcommand("profile", "print a profile's settings as JSON");
  prof_cmd->add_option("name", po.name, "profile name")->required();
  prof_cmd->add_option("--known-name", po.known.known_names, "a name on the censor's lists (repeatable)");
  prof_cmd->add_option("--known-address", po.known.known_addresses, "an address on the IP blocklist (repeatable)");
  prof_cmd->add_option("--forged", po.known.forged_pool, "an address the DNS injector answers with (repeatable)");
  prof_cmd->add_option("--ja3-deny", po.known.ja3_deny, "a JA3 hash to deny (repeatable)");
  prof_cmd->add_option("--ja4-deny", po.known.ja4_deny, "a JA4 to deny (repeatable)");
  prof_cmd->add_option("--ja4-allow", po.known.ja4_allow, "a JA4 to allow (repeatable; allow-list mode)");
  prof_cmd->add_option("--seed", po.seed, "the censor's random seed");
  prof_cmd->add_option("--probe-delay-ms", po.probe_delay_ms, "delay before probing");
  prof_cmd->add_option("--probe-window-ms", po.probe_window_ms, "how long each probe's reaction is watched");
  prof_cmd->add_option("--address-block-s", po.address_block_s, "how long run-time address blocks last");
  prof_cmd->add_option("--sni-penalty-s", po.sni_penalty_s, "the SNI filter's penalty box");
  prof_cmd->add_option("--fet-residual-s", po.fet_residual_s, "FET's residual block of a 3-tuple");
  prof_cmd->add_option("--probe-every-new-server", po.probe_every_new_server, "probe every new server (true/false)");

  CLI11_PARSE(app, argc, argv);
  if (run_cmd->parsed()) return run(ro);
  if (res_cmd->parsed()) return resolver(listen, records);
  return profile(po);
}
