// The dialer's parsers of bytes from proxies and resolvers: SOCKS5 replies, HTTP CONNECT reply
// heads and DNS responses (and DNS queries, as the censor lab's injector reads them). Any of these
// peers may be hostile. Beyond "no crash", the parsers must agree with each other: a SOCKS5 size
// that is announced must frame a reply that parses, and a parsed HTTP head lies within the input.
// The DNS parse uses the message's own id so the fuzzer reaches past the id check without help.
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <string_view>
#include <system_error>

#include "invariant.h"
#include "postern/transport/dns_message.h"
#include "postern/transport/errors.h"
#include "postern/transport/proxy_handshake.h"
#include "postern/transport/upgrade.h"

namespace {

using namespace postern;
using namespace postern::transport;

void socks5_replies(ByteView in) {
  (void)socks5::parse_method_choice(in, false);
  (void)socks5::parse_method_choice(in, true);
  (void)socks5::parse_credentials_reply(in);
  const auto size = socks5::connect_reply_size(in);
  const auto whole = socks5::parse_connect_reply(in);
  if (whole.ok() && !(size.ok() && size->has_value() && **size == in.size())) {
    postern::fuzz::fail("SOCKS5 reply parsed but its size disagrees");
  }
  if (size.ok() && size->has_value() && **size <= in.size()) {
    const auto framed = socks5::parse_connect_reply(in.first(**size));
    if (!framed.ok() && framed.error() != make_error_code(Errc::proxy_refused)) {
      postern::fuzz::fail("SOCKS5 reply framed by its size does not parse");
    }
    if (!framed.ok()) (void)socks5::reply_text(in[1]);
  }
}

void http_reply(ByteView in) {
  const auto r = http_connect::parse_reply(in);
  if (r.ok() && r->has_value()) {
    const auto& reply = **r;
    if (reply.head_size > in.size() || reply.head_size > 16 * 1024 || reply.status < 100 || reply.status > 999) {
      postern::fuzz::fail("HTTP CONNECT reply outside its input or limits");
    }
    // The head alone parses to the same reply.
    const auto again = http_connect::parse_reply(in.first(reply.head_size));
    if (!again.ok() || !again->has_value() || (*again)->status != reply.status) {
      postern::fuzz::fail("HTTP CONNECT head does not parse on its own");
    }
  }
}

void dns_messages(ByteView in) {
  const std::uint16_t id = in.size() >= 2 ? static_cast<std::uint16_t>((in[0] << 8) | in[1]) : 0;
  for (std::uint16_t qtype : {dns::kTypeA, dns::kTypeAaaa}) {
    const auto a = dns::parse_response(in, id, "example.com", qtype);
    if (a.ok() && a->cnames.size() > 16) postern::fuzz::fail("CNAME chain past its bound");
  }
  (void)dns::parse_response(in, id, "a", dns::kTypeA);
  // As a query, the way the censor lab's injector reads what it intercepts.
  const auto response = dns::build_response(in, {}, 60, 0);
  if (response.ok() && response->size() < 12) postern::fuzz::fail("DNS response shorter than a header");
}

}  // namespace

// The inner channel's upgrade answer (transport/upgrade.h), read by the client and by relays
// from whatever sits at the other end: it must parse or be refused, and a head it accepts lies
// inside the input.
static void upgrade_reply(postern::ByteView in) {
  namespace upgrade = postern::transport::upgrade;
  auto head = upgrade::parse_response_head(in);
  if (head && *head && (*head)->head_size > in.size()) postern::fuzz::fail("upgrade head larger than the input");
  const std::string_view text(reinterpret_cast<const char*>(in.data()), std::min<std::size_t>(in.size(), 64));
  (void)upgrade::parse_http_date(text);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView in(data, size);
  socks5_replies(in);
  http_reply(in);
  dns_messages(in);
  upgrade_reply(in);
  return 0;
}
