#include "postern/account/password.h"

#include <sodium.h>

#include "postern/account/signup.h"
#include "postern/crypto/random.h"

namespace postern::account {
namespace {

static_assert(PasswordHashParams::interactive().opslimit == crypto_pwhash_OPSLIMIT_INTERACTIVE);
static_assert(PasswordHashParams::interactive().memlimit == crypto_pwhash_MEMLIMIT_INTERACTIVE);
static_assert(PasswordHashParams::moderate().opslimit == crypto_pwhash_OPSLIMIT_MODERATE);
static_assert(PasswordHashParams::moderate().memlimit == crypto_pwhash_MEMLIMIT_MODERATE);
static_assert(PasswordHashParams::minimum().opslimit == crypto_pwhash_argon2id_OPSLIMIT_MIN);
static_assert(PasswordHashParams::minimum().memlimit == crypto_pwhash_argon2id_MEMLIMIT_MIN);
static_assert(PasswordHashParams{}.opslimit == crypto_pwhash_OPSLIMIT_INTERACTIVE);
static_assert(PasswordHashParams{}.memlimit == crypto_pwhash_MEMLIMIT_INTERACTIVE);
static_assert(crypto_pwhash_ALG_DEFAULT == crypto_pwhash_ALG_ARGON2ID13);

constexpr std::string_view kArgon2idPrefix = "$argon2id$";

bool params_in_range(const PasswordHashParams& p) {
  return p.opslimit >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
         p.opslimit <= crypto_pwhash_argon2id_OPSLIMIT_MAX &&
         p.memlimit >= crypto_pwhash_argon2id_MEMLIMIT_MIN &&
         p.memlimit <= crypto_pwhash_argon2id_MEMLIMIT_MAX;
}

// libsodium reads the hash as a NUL-terminated string; a stored hash is short, so a bounded stack
// copy avoids an allocation and refuses oversized input before it reaches the parser.
bool to_c_string(std::string_view hash, char (&out)[crypto_pwhash_STRBYTES]) {
  if (hash.size() >= sizeof out || hash.find('\0') != std::string_view::npos) return false;
  hash.copy(out, hash.size());
  out[hash.size()] = '\0';
  return true;
}

}  // namespace

Result<std::string> hash_password(std::string_view password, const PasswordHashParams& params) {
  if (password.size() > kMaxPasswordBytes) return Errc::password_too_long;
  if (!params_in_range(params)) return Errc::bad_parameters;
  crypto::ensure_sodium();
  char out[crypto_pwhash_STRBYTES];
  // The password is read in place (no copy is made, so none needs wiping); Argon2id wipes its
  // own working memory.
  const int rc =
      crypto_pwhash_argon2id_str(out, password.data(), password.size(), params.opslimit, params.memlimit);
  if (rc != 0) return Errc::backend_failure;
  return std::string(out);
}

bool verify_password(std::string_view hash, std::string_view password) {
  if (password.size() > kMaxPasswordBytes) return false;
  if (hash.substr(0, kArgon2idPrefix.size()) != kArgon2idPrefix) return false;
  char c_hash[crypto_pwhash_STRBYTES];
  if (!to_c_string(hash, c_hash)) return false;
  crypto::ensure_sodium();
  return crypto_pwhash_argon2id_str_verify(c_hash, password.data(), password.size()) == 0;
}

bool needs_rehash(std::string_view hash, const PasswordHashParams& params) {
  if (hash.substr(0, kArgon2idPrefix.size()) != kArgon2idPrefix) return true;
  char c_hash[crypto_pwhash_STRBYTES];
  if (!to_c_string(hash, c_hash)) return true;
  crypto::ensure_sodium();
  return crypto_pwhash_argon2id_str_needs_rehash(c_hash, params.opslimit, params.memlimit) != 0;
}

}  // namespace postern::account
