// The censor's DNS parts on hostile bytes (any user in the lab can send the injector a datagram):
// lab::net::parse_query and lab::net::lab_resolver_answer. Checked beyond "no crash": a refusal
// is always Errc::malformed_message (bytes from outside are never a configuration error); a
// parsed name is at most 253 lower-case bytes of 1-63-byte labels, and a query built from it
// again (transport::dns::build_query) parses to the same id, name and type; an answer keeps the
// query's id and is a response.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "invariant.h"
#include "postern/lab/errors.h"
#include "postern/lab/net/dns_query.h"
#include "postern/transport/dns_message.h"

namespace {

using namespace postern;
using postern::lab::Errc;

void check_name(const std::string& name) {
  if (name.size() > 253) fuzz::fail("name over 253 bytes");
  std::size_t label = 0;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') fuzz::fail("name not lower case");
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) fuzz::fail("name byte");
    label = c == '.' ? 0 : label + 1;
    if (label > 63) fuzz::fail("label over 63 bytes");
  }
  if (!name.empty() && (name.front() == '.' || name.back() == '.' || name.find("..") != std::string::npos)) {
    fuzz::fail("empty label");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView input(data, size);
  const auto q = lab::net::parse_query(input);
  if (!q) {
    if (q.error() != Errc::malformed_message) fuzz::fail("parse_query refused with another error");
  } else {
    check_name(q->name);
    if (!q->name.empty()) {
      const auto again_bytes = transport::dns::build_query(q->id, q->name, q->qtype);
      if (!again_bytes) fuzz::fail("a parsed name does not build again");
      const auto again = lab::net::parse_query(*again_bytes);
      if (!again || again->id != q->id || again->name != q->name || again->qtype != q->qtype) {
        fuzz::fail("round trip through build_query changes the question");
      }
    }
  }
  static const std::map<std::string, std::string> records{{"chat.example", "10.20.0.30"}};
  const auto answer = lab::net::lab_resolver_answer(input, records);
  if (!answer) {
    if (answer.error() != Errc::malformed_message) fuzz::fail("lab_resolver_answer refused with another error");
    return 0;
  }
  if (!q) fuzz::fail("an answer to a query parse_query refuses");
  if (answer->size() < 12 || (*answer)[0] != data[0] || (*answer)[1] != data[1]) fuzz::fail("answer id");
  if (((*answer)[2] & 0x80) == 0) fuzz::fail("answer is not a response");
  return 0;
}
