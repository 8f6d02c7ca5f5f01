// Error codes of the account layer. The numbers are stable: the server maps them to API errors and
// metrics, so a code is never renumbered or reused.
#pragma once

#include <system_error>

namespace postern::account {

enum class Errc {
  malformed = 1,          // a challenge token that does not parse (length, alphabet, version)
  bad_signature = 2,      // a challenge token whose HMAC does not verify under the server secret
  expired = 3,            // a challenge past its expiry
  insufficient_work = 4,  // a nonce whose hash lacks the required leading zero bits
  reused = 5,             // a challenge already redeemed once
  cancelled = 6,          // solve() stopped because its progress callback asked to
  unsolvable = 7,         // a difficulty above kMaxDifficultyBits, or every nonce tried
  password_too_long = 8,  // a password over kMaxPasswordBytes
  bad_parameters = 9,     // Argon2id limits below libsodium's minimum or above its maximum
  backend_failure = 10,   // libsodium failed (out of memory for the Argon2id memory limit)
  store_failure = 11,     // a UsedChallenges implementation failed (database error)
};

std::error_code make_error_code(Errc e);
const std::error_category& account_category();

}  // namespace postern::account

template <>
struct std::is_error_code_enum<postern::account::Errc> : std::true_type {};
