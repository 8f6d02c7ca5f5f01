// The IMC 2020 probe set and reaction classes (src/postern/lab/probes.h): replay probes change
// exactly the documented byte positions, random probes fall in their length bands, and reactions
// seen from stock nginx and from proxies get the documented classes.
#include "postern/lab/probes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace postern::lab {
namespace {

using std::chrono::milliseconds;

Bytes flight(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  return b;
}

std::set<std::size_t> differing(const Bytes& a, const Bytes& b) {
  EXPECT_EQ(a.size(), b.size());
  std::set<std::size_t> out;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) out.insert(i);
  return out;
}

std::map<std::string, Bytes> by_name(const std::vector<Probe>& probes) {
  std::map<std::string, Bytes> m;
  for (const Probe& p : probes) EXPECT_TRUE(m.emplace(p.name, p.payload).second) << "duplicate " << p.name;
  return m;
}

TEST(LabProbes, ReplaysChangeExactlyTheirPositions) {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {  // many draws: no XOR value may be zero
    const Bytes f = flight(120, seed);
    std::mt19937_64 rng(seed * 7);
    const auto probes = by_name(replay_probes(f, rng));
    ASSERT_EQ(probes.size(), 5u);
    EXPECT_EQ(probes.at("R1"), f);
    EXPECT_EQ(differing(f, probes.at("R2")), (std::set<std::size_t>{0}));
    EXPECT_EQ(differing(f, probes.at("R3")), (std::set<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7, 62, 63}));
    EXPECT_EQ(differing(f, probes.at("R4")), (std::set<std::size_t>{16}));
    EXPECT_EQ(differing(f, probes.at("R5")), (std::set<std::size_t>{6, 16}));
  }
}

TEST(LabProbes, ShortFlightsLeaveOutPositionsPastTheEnd) {
  const Bytes f40 = flight(40, 3);
  std::mt19937_64 rng(1);
  auto probes = by_name(replay_probes(f40, rng));
  ASSERT_EQ(probes.size(), 5u);
  EXPECT_EQ(differing(f40, probes.at("R3")), (std::set<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(differing(f40, probes.at("R5")), (std::set<std::size_t>{6, 16}));

  // 10 bytes: R4 (byte 16 only) would be R1 again and is not made; R5 keeps byte 6.
  const Bytes f10 = flight(10, 4);
  probes = by_name(replay_probes(f10, rng));
  EXPECT_EQ(probes.size(), 4u);
  EXPECT_EQ(probes.count("R4"), 0u);
  EXPECT_EQ(differing(f10, probes.at("R5")), (std::set<std::size_t>{6}));
  EXPECT_EQ(differing(f10, probes.at("R3")), (std::set<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7}));

  // 3 bytes: only R1, R2, R3.
  probes = by_name(replay_probes(flight(3, 5), rng));
  EXPECT_EQ(probes.size(), 3u);
  EXPECT_TRUE(replay_probes({}, rng).empty());
}

TEST(LabProbes, RandomProbesInTheirBands) {
  const std::vector<std::pair<std::size_t, std::size_t>> bands = {{7, 9},   {11, 13}, {15, 17}, {21, 23},
                                                                  {32, 34}, {40, 42}, {48, 50}};
  std::set<std::size_t> lengths_seen;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    std::mt19937_64 rng(seed);
    const std::vector<Probe> probes = random_probes(rng);
    ASSERT_EQ(probes.size(), bands.size() + 1);
    for (std::size_t i = 0; i < bands.size(); ++i) {
      const std::size_t n = probes[i].payload.size();
      EXPECT_GE(n, bands[i].first);
      EXPECT_LE(n, bands[i].second);
      EXPECT_EQ(probes[i].name, "NR1-" + std::to_string(n));
      lengths_seen.insert(n);
    }
    EXPECT_EQ(probes.back().name, "NR2");
    EXPECT_EQ(probes.back().payload.size(), 221u);
  }
  EXPECT_EQ(lengths_seen.size(), 21u);  // every length of every band was drawn at least once

  std::mt19937_64 a(99), b(99);  // a seed fixes the set
  const auto pa = random_probes(a), pb = random_probes(b);
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(pa[i].payload, pb[i].payload);
}

Reaction reaction(std::string_view data, Reaction::End end, long ms) {
  Reaction r;
  r.data.assign(data.begin(), data.end());
  r.end = end;
  r.after = milliseconds(ms);
  return r;
}

TEST(LabProbes, ReactionClasses) {
  using E = Reaction::End;
  // A plaintext fatal decode_error alert (OpenSSL's answer to a broken ClientHello).
  Reaction alert;
  alert.data = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32};
  alert.end = E::fin;
  alert.after = milliseconds(4);
  EXPECT_EQ(reaction_class(alert), "tls:21-alert:50;fin;<1s");

  const Reaction http400 = reaction(
      "HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n\r\n<html>", E::fin, 2);
  EXPECT_EQ(reaction_class(http400), "http:HTTP/1.1 400 Bad Request;fin;<1s");

  EXPECT_EQ(reaction_class(reaction("", E::fin, 0)), "none;fin;<1s");
  EXPECT_EQ(reaction_class(reaction("", E::fin, 60'000)), "none;fin;~60s");
  EXPECT_EQ(reaction_class(reaction("", E::fin, 60'499)), "none;fin;~60s");
  EXPECT_EQ(reaction_class(reaction("", E::fin, 60'500)), "none;fin;~60s+");
  EXPECT_EQ(reaction_class(reaction("", E::rst, 999)), "none;rst;<1s");
  EXPECT_EQ(reaction_class(reaction("", E::rst, 1000)), "none;rst;~1s");
  EXPECT_EQ(reaction_class(reaction("", E::rst, 2499)), "none;rst;~2s");
  EXPECT_EQ(reaction_class(reaction("", E::rst, 2500)), "none;rst;~3s");
  EXPECT_EQ(reaction_class(reaction("", E::open, 75'000)), "none;open;open");
  EXPECT_EQ(reaction_class(reaction("", E::connect_failed, 3)), "none;connect_failed;<1s");
  EXPECT_EQ(reaction_class(reaction("SSH-2.0-OpenSSH_9.2\r\n", E::open, 10'000)), "data;open;open");

  Reaction server_hello;  // a handshake record (e.g. a ServerHello)
  server_hello.data = {0x16, 0x03, 0x03, 0x00, 0x7a, 0x02};
  server_hello.end = E::open;
  EXPECT_EQ(reaction_class(server_hello), "tls:22;open;open");
  Reaction encrypted_alert;  // an alert record too long to be plaintext: no description
  encrypted_alert.data = {0x15, 0x03, 0x03, 0x00, 0x1a, 0x99, 0x98};
  encrypted_alert.end = E::rst;
  EXPECT_EQ(reaction_class(encrypted_alert), "tls:21-alert;rst;<1s");
  // Control bytes in a status line are masked.
  EXPECT_EQ(reaction_class(reaction("HTTP/1.1 200 \x01K\r\n", E::fin, 5)), "http:HTTP/1.1 200 ?K;fin;<1s");
}

TEST(LabProbes, SameReaction) {
  using E = Reaction::End;
  EXPECT_TRUE(same_reaction(reaction("", E::fin, 10), reaction("", E::fin, 900)));
  EXPECT_TRUE(same_reaction(reaction("", E::open, 60'000), reaction("", E::open, 75'000)));
  EXPECT_TRUE(same_reaction(reaction("HTTP/1.1 400 Bad Request\r\nA: b\r\n", E::fin, 1),
                            reaction("HTTP/1.1 400 Bad Request\r\nC: d\r\n", E::fin, 3)));
  EXPECT_FALSE(same_reaction(reaction("", E::fin, 10), reaction("", E::rst, 10)));
  EXPECT_FALSE(same_reaction(reaction("", E::fin, 1400), reaction("", E::fin, 1600)));
  EXPECT_FALSE(same_reaction(reaction("", E::fin, 60'000), reaction("", E::open, 60'000)));
  EXPECT_FALSE(same_reaction(reaction("HTTP/1.1 400 Bad Request\r\n", E::fin, 1),
                             reaction("HTTP/1.1 404 Not Found\r\n", E::fin, 1)));
  EXPECT_FALSE(same_reaction(reaction("x", E::fin, 1), reaction("", E::fin, 1)));
}

}  // namespace
}  // namespace postern::lab
