// See doctor_cli.h.
#include "doctor_cli.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "postern/client/net/doctor.h"

namespace postern::app {

void add_doctor_options(CLI::App& command, DoctorArgs& args) {
  command.add_option("--dns-server", args.dns_server,
                     "resolve names with this DNS server (HOST:PORT, UDP) instead of the system's resolver");
  command.add_option("--doh", args.doh_url, "also resolve through DNS-over-HTTPS, e.g. https://dns.example/dns-query");
  command.add_option("--doh-ca", args.doh_ca, "trust this CA certificate (PEM) for the DoH server");
  command.add_option("--step-timeout", args.step_timeout_s, "seconds each step may take")
      ->check(CLI::Range(0.1, 120.0))
      ->capture_default_str();
}

int run_doctor_command(const client::Invite& invite, const std::vector<client::Invite>& relays,
                       const DoctorArgs& args, bool json) {
  client::net::DoctorOptions options;
  if (!args.dns_server.empty()) options.dns_server = args.dns_server;
  if (!args.doh_url.empty()) options.doh_url = args.doh_url;
  if (!args.doh_ca.empty()) options.doh_ca_file = args.doh_ca;
  options.step_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(args.step_timeout_s * 1000));
  const client::net::DoctorReport report = client::net::run_doctor(invite, relays, options);
  const bool any = std::any_of(report.paths.begin(), report.paths.end(), [](const auto& p) { return p.works; });
  if (json) {
    nlohmann::json out;
    out["verdict"] = report.verdict;
    out["works"] = any;
    out["paths"] = nlohmann::json::array();
    for (const auto& p : report.paths) {
      nlohmann::json jp{{"path", p.label}, {"host", p.host},         {"port", p.port},
                        {"works", p.works}, {"verdict", p.verdict}, {"steps", nlohmann::json::array()}};
      jp["dns"] = {{"system", p.system_addresses}, {"doh", p.doh_addresses}};
      for (const auto& s : p.steps) {
        nlohmann::json js{{"step", s.name}, {"outcome", s.outcome}, {"detail", s.detail}};
        if (s.millis >= 0) js["ms"] = s.millis;
        jp["steps"].push_back(std::move(js));
      }
      out["paths"].push_back(std::move(jp));
    }
    std::printf("%s\n", out.dump().c_str());
  } else {
    for (const auto& p : report.paths) {
      std::printf("%s (%s:%u)\n", p.label.c_str(), p.host.c_str(), static_cast<unsigned>(p.port));
      for (const auto& s : p.steps) {
        std::printf("  %-6s %-8s %s", s.name.c_str(), s.outcome.c_str(), s.detail.c_str());
        if (s.millis >= 0) std::printf(" (%lld ms)", static_cast<long long>(s.millis));
        std::printf("\n");
      }
      std::printf("  => %s\n\n", p.verdict.c_str());
    }
    std::printf("verdict: %s\n", report.verdict.c_str());
  }
  std::fflush(stdout);
  return any ? 0 : 3;
}

}  // namespace postern::app
