// Tests for postern/account/proof_of_work.h and in_memory_used_challenges.h: issue, solve and
// verify round trips, and every way a redemption must fail (tampering, wrong secret, expiry, too
// little work, replay, malformed tokens, a failing store).
#include "postern/account/proof_of_work.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "postern/account/in_memory_used_challenges.h"

namespace postern::account {
namespace {

const std::vector<std::uint8_t> kSecret(32, 0x5a);
constexpr std::int64_t kStart = 1'800'000'000'000;  // 2027-01-15, a fixed Unix time in ms
constexpr std::int64_t kTtl = 5 * 60 * 1000;

class AccountProofOfWork : public ::testing::Test {
 protected:
  ManualClock clock_{kStart};
  crypto::DeterministicRng rng_{7};
  InMemoryUsedChallenges used_{clock_};
};

TEST_F(AccountProofOfWork, IssueSolveVerify) {
  ProofOfWork pow(kSecret, 8, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  EXPECT_EQ(c.token.size(), kChallengeTokenLength);
  EXPECT_EQ(c.difficulty_bits, 8u);
  EXPECT_EQ(c.expires_ms, kStart + kTtl);
  for (char ch : c.token) EXPECT_TRUE((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));

  const auto nonce = solve(c.token, c.difficulty_bits);
  ASSERT_TRUE(nonce.ok());
  EXPECT_GE(leading_zero_bits(work_digest(c.token, *nonce)), 8u);
  EXPECT_TRUE(pow.verify(c.token, *nonce, used_).ok());
}

TEST_F(AccountProofOfWork, TokensAreUniqueAndCarryTheirClaims) {
  ProofOfWork pow(kSecret, 12, kTtl, clock_, rng_);
  const Challenge a = pow.issue();
  clock_.advance_ms(1000);
  const Challenge b = pow.issue();
  EXPECT_NE(a.token, b.token);
  const auto ca = parse_challenge(a.token);
  const auto cb = parse_challenge(b.token);
  ASSERT_TRUE(ca.ok() && cb.ok());
  EXPECT_NE(ca->id, cb->id);
  EXPECT_EQ(ca->difficulty_bits, 12u);
  EXPECT_EQ(ca->expires_ms, kStart + kTtl);
  EXPECT_EQ(cb->expires_ms, kStart + 1000 + kTtl);
}

TEST_F(AccountProofOfWork, ReuseIsRefused) {
  ProofOfWork pow(kSecret, 4, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  const auto nonce = solve(c.token, 4);
  ASSERT_TRUE(nonce.ok());
  ASSERT_TRUE(pow.verify(c.token, *nonce, used_).ok());
  EXPECT_EQ(pow.verify(c.token, *nonce, used_).error(), Errc::reused);
  // Another valid nonce for the same challenge is still the same challenge.
  std::uint64_t other = *nonce + 1;
  while (leading_zero_bits(work_digest(c.token, other)) < 4) ++other;
  EXPECT_EQ(pow.verify(c.token, other, used_).error(), Errc::reused);
}

TEST_F(AccountProofOfWork, WrongNonceDoesNotBurnTheChallenge) {
  ProofOfWork pow(kSecret, 16, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  std::uint64_t bad = 0;
  while (leading_zero_bits(work_digest(c.token, bad)) >= 16) ++bad;
  EXPECT_EQ(pow.verify(c.token, bad, used_).error(), Errc::insufficient_work);
  EXPECT_EQ(used_.size(), 0u);
  const auto nonce = solve(c.token, 16);
  ASSERT_TRUE(nonce.ok());
  EXPECT_TRUE(pow.verify(c.token, *nonce, used_).ok());
  EXPECT_EQ(used_.size(), 1u);
}

TEST_F(AccountProofOfWork, ExpiryIsExclusive) {
  ProofOfWork pow(kSecret, 2, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  const auto nonce = solve(c.token, 2);
  ASSERT_TRUE(nonce.ok());
  clock_.set_ms(c.expires_ms);
  EXPECT_EQ(pow.verify(c.token, *nonce, used_).error(), Errc::expired);
  clock_.set_ms(c.expires_ms - 1);
  EXPECT_TRUE(pow.verify(c.token, *nonce, used_).ok());
}

TEST_F(AccountProofOfWork, WrongSecretFailsSignature) {
  ProofOfWork pow(kSecret, 2, kTtl, clock_, rng_);
  const std::vector<std::uint8_t> other_secret(32, 0xa5);
  ProofOfWork other(other_secret, 2, kTtl, clock_, rng_);
  const Challenge c = other.issue();
  const auto nonce = solve(c.token, 2);
  ASSERT_TRUE(nonce.ok());
  EXPECT_EQ(pow.verify(c.token, *nonce, used_).error(), Errc::bad_signature);
  EXPECT_EQ(used_.size(), 0u);
}

TEST_F(AccountProofOfWork, EveryTamperedHexDigitIsCaught) {
  ProofOfWork pow(kSecret, 0, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  for (std::size_t i = 0; i < c.token.size(); ++i) {
    std::string t = c.token;
    t[i] = t[i] == '0' ? '1' : '0';
    const auto status = pow.verify(t, 0, used_);
    ASSERT_FALSE(status.ok()) << i;
    // Changing the version byte or pushing the difficulty out of range is malformed; anything else
    // breaks the MAC.
    if (status.error() != Errc::malformed) {
      EXPECT_EQ(status.error(), Errc::bad_signature) << i;
    }
  }
  EXPECT_TRUE(pow.verify(c.token, 0, used_).ok());
}

TEST_F(AccountProofOfWork, LoweredDifficultyCannotBeForged) {
  // The difficulty sits inside the MAC: a client cannot lower it.
  ProofOfWork pow(kSecret, 20, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  std::string t = c.token;
  t.replace(2, 2, "00");  // difficulty byte -> 0
  EXPECT_EQ(pow.verify(t, 0, used_).error(), Errc::bad_signature);
}

TEST_F(AccountProofOfWork, RaisingTheDifficultyAppliesToOpenChallenges) {
  ProofOfWork easy(kSecret, 1, kTtl, clock_, rng_);
  ProofOfWork hard(kSecret, 24, kTtl, clock_, rng_);
  const Challenge c = easy.issue();
  std::uint64_t nonce = 0;
  // A nonce good for 1 bit but not for 24.
  while (leading_zero_bits(work_digest(c.token, nonce)) < 1 ||
         leading_zero_bits(work_digest(c.token, nonce)) >= 24) {
    ++nonce;
  }
  EXPECT_EQ(hard.verify(c.token, nonce, used_).error(), Errc::insufficient_work);
  EXPECT_TRUE(easy.verify(c.token, nonce, used_).ok());
}

TEST_F(AccountProofOfWork, MalformedTokens) {
  ProofOfWork pow(kSecret, 0, kTtl, clock_, rng_);
  const Challenge c = pow.issue();
  std::string upper = c.token;
  for (char& ch : upper) {
    if (ch >= 'a' && ch <= 'f') ch = static_cast<char>(ch - 'a' + 'A');
  }
  std::string version2 = c.token;
  version2.replace(0, 2, "02");
  std::string difficulty65 = c.token;
  difficulty65.replace(2, 2, "41");
  for (const std::string& bad :
       {std::string(), c.token.substr(1), c.token + "0", c.token.substr(0, 114) + "zz",
        upper == c.token ? std::string("x") : upper, version2, difficulty65,
        std::string(kChallengeTokenLength, 'g'), std::string(100000, 'a'),
        c.token.substr(0, 58) + std::string(1, '\0') + c.token.substr(59)}) {
    EXPECT_EQ(pow.verify(bad, 0, used_).error(), Errc::malformed) << bad.substr(0, 120);
    EXPECT_EQ(parse_challenge(bad).error(), Errc::malformed);
  }
}

class FailingStore final : public UsedChallenges {
 public:
  Result<bool> mark_used(const ChallengeId&, std::int64_t) override { return Errc::store_failure; }
};

class RecordingStore final : public UsedChallenges {
 public:
  Result<bool> mark_used(const ChallengeId& id, std::int64_t expires_ms) override {
    ids.push_back(id);
    expiries.push_back(expires_ms);
    return true;
  }
  std::vector<ChallengeId> ids;
  std::vector<std::int64_t> expiries;
};

TEST_F(AccountProofOfWork, StoreErrorsPassThrough) {
  ProofOfWork pow(kSecret, 0, kTtl, clock_, rng_);
  FailingStore failing;
  EXPECT_EQ(pow.verify(pow.issue().token, 0, failing).error(), Errc::store_failure);
}

TEST_F(AccountProofOfWork, StoreReceivesTheIdAndExpiry) {
  ProofOfWork pow(kSecret, 0, kTtl, clock_, rng_);
  RecordingStore store;
  const Challenge c = pow.issue();
  ASSERT_TRUE(pow.verify(c.token, 12345, store).ok());
  ASSERT_EQ(store.ids.size(), 1u);
  EXPECT_EQ(store.ids[0], parse_challenge(c.token)->id);
  EXPECT_EQ(store.expiries[0], c.expires_ms);
}

TEST_F(AccountProofOfWork, DifficultyIsClamped) {
  ProofOfWork pow(kSecret, 1000, kTtl, clock_, rng_);
  EXPECT_EQ(pow.difficulty_bits(), kMaxDifficultyBits);
  EXPECT_EQ(parse_challenge(pow.issue().token)->difficulty_bits, kMaxDifficultyBits);
}

TEST(AccountProofOfWorkSolve, LeadingZeroBits) {
  EXPECT_EQ(leading_zero_bits(std::vector<std::uint8_t>{}), 0u);
  EXPECT_EQ(leading_zero_bits(std::vector<std::uint8_t>{0x80}), 0u);
  EXPECT_EQ(leading_zero_bits(std::vector<std::uint8_t>{0x01}), 7u);
  EXPECT_EQ(leading_zero_bits(std::vector<std::uint8_t>{0x00, 0x40}), 9u);
  EXPECT_EQ(leading_zero_bits(std::vector<std::uint8_t>{0x00, 0x00, 0xff}), 16u);
  EXPECT_EQ(leading_zero_bits(std::vector<std::uint8_t>(32, 0)), 256u);
}

TEST(AccountProofOfWorkSolve, WorkDigestIsSha256OfTokenAndLittleEndianNonce) {
  // Independent construction of the same input.
  std::vector<std::uint8_t> input = {'a', 'b', 'c', 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
  EXPECT_EQ(work_digest("abc", 0x0102030405060708ull), crypto::sha256(input));
  // Known answer: SHA-256("abc" || 00*8).
  EXPECT_EQ(to_hex(work_digest("abc", 0)),
            to_hex(crypto::sha256(std::vector<std::uint8_t>{'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0})));
}

TEST(AccountProofOfWorkSolve, FindsTheFirstSolution) {
  const auto nonce = solve("token", 10);
  ASSERT_TRUE(nonce.ok());
  EXPECT_GE(leading_zero_bits(work_digest("token", *nonce)), 10u);
  for (std::uint64_t n = 0; n < *nonce; ++n) ASSERT_LT(leading_zero_bits(work_digest("token", n)), 10u);
  EXPECT_EQ(*solve("token", 0), 0u);
}

TEST(AccountProofOfWorkSolve, ProgressReportsAndCancels) {
  std::vector<std::uint64_t> reports;
  const auto cancelled = solve("token", 64, [&](std::uint64_t tried) {
    reports.push_back(tried);
    return reports.size() < 3;
  });
  EXPECT_EQ(cancelled.error(), Errc::cancelled);
  EXPECT_EQ(reports, (std::vector<std::uint64_t>{65536, 131072, 196608}));
}

TEST(AccountProofOfWorkSolve, ImpossibleDifficultyRefused) {
  EXPECT_EQ(solve("token", kMaxDifficultyBits + 1).error(), Errc::unsolvable);
}

// ---- InMemoryUsedChallenges ----

TEST(AccountUsedChallenges, MarksOnceAndPrunesExpired) {
  ManualClock clock(1000);
  InMemoryUsedChallenges used(clock);
  ChallengeId a{}, b{};
  a[0] = 1;
  b[0] = 2;
  EXPECT_TRUE(*used.mark_used(a, 2000));
  EXPECT_FALSE(*used.mark_used(a, 2000));
  EXPECT_TRUE(*used.mark_used(b, 5000));
  EXPECT_EQ(used.size(), 2u);
  clock.set_ms(1999);
  EXPECT_EQ(used.size(), 2u);
  clock.set_ms(2000);
  EXPECT_EQ(used.size(), 1u);
  EXPECT_FALSE(*used.mark_used(b, 5000));
  clock.set_ms(5000);
  EXPECT_EQ(used.size(), 0u);
}

TEST(AccountUsedChallenges, ManyEntriesArePrunedInExpiryOrder) {
  ManualClock clock(0);
  InMemoryUsedChallenges used(clock);
  for (std::uint32_t i = 0; i < 1000; ++i) {
    ChallengeId id{};
    for (int k = 0; k < 4; ++k) id[static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(i >> (8 * k));
    // Expiries not in insertion order.
    ASSERT_TRUE(*used.mark_used(id, 1 + static_cast<std::int64_t>((i * 7919) % 1000)));
  }
  EXPECT_EQ(used.size(), 1000u);
  clock.set_ms(500);
  EXPECT_EQ(used.size(), 500u);
  clock.set_ms(1001);
  EXPECT_EQ(used.size(), 0u);
}

}  // namespace
}  // namespace postern::account
