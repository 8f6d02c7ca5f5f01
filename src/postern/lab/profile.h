// The censor's profiles (docs/censorship.md): which techniques are switched on, with which lists
// and probabilities. `open` switches nothing on; each technique has a profile of its own with a
// blocking probability of 1 (so that a test sees the technique every time); `gfw` switches all of
// them on with the probabilities and durations reported for the Great Firewall.
//
// What the censor "knows" (which addresses and names are on its lists, which fingerprints it
// denies or allows) is not part of a profile: the lab supplies it (LabKnowledge), because the
// lab decides which servers are well known (the WhatsApp-like service, Postern's server) and
// which are private (relays, bridges, a user's own proxy servers).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "postern/lab/tls_in_tls.h"
#include "postern/util/result.h"

namespace postern::lab {

struct Modules {
  bool ip_blocklist = false;     // drop every packet to a listed address
  bool port_allowlist = false;   // only TCP/UDP ports 53, 80 and 443 pass
  bool udp_blackhole = false;    // UDP dropped (DNS, port 53, still passes)
  bool dns_injection = false;    // forged A answers for listed names
  bool sni_filter = false;       // ClientHello SNI / HTTP Host on the list: RSTs, then a penalty box
  bool fet = false;              // Wu et al.'s fully-encrypted-traffic rule
  bool active_probing = false;   // probe new or suspicious servers, block those unlike nginx
  bool tls_fingerprint = false;  // JA3/JA4 deny list, or allow list when one is given
  bool tls_in_tls = false;       // the burst-size heuristic
  bool volume = false;           // much data for few clients: probe, then block
};

struct LabKnowledge {
  std::vector<std::string> known_addresses;  // IPv4 literals on the IP blocklist
  std::vector<std::string> known_names;      // names for DNS injection and SNI/Host filtering
  std::vector<std::string> forged_pool;      // addresses the DNS injector answers with, in order
  std::vector<std::string> ja3_deny, ja4_deny;  // fingerprint deny lists (JA3 as MD5 hex)
  std::vector<std::string> ja4_allow;           // non-empty: only these pass (allow-list mode)
};

struct CensorSettings {
  std::string profile;  // its name, for the log
  Modules on;
  LabKnowledge known;
  std::vector<std::uint16_t> allowed_ports{53, 80, 443};
  // SNI / Host filtering (Rambert et al., WWW 2021)
  unsigned rst_count = 3;
  std::chrono::seconds sni_penalty{90};
  double sni_penalty_probability = 1.0;  // of blocking a new connection on the 3-tuple in the penalty box (gfw: 0.6)
  // FET (Wu et al.)
  double fet_probability = 1.0;  // gfw: 0.26
  std::chrono::seconds fet_residual{180};
  // Active probing (Alice et al.)
  std::chrono::milliseconds probe_delay{500};    // after the trigger (gfw: drawn from the IMC 2020 delays, capped)
  std::chrono::milliseconds probe_window{3000};  // how long each probe's reaction is watched
  bool probe_every_new_server = true;            // false: only servers a flow made suspicious (FET, volume)
  // Volume escalation
  // Per server address. Scaled to the lab: a real censor counts gigabytes over days; the lab's
  // payloads (a 20 MB video) cross 16 MiB within one run.
  std::uint64_t volume_bytes = 16ull * 1024 * 1024;
  unsigned volume_max_clients = 2;                   // "fewer than K clients": at most this many
  // Blocks decided at run time (probing, volume) last this long.
  std::chrono::seconds address_block{3600};
  TlsInTlsSettings tls_in_tls;
  std::uint64_t seed = 1;
};

struct ProfileInfo {
  std::string name;
  std::string technique;  // one line: what it reproduces and its source
};
// Every profile, `open` first and `gfw` last.
const std::vector<ProfileInfo>& profiles();
// The quick set CI runs (a subset of profiles()).
const std::vector<std::string>& quick_profiles();

// The settings of a profile for this lab. Errors: bad_config for an unknown name, or knowledge
// that breaks the rules of the JSON form below. Names are kept lower case without a trailing
// dot, JA3 hashes lower case.
Result<CensorSettings> make_profile(std::string_view name, const LabKnowledge& known, std::uint64_t seed = 1);

// JSON (the lab writes it, postern-censor reads it): one object with "profile", "seed",
// "modules" {ip_blocklist, port_allowlist, udp_blackhole, dns_injection, sni_filter, fet,
// active_probing, tls_fingerprint, tls_in_tls, volume: bool}, "known" {addresses, names,
// forged_pool, ja3_deny, ja4_deny, ja4_allow: [string]}, "allowed_ports", "rst_count",
// "sni_penalty_s", "sni_penalty_probability", "fet_probability", "fet_residual_s",
// "probe_delay_ms", "probe_window_ms", "probe_every_new_server", "volume_bytes",
// "volume_max_clients", "address_block_s" and "tls_in_tls" {bursts, hello_min, hello_max,
// server_min, server_max, finished_min, finished_max}. settings_from_json refuses (bad_config)
// unknown keys, wrong types, probabilities outside [0, 1], ports outside 1..65535, negative or
// fractional durations and counts, durations over a year, addresses that are not IPv4 literals,
// names that are not DNS names, JA3 values that are not 32 hex digits, lists over 4096 entries;
// a key left out keeps the CensorSettings default.
std::string to_json(const CensorSettings& s);
Result<CensorSettings> settings_from_json(std::string_view json);

}  // namespace postern::lab
