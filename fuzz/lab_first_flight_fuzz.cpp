// The censor lab's first-flight classifiers on hostile bytes: fet_exemption, parse_client_hello
// (and JA3/JA4 of what it accepts), http_host, and a TlsInTlsDetector. Invariants: no crash; a
// parsed hello's server name is 1-255 lower-case hostname characters, its JA4 has the fixed shape
// and a hello is never judged fully encrypted; a Host is 1-255 bytes without spaces or upper
// case; the detector's verdict is the same whether each segment is fed at once, in pieces of
// 1 + (first byte % 13) bytes, or byte by byte. For the detector the input after the first byte
// is a list of segments, each a byte (bit 0: direction, the rest: length) and that many bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "invariant.h"
#include "postern/lab/first_flight.h"
#include "postern/lab/tls_in_tls.h"

namespace {

using namespace postern;
using namespace postern::lab;

bool lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

void check_hello(ByteView data) {
  const HelloResult r = parse_client_hello(data);
  if (r.status != HelloParse::ok) return;
  const std::string& sni = r.hello.server_name;
  if (sni.size() > 255) fuzz::fail("server name over 255 bytes");
  for (char c : sni) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    if (!ok) fuzz::fail("server name with a non-hostname character");
  }
  if (r.hello.ciphers.empty()) fuzz::fail("hello without ciphers accepted");
  if (fet_exemption(data) == FetExemption::none) fuzz::fail("a TLS hello judged fully encrypted");

  const std::string j4 = ja4(r.hello);
  if (j4.size() != 36 || j4[0] != 't' || j4[10] != '_' || j4[23] != '_') fuzz::fail("JA4 shape");
  for (std::size_t i = 11; i < 36; ++i)
    if (i != 23 && !lower_hex(j4[i])) fuzz::fail("JA4 hash not lower-case hex");
  const std::string md5 = ja3_hash(r.hello);
  if (md5.size() != 32) fuzz::fail("JA3 hash length");
  for (char c : md5)
    if (!lower_hex(c)) fuzz::fail("JA3 hash not lower-case hex");
  std::size_t commas = 0;
  for (char c : ja3_string(r.hello)) commas += c == ',';
  if (commas != 4) fuzz::fail("JA3 string without five fields");
}

void check_host(ByteView data) {
  const auto host = http_host(data);
  if (!host) return;
  if (host->empty() || host->size() > 255) fuzz::fail("Host length");
  for (char c : *host)
    if (c == ' ' || (c >= 'A' && c <= 'Z') || static_cast<unsigned char>(c) < 0x21)
      fuzz::fail("Host characters");
}

using Segments = std::vector<std::pair<Direction, ByteView>>;

Segments segments(ByteView rest) {
  Segments out;
  std::size_t pos = 0;
  while (pos < rest.size()) {
    const std::uint8_t h = rest[pos++];
    const Direction d = (h & 1) ? Direction::server_to_client : Direction::client_to_server;
    const std::size_t n = std::min<std::size_t>(h >> 1, rest.size() - pos);
    out.emplace_back(d, rest.subspan(pos, n));
    pos += n;
  }
  return out;
}

void check_detector(const Segments& segs, std::size_t piece) {
  TlsInTlsDetector whole, pieces, bytes;
  for (const auto& [d, b] : segs) {
    whole.feed(d, b);
    for (std::size_t i = 0; i < b.size(); i += piece)
      pieces.feed(d, b.subspan(i, std::min(piece, b.size() - i)));
    for (std::size_t i = 0; i < b.size(); ++i) bytes.feed(d, b.subspan(i, 1));
  }
  for (const TlsInTlsDetector* other : {&pieces, &bytes}) {
    if (other->decided() != whole.decided() || other->suspicious() != whole.suspicious() ||
        other->describe() != whole.describe())
      fuzz::fail("detector verdict depends on chunking");
  }
  if (whole.bursts().size() > TlsInTlsSettings{}.bursts) fuzz::fail("more bursts kept than looked at");
  if (whole.suspicious()) {
    const auto& b = whole.bursts();
    if (b.size() < 3 || b[0].direction != Direction::client_to_server ||
        b[1].direction != Direction::server_to_client || b[2].direction != Direction::client_to_server)
      fuzz::fail("suspicious without the c/s/c shape");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView input(data, size);
  if (to_string(fet_exemption(input))[0] == '?') fuzz::fail("FET verdict out of range");
  check_hello(input);
  check_host(input);
  if (size < 1) return 0;
  check_detector(segments(input.subspan(1)), 1 + data[0] % 13);
  return 0;
}
