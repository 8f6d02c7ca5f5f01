// DNS messages: query bytes checked by hand against RFC 1035 section 4.1, EDNS(0) padding
// (RFC 7830/8467), responses built here and by hand (CNAME chains, compression pointers), and
// hostile messages (pointer loops, oversized labels and names, every truncation) that must all
// come back as errors. Everything is offline: no resolver is asked.
#include "postern/transport/dns_message.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "postern/transport/errors.h"

namespace postern::transport::dns {
namespace {

Bytes b(std::initializer_list<int> v) {
  Bytes out;
  for (int x : v) out.push_back(static_cast<std::uint8_t>(x));
  return out;
}

// Writes messages by hand, keeping offsets so compression pointers can be aimed at them.
struct Writer {
  Bytes m;
  std::size_t at() const { return m.size(); }
  Writer& u8(int v) {
    m.push_back(static_cast<std::uint8_t>(v));
    return *this;
  }
  Writer& u16(int v) { return u8(v >> 8).u8(v & 0xFF); }
  Writer& u32(std::uint32_t v) { return u16(static_cast<int>(v >> 16)).u16(static_cast<int>(v & 0xFFFF)); }
  Writer& label(std::string_view s) {
    u8(static_cast<int>(s.size()));
    m.insert(m.end(), s.begin(), s.end());
    return *this;
  }
  Writer& root() { return u8(0); }
  Writer& ptr(std::size_t offset) { return u16(0xC000 | static_cast<int>(offset)); }
  Writer& header(int id, int flags, int qd, int an, int ns, int ar) {
    return u16(id).u16(flags).u16(qd).u16(an).u16(ns).u16(ar);
  }
  // TYPE CLASS TTL RDLENGTH; the caller writes the data, then fix_rdlength().
  std::size_t rr_fixed(int type, std::uint32_t ttl) {
    u16(type).u16(1).u32(ttl).u16(0);
    return at();
  }
  void fix_rdlength(std::size_t rdata) {
    const std::size_t len = at() - rdata;
    m[rdata - 2] = static_cast<std::uint8_t>(len >> 8);
    m[rdata - 1] = static_cast<std::uint8_t>(len & 0xFF);
  }
};

TEST(DnsMessageTest, QueryBytesFollowRfc1035Layout) {
  auto q = build_query(0x1234, "example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  const Bytes want = b({
      0x12, 0x34,  // ID
      0x01, 0x00,  // QR=0 OPCODE=0 AA=0 TC=0 RD=1 | RA=0 Z=0 RCODE=0
      0x00, 0x01,  // QDCOUNT
      0x00, 0x00,  // ANCOUNT
      0x00, 0x00,  // NSCOUNT
      0x00, 0x00,  // ARCOUNT
      7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,  // QNAME (section 4.1.2)
      0x00, 0x01,  // QTYPE A
      0x00, 0x01,  // QCLASS IN
  });
  EXPECT_EQ(*q, want);
  // A trailing dot names the same host.
  EXPECT_EQ(*build_query(0x1234, "example.com.", kTypeA), want);
  auto aaaa = build_query(0x1234, "example.com", kTypeAaaa);
  ASSERT_TRUE(aaaa.ok());
  EXPECT_EQ((*aaaa)[aaaa->size() - 3], 28);
}

TEST(DnsMessageTest, DohGetTargetMatchesRfc8484Example) {
  // RFC 8484 section 4.1.1: www.example.com A, ID 0, RD set.
  auto q = build_query(0, "www.example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(doh_get_target("/dns-query", *q), "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB");
  EXPECT_EQ(doh_get_target("/q?ct", b({0xFB, 0xFF})), "/q?ct&dns=-_8");
  EXPECT_EQ(doh_get_target("/q", b({0xFF})), "/q?dns=_w");
}

TEST(DnsMessageTest, QueryNameLimits) {
  for (std::string_view bad : {"", ".", "..", "a..b", ".a", "exa mple.com", "a\x01.com", "caf\xc3\xa9.fr"}) {
    EXPECT_EQ(build_query(1, bad, kTypeA).error(), Errc::bad_config) << bad;
  }
  const std::string label63(63, 'a');
  EXPECT_TRUE(build_query(1, label63 + ".com", kTypeA).ok());
  EXPECT_EQ(build_query(1, label63 + "a.com", kTypeA).error(), Errc::bad_config);
  // 253 characters of text are 255 bytes of wire form, the limit.
  const std::string longest = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  ASSERT_EQ(longest.size(), 253u);
  auto q = build_query(1, longest, kTypeA);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size(), 12u + 255 + 4);
  EXPECT_EQ(build_query(1, longest + "b", kTypeA).error(), Errc::bad_config);
}

void expect_padded(const Bytes& q, std::size_t block, std::size_t question_end) {
  ASSERT_EQ(q.size() % block, 0u);
  EXPECT_EQ(q[10], 0x00);
  EXPECT_EQ(q[11], 0x01);  // ARCOUNT 1
  // OPT (RFC 6891 section 6.1.2): root name, TYPE 41, CLASS = UDP size, TTL 0, RDLENGTH.
  std::size_t p = question_end;
  EXPECT_EQ(q[p], 0x00);
  EXPECT_EQ((q[p + 1] << 8) | q[p + 2], 41);
  EXPECT_GE((q[p + 3] << 8) | q[p + 4], 512);
  EXPECT_EQ(q[p + 5] | q[p + 6] | q[p + 7] | q[p + 8], 0);
  const std::size_t rdlength = static_cast<std::size_t>((q[p + 9] << 8) | q[p + 10]);
  EXPECT_EQ(p + 11 + rdlength, q.size());
  // One option, padding (RFC 7830 section 4): code 12, length, zero octets to the end.
  EXPECT_EQ((q[p + 11] << 8) | q[p + 12], 12);
  const std::size_t padding = static_cast<std::size_t>((q[p + 13] << 8) | q[p + 14]);
  EXPECT_EQ(padding + 4, rdlength);
  for (std::size_t i = p + 15; i < q.size(); ++i) EXPECT_EQ(q[i], 0) << i;
}

TEST(DnsMessageTest, PaddingMakesMultipleOf128) {
  auto q = build_query(7, "example.com", kTypeAaaa, 128);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size(), 128u);
  expect_padded(*q, 128, 29);
  // 29 bytes of query + 11 of OPT + 4 of option header: 84 bytes of padding.
  EXPECT_EQ((*q)[29 + 13], 0);
  EXPECT_EQ((*q)[29 + 14], 84);

  // A longer name goes to the next block.
  const std::string name = std::string(63, 'x') + "." + std::string(63, 'y') + ".example";
  auto longer = build_query(7, name, kTypeA, 128);
  ASSERT_TRUE(longer.ok());
  EXPECT_EQ(longer->size(), 256u);
  expect_padded(*longer, 128, 12 + name.size() + 2 + 4);

  // A block the unpadded message fills exactly: a padding option of length 0.
  auto exact = build_query(7, "example.com", kTypeA, 44);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->size(), 44u);
  expect_padded(*exact, 44, 29);

  EXPECT_EQ(build_query(7, "example.com", kTypeA, 70000).error(), Errc::bad_config);
}

TEST(DnsMessageTest, ParseBuiltResponseA) {
  auto q = build_query(0x4242, "example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"192.0.2.1", "198.51.100.2", "203.0.113.3"}, 300);
  ASSERT_TRUE(r.ok());
  // Header: same id, QR=1 RD=1 RA=1 RCODE=0, one question, three answers.
  EXPECT_EQ(Bytes(r->begin(), r->begin() + 12), b({0x42, 0x42, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0}));
  // The question is copied; the first answer points at its name (0xC00C).
  EXPECT_TRUE(std::equal(q->begin() + 12, q->end(), r->begin() + 12));
  EXPECT_EQ((*r)[q->size()], 0xC0);
  EXPECT_EQ((*r)[q->size() + 1], 0x0C);
  EXPECT_EQ(r->size(), q->size() + 3 * 16);

  auto a = parse_response(*r, 0x4242, "example.com", kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->id, 0x4242);
  EXPECT_EQ(a->rcode, 0);
  EXPECT_FALSE(a->truncated);
  EXPECT_EQ(a->addresses, (std::vector<std::string>{"192.0.2.1", "198.51.100.2", "203.0.113.3"}));
  EXPECT_TRUE(a->cnames.empty());
  EXPECT_EQ(a->min_ttl, 300u);
}

TEST(DnsMessageTest, ParseBuiltResponseAaaaWithPaddedQuery) {
  auto q = build_query(9, "Host.Example.ORG", kTypeAaaa, 128);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"2001:db8::1", "2001:db8:0:0:0:0:0:2"}, 60);
  ASSERT_TRUE(r.ok());
  // Names compare without regard to case, and the response keeps the query's case (0x20).
  auto a = parse_response(*r, 9, "host.example.org.", kTypeAaaa);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->addresses, (std::vector<std::string>{"2001:db8::1", "2001:db8::2"}));
  EXPECT_EQ(a->min_ttl, 60u);
  EXPECT_EQ((*r)[13], 'H');
}

TEST(DnsMessageTest, BuildResponseErrors) {
  auto q = build_query(1, "example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(build_response(ByteView(*q).first(11), {}, 1).error(), Errc::bad_dns_message);
  EXPECT_EQ(build_response(ByteView(*q).first(20), {}, 1).error(), Errc::bad_dns_message);
  Bytes as_response = *q;
  as_response[2] |= 0x80;
  EXPECT_EQ(build_response(as_response, {}, 1).error(), Errc::bad_dns_message);
  EXPECT_EQ(build_response(*q, {"2001:db8::1"}, 1).error(), Errc::bad_config);
  EXPECT_EQ(build_response(*q, {"not an address"}, 1).error(), Errc::bad_config);
  EXPECT_EQ(build_response(*q, {std::string("192.0.2.1\0x", 11)}, 1).error(), Errc::bad_config);
  EXPECT_EQ(build_response(*q, {}, 1, 16).error(), Errc::bad_config);
  auto txt = build_query(1, "example.com", 16);
  ASSERT_TRUE(txt.ok());
  EXPECT_EQ(build_response(*txt, {"192.0.2.1"}, 1).error(), Errc::bad_config);
  EXPECT_TRUE(build_response(*txt, {}, 1).ok());
}

// www.example.com A, answered by a chain www -> cdn.example.net -> edge.example.net with the
// records out of order and every name after the question compressed.
struct ChainMessage {
  Bytes bytes;
  std::size_t cdn_at = 0, edge_at = 0;
};

ChainMessage chain_message() {
  Writer w;
  w.header(0xBEEF, 0x8180, 1, 5, 0, 0);
  w.label("www").label("example").label("com").root().u16(1).u16(1);
  EXPECT_EQ(w.at(), 33u);
  // www.example.com CNAME cdn.example.net (TTL 300)
  w.ptr(12);
  std::size_t rd = w.rr_fixed(kTypeCname, 300);
  const std::size_t cdn_at = w.at();
  w.label("cdn");
  const std::size_t example_net_at = w.at();
  w.label("example").label("net").root();
  w.fix_rdlength(rd);
  EXPECT_EQ(cdn_at, 45u);
  // edge.example.net A 198.51.100.7 (TTL 120): the owner is "edge" + a pointer into the rdata.
  const std::size_t edge_at = w.at();
  w.label("edge").ptr(example_net_at);
  rd = w.rr_fixed(kTypeA, 120);
  w.u8(198).u8(51).u8(100).u8(7);
  w.fix_rdlength(rd);
  // cdn.example.net CNAME edge.example.net (TTL 60): both names are pointers.
  w.ptr(cdn_at);
  rd = w.rr_fixed(kTypeCname, 60);
  w.ptr(edge_at);
  w.fix_rdlength(rd);
  // A stray A record for the aliased name itself, which a CNAME rules out: ignored.
  w.ptr(12);
  rd = w.rr_fixed(kTypeA, 5);
  w.u8(203).u8(0).u8(113).u8(9);
  w.fix_rdlength(rd);
  // edge.example.net A 198.51.100.8 (TTL 200)
  w.ptr(edge_at);
  rd = w.rr_fixed(kTypeA, 200);
  w.u8(198).u8(51).u8(100).u8(8);
  w.fix_rdlength(rd);
  return {w.m, cdn_at, edge_at};
}

TEST(DnsMessageTest, CnameChainWithCompression) {
  const ChainMessage c = chain_message();
  auto a = parse_response(c.bytes, 0xBEEF, "WWW.example.com", kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->cnames, (std::vector<std::string>{"cdn.example.net", "edge.example.net"}));
  EXPECT_EQ(a->addresses, (std::vector<std::string>{"198.51.100.7", "198.51.100.8"}));
  EXPECT_EQ(a->min_ttl, 60u);
}

TEST(DnsMessageTest, CnameLoopAndOverlongChainRefused) {
  // a.example CNAME b.example, b.example CNAME a.example.
  Writer w;
  w.header(1, 0x8180, 1, 2, 0, 0);
  w.label("a").label("example").root().u16(1).u16(1);
  w.ptr(12);
  std::size_t rd = w.rr_fixed(kTypeCname, 10);
  const std::size_t b_at = w.at();
  w.label("b").ptr(14);
  w.fix_rdlength(rd);
  w.ptr(b_at);
  rd = w.rr_fixed(kTypeCname, 10);
  w.ptr(12);
  w.fix_rdlength(rd);
  EXPECT_EQ(parse_response(w.m, 1, "a.example", kTypeA).error(), Errc::bad_dns_message);

  // A chain of 17 aliases is longer than any resolver follows; 16 are fine.
  for (int links : {16, 17}) {
    Writer c;
    c.header(1, 0x8180, 1, links, 0, 0);
    c.label("n0").label("example").root().u16(1).u16(1);
    std::size_t owner = 12;
    for (int i = 1; i <= links; ++i) {
      c.ptr(owner);
      rd = c.rr_fixed(kTypeCname, 10);
      owner = c.at();
      c.label("n" + std::to_string(i)).ptr(15);
      c.fix_rdlength(rd);
    }
    auto r = parse_response(c.m, 1, "n0.example", kTypeA);
    if (links == 16) {
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->cnames.size(), 16u);
      EXPECT_EQ(r->cnames.back(), "n16.example");
    } else {
      EXPECT_EQ(r.error(), Errc::bad_dns_message);
    }
  }
}

TEST(DnsMessageTest, NxdomainWithSoaGivesNegativeTtl) {
  auto q = build_query(77, "nope.example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {}, 0, 3);
  ASSERT_TRUE(r.ok());
  auto a = parse_response(*r, 77, "nope.example.com", kTypeA);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->rcode, 3);
  EXPECT_TRUE(a->addresses.empty());
  EXPECT_EQ(a->min_ttl, 0u);

  // The same with an SOA in the authority section: TTL 3600, MINIMUM 300 -> 300 (RFC 2308).
  Writer w;
  w.header(77, 0x8183, 1, 0, 1, 0);
  w.label("nope");
  const std::size_t zone = w.at();
  w.label("example").label("com").root().u16(1).u16(1);
  w.ptr(zone);
  const std::size_t rd = w.rr_fixed(6, 3600);
  w.label("ns").ptr(zone).label("hostmaster").ptr(zone);
  w.u32(2026010101).u32(7200).u32(900).u32(1209600).u32(300);
  w.fix_rdlength(rd);
  auto n = parse_response(w.m, 77, "nope.example.com", kTypeA);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(n->rcode, 3);
  EXPECT_EQ(n->min_ttl, 300u);

  // An SOA whose fixed fields are short is malformed.
  Bytes short_soa = w.m;
  short_soa.pop_back();
  short_soa[rd - 1] = static_cast<std::uint8_t>(short_soa[rd - 1] - 1);
  EXPECT_EQ(parse_response(short_soa, 77, "nope.example.com", kTypeA).error(), Errc::bad_dns_message);
}

TEST(DnsMessageTest, TruncationFlag) {
  auto q = build_query(5, "example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"192.0.2.1", "192.0.2.2"}, 30);
  ASSERT_TRUE(r.ok());
  Bytes tc = *r;
  tc[2] |= 0x02;
  auto a = parse_response(tc, 5, "example.com", kTypeA);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->truncated);
  EXPECT_EQ(a->addresses.size(), 2u);
  // Cut inside the second answer: with TC the first one is kept.
  tc.resize(tc.size() - 3);
  auto cut = parse_response(tc, 5, "example.com", kTypeA);
  ASSERT_TRUE(cut.ok());
  EXPECT_TRUE(cut->truncated);
  EXPECT_EQ(cut->addresses, std::vector<std::string>{"192.0.2.1"});
  // Without TC the same cut is an error.
  tc[2] = static_cast<std::uint8_t>(tc[2] & ~0x02);
  EXPECT_EQ(parse_response(tc, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);
}

TEST(DnsMessageTest, NotOurAnswerRefused) {
  auto q = build_query(5, "example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"192.0.2.1"}, 30);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(parse_response(*r, 5, "example.com", kTypeA).ok());
  EXPECT_EQ(parse_response(*r, 6, "example.com", kTypeA).error(), Errc::bad_dns_message);
  EXPECT_EQ(parse_response(*r, 5, "example.org", kTypeA).error(), Errc::bad_dns_message);
  EXPECT_EQ(parse_response(*r, 5, "www.example.com", kTypeA).error(), Errc::bad_dns_message);
  EXPECT_EQ(parse_response(*r, 5, "example.com", kTypeAaaa).error(), Errc::bad_dns_message);
  EXPECT_EQ(parse_response(*q, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);  // a query
  EXPECT_EQ(parse_response(*r, 5, "bad..name", kTypeA).error(), Errc::bad_config);
  Bytes two_questions = *r;
  two_questions[5] = 2;
  EXPECT_EQ(parse_response(two_questions, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);
  Bytes opcode = *r;
  opcode[2] |= 0x10;  // OPCODE 2 (STATUS)
  EXPECT_EQ(parse_response(opcode, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);
  Bytes chaos = *r;
  chaos[q->size() - 1] = 3;  // QCLASS CH
  EXPECT_EQ(parse_response(chaos, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);
  Bytes trailing = *r;
  trailing.push_back(0);
  EXPECT_EQ(parse_response(trailing, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);
  Bytes bad_rdlength = *r;
  bad_rdlength.push_back(0);
  bad_rdlength[bad_rdlength.size() - 6] = 5;  // an A record of 5 bytes
  EXPECT_EQ(parse_response(bad_rdlength, 5, "example.com", kTypeA).error(), Errc::bad_dns_message);
}

TEST(DnsMessageTest, TopBitTtlCountsAsZero) {
  auto q = build_query(5, "example.com", kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"192.0.2.1"}, 0x80000010u);
  ASSERT_TRUE(r.ok());
  auto a = parse_response(*r, 5, "example.com", kTypeA);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->min_ttl, 0u);
}

// A response header and question for "a.example" A, followed by `rest`.
Bytes with_question(const Bytes& question_name, const Bytes& rest, int ancount) {
  Writer w;
  w.header(1, 0x8180, 1, ancount, 0, 0);
  append(w.m, question_name);
  w.u16(1).u16(1);
  append(w.m, rest);
  return w.m;
}

TEST(DnsMessageTest, PointerLoopsAndOutOfRangeRefused) {
  // The question's name is a pointer to itself.
  EXPECT_EQ(parse_response(with_question(b({0xC0, 12}), {}, 0), 1, "a.example", kTypeA).error(),
            Errc::bad_dns_message);
  // "a" then a pointer back to the "a": a -> a -> a ...
  EXPECT_EQ(parse_response(with_question(b({1, 'a', 0xC0, 12}), {}, 0), 1, "a.example", kTypeA).error(),
            Errc::bad_dns_message);
  // Forward, far out of range, and cut in half.
  EXPECT_EQ(parse_response(with_question(b({0xC0, 14, 1, 'a', 0}), {}, 0), 1, "a", kTypeA).error(),
            Errc::bad_dns_message);
  EXPECT_EQ(parse_response(with_question(b({0xFF, 0xFF}), {}, 0), 1, "a", kTypeA).error(), Errc::bad_dns_message);
  Writer half;
  half.header(1, 0x8180, 1, 0, 0, 0).u8(0xC0);
  EXPECT_EQ(parse_response(half.m, 1, "a", kTypeA).error(), Errc::bad_dns_message);

  // Two names pointing at each other: the answer's owner at X points back to Y < X, and the name
  // at Y (a CNAME's data) points forward to X.
  const Bytes question = b({1, 'a', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0});
  Writer w;
  w.header(1, 0x8180, 1, 2, 0, 0);
  append(w.m, question);
  w.u16(1).u16(1);
  w.ptr(12);
  std::size_t rd = w.rr_fixed(kTypeCname, 1);
  const std::size_t y = w.at();
  w.label("x").ptr(y + 4);  // the next record's owner
  w.fix_rdlength(rd);
  ASSERT_EQ(w.at(), y + 4);
  w.label("z").ptr(y);
  rd = w.rr_fixed(kTypeA, 1);
  w.u32(0x01020304);
  w.fix_rdlength(rd);
  EXPECT_EQ(parse_response(w.m, 1, "a.example", kTypeA).error(), Errc::bad_dns_message);
}

TEST(DnsMessageTest, LabelAndNameLimits) {
  // Label lengths 64..255 are the reserved 0x40/0x80 label types or pointers; a 63-byte label is
  // fine.
  for (int first : {0x40, 0x7F, 0x80, 0xBF}) {
    Bytes name = b({first});
    name.resize(1 + (first & 0x3F) + 1, 'a');
    name.back() = 0;
    EXPECT_EQ(parse_response(with_question(name, {}, 0), 1, "a", kTypeA).error(), Errc::bad_dns_message) << first;
  }
  const std::string l63(63, 'q');
  auto q = build_query(1, l63 + ".example", kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"192.0.2.1"}, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(parse_response(*r, 1, l63 + ".example", kTypeA).ok());

  // A 255-byte name is the longest (RFC 1035 section 3.1).
  const std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  auto lq = build_query(1, longest, kTypeA);
  ASSERT_TRUE(lq.ok());
  auto lr = build_response(*lq, {"192.0.2.1"}, 1);
  ASSERT_TRUE(lr.ok());
  EXPECT_TRUE(parse_response(*lr, 1, longest, kTypeA).ok());
  // Uncompressed, 256 bytes: three 63-byte labels and a 62-byte one.
  Writer w;
  w.header(1, 0x8180, 1, 0, 0, 0);
  for (int i = 0; i < 3; ++i) w.label(l63);
  w.label(std::string(62, 'b')).root().u16(1).u16(1);
  ASSERT_EQ(w.at(), 12u + 256 + 4);
  EXPECT_EQ(parse_response(w.m, 1, "a", kTypeA).error(), Errc::bad_dns_message);

  // Over 255 only through pointers: each answer's owner is a 63-byte label + a pointer to the
  // previous one, so the fourth is 4 * 64 + 1 = 257 bytes long.
  Writer p;
  p.header(1, 0x8180, 1, 4, 0, 0);
  p.label("a").label("example").root().u16(1).u16(1);
  std::size_t prev = 0;
  for (int i = 0; i < 4; ++i) {
    const std::size_t here = p.at();
    p.label(l63);
    if (i == 0) {
      p.root();
    } else {
      p.ptr(prev);
    }
    const std::size_t rd = p.rr_fixed(kTypeA, 1);
    p.u32(0x01020304);
    p.fix_rdlength(rd);
    prev = here;
  }
  EXPECT_EQ(parse_response(p.m, 1, "a.example", kTypeA).error(), Errc::bad_dns_message);
  // The first three (65, 129, 193 bytes) are fine.
  Bytes three = p.m;
  three[7] = 3;
  three.resize(three.size() - (64 + 2 + 10 + 4));
  EXPECT_TRUE(parse_response(three, 1, "a.example", kTypeA).ok());
}

TEST(DnsMessageTest, EveryTruncationIsAnError) {
  auto q = build_query(3, "example.com", kTypeAaaa, 128);
  ASSERT_TRUE(q.ok());
  auto r = build_response(*q, {"2001:db8::1", "2001:db8::2", "2001:db8::3"}, 9);
  ASSERT_TRUE(r.ok());
  for (std::size_t n = 0; n < r->size(); ++n) {
    EXPECT_FALSE(parse_response(ByteView(*r).first(n), 3, "example.com", kTypeAaaa).ok()) << n;
  }
  // A query cut before the end of its question cannot be answered (the OPT after it is not read).
  for (std::size_t n = 0; n < 12 + 13 + 4; ++n) {
    EXPECT_FALSE(build_response(ByteView(*q).first(n), {}, 1).ok()) << n;
  }
  const ChainMessage c = chain_message();
  for (std::size_t n = 0; n < c.bytes.size(); ++n) {
    EXPECT_FALSE(parse_response(ByteView(c.bytes).first(n), 0xBEEF, "www.example.com", kTypeA).ok()) << n;
  }
}

TEST(DnsMessageTest, EverySingleByteChangeParsesOrFails) {
  // Not a check of results, but of safety: every byte of a compressed message set to values that
  // turn it into pointers, label types, big counts or lengths must not read outside (the fuzz
  // target does this at scale under the sanitizers).
  const ChainMessage c = chain_message();
  for (std::size_t i = 0; i < c.bytes.size(); ++i) {
    for (int v : {0x00, 0x01, 0x0C, 0x3F, 0x40, 0x80, 0xC0, 0xFF}) {
      Bytes m = c.bytes;
      m[i] = static_cast<std::uint8_t>(v);
      auto a = parse_response(m, 0xBEEF, "www.example.com", kTypeA);
      if (a.ok()) {
        EXPECT_LE(a->cnames.size(), 16u);
      }
    }
  }
}

}  // namespace
}  // namespace postern::transport::dns
