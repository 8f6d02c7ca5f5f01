// SOCKS5 (RFC 1928/1929) and HTTP CONNECT client codecs: exact request bytes typed in from the
// RFCs' layouts, every reply code, and replies that arrive in pieces or are not what they claim.
#include "postern/transport/proxy_handshake.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "postern/transport/errors.h"

namespace postern::transport {
namespace {

Bytes b(std::initializer_list<int> v) {
  Bytes out;
  for (int x : v) out.push_back(static_cast<std::uint8_t>(x));
  return out;
}

Bytes cat(Bytes a, const Bytes& more) {
  append(a, more);
  return a;
}

Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// --- SOCKS5 ---

TEST(Socks5Test, GreetingOffersOnlyWhatWeCanDo) {
  // RFC 1928 section 3: VER, NMETHODS, METHODS.
  EXPECT_EQ(socks5::greeting(false), b({0x05, 0x01, 0x00}));
  EXPECT_EQ(socks5::greeting(true), b({0x05, 0x02, 0x00, 0x02}));
}

TEST(Socks5Test, MethodChoice) {
  EXPECT_EQ(*socks5::parse_method_choice(b({5, 0}), false), 0);
  EXPECT_EQ(*socks5::parse_method_choice(b({5, 0}), true), 0);
  EXPECT_EQ(*socks5::parse_method_choice(b({5, 2}), true), 2);
  // Username/password chosen though not offered, GSSAPI, "no acceptable methods".
  EXPECT_EQ(socks5::parse_method_choice(b({5, 2}), false).error(), Errc::proxy_refused);
  EXPECT_EQ(socks5::parse_method_choice(b({5, 1}), true).error(), Errc::proxy_refused);
  EXPECT_EQ(socks5::parse_method_choice(b({5, 0xFF}), true).error(), Errc::proxy_refused);
  // Wrong version (a SOCKS4 server) and wrong sizes.
  EXPECT_EQ(socks5::parse_method_choice(b({4, 0}), false).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_method_choice(b({5}), false).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_method_choice(b({}), false).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_method_choice(b({5, 0, 0}), false).error(), Errc::bad_frame);
}

TEST(Socks5Test, CredentialsRequestBytes) {
  // RFC 1929 section 2: VER=1, ULEN, UNAME, PLEN, PASSWD.
  auto r = socks5::credentials_request({"user", "pass"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, b({0x01, 0x04, 'u', 's', 'e', 'r', 0x04, 'p', 'a', 's', 's'}));

  auto longest = socks5::credentials_request({std::string(255, 'u'), std::string(255, 'p')});
  ASSERT_TRUE(longest.ok());
  EXPECT_EQ(longest->size(), 3u + 255 + 255);
  EXPECT_EQ((*longest)[1], 255);
  EXPECT_EQ((*longest)[2 + 255], 255);
}

TEST(Socks5Test, CredentialsOutOfRangeRefused) {
  EXPECT_EQ(socks5::credentials_request({std::string(256, 'u'), "p"}).error(), Errc::bad_config);
  EXPECT_EQ(socks5::credentials_request({"u", std::string(256, 'p')}).error(), Errc::bad_config);
  EXPECT_EQ(socks5::credentials_request({"", "p"}).error(), Errc::bad_config);
  EXPECT_EQ(socks5::credentials_request({"u", ""}).error(), Errc::bad_config);
}

TEST(Socks5Test, CredentialsReply) {
  EXPECT_TRUE(socks5::parse_credentials_reply(b({1, 0})).ok());
  EXPECT_EQ(socks5::parse_credentials_reply(b({1, 1})).error(), Errc::proxy_refused);
  EXPECT_EQ(socks5::parse_credentials_reply(b({1, 0xFF})).error(), Errc::proxy_refused);
  EXPECT_EQ(socks5::parse_credentials_reply(b({5, 0})).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_credentials_reply(b({1})).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_credentials_reply(b({1, 0, 0})).error(), Errc::bad_frame);
}

TEST(Socks5Test, ConnectRequestForNameSendsTheName) {
  // RFC 1928 section 4: VER CMD RSV ATYP DST.ADDR DST.PORT; section 5: ATYP 3 is a length byte
  // then the name, no terminating NUL. Port 443 = 0x01BB, network order.
  auto r = socks5::connect_request("example.com", 443);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, cat(cat(b({0x05, 0x01, 0x00, 0x03, 0x0B}), text_bytes("example.com")), b({0x01, 0xBB})));
}

TEST(Socks5Test, ConnectRequestForIpv4) {
  // RFC 1928 section 5: ATYP 1, four bytes. 192.0.2.1 port 80.
  auto r = socks5::connect_request("192.0.2.1", 80);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, b({0x05, 0x01, 0x00, 0x01, 0xC0, 0x00, 0x02, 0x01, 0x00, 0x50}));
}

TEST(Socks5Test, ConnectRequestForIpv6BareOrBracketed) {
  // RFC 1928 section 5: ATYP 4, sixteen bytes. 2001:db8::1 port 8443 = 0x20FB.
  const Bytes want = b({0x05, 0x01, 0x00, 0x04, 0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x20,
                        0xFB});
  auto bare = socks5::connect_request("2001:db8::1", 8443);
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(*bare, want);
  auto bracketed = socks5::connect_request("[2001:db8::1]", 8443);
  ASSERT_TRUE(bracketed.ok());
  EXPECT_EQ(*bracketed, want);
}

TEST(Socks5Test, ConnectRequestNameLimits) {
  auto longest = socks5::connect_request(std::string(255, 'a'), 1);
  ASSERT_TRUE(longest.ok());
  EXPECT_EQ(longest->size(), 4u + 1 + 255 + 2);
  EXPECT_EQ((*longest)[4], 255);
  EXPECT_EQ(socks5::connect_request(std::string(256, 'a'), 1).error(), Errc::bad_config);
  EXPECT_EQ(socks5::connect_request("", 1).error(), Errc::bad_config);
  EXPECT_EQ(socks5::connect_request("example.com", 0).error(), Errc::bad_config);
  EXPECT_EQ(socks5::connect_request("[example.com]", 443).error(), Errc::bad_config);
  // Not quite an address: sent as a name, for the proxy to judge.
  auto odd = socks5::connect_request("192.0.2.256", 80);
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ((*odd)[3], 0x03);
}

Bytes ipv4_reply(std::uint8_t rep) { return b({0x05, rep, 0x00, 0x01, 10, 0, 0, 1, 0x1F, 0x90}); }

TEST(Socks5Test, EveryReplyCode) {
  EXPECT_TRUE(socks5::parse_connect_reply(ipv4_reply(0)).ok());
  std::set<std::string> texts;
  for (int rep = 1; rep <= 0xFF; ++rep) {
    EXPECT_EQ(socks5::parse_connect_reply(ipv4_reply(static_cast<std::uint8_t>(rep))).error(), Errc::proxy_refused)
        << rep;
    const auto text = socks5::reply_text(static_cast<std::uint8_t>(rep));
    EXPECT_FALSE(text.empty());
    if (rep <= 8) texts.insert(std::string(text));
  }
  EXPECT_EQ(texts.size(), 8u);  // each defined code has its own words
  EXPECT_EQ(socks5::reply_text(0x05), "connection refused by the destination host");
  EXPECT_EQ(socks5::reply_text(0x03), "network unreachable");
  EXPECT_EQ(socks5::reply_text(0x04), "host unreachable");
  EXPECT_EQ(socks5::reply_text(0x02), "connection not allowed by the proxy's rules");
  EXPECT_NE(socks5::reply_text(0x09), socks5::reply_text(0x01));
}

TEST(Socks5Test, ReplySizeOnEveryPrefix) {
  const Bytes v4 = ipv4_reply(0);
  const Bytes v6 = b({0x05, 0x00, 0x00, 0x04, 0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0xBB});
  const Bytes name = cat(cat(b({0x05, 0x00, 0x00, 0x03, 0x07}), text_bytes("example")), b({0x01, 0xBB}));
  for (const Bytes* reply : {&v4, &v6, &name}) {
    for (std::size_t n = 0; n <= reply->size(); ++n) {
      auto size = socks5::connect_reply_size(ByteView(*reply).first(n));
      ASSERT_TRUE(size.ok()) << n;
      if (n < 5) {
        EXPECT_FALSE(size->has_value()) << n;
      } else {
        ASSERT_TRUE(size->has_value()) << n;
        EXPECT_EQ(**size, reply->size()) << n;
      }
    }
    EXPECT_TRUE(socks5::parse_connect_reply(*reply).ok());
  }
  EXPECT_EQ(v4.size(), 10u);
  EXPECT_EQ(v6.size(), 22u);
  EXPECT_EQ(name.size(), 14u);
}

TEST(Socks5Test, ReplyWrongVersionOrAtyp) {
  // A wrong version is refused from its first byte on.
  EXPECT_EQ(socks5::connect_reply_size(b({0x04})).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::connect_reply_size(b({'H', 'T', 'T', 'P', '/'})).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_connect_reply(b({0x04, 0x00, 0x00, 0x01, 1, 2, 3, 4, 0, 80})).error(), Errc::bad_frame);
  for (int atyp : {0, 2, 5, 0xFF}) {
    const Bytes reply = b({0x05, 0x00, 0x00, atyp, 1, 2, 3, 4, 0, 80});
    EXPECT_EQ(socks5::connect_reply_size(ByteView(reply).first(4)).error(), Errc::bad_frame) << atyp;
    EXPECT_EQ(socks5::parse_connect_reply(reply).error(), Errc::bad_frame) << atyp;
  }
}

TEST(Socks5Test, ReplyOfWrongSize) {
  const Bytes v4 = ipv4_reply(0);
  EXPECT_EQ(socks5::parse_connect_reply(ByteView(v4).first(9)).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_connect_reply(ByteView(v4).first(3)).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_connect_reply(cat(v4, b({0x00}))).error(), Errc::bad_frame);
  EXPECT_EQ(socks5::parse_connect_reply(b({})).error(), Errc::bad_frame);
}

// --- HTTP CONNECT ---

TEST(HttpConnectTest, RequestText) {
  EXPECT_EQ(http_connect::request("example.com", 443, std::nullopt),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  EXPECT_EQ(http_connect::request("192.0.2.1", 8080, std::nullopt),
            "CONNECT 192.0.2.1:8080 HTTP/1.1\r\nHost: 192.0.2.1:8080\r\n\r\n");
}

TEST(HttpConnectTest, RequestBracketsIpv6) {
  const std::string want = "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n";
  EXPECT_EQ(http_connect::request("2001:db8::1", 443, std::nullopt), want);
  EXPECT_EQ(http_connect::request("[2001:db8::1]", 443, std::nullopt), want);
}

TEST(HttpConnectTest, RequestWithBasicCredentials) {
  // The example of RFC 7617 section 2: Aladdin / open sesame.
  EXPECT_EQ(http_connect::request("example.com", 443, ProxyCredentials{"Aladdin", "open sesame"}),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
            "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
  // Every padding case: "a:b", "ab:c" and "ab:cd" are 3, 4 and 5 bytes (no '=', two, one).
  EXPECT_NE(http_connect::request("h", 1, ProxyCredentials{"a", "b"}).find("Basic YTpi\r\n"), std::string::npos);
  EXPECT_NE(http_connect::request("h", 1, ProxyCredentials{"ab", "c"}).find("Basic YWI6Yw==\r\n"), std::string::npos);
  EXPECT_NE(http_connect::request("h", 1, ProxyCredentials{"ab", "cd"}).find("Basic YWI6Y2Q=\r\n"),
            std::string::npos);
}

TEST(HttpConnectTest, RequestCannotCarryInjectedHeaders) {
  const std::string r = http_connect::request("evil.example\r\nX-Injected: 1", 443, std::nullopt);
  EXPECT_EQ(r.find("\r\nX-Injected"), std::string::npos);
  EXPECT_EQ(r.find("\r\n\r\n"), r.size() - 4);  // one blank line, at the end
}

Result<std::optional<http_connect::Reply>> parse(std::string_view s) { return http_connect::parse_reply(as_bytes(s)); }

TEST(HttpConnectTest, Reply200) {
  const std::string head = "HTTP/1.1 200 Connection established\r\n\r\n";
  auto r = parse(head);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->status, 200u);
  EXPECT_EQ((*r)->head_size, head.size());
  // Tunnel bytes that came with the head are not part of it.
  auto with_data = parse(head + "\x16\x03\x01");
  ASSERT_TRUE(with_data.ok() && with_data->has_value());
  EXPECT_EQ((*with_data)->head_size, head.size());
  // HTTP/1.0, headers, an empty reason, no reason at all.
  for (std::string_view ok : {"HTTP/1.0 200 OK\r\nProxy-Agent: squid\r\n\r\n", "HTTP/1.1 200 \r\n\r\n",
                              "HTTP/1.1 200\r\nVia: 1.1 proxy\r\nX-Empty:\r\n\r\n"}) {
    auto rr = parse(ok);
    ASSERT_TRUE(rr.ok()) << ok;
    ASSERT_TRUE(rr->has_value()) << ok;
    EXPECT_EQ((*rr)->status, 200u);
    EXPECT_EQ((*rr)->head_size, ok.size());
  }
}

TEST(HttpConnectTest, Reply407And502AreReturnedAsStatuses) {
  const std::string r407 =
      "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\n"
      "Content-Length: 0\r\n\r\n";
  auto a = parse(r407);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->status, 407u);
  EXPECT_EQ((*a)->head_size, r407.size());

  const std::string r502 = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n";
  auto c = parse(r502 + "oops!");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->status, 502u);
  EXPECT_EQ((*c)->head_size, r502.size());
}

TEST(HttpConnectTest, SplitArrival) {
  const std::string head = "HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\n\r\n";
  for (std::size_t n = 0; n < head.size(); ++n) {
    auto r = parse(std::string_view(head).substr(0, n));
    ASSERT_TRUE(r.ok()) << n;
    EXPECT_FALSE(r->has_value()) << n;
  }
  auto r = parse(head);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->head_size, head.size());
}

TEST(HttpConnectTest, MalformedStatusLines) {
  for (std::string_view bad :
       {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.x 200 OK\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n", "HTTP/1.1 200 O\x01K\r\n\r\n", "\r\n\r\n", "HTTP/1.1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : space before colon\r\n\r\n", "HTTP/1.1 200 OK\r\nA: b\nSmuggled: c\r\n\r\n"}) {
    auto r = parse(bad);
    EXPECT_EQ(r.error(), Errc::bad_frame) << bad;
  }
}

TEST(HttpConnectTest, NonHttpPeerRefusedEarly) {
  // An SSH banner, a TLS record, a SOCKS reply: wrong from the first byte, no need to wait.
  EXPECT_EQ(parse("S").error(), Errc::bad_frame);
  EXPECT_EQ(parse("\x16\x03").error(), Errc::bad_frame);
  EXPECT_EQ(http_connect::parse_reply(b({0x05, 0x00})).error(), Errc::bad_frame);
  // A complete but malformed status line is refused before the blank line.
  EXPECT_EQ(parse("HTTP/1.1 xyz\r\nServer: a").error(), Errc::bad_frame);
}

TEST(HttpConnectTest, TooLargeHead) {
  std::string head = "HTTP/1.1 200 OK\r\n";
  while (head.size() < 16 * 1024) head += "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  EXPECT_EQ(parse(head).error(), Errc::too_large);

  // Exactly 16 KiB including the blank line is accepted; one byte more is not.
  std::string exact = "HTTP/1.1 200 OK\r\nX-Pad: ";
  exact += std::string(16 * 1024 - exact.size() - 4, 'a');
  exact += "\r\n\r\n";
  ASSERT_EQ(exact.size(), 16u * 1024);
  auto r = parse(exact);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->head_size, exact.size());
  std::string over = "HTTP/1.1 200 OK\r\nX-Pad: a";
  over += std::string(16 * 1024 - over.size() - 3, 'a');
  over += "\r\n\r\n";
  ASSERT_EQ(over.size(), 16u * 1024 + 1);
  EXPECT_EQ(parse(over).error(), Errc::too_large);
}

}  // namespace
}  // namespace postern::transport
