// The TLS-in-TLS burst heuristic (src/postern/lab/tls_in_tls.h) on synthetic record streams shaped
// like real connections: an HTTPS proxy tunnelling an inner TLS 1.3 handshake (outer TLS 1.3 with
// and without the middlebox-compat ChangeCipherSpec, and outer TLS 1.2), a plain HTTPS exchange,
// and non-TLS input, each fed whole, byte by byte and in random chunks.
#include "postern/lab/tls_in_tls.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

namespace postern::lab {
namespace {

constexpr Direction C = Direction::client_to_server;
constexpr Direction S = Direction::server_to_client;

// A record of `length` payload bytes (their content does not matter to the detector).
Bytes rec(std::uint8_t type, std::size_t length) {
  Bytes b{type, 0x03, 0x03, static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
  b.resize(5 + length, 0x5a);
  return b;
}
Bytes hs(std::size_t n) {
  return rec(22, n);
}
Bytes ccs() {
  return rec(20, 1);
}
Bytes ad(std::size_t n) {
  return rec(23, n);
}

// What crosses the wire, in order: (direction, bytes of one TCP segment).
using Stream = std::vector<std::pair<Direction, Bytes>>;

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) append(out, p);
  return out;
}

// An HTTPS proxy over outer TLS 1.3 (middlebox compat) tunnelling a client's TLS 1.3 handshake,
// with the sizes measured in the lab (inner 512-byte ClientHello -> 534-byte outer record, inner
// server flight 1466, inner Finished 97) and OpenSSL's two session tickets.
Stream tunnel_tls13() {
  return {
      {C, hs(512)},                          // outer ClientHello
      {S, cat({hs(122), ccs(), ad(2100)})},  // ServerHello, CCS, encrypted EE..Finished
      {C, cat({ccs(), ad(53), ad(534)})},    // CCS, Finished, inner ClientHello
      {S, cat({ad(250), ad(250)})},          // session tickets
      {S, ad(1466)},                         // inner server flight
      {C, ad(97)},                           // inner Finished
      {S, ad(600)},                          // inner data
      {C, ad(200)},
      {S, ad(5000)},
  };
}

// The same over outer TLS 1.3 without the compat ChangeCipherSpec.
Stream tunnel_tls13_no_ccs() {
  return {
      {C, hs(512)},
      {S, cat({hs(122), ad(2100)})},
      {C, cat({ad(53), ad(534)})},
      {S, ad(1466)},
      {C, ad(97)},
      {S, ad(600)},
      {C, ad(200)},
  };
}

// Outer TLS 1.2: the encrypted Finished records are handshake records after the CCS.
Stream tunnel_tls12() {
  return {
      {C, hs(200)},
      {S, cat({hs(90), hs(1200), hs(300), hs(4)})},
      {C, cat({hs(70), ccs(), hs(40)})},
      {S, cat({ccs(), hs(40)})},
      {C, ad(534)},
      {S, ad(1466)},
      {C, ad(97)},
      {S, ad(800)},
      {C, ad(300)},
  };
}

// Record shapes captured on loopback (Python 3.11 ssl on OpenSSL 3.0, RSA-2048 self-signed
// certificate): a client runs a TLS 1.3 handshake and one HTTP request through an outer TLS
// connection to a relay that forwards the plaintext to the inner TLS server; a plain TCP tap in
// front of the relay wrote down the segments. In TLS 1.3 the outer server's first session ticket
// arrives before the client's first data, and its second one right after it.
Stream loopback_outer_tls13() {
  return {
      {C, hs(512)},
      {S, cat({hs(122), ccs(), ad(23), ad(817), ad(281), ad(69)})},
      {C, cat({ccs(), ad(69)})},
      {S, ad(250)},
      {C, ad(534)},
      {S, ad(250)},
      {S, ad(1360)},
      {C, ad(97)},
      {S, ad(272)},
      {C, ad(77)},
      {S, ad(272)},
      {S, ad(3080)},
  };
}
Stream loopback_outer_tls12() {
  return {
      {C, hs(512)},
      {S, cat({hs(65), hs(797), hs(300), hs(4)})},
      {C, cat({hs(37), ccs(), hs(40)})},
      {S, cat({hs(186), ccs(), hs(40)})},
      {C, ad(541)},
      {S, ad(1210)},
      {C, ad(117)},
      {S, ad(266)},
      {C, ad(91)},
      {S, ad(3094)},
  };
}

// A browser fetching a page over TLS 1.3: a request, a response, another request.
Stream plain_https() {
  return {
      {C, hs(512)},
      {S, cat({hs(122), ccs(), ad(2100)})},
      {C, cat({ccs(), ad(53), ad(120)})},
      {S, cat({ad(250), ad(250), ad(4000)})},
      {C, ad(130)},
      {S, ad(3000)},
      {C, ad(90)},
      {S, ad(100)},
  };
}

TlsInTlsDetector run_whole(const Stream& s) {
  TlsInTlsDetector d;
  for (const auto& [dir, bytes] : s) d.feed(dir, bytes);
  return d;
}

TlsInTlsDetector run_bytewise(const Stream& s) {
  TlsInTlsDetector d;
  for (const auto& [dir, bytes] : s)
    for (std::uint8_t b : bytes) d.feed(dir, ByteView(&b, 1));
  return d;
}

TlsInTlsDetector run_chunks(const Stream& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  TlsInTlsDetector d;
  for (const auto& [dir, bytes] : s) {
    std::size_t pos = 0;
    while (pos < bytes.size()) {
      const std::size_t n = std::min<std::size_t>(bytes.size() - pos, 1 + rng() % 700);
      d.feed(dir, ByteView(bytes).subspan(pos, n));
      pos += n;
    }
  }
  return d;
}

void expect_same(const TlsInTlsDetector& a, const TlsInTlsDetector& b) {
  EXPECT_EQ(a.suspicious(), b.suspicious());
  EXPECT_EQ(a.decided(), b.decided());
  EXPECT_EQ(a.describe(), b.describe());
}

TEST(LabTlsInTls, InnerHandshakeOverTls13IsSuspicious) {
  const TlsInTlsDetector d = run_whole(tunnel_tls13());
  EXPECT_TRUE(d.decided());
  EXPECT_TRUE(d.suspicious());
  EXPECT_EQ(d.describe(), "c534 s1966 c97 s600");
  ASSERT_EQ(d.bursts().size(), 4u);
  EXPECT_EQ(d.bursts()[0].direction, C);
  EXPECT_EQ(d.bursts()[1].bytes, 1966u);
}

TEST(LabTlsInTls, InnerHandshakeWithoutCompatCcsIsSuspicious) {
  const TlsInTlsDetector d = run_whole(tunnel_tls13_no_ccs());
  EXPECT_TRUE(d.decided());
  EXPECT_TRUE(d.suspicious());
  EXPECT_EQ(d.describe(), "c534 s1466 c97 s600");
}

TEST(LabTlsInTls, InnerHandshakeOverTls12IsSuspicious) {
  const TlsInTlsDetector d = run_whole(tunnel_tls12());
  EXPECT_TRUE(d.decided());
  EXPECT_TRUE(d.suspicious());
  EXPECT_EQ(d.describe(), "c534 s1466 c97 s800");
}

TEST(LabTlsInTls, LoopbackCapturesAreSuspicious) {
  const TlsInTlsDetector t13 = run_whole(loopback_outer_tls13());
  EXPECT_TRUE(t13.decided());
  EXPECT_TRUE(t13.suspicious());
  EXPECT_EQ(t13.describe(), "c534 s1610 c97 s272");  // the early ticket is not a burst
  const TlsInTlsDetector t12 = run_whole(loopback_outer_tls12());
  EXPECT_TRUE(t12.decided());
  EXPECT_TRUE(t12.suspicious());
  EXPECT_EQ(t12.describe(), "c541 s1210 c117 s266");
}

TEST(LabTlsInTls, PlainHttpsIsNot) {
  const TlsInTlsDetector d = run_whole(plain_https());
  EXPECT_TRUE(d.decided());
  EXPECT_FALSE(d.suspicious());
  EXPECT_EQ(d.describe(), "c120 s4500 c130 s3000");
}

TEST(LabTlsInTls, UndecidedUntilEnoughBursts) {
  Stream s = tunnel_tls13();
  s.resize(5);  // up to the inner server flight: the client burst complete, the server's open
  const TlsInTlsDetector d = run_whole(s);
  EXPECT_FALSE(d.decided());
  EXPECT_FALSE(d.suspicious());
  EXPECT_EQ(d.describe(), "c534 s1966");
}

TEST(LabTlsInTls, ThirdBurstOutsideItsBandIsNot) {
  Stream s = tunnel_tls13();
  s[5].second = ad(161);  // one byte over finished_max
  EXPECT_FALSE(run_whole(s).suspicious());
  s[5].second = ad(160);
  EXPECT_TRUE(run_whole(s).suspicious());
  s[5].second = ad(600);  // the inner Finished and a request in one record: no Finished to see
  EXPECT_FALSE(run_whole(s).suspicious());
}

TEST(LabTlsInTls, FinishedInItsOwnRecordIsSeenInsideABurst) {
  // The client writes its first request right behind the inner Finished; the proxy forwards
  // them in two records of one burst. The first record is the Finished.
  Stream s = tunnel_tls13();
  s[5].second = cat({ad(97), ad(503)});
  const TlsInTlsDetector d = run_whole(s);
  EXPECT_TRUE(d.suspicious());
  EXPECT_EQ(d.describe(), "c534 s1966 c600/97 s600");
  s[5].second = cat({ad(503), ad(97)});  // the big record first: not a Finished
  EXPECT_FALSE(run_whole(s).suspicious());
}

TEST(LabTlsInTls, SmallCertificateFlightCounts) {
  // A server flight with one P-256 certificate (Postern's server through trojan: ~870 bytes).
  Stream s = tunnel_tls13();
  s[3].second = ad(874);
  s[4].second = {};
  EXPECT_TRUE(run_whole(s).suspicious()) << run_whole(s).describe();
  s[3].second = ad(599);
  EXPECT_FALSE(run_whole(s).suspicious());
}

TEST(LabTlsInTls, SettingsAreHonoured) {
  TlsInTlsSettings settings;
  settings.hello_max = 500;  // the 534-byte burst no longer looks like a hello
  TlsInTlsDetector d(settings);
  for (const auto& [dir, bytes] : tunnel_tls13()) d.feed(dir, bytes);
  EXPECT_TRUE(d.decided());
  EXPECT_FALSE(d.suspicious());

  settings = {};
  settings.bursts = 3;
  TlsInTlsDetector three(settings);
  for (const auto& [dir, bytes] : tunnel_tls13()) three.feed(dir, bytes);
  EXPECT_TRUE(three.decided());
  EXPECT_TRUE(three.suspicious());
  EXPECT_EQ(three.describe(), "c534 s1966 c97");
}

TEST(LabTlsInTls, ChunkingDoesNotMatter) {
  for (const Stream& s : {tunnel_tls13(), tunnel_tls13_no_ccs(), tunnel_tls12(), plain_https(),
                          loopback_outer_tls13(), loopback_outer_tls12()}) {
    const TlsInTlsDetector whole = run_whole(s);
    expect_same(whole, run_bytewise(s));
    for (std::uint64_t seed = 1; seed <= 20; ++seed) expect_same(whole, run_chunks(s, seed));
  }
}

TEST(LabTlsInTls, NonTlsIsDecidedAndNotSuspicious) {
  TlsInTlsDetector d;
  d.feed(C, as_bytes("GET / HTTP/1.1\r\nHost: example\r\n\r\n"));
  EXPECT_TRUE(d.decided());
  EXPECT_FALSE(d.suspicious());
  EXPECT_TRUE(d.bursts().empty());

  // Shadowsocks-like random bytes in the server direction after a valid client hello.
  TlsInTlsDetector e;
  e.feed(C, hs(300));
  e.feed(S, Bytes{0x8d, 0x11, 0xfe, 0x42, 0x00, 0x10});
  EXPECT_TRUE(e.decided());
  EXPECT_FALSE(e.suspicious());

  // A record too long for TLS.
  TlsInTlsDetector f;
  f.feed(C, Bytes{0x17, 0x03, 0x03, 0x48, 0x01});
  EXPECT_TRUE(f.decided());

  // Non-TLS bytes after the decision change nothing.
  TlsInTlsDetector g = run_whole(tunnel_tls13());
  g.feed(C, as_bytes("garbage garbage"));
  EXPECT_TRUE(g.suspicious());
}

TEST(LabTlsInTls, AlertsAndEmptyRecordsNeitherCountNorSplit) {
  Stream s = tunnel_tls13();
  s.insert(s.begin() + 3, {C, cat({rec(21, 2), ad(0)})});  // between the hello burst and tickets
  // The alert and the empty record sit in the client direction, so the client burst goes on.
  const TlsInTlsDetector d = run_whole(s);
  EXPECT_EQ(d.describe(), "c534 s1966 c97 s600");
  EXPECT_TRUE(d.suspicious());
}

}  // namespace
}  // namespace postern::lab
