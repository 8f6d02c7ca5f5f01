// Error codes of the crypto layer.
#pragma once

#include <system_error>

namespace postern::crypto {

enum class Errc {
  bad_key_length = 1,  // a key, IV or scalar of the wrong size
  bad_key_type,        // a serialized public key whose type byte is not 0x05
  weak_key,            // a Diffie-Hellman result that is all zero (small-order peer key)
  bad_length,          // an input of an invalid length (ciphertext not a block multiple, HKDF too long)
  bad_padding,         // CBC decryption found invalid PKCS#7 padding
  backend_failure,     // libsodium or OpenSSL reported an internal failure
};

std::error_code make_error_code(Errc e);
const std::error_category& crypto_category();

}  // namespace postern::crypto

template <>
struct std::is_error_code_enum<postern::crypto::Errc> : std::true_type {};
