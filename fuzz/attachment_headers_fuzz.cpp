// The TUS and Range header parsers of the attachments (parse_decimal, valid_upload_metadata,
// valid_upload_id, parse_range) on hostile text. Invariants: nothing aborts; a parsed decimal is
// non-negative and prints back to the same digits; a partial range lies inside the content
// (0 <= first <= last < length); an unsatisfiable one only for non-empty syntax; a valid id has
// exactly 43 base64url characters.
//
// Input: 8 bytes of content length (little-endian, taken modulo 2^62), then the header text.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "invariant.h"
#include "postern/server/attachments.h"

using postern::fuzz::fail;
namespace server = postern::server;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8) return 0;
  std::uint64_t raw = 0;
  std::memcpy(&raw, data, 8);
  const auto length = static_cast<std::int64_t>(raw & ((1ULL << 62) - 1));
  const std::string_view text(reinterpret_cast<const char*>(data + 8), size - 8);

  if (const auto n = server::parse_decimal(text)) {
    if (*n < 0) fail("parse_decimal gave a negative number");
    if (std::to_string(*n) != text && !(text.size() > 1 && text.front() == '0')) fail("parse_decimal round trip");
  }
  (void)server::valid_upload_metadata(text);
  if (server::valid_upload_id(text)) {
    if (text.size() != 43) fail("a valid upload id is not 43 characters");
    for (char c : text) {
      const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) fail("a valid upload id with a character outside base64url");
    }
  }
  const server::RangeRequest r = server::parse_range(text, length);
  if (r.kind == server::RangeKind::partial) {
    if (r.range.first < 0 || r.range.first > r.range.last || r.range.last >= length) fail("a partial range outside the content");
  }
  if (r.kind == server::RangeKind::unsatisfiable && text.empty()) fail("an empty header is unsatisfiable");
  return 0;
}
