// Invite links: postern://HOST:PORT?pin=sha256/<base64url SPKI hash>[&key=K&secret=S][&other=...]
// (docs/protocol.md, docs/transport.md). key = the server's static Noise key, secret = the
// deployment secret that opens the front (both 32 bytes, base64url): with them the client
// reaches the server through the inner channel; without them (a server without the front) it
// speaks the API straight over TLS. Unknown parameters are kept.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/util/result.h"

namespace postern::client {

// A relay's share link has the same form with "relay@" before the host
// (postern://relay@HOST:PORT?pin=<the relay's certificate>&key=<the server's key>&secret=<the
// relay's secret>): the channel still ends at the server, whose key it names.
struct Invite {
  bool relay = false;  // a relay's share link
  std::string host;  // a name, an IPv4 address or an IPv6 address without brackets
  std::uint16_t port = 0;
  std::array<std::uint8_t, 32> pin{};  // SHA-256 of the certificate's DER SubjectPublicKeyInfo
  std::optional<std::array<std::uint8_t, 32>> server_key;    // key=
  std::optional<std::array<std::uint8_t, 32>> front_secret;  // secret= (a secret: never logged)
  // addr= (repeatable, at most 8): IP addresses of `host`, used instead of resolving the name, so
  // that a forged DNS answer cannot send the client elsewhere (the pin would refuse it anyway).
  std::vector<std::string> addresses;
  std::vector<std::pair<std::string, std::string>> extra;  // other query parameters, in order
  std::string to_string() const;
};

// Parses an invite link (surrounding whitespace allowed). Errc::bad_invite with no detail; the
// CLI names the rule that failed from `explain_invite_error`.
Result<Invite> parse_invite(std::string_view text);
std::string explain_invite_error(std::string_view text);

}  // namespace postern::client
