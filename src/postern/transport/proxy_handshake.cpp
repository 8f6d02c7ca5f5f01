// SOCKS5 (RFC 1928, RFC 1929) and HTTP CONNECT client handshakes as pure functions over bytes: the
// dialer owns the socket and calls these with what it has read, so the same code runs under the
// fuzzer and in unit tests. Every size is checked before a byte is read. Replies are parsed
// strictly (wrong versions, unknown address types and malformed status lines are errors) because
// a proxy that answers nonsense is more likely a middlebox than a proxy worth talking to; fields
// the RFCs leave reserved are ignored, since they carry no meaning we could act on.
#include "postern/transport/proxy_handshake.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "postern/transport/errors.h"

namespace postern::transport {
namespace {

constexpr std::uint8_t kSocksVersion = 5;
constexpr std::uint8_t kAuthVersion = 1;  // RFC 1929's sub-negotiation version
constexpr std::uint8_t kMethodNone = 0x00;
constexpr std::uint8_t kMethodPassword = 0x02;
constexpr std::uint8_t kCommandConnect = 0x01;
constexpr std::uint8_t kAtypIpv4 = 0x01;
constexpr std::uint8_t kAtypName = 0x03;
constexpr std::uint8_t kAtypIpv6 = 0x04;
// VER REP RSV ATYP: the part of a reply before the bound address.
constexpr std::size_t kReplyFixed = 4;
constexpr std::size_t kReplyPortSize = 2;

constexpr std::size_t kMaxHttpHead = 16 * 1024;

// Standard base64 with padding (RFC 4648 section 4), as Basic authentication (RFC 7617) uses.
std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{static_cast<std::uint8_t>(in[i])} << 16) |
                            (std::uint32_t{static_cast<std::uint8_t>(in[i + 1])} << 8) |
                            std::uint32_t{static_cast<std::uint8_t>(in[i + 2])};
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t{static_cast<std::uint8_t>(in[i])} << 16;
    if (rest == 2) v |= std::uint32_t{static_cast<std::uint8_t>(in[i + 1])} << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// An IPv6 literal may come bracketed, as in URLs ("[::1]"); both SOCKS5 and the Host header want
// the bare form inside, so brackets are dropped before numeric detection.
std::string_view strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

namespace socks5 {

Bytes greeting(bool with_credentials) {
  // Offering only "no authentication" when there are no credentials keeps a proxy that demands a
  // password from picking a method we cannot complete: it answers 0xFF and we report why.
  if (with_credentials) return {kSocksVersion, 2, kMethodNone, kMethodPassword};
  return {kSocksVersion, 1, kMethodNone};
}

Result<std::uint8_t> parse_method_choice(ByteView reply, bool offered_credentials) {
  if (reply.size() != 2 || reply[0] != kSocksVersion) return Errc::bad_frame;
  const std::uint8_t method = reply[1];
  if (method == kMethodNone) return method;
  if (method == kMethodPassword && offered_credentials) return method;
  // 0xFF ("no acceptable methods") and any method we did not offer (GSSAPI, private ones) both
  // mean we cannot go on with this proxy.
  return Errc::proxy_refused;
}

Result<Bytes> credentials_request(const ProxyCredentials& credentials) {
  const auto& user = credentials.username;
  const auto& pass = credentials.password;
  // RFC 1929 carries each field behind a one-byte length, and an empty field cannot be told from
  // "none" by some servers, so both must be 1..255 bytes.
  if (user.empty() || user.size() > 255 || pass.empty() || pass.size() > 255) return Errc::bad_config;
  Bytes out;
  out.reserve(3 + user.size() + pass.size());
  out.push_back(kAuthVersion);
  out.push_back(static_cast<std::uint8_t>(user.size()));
  append(out, as_bytes(user));
  out.push_back(static_cast<std::uint8_t>(pass.size()));
  append(out, as_bytes(pass));
  return out;
}

Status parse_credentials_reply(ByteView reply) {
  if (reply.size() != 2 || reply[0] != kAuthVersion) return Errc::bad_frame;
  if (reply[1] != 0) return Errc::proxy_refused;  // any non-zero status is a failure (RFC 1929)
  return {};
}

Result<Bytes> connect_request(std::string_view host, std::uint16_t port) {
  // Port 0 names no service; a request for it can only be a configuration mistake.
  if (port == 0) return Errc::bad_config;
  const std::string_view bare = strip_brackets(host);
  Bytes out{kSocksVersion, kCommandConnect, 0x00};
  // inet_pton needs a terminated string; 64 bytes hold any textual IPv4 or IPv6 address, so a
  // longer host is a name without trying.
  std::array<char, 64> text{};
  std::array<std::uint8_t, 16> address{};
  const bool fits = !bare.empty() && bare.size() < text.size();
  if (fits) std::memcpy(text.data(), bare.data(), bare.size());
  if (fits && inet_pton(AF_INET, text.data(), address.data()) == 1) {
    out.push_back(kAtypIpv4);
    out.insert(out.end(), address.begin(), address.begin() + 4);
  } else if (fits && inet_pton(AF_INET6, text.data(), address.data()) == 1) {
    out.push_back(kAtypIpv6);
    out.insert(out.end(), address.begin(), address.end());
  } else {
    // Sent as a name so the proxy resolves it: a local lookup would leak the destination to the
    // local (possibly censoring) resolver. A name with brackets is not a name.
    if (host.empty() || host.size() > 255 || bare.size() != host.size()) return Errc::bad_config;
    out.push_back(kAtypName);
    out.push_back(static_cast<std::uint8_t>(host.size()));
    append(out, as_bytes(host));
  }
  out.push_back(static_cast<std::uint8_t>(port >> 8));
  out.push_back(static_cast<std::uint8_t>(port & 0xFF));
  return out;
}

Result<std::optional<std::size_t>> connect_reply_size(ByteView prefix) {
  // Reject a wrong version as soon as its byte is here, so a non-SOCKS peer fails fast instead of
  // leaving the dialer waiting for bytes that will never make sense.
  if (!prefix.empty() && prefix[0] != kSocksVersion) return Errc::bad_frame;
  if (prefix.size() > 3 && prefix[3] != kAtypIpv4 && prefix[3] != kAtypName && prefix[3] != kAtypIpv6) {
    return Errc::bad_frame;
  }
  // Five bytes always suffice: with ATYP 3 the fifth is the name's length.
  if (prefix.size() < kReplyFixed + 1) return std::optional<std::size_t>{};
  std::size_t address_size = 0;
  switch (prefix[3]) {
    case kAtypIpv4: address_size = 4; break;
    case kAtypIpv6: address_size = 16; break;
    default: address_size = 1 + std::size_t{prefix[4]}; break;
  }
  return std::optional<std::size_t>{kReplyFixed + address_size + kReplyPortSize};
}

Status parse_connect_reply(ByteView reply) {
  POSTERN_TRY(const auto size, connect_reply_size(reply));
  // Bytes after the reply belong to the tunnel; the caller must cut them off before calling, so
  // a size mismatch here is a framing bug or a lying proxy.
  if (!size || *size != reply.size()) return Errc::bad_frame;
  if (reply[1] != 0) return Errc::proxy_refused;
  return {};
}

std::string_view reply_text(std::uint8_t rep) {
  switch (rep) {
    case 0x00: return "succeeded";
    case 0x01: return "general failure of the proxy";
    case 0x02: return "connection not allowed by the proxy's rules";
    case 0x03: return "network unreachable";
    case 0x04: return "host unreachable";
    case 0x05: return "connection refused by the destination host";
    case 0x06: return "time to live expired (destination did not answer in time)";
    case 0x07: return "command not supported by the proxy";
    case 0x08: return "address type not supported by the proxy";
    default: return "unknown failure code from the proxy";
  }
}

}  // namespace socks5

namespace http_connect {
namespace {

// Bytes that would end or split the request line or a header if copied into it. The host comes
// from our configuration, but an invite link or a typo must not be able to inject a header, and
// request() has no error to return, so such bytes are dropped.
bool unsafe_in_authority(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7F;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "HTTP/1.x NNN reason" without its CRLF (RFC 9112 section 4). The reason may be empty; the space
// before it is tolerated when missing, as several proxies send "HTTP/1.1 200\r\n".
Result<unsigned> parse_status_line(std::string_view line) {
  constexpr std::string_view kPrefix = "HTTP/1.";
  if (line.size() < kPrefix.size() + 5 || line.substr(0, kPrefix.size()) != kPrefix) return Errc::bad_frame;
  const std::string_view rest = line.substr(kPrefix.size());
  if (!is_digit(rest[0]) || rest[1] != ' ') return Errc::bad_frame;
  if (!is_digit(rest[2]) || !is_digit(rest[3]) || !is_digit(rest[4])) return Errc::bad_frame;
  const unsigned status = static_cast<unsigned>((rest[2] - '0') * 100 + (rest[3] - '0') * 10 + (rest[4] - '0'));
  if (status < 100) return Errc::bad_frame;
  if (rest.size() > 5 && rest[5] != ' ') return Errc::bad_frame;
  for (std::size_t i = 5; i < rest.size(); ++i) {
    const auto u = static_cast<unsigned char>(rest[i]);
    if ((u < 0x20 && u != '\t') || u == 0x7F) return Errc::bad_frame;
  }
  return status;
}

// A header line: a non-empty token name directly followed by ':' (no whitespace before the colon,
// RFC 9112 section 5.1), and no control bytes except HTAB anywhere (which also rules out the bare
// CR or LF that request smuggling relies on).
bool valid_header_line(std::string_view line) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  for (std::size_t i = 0; i < colon; ++i) {
    const auto u = static_cast<unsigned char>(line[i]);
    if (u <= 0x20 || u >= 0x7F || u == '(' || u == ')' || u == ',' || u == '/' || u == ';' || u == '<' ||
        u == '=' || u == '>' || u == '?' || u == '@' || u == '[' || u == '\\' || u == ']' || u == '{' ||
        u == '}' || u == '"') {
      return false;
    }
  }
  for (std::size_t i = colon + 1; i < line.size(); ++i) {
    const auto u = static_cast<unsigned char>(line[i]);
    if ((u < 0x20 && u != '\t') || u == 0x7F) return false;
  }
  return true;
}

}  // namespace

std::string request(std::string_view host, std::uint16_t port, const std::optional<ProxyCredentials>& credentials) {
  std::string clean;
  for (char c : strip_brackets(host)) {
    if (!unsafe_in_authority(c)) clean.push_back(c);
  }
  // An IPv6 literal needs brackets in the authority (RFC 9110 section 4.2.3 via RFC 3986); a colon
  // is enough to tell it, since a host name has none.
  const bool v6 = clean.find(':') != std::string::npos;
  std::string authority = v6 ? "[" + clean + "]" : clean;
  authority += ':';
  authority += std::to_string(port);

  std::string out = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
  if (credentials) {
    // Basic's user-pass is "user:password" in base64 (RFC 7617); encoding keeps any byte of
    // either field out of the header's syntax.
    out += "Proxy-Authorization: Basic " + base64(credentials->username + ":" + credentials->password) + "\r\n";
  }
  out += "\r\n";
  return out;
}

Result<std::optional<Reply>> parse_reply(ByteView buffered) {
  const std::string_view text = as_chars(buffered);
  // Judge the status line as soon as it is complete (or as soon as its start cannot be HTTP), so a
  // peer that is not an HTTP proxy is dropped without waiting for 16 KiB.
  constexpr std::string_view kPrefix = "HTTP/1.";
  const std::size_t shown = std::min(text.size(), kPrefix.size());
  if (text.substr(0, shown) != kPrefix.substr(0, shown)) return Errc::bad_frame;

  const std::size_t window = std::min(text.size(), kMaxHttpHead);
  const std::size_t end = text.substr(0, window).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    const std::size_t first_eol = text.substr(0, window).find("\r\n");
    if (first_eol != std::string_view::npos) {
      POSTERN_TRY(const unsigned status, parse_status_line(text.substr(0, first_eol)));
      (void)status;
    }
    if (text.size() >= kMaxHttpHead) return Errc::too_large;
    return std::optional<Reply>{};
  }

  const std::string_view head = text.substr(0, end);  // without the blank line's CRLFs
  std::size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) line_end = head.size();
  POSTERN_TRY(const unsigned status, parse_status_line(head.substr(0, line_end)));
  std::size_t pos = line_end;
  while (pos < head.size()) {
    pos += 2;  // the CRLF that ended the previous line
    std::size_t next = head.find("\r\n", pos);
    if (next == std::string_view::npos) next = head.size();
    if (!valid_header_line(head.substr(pos, next - pos))) return Errc::bad_frame;
    pos = next;
  }
  return std::optional<Reply>{Reply{status, end + 4}};
}

}  // namespace http_connect

}  // namespace postern::transport
