// The first-flight classifiers (src/postern/lab/first_flight.h): Wu et al.'s FET exemptions at
// their boundaries, the ClientHello parser on real hellos captured on this machine and on
// truncated, corrupted and fragmented ones, JA3/JA4 (including the FoxIO spec's own worked
// example), the HTTP Host reader and the name matcher.
#include "postern/lab/first_flight.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::lab {
namespace {

// Real ClientHellos, captured on Debian 12 (curl 7.88.1 / OpenSSL 3.0.19) with this loopback
// listener, which prints the first TLS record it receives in hex and closes:
//   # capture.py
//   import socket, sys
//   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
//   s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
//   c, _ = s.accept(); buf = b""
//   while len(buf) < 5 or len(buf) < 5 + int.from_bytes(buf[3:5], "big"):
//       d = c.recv(65536)
//       if not d: break
//       buf += d
//   c.close(); print(buf.hex())
// kCurlName:    python3 capture.py 47001 & curl -s --resolve chat.example:47001:127.0.0.1
// https://chat.example:47001/ kCurlIp:      python3 capture.py 47002 & curl -s https://127.0.0.1:47002/
// kOpensslName: python3 capture.py 47003 &
//               openssl s_client -connect 127.0.0.1:47003 -servername chat.example -alpn h2,http/1.1
//               </dev/null
constexpr std::string_view kCurlName =
    "1603010200010001fc0303178025629fce3cdc6fc61624be96b0d286db326cbf9e184dcaacc6ad55496bec2044877c9a"
    "d95597237a1b56427ee639adea3c8b534040a232dfb83ad52f93fa57003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175"
    "00000011000f00000c636861742e6578616d706c65000b000403000102000a00160014001d0017001e00190018010001"
    "010102010301040010000e000c02683208687474702f312e31001600000017000000310000000d002a00280403050306"
    "03080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303020301"
    "002d00020101003300260024001d00206338729d8093dfd67a13d67bc6a10daeef37b892eaefda541f8150952fbcdf77"
    "001500b10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view kCurlIp =
    "1603010200010001fc030306fdad41d36aad1c16368b401d630142ec7191a6e9eaf3e824f8d2840e4752452020ec8fe2"
    "0446e8f8c316804aba3e681ce5fe6f90fca915fc8c4ee14286e2e07c003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175"
    "000b000403000102000a00160014001d0017001e00190018010001010102010301040010000e000c0268320868747470"
    "2f312e31001600000017000000310000000d002a0028040305030603080708080809080a080b08040805080604010501"
    "0601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00203aec708dee"
    "c7765b1d14542df7b0dfdffc650afedf1c5a6ec5ff2bda04bbb701001500c60000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view kOpensslName =
    "160301014b01000147030304ec384d7dc8c9b19ce80c31d33fdf22b436a4c4bdf267eaa8cc0279091f7b5920c35fba95"
    "9145adebc7e522e9a3642b8719d817e76d0db05d86f5d093433d5e49003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000c0"
    "00000011000f00000c636861742e6578616d706c65000b000403000102000a00160014001d0017001e00190018010001"
    "01010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a00280403050306"
    "03080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303020301"
    "002d00020101003300260024001d0020edad5c7e932a8ac271f654cb374f71c63581413fc2796d7688a4e125554a9b47";

Bytes hex(std::string_view h) {
  auto b = from_hex(h);
  EXPECT_TRUE(b.ok());
  return b.ok() ? *b : Bytes{};
}

// ---------------------------------------------------------------------------------------------
// FET. Filler bytes with exactly four set bits keep the average popcount at 4.0 (Ex1 out of the
// way) while the printable ones shape Ex2-Ex4: 'e' (0x65) is printable, 0x8d is not.
constexpr std::uint8_t kP = 'e';
constexpr std::uint8_t kN = 0x8d;

Bytes repeat(std::uint8_t b, std::size_t n) {
  return Bytes(n, b);
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) append(out, p);
  return out;
}

TEST(LabFet, EmptyIsNone) {
  EXPECT_EQ(fet_exemption({}), FetExemption::none);
}

TEST(LabFet, Ex1PopcountBoundaries) {
  // 10 non-printable bytes. 0x07 has 3 bits, 0x0f 4, 0x9f 6, 0x1f 5.
  const Bytes avg34 = cat({repeat(0x07, 6), repeat(0x0f, 4)});                   // 34 bits: 3.4
  const Bytes avg35 = cat({repeat(0x07, 5), repeat(0x0f, 5)});                   // 35 bits: 3.5
  const Bytes avg46 = cat({repeat(0x9f, 3), repeat(0x0f, 7)});                   // 46 bits: 4.6
  const Bytes avg45 = cat({repeat(0x9f, 2), repeat(0x1f, 1), repeat(0x0f, 7)});  // 45 bits: 4.5
  EXPECT_EQ(fet_exemption(avg34), FetExemption::ex1_popcount);
  EXPECT_EQ(fet_exemption(avg35), FetExemption::none);
  EXPECT_EQ(fet_exemption(avg46), FetExemption::ex1_popcount);
  EXPECT_EQ(fet_exemption(avg45), FetExemption::none);
  EXPECT_EQ(fet_exemption(repeat(0x00, 50)), FetExemption::ex1_popcount);
  EXPECT_EQ(fet_exemption(repeat(0xff, 50)), FetExemption::ex1_popcount);
}

TEST(LabFet, Ex2PrintableHead) {
  EXPECT_EQ(fet_exemption(cat({repeat(kP, 6), repeat(kN, 20)})), FetExemption::ex2_printable_head);
  EXPECT_EQ(fet_exemption(cat({repeat(kP, 5), repeat(kN, 21)})), FetExemption::none);
  EXPECT_EQ(fet_exemption(cat({repeat(kN, 1), repeat(kP, 6), repeat(kN, 20)})), FetExemption::none);
}

TEST(LabFet, Ex3MoreThanHalfPrintable) {
  Bytes half;  // N P N P ...: exactly 50 %, runs of one
  for (int i = 0; i < 20; ++i) append(half, Bytes{kN, kP});
  EXPECT_EQ(fet_exemption(half), FetExemption::none);
  Bytes more = half;
  more.push_back(kP);  // 21 of 41
  EXPECT_EQ(fet_exemption(more), FetExemption::ex3_printable_half);
}

TEST(LabFet, Ex4RunOfMoreThanTwenty) {
  EXPECT_EQ(fet_exemption(cat({repeat(kN, 30), repeat(kP, 21), repeat(kN, 5)})),
            FetExemption::ex4_printable_run);
  EXPECT_EQ(fet_exemption(cat({repeat(kN, 30), repeat(kP, 20), repeat(kN, 5)})), FetExemption::none);
  // Two runs of 20 do not add up.
  EXPECT_EQ(
      fet_exemption(cat({repeat(kN, 30), repeat(kP, 20), repeat(kN, 1), repeat(kP, 20), repeat(kN, 30)})),
      FetExemption::none);
}

TEST(LabFet, Ex5ProtocolPrefixes) {
  const Bytes tail = repeat(kN, 60);
  EXPECT_EQ(fet_exemption(cat({{0x16, 0x03, 0x01}, tail})), FetExemption::ex5_protocol);
  EXPECT_EQ(fet_exemption(cat({{0x17, 0x03, 0x09}, tail})), FetExemption::ex5_protocol);
  EXPECT_EQ(fet_exemption(cat({{0x16, 0x03, 0x0a}, tail})), FetExemption::none);
  EXPECT_EQ(fet_exemption(cat({{0x15, 0x03, 0x03}, tail})), FetExemption::none);
  for (std::string_view m : {"GET ", "PUT ", "POST ", "HEAD "}) {
    const Bytes p = cat({Bytes(as_bytes(m).begin(), as_bytes(m).end()), tail});
    EXPECT_EQ(fet_exemption(p), FetExemption::ex5_protocol) << m;
  }
  EXPECT_EQ(fet_exemption(cat({Bytes{'G', 'E', 'T', 'X'}, tail})), FetExemption::none);
}

TEST(LabFet, RandomLookingPayloadIsNotExempt) {
  // A Shadowsocks-like first flight: uniformly random bytes.
  std::mt19937_64 rng(20230809);
  Bytes p(600);
  for (auto& b : p) b = static_cast<std::uint8_t>(rng());
  EXPECT_EQ(fet_exemption(p), FetExemption::none);
  EXPECT_STREQ(to_string(fet_exemption(p)), "none");
}

TEST(LabFet, RealTlsHellosAreExempt) {
  // Real hellos are exempt before Ex5 is even looked at: their many zero bytes (length fields,
  // curl's zero padding) pull the average popcount to about 2.5 bits. Ex5 alone is checked above.
  EXPECT_EQ(fet_exemption(hex(kCurlName)), FetExemption::ex1_popcount);
  EXPECT_EQ(fet_exemption(hex(kOpensslName)), FetExemption::ex1_popcount);
}

// ---------------------------------------------------------------------------------------------
// ClientHello on the captured hellos.

TEST(LabClientHello, CurlWithName) {
  const HelloResult r = parse_client_hello(hex(kCurlName));
  ASSERT_EQ(r.status, HelloParse::ok);
  EXPECT_EQ(r.hello.record_version, 0x0301);
  EXPECT_EQ(r.hello.legacy_version, 0x0303);
  EXPECT_EQ(r.hello.server_name, "chat.example");
  EXPECT_EQ(r.hello.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(r.hello.ciphers.size(), 31u);
  EXPECT_EQ(r.hello.extensions.size(), 12u);
  EXPECT_EQ(r.hello.supported_versions, (std::vector<std::uint16_t>{0x0304, 0x0303, 0x0302, 0x0301}));
  EXPECT_EQ(r.hello.ec_point_formats, (std::vector<std::uint8_t>{0, 1, 2}));
  EXPECT_FALSE(r.hello.has_ech);
  EXPECT_FALSE(r.hello.has_esni);
  EXPECT_EQ(ja4(r.hello), "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6");
}

TEST(LabClientHello, CurlToIpLiteralHasNoSni) {
  const HelloResult r = parse_client_hello(hex(kCurlIp));
  ASSERT_EQ(r.status, HelloParse::ok);
  EXPECT_EQ(r.hello.server_name, "");
  EXPECT_EQ(ja4(r.hello), "t13i3111h2_e8f1e7e78f70_b26ce05bbdd6");
}

TEST(LabClientHello, OpensslSClient) {
  const HelloResult r = parse_client_hello(hex(kOpensslName));
  ASSERT_EQ(r.status, HelloParse::ok);
  EXPECT_EQ(r.hello.server_name, "chat.example");
  EXPECT_EQ(ja4(r.hello), "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4");
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == sep)
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
}

TEST(LabClientHello, Ja3OfCurl) {
  const HelloResult r = parse_client_hello(hex(kCurlName));
  ASSERT_EQ(r.status, HelloParse::ok);
  const std::string s = ja3_string(r.hello);
  const std::vector<std::string> fields = split(s, ',');
  ASSERT_EQ(fields.size(), 5u);
  EXPECT_EQ(fields[0], "771");
  const std::vector<std::string> ciphers = split(fields[1], '-');
  ASSERT_EQ(ciphers.size(), r.hello.ciphers.size());
  for (std::size_t i = 0; i < ciphers.size(); ++i) EXPECT_EQ(ciphers[i], std::to_string(r.hello.ciphers[i]));
  const std::vector<std::string> extensions = split(fields[2], '-');
  ASSERT_EQ(extensions.size(), r.hello.extensions.size());
  for (std::size_t i = 0; i < extensions.size(); ++i)
    EXPECT_EQ(extensions[i], std::to_string(r.hello.extensions[i]));
  EXPECT_EQ(fields[3], "29-23-30-25-24-256-257-258-259-260");
  EXPECT_EQ(fields[4], "0-1-2");
  // MD5 of the string, computed independently (python3 hashlib.md5(...).hexdigest()).
  EXPECT_EQ(ja3_hash(r.hello), "0149f47eabf9a20d0893e2a44e5a6323");
}

// A ClientHello builder for hand-made cases.
struct Ext {
  std::uint16_t type;
  Bytes data;
};
void put16(Bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
Bytes u16s(std::initializer_list<std::uint16_t> values, bool prefix8) {
  Bytes b;
  if (prefix8)
    b.push_back(static_cast<std::uint8_t>(values.size() * 2));
  else
    put16(b, values.size() * 2);
  for (std::uint16_t v : values) put16(b, v);
  return b;
}
Bytes sni_ext(std::string_view name) {
  Bytes b;
  put16(b, name.size() + 3);
  b.push_back(0);
  put16(b, name.size());
  append(b, as_bytes(name));
  return b;
}
Bytes alpn_ext(std::initializer_list<std::string_view> names) {
  Bytes list;
  for (std::string_view n : names) {
    list.push_back(static_cast<std::uint8_t>(n.size()));
    append(list, as_bytes(n));
  }
  Bytes b;
  put16(b, list.size());
  append(b, list);
  return b;
}
// The handshake message (type, length, body).
Bytes hello_message(const std::vector<std::uint16_t>& ciphers, const std::vector<Ext>& exts) {
  Bytes body;
  put16(body, 0x0303);
  append(body, Bytes(32, 0x42));  // random
  body.push_back(0);              // session id
  put16(body, ciphers.size() * 2);
  for (std::uint16_t c : ciphers) put16(body, c);
  body.push_back(1);
  body.push_back(0);  // null compression
  Bytes e;
  for (const Ext& x : exts) {
    put16(e, x.type);
    put16(e, x.data.size());
    append(e, x.data);
  }
  put16(body, e.size());
  append(body, e);
  Bytes m{1, static_cast<std::uint8_t>(body.size() >> 16), static_cast<std::uint8_t>(body.size() >> 8),
          static_cast<std::uint8_t>(body.size())};
  append(m, body);
  return m;
}
// The message in records of at most `fragment` bytes.
Bytes in_records(ByteView message, std::size_t fragment) {
  Bytes out;
  for (std::size_t pos = 0; pos < message.size(); pos += fragment) {
    const std::size_t n = std::min(fragment, message.size() - pos);
    append(out, Bytes{0x16, 0x03, 0x01});
    put16(out, n);
    append(out, message.subspan(pos, n));
  }
  return out;
}

TEST(LabClientHello, GreaseIsLeftOutOfFingerprints) {
  const Bytes plain =
      in_records(hello_message({0x1301, 0x1302, 0xc02b}, {{0x0000, sni_ext("chat.example")},
                                                          {0x000a, u16s({0x001d, 0x0017}, false)},
                                                          {0x000b, Bytes{1, 0}},
                                                          {0x000d, u16s({0x0403, 0x0804}, false)},
                                                          {0x0010, alpn_ext({"h2"})},
                                                          {0x002b, u16s({0x0304, 0x0303}, true)}}),
                 16384);
  const Bytes greased = in_records(
      hello_message({0x0a0a, 0x1301, 0x1302, 0xc02b}, {{0x1a1a, {}},
                                                       {0x0000, sni_ext("chat.example")},
                                                       {0x000a, u16s({0x2a2a, 0x001d, 0x0017}, false)},
                                                       {0x000b, Bytes{1, 0}},
                                                       {0x000d, u16s({0x0403, 0x0804}, false)},
                                                       {0x0010, alpn_ext({"h2"})},
                                                       {0x002b, u16s({0xfafa, 0x0304, 0x0303}, true)},
                                                       {0xdada, Bytes{0}}}),
      16384);
  const HelloResult p = parse_client_hello(plain);
  const HelloResult g = parse_client_hello(greased);
  ASSERT_EQ(p.status, HelloParse::ok);
  ASSERT_EQ(g.status, HelloParse::ok);
  EXPECT_EQ(g.hello.ciphers.size(), 4u);  // kept in the parsed hello
  EXPECT_EQ(g.hello.extensions.size(), 8u);
  EXPECT_EQ(ja3_string(p.hello), "771,4865-4866-49195,0-10-11-13-16-43,29-23,0");
  EXPECT_EQ(ja3_string(g.hello), ja3_string(p.hello));
  EXPECT_EQ(ja3_hash(g.hello), ja3_hash(p.hello));
  EXPECT_EQ(ja4(g.hello), ja4(p.hello));
  EXPECT_EQ(ja4(p.hello).substr(0, 10), "t13d0306h2");
}

TEST(LabJa4, FoxioWorkedExample) {
  // The example of the JA4 specification (FoxIO-LLC/ja4, technical_details/JA4.md).
  ClientHello h;
  h.legacy_version = 0x0303;
  h.ciphers = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9,
               0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
  h.extensions = {0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d,
                  0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015};
  h.signature_algorithms = {0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601};
  h.supported_versions = {0x0304, 0x0303};
  h.alpn = {"h2", "http/1.1"};
  EXPECT_EQ(ja4(h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
  h.signature_algorithms.clear();  // "the string ends without an underscore"
  EXPECT_EQ(ja4(h), "t13d1516h2_8daaf6152771_6d807ffa2a79");
}

TEST(LabJa4, EdgeRules) {
  ClientHello h;
  h.legacy_version = 0x0303;
  EXPECT_EQ(ja4(h), "t12i000000_000000000000_000000000000");  // no ciphers, no extensions
  h.extensions = {0x0000, 0x0010};                            // only SNI and ALPN: counted, not hashed
  EXPECT_EQ(ja4(h), "t12d000200_000000000000_000000000000");
  h.alpn = {"h"};
  EXPECT_EQ(ja4(h).substr(8, 2), "hh");
  h.alpn = {"\xab"};
  EXPECT_EQ(ja4(h).substr(8, 2), "ab");
  h.alpn = {"0\xab"};
  EXPECT_EQ(ja4(h).substr(8, 2), "3b");
  h.alpn = {
      std::string("0\xab\xcd"
                  "1")};
  EXPECT_EQ(ja4(h).substr(8, 2), "01");
  h.supported_versions = {0x7a7a, 0x0302};  // GREASE ignored, highest left
  EXPECT_EQ(ja4(h).substr(1, 2), "11");
  h.supported_versions = {0x0305};
  EXPECT_EQ(ja4(h).substr(1, 2), "00");
  h.ciphers.assign(120, 0x1301);
  EXPECT_EQ(ja4(h).substr(4, 2), "99");
}

TEST(LabClientHello, EveryPrefixIsIncomplete) {
  for (std::string_view fixture : {kCurlName, kOpensslName}) {
    const Bytes full = hex(fixture);
    for (std::size_t n = 0; n < full.size(); ++n)
      ASSERT_EQ(parse_client_hello(ByteView(full).first(n)).status, HelloParse::incomplete) << n;
    EXPECT_EQ(parse_client_hello(full).status, HelloParse::ok);
  }
}

TEST(LabClientHello, TrailingRecordsAfterTheHelloAreIgnored) {
  Bytes p = hex(kOpensslName);
  append(p, Bytes{0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03});
  EXPECT_EQ(parse_client_hello(p).status, HelloParse::ok);
}

TEST(LabClientHello, SplitAcrossRecordsParses) {
  const Bytes one = hex(kOpensslName);
  const ByteView message = ByteView(one).subspan(5);
  const std::string expected = ja4(parse_client_hello(one).hello);
  for (std::size_t fragment : {1u, 2u, 3u, 4u, 5u, 100u, 200u, 330u}) {
    const Bytes split_hello = in_records(message, fragment);
    const HelloResult r = parse_client_hello(split_hello);
    ASSERT_EQ(r.status, HelloParse::ok) << fragment;
    EXPECT_EQ(ja4(r.hello), expected);
    EXPECT_EQ(r.hello.server_name, "chat.example");
    for (std::size_t n = 0; n < split_hello.size(); n += 7)
      ASSERT_EQ(parse_client_hello(ByteView(split_hello).first(n)).status, HelloParse::incomplete) << n;
  }
}

TEST(LabClientHello, NotTls) {
  EXPECT_EQ(parse_client_hello(as_bytes("GET / HTTP/1.1\r\n")).status, HelloParse::not_tls);
  EXPECT_EQ(parse_client_hello(Bytes{0x17, 0x03, 0x03, 0x00, 0x10}).status, HelloParse::not_tls);
  EXPECT_EQ(parse_client_hello(Bytes{0x16}).status, HelloParse::incomplete);
  EXPECT_EQ(parse_client_hello(Bytes{0x16, 0x02}).status, HelloParse::not_tls);
  EXPECT_EQ(parse_client_hello(Bytes{0x16, 0x03, 0x07}).status, HelloParse::not_tls);
}

// The OpenSSL hello with one byte replaced; offsets are into the record (5-byte header first).
Bytes with(std::size_t at, std::uint8_t value) {
  Bytes b = hex(kOpensslName);
  b.at(at) = value;
  return b;
}

TEST(LabClientHello, CorruptedLengthsAreMalformed) {
  // Layout of kOpensslName: record header 0-4, handshake header 5-8, version 9-10, random 11-42,
  // session id length 43 (32), id 44-75, cipher length 76-77 (0x003e), ciphers 78-139,
  // compression 140-141, extensions length 142-143 (0x00c0), first extension (SNI) at 144.
  const Bytes good = hex(kOpensslName);
  ASSERT_EQ(good[43], 32);
  ASSERT_EQ(good[77], 0x3e);
  ASSERT_EQ(good[143], 0xc0);
  ASSERT_EQ(good[144], 0x00);
  ASSERT_EQ(good[147], 0x11);  // SNI extension length 17
  ASSERT_EQ(good[149], 0x0f);  // server name list length 15
  struct Case {
    const char* what;
    Bytes bytes;
  };
  const std::vector<Case> cases = {
      {"record length 0",
       [] {
         Bytes b = hex(kOpensslName);
         b[3] = 0;
         b[4] = 0;
         return b;
       }()},
      {"not a ClientHello", with(5, 2)},
      {"handshake over 16 KiB",
       [] {
         Bytes b = hex(kOpensslName);
         b[6] = 0x01;
         return b;
       }()},
      {"session id of 33", with(43, 33)},
      {"odd cipher length", with(77, 0x3d)},
      {"cipher length past the body", with(76, 0x01)},
      {"extensions length one short", with(143, 0xbf)},
      {"extensions length one long", with(143, 0xc1)},
      {"SNI extension length one long", with(147, 0x12)},
      {"server name list length wrong", with(149, 0x0e)},
      {"server name with a space", with(155, ' ')},
      {"handshake shorter than its record", with(8, 0x46)},
  };
  for (const Case& c : cases) EXPECT_EQ(parse_client_hello(c.bytes).status, HelloParse::malformed) << c.what;
}

TEST(LabClientHello, OtherMalformedHellos) {
  const Bytes msg = hello_message({0x1301}, {{0x0000, sni_ext("a.example")}, {0x0000, sni_ext("b.example")}});
  EXPECT_EQ(parse_client_hello(in_records(msg, 16384)).status, HelloParse::malformed)
      << "duplicate extension";
  // A hello interrupted by an alert record.
  const Bytes good = in_records(hello_message({0x1301}, {{0x0000, sni_ext("a.example")}}), 30);
  Bytes interrupted(good.begin(), good.begin() + 35);
  append(interrupted, Bytes{0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00});
  EXPECT_EQ(parse_client_hello(interrupted).status, HelloParse::malformed);
  EXPECT_EQ(parse_client_hello(in_records(hello_message({0x1301}, {{0x0010, alpn_ext({""})}}), 100)).status,
            HelloParse::malformed)
      << "empty ALPN name";
  const std::string long_name(256, 'a');
  EXPECT_EQ(
      parse_client_hello(in_records(hello_message({0x1301}, {{0x0000, sni_ext(long_name)}}), 1000)).status,
      HelloParse::malformed);
}

TEST(LabClientHello, ServerNameIsLowerCasedAndEchFlagged) {
  const Bytes msg =
      hello_message({0x1301}, {{0x0000, sni_ext("Chat.EXAMPLE.")}, {0xfe0d, Bytes{1, 2, 3}}, {0xffce, {}}});
  const HelloResult r = parse_client_hello(in_records(msg, 16384));
  ASSERT_EQ(r.status, HelloParse::ok);
  EXPECT_EQ(r.hello.server_name, "chat.example");
  EXPECT_TRUE(r.hello.has_ech);
  EXPECT_TRUE(r.hello.has_esni);
}

// ---------------------------------------------------------------------------------------------

TEST(LabHttpHost, FindsTheHost) {
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\r\nUser-Agent: x\r\nHost: Chat.Example:8080\r\n\r\n")),
            std::optional<std::string>("chat.example"));
  EXPECT_EQ(http_host(as_bytes("POST /a HTTP/1.0\r\nhost:signal.org\r\n")),
            std::optional<std::string>("signal.org"));
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\nHOST: \tx.example \n\n")),
            std::optional<std::string>("x.example"));
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")),
            std::optional<std::string>("::1"));
}

TEST(LabHttpHost, NothingWhenNotHttpOrNoHostYet) {
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\r\nHost: chat.exam")), std::nullopt);  // line not complete
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: a\r\n")), std::nullopt);
  EXPECT_EQ(http_host(as_bytes("get / HTTP/1.1\r\nHost: a\r\n\r\n")), std::nullopt);
  EXPECT_EQ(http_host(as_bytes("GET / FTP/1.1\r\nHost: a\r\n\r\n")), std::nullopt);
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")), std::nullopt);
  EXPECT_EQ(http_host(as_bytes("GET / HTTP/1.1\r\nHost: \r\n\r\n")), std::nullopt);
  EXPECT_EQ(http_host(hex(kCurlName)), std::nullopt);
  EXPECT_EQ(http_host({}), std::nullopt);
}

TEST(LabNameMatches, NameOrSubdomain) {
  EXPECT_TRUE(name_matches("chat.example", "chat.example"));
  EXPECT_TRUE(name_matches("chat.example", "example"));
  EXPECT_TRUE(name_matches("a.b.signal.org", "signal.org"));
  EXPECT_FALSE(name_matches("notsignal.org", "signal.org"));
  EXPECT_FALSE(name_matches("signal.org", "chat.signal.org"));
  EXPECT_FALSE(name_matches("signal.org", ""));
  EXPECT_FALSE(name_matches(".signal.org", "chat.signal.org"));
}

}  // namespace
}  // namespace postern::lab
