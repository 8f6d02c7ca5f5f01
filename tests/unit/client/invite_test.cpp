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

TEST(Invite, KeySecretAddressesAndRelayLinks) {
  const std::string key(43, 'A');
  const std::string base = std::string("postern://chat.example.org:443?pin=sha256/") + kPin;
  auto invite = parse_invite(base + "&key=" + key + "&secret=" + key + "&addr=192.0.2.7&addr=2001:db8::1");
  ASSERT_TRUE(invite.ok());
  ASSERT_TRUE(invite->server_key && invite->front_secret);
  EXPECT_EQ(invite->addresses, (std::vector<std::string>{"192.0.2.7", "2001:db8::1"}));
  EXPECT_FALSE(invite->relay);
  auto again = parse_invite(invite->to_string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->to_string(), invite->to_string());

  auto relay = parse_invite(std::string("postern://relay@198.51.100.2:443?pin=sha256/") + kPin + "&key=" + key +
                            "&secret=" + key);
  ASSERT_TRUE(relay.ok());
  EXPECT_TRUE(relay->relay);
  EXPECT_EQ(relay->host, "198.51.100.2");
  EXPECT_TRUE(relay->to_string().starts_with("postern://relay@198.51.100.2:443?"));

  std::string nine = base;
  for (int i = 0; i < 9; ++i) nine += "&addr=192.0.2." + std::to_string(i + 1);
  for (const std::string& bad : {base + "&addr=chat.example.org", base + "&addr=", nine, base + "&key=short",
                                 base + "&key=" + key + "&key=" + key,
                                 std::string("postern://relay@198.51.100.2:443?pin=sha256/") + kPin}) {
    EXPECT_FALSE(parse_invite(bad).ok()) << bad;
    EXPECT_FALSE(explain_invite_error(bad).empty()) << bad;
  }
}

}  // namespace
}  // namespace postern::client
