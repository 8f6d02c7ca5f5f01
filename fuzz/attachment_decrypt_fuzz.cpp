// AttachmentDecryptor on hostile blobs and digests, and sniff_mime on hostile bytes. Invariants:
// nothing aborts; a blob is accepted only if it is exactly what the encryptor makes of the
// plaintext it gave (under the fixed key and its own IV); an untouched blob round-trips and a
// blob with any byte changed is refused.
//
// Input: byte 0 chooses the mode, byte 1 the piece size (and which byte to alter), the rest is
//   mode 0: a blob, checked against its own SHA-256 (only the MAC stands in the way);
//   mode 1: 32 bytes of digest, then a blob whose announced size is off by (byte 1 % 5) - 2;
//   mode 2: 16 bytes of IV, then a plaintext: encrypted, maybe altered at one byte, decrypted.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "invariant.h"
#include "postern/client/attachment_cipher.h"
#include "postern/client/media.h"
#include "postern/crypto/hash.h"

namespace {

using postern::Bytes;
using postern::ByteView;
using postern::client::AttachmentDecryptor;
using postern::client::AttachmentDigest;
using postern::client::AttachmentEncryptor;
using postern::client::AttachmentSecrets;
using postern::fuzz::fail;

AttachmentSecrets fixed_secrets(ByteView iv) {
  AttachmentSecrets s;
  for (std::size_t i = 0; i < s.key.size(); ++i) s.key[i] = static_cast<std::uint8_t>(0xA5 ^ i);
  std::copy_n(iv.begin(), std::min(iv.size(), s.iv.size()), s.iv.begin());
  return s;
}

bool decrypt(ByteView key, const AttachmentDigest& digest, std::uint64_t blob_size, ByteView blob,
             std::size_t piece, Bytes& out) {
  AttachmentDecryptor dec(key, digest, blob_size);
  for (std::size_t i = 0; i < blob.size(); i += piece) {
    if (!dec.update(blob.subspan(i, std::min(piece, blob.size() - i)), out).ok()) return false;
  }
  return dec.finish(out).ok();
}

Bytes encrypt(const AttachmentSecrets& s, ByteView plaintext, AttachmentDigest& digest) {
  AttachmentEncryptor enc(s);
  Bytes blob;
  if (!enc.update(plaintext, blob).ok() || !enc.finish(blob).ok()) fail("encryption failed");
  digest = enc.digest();
  return blob;
}

// An accepted blob must be the encryption of what it decrypted to.
void check_accepted(ByteView blob, const Bytes& plaintext) {
  if (blob.size() < 16) fail("a blob shorter than its IV was accepted");
  AttachmentDigest digest{};
  const Bytes again = encrypt(fixed_secrets(blob.first(16)), plaintext, digest);
  if (!std::equal(again.begin(), again.end(), blob.begin(), blob.end()))
    fail("accepted a blob the encryptor would not make");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView all(data, size);
  const std::string mime = postern::client::sniff_mime(all);
  if (mime.empty()) fail("sniff_mime gave an empty type");
  if (size < 2) return 0;

  const std::uint8_t mode = data[0] % 3;
  const std::size_t piece = std::size_t{data[1]} + 1;
  const ByteView rest = all.subspan(2);
  const AttachmentSecrets key_only = fixed_secrets({});
  const ByteView key = key_only.key.view();
  Bytes out;

  if (mode == 0) {
    const AttachmentDigest digest = postern::crypto::sha256(rest);
    if (decrypt(key, digest, rest.size(), rest, piece, out)) check_accepted(rest, out);
  } else if (mode == 1) {
    if (rest.size() < 32) return 0;
    AttachmentDigest digest{};
    std::copy_n(rest.begin(), 32, digest.begin());
    const ByteView blob = rest.subspan(32);
    const auto announced =
        static_cast<std::uint64_t>(static_cast<std::int64_t>(blob.size()) + data[1] % 5 - 2);
    const bool ok = decrypt(key, digest, announced, blob, piece, out);
    if (ok) {
      if (announced != blob.size()) fail("a blob of the wrong size was accepted");
      if (postern::crypto::sha256(blob) != digest) fail("a blob with the wrong digest was accepted");
      check_accepted(blob, out);
    }
  } else {
    if (rest.size() < 16) return 0;
    const AttachmentSecrets s = fixed_secrets(rest.first(16));
    const ByteView plaintext = rest.subspan(16);
    AttachmentDigest digest{};
    Bytes blob = encrypt(s, plaintext, digest);
    if (blob.size() != postern::client::attachment_blob_size(plaintext.size())) fail("blob size formula");
    const bool alter = (data[1] & 0x80) != 0;
    if (alter) {
      const std::size_t at = (std::size_t{data[1]} * 131 + plaintext.size()) % blob.size();
      blob[at] = static_cast<std::uint8_t>(blob[at] ^ (1u << (data[1] % 8)));
    }
    const bool ok = decrypt(s.key.view(), digest, blob.size(), blob, piece, out);
    if (alter && ok) fail("an altered blob was accepted");
    if (!alter && (!ok || !std::equal(out.begin(), out.end(), plaintext.begin(), plaintext.end()))) {
      fail("an untouched blob did not round-trip");
    }
  }
  return 0;
}
