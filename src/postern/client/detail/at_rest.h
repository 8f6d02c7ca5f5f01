// Encryption at rest for the client's profile (docs/client-storage.md): where the 32-byte data
// key comes from (a key file, or Argon2id over a passphrase and a salt file) and what is done with
// it (sealing fields with XChaCha20-Poly1305, blind indexes with keyed BLAKE2b). Private to
// LocalStore; kept apart so the file handling and the cryptography can be read on their own.
//
// Sealed value layout: version (1 byte, kSealVersion) || nonce (24 random bytes) || ciphertext+tag,
// with the context string ("table.column:rowkey") as associated data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::client::detail {

inline constexpr std::uint8_t kSealVersion = 1;
inline constexpr std::size_t kDataKeySize = 32;
inline constexpr std::size_t kSaltSize = 16;  // crypto_pwhash_SALTBYTES
inline constexpr std::size_t kSealNonceSize = 24;
inline constexpr std::size_t kSealTagSize = 16;
inline constexpr std::size_t kSealOverhead = 1 + kSealNonceSize + kSealTagSize;

using DataKey = crypto::SecretArray<kDataKeySize>;

// Writes `data` to `path` so that a reader sees either the old file or the whole new one, never
// a part: a temporary file beside it (mode `mode`), fsync, rename, fsync of the directory.
// Errors: client::Errc::file_error.
Status write_file_atomically(const std::filesystem::path& path, ByteView data, unsigned mode);

// Reads a small file that must hold exactly `out.size()` bytes. Errors: file_error when it
// cannot be read, store_locked when its size is wrong (a damaged or foreign file).
Status read_exact_file(const std::filesystem::path& path, MutableByteView out);

// The key in a key file, or a new random one written there (0600) when `may_create`.
// A missing file with !may_create gives store_locked: the profile was made with another key.
Result<DataKey> key_from_file(const std::filesystem::path& path, bool may_create, crypto::Rng& rng);

// Argon2id (libsodium MODERATE limits) over the passphrase and the salt in `salt_path`, which is
// created (16 random bytes, 0600) when absent and `may_create`.
Result<DataKey> key_from_passphrase(std::string_view passphrase, const std::filesystem::path& salt_path,
                                    bool may_create, crypto::Rng& rng);

// Seals and opens fields under subkeys of the data key, and computes blind indexes.
class AtRest {
 public:
  explicit AtRest(const DataKey& data_key);

  Bytes seal(ByteView plaintext, std::string_view context, crypto::Rng& rng) const;
  // Errors: client::Errc::corrupt_record (altered, truncated, other key, other context).
  Result<crypto::SecretBytes> unseal(ByteView sealed, std::string_view context) const;
  // Hex of BLAKE2b-256 keyed with the index subkey.
  std::string blind_index(std::string_view value) const;

 private:
  crypto::SecretArray<32> seal_key_;
  crypto::SecretArray<32> index_key_;
};

}  // namespace postern::client::detail
