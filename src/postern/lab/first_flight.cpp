// First-flight classifiers. Design: every parser reads through one bounds-checked cursor (Reader)
// so that no length from the wire is trusted before it is compared with what is left; the
// ClientHello is reassembled from handshake records first (a hello may span records) and then
// parsed as one message, which keeps "read more" (incomplete) apart from "this is wrong"
// (malformed). Fingerprints are computed from the parsed fields only, never from raw bytes.
#include "postern/lab/first_flight.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <string_view>

namespace postern::lab {
namespace {

bool printable(std::uint8_t b) {
  return b >= 0x20 && b <= 0x7e;
}

bool starts_with(ByteView b, std::string_view prefix) {
  return b.size() >= prefix.size() && as_chars(b.first(prefix.size())) == prefix;
}

// RFC 8701: 0x0a0a, 0x1a1a, ..., 0xfafa.
bool is_grease(std::uint16_t v) {
  return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

// A cursor over untrusted bytes: every read checks what is left and latches a failure.
class Reader {
 public:
  explicit Reader(ByteView b) : b_(b) {}
  bool ok() const { return ok_; }
  std::size_t left() const { return b_.size() - pos_; }
  bool empty() const { return left() == 0; }
  std::uint8_t u8() {
    if (!need(1)) return 0;
    return b_[pos_++];
  }
  std::uint16_t u16() {
    if (!need(2)) return 0;
    const auto v = static_cast<std::uint16_t>((b_[pos_] << 8) | b_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  std::uint32_t u24() {
    if (!need(3)) return 0;
    const auto v = (std::uint32_t{b_[pos_]} << 16) | (std::uint32_t{b_[pos_ + 1]} << 8) | b_[pos_ + 2];
    pos_ += 3;
    return v;
  }
  ByteView bytes(std::size_t n) {
    if (!need(n)) return {};
    ByteView v = b_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  // A vector with an 8- or 16-bit length prefix.
  ByteView vec8() { return bytes(u8()); }
  ByteView vec16() { return bytes(u16()); }
  void fail() { ok_ = false; }

 private:
  bool need(std::size_t n) {
    if (!ok_ || left() < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  ByteView b_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

constexpr std::uint8_t kHandshake = 0x16;
constexpr std::uint8_t kClientHelloType = 1;
constexpr std::size_t kRecordHeader = 5;
constexpr std::size_t kMaxRecordPayload = 16384;      // TLSPlaintext.length limit (RFC 8446 5.1)
constexpr std::size_t kMaxHandshakeData = 16 * 1024;  // the hello's header and body together
constexpr std::size_t kMaxHostName = 255;

constexpr std::uint16_t kExtServerName = 0x0000;
constexpr std::uint16_t kExtGroups = 0x000a;
constexpr std::uint16_t kExtPointFormats = 0x000b;
constexpr std::uint16_t kExtSignatureAlgorithms = 0x000d;
constexpr std::uint16_t kExtAlpn = 0x0010;
constexpr std::uint16_t kExtSupportedVersions = 0x002b;
constexpr std::uint16_t kExtEch = 0xfe0d;
constexpr std::uint16_t kExtEsni = 0xffce;

bool hostname_char(std::uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

std::uint8_t lower(std::uint8_t c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c + 32) : c;
}

// A list of 16-bit values filling `data` exactly (length prefix already taken off by the caller's
// Reader); false on an odd length.
bool u16_list(ByteView data, std::vector<std::uint16_t>& out) {
  if (data.size() % 2 != 0) return false;
  Reader r(data);
  while (!r.empty()) out.push_back(r.u16());
  return r.ok();
}

// The body of one extension, which must be consumed exactly.
bool parse_extension(std::uint16_t type, ByteView data, ClientHello& h) {
  Reader r(data);
  switch (type) {
    case kExtServerName: {
      // An empty server_name extension is legal in a ServerHello only; a client sends a list.
      ByteView list = r.vec16();
      if (!r.ok() || !r.empty() || list.empty()) return false;
      Reader l(list);
      bool seen_host = false;
      while (!l.empty()) {
        const std::uint8_t name_type = l.u8();
        ByteView name = l.vec16();
        if (!l.ok()) return false;
        if (name_type != 0) continue;  // unknown name types are skipped (RFC 6066 3)
        if (seen_host || name.empty() || name.size() > kMaxHostName) return false;
        if (!std::all_of(name.begin(), name.end(), hostname_char)) return false;
        seen_host = true;
        h.server_name.clear();
        for (std::uint8_t c : name) h.server_name.push_back(static_cast<char>(lower(c)));
        // A fully qualified name's trailing dot names the same host; name_matches wants it off.
        if (h.server_name.back() == '.') h.server_name.pop_back();
        if (h.server_name.empty()) return false;
      }
      return true;
    }
    case kExtGroups: {
      ByteView list = r.vec16();
      return r.ok() && r.empty() && u16_list(list, h.groups);
    }
    case kExtPointFormats: {
      ByteView list = r.vec8();
      if (!r.ok() || !r.empty() || list.empty()) return false;
      h.ec_point_formats.assign(list.begin(), list.end());
      return true;
    }
    case kExtSignatureAlgorithms: {
      ByteView list = r.vec16();
      return r.ok() && r.empty() && u16_list(list, h.signature_algorithms);
    }
    case kExtSupportedVersions: {
      ByteView list = r.vec8();
      return r.ok() && r.empty() && !list.empty() && u16_list(list, h.supported_versions);
    }
    case kExtAlpn: {
      ByteView list = r.vec16();
      if (!r.ok() || !r.empty() || list.empty()) return false;
      Reader l(list);
      while (!l.empty()) {
        ByteView proto = l.vec8();
        if (!l.ok() || proto.empty()) return false;  // RFC 7301: empty names are not allowed
        h.alpn.emplace_back(as_chars(proto));
      }
      return true;
    }
    case kExtEch:
      h.has_ech = true;
      return true;
    case kExtEsni:
      h.has_esni = true;
      return true;
    default:
      return true;  // other extensions are only listed
  }
}

// The ClientHello body (after the 4-byte handshake header), complete.
bool parse_hello_body(ByteView body, ClientHello& h) {
  Reader r(body);
  h.legacy_version = r.u16();
  r.bytes(32);  // random
  ByteView session_id = r.vec8();
  if (session_id.size() > 32) return false;
  ByteView ciphers = r.vec16();
  if (!r.ok() || ciphers.empty() || !u16_list(ciphers, h.ciphers)) return false;
  ByteView compression = r.vec8();
  if (!r.ok() || compression.empty()) return false;
  if (r.empty()) return true;  // no extensions at all (allowed before TLS 1.3)
  ByteView extensions = r.vec16();
  if (!r.ok() || !r.empty()) return false;
  Reader e(extensions);
  while (!e.empty()) {
    const std::uint16_t type = e.u16();
    ByteView data = e.vec16();
    if (!e.ok()) return false;
    // RFC 8446 4.2: no two extensions of the same type (GREASE values are distinct by design).
    if (std::find(h.extensions.begin(), h.extensions.end(), type) != h.extensions.end()) return false;
    h.extensions.push_back(type);
    if (!parse_extension(type, data, h)) return false;
  }
  return true;
}

std::string hex16(std::uint16_t v) {
  std::array<char, 5> buf{};
  std::snprintf(buf.data(), buf.size(), "%04x", v);
  return buf.data();
}

std::string digest_hex(const EVP_MD* md, std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int n = 0;
  if (EVP_Digest(text.data(), text.size(), out.data(), &n, md, nullptr) != 1) return {};
  return to_hex(ByteView(out.data(), n));
}

std::string join_hex(const std::vector<std::uint16_t>& values) {
  std::string s;
  for (std::uint16_t v : values) {
    if (!s.empty()) s += ',';
    s += hex16(v);
  }
  return s;
}

template <class T>
std::string join_decimal(const std::vector<T>& values, bool skip_grease) {
  std::string s;
  bool first = true;
  for (T v : values) {
    if (skip_grease && is_grease(static_cast<std::uint16_t>(v))) continue;
    if (!first) s += '-';
    first = false;
    s += std::to_string(v);
  }
  return s;
}

std::vector<std::uint16_t> without_grease(const std::vector<std::uint16_t>& values) {
  std::vector<std::uint16_t> out;
  for (std::uint16_t v : values)
    if (!is_grease(v)) out.push_back(v);
  return out;
}

std::string two_digits(std::size_t n) {
  n = std::min<std::size_t>(n, 99);
  return {static_cast<char>('0' + n / 10), static_cast<char>('0' + n % 10)};
}

std::string ja4_version(std::uint16_t v) {
  switch (v) {
    case 0x0304:
      return "13";
    case 0x0303:
      return "12";
    case 0x0302:
      return "11";
    case 0x0301:
      return "10";
    case 0x0300:
      return "s3";
    case 0x0002:
      return "s2";
    case 0xfeff:
      return "d1";
    case 0xfefd:
      return "d2";
    case 0xfefc:
      return "d3";
    default:
      return "00";
  }
}

bool alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

std::string ja4_alpn(const ClientHello& h) {
  if (h.alpn.empty() || h.alpn.front().empty()) return "00";
  const std::string& v = h.alpn.front();
  if (alnum(v.front()) && alnum(v.back())) return {v.front(), v.back()};
  // A non-alphanumeric end byte: the first and last characters of the value's hex instead.
  const std::string hex = to_hex(as_bytes(v));
  return {hex.front(), hex.back()};
}

std::string truncated_sha256(std::string_view text) {
  return digest_hex(EVP_sha256(), text).substr(0, 12);
}

}  // namespace

FetExemption fet_exemption(ByteView p) {
  if (p.empty()) return FetExemption::none;
  const std::size_t n = p.size();
  // Ex1 in integers: bits/n <= 3.4  <=>  10*bits <= 34*n (no rounding at the boundary).
  std::size_t bits = 0;
  for (std::uint8_t b : p) bits += static_cast<std::size_t>(__builtin_popcount(b));
  if (10 * bits <= 34 * n || 10 * bits >= 46 * n) return FetExemption::ex1_popcount;
  if (n >= 6 && std::all_of(p.begin(), p.begin() + 6, printable)) return FetExemption::ex2_printable_head;
  std::size_t count = 0, run = 0, longest = 0;
  for (std::uint8_t b : p) {
    if (printable(b)) {
      ++count;
      longest = std::max(longest, ++run);
    } else {
      run = 0;
    }
  }
  if (2 * count > n) return FetExemption::ex3_printable_half;
  if (longest > 20) return FetExemption::ex4_printable_run;
  const bool tls_like = n >= 3 && (p[0] == 0x16 || p[0] == 0x17) && p[1] == 0x03 && p[2] <= 0x09;
  if (tls_like || starts_with(p, "GET ") || starts_with(p, "PUT ") || starts_with(p, "POST ") ||
      starts_with(p, "HEAD "))
    return FetExemption::ex5_protocol;
  return FetExemption::none;
}

const char* to_string(FetExemption e) {
  switch (e) {
    case FetExemption::none:
      return "none";
    case FetExemption::ex1_popcount:
      return "ex1-popcount";
    case FetExemption::ex2_printable_head:
      return "ex2-printable-head";
    case FetExemption::ex3_printable_half:
      return "ex3-printable-half";
    case FetExemption::ex4_printable_run:
      return "ex4-printable-run";
    case FetExemption::ex5_protocol:
      return "ex5-protocol";
  }
  return "?";
}

HelloResult parse_client_hello(ByteView payload) {
  HelloResult res;
  // Reassemble the handshake message from consecutive handshake records. A record whose header
  // is not a handshake record of TLS 1.0-1.3 ends the search: as the first record it is not TLS,
  // later it interrupts the hello (malformed).
  Bytes hs;
  std::size_t pos = 0;
  bool first = true;
  for (;;) {
    const std::size_t avail = payload.size() - pos;
    ByteView h = payload.subspan(pos, std::min(avail, kRecordHeader));
    // The header's fixed bytes are checked as soon as they arrive, so that garbage is `not_tls`
    // at once instead of `incomplete` until five bytes came.
    const bool header_bad = (h.size() >= 1 && h[0] != kHandshake) || (h.size() >= 2 && h[1] != 0x03) ||
                            (h.size() >= 3 && h[2] > 0x04);
    if (header_bad) {
      res.status = first ? HelloParse::not_tls : HelloParse::malformed;
      return res;
    }
    if (h.size() < kRecordHeader) {
      res.status = HelloParse::incomplete;
      return res;
    }
    const std::size_t len = (std::size_t{h[3]} << 8) | h[4];
    if (len == 0 || len > kMaxRecordPayload) {  // RFC 8446 5.1: no empty handshake fragments
      res.status = HelloParse::malformed;
      return res;
    }
    if (first) res.hello.record_version = static_cast<std::uint16_t>((h[1] << 8) | h[2]);
    first = false;
    const std::size_t take = std::min(len, avail - kRecordHeader);
    append(hs, payload.subspan(pos + kRecordHeader, take));
    pos += kRecordHeader + take;

    if (hs.size() >= 4) {
      if (hs[0] != kClientHelloType) {
        res.status = HelloParse::malformed;
        return res;
      }
      const std::size_t body_len = (std::size_t{hs[1]} << 16) | (std::size_t{hs[2]} << 8) | hs[3];
      if (body_len + 4 > kMaxHandshakeData) {
        res.status = HelloParse::malformed;
        return res;
      }
      if (hs.size() >= body_len + 4) {
        // Bytes after the hello in its last record (arrived or announced) would be a second
        // handshake message, which a client may not send before the server's answer.
        if (hs.size() > body_len + 4 || take < len) {
          res.status = HelloParse::malformed;
          return res;
        }
        const bool good = parse_hello_body(ByteView(hs).subspan(4, body_len), res.hello);
        res.status = good ? HelloParse::ok : HelloParse::malformed;
        if (!good) res.hello = ClientHello{};
        return res;
      }
    }
    if (take < len) {  // the record itself is cut short: read more
      res.status = HelloParse::incomplete;
      return res;
    }
  }
}

std::string ja3_string(const ClientHello& h) {
  std::string s = std::to_string(h.legacy_version);
  s += ',';
  s += join_decimal(h.ciphers, true);
  s += ',';
  s += join_decimal(h.extensions, true);
  s += ',';
  s += join_decimal(h.groups, true);
  s += ',';
  s += join_decimal(h.ec_point_formats, false);
  return s;
}

std::string ja3_hash(const ClientHello& h) {
  return digest_hex(EVP_md5(), ja3_string(h));
}

std::string ja4(const ClientHello& h) {
  const std::vector<std::uint16_t> ciphers = without_grease(h.ciphers);
  const std::vector<std::uint16_t> extensions = without_grease(h.extensions);
  const std::vector<std::uint16_t> versions = without_grease(h.supported_versions);
  const std::uint16_t version =
      versions.empty() ? h.legacy_version : *std::max_element(versions.begin(), versions.end());
  const bool sni = std::find(extensions.begin(), extensions.end(), kExtServerName) != extensions.end();

  std::string a = "t" + ja4_version(version) + (sni ? "d" : "i") + two_digits(ciphers.size()) +
                  two_digits(extensions.size()) + ja4_alpn(h);

  std::vector<std::uint16_t> sorted_ciphers = ciphers;
  std::sort(sorted_ciphers.begin(), sorted_ciphers.end());
  const std::string b = sorted_ciphers.empty() ? "000000000000" : truncated_sha256(join_hex(sorted_ciphers));

  std::vector<std::uint16_t> sorted_ext;
  for (std::uint16_t e : extensions)
    if (e != kExtServerName && e != kExtAlpn) sorted_ext.push_back(e);
  std::sort(sorted_ext.begin(), sorted_ext.end());
  std::string c = "000000000000";
  if (!sorted_ext.empty()) {
    std::string text = join_hex(sorted_ext);
    const std::vector<std::uint16_t> sigs = without_grease(h.signature_algorithms);
    if (!sigs.empty()) text += "_" + join_hex(sigs);
    c = truncated_sha256(text);
  }
  return a + "_" + b + "_" + c;
}

std::optional<std::string> http_host(ByteView payload) {
  constexpr std::size_t kMaxHead = 16 * 1024;
  std::string_view text = as_chars(payload.first(std::min(payload.size(), kMaxHead)));
  // Lines end in CRLF (a bare LF is accepted, as servers do); only complete lines are read.
  auto next_line = [&text](std::string_view& line) {
    const std::size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return false;
    line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    text.remove_prefix(nl + 1);
    return true;
  };
  // Request line: METHOD SP target SP HTTP/x.y
  std::size_t m = 0;
  while (m < text.size() && text[m] >= 'A' && text[m] <= 'Z') ++m;
  if (m == 0 || m > 16 || m >= text.size() || text[m] != ' ') return std::nullopt;
  std::string_view line;
  if (!next_line(line)) return std::nullopt;
  const std::size_t sp = line.rfind(' ');
  if (sp == m || line.substr(sp + 1).substr(0, 5) != "HTTP/") return std::nullopt;

  while (next_line(line) && !line.empty()) {
    const std::size_t colon = line.find(':');
    if (colon != 4) continue;
    std::string name(line.substr(0, 4));
    for (char& ch : name) ch = static_cast<char>(lower(static_cast<std::uint8_t>(ch)));
    if (name != "host") continue;
    std::string_view value = line.substr(5);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    std::string host;
    if (!value.empty() && value.front() == '[') {  // an IPv6 literal, optionally with a port
      const std::size_t close = value.find(']');
      if (close == std::string_view::npos) return std::nullopt;
      host = std::string(value.substr(1, close - 1));
      std::string_view rest = value.substr(close + 1);
      if (!rest.empty() && rest.front() != ':') return std::nullopt;
      for (char ch : host)
        if (!(std::isxdigit(static_cast<unsigned char>(ch)) || ch == ':' || ch == '.')) return std::nullopt;
    } else {
      const std::size_t port = value.find(':');
      host = std::string(value.substr(0, port));
      for (char ch : host)
        if (!hostname_char(static_cast<std::uint8_t>(ch))) return std::nullopt;
    }
    for (char& ch : host) ch = static_cast<char>(lower(static_cast<std::uint8_t>(ch)));
    if (!host.empty() && host.back() == '.') host.pop_back();
    if (host.empty() || host.size() > kMaxHostName) return std::nullopt;
    return host;
  }
  return std::nullopt;
}

bool name_matches(const std::string& name, const std::string& pattern) {
  if (pattern.empty() || name.size() < pattern.size()) return false;
  if (name.size() == pattern.size()) return name == pattern;
  return name.compare(name.size() - pattern.size(), pattern.size(), pattern) == 0 &&
         name[name.size() - pattern.size() - 1] == '.';
}

}  // namespace postern::lab
