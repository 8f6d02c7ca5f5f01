// The scenarios (docs/censorship.md, "Scenarios"): per profile and system, alice (user node)
// sends a text to bob (abroad), bob replies and alice receives the reply, then alice sends a 1 MB
// picture (a real PNG of random pixels) and a 20 MB video (random bytes named .mp4). Every step
// has a deadline. A cell records whether the payload arrived and how fast, which abroad address
// carried alice's bytes (nft counters on the censor's user-side interface), and what the censor
// flagged for the system's addresses meanwhile (its events file).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "postern/lab/runner/report.h"
#include "postern/lab/profile.h"
#include "postern/lab/runner/systems.h"
#include "postern/util/bytes.h"

namespace postern::lab::runner {

// "text", "reply", "picture" and, unless quick, "video".
std::vector<std::string> payloads(bool quick);

struct Media {
  std::string picture, picture_sha256;
  std::string video, video_sha256;
};
// Writes DIR/picture.png (about 1 MB) and, unless quick, DIR/video.mp4 (20 MB).
Result<Media> make_media(const std::string& dir, bool quick);

// A valid PNG (8-bit RGB, no interlace, stored deflate blocks) of w x h random pixels.
Bytes make_png(std::uint32_t w, std::uint32_t h, std::uint64_t seed);
std::string sha256_hex(ByteView data);

// Byte counters per abroad address for the packets that arrive on the censor's cu0.
class PathMeter {
 public:
  explicit PathMeter(std::string censor_ns) : ns_(std::move(censor_ns)) {}
  static std::vector<Argv> install_commands(const std::string& censor_ns);
  Status install(const std::string& scratch);
  std::map<std::string, std::uint64_t> read(const std::string& scratch) const;
  // "ip daddr 10.20.0.10 counter packets 3 bytes 180" lines -> {address: bytes}.
  static std::map<std::string, std::uint64_t> parse(const std::string& nft_listing);

 private:
  std::string ns_;
};

// The path ("direct", "relay", "proxy") from counters before and after, counting only the
// system's addresses; "" when nothing went there.
std::string path_from(const std::map<std::string, std::uint64_t>& before,
                      const std::map<std::string, std::uint64_t>& after, const std::vector<std::string>& addresses);

// The censor's events (JSON Lines) about the given addresses, as unique "module/action" strings.
// DNS events about alice's queries for the given names count too. Lines that do not parse are
// skipped.
std::vector<std::string> flags_from_events(const std::string& jsonl, const std::vector<std::string>& addresses,
                                           const std::vector<std::string>& names = {});
// The size of the censor's event log now: where a system's steps begin in it.
std::uintmax_t events_offset(const std::string& events_path);
// The flags in the event log from `offset` (taken just before the system's steps) about the
// system that none of its steps carries (`seen`): verdicts that came after its last step, such
// as a probe's.
std::vector<std::string> flags_after_steps(const std::string& events_path, std::uintmax_t offset,
                                           const SystemInfo& system, const std::vector<std::string>& seen);
// What the censor's static firewall rules do to a system, which leave no event behind: its
// address on the IP blocklist ("ip-blocklist/drop"), its port outside the port allowlist
// ("port-allowlist/drop").
std::vector<std::string> static_flags(const CensorSettings& settings, const SystemInfo& system);
// The port alice's bytes go to at a lab address (443, except shadowsocks 8388 and obfs4 9443).
std::uint16_t port_of_address(const std::string& address);

struct ScenarioOptions {
  std::chrono::seconds deadline{60};
  bool quick = false;
  std::string run_dir;
  std::string events_path;  // empty: no censor
  std::uintmax_t events_from = 0;  // where this system's turn began in the event log (its client's start included)
};

// Runs the payloads of one (profile, system); alice and bob come from `services`.
std::vector<Cell> run_scenarios(const Services& services, const SystemInfo& system, const std::string& profile,
                                const Media& media, const PathMeter& meter, const ScenarioOptions& o);

}  // namespace postern::lab::runner
