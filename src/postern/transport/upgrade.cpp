// See upgrade.h.
#include "postern/transport/upgrade.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>

#include <openssl/evp.h>
#include <sodium.h>

#include "postern/transport/ascii.h"
#include "postern/transport/errors.h"

namespace postern::transport::upgrade {
namespace {

std::string base64(ByteView bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

using ascii::iequals;

bool contains_token(std::string_view list, std::string_view token) {
  // Comma-separated, case-insensitive ("Connection: keep-alive, Upgrade").
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string make_key(crypto::Rng& rng) {
  std::array<std::uint8_t, 16> raw{};
  rng.fill(raw);
  return base64(raw);
}

std::string accept_for(std::string_view key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(key);
  input.append(kGuid);
  std::array<std::uint8_t, 20> digest{};
  unsigned int size = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &size, EVP_sha1(), nullptr) != 1 || size != 20) return {};
  return base64(digest);
}

std::string client_request(std::string_view host_header, std::string_view token, std::string_view key) {
  std::string r;
  r.reserve(256);
  r.append("GET /").append(token).append(" HTTP/1.1\r\nHost: ").append(host_header);
  r.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ").append(key);
  r.append("\r\nSec-WebSocket-Version: 13\r\n\r\n");
  return r;
}

std::string server_response(std::string_view key) {
  std::string r = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  r.append(accept_for(key)).append("\r\n\r\n");
  return r;
}

std::optional<std::int64_t> parse_http_date(std::string_view text) {
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters).
  if (text.size() != 29 || text[3] != ',' || text.substr(25) != " GMT") return std::nullopt;
  static constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto number = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_mday = number(5, 2);
  int month = -1;
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (text.substr(8, 3) == kMonths[i]) month = static_cast<int>(i);
  }
  tm.tm_year = number(12, 4) - 1900;
  tm.tm_hour = number(17, 2);
  tm.tm_min = number(20, 2);
  tm.tm_sec = number(23, 2);
  if (month < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 70 || tm.tm_hour < 0 || tm.tm_hour > 23 ||
      tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60 || text[16] != ' ' || text[19] != ':' ||
      text[22] != ':') {
    return std::nullopt;
  }
  tm.tm_mon = month;
  const std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t);
}

Result<std::optional<ResponseHead>> parse_response_head(ByteView buffered) {
  const std::string_view text = as_chars(buffered);
  const auto end = text.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (text.size() > kMaxResponseHead) return Errc::too_large;
    // A status line that is already wrong need not wait for the rest.
    const std::string_view prefix = text.substr(0, std::min<std::size_t>(text.size(), 7));
    if (std::string_view("HTTP/1.").substr(0, prefix.size()) != prefix) return Errc::bad_frame;
    return std::optional<ResponseHead>{};
  }
  if (end + 4 > kMaxResponseHead) return Errc::too_large;
  ResponseHead head;
  head.head_size = end + 4;
  std::string_view rest = text.substr(0, end + 2);
  const auto line_end = rest.find("\r\n");
  const std::string_view status_line = rest.substr(0, line_end);
  rest.remove_prefix(line_end + 2);
  // "HTTP/1.x NNN[ reason]"
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
      (status_line[7] != '0' && status_line[7] != '1') || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return Errc::bad_frame;
  }
  for (std::size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') return Errc::bad_frame;
    head.status = head.status * 10 + static_cast<unsigned>(status_line[i] - '0');
  }
  bool upgrade = false, connection = false;
  while (!rest.empty()) {
    const auto e = rest.find("\r\n");
    std::string_view line = rest.substr(0, e);
    rest.remove_prefix(e + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return Errc::bad_frame;
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (iequals(name, "Sec-WebSocket-Accept")) head.accept = std::string(value);
    if (iequals(name, "Date")) head.date = parse_http_date(value);
    if (iequals(name, "Upgrade") && iequals(value, "websocket")) upgrade = true;
    if (iequals(name, "Connection") && contains_token(value, "upgrade")) connection = true;
  }
  head.upgrade_websocket = upgrade && connection;
  return std::optional<ResponseHead>(std::move(head));
}

}  // namespace postern::transport::upgrade
