// The censor's sans-I/O DNS parts (no Asio, fuzzed by fuzz/lab_dns_fuzz.cpp): the question of a
// DNS query from a user (hostile bytes; bounded, no compression pointers, which a question never
// needs), and the answer the lab's resolver gives to it. dns.h does the I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::lab::net {

struct DnsQuestion {
  std::uint16_t id = 0;
  std::string name;  // lower case, no trailing dot ("" for the root)
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
};
// Errc::malformed_message for anything that is not a standard query (QR 0, opcode 0) with exactly
// one question of a valid name (labels 1-63 bytes, 255 bytes in all), or that ends inside the
// question. Records after the question (an EDNS OPT) are allowed and not read.
Result<DnsQuestion> parse_query(ByteView message);
// The ID of any DNS message (query or response); nothing when it is shorter than a header.
std::optional<std::uint16_t> message_id(ByteView message);

// The answer LabResolver gives to `query` (sans-I/O): the A record of a known name, no records
// for another type of a known name, NXDOMAIN otherwise. Errc::malformed_message when the query
// does not parse, Errc::bad_config when a record's address cannot answer it (not IPv4); either
// way nothing is sent.
Result<Bytes> lab_resolver_answer(ByteView query, const std::map<std::string, std::string>& records);

}  // namespace postern::lab::net
