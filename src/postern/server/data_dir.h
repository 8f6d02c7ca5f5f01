// The server's data directory: created on first start (mode 0700), holding postern.db, the
// proof-of-work secret (pow.secret, 32 bytes, mode 0600), the self-signed certificate and key
// (cert.pem, key.pem 0600) unless configured, and invite.txt.
#pragma once

#include <string>
#include <string_view>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/result.h"

namespace postern::server {

inline constexpr std::size_t kServerSecretBytes = 32;

// Creates the directory (and its parents) if missing. Errors: Errc::io_error.
Status ensure_directory(const std::string& path);

// Reads the secret at `path`, or creates it with fresh random bytes (mode 0600, O_EXCL, fsynced).
// Errors: Errc::io_error, Errc::bad_secret (a file of the wrong size).
Result<crypto::SecretBytes> load_or_create_secret(const std::string& path, crypto::Rng& rng);

// Writes `content` to `path` through a temporary file and a rename, with the given mode.
Status write_file_atomically(const std::string& path, std::string_view content, unsigned mode);

}  // namespace postern::server
