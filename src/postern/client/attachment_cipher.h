// Attachment encryption as WhatsApp and Signal do it: a fresh 64-byte key per attachment
// (32 bytes AES-256 key || 32 bytes HMAC-SHA256 key) and a random 16-byte IV; the blob is
//   IV || AES-256-CBC(plaintext, PKCS#7 padding) || HMAC-SHA256(mac key, IV || ciphertext)
// and its digest is SHA-256(blob). Key, digest and sizes travel inside the end-to-end message;
// the server stores only the blob. Both directions stream: nothing is held whole in memory.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::client {

inline constexpr std::size_t kAttachmentKeySize = 64;
inline constexpr std::size_t kAttachmentIvSize = 16;
inline constexpr std::size_t kAttachmentMacSize = 32;
using AttachmentDigest = std::array<std::uint8_t, 32>;

struct AttachmentSecrets {
  crypto::SecretArray<kAttachmentKeySize> key;
  std::array<std::uint8_t, kAttachmentIvSize> iv{};
  static AttachmentSecrets generate(crypto::Rng& rng);
};

// Size of the blob for a plaintext of `plaintext_size` bytes: 16 + padded + 32.
std::uint64_t attachment_blob_size(std::uint64_t plaintext_size);

class AttachmentEncryptor {
 public:
  explicit AttachmentEncryptor(const AttachmentSecrets& secrets);
  ~AttachmentEncryptor();
  AttachmentEncryptor(AttachmentEncryptor&&) noexcept;
  AttachmentEncryptor& operator=(AttachmentEncryptor&&) noexcept;
  // Appends to `out` the next blob bytes for `plaintext` (the IV first, on the first call).
  Status update(ByteView plaintext, Bytes& out);
  // Appends the last block, the padding and the MAC. Afterwards digest() is the blob's SHA-256.
  Status finish(Bytes& out);
  AttachmentDigest digest() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Decrypts a blob as it arrives. Plaintext is produced before the MAC is seen: callers write it
// to a temporary file and keep the file only when finish() succeeds (it checks the MAC and the
// digest in constant time and the padding; Errc::bad_attachment otherwise).
class AttachmentDecryptor {
 public:
  AttachmentDecryptor(ByteView key64, const AttachmentDigest& expected_digest, std::uint64_t blob_size);
  ~AttachmentDecryptor();
  AttachmentDecryptor(AttachmentDecryptor&&) noexcept;
  AttachmentDecryptor& operator=(AttachmentDecryptor&&) noexcept;
  // Feeds blob bytes; appends plaintext to `out`. More bytes than blob_size: Errc::bad_attachment.
  Status update(ByteView blob, Bytes& out);
  Status finish(Bytes& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The blob of a local file, produced piece by piece for an upload body (BodySource). A resumed
// upload re-encrypts from the start with the same secrets and skips to the server's offset (CBC
// is deterministic for a given key and IV); AES-NI makes that cheaper than keeping state.
class EncryptedFileReader {
 public:
  static Result<EncryptedFileReader> open(const std::filesystem::path& file, const AttachmentSecrets& secrets);
  ~EncryptedFileReader();
  EncryptedFileReader(EncryptedFileReader&&) noexcept;
  EncryptedFileReader& operator=(EncryptedFileReader&&) noexcept;
  std::uint64_t plaintext_size() const;
  std::uint64_t blob_size() const;
  // Discards blob bytes until `offset` (only forward).
  Status skip_to(std::uint64_t offset);
  // Fills `out` with the next blob bytes; 0 at the end. The file changing size while read:
  // Errc::file_error.
  Result<std::size_t> read(std::span<std::uint8_t> out);
  // Valid once everything was read.
  AttachmentDigest digest() const;

 private:
  struct Impl;
  explicit EncryptedFileReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::client
