// DNS messages as pure functions over bytes (RFC 1035 section 4.1). Names are handled in their
// uncompressed wire form (length-prefixed labels, original case): comparing two of them is then a
// byte comparison with ASCII case folding, with no escaping questions about dots inside labels,
// and the original case survives into responses (DNS 0x20 randomisation relies on the echo).
// Compression pointers must point strictly before the start of the name segment that contains
// them: every legitimate encoder does that (a pointer names a *prior* occurrence), and it makes
// every pointer chain strictly decreasing, so loops are impossible rather than merely bounded.
// A jump bound and the 255-byte name limit bound the work further. Records are read through one
// cursor that checks each size before each read; nothing is read past the message.
#include "postern/transport/dns_message.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <optional>

#include "postern/transport/errors.h"

namespace postern::transport::dns {
namespace {

constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxNameWire = 255;  // RFC 1035 section 3.1, length bytes included
constexpr std::size_t kMaxLabel = 63;
// A name of 255 wire bytes has at most 127 labels; more jumps than that cannot be needed by any
// encoder, however odd.
constexpr int kMaxJumps = 127;
// Resolvers give up on CNAME chains of about this length (BIND: 16 hops); a longer one in a single
// answer is either broken or an attempt to make us work.
constexpr std::size_t kMaxCnameChain = 16;
constexpr std::uint16_t kClassIn = 1;
constexpr std::uint16_t kTypeSoa = 6;
// 1232 bytes: the EDNS buffer size the 2020 DNS flag day settled on (no IP fragmentation). It only
// matters if a query is ever sent over UDP; over DoH the HTTP body has no such limit.
constexpr std::uint16_t kEdnsUdpSize = 1232;
constexpr std::size_t kOptFixedSize = 11;     // root name, type, class, TTL, RDLENGTH
constexpr std::size_t kOptionHeaderSize = 4;  // OPTION-CODE, OPTION-LENGTH

// Flags (the second 16-bit word of the header).
constexpr std::uint16_t kFlagQr = 0x8000;
constexpr std::uint16_t kFlagTc = 0x0200;
constexpr std::uint16_t kFlagRd = 0x0100;
constexpr std::uint16_t kFlagRa = 0x0080;
constexpr std::uint16_t kOpcodeMask = 0x7800;

std::uint16_t get16(ByteView m, std::size_t at) {
  return static_cast<std::uint16_t>((std::uint16_t{m[at]} << 8) | m[at + 1]);
}
std::uint32_t get32(ByteView m, std::size_t at) {
  return (std::uint32_t{m[at]} << 24) | (std::uint32_t{m[at + 1]} << 16) | (std::uint32_t{m[at + 2]} << 8) |
         std::uint32_t{m[at + 3]};
}
void put16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xFF));
}
void put32(Bytes& out, std::uint32_t v) {
  put16(out, static_cast<std::uint16_t>(v >> 16));
  put16(out, static_cast<std::uint16_t>(v & 0xFFFF));
}

// A host name in text ("example.com", one trailing dot allowed) to wire form. Labels are 1..63
// bytes of printable ASCII without spaces: internationalised names arrive here already in their
// ASCII (punycode) form, and anything else is a configuration mistake, not a name to look up.
Result<std::string> encode_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return Errc::bad_config;
  std::string wire;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > kMaxLabel) return Errc::bad_config;
    for (char c : label) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7F) return Errc::bad_config;
    }
    wire.push_back(static_cast<char>(label.size()));
    wire.append(label);
    if (dot == name.size()) break;
    start = dot + 1;
  }
  wire.push_back('\0');
  if (wire.size() > kMaxNameWire) return Errc::bad_config;
  return wire;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Wire names compare equal when their bytes do after ASCII case folding (RFC 4343); length bytes
// are at most 63 and so never fall in 'A'..'Z'.
bool same_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// Wire form to text: labels joined by dots, with the RFC 1035 section 5.1 escapes (\. \\ \DDD)
// for bytes that would make the text ambiguous or unprintable.
std::string name_text(std::string_view wire) {
  std::string out;
  std::size_t p = 0;
  while (p < wire.size() && wire[p] != '\0') {
    const std::size_t len = static_cast<unsigned char>(wire[p]);
    if (!out.empty()) out.push_back('.');
    for (std::size_t i = 1; i <= len && p + i < wire.size(); ++i) {
      const auto u = static_cast<unsigned char>(wire[p + i]);
      if (u == '.' || u == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(u));
      } else if (u <= 0x20 || u >= 0x7F) {
        out.push_back('\\');
        out.push_back(static_cast<char>('0' + u / 100));
        out.push_back(static_cast<char>('0' + (u / 10) % 10));
        out.push_back(static_cast<char>('0' + u % 10));
      } else {
        out.push_back(static_cast<char>(u));
      }
    }
    p += 1 + len;
  }
  return out.empty() ? "." : out;
}

// Reads the (possibly compressed) name at `pos`. `wire` receives it uncompressed; `next` the
// offset just after the name where it was written (after its first pointer, if any).
Status read_name(ByteView m, std::size_t pos, std::size_t& next, std::string& wire) {
  wire.clear();
  std::size_t p = pos;
  std::size_t segment_start = pos;  // pointers must go strictly below this
  bool jumped = false;
  int jumps = 0;
  while (true) {
    if (p >= m.size()) return Errc::bad_dns_message;
    const std::uint8_t len = m[p];
    if ((len & 0xC0) == 0xC0) {
      if (p + 1 >= m.size()) return Errc::bad_dns_message;
      const std::size_t target = (std::size_t{len & 0x3Fu} << 8) | m[p + 1];
      if (target >= segment_start || ++jumps > kMaxJumps) return Errc::bad_dns_message;
      if (!jumped) next = p + 2;
      jumped = true;
      p = target;
      segment_start = target;
      continue;
    }
    // 0x40 and 0x80 introduce the extended and binary label types (RFC 6891 section 5, RFC 2673),
    // which nobody uses any more.
    if ((len & 0xC0) != 0) return Errc::bad_dns_message;
    if (len == 0) {
      wire.push_back('\0');
      if (!jumped) next = p + 1;
      return {};
    }
    // Room for this label and the final root byte within 255 bytes.
    if (wire.size() + 1 + len + 1 > kMaxNameWire || p + 1 + len > m.size()) return Errc::bad_dns_message;
    wire.push_back(static_cast<char>(len));
    wire.append(reinterpret_cast<const char*>(m.data() + p + 1), len);
    p += 1 + len;
  }
}

struct Record {
  std::string owner;  // wire form
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata = 0;  // offset in the message
  std::size_t rdlength = 0;
};

Status read_record(ByteView m, std::size_t& pos, Record& r) {
  std::size_t next = 0;
  POSTERN_CHECK(read_name(m, pos, next, r.owner));
  if (next + 10 > m.size()) return Errc::bad_dns_message;
  r.type = get16(m, next);
  r.klass = get16(m, next + 2);
  // A TTL with the top bit set is treated as zero (RFC 2181 section 8): it must not become a
  // cache lifetime of 68 years.
  const std::uint32_t ttl = get32(m, next + 4);
  r.ttl = (ttl & 0x80000000u) != 0 ? 0 : ttl;
  r.rdlength = get16(m, next + 8);
  r.rdata = next + 10;
  if (r.rdata + r.rdlength > m.size()) return Errc::bad_dns_message;
  pos = r.rdata + r.rdlength;
  return {};
}

// A name that must fill the record data exactly (CNAME, and the two names of SOA in sequence).
Status read_rdata_name(ByteView m, std::size_t& pos, std::size_t rdata_end, std::string& wire) {
  std::size_t next = 0;
  POSTERN_CHECK(read_name(m, pos, next, wire));
  if (next > rdata_end) return Errc::bad_dns_message;
  pos = next;
  return {};
}

struct Question {
  std::string name;  // wire form, original case
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  std::size_t end = 0;  // offset after the question
};

Result<Question> read_question(ByteView m, std::size_t pos) {
  Question q;
  std::size_t next = 0;
  POSTERN_CHECK(read_name(m, pos, next, q.name));
  if (next + 4 > m.size()) return Errc::bad_dns_message;
  q.type = get16(m, next);
  q.klass = get16(m, next + 2);
  q.end = next + 4;
  return q;
}

std::optional<std::string> address_text(ByteView m, const Record& r) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (r.type == kTypeA && r.rdlength == 4) {
    if (inet_ntop(AF_INET, m.data() + r.rdata, text.data(), text.size()) == nullptr) return std::nullopt;
  } else if (r.type == kTypeAaaa && r.rdlength == 16) {
    if (inet_ntop(AF_INET6, m.data() + r.rdata, text.data(), text.size()) == nullptr) return std::nullopt;
  } else {
    return std::nullopt;
  }
  return std::string(text.data());
}

// Base64url without padding (RFC 4648 section 5), as RFC 8484 section 4.1 asks for.
std::string base64url(ByteView in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t{in[i]} << 16;
    if (rest == 2) v |= std::uint32_t{in[i + 1]} << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

}  // namespace

Result<Bytes> build_query(std::uint16_t id, std::string_view name, std::uint16_t qtype, std::size_t pad_to_block) {
  POSTERN_TRY(const std::string wire, encode_name(name));
  if (pad_to_block > kMaxMessage) return Errc::bad_config;  // no message could be a multiple of it
  Bytes out;
  out.reserve(kHeaderSize + wire.size() + 4 + kOptFixedSize + kOptionHeaderSize + pad_to_block);
  put16(out, id);
  put16(out, kFlagRd);
  put16(out, 1);                        // QDCOUNT
  put16(out, 0);                        // ANCOUNT
  put16(out, 0);                        // NSCOUNT
  put16(out, pad_to_block > 0 ? 1 : 0);  // ARCOUNT: the OPT record
  append(out, as_bytes(wire));
  put16(out, qtype);
  put16(out, kClassIn);
  if (pad_to_block == 0) return out;

  // The padding option goes last and is sized so the whole message is a multiple of the block
  // (RFC 8467 section 4.1): then every query of a similar name has the same length on the wire.
  const std::size_t unpadded = out.size() + kOptFixedSize + kOptionHeaderSize;
  const std::size_t padding = (pad_to_block - unpadded % pad_to_block) % pad_to_block;
  if (unpadded + padding > kMaxMessage) return Errc::bad_config;
  out.push_back(0);  // root owner name
  put16(out, kTypeOpt);
  put16(out, kEdnsUdpSize);  // CLASS carries the requestor's UDP payload size
  put32(out, 0);             // extended RCODE 0, version 0, no DO bit
  put16(out, static_cast<std::uint16_t>(kOptionHeaderSize + padding));
  put16(out, kOptionPadding);
  put16(out, static_cast<std::uint16_t>(padding));
  out.insert(out.end(), padding, 0x00);  // RFC 7830 section 4: padding octets SHOULD be zero
  return out;
}

Result<Answer> parse_response(ByteView message, std::uint16_t expected_id, std::string_view name,
                              std::uint16_t qtype) {
  POSTERN_TRY(const std::string want, encode_name(name));
  const ByteView m = message;
  if (m.size() < kHeaderSize || m.size() > kMaxMessage) return Errc::bad_dns_message;
  Answer answer;
  answer.id = get16(m, 0);
  const std::uint16_t flags = get16(m, 2);
  // Not ours (a late answer to an earlier query, or an injected guess) or not a response to a
  // standard query: either way nothing in it can be used.
  if (answer.id != expected_id || (flags & kFlagQr) == 0 || (flags & kOpcodeMask) != 0) {
    return Errc::bad_dns_message;
  }
  answer.rcode = static_cast<std::uint8_t>(flags & 0x0F);
  answer.truncated = (flags & kFlagTc) != 0;
  const std::uint16_t qdcount = get16(m, 4);
  const std::uint16_t ancount = get16(m, 6);
  const std::uint16_t nscount = get16(m, 8);
  const std::uint16_t arcount = get16(m, 10);
  if (qdcount != 1) return Errc::bad_dns_message;

  POSTERN_TRY(const Question q, read_question(m, kHeaderSize));
  if (!same_name(q.name, want) || q.type != qtype || q.klass != kClassIn) return Errc::bad_dns_message;

  // Every record of every section is framed and checked, so a message is either wholly well
  // formed or refused. A truncated message (TC) may legitimately stop early: whatever complete
  // records came before the cut are kept, and the caller learns from `truncated` to retry.
  std::vector<Record> answers;
  std::optional<std::uint32_t> negative_ttl;
  std::size_t pos = q.end;
  bool cut = false;
  const std::size_t counts[3] = {ancount, nscount, arcount};
  for (int section = 0; section < 3 && !cut; ++section) {
    for (std::size_t i = 0; i < counts[section]; ++i) {
      Record r;
      if (Status s = read_record(m, pos, r); !s) {
        if (answer.truncated) {
          cut = true;
          break;
        }
        return s.error();
      }
      const std::size_t rdata_end = r.rdata + r.rdlength;
      if (r.klass == kClassIn && ((r.type == kTypeA && r.rdlength != 4) || (r.type == kTypeAaaa && r.rdlength != 16))) {
        return Errc::bad_dns_message;
      }
      if (r.klass == kClassIn && r.type == kTypeCname) {
        std::size_t p = r.rdata;
        std::string target;
        POSTERN_CHECK(read_rdata_name(m, p, rdata_end, target));
        if (p != rdata_end) return Errc::bad_dns_message;
      }
      if (section == 1 && r.klass == kClassIn && r.type == kTypeSoa) {
        // MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM (RFC 1035 section 3.3.13).
        std::size_t p = r.rdata;
        std::string skipped;
        POSTERN_CHECK(read_rdata_name(m, p, rdata_end, skipped));
        POSTERN_CHECK(read_rdata_name(m, p, rdata_end, skipped));
        if (p + 20 != rdata_end) return Errc::bad_dns_message;
        // A negative answer may be cached for the lesser of the SOA's TTL and MINIMUM (RFC 2308
        // section 5).
        const std::uint32_t minimum = get32(m, p + 16);
        const std::uint32_t ttl = std::min(r.ttl, (minimum & 0x80000000u) != 0 ? 0 : minimum);
        negative_ttl = negative_ttl ? std::min(*negative_ttl, ttl) : ttl;
      }
      if (section == 0) answers.push_back(std::move(r));
    }
  }
  // Trailing bytes belong to no record: a strict parser does not guess what they are.
  if (!cut && pos != m.size()) return Errc::bad_dns_message;

  // Follow CNAMEs from the question name, in whatever order the records came (RFC 1034 section
  // 3.6.2 allows any), then take the addresses of the last name. Records for other names are
  // ignored: they are not what we asked about, whatever the server meant by them.
  std::string current = want;
  std::optional<std::uint32_t> min_ttl;
  auto use_ttl = [&min_ttl](std::uint32_t ttl) { min_ttl = min_ttl ? std::min(*min_ttl, ttl) : ttl; };
  std::vector<std::string> seen{current};
  while (true) {
    const Record* alias = nullptr;
    for (const Record& r : answers) {
      if (r.type == kTypeCname && r.klass == kClassIn && same_name(r.owner, current)) {
        alias = &r;
        break;
      }
    }
    if (alias == nullptr) break;
    std::size_t p = alias->rdata;
    std::string target;
    POSTERN_CHECK(read_rdata_name(m, p, alias->rdata + alias->rdlength, target));
    for (const std::string& s : seen) {
      if (same_name(s, target)) return Errc::bad_dns_message;  // a CNAME loop answers nothing
    }
    if (answer.cnames.size() >= kMaxCnameChain) return Errc::bad_dns_message;
    answer.cnames.push_back(name_text(target));
    use_ttl(alias->ttl);
    seen.push_back(target);
    current = std::move(target);
  }
  for (const Record& r : answers) {
    if (r.type != qtype || r.klass != kClassIn || !same_name(r.owner, current)) continue;
    if (auto text = address_text(m, r)) {
      answer.addresses.push_back(std::move(*text));
      use_ttl(r.ttl);
    }
  }
  if (answer.addresses.empty() && negative_ttl) use_ttl(*negative_ttl);
  answer.min_ttl = min_ttl.value_or(0);
  return answer;
}

Result<Bytes> build_response(ByteView query, const std::vector<std::string>& addresses, std::uint32_t ttl,
                             std::uint8_t rcode) {
  if (query.size() < kHeaderSize || query.size() > kMaxMessage) return Errc::bad_dns_message;
  const std::uint16_t flags = get16(query, 2);
  if ((flags & kFlagQr) != 0 || get16(query, 4) != 1) return Errc::bad_dns_message;
  POSTERN_TRY(const Question q, read_question(query, kHeaderSize));
  if (rcode > 0x0F) return Errc::bad_config;  // larger codes need an OPT record (RFC 6891)

  int family = 0;
  std::size_t address_size = 0;
  if (q.type == kTypeA) {
    family = AF_INET;
    address_size = 4;
  } else if (q.type == kTypeAaaa) {
    family = AF_INET6;
    address_size = 16;
  } else if (!addresses.empty()) {
    return Errc::bad_config;  // addresses only answer A and AAAA questions
  }
  // Each answer is a 2-byte pointer, 10 bytes of fixed fields and the address.
  const std::size_t size = kHeaderSize + q.name.size() + 4 + addresses.size() * (12 + address_size);
  if (addresses.size() > 0xFFFF || size > kMaxMessage) return Errc::too_large;

  Bytes out;
  out.reserve(size);
  put16(out, get16(query, 0));
  // Opcode and RD copied from the query; QR and RA set; AA, TC, Z, AD and CD clear.
  put16(out, static_cast<std::uint16_t>(kFlagQr | (flags & (kOpcodeMask | kFlagRd)) | kFlagRa | rcode));
  put16(out, 1);
  put16(out, static_cast<std::uint16_t>(addresses.size()));
  put16(out, 0);
  put16(out, 0);
  // The question is written uncompressed at offset 12, so the answers can all point at it.
  append(out, as_bytes(q.name));
  put16(out, q.type);
  put16(out, q.klass);
  for (const std::string& text : addresses) {
    std::array<std::uint8_t, 16> address{};
    if (text.find('\0') != std::string::npos) return Errc::bad_config;  // c_str() would cut it short
    if (inet_pton(family, text.c_str(), address.data()) != 1) return Errc::bad_config;
    put16(out, 0xC000 | kHeaderSize);
    put16(out, q.type);
    put16(out, q.klass);
    put32(out, ttl);
    put16(out, static_cast<std::uint16_t>(address_size));
    out.insert(out.end(), address.begin(), address.begin() + static_cast<std::ptrdiff_t>(address_size));
  }
  return out;
}

std::string doh_get_target(std::string_view path, ByteView query) {
  // RFC 8484's URI template is "{?dns}": a path that already has a query string gets "&dns=".
  const char joiner = path.find('?') == std::string_view::npos ? '?' : '&';
  std::string out(path);
  out.push_back(joiner);
  out += "dns=";
  out += base64url(query);
  return out;
}

}  // namespace postern::transport::dns
