#include "postern/lab/censor.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "postern/lab/first_flight.h"

namespace postern::lab {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// --- A real TLS 1.3 ClientHello, written out field by field (RFC 8446 section 4.1.2) ---

void put16(Bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put24(Bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 16));
  put16(b, v);
}
void put_ext(Bytes& b, std::uint16_t type, const Bytes& body) {
  put16(b, type);
  put16(b, body.size());
  append(b, body);
}

// A ClientHello for `sni` as one TLS record; `extra_cipher` changes the fingerprint.
Bytes client_hello(const std::string& sni, std::uint16_t extra_cipher = 0) {
  Bytes ext;
  Bytes sni_body;  // server_name: list of (type 0, host_name)
  put16(sni_body, sni.size() + 3);
  sni_body.push_back(0);
  put16(sni_body, sni.size());
  append(sni_body, as_bytes(sni));
  put_ext(ext, 0x0000, sni_body);
  put_ext(ext, 0x000a, Bytes{0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18});  // x25519, P-256, P-384
  put_ext(ext, 0x000b, Bytes{0x01, 0x00});                                      // uncompressed points
  put_ext(ext, 0x000d, Bytes{0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01});  // signature algorithms
  put_ext(ext, 0x0010, Bytes{0x00, 0x0c, 0x02, 'h', '2', 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1'});
  put_ext(ext, 0x002b, Bytes{0x02, 0x03, 0x04});  // supported_versions: TLS 1.3
  Bytes share{0x00, 0x24, 0x00, 0x1d, 0x00, 0x20};  // key_share: one x25519 key
  for (int i = 0; i < 32; ++i) share.push_back(static_cast<std::uint8_t>(0x40 + i));
  put_ext(ext, 0x0033, share);

  Bytes body{0x03, 0x03};  // legacy_version
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(i * 7));  // random
  body.push_back(32);                                                          // legacy_session_id
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(0xa0 + i));
  std::vector<std::uint16_t> ciphers{0x1301, 0x1302, 0x1303, 0xc02f};
  if (extra_cipher != 0) ciphers.push_back(extra_cipher);
  put16(body, ciphers.size() * 2);
  for (auto c : ciphers) put16(body, c);
  body.push_back(1);  // compression methods: null
  body.push_back(0);
  put16(body, ext.size());
  append(body, ext);

  Bytes handshake{0x01};
  put24(handshake, body.size());
  append(handshake, body);
  Bytes record{0x16, 0x03, 0x01};
  put16(record, handshake.size());
  append(record, handshake);
  return record;
}

// A ClientHello without SNI, filling one 16 KiB record exactly (a
// long cipher list and a padding extension, 21).
Bytes large_client_hello() {
  Bytes body{0x03, 0x03};
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(i));
  body.push_back(0);  // no session id
  const std::size_t ciphers = 8064;
  put16(body, ciphers * 2);
  for (std::size_t i = 0; i < ciphers; ++i) put16(body, 0x1301);
  body.push_back(1);
  body.push_back(0);
  const std::size_t handshake_len = 16384 - 4;
  const std::size_t ext_len = handshake_len - body.size() - 2;
  put16(body, ext_len);
  put_ext(body, 0x0015, Bytes(ext_len - 4, 0));
  Bytes record{0x16, 0x03, 0x01};
  put16(record, 16384);
  record.push_back(0x01);
  put24(record, body.size());
  append(record, body);
  return record;
}

// Bytes that fail the FET rule (checked by the tests that use them): random, no printable head.
Bytes random_flight(std::uint64_t seed, std::size_t n = 300) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  b[0] = 0x8f;  // neither TLS nor printable
  return b;
}

Bytes text(const std::string& s) {
  auto v = as_bytes(s);
  return Bytes(v.begin(), v.end());
}

LabKnowledge knowledge() {
  LabKnowledge k;
  k.known_addresses = {"10.200.9.9"};
  k.known_names = {"chat.example"};
  k.forged_pool = {"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"};
  return k;
}

CensorSettings settings(const char* profile, std::uint64_t seed = 1) {
  auto s = make_profile(profile, knowledge(), seed);
  EXPECT_TRUE(s.ok());
  return *s;
}

const Clock::time_point t0 = Clock::time_point{} + seconds(1000);
const FlowKey flow{"10.100.0.2", "10.200.0.2", 443};

TEST(LabCensorTest, FixtureParsesAsAClientHello) {
  const auto r = parse_client_hello(client_hello("www.chat.example"));
  ASSERT_EQ(r.status, HelloParse::ok);
  EXPECT_EQ(r.hello.server_name, "www.chat.example");
  EXPECT_EQ(fet_exemption(random_flight(1)), FetExemption::none);
  EXPECT_EQ(fet_exemption(random_flight(2)), FetExemption::none);
}

TEST(LabCensorTest, OpenProfilePassesEverything) {
  Censor c(settings("open"), t0);
  EXPECT_EQ(c.on_connect(flow, t0).verdict, Verdict::pass);
  EXPECT_EQ(c.on_first_flight(flow, client_hello("chat.example"), t0).verdict, Verdict::pass);
  EXPECT_EQ(c.on_first_flight(flow, random_flight(1), t0).verdict, Verdict::pass);
  c.on_bytes(flow, 1ull << 40, t0);
  EXPECT_TRUE(c.on_dns_query(flow.client, "10.200.0.53", "chat.example", t0).empty());
  EXPECT_TRUE(c.take_firewall_actions().empty());
  EXPECT_TRUE(c.take_probe_requests().empty());
  EXPECT_TRUE(c.take_events().empty());
}

TEST(LabCensorTest, SniOnTheListIsResetAndThePenaltyBoxExpiresAfter90s) {
  Censor c(settings("sni-filter"), t0);
  const auto d = c.on_first_flight(flow, client_hello("WWW.Chat.Example"), t0);
  EXPECT_EQ(d.verdict, Verdict::rst);
  EXPECT_EQ(d.module, "sni");
  EXPECT_EQ(d.detail, "sni=www.chat.example");
  auto events = c.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].module, "sni");
  EXPECT_EQ(events[0].action, "rst");
  EXPECT_EQ(events[0].client, flow.client);
  EXPECT_EQ(events[0].server, flow.server);
  EXPECT_EQ(events[0].port, 443);
  EXPECT_DOUBLE_EQ(events[0].t, 0.0);
  EXPECT_TRUE(c.take_firewall_actions().empty());

  // A new connection on the same 3-tuple, whatever it sends, is reset while in the box.
  const auto in_box = c.on_connect(flow, t0 + seconds(89));
  EXPECT_EQ(in_box.verdict, Verdict::rst);
  EXPECT_EQ(in_box.module, "sni-penalty");
  events = c.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].module, "sni-penalty");
  EXPECT_DOUBLE_EQ(events[0].t, 89.0);
  // Another port or client is not in the box.
  EXPECT_EQ(c.on_connect(FlowKey{flow.client, flow.server, 8443}, t0 + seconds(10)).verdict, Verdict::pass);
  EXPECT_EQ(c.on_connect(FlowKey{"10.100.0.3", flow.server, 443}, t0 + seconds(10)).verdict, Verdict::pass);
  // 90 s later the box is empty.
  EXPECT_EQ(c.on_connect(flow, t0 + seconds(90)).verdict, Verdict::pass);
  EXPECT_EQ(c.on_connect(flow, t0 + seconds(91)).verdict, Verdict::pass);
  EXPECT_TRUE(c.take_events().empty());
}

TEST(LabCensorTest, SniOffTheListAndNamesThatOnlyEndAlikePass) {
  Censor c(settings("sni-filter"), t0);
  EXPECT_EQ(c.on_first_flight(flow, client_hello("www.example.org"), t0).verdict, Verdict::pass);
  EXPECT_EQ(c.on_first_flight(flow, client_hello("notchat.example"), t0).verdict, Verdict::pass);
  EXPECT_EQ(c.on_connect(flow, t0 + seconds(1)).verdict, Verdict::pass);
  EXPECT_TRUE(c.take_events().empty());
}

TEST(LabCensorTest, HttpHostOnTheListIsReset) {
  Censor c(settings("sni-filter"), t0);
  const FlowKey http{flow.client, flow.server, 80};
  const auto d = c.on_first_flight(http, text("GET / HTTP/1.1\r\nHost: Chat.Example:80\r\nAccept: */*\r\n\r\n"), t0);
  EXPECT_EQ(d.verdict, Verdict::rst);
  EXPECT_EQ(d.detail, "host=chat.example");
  EXPECT_EQ(c.on_connect(http, t0 + seconds(30)).verdict, Verdict::rst);
  EXPECT_EQ(c.on_first_flight(flow, text("GET / HTTP/1.1\r\nHost: other.example\r\n\r\n"), t0).verdict,
            Verdict::pass);
}

TEST(LabCensorTest, IncompleteClientHelloAsksForMore) {
  const Bytes hello = client_hello("chat.example");
  Censor c(settings("sni-filter"), t0);
  const Bytes head(hello.begin(), hello.begin() + 40);
  EXPECT_EQ(c.on_first_flight(flow, head, t0).verdict, Verdict::need_more);
  EXPECT_TRUE(c.take_events().empty());
  EXPECT_EQ(c.on_first_flight(flow, hello, t0).verdict, Verdict::rst);

  // Without SNI filtering or fingerprinting nothing waits for the ClientHello.
  Censor fet(settings("fet"), t0);
  EXPECT_EQ(fet.on_first_flight(flow, head, t0).verdict, Verdict::pass);
  // Nor with the modules on once 16 KiB were read: the flight is taken as it is.
  const Bytes huge = large_client_hello();
  ASSERT_EQ(parse_client_hello(huge).status, HelloParse::ok);
  const Bytes big(huge.begin(), huge.begin() + 16 * 1024);
  ASSERT_EQ(parse_client_hello(big).status, HelloParse::incomplete);
  Censor sni(settings("sni-filter"), t0);
  EXPECT_EQ(sni.on_first_flight(flow, Bytes(big.begin(), big.end() - 1), t0).verdict, Verdict::need_more);
  EXPECT_EQ(sni.on_first_flight(flow, big, t0).verdict, Verdict::pass);
}

TEST(LabCensorTest, FingerprintDenyAndAllowLists) {
  const Bytes hello = client_hello("www.example.org");
  const auto parsed = parse_client_hello(hello);
  ASSERT_EQ(parsed.status, HelloParse::ok);
  const std::string fp4 = ja4(parsed.hello);
  const std::string fp3 = ja3_hash(parsed.hello);
  const Bytes other = client_hello("www.example.org", 0xc030);

  {  // JA4 deny list
    CensorSettings s = settings("tls-fingerprint");
    s.known.ja4_deny = {fp4};
    Censor c(s, t0);
    const auto d = c.on_first_flight(flow, hello, t0);
    EXPECT_EQ(d.verdict, Verdict::blackhole);
    EXPECT_EQ(d.module, "ja4");
    EXPECT_NE(d.detail.find(fp4), std::string::npos);
    const auto fw = c.take_firewall_actions();
    ASSERT_EQ(fw.size(), 1u);
    EXPECT_EQ(fw[0].kind, FirewallAction::Kind::drop_flow);
    EXPECT_EQ(fw[0].key, flow);
    EXPECT_EQ(fw[0].duration, seconds(180));
    EXPECT_EQ(c.take_events().size(), 1u);
    EXPECT_EQ(c.on_first_flight(flow, other, t0).verdict, Verdict::pass);  // another fingerprint
  }
  {  // JA3 deny list
    CensorSettings s = settings("tls-fingerprint");
    s.known.ja3_deny = {fp3};
    Censor c(s, t0);
    const auto d = c.on_first_flight(flow, hello, t0);
    EXPECT_EQ(d.verdict, Verdict::blackhole);
    EXPECT_EQ(d.module, "ja3");
    EXPECT_EQ(c.on_first_flight(flow, other, t0).verdict, Verdict::pass);
  }
  {  // allow-list mode: only listed fingerprints pass; non-TLS flights are not fingerprinted
    CensorSettings s = settings("tls-fingerprint");
    s.known.ja4_allow = {fp4};
    Censor c(s, t0);
    EXPECT_EQ(c.on_first_flight(flow, hello, t0).verdict, Verdict::pass);
    EXPECT_EQ(c.on_first_flight(flow, other, t0).verdict, Verdict::blackhole);
    EXPECT_EQ(c.on_first_flight(flow, random_flight(1), t0).verdict, Verdict::pass);
    EXPECT_EQ(c.on_first_flight(flow, text("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"), t0).verdict,
              Verdict::pass);
  }
}

TEST(LabCensorTest, FetBlackholesRandomFlightsAndSparesTls) {
  Censor c(settings("fet"), t0);
  EXPECT_EQ(c.on_first_flight(flow, client_hello("www.example.org"), t0).verdict, Verdict::pass);
  EXPECT_EQ(c.on_first_flight(flow, text("GET / HTTP/1.1\r\n\r\n"), t0).verdict, Verdict::pass);
  const auto d = c.on_first_flight(flow, random_flight(1), t0 + milliseconds(1500));
  EXPECT_EQ(d.verdict, Verdict::blackhole);
  EXPECT_EQ(d.module, "fet");
  EXPECT_EQ(d.detail, "exemption=none");
  const auto fw = c.take_firewall_actions();
  ASSERT_EQ(fw.size(), 1u);
  EXPECT_EQ(fw[0].kind, FirewallAction::Kind::drop_flow);
  EXPECT_EQ(fw[0].key, flow);
  EXPECT_EQ(fw[0].duration, seconds(180));
  EXPECT_EQ(fw[0].module, "fet");
  const auto events = c.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].module, "fet");
  EXPECT_EQ(events[0].action, "blackhole");
  EXPECT_DOUBLE_EQ(events[0].t, 1.5);
  EXPECT_TRUE(c.take_probe_requests().empty());  // active probing is off
}

TEST(LabCensorTest, ProbabilityZeroNeverBlocksAndOneAlwaysDoes) {
  for (double p : {0.0, 1.0}) {
    CensorSettings s = settings("gfw");
    s.fet_probability = p;
    s.sni_penalty_probability = p;
    Censor c(s, t0);
    int fet_blocks = 0;
    int penalty_blocks = 0;
    const int n = 200;
    for (int i = 0; i < n; ++i) {
      const FlowKey k{"10.100.0.2", "10.200.0.2", static_cast<std::uint16_t>(1000 + i)};
      if (c.on_first_flight(k, random_flight(static_cast<std::uint64_t>(i)), t0).verdict == Verdict::blackhole) {
        ++fet_blocks;
      }
      const FlowKey named{"10.100.0.2", "10.200.0.3", static_cast<std::uint16_t>(1000 + i)};
      EXPECT_EQ(c.on_first_flight(named, client_hello("chat.example"), t0).verdict, Verdict::rst);
      if (c.on_connect(named, t0 + seconds(1)).verdict == Verdict::rst) ++penalty_blocks;
    }
    EXPECT_EQ(fet_blocks, p == 0.0 ? 0 : n) << p;
    EXPECT_EQ(penalty_blocks, p == 0.0 ? 0 : n) << p;
  }
}

std::vector<Verdict> gfw_run(std::uint64_t seed) {
  Censor c(settings("gfw", seed), t0);
  std::vector<Verdict> out;
  for (int i = 0; i < 300; ++i) {
    const FlowKey k{"10.100.0.2", "10.200.0.2", static_cast<std::uint16_t>(2000 + i)};
    out.push_back(c.on_first_flight(k, random_flight(static_cast<std::uint64_t>(i)), t0).verdict);
    const FlowKey named{"10.100.0.2", "10.200.0.3", static_cast<std::uint16_t>(2000 + i)};
    out.push_back(c.on_first_flight(named, client_hello("chat.example"), t0).verdict);
    out.push_back(c.on_connect(named, t0 + seconds(5)).verdict);
  }
  return out;
}

TEST(LabCensorTest, SameSeedSameDecisions) {
  const auto a = gfw_run(5);
  const auto b = gfw_run(5);
  EXPECT_EQ(a, b);
  // The draws are real: with p = 0.26 and 0.6 some flows are blocked and some are not.
  int fet_blocked = 0;
  int penalty_reset = 0;
  for (std::size_t i = 0; i < a.size(); i += 3) {
    fet_blocked += a[i] == Verdict::blackhole ? 1 : 0;
    penalty_reset += a[i + 2] == Verdict::rst ? 1 : 0;
  }
  EXPECT_GT(fet_blocked, 30);   // about 78 of 300
  EXPECT_LT(fet_blocked, 150);
  EXPECT_GT(penalty_reset, 120);  // about 180 of 300
  EXPECT_LT(penalty_reset, 240);
  EXPECT_NE(a, gfw_run(6));
}

TEST(LabCensorTest, ProbesQueuedOncePerServer) {
  Censor c(settings("active-probing"), t0);
  const Bytes first = random_flight(3);
  EXPECT_EQ(c.on_first_flight(flow, first, t0).verdict, Verdict::pass);  // probing never blocks by itself
  EXPECT_EQ(c.on_first_flight(FlowKey{"10.100.0.7", flow.server, flow.port}, first, t0 + seconds(1)).verdict,
            Verdict::pass);
  EXPECT_EQ(c.on_first_flight(flow, client_hello("www.example.org"), t0 + seconds(2)).verdict, Verdict::pass);
  auto probes = c.take_probe_requests();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].server, flow.server);
  EXPECT_EQ(probes[0].port, 443);
  EXPECT_EQ(probes[0].first_flight, first);
  EXPECT_EQ(probes[0].not_before, t0 + milliseconds(500));
  EXPECT_EQ(probes[0].module, "new-server");
  // Another port of the same address is another server.
  EXPECT_EQ(c.on_first_flight(FlowKey{flow.client, flow.server, 8443}, first, t0).verdict, Verdict::pass);
  probes = c.take_probe_requests();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].port, 8443);
  const auto events = c.take_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].module, "probe");
  EXPECT_EQ(events[0].action, "queue");
}

TEST(LabCensorTest, GfwProbesASecondAfterANewServerAndFetFailuresWhenOnlySuspicious) {
  Censor gfw(settings("gfw"), t0);
  (void)gfw.on_first_flight(flow, client_hello("www.example.org"), t0);
  auto probes = gfw.take_probe_requests();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].not_before, t0 + seconds(1));

  CensorSettings s = settings("gfw");
  s.probe_every_new_server = false;
  s.fet_probability = 0.0;  // spared by the draw, still suspicious
  Censor c(s, t0);
  EXPECT_EQ(c.on_first_flight(flow, client_hello("www.example.org"), t0).verdict, Verdict::pass);
  EXPECT_TRUE(c.take_probe_requests().empty());
  EXPECT_EQ(c.on_first_flight(flow, random_flight(4), t0).verdict, Verdict::pass);
  probes = c.take_probe_requests();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].module, "fet");
  EXPECT_EQ(probes[0].first_flight, random_flight(4));
}

TEST(LabCensorTest, ProbeThatDiffersBlocksTheAddressForItsTime) {
  Censor c(settings("active-probing"), t0);
  c.on_probe_result(flow.server, 443, false, "R1 same", t0);
  auto events = c.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, "probe-same");
  EXPECT_TRUE(c.take_firewall_actions().empty());
  EXPECT_EQ(c.on_connect(flow, t0).verdict, Verdict::pass);

  c.on_probe_result(flow.server, 443, true, "NR2: open vs fin", t0 + seconds(2));
  events = c.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, "probe-differs");
  EXPECT_EQ(events[0].detail, "NR2: open vs fin");
  const auto fw = c.take_firewall_actions();
  ASSERT_EQ(fw.size(), 1u);
  EXPECT_EQ(fw[0].kind, FirewallAction::Kind::drop_address);
  EXPECT_EQ(fw[0].key.server, flow.server);
  EXPECT_EQ(fw[0].duration, seconds(3600));
  // Any client, any port: black-holed until the block ends.
  const auto d = c.on_connect(FlowKey{"10.100.0.9", flow.server, 80}, t0 + seconds(100));
  EXPECT_EQ(d.verdict, Verdict::blackhole);
  EXPECT_EQ(d.module, "address");
  EXPECT_EQ(c.on_connect(FlowKey{flow.client, "10.200.0.77", 443}, t0 + seconds(100)).verdict, Verdict::pass);
  EXPECT_EQ(c.on_connect(flow, t0 + seconds(2 + 3600)).verdict, Verdict::pass);
}

TEST(LabCensorTest, VolumeEscalationTriggersOnce) {
  CensorSettings s = settings("volume");
  s.volume_bytes = 1000;
  Censor c(s, t0);
  const FlowKey a{"10.100.0.2", "10.200.0.5", 443};
  const FlowKey b{"10.100.0.3", "10.200.0.5", 443};
  c.on_bytes(a, 600, t0);
  c.on_bytes(b, 400, t0);  // exactly the limit: not over it
  EXPECT_TRUE(c.take_probe_requests().empty());
  c.on_bytes(a, 1, t0 + seconds(3));
  auto probes = c.take_probe_requests();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].server, "10.200.0.5");
  EXPECT_EQ(probes[0].module, "volume");
  EXPECT_TRUE(probes[0].first_flight.empty());
  EXPECT_EQ(probes[0].not_before, t0 + seconds(3) + s.probe_delay);
  const auto events = c.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].module, "volume");
  EXPECT_EQ(events[0].detail, "bytes=1001 clients=2");
  c.on_bytes(a, 1'000'000, t0 + seconds(4));
  EXPECT_TRUE(c.take_probe_requests().empty());
  EXPECT_TRUE(c.take_events().empty());

  // Many clients: an ordinary busy server, never escalated.
  const std::string busy = "10.200.0.6";
  for (int i = 0; i < 3; ++i) c.on_bytes(FlowKey{"10.100.0." + std::to_string(10 + i), busy, 443}, 10, t0);
  c.on_bytes(FlowKey{"10.100.0.10", busy, 443}, 5000, t0);
  EXPECT_TRUE(c.take_probe_requests().empty());
}

TEST(LabCensorTest, TlsInTlsBlackholesOnlyWhenOn) {
  Censor on(settings("tls-in-tls"), t0);
  const auto d = on.on_tls_in_tls(flow, "c534 s1466 c97", t0);
  EXPECT_EQ(d.verdict, Verdict::blackhole);
  EXPECT_EQ(d.module, "tls-in-tls");
  const auto fw = on.take_firewall_actions();
  ASSERT_EQ(fw.size(), 1u);
  EXPECT_EQ(fw[0].kind, FirewallAction::Kind::drop_flow);
  EXPECT_EQ(fw[0].duration, seconds(180));
  auto events = on.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, "blackhole");
  EXPECT_NE(events[0].detail.find("c534 s1466 c97"), std::string::npos);

  Censor off(settings("fet"), t0);
  EXPECT_EQ(off.on_tls_in_tls(flow, "c534 s1466 c97", t0).verdict, Verdict::pass);
  EXPECT_TRUE(off.take_firewall_actions().empty());
  events = off.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, "pass");
}

TEST(LabCensorTest, DnsInjectionForgesOneStableAddressFromThePool) {
  Censor c(settings("dns-injection"), t0);
  const auto a = c.on_dns_query("10.100.0.2", "8.8.8.8", "chat.example", t0);
  ASSERT_EQ(a.size(), 1u);
  const auto& pool = knowledge().forged_pool;
  EXPECT_NE(std::find(pool.begin(), pool.end(), a[0]), pool.end());
  EXPECT_EQ(c.on_dns_query("10.100.0.3", "1.1.1.1", "Chat.Example.", t0), a);  // same name, same answer
  // Subdomains are listed too; over many names the pool is used, not one address.
  std::set<std::string> used;
  for (int i = 0; i < 40; ++i) {
    const auto f = c.on_dns_query("10.100.0.2", "8.8.8.8", "h" + std::to_string(i) + ".chat.example", t0);
    ASSERT_EQ(f.size(), 1u);
    used.insert(f[0]);
  }
  EXPECT_GT(used.size(), 1u);
  EXPECT_TRUE(c.on_dns_query("10.100.0.2", "8.8.8.8", "www.example.org", t0).empty());
  const auto events = c.take_events();
  ASSERT_EQ(events.size(), 42u);
  EXPECT_EQ(events[0].module, "dns");
  EXPECT_EQ(events[0].action, "forged");
  EXPECT_EQ(events[0].server, "8.8.8.8");
  EXPECT_EQ(events[0].port, 53);

  Censor off(settings("sni-filter"), t0);
  EXPECT_TRUE(off.on_dns_query("10.100.0.2", "8.8.8.8", "chat.example", t0).empty());
}

TEST(LabCensorTest, EventsAreOneJsonObjectPerLine) {
  Event e;
  e.t = 12.25;
  e.module = "sni";
  e.action = "rst";
  e.client = "10.100.0.2";
  e.server = "10.200.0.2";
  e.port = 443;
  e.detail = std::string("sni=\xff\xfe\"x\n");  // bytes from the wire, not UTF-8
  const std::string line = to_json_line(e);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 7u);
  EXPECT_DOUBLE_EQ(j["t"].get<double>(), 12.25);
  EXPECT_EQ(j["module"], "sni");
  EXPECT_EQ(j["action"], "rst");
  EXPECT_EQ(j["client"], "10.100.0.2");
  EXPECT_EQ(j["server"], "10.200.0.2");
  EXPECT_EQ(j["port"], 443);
  EXPECT_EQ(j["detail"].get<std::string>().substr(0, 4), "sni=");
}

}  // namespace
}  // namespace postern::lab
