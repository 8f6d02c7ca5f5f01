// Invite links: postern://HOST:PORT?pin=sha256/<base64url SPKI hash>[&other=...] (docs/protocol.md).
// Unknown parameters are kept (issue 5 adds the server's static key and a deployment secret).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/util/result.h"

namespace postern::client {

struct Invite {
  std::string host;  // a name, an IPv4 address or an IPv6 address without brackets
  std::uint16_t port = 0;
  std::array<std::uint8_t, 32> pin{};  // SHA-256 of the certificate's DER SubjectPublicKeyInfo
  std::vector<std::pair<std::string, std::string>> extra;  // other query parameters, in order
  std::string to_string() const;
};

// Parses an invite link (surrounding whitespace allowed). Errc::bad_invite with no detail; the
// CLI names the rule that failed from `explain_invite_error`.
Result<Invite> parse_invite(std::string_view text);
std::string explain_invite_error(std::string_view text);

}  // namespace postern::client
