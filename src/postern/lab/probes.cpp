// The IMC 2020 probe set and the reaction classes a prober compares.
//
// Replay probes: a probe none of whose changed positions lies inside the flight would be R1 again
// and is not made (an empty flight gives no replay probes at all). Random draws come only from the
// caller's generator, so a seed fixes the whole set.
//
// Reaction class, "<data>;<end>;<timing>" (deterministic, for logs and comparisons):
//   data    "none" when nothing came back; "tls:<type>" when the data starts with a TLS record
//           header (type 20-23, version 3.x), written "tls:21-alert" for an alert and
//           "tls:21-alert:<description>" when the alert is a 2-byte plaintext one; "http:" and
//           the status line (at most 64 bytes, non-printable bytes as '?') when it starts with
//           "HTTP/"; else "data".
//   end     fin, rst, open, connect_failed.
//   timing  "open" for an open connection; else "<1s" under 1000 ms, "~Ns" for N = the time
//           rounded to whole seconds (half up) while N <= 60, then "~60s+".
#include "postern/lab/probes.h"

#include <array>
#include <string_view>
#include <utility>

namespace postern::lab {
namespace {

std::uint8_t random_byte(std::mt19937_64& rng) {
  return static_cast<std::uint8_t>(std::uniform_int_distribution<unsigned>(0, 255)(rng));
}

std::uint8_t random_nonzero(std::mt19937_64& rng) {
  return static_cast<std::uint8_t>(std::uniform_int_distribution<unsigned>(1, 255)(rng));
}

Bytes random_bytes(std::size_t n, std::mt19937_64& rng) {
  Bytes b(n);
  for (auto& x : b) x = random_byte(rng);
  return b;
}

struct ReplaySpec {
  const char* name;
  std::vector<std::size_t> positions;
};

std::string data_kind(ByteView data) {
  if (data.empty()) return "none";
  if (data.size() >= 3 && data[0] >= 20 && data[0] <= 23 && data[1] == 0x03) {
    std::string s = "tls:" + std::to_string(data[0]);
    if (data[0] == 21) {
      s += "-alert";
      // A plaintext alert record: header, then level and description.
      if (data.size() >= 7 && data[3] == 0 && data[4] == 2) s += ":" + std::to_string(data[6]);
    }
    return s;
  }
  constexpr std::string_view kHttp = "HTTP/";
  if (data.size() >= kHttp.size() && as_chars(data.first(kHttp.size())) == kHttp) {
    constexpr std::size_t kMaxLine = 64;
    std::string line;
    for (std::size_t i = 0; i < data.size() && line.size() < kMaxLine; ++i) {
      const std::uint8_t c = data[i];
      if (c == '\r' || c == '\n') break;
      line.push_back(c >= 0x20 && c <= 0x7e ? static_cast<char>(c) : '?');
    }
    return "http:" + line;
  }
  return "data";
}

const char* end_name(Reaction::End e) {
  switch (e) {
    case Reaction::End::fin:
      return "fin";
    case Reaction::End::rst:
      return "rst";
    case Reaction::End::open:
      return "open";
    case Reaction::End::connect_failed:
      return "connect_failed";
  }
  return "?";
}

std::string timing(const Reaction& r) {
  if (r.end == Reaction::End::open) return "open";
  const auto ms = r.after.count();
  if (ms < 1000) return "<1s";
  const auto seconds = (ms + 500) / 1000;
  if (seconds > 60) return "~60s+";
  return "~" + std::to_string(seconds) + "s";
}

}  // namespace

std::vector<Probe> replay_probes(ByteView first_flight, std::mt19937_64& rng) {
  std::vector<Probe> out;
  if (first_flight.empty()) return out;
  out.push_back({"R1", Bytes(first_flight.begin(), first_flight.end())});
  const std::array<ReplaySpec, 4> specs{{
      {"R2", {0}},
      {"R3", {0, 1, 2, 3, 4, 5, 6, 7, 62, 63}},
      {"R4", {16}},
      {"R5", {6, 16}},
  }};
  for (const ReplaySpec& spec : specs) {
    Probe p{spec.name, Bytes(first_flight.begin(), first_flight.end())};
    bool changed = false;
    for (std::size_t i : spec.positions) {
      if (i >= p.payload.size()) continue;
      p.payload[i] ^= random_nonzero(rng);
      changed = true;
    }
    if (changed) out.push_back(std::move(p));
  }
  return out;
}

std::vector<Probe> random_probes(std::mt19937_64& rng) {
  constexpr std::array<std::pair<std::size_t, std::size_t>, 7> kBands{
      {{7, 9}, {11, 13}, {15, 17}, {21, 23}, {32, 34}, {40, 42}, {48, 50}}};
  std::vector<Probe> out;
  for (const auto& [lo, hi] : kBands) {
    const std::size_t n = std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
    out.push_back({"NR1-" + std::to_string(n), random_bytes(n, rng)});
  }
  out.push_back({"NR2", random_bytes(221, rng)});
  return out;
}

std::string reaction_class(const Reaction& r) {
  return data_kind(r.data) + ";" + end_name(r.end) + ";" + timing(r);
}

bool same_reaction(const Reaction& a, const Reaction& b) {
  return reaction_class(a) == reaction_class(b);
}

}  // namespace postern::lab
