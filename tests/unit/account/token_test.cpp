// Tests for postern/account/token.h: shape and entropy of bearer tokens, the stored hash and the
// comparisons.
#include "postern/account/token.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace postern::account {
namespace {

TEST(AccountToken, ShapeAndUniqueness) {
  crypto::SystemRng rng;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string t = generate_token(rng);
    ASSERT_EQ(t.size(), kTokenLength);
    ASSERT_TRUE(is_well_formed_token(t)) << t;
    for (char c : t) {
      ASSERT_TRUE((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_');
    }
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(AccountToken, EncodesAll256BitsOfTheRng) {
  // With a deterministic RNG the token is the base64url of exactly the 32 bytes drawn.
  crypto::DeterministicRng a(1), b(1);
  const auto raw = b.bytes<32>();
  std::string expected;
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint8_t byte : raw) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      expected.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  expected.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  EXPECT_EQ(generate_token(a), expected);
  crypto::DeterministicRng c(2);
  EXPECT_NE(generate_token(c), expected);
}

TEST(AccountToken, WellFormedRefusesOtherShapes) {
  crypto::DeterministicRng rng(3);
  const std::string t = generate_token(rng);
  EXPECT_TRUE(is_well_formed_token(t));
  EXPECT_FALSE(is_well_formed_token(""));
  EXPECT_FALSE(is_well_formed_token(t.substr(1)));
  EXPECT_FALSE(is_well_formed_token(t + "A"));
  EXPECT_FALSE(is_well_formed_token(t + "="));
  std::string plus = t;
  plus[5] = '+';
  EXPECT_FALSE(is_well_formed_token(plus));
  std::string nul = t;
  nul[5] = '\0';
  EXPECT_FALSE(is_well_formed_token(nul));
  // A non-canonical last character (low bits set) is refused: 'B' encodes 000001.
  std::string noncanonical = t;
  noncanonical.back() = 'B';
  EXPECT_FALSE(is_well_formed_token(noncanonical));
  noncanonical.back() = 'E';  // 000100: canonical
  EXPECT_TRUE(is_well_formed_token(noncanonical));
}

TEST(AccountToken, HashIsSha256OfTheText) {
  EXPECT_EQ(to_hex(token_hash("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  crypto::DeterministicRng rng(4);
  const std::string t = generate_token(rng);
  EXPECT_EQ(token_hash(t), crypto::sha256(as_bytes(t)));
  EXPECT_NE(token_hash(t), token_hash(t.substr(0, 42) + (t.back() == 'A' ? "E" : "A")));
}

TEST(AccountToken, Comparisons) {
  EXPECT_TRUE(token_equal("abc", "abc"));
  EXPECT_TRUE(token_equal("", ""));
  EXPECT_FALSE(token_equal("abc", "abd"));
  EXPECT_FALSE(token_equal("abc", "abcd"));
  const auto h1 = token_hash("one");
  const auto h2 = token_hash("two");
  EXPECT_TRUE(token_hash_equal(h1, token_hash("one")));
  EXPECT_FALSE(token_hash_equal(h1, h2));
  EXPECT_FALSE(token_hash_equal(h1, ByteView(h1).first(31)));
}

}  // namespace
}  // namespace postern::account
