// Bearer tokens for authenticated sessions. A token is 256 random bits written as unpadded
// base64url (43 characters, safe in URLs and headers). The server stores only its SHA-256: a
// leaked database does not let anyone sign in, and lookups by hash need no slow hashing because
// the token is already uniformly random. Looking a hash up by index leaks no timing about the
// token itself; where two tokens or hashes are compared directly, use the constant-time helpers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "postern/crypto/hash.h"
#include "postern/crypto/random.h"
#include "postern/util/bytes.h"

namespace postern::account {

inline constexpr std::size_t kTokenRandomBytes = 32;
inline constexpr std::size_t kTokenLength = 43;  // unpadded base64url of 32 bytes

std::string generate_token(crypto::Rng& rng);

// True if `token` has the shape generate_token() produces (length and alphabet). Lets the server
// refuse garbage before touching the store; says nothing about whether the token is valid.
bool is_well_formed_token(std::string_view token);

// What the server stores and looks up.
crypto::Sha256Digest token_hash(std::string_view token);

// Constant-time comparisons (lengths are not secret).
bool token_equal(std::string_view a, std::string_view b);
bool token_hash_equal(ByteView a, ByteView b);

}  // namespace postern::account
