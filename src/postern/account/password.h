// Password storage: Argon2id through libsodium's crypto_pwhash_str, which writes the algorithm,
// its parameters and a random salt into the PHC-format string it returns ("$argon2id$v=19$m=...").
// The server stores only that string. The limits are configurable so that an operator can trade
// sign-in latency against attacker cost; needs_rehash() lets the server upgrade a stored hash at
// the next successful login after the limits change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "postern/account/errors.h"
#include "postern/util/result.h"

namespace postern::account {

// Argon2id cost. The named values equal libsodium's constants (checked in password.cpp), spelled
// out here so that this header does not pull in sodium.h.
struct PasswordHashParams {
  std::uint64_t opslimit = 2;                // crypto_pwhash_OPSLIMIT_INTERACTIVE
  std::size_t memlimit = 64u * 1024 * 1024;  // crypto_pwhash_MEMLIMIT_INTERACTIVE (64 MiB)

  // libsodium's INTERACTIVE limits: the default.
  static constexpr PasswordHashParams interactive() { return {2, 64u * 1024 * 1024}; }
  // libsodium's MODERATE limits (256 MiB, about 0.7 s on a desktop core).
  static constexpr PasswordHashParams moderate() { return {3, 256u * 1024 * 1024}; }
  // libsodium's minimum: only for tests, which must be fast. Never for real passwords.
  static constexpr PasswordHashParams minimum() { return {1, 8192}; }
};

// The PHC string for the password, with a fresh random salt from libsodium's CSPRNG.
// Errors: password_too_long (over kMaxPasswordBytes), bad_parameters (limits outside libsodium's
// range), backend_failure (libsodium could not allocate the memory limit).
Result<std::string> hash_password(std::string_view password, const PasswordHashParams& params = {});

// True only if `hash` is a valid Argon2id string produced for `password`. The comparison inside
// libsodium is constant-time. A malformed or non-Argon2id hash, or a password over
// kMaxPasswordBytes, yields false: a caller never treats them differently from a wrong password.
bool verify_password(std::string_view hash, std::string_view password);

// True if `hash` was made with limits other than `params` (or is not a valid Argon2id string), so
// that the server should hash the password again after it verified.
bool needs_rehash(std::string_view hash, const PasswordHashParams& params = {});

}  // namespace postern::account
