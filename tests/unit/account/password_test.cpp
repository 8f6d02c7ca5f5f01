// Tests for postern/account/password.h: Argon2id hashing round trips, refusals, malformed stored
// hashes and rehash decisions. MIN limits keep them fast; one test uses the INTERACTIVE default.
#include "postern/account/password.h"

#include <gtest/gtest.h>

#include <string>

#include "postern/account/signup.h"

namespace postern::account {
namespace {

const PasswordHashParams kFast = PasswordHashParams::minimum();

TEST(AccountPasswordHash, RoundTrip) {
  const auto hash = hash_password("Correct Horse 1", kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(hash->rfind("$argon2id$v=19$m=8,t=1,p=1$", 0), 0u) << *hash;
  EXPECT_TRUE(verify_password(*hash, "Correct Horse 1"));
  EXPECT_FALSE(verify_password(*hash, "Correct Horse 2"));
  EXPECT_FALSE(verify_password(*hash, "correct horse 1"));
  EXPECT_FALSE(verify_password(*hash, ""));
  EXPECT_FALSE(verify_password(*hash, "Correct Horse 1 "));
}

TEST(AccountPasswordHash, SaltIsFreshEachTime) {
  const auto a = hash_password("Same1pass", kFast);
  const auto b = hash_password("Same1pass", kFast);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(verify_password(*a, "Same1pass"));
  EXPECT_TRUE(verify_password(*b, "Same1pass"));
}

TEST(AccountPasswordHash, DefaultIsInteractive) {
  const auto hash = hash_password("Default1");
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(hash->rfind("$argon2id$v=19$m=65536,t=2,p=1$", 0), 0u) << *hash;
  EXPECT_TRUE(verify_password(*hash, "Default1"));
  EXPECT_FALSE(needs_rehash(*hash));
  EXPECT_TRUE(needs_rehash(*hash, kFast));
}

TEST(AccountPasswordHash, EmbeddedNulAndBinaryPasswords) {
  const std::string with_nul("ab\0cd", 5);
  const auto hash = hash_password(with_nul, kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(verify_password(*hash, with_nul));
  EXPECT_FALSE(verify_password(*hash, "ab"));
}

TEST(AccountPasswordHash, LengthLimit) {
  const std::string at_limit(kMaxPasswordBytes, 'x');
  const auto hash = hash_password(at_limit, kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(verify_password(*hash, at_limit));
  const std::string over = at_limit + "x";
  EXPECT_EQ(hash_password(over, kFast).error(), Errc::password_too_long);
  EXPECT_FALSE(verify_password(*hash, over));
}

TEST(AccountPasswordHash, ParametersOutOfRange) {
  EXPECT_EQ(hash_password("Abcdef1", PasswordHashParams{0, 8192}).error(), Errc::bad_parameters);
  EXPECT_EQ(hash_password("Abcdef1", PasswordHashParams{1, 1024}).error(), Errc::bad_parameters);
}

TEST(AccountPasswordHash, MalformedStoredHashesNeverVerify) {
  const auto good = hash_password("Abcdef1", kFast);
  ASSERT_TRUE(good.ok());
  std::string truncated = good->substr(0, good->size() - 5);
  // Not the last character: its low bits are base64 padding that the decoder may ignore.
  std::string flipped = *good;
  char& c = flipped[flipped.size() - 10];
  c = c == 'A' ? 'B' : 'A';
  std::string with_nul = *good;
  with_nul[20] = '\0';
  for (const std::string& bad : {std::string(), std::string("$argon2id$"), std::string("plaintext"),
                                 std::string("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"),
                                 std::string("$2b$10$abcdefghijklmnopqrstuu"), truncated, flipped, with_nul,
                                 std::string(200, '$'), *good + std::string(300, 'A')}) {
    EXPECT_FALSE(verify_password(bad, "Abcdef1")) << bad;
    // A wrong or shortened digest may still parse with the right limits (needs_rehash reads the
    // parameters; whether a shortened digest decodes depends on its last base64 bits): only
    // verification can catch it.
    if (bad != flipped && bad != truncated) {
      EXPECT_TRUE(needs_rehash(bad, kFast)) << bad;
    }
  }
}

TEST(AccountPasswordHash, NeedsRehashWhenLimitsChange) {
  const auto hash = hash_password("Abcdef1", kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_FALSE(needs_rehash(*hash, kFast));
  EXPECT_TRUE(needs_rehash(*hash, PasswordHashParams{2, 8192}));
  EXPECT_TRUE(needs_rehash(*hash, PasswordHashParams{1, 16384}));
  EXPECT_TRUE(needs_rehash(*hash, PasswordHashParams::interactive()));
}

TEST(AccountPasswordHash, NamedParams) {
  EXPECT_EQ(PasswordHashParams{}.opslimit, PasswordHashParams::interactive().opslimit);
  EXPECT_EQ(PasswordHashParams{}.memlimit, PasswordHashParams::interactive().memlimit);
  EXPECT_EQ(PasswordHashParams::moderate().memlimit, 256u * 1024 * 1024);
}

}  // namespace
}  // namespace postern::account
