// The DNS injector's query parser on queries built by transport/dns_message.h and by hand, and
// on hostile bytes (truncations, pointers, oversized labels and names, responses), which must all
// come back as Errc::malformed_message; and the lab resolver's answers, read back with
// parse_response.
#include "postern/lab/net/dns_query.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "postern/lab/errors.h"
#include "postern/transport/dns_message.h"

namespace postern::lab::net {
namespace {

Bytes header(int id, int flags_hi, int qdcount) {
  return Bytes{static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), static_cast<std::uint8_t>(flags_hi),
               0, 0, static_cast<std::uint8_t>(qdcount), 0, 0, 0, 0, 0, 0};
}
void label(Bytes& m, const std::string& s) {
  m.push_back(static_cast<std::uint8_t>(s.size()));
  m.insert(m.end(), s.begin(), s.end());
}
void type_class(Bytes& m, int type, int cls) {
  m.push_back(static_cast<std::uint8_t>(type >> 8));
  m.push_back(static_cast<std::uint8_t>(type));
  m.push_back(static_cast<std::uint8_t>(cls >> 8));
  m.push_back(static_cast<std::uint8_t>(cls));
}
// Bytes from the network that do not parse are malformed, never a configuration error.
void expect_malformed(ByteView m, const std::string& what = {}) {
  auto p = parse_query(m);
  ASSERT_FALSE(p.ok()) << what;
  EXPECT_EQ(p.error(), Errc::malformed_message) << what;
}

TEST(LabDnsQuery, ParsesAQueryFromTheTransportBuilder) {
  auto q = transport::dns::build_query(0x1234, "Chat.Example.ORG", transport::dns::kTypeA);
  ASSERT_TRUE(q.ok());
  auto p = parse_query(*q);
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->id, 0x1234);
  EXPECT_EQ(p->name, "chat.example.org");
  EXPECT_EQ(p->qtype, transport::dns::kTypeA);
  EXPECT_EQ(p->qclass, 1);
}

TEST(LabDnsQuery, MessageId) {
  auto q = transport::dns::build_query(0xbeef, "a.example", transport::dns::kTypeA);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(message_id(*q), 0xbeef);
  EXPECT_EQ(message_id(ByteView(q->data(), 12)), 0xbeef);
  EXPECT_FALSE(message_id(ByteView(q->data(), 11)).has_value());
  EXPECT_FALSE(message_id({}).has_value());
}

TEST(LabDnsQuery, AcceptsEdnsAfterTheQuestion) {
  auto q = transport::dns::build_query(7, "a.example", transport::dns::kTypeAaaa, 128);
  ASSERT_TRUE(q.ok());
  auto p = parse_query(*q);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "a.example");
  EXPECT_EQ(p->qtype, transport::dns::kTypeAaaa);
}

TEST(LabDnsQuery, RootName) {
  Bytes m = header(1, 0x01, 1);
  m.push_back(0);
  type_class(m, 2, 1);
  auto p = parse_query(m);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "");
  EXPECT_EQ(p->qtype, 2);
}

TEST(LabDnsQuery, EveryTruncationIsAnError) {
  auto q = transport::dns::build_query(9, "www.example.com", transport::dns::kTypeA);
  ASSERT_TRUE(q.ok());
  for (std::size_t n = 0; n < q->size(); ++n) {
    expect_malformed(ByteView(q->data(), n), "length " + std::to_string(n));
  }
}

TEST(LabDnsQuery, RefusesResponsesOtherOpcodesAndQuestionCounts) {
  Bytes body;
  label(body, "x");
  body.push_back(0);
  type_class(body, 1, 1);
  for (auto [flags, qd] : {std::pair{0x81, 1}, std::pair{0x09, 1}, std::pair{0x01, 0}, std::pair{0x01, 2}}) {
    Bytes m = header(3, flags, qd);
    m.insert(m.end(), body.begin(), body.end());
    expect_malformed(m, "flags " + std::to_string(flags) + " qd " + std::to_string(qd));
  }
}

TEST(LabDnsQuery, RefusesPointersAndReservedLabelTypes) {
  for (int first : {0xc0, 0x40, 0x80}) {
    Bytes m = header(3, 0x01, 1);
    m.push_back(static_cast<std::uint8_t>(first));
    m.push_back(12);
    type_class(m, 1, 1);
    expect_malformed(m, std::to_string(first));
  }
}

TEST(LabDnsQuery, LabelAndNameLimits) {
  {
    Bytes m = header(3, 0x01, 1);
    label(m, std::string(63, 'a'));
    m.push_back(0);
    type_class(m, 1, 1);
    EXPECT_TRUE(parse_query(m).ok());
  }
  {
    // A 64-byte label cannot be written (its length byte would be 0x40, a reserved type).
    Bytes m = header(3, 0x01, 1);
    label(m, std::string(64, 'a'));
    m.push_back(0);
    type_class(m, 1, 1);
    expect_malformed(m);
  }
  {
    // Four 63-byte labels: 4 * 64 + 1 = 257 bytes on the wire, over 255.
    Bytes m = header(3, 0x01, 1);
    for (int i = 0; i < 4; ++i) label(m, std::string(63, 'b'));
    m.push_back(0);
    type_class(m, 1, 1);
    expect_malformed(m);
  }
  {
    // Exactly 255: three 63-byte labels and one of 61.
    Bytes m = header(3, 0x01, 1);
    for (int i = 0; i < 3; ++i) label(m, std::string(63, 'c'));
    label(m, std::string(61, 'd'));
    m.push_back(0);
    type_class(m, 1, 1);
    auto p = parse_query(m);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->name.size(), 253u);
  }
}

TEST(LabDnsQuery, RefusesDotsAndControlBytesInLabels) {
  for (std::string bad : {std::string("a.b"), std::string("a\0b", 3), std::string("a b"), std::string("\x7f")}) {
    Bytes m = header(3, 0x01, 1);
    label(m, bad);
    m.push_back(0);
    type_class(m, 1, 1);
    expect_malformed(m);
  }
}

TEST(LabResolverAnswer, KnownNameUnknownNameOtherType) {
  const std::map<std::string, std::string> records{{"chat.example", "10.20.0.30"}};
  {
    auto q = transport::dns::build_query(11, "CHAT.example", transport::dns::kTypeA);
    ASSERT_TRUE(q.ok());
    auto r = lab_resolver_answer(*q, records);
    ASSERT_TRUE(r.ok());
    auto a = transport::dns::parse_response(*r, 11, "CHAT.example", transport::dns::kTypeA);
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_EQ(a->rcode, 0);
    EXPECT_EQ(a->addresses, std::vector<std::string>{"10.20.0.30"});
  }
  {
    auto q = transport::dns::build_query(12, "other.example", transport::dns::kTypeA);
    ASSERT_TRUE(q.ok());
    auto r = lab_resolver_answer(*q, records);
    ASSERT_TRUE(r.ok());
    auto a = transport::dns::parse_response(*r, 12, "other.example", transport::dns::kTypeA);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->rcode, 3);
    EXPECT_TRUE(a->addresses.empty());
  }
  {
    auto q = transport::dns::build_query(13, "chat.example", transport::dns::kTypeAaaa);
    ASSERT_TRUE(q.ok());
    auto r = lab_resolver_answer(*q, records);
    ASSERT_TRUE(r.ok());
    auto a = transport::dns::parse_response(*r, 13, "chat.example", transport::dns::kTypeAaaa);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->rcode, 0);
    EXPECT_TRUE(a->addresses.empty());
  }
  const Bytes junk{1, 2, 3};
  auto r = lab_resolver_answer(junk, records);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Errc::malformed_message);
}

TEST(LabResolverAnswer, ARecordThatCannotAnswerIsTheLabsFault) {
  const std::map<std::string, std::string> records{{"chat.example", "not-an-address"}};
  auto q = transport::dns::build_query(14, "chat.example", transport::dns::kTypeA);
  ASSERT_TRUE(q.ok());
  auto r = lab_resolver_answer(*q, records);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Errc::bad_config);
}

TEST(LabDnsQuery, MalformedMessageIsRegistered) {
  const std::error_code e = Errc::malformed_message;
  EXPECT_STREQ(e.category().name(), "postern.lab");
  EXPECT_EQ(e.value(), 7);
  EXPECT_NE(e.message(), "unknown lab error");
  EXPECT_NE(e.message(), make_error_code(Errc::bad_config).message());
}

}  // namespace
}  // namespace postern::lab::net
