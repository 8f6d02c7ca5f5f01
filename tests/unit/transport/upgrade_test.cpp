// transport/upgrade.h: the WebSocket upgrade of the inner channel.
#include "postern/transport/upgrade.h"

#include <string>

#include <gtest/gtest.h>

#include "postern/crypto/random.h"
#include "postern/transport/errors.h"

namespace postern::transport::upgrade {
namespace {

Result<std::optional<ResponseHead>> parse(std::string_view text) {
  return parse_response_head(as_bytes(text));
}

TEST(UpgradeTest, AcceptKeyOfRfc6455Section13) {
  // RFC 6455 section 1.3: key "dGhlIHNhbXBsZSBub25jZQ==" -> "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
  EXPECT_EQ(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(UpgradeTest, KeysAreFreshBase64Of16Bytes) {
  crypto::SystemRng rng;
  const std::string a = make_key(rng);
  const std::string b = make_key(rng);
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a.substr(22), "==");
  EXPECT_NE(a, b);
}

TEST(UpgradeTest, RequestAndResponseText) {
  const std::string r = client_request("example.org:443", "TOKEN", "KEY");
  EXPECT_EQ(r,
            "GET /TOKEN HTTP/1.1\r\nHost: example.org:443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: KEY\r\nSec-WebSocket-Version: 13\r\n\r\n");
  const std::string s = server_response("dGhlIHNhbXBsZSBub25jZQ==");
  auto head = parse(s);
  ASSERT_TRUE(head && *head);
  EXPECT_EQ((*head)->status, 101u);
  EXPECT_TRUE((*head)->upgrade_websocket);
  EXPECT_EQ((*head)->accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ((*head)->head_size, s.size());
}

TEST(UpgradeTest, SiteAnswerGivesStatusAndDate) {
  const std::string text =
      "HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
      "Content-Length: 153\r\nConnection: keep-alive\r\n\r\n<html>";
  auto head = parse(text);
  ASSERT_TRUE(head && *head);
  EXPECT_EQ((*head)->status, 404u);
  EXPECT_FALSE((*head)->upgrade_websocket);
  ASSERT_TRUE((*head)->date.has_value());
  EXPECT_EQ(*(*head)->date, 784111777);  // RFC 9110's example date
  EXPECT_EQ((*head)->head_size, text.size() - 6);
}

TEST(UpgradeTest, IncompleteMalformedAndTooLarge) {
  auto partial = parse("HTTP/1.1 101 Switching");
  ASSERT_TRUE(partial);
  EXPECT_FALSE(partial->has_value());
  auto early = parse("SSH-2.0");
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error(), Errc::bad_frame);
  for (std::string bad : {"HTTP/1.1 10x OK\r\n\r\n", "HTTP/2.0 101 x\r\n\r\n", "HTTP/1.1 101x\r\n\r\n",
                          "HTTP/1.1 101 OK\r\nno colon here\r\n\r\n"}) {
    auto r = parse(bad);
    EXPECT_FALSE(r) << bad;
  }
  std::string big = "HTTP/1.1 200 OK\r\nX: " + std::string(kMaxResponseHead, 'a');
  auto r = parse(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::too_large);
}

TEST(UpgradeTest, HttpDates) {
  EXPECT_EQ(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), std::optional<std::int64_t>(0));
  EXPECT_FALSE(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"));  // RFC 850 form: not accepted
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"));
  EXPECT_FALSE(parse_http_date("Sun, 06 Xyz 1994 08:49:37 GMT"));
  EXPECT_FALSE(parse_http_date(""));
}

}  // namespace
}  // namespace postern::transport::upgrade
