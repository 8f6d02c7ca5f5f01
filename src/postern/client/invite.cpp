#include "postern/client/invite.h"

#include "postern/crypto/secret.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <charconv>

#include "postern/client/errors.h"

namespace postern::client {
namespace {

constexpr std::string_view kScheme = "postern://";
constexpr std::string_view kPinPrefix = "sha256/";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// Returns an empty string on success, else what is wrong (for explain_invite_error).
std::string parse(std::string_view text, Invite& out) {
  text = trim(text);
  if (text.size() > 4096) return "the invite is longer than 4096 characters";
  if (!text.starts_with(kScheme)) return "an invite starts with postern://";
  text.remove_prefix(kScheme.size());
  const auto query_at = text.find('?');
  if (query_at == std::string_view::npos) return "the invite has no ?pin=sha256/... part";
  std::string_view authority = text.substr(0, query_at);
  std::string_view query = text.substr(query_at + 1);
  if (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
  Invite invite;
  if (authority.starts_with("relay@")) {
    invite.relay = true;
    authority.remove_prefix(6);
  }

  std::string_view host;
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close + 1 >= authority.size() || authority[close + 1] != ':')
      return "an IPv6 address must be written [ADDRESS]:PORT";
    host = authority.substr(1, close - 1);
    port_text = authority.substr(close + 2);
  } else {
    const auto colon = authority.rfind(':');
    if (colon == std::string_view::npos) return "the invite has no :PORT after the host";
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  if (host.empty() || host.size() > 253) return "the host is empty or too long";
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                    c == ':' || c == '_';
    if (!ok) return "the host has a character that is not allowed";
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return "the port must be a number from 1 to 65535";

  bool have_pin = false;
  invite.host = std::string(host);
  invite.port = static_cast<std::uint16_t>(port);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (key == "addr") {
      if (invite.addresses.size() >= 8) return "the invite has more than 8 addr= parameters";
      const std::string address(value);
      std::array<unsigned char, 16> raw{};
      if (inet_pton(AF_INET, address.c_str(), raw.data()) != 1 && inet_pton(AF_INET6, address.c_str(), raw.data()) != 1)
        return "addr= must be an IPv4 or IPv6 address";
      invite.addresses.push_back(address);
    } else if (key == "key" || key == "secret") {
      auto& slot = key == "key" ? invite.server_key : invite.front_secret;
      if (slot) return "the invite has two " + std::string(key) + " parameters";
      std::array<std::uint8_t, 32> raw{};
      std::size_t len = 0;
      const char* b64_end = nullptr;
      if (sodium_base642bin(raw.data(), raw.size(), value.data(), value.size(), nullptr, &len, &b64_end,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
          len != raw.size() || b64_end != value.data() + value.size())
        return "the " + std::string(key) + " must be 43 characters of base64url (32 bytes)";
      slot = raw;
      crypto::wipe(raw.data(), raw.size());
    } else if (key == "pin") {
      if (have_pin) return "the invite has two pins";
      if (!value.starts_with(kPinPrefix)) return "the pin must start with sha256/";
      const std::string_view b64 = value.substr(kPinPrefix.size());
      std::size_t len = 0;
      const char* b64_end = nullptr;
      if (sodium_base642bin(invite.pin.data(), invite.pin.size(), b64.data(), b64.size(), nullptr, &len, &b64_end,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
          len != invite.pin.size() || b64_end != b64.data() + b64.size())
        return "the pin must be 43 characters of base64url (a SHA-256 hash)";
      have_pin = true;
    } else {
      if (invite.extra.size() >= 32) return "the invite has too many parameters";
      invite.extra.emplace_back(std::string(key), std::string(value));
    }
  }
  if (!have_pin) return "the invite has no pin=sha256/... parameter";
  if (invite.relay && (!invite.server_key || !invite.front_secret)) return "a relay link needs key= and secret=";
  out = std::move(invite);
  return {};
}

}  // namespace

Result<Invite> parse_invite(std::string_view text) {
  Invite invite;
  if (!parse(text, invite).empty()) return Errc::bad_invite;
  return invite;
}

std::string explain_invite_error(std::string_view text) {
  Invite invite;
  return parse(text, invite);
}

namespace {

std::string base64url(const std::array<std::uint8_t, 32>& bytes) {
  std::string b64(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(b64.data(), b64.size(), bytes.data(), bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  b64.resize(std::char_traits<char>::length(b64.c_str()));
  return b64;
}

}  // namespace

std::string Invite::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string out = std::string(kScheme) + (relay ? "relay@" : "") + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) +
                    "?pin=sha256/" + base64url(pin);
  if (server_key) out += "&key=" + base64url(*server_key);
  if (front_secret) out += "&secret=" + base64url(*front_secret);
  for (const auto& a : addresses) out += "&addr=" + a;
  for (const auto& [k, v] : extra) out += "&" + k + "=" + v;
  return out;
}

}  // namespace postern::client
