// `postern doctor`: an OONI-style check of every path to the server (docs/doctor.md).
//
// For each path (the invite's direct address, each relay) it runs the steps a connection takes,
// one at a time, recording what happened at each: name resolution (the system's resolver or a
// given DNS server, DNS-over-HTTPS, and the invite's own address, compared), TCP connect, TLS
// handshake and the certificate pin, the camouflage site (GET / over TLS), the inner channel
// (front token and Noise handshake to the server's key) and an echo through it (GET /v1/ping).
// From the first step that failed and how it failed (refused, timed out, reset, a forged-looking
// DNS answer, a wrong pin) it derives a verdict in plain words, per path and overall.
//
// Boost-free header: the CLI (apps/postern/doctor_cli.cpp) prints the result as text or JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "postern/client/invite.h"

namespace postern::client::net {

struct DoctorOptions {
  // Resolve names with this DNS server (HOST:PORT, UDP) instead of the system's resolver.
  std::optional<std::string> dns_server;
  // Also resolve through DNS-over-HTTPS (RFC 8484), e.g. "https://dns.example/dns-query".
  std::optional<std::string> doh_url;
  std::optional<std::string> doh_ca_file;  // trust this CA for the DoH server (default: the system's)
  std::chrono::milliseconds step_timeout{5'000};
};

struct DoctorStep {
  std::string name;     // "dns", "tcp", "tls", "site", "inner", "echo"
  std::string outcome;  // "ok", "failed", "skipped"
  std::string detail;   // plain words: what was seen
  std::int64_t millis = -1;
};

struct DoctorPath {
  std::string label;  // "direct" or "relay HOST:PORT"
  std::string host;
  std::uint16_t port = 0;
  std::vector<std::string> system_addresses, doh_addresses;
  std::vector<DoctorStep> steps;
  bool works = false;
  std::string verdict;  // one sentence
};

struct DoctorReport {
  std::vector<DoctorPath> paths;
  std::string verdict;  // overall, e.g. "server address blocked, relay works"
};

// Checks the paths of `invite` (direct) and `relays` (relay share links), in that order.
DoctorReport run_doctor(const Invite& invite, const std::vector<Invite>& relays, const DoctorOptions& options);

}  // namespace postern::client::net
