#include "postern/account/token.h"

#include <sodium.h>

#include <algorithm>

#include "postern/crypto/secret.h"

namespace postern::account {
namespace {

static_assert(kTokenLength + 1 ==
              sodium_base64_ENCODED_LEN(kTokenRandomBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING));

bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

std::string generate_token(crypto::Rng& rng) {
  crypto::SecretArray<kTokenRandomBytes> raw;
  rng.fill(raw.span());
  char text[kTokenLength + 1];
  sodium_bin2base64(text, sizeof text, raw.data(), raw.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string token(text, kTokenLength);
  crypto::wipe(text, sizeof text);
  return token;
}

bool is_well_formed_token(std::string_view token) {
  if (token.size() != kTokenLength || !std::all_of(token.begin(), token.end(), is_base64url)) return false;
  // 43 characters carry 258 bits; the last character holds only 4 of the 256, its low two bits
  // must be zero (a canonical encoding), so one token has exactly one spelling.
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  return (kAlphabet.find(token.back()) & 0x3) == 0;
}

crypto::Sha256Digest token_hash(std::string_view token) {
  return crypto::sha256(as_bytes(token));
}

bool token_equal(std::string_view a, std::string_view b) {
  return crypto::constant_time_equal(as_bytes(a), as_bytes(b));
}

bool token_hash_equal(ByteView a, ByteView b) {
  return crypto::constant_time_equal(a, b);
}

}  // namespace postern::account
