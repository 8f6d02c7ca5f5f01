// See dns_query.h. Sans-I/O: the DNS injector and the lab resolver (dns.cpp) call these on each
// datagram, the fuzz target on anything.
#include "postern/lab/net/dns_query.h"

#include <cctype>
#include <utility>
#include <vector>

#include "postern/lab/errors.h"
#include "postern/transport/dns_message.h"
#include "postern/transport/errors.h"

namespace postern::lab::net {

namespace {

constexpr std::size_t kHeader = 12;
constexpr std::size_t kMaxName = 255;  // wire length, RFC 1035 2.3.4
constexpr std::size_t kMaxLabel = 63;

std::uint16_t be16(ByteView b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

// transport::dns::build_response's errors in the lab's terms: a query it cannot read is the
// sender's fault, anything else (an address that does not fit the question) the lab's.
Errc response_error(std::error_code e) {
  return e == transport::Errc::bad_dns_message ? Errc::malformed_message : Errc::bad_config;
}

}  // namespace

std::optional<std::uint16_t> message_id(ByteView message) {
  if (message.size() < kHeader) return std::nullopt;
  return be16(message, 0);
}

Result<DnsQuestion> parse_query(ByteView m) {
  if (m.size() < kHeader) return Errc::malformed_message;
  DnsQuestion q;
  q.id = be16(m, 0);
  const std::uint8_t flags = m[2];
  if ((flags & 0x80) != 0) return Errc::malformed_message;         // a response
  if (((flags >> 3) & 0x0f) != 0) return Errc::malformed_message;  // not a standard query
  if (be16(m, 4) != 1) return Errc::malformed_message;             // exactly one question
  std::size_t at = kHeader;
  std::size_t wire = 1;  // the root label's length byte
  for (;;) {
    if (at >= m.size()) return Errc::malformed_message;
    const std::uint8_t len = m[at++];
    if (len == 0) break;
    if ((len & 0xc0) != 0) return Errc::malformed_message;  // a pointer or a reserved label type
    if (len > kMaxLabel) return Errc::malformed_message;
    wire += 1u + len;
    if (wire > kMaxName) return Errc::malformed_message;
    if (m.size() - at < len) return Errc::malformed_message;
    if (!q.name.empty()) q.name += '.';
    for (std::size_t i = 0; i < len; ++i) {
      const auto c = static_cast<unsigned char>(m[at + i]);
      if (c == '.' || c < 0x21 || c > 0x7e) return Errc::malformed_message;  // not a host-name-like label
      q.name += static_cast<char>(std::tolower(c));
    }
    at += len;
  }
  if (m.size() - at < 4) return Errc::malformed_message;
  q.qtype = be16(m, at);
  q.qclass = be16(m, at + 2);
  return q;
}

Result<Bytes> lab_resolver_answer(ByteView query, const std::map<std::string, std::string>& records) {
  POSTERN_TRY(DnsQuestion q, parse_query(query));
  const auto it = records.find(q.name);
  if (it == records.end()) {
    auto r = transport::dns::build_response(query, {}, 60, 3);
    if (!r) return response_error(r.error());
    return std::move(r).value();
  }
  std::vector<std::string> addresses;
  if (q.qtype == transport::dns::kTypeA) addresses.push_back(it->second);
  auto r = transport::dns::build_response(query, addresses, 60, 0);
  if (!r) return response_error(r.error());
  return std::move(r).value();
}

}  // namespace postern::lab::net
