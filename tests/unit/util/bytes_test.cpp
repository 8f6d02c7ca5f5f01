// Tests for postern/util/bytes.h: hex conversion, its error category, and the view helpers.
#include "postern/util/bytes.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <system_error>

namespace postern {
namespace {

TEST(UtilBytes, ToHexIsLowerCaseTwoDigitsPerByte) {
  const Bytes b{0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xff};
  EXPECT_EQ(to_hex(b), "00010f107f80abff");
  EXPECT_EQ(to_hex(ByteView{}), "");
}

TEST(UtilBytes, FromHexAcceptsBothCases) {
  auto lower = from_hex("deadbeef00ff");
  auto upper = from_hex("DEADBEEF00FF");
  auto mixed = from_hex("DeAdBeEf00fF");
  ASSERT_TRUE(lower.ok());
  ASSERT_TRUE(upper.ok());
  ASSERT_TRUE(mixed.ok());
  const Bytes expected{0xde, 0xad, 0xbe, 0xef, 0x00, 0xff};
  EXPECT_EQ(*lower, expected);
  EXPECT_EQ(*upper, expected);
  EXPECT_EQ(*mixed, expected);
}

TEST(UtilBytes, FromHexOfEmptyStringIsEmpty) {
  auto r = from_hex("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(UtilBytes, HexRoundTripsEveryByteValue) {
  Bytes all(256);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
  const std::string hex = to_hex(all);
  ASSERT_EQ(hex.size(), 512u);
  auto back = from_hex(hex);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, all);
}

TEST(UtilBytes, HexRoundTripsManyLengths) {
  for (std::size_t len = 0; len < 70; ++len) {
    Bytes b(len);
    for (std::size_t i = 0; i < len; ++i) b[i] = static_cast<std::uint8_t>(i * 37 + len * 11 + 5);
    auto back = from_hex(to_hex(b));
    ASSERT_TRUE(back.ok()) << len;
    EXPECT_EQ(*back, b) << len;
  }
}

TEST(UtilBytes, OddLengthIsAnError) {
  for (const char* s : {"0", "abc", "00000"}) {
    auto r = from_hex(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.error(), HexErrc::odd_length) << s;
    EXPECT_EQ(r.error(), make_error_code(HexErrc::odd_length));
    EXPECT_STREQ(r.error().category().name(), "postern.hex");
    EXPECT_EQ(r.error().message(), "hex string has an odd length");
  }
}

TEST(UtilBytes, NonHexCharacterIsAnError) {
  for (const char* s : {"0g", "g0", "zz", " 0", "0 ", "0x12", "12-4", "ab\n0", "1G"}) {
    auto r = from_hex(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.error(), HexErrc::bad_digit) << s;
    EXPECT_NE(r.error(), HexErrc::odd_length) << s;
    EXPECT_STREQ(r.error().category().name(), "postern.hex");
    EXPECT_EQ(r.error().message(), "hex string has a character that is not a hex digit");
  }
  // A non-ASCII byte (negative as a plain char) is not a digit either.
  const std::string high = std::string("a") + static_cast<char>(0xc3);
  auto r = from_hex(high);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), HexErrc::bad_digit);
}

TEST(UtilBytes, HexErrorCodesAreDistinctAndStable) {
  const std::error_code odd = HexErrc::odd_length;
  const std::error_code bad = HexErrc::bad_digit;
  EXPECT_NE(odd, bad);
  EXPECT_EQ(odd.value(), 1);
  EXPECT_EQ(bad.value(), 2);
  EXPECT_EQ(&odd.category(), &bad.category());
  EXPECT_TRUE(static_cast<bool>(odd));
}

TEST(UtilBytes, AsBytesAndAsCharsAreInverse) {
  const std::string s = std::string("hi\0there\xff", 9);
  const ByteView v = as_bytes(s);
  ASSERT_EQ(v.size(), 9u);
  EXPECT_EQ(v[0], 'h');
  EXPECT_EQ(v[2], 0);
  EXPECT_EQ(v[8], 0xff);
  EXPECT_EQ(as_chars(v), s);
  EXPECT_EQ(as_chars(ByteView{}), "");
}

TEST(UtilBytes, AppendConcatenates) {
  Bytes out{1, 2};
  append(out, Bytes{3, 4, 5});
  append(out, ByteView{});
  EXPECT_EQ(out, (Bytes{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace postern
