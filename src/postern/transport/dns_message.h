// DNS messages (RFC 1035; AAAA RFC 3596; EDNS(0) padding RFC 7830/8467), sans-I/O: queries for
// the client's own resolution through DNS-over-HTTPS (RFC 8484) and for `postern doctor`'s
// comparison of answers, and answers (for tests and the censor lab's injector). Parsing follows
// compression pointers with a bound on jumps and never reads outside the message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::dns {

inline constexpr std::uint16_t kTypeA = 1;
inline constexpr std::uint16_t kTypeCname = 5;
inline constexpr std::uint16_t kTypeAaaa = 28;
inline constexpr std::uint16_t kTypeOpt = 41;        // the EDNS(0) pseudo-record (RFC 6891)
inline constexpr std::uint16_t kOptionPadding = 12;  // EDNS(0) option code of padding (RFC 7830)
inline constexpr std::size_t kMaxMessage = 65535;

// A query with RD set for `name` (a host name; Errc::bad_config when a label is empty or over
// 63 bytes or the name over 253). pad_to_block > 0: an EDNS(0) OPT record with padding so the
// message size is a multiple of it (RFC 8467 recommends 128 for queries).
Result<Bytes> build_query(std::uint16_t id, std::string_view name, std::uint16_t qtype, std::size_t pad_to_block = 0);

struct Answer {
  std::uint16_t id = 0;
  std::uint8_t rcode = 0;  // 0 NOERROR, 3 NXDOMAIN, ...
  bool truncated = false;
  std::vector<std::string> addresses;  // A/AAAA records for the name (after CNAMEs), as text
  std::vector<std::string> cnames;
  std::uint32_t min_ttl = 0;
};
// Errc::bad_dns_message for anything malformed, not a response, a different id, or a question
// that is not (name, qtype) (case-insensitive); Errc::bad_config when `name` itself is not a valid
// host name (as for build_query). Compression pointers must point before the name that uses them.
// A truncated (TC) message keeps the complete records before the cut. CNAMEs are followed from the
// question name (at most 16); addresses are those of the chain's last name. min_ttl: the least TTL
// of the CNAMEs and addresses used; with no address, the least of those CNAMEs and the negative
// TTL of an SOA in the authority section (RFC 2308), 0 when there is neither. rcode is the
// header's 4-bit code (an extended RCODE in an OPT record is not merged in).
Result<Answer> parse_response(ByteView message, std::uint16_t expected_id, std::string_view name, std::uint16_t qtype);

// A response to `query` with these addresses (A or AAAA by the query's type; text form), for
// tests and the censor lab's DNS injector. Errc::bad_dns_message when the query does not parse;
// Errc::bad_config for an address that is not of the query's family, addresses for a question
// other than A/AAAA, or rcode over 15; Errc::too_large past 65535 bytes. The response carries no
// OPT record, even when the query had one.
Result<Bytes> build_response(ByteView query, const std::vector<std::string>& addresses, std::uint32_t ttl,
                             std::uint8_t rcode = 0);

// RFC 8484 GET: "<path>?dns=<base64url(query) without padding>" ("&dns=" when path already has
// a query string).
std::string doh_get_target(std::string_view path, ByteView query);

}  // namespace postern::transport::dns
