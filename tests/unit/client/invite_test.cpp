#include "postern/client/invite.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::client {
namespace {

constexpr const char* kPin = "V7KicgxrxXx3HTBaj-U4mJMW6uBKiaqRXOrLIySrAF0";

TEST(Invite, ParsesHostPortAndPin) {
  auto invite = parse_invite(std::string("  postern://chat.example.org:8443?pin=sha256/") + kPin + "\n");
  ASSERT_TRUE(invite.ok());
  EXPECT_EQ(invite->host, "chat.example.org");
  EXPECT_EQ(invite->port, 8443);
  EXPECT_EQ(invite->pin[0], 0x57);  // 'V7' -> 0b010101 111011 -> 0x57
  EXPECT_EQ(invite->to_string(), std::string("postern://chat.example.org:8443?pin=sha256/") + kPin);
}

TEST(Invite, KeepsUnknownParametersInOrder) {
  auto invite = parse_invite(std::string("postern://127.0.0.1:1?x=1&pin=sha256/") + kPin + "&link=abc.def");
  ASSERT_TRUE(invite.ok());
  ASSERT_EQ(invite->extra.size(), 2u);
  EXPECT_EQ(invite->extra[0].first, "x");
  EXPECT_EQ(invite->extra[1].second, "abc.def");
}

TEST(Invite, Ipv6InBrackets) {
  auto invite = parse_invite(std::string("postern://[::1]:443?pin=sha256/") + kPin);
  ASSERT_TRUE(invite.ok());
  EXPECT_EQ(invite->host, "::1");
  EXPECT_EQ(invite->to_string().substr(0, 20), "postern://[::1]:443?");
}

TEST(Invite, RefusesWithAReason) {
  const std::string pin = std::string("pin=sha256/") + kPin;
  for (const std::string& bad : std::vector<std::string>{"", "https://x:1?" + pin, "postern://x?" + pin, "postern://x:0?" + pin,
                                "postern://x:65536?" + pin, "postern://x:1", "postern://x:1?pin=md5/abc",
                                "postern://x:1?pin=sha256/short", "postern://x y:1?" + pin, "postern://:1?" + pin,
                                "postern://x:1?" + pin + "&" + pin, "postern://[::1:1?" + pin}) {
    EXPECT_FALSE(parse_invite(bad).ok()) << bad;
    EXPECT_FALSE(explain_invite_error(bad).empty()) << bad;
  }
  EXPECT_TRUE(explain_invite_error(std::string("postern://x:1?") + pin).empty());
}

}  // namespace
}  // namespace postern::client
