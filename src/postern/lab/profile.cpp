// The censor's profiles and their JSON form. A profile is a set of switched-on modules with the
// figures reported for them; the JSON form is what the lab hands to postern-censor, so it is read
// as outside input: every key is known, every value in range, or the whole document is refused.
#include "postern/lab/profile.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "postern/lab/errors.h"

namespace postern::lab {
namespace {

using json = nlohmann::json;

// Limits on what a settings document may hold (far above what the lab uses).
constexpr std::size_t kMaxListEntries = 4096;
constexpr std::size_t kMaxNameLength = 253;       // a DNS name
constexpr std::size_t kMaxFingerprintLength = 128;
constexpr std::size_t kMaxProfileNameLength = 64;
constexpr std::int64_t kMaxSeconds = 366LL * 24 * 3600;  // durations: at most a year
constexpr std::int64_t kMaxMilliseconds = kMaxSeconds * 1000;
constexpr std::uint64_t kMaxRstCount = 16;
constexpr std::uint64_t kMaxClients = 1'000'000;
constexpr std::uint64_t kMaxBursts = 64;
constexpr std::uint64_t kMaxBurstBytes = 1u << 20;

bool is_ipv4_literal(const std::string& s) {
  // Four dotted decimal octets, 0-255, no leading zeros (inet_pton's strict form).
  std::size_t i = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
    const std::size_t begin = i;
    unsigned value = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - begin < 3) {
      value = value * 10 + static_cast<unsigned>(s[i] - '0');
      ++i;
    }
    const std::size_t digits = i - begin;
    if (digits == 0 || value > 255 || (digits > 1 && s[begin] == '0')) return false;
  }
  return i == s.size();
}

// Lower case, no trailing dot; nullopt for a name that cannot be a DNS name.
std::optional<std::string> normal_name(const std::string& s) {
  std::string out = s;
  if (!out.empty() && out.back() == '.') out.pop_back();
  if (out.empty() || out.size() > kMaxNameLength) return std::nullopt;
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_';
    if (!ok) return std::nullopt;
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_hex32(std::string& s) {
  if (s.size() != 32) return false;
  for (char& c : s) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool is_fingerprint_text(const std::string& s) {
  if (s.empty() || s.size() > kMaxFingerprintLength) return false;
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// Checks and normalises the lab's knowledge (the same rules for make_profile and the JSON form).
Status check_knowledge(LabKnowledge& k) {
  const auto lists = {&k.known_addresses, &k.known_names, &k.forged_pool, &k.ja3_deny, &k.ja4_deny, &k.ja4_allow};
  for (const auto* list : lists) {
    if (list->size() > kMaxListEntries) return Errc::bad_config;
  }
  for (const auto& a : k.known_addresses) {
    if (!is_ipv4_literal(a)) return Errc::bad_config;
  }
  for (const auto& a : k.forged_pool) {
    if (!is_ipv4_literal(a)) return Errc::bad_config;
  }
  for (auto& n : k.known_names) {
    auto normal = normal_name(n);
    if (!normal) return Errc::bad_config;
    n = std::move(*normal);
  }
  for (auto& h : k.ja3_deny) {
    if (!is_hex32(h)) return Errc::bad_config;
  }
  for (const auto* list : {&k.ja4_deny, &k.ja4_allow}) {
    for (const auto& f : *list) {
      if (!is_fingerprint_text(f)) return Errc::bad_config;
    }
  }
  return {};
}

const std::vector<ProfileInfo> kProfiles = {
    {"open", "no censorship: the baseline every system must pass"},
    {"ip-blocklist", "IP blocking: every packet to a listed server address dropped (net4people #69, #129)"},
    {"port-allowlist", "blunt mode: only TCP/UDP ports 53, 80 and 443 pass (net4people #511)"},
    {"udp-blackhole", "blunt mode: UDP dropped, DNS on port 53 excepted (net4people #511)"},
    {"dns-injection",
     "DNS injection: forged A answers from an ordered pool for listed names, to any resolver (GFW Report; "
     "net4people #456, #466)"},
    {"sni-filter",
     "SNI / HTTP Host filtering: 3 RSTs, then a 90 s penalty box on the 3-tuple (Rambert et al., WWW 2021)"},
    {"fet",
     "fully encrypted first payloads without an exemption black-holed for 180 s on the 3-tuple (Wu et al., "
     "USENIX Security 2023)"},
    {"active-probing",
     "every new server probed with replays and random payloads, blocked if unlike nginx (Alice et al., IMC 2020)"},
    {"tls-fingerprint",
     "ClientHello JA3/JA4 on a deny list (or off an allow list) black-holed (the October 2022 purge of TLS proxies)"},
    {"tls-in-tls",
     "an inner TLS handshake in the first bursts' sizes black-holed (Xue et al., USENIX Security 2024; nDPI)"},
    {"volume",
     "over 16 MiB (scaled to the lab) to a server for at most 2 clients: probed, then blocked if unlike nginx "
     "(net4people #69, #129)"},
    {"gfw",
     "all modules with the Great Firewall's figures: FET p=0.26, SNI penalty p=0.6, 3 RSTs, 90 s / 180 s; probes "
     "1 s after a new server (IMC 2020: 20 % within 1 s; the lab caps the delay so runs stay short)"},
};

const std::vector<std::string> kQuick = {"open", "sni-filter", "fet", "active-probing", "gfw"};

// --- JSON reading: each helper refuses a wrong type or a value out of range ---

Status read_bool(const json& v, bool& out) {
  if (!v.is_boolean()) return Errc::bad_config;
  out = v.get<bool>();
  return {};
}

Status read_unsigned(const json& v, std::uint64_t max, std::uint64_t& out) {
  if (!v.is_number_unsigned()) {
    // nlohmann types a non-negative integer as unsigned; a negative one or a float is refused.
    return Errc::bad_config;
  }
  const auto x = v.get<std::uint64_t>();
  if (x > max) return Errc::bad_config;
  out = x;
  return {};
}

template <class T>
Status read_small(const json& v, std::uint64_t max, T& out) {
  std::uint64_t x = 0;
  POSTERN_CHECK(read_unsigned(v, max, x));
  out = static_cast<T>(x);
  return {};
}

Status read_probability(const json& v, double& out) {
  if (!v.is_number()) return Errc::bad_config;
  const double p = v.get<double>();
  if (!std::isfinite(p) || p < 0.0 || p > 1.0) return Errc::bad_config;
  out = p;
  return {};
}

template <class Duration>
Status read_duration(const json& v, std::int64_t max, Duration& out) {
  std::uint64_t x = 0;
  POSTERN_CHECK(read_unsigned(v, static_cast<std::uint64_t>(max), x));
  out = Duration{static_cast<typename Duration::rep>(x)};
  return {};
}

Status read_strings(const json& v, std::vector<std::string>& out) {
  if (!v.is_array() || v.size() > kMaxListEntries) return Errc::bad_config;
  out.clear();
  for (const auto& e : v) {
    if (!e.is_string()) return Errc::bad_config;
    out.push_back(e.get<std::string>());
  }
  return {};
}

Status read_ports(const json& v, std::vector<std::uint16_t>& out) {
  if (!v.is_array() || v.size() > 65535) return Errc::bad_config;
  out.clear();
  for (const auto& e : v) {
    std::uint64_t port = 0;
    POSTERN_CHECK(read_unsigned(e, 65535, port));
    if (port == 0) return Errc::bad_config;
    out.push_back(static_cast<std::uint16_t>(port));
  }
  return {};
}

Status read_modules(const json& v, Modules& m) {
  if (!v.is_object()) return Errc::bad_config;
  for (const auto& [key, value] : v.items()) {
    bool* field = nullptr;
    if (key == "ip_blocklist") field = &m.ip_blocklist;
    else if (key == "port_allowlist") field = &m.port_allowlist;
    else if (key == "udp_blackhole") field = &m.udp_blackhole;
    else if (key == "dns_injection") field = &m.dns_injection;
    else if (key == "sni_filter") field = &m.sni_filter;
    else if (key == "fet") field = &m.fet;
    else if (key == "active_probing") field = &m.active_probing;
    else if (key == "tls_fingerprint") field = &m.tls_fingerprint;
    else if (key == "tls_in_tls") field = &m.tls_in_tls;
    else if (key == "volume") field = &m.volume;
    else return Errc::bad_config;
    POSTERN_CHECK(read_bool(value, *field));
  }
  return {};
}

Status read_knowledge(const json& v, LabKnowledge& k) {
  if (!v.is_object()) return Errc::bad_config;
  for (const auto& [key, value] : v.items()) {
    std::vector<std::string>* field = nullptr;
    if (key == "addresses") field = &k.known_addresses;
    else if (key == "names") field = &k.known_names;
    else if (key == "forged_pool") field = &k.forged_pool;
    else if (key == "ja3_deny") field = &k.ja3_deny;
    else if (key == "ja4_deny") field = &k.ja4_deny;
    else if (key == "ja4_allow") field = &k.ja4_allow;
    else return Errc::bad_config;
    POSTERN_CHECK(read_strings(value, *field));
  }
  return check_knowledge(k);
}

Status read_tls_in_tls(const json& v, TlsInTlsSettings& t) {
  if (!v.is_object()) return Errc::bad_config;
  for (const auto& [key, value] : v.items()) {
    std::size_t* field = nullptr;
    std::uint64_t max = kMaxBurstBytes;
    if (key == "bursts") {
      field = &t.bursts;
      max = kMaxBursts;
    } else if (key == "hello_min") field = &t.hello_min;
    else if (key == "hello_max") field = &t.hello_max;
    else if (key == "server_min") field = &t.server_min;
    else if (key == "server_max") field = &t.server_max;
    else if (key == "finished_min") field = &t.finished_min;
    else if (key == "finished_max") field = &t.finished_max;
    else return Errc::bad_config;
    POSTERN_CHECK(read_small(value, max, *field));
  }
  if (t.bursts == 0 || t.hello_min > t.hello_max || t.server_min > t.server_max || t.finished_min > t.finished_max) {
    return Errc::bad_config;
  }
  return {};
}

Status read_setting(const std::string& key, const json& value, CensorSettings& s) {
  if (key == "profile") {
    if (!value.is_string()) return Errc::bad_config;
    s.profile = value.get<std::string>();
    if (s.profile.size() > kMaxProfileNameLength) return Errc::bad_config;
    return {};
  }
  if (key == "seed") return read_unsigned(value, std::numeric_limits<std::uint64_t>::max(), s.seed);
  if (key == "modules") return read_modules(value, s.on);
  if (key == "known") return read_knowledge(value, s.known);
  if (key == "allowed_ports") return read_ports(value, s.allowed_ports);
  if (key == "rst_count") return read_small(value, kMaxRstCount, s.rst_count);
  if (key == "sni_penalty_s") return read_duration(value, kMaxSeconds, s.sni_penalty);
  if (key == "sni_penalty_probability") return read_probability(value, s.sni_penalty_probability);
  if (key == "fet_probability") return read_probability(value, s.fet_probability);
  if (key == "fet_residual_s") return read_duration(value, kMaxSeconds, s.fet_residual);
  if (key == "probe_delay_ms") return read_duration(value, kMaxMilliseconds, s.probe_delay);
  if (key == "probe_window_ms") return read_duration(value, kMaxMilliseconds, s.probe_window);
  if (key == "probe_every_new_server") return read_bool(value, s.probe_every_new_server);
  if (key == "volume_bytes") return read_unsigned(value, std::numeric_limits<std::uint64_t>::max(), s.volume_bytes);
  if (key == "volume_max_clients") return read_small(value, kMaxClients, s.volume_max_clients);
  if (key == "address_block_s") return read_duration(value, kMaxSeconds, s.address_block);
  if (key == "tls_in_tls") return read_tls_in_tls(value, s.tls_in_tls);
  return Errc::bad_config;  // an unknown key
}

}  // namespace

const std::vector<ProfileInfo>& profiles() { return kProfiles; }

const std::vector<std::string>& quick_profiles() { return kQuick; }

Result<CensorSettings> make_profile(std::string_view name, const LabKnowledge& known, std::uint64_t seed) {
  CensorSettings s;
  s.profile = std::string(name);
  s.known = known;
  s.seed = seed;
  POSTERN_CHECK(check_knowledge(s.known));
  // The defaults of CensorSettings are the single-technique figures (probability 1).
  Modules& m = s.on;
  if (name == "open") {
  } else if (name == "ip-blocklist") {
    m.ip_blocklist = true;
  } else if (name == "port-allowlist") {
    m.port_allowlist = true;
  } else if (name == "udp-blackhole") {
    m.udp_blackhole = true;
  } else if (name == "dns-injection") {
    m.dns_injection = true;
  } else if (name == "sni-filter") {
    m.sni_filter = true;
  } else if (name == "fet") {
    m.fet = true;
  } else if (name == "active-probing") {
    m.active_probing = true;
  } else if (name == "tls-fingerprint") {
    m.tls_fingerprint = true;
  } else if (name == "tls-in-tls") {
    m.tls_in_tls = true;
  } else if (name == "volume") {
    m.volume = true;
  } else if (name == "gfw") {
    m = Modules{true, true, true, true, true, true, true, true, true, true};
    s.fet_probability = 0.26;
    s.sni_penalty_probability = 0.6;
    s.rst_count = 3;
    s.sni_penalty = std::chrono::seconds{90};
    s.fet_residual = std::chrono::seconds{180};
    s.probe_every_new_server = true;
    s.probe_delay = std::chrono::seconds{1};
    s.volume_bytes = 16ull * 1024 * 1024;
    s.volume_max_clients = 2;
  } else {
    return Errc::bad_config;
  }
  // The single-technique profiles block every time (the defaults, restated so that a change of
  // the defaults cannot silently weaken a test profile).
  if (name != "gfw") {
    s.fet_probability = 1.0;
    s.sni_penalty_probability = 1.0;
  }
  return s;
}

std::string to_json(const CensorSettings& s) {
  const Modules& m = s.on;
  const TlsInTlsSettings& t = s.tls_in_tls;
  json j = {
      {"profile", s.profile},
      {"seed", s.seed},
      {"modules",
       {{"ip_blocklist", m.ip_blocklist},
        {"port_allowlist", m.port_allowlist},
        {"udp_blackhole", m.udp_blackhole},
        {"dns_injection", m.dns_injection},
        {"sni_filter", m.sni_filter},
        {"fet", m.fet},
        {"active_probing", m.active_probing},
        {"tls_fingerprint", m.tls_fingerprint},
        {"tls_in_tls", m.tls_in_tls},
        {"volume", m.volume}}},
      {"known",
       {{"addresses", s.known.known_addresses},
        {"names", s.known.known_names},
        {"forged_pool", s.known.forged_pool},
        {"ja3_deny", s.known.ja3_deny},
        {"ja4_deny", s.known.ja4_deny},
        {"ja4_allow", s.known.ja4_allow}}},
      {"allowed_ports", s.allowed_ports},
      {"rst_count", s.rst_count},
      {"sni_penalty_s", s.sni_penalty.count()},
      {"sni_penalty_probability", s.sni_penalty_probability},
      {"fet_probability", s.fet_probability},
      {"fet_residual_s", s.fet_residual.count()},
      {"probe_delay_ms", s.probe_delay.count()},
      {"probe_window_ms", s.probe_window.count()},
      {"probe_every_new_server", s.probe_every_new_server},
      {"volume_bytes", s.volume_bytes},
      {"volume_max_clients", s.volume_max_clients},
      {"address_block_s", s.address_block.count()},
      {"tls_in_tls",
       {{"bursts", t.bursts},
        {"hello_min", t.hello_min},
        {"hello_max", t.hello_max},
        {"server_min", t.server_min},
        {"server_max", t.server_max},
        {"finished_min", t.finished_min},
        {"finished_max", t.finished_max}}},
  };
  // `replace`: a string that is not UTF-8 is written with U+FFFD instead of throwing.
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

Result<CensorSettings> settings_from_json(std::string_view text) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Errc::bad_config;
  CensorSettings s;
  for (const auto& [key, value] : j.items()) {
    POSTERN_CHECK(read_setting(key, value, s));
  }
  return s;
}

}  // namespace postern::lab
