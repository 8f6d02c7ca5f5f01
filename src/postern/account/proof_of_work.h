// Proof of work against automated sign-ups, issued and checked by our own server (a third-party
// captcha cannot be reached from where Postern runs).
//
// The server hands out a challenge token: a random 16-byte id, an expiry and a difficulty,
// authenticated with HMAC-SHA256 under a server secret. It keeps no state for issued challenges,
// so a flood of challenge requests costs it only one HMAC each. A client solves the challenge by
// finding a nonce such that SHA-256(token text || nonce as 8 little-endian bytes) starts with at
// least `difficulty` zero bits (2^difficulty hashes expected). Verification costs one HMAC and one
// SHA-256; only a solved challenge is remembered (by id, until it expires) so that it is redeemed
// once. Token layout and cost figures are in docs/accounts.md.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "postern/account/errors.h"
#include "postern/crypto/hash.h"
#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"
#include "postern/util/clock.h"
#include "postern/util/result.h"

namespace postern::account {

using ChallengeId = std::array<std::uint8_t, 16>;

// 2^64 hashes is far beyond any client; a larger difficulty could never be solved.
inline constexpr unsigned kMaxDifficultyBits = 64;
inline constexpr std::uint8_t kChallengeVersion = 1;
// Hex of version(1) | difficulty(1) | expires_ms(8, big-endian) | id(16) | HMAC-SHA256(32).
inline constexpr std::size_t kChallengeTokenLength = 2 * (1 + 1 + 8 + 16 + 32);

struct Challenge {
  std::string token;  // opaque to clients: lower-case hex, URL-safe
  unsigned difficulty_bits = 0;
  std::int64_t expires_ms = 0;  // Unix milliseconds
};

// What a token claims. parse_challenge() does not authenticate it; only ProofOfWork::verify does.
struct ChallengeClaims {
  ChallengeId id{};
  unsigned difficulty_bits = 0;
  std::int64_t expires_ms = 0;
};

// Remembers redeemed challenges until they expire, so that each is accepted once. The server's
// durable implementation lives in the store layer; InMemoryUsedChallenges serves tests and a
// single-process server that accepts losing the set on restart.
class UsedChallenges {
 public:
  virtual ~UsedChallenges() = default;
  // Records the id; true if it was not recorded before, false if it was (a replay). An entry may be
  // forgotten once expires_ms has passed: verify() refuses the token by its expiry from then on.
  virtual Result<bool> mark_used(const ChallengeId& id, std::int64_t expires_ms) = 0;
};

class ProofOfWork {
 public:
  // server_secret: at least 32 random bytes, kept by the server (rotating it voids open
  // challenges). difficulty_bits: leading zero bits demanded of new challenges, at most
  // kMaxDifficultyBits (larger values are clamped to it). ttl_ms: lifetime of a challenge.
  ProofOfWork(ByteView server_secret, unsigned difficulty_bits, std::int64_t ttl_ms, const Clock& clock,
              crypto::Rng& rng);

  Challenge issue();

  // Accepts a solved, authentic, unexpired challenge once. The checks run from cheapest to dearest
  // and the token is marked used only after the work is proved, so that a wrong nonce does not
  // burn it. A token issued at a lower difficulty than the current setting is refused as
  // insufficient work, so raising the difficulty takes effect at once.
  // Errors: malformed, bad_signature, expired, insufficient_work, reused, and whatever `used`
  // returns.
  Status verify(std::string_view token, std::uint64_t nonce, UsedChallenges& used) const;

  unsigned difficulty_bits() const { return difficulty_bits_; }
  std::int64_t ttl_ms() const { return ttl_ms_; }

 private:
  crypto::Hmac256Tag tag(ByteView claims) const;

  crypto::SecretBytes secret_;
  unsigned difficulty_bits_;
  std::int64_t ttl_ms_;
  const Clock& clock_;
  crypto::Rng& rng_;
};

// Reads a token's claims without authenticating them (a client learns the difficulty this way).
// Errors: malformed.
Result<ChallengeClaims> parse_challenge(std::string_view token);

// The digest the work is judged by: SHA-256(token || nonce as 8 little-endian bytes).
crypto::Sha256Digest work_digest(std::string_view token, std::uint64_t nonce);

// Number of leading zero bits of the bytes, most significant bit of the first byte first.
unsigned leading_zero_bits(ByteView bytes);

// Client side: finds the first nonce from 0 upwards whose work digest has `difficulty` leading
// zero bits. `progress`, if set, is called every 65,536 attempts with the number tried so far and
// cancels the search by returning false. Errors: cancelled, unsolvable.
Result<std::uint64_t> solve(std::string_view token, unsigned difficulty,
                            const std::function<bool(std::uint64_t tried)>& progress = {});

}  // namespace postern::account
