#include "postern/account/proof_of_work.h"

#include <algorithm>
#include <cstring>

namespace postern::account {
namespace {

constexpr std::size_t kClaimsSize = 1 + 1 + 8 + 16;
constexpr std::size_t kTokenBytes = kClaimsSize + 32;
static_assert(kChallengeTokenLength == 2 * kTokenBytes);
constexpr std::uint64_t kProgressInterval = 1u << 16;
// Domain separation: the HMAC key must be dedicated to challenges, but if an operator reuses a
// secret, a challenge tag still cannot be mistaken for a MAC of anything else.
constexpr std::string_view kTagLabel = "postern/proof-of-work/v1";

void put_u64_le(std::uint8_t* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

struct DecodedToken {
  ChallengeClaims claims;
  Bytes bytes;  // claims followed by the tag
};

// Only the canonical spelling (lower-case hex of the exact length) is accepted, so that a token
// has exactly one text form and its work digest cannot be re-rolled by changing letter case.
Result<DecodedToken> decode(std::string_view token) {
  if (token.size() != kChallengeTokenLength || !is_lower_hex(token)) return Errc::malformed;
  auto bytes = from_hex(token);
  if (!bytes.ok()) return Errc::malformed;
  const Bytes& b = *bytes;
  if (b[0] != kChallengeVersion || b[1] > kMaxDifficultyBits) return Errc::malformed;
  DecodedToken out;
  out.claims.difficulty_bits = b[1];
  std::uint64_t expires = 0;
  for (int i = 0; i < 8; ++i) expires = (expires << 8) | b[2 + static_cast<std::size_t>(i)];
  out.claims.expires_ms = static_cast<std::int64_t>(expires);
  std::copy(b.begin() + 10, b.begin() + 26, out.claims.id.begin());
  out.bytes = std::move(*bytes);
  return out;
}

}  // namespace

ProofOfWork::ProofOfWork(ByteView server_secret, unsigned difficulty_bits, std::int64_t ttl_ms,
                         const Clock& clock, crypto::Rng& rng)
    : secret_(server_secret),
      difficulty_bits_(std::min(difficulty_bits, kMaxDifficultyBits)),
      ttl_ms_(ttl_ms),
      clock_(clock),
      rng_(rng) {}

crypto::Hmac256Tag ProofOfWork::tag(ByteView claims) const {
  crypto::HmacSha256 mac(secret_.view());
  mac.update(as_bytes(kTagLabel));
  mac.update(claims);
  return mac.finish();
}

Challenge ProofOfWork::issue() {
  Challenge c;
  c.difficulty_bits = difficulty_bits_;
  c.expires_ms = clock_.now_ms() + ttl_ms_;
  Bytes b(kTokenBytes);
  b[0] = kChallengeVersion;
  b[1] = static_cast<std::uint8_t>(difficulty_bits_);
  const auto expires = static_cast<std::uint64_t>(c.expires_ms);
  for (std::size_t i = 0; i < 8; ++i) b[2 + i] = static_cast<std::uint8_t>(expires >> (56 - 8 * i));
  rng_.fill(MutableByteView(b).subspan(10, 16));
  const crypto::Hmac256Tag t = tag(ByteView(b).first(kClaimsSize));
  std::copy(t.begin(), t.end(), b.begin() + kClaimsSize);
  c.token = to_hex(b);
  return c;
}

Status ProofOfWork::verify(std::string_view token, std::uint64_t nonce, UsedChallenges& used) const {
  POSTERN_TRY(const DecodedToken decoded, decode(token));
  const ByteView bytes(decoded.bytes);
  const crypto::Hmac256Tag expected = tag(bytes.first(kClaimsSize));
  if (!crypto::constant_time_equal(expected, bytes.subspan(kClaimsSize))) return Errc::bad_signature;
  if (clock_.now_ms() >= decoded.claims.expires_ms) return Errc::expired;
  const unsigned required = std::max(decoded.claims.difficulty_bits, difficulty_bits_);
  if (leading_zero_bits(work_digest(token, nonce)) < required) return Errc::insufficient_work;
  POSTERN_TRY(const bool fresh, used.mark_used(decoded.claims.id, decoded.claims.expires_ms));
  if (!fresh) return Errc::reused;
  return {};
}

Result<ChallengeClaims> parse_challenge(std::string_view token) {
  POSTERN_TRY(DecodedToken decoded, decode(token));
  return decoded.claims;
}

crypto::Sha256Digest work_digest(std::string_view token, std::uint64_t nonce) {
  Bytes buf(token.size() + 8);
  if (!token.empty()) std::memcpy(buf.data(), token.data(), token.size());
  put_u64_le(buf.data() + token.size(), nonce);
  return crypto::sha256(buf);
}

unsigned leading_zero_bits(ByteView bytes) {
  unsigned bits = 0;
  for (std::uint8_t b : bytes) {
    if (b == 0) {
      bits += 8;
      continue;
    }
    for (std::uint8_t mask = 0x80; (b & mask) == 0; mask = static_cast<std::uint8_t>(mask >> 1)) ++bits;
    break;
  }
  return bits;
}

Result<std::uint64_t> solve(std::string_view token, unsigned difficulty,
                            const std::function<bool(std::uint64_t tried)>& progress) {
  if (difficulty > kMaxDifficultyBits) return Errc::unsolvable;
  // One buffer for the whole search: only the trailing nonce bytes change between attempts.
  Bytes buf(token.size() + 8);
  if (!token.empty()) std::memcpy(buf.data(), token.data(), token.size());
  std::uint8_t* const nonce_bytes = buf.data() + token.size();
  std::uint64_t nonce = 0;
  for (;;) {
    put_u64_le(nonce_bytes, nonce);
    if (leading_zero_bits(crypto::sha256(buf)) >= difficulty) return nonce;
    ++nonce;
    if (nonce == 0) return Errc::unsolvable;  // wrapped: all 2^64 nonces tried
    if (progress && nonce % kProgressInterval == 0 && !progress(nonce)) return Errc::cancelled;
  }
}

}  // namespace postern::account
