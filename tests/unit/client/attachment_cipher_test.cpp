// Tests for postern/client/attachment_cipher.h: streaming round trips at the block boundaries,
// equality with a one-shot computation from the crypto layer, every class of tampering refused,
// and the file reader (same blob, resumable with skip_to, a file changing size under it).
#include "store/temp_dir.h"
#include "postern/client/attachment_cipher.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "postern/client/errors.h"
#include "postern/crypto/aes_cbc.h"
#include "postern/crypto/hash.h"
#include "postern/crypto/random.h"

namespace postern::client {
namespace {

// A temporary directory per test (tests/unit/store/temp_dir.h), its files as std::filesystem::path.
struct TempDir : store::store_test::TempDir {
  std::filesystem::path file(const std::string& name) const { return store::store_test::TempDir::file(name); }
};

Bytes random_bytes(crypto::Rng& rng, std::size_t n) {
  Bytes b(n);
  rng.fill(b);
  return b;
}

void write_file(const std::filesystem::path& p, ByteView data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good());
}

// Piece sizes that cross block and MAC boundaries at odd places.
constexpr std::size_t kOddPieces[] = {1, 7, 16, 3, 31, 33, 4099, 5, 65537};

struct Encrypted {
  Bytes blob;
  AttachmentDigest digest{};
};

Encrypted encrypt_in_pieces(const AttachmentSecrets& s, ByteView plaintext) {
  AttachmentEncryptor enc(s);
  Encrypted e;
  std::size_t i = 0;
  std::size_t k = 0;
  while (i < plaintext.size()) {
    const std::size_t n = std::min(kOddPieces[k++ % std::size(kOddPieces)], plaintext.size() - i);
    EXPECT_TRUE(enc.update(plaintext.subspan(i, n), e.blob).ok());
    i += n;
  }
  EXPECT_TRUE(enc.finish(e.blob).ok());
  e.digest = enc.digest();
  return e;
}

// Decrypts `blob` fed in odd pieces; the error of the first failing call, if any.
Result<Bytes> decrypt_in_pieces(ByteView key, const AttachmentDigest& digest, std::uint64_t blob_size,
                                ByteView blob, std::size_t offset = 3) {
  AttachmentDecryptor dec(key, digest, blob_size);
  Bytes out;
  std::size_t i = 0;
  std::size_t k = offset;
  while (i < blob.size()) {
    const std::size_t n = std::min(kOddPieces[k++ % std::size(kOddPieces)], blob.size() - i);
    POSTERN_CHECK(dec.update(blob.subspan(i, n), out));
    i += n;
  }
  POSTERN_CHECK(dec.finish(out));
  return out;
}

Result<Bytes> decrypt(const AttachmentSecrets& s, const Encrypted& e) {
  return decrypt_in_pieces(s.key.view(), e.digest, e.blob.size(), e.blob);
}

TEST(AttachmentCipher, BlobSizeFormula) {
  EXPECT_EQ(attachment_blob_size(0), 16u + 16u + 32u);
  EXPECT_EQ(attachment_blob_size(1), 16u + 16u + 32u);
  EXPECT_EQ(attachment_blob_size(15), 16u + 16u + 32u);
  EXPECT_EQ(attachment_blob_size(16), 16u + 32u + 32u);
  EXPECT_EQ(attachment_blob_size(17), 16u + 32u + 32u);
  EXPECT_EQ(attachment_blob_size(1000000), 16u + 1000000u / 16u * 16u + 16u + 32u);
}

TEST(AttachmentCipher, RoundTripsAtBoundarySizes) {
  crypto::DeterministicRng rng(1);
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{16},
                                 std::size_t{17}, std::size_t{1024 * 1024 + 3}}) {
    SCOPED_TRACE(size);
    const AttachmentSecrets s = AttachmentSecrets::generate(rng);
    const Bytes plain = random_bytes(rng, size);
    const Encrypted e = encrypt_in_pieces(s, plain);
    EXPECT_EQ(e.blob.size(), attachment_blob_size(size));
    EXPECT_EQ(e.digest, crypto::sha256(e.blob));
    // Different piece patterns on the way in.
    for (std::size_t offset : {0u, 3u, 5u}) {
      const Result<Bytes> back = decrypt_in_pieces(s.key.view(), e.digest, e.blob.size(), e.blob, offset);
      ASSERT_TRUE(back.ok()) << back.error().message();
      EXPECT_EQ(*back, plain);
    }
    // All at once.
    AttachmentDecryptor dec(s.key.view(), e.digest, e.blob.size());
    Bytes out;
    ASSERT_TRUE(dec.update(e.blob, out).ok());
    ASSERT_TRUE(dec.finish(out).ok());
    EXPECT_EQ(out, plain);
  }
}

TEST(AttachmentCipher, EqualsOneShotComputation) {
  crypto::DeterministicRng rng(2);
  for (const std::size_t size : {std::size_t{0}, std::size_t{17}, std::size_t{100003}}) {
    const AttachmentSecrets s = AttachmentSecrets::generate(rng);
    const Bytes plain = random_bytes(rng, size);
    const ByteView key = s.key.view();
    const Result<Bytes> ct = crypto::aes_cbc_encrypt(key.first(32), s.iv, plain);
    ASSERT_TRUE(ct.ok());
    Bytes expected(s.iv.begin(), s.iv.end());
    append(expected, *ct);
    const crypto::Hmac256Tag mac = crypto::hmac_sha256(key.subspan(32), expected);
    append(expected, mac);
    const Encrypted e = encrypt_in_pieces(s, plain);
    EXPECT_EQ(e.blob, expected);
    EXPECT_EQ(e.digest, crypto::sha256(expected));
  }
}

TEST(AttachmentCipher, NoPlaintextOfTheLastBlockBeforeFinish) {
  crypto::DeterministicRng rng(3);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  const Bytes plain = random_bytes(rng, 40);  // 3 blocks of ciphertext
  const Encrypted e = encrypt_in_pieces(s, plain);
  AttachmentDecryptor dec(s.key.view(), e.digest, e.blob.size());
  Bytes out;
  ASSERT_TRUE(dec.update(e.blob, out).ok());
  EXPECT_EQ(out.size(), 32u);  // the last block waits for the MAC
  ASSERT_TRUE(dec.finish(out).ok());
  EXPECT_EQ(out, plain);
}

TEST(AttachmentCipher, EverySingleBitFlipIsRefused) {
  crypto::DeterministicRng rng(4);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  const Bytes plain = random_bytes(rng, 50);  // IV 16 | ciphertext 64 | MAC 32
  const Encrypted e = encrypt_in_pieces(s, plain);
  ASSERT_EQ(e.blob.size(), 112u);
  // Every bit of every byte: the IV, the ciphertext, its last block and the MAC.
  for (std::size_t byte = 0; byte < e.blob.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = e.blob;
      bad[byte] = static_cast<std::uint8_t>(bad[byte] ^ (1u << bit));
      // The digest is of the real blob (the attacker cannot change it)...
      const Result<Bytes> r = decrypt_in_pieces(s.key.view(), e.digest, bad.size(), bad);
      ASSERT_FALSE(r.ok()) << byte << ":" << bit;
      EXPECT_EQ(r.error(), make_error_code(Errc::bad_attachment));
      // ...and even a digest that matches the altered blob does not help without the MAC key.
      const Result<Bytes> r2 = decrypt_in_pieces(s.key.view(), crypto::sha256(bad), bad.size(), bad);
      EXPECT_EQ(r2.error(), make_error_code(Errc::bad_attachment)) << byte << ":" << bit;
    }
  }
}

TEST(AttachmentCipher, TruncationAndExtensionAreRefused) {
  crypto::DeterministicRng rng(5);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  const Bytes plain = random_bytes(rng, 100);
  const Encrypted e = encrypt_in_pieces(s, plain);
  const ByteView key = s.key.view();
  const std::uint64_t size = e.blob.size();

  // Fewer bytes than announced.
  for (std::size_t cut : {std::size_t{1}, std::size_t{16}, std::size_t{32}, std::size_t{33}, e.blob.size()}) {
    const Bytes shorter(e.blob.begin(), e.blob.end() - static_cast<std::ptrdiff_t>(cut));
    EXPECT_EQ(decrypt_in_pieces(key, e.digest, size, shorter).error(), make_error_code(Errc::bad_attachment))
        << cut;
  }
  // More bytes than announced.
  Bytes longer = e.blob;
  longer.push_back(0);
  EXPECT_EQ(decrypt_in_pieces(key, e.digest, size, longer).error(), make_error_code(Errc::bad_attachment));
  // A whole truncated blob that claims its own (block-aligned) size, with its own digest: MAC fails.
  const Bytes minus_block(e.blob.begin(), e.blob.end() - 16);
  EXPECT_EQ(decrypt_in_pieces(key, crypto::sha256(minus_block), minus_block.size(), minus_block).error(),
            make_error_code(Errc::bad_attachment));
  // Blob sizes that cannot be: too small, or not IV + blocks + MAC.
  for (std::uint64_t bad_size :
       {std::uint64_t{0}, std::uint64_t{48}, std::uint64_t{63}, size + 1, size - 1}) {
    EXPECT_EQ(decrypt_in_pieces(key, e.digest, bad_size, e.blob).error(),
              make_error_code(Errc::bad_attachment))
        << bad_size;
  }
  // After a failure the decryptor stays failed.
  AttachmentDecryptor dec(key, e.digest, size);
  Bytes out;
  EXPECT_FALSE(dec.update(longer, out).ok());
  EXPECT_EQ(dec.update(ByteView(e.blob).first(1), out).error(), make_error_code(Errc::bad_attachment));
  EXPECT_EQ(dec.finish(out).error(), make_error_code(Errc::bad_attachment));
}

TEST(AttachmentCipher, WrongDigestOrKeyIsRefused) {
  crypto::DeterministicRng rng(6);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  const Bytes plain = random_bytes(rng, 1000);
  const Encrypted e = encrypt_in_pieces(s, plain);
  for (std::size_t i : {std::size_t{0}, std::size_t{17}, std::size_t{31}}) {
    AttachmentDigest wrong = e.digest;
    wrong[i] ^= 0x80;
    EXPECT_EQ(decrypt_in_pieces(s.key.view(), wrong, e.blob.size(), e.blob).error(),
              make_error_code(Errc::bad_attachment));
  }
  AttachmentSecrets other = s;
  other.key[40] ^= 1;  // the MAC key
  EXPECT_EQ(decrypt(other, e).error(), make_error_code(Errc::bad_attachment));
  other = s;
  other.key[3] ^= 1;  // the AES key: the MAC still holds, the padding almost surely does not
  const Result<Bytes> r = decrypt(other, e);
  if (r.ok()) {
    EXPECT_NE(*r, plain);
  }
  // A key of the wrong size.
  const Bytes short_key(s.key.data(), s.key.data() + 32);
  EXPECT_EQ(decrypt_in_pieces(short_key, e.digest, e.blob.size(), e.blob).error(),
            make_error_code(Errc::bad_attachment));
}

TEST(AttachmentCipher, UseAfterFinishIsAnError) {
  crypto::DeterministicRng rng(7);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  AttachmentEncryptor enc(s);
  Bytes blob;
  ASSERT_TRUE(enc.finish(blob).ok());
  EXPECT_FALSE(enc.update(blob, blob).ok());
  EXPECT_FALSE(enc.finish(blob).ok());
  EXPECT_EQ(blob.size(), attachment_blob_size(0));
}

// --- EncryptedFileReader -----------------------------------------------------------------------

Bytes read_all(EncryptedFileReader& r, std::size_t piece) {
  Bytes out;
  Bytes buf(piece);
  for (;;) {
    const Result<std::size_t> n = r.read(buf);
    EXPECT_TRUE(n.ok());
    if (!n.ok() || *n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  return out;
}

TEST(AttachmentCipher, FileReaderEqualsEncryptor) {
  TempDir dir;
  crypto::DeterministicRng rng(8);
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{17}, std::size_t{256 * 1024}, std::size_t{600 * 1024 + 5}}) {
    SCOPED_TRACE(size);
    const AttachmentSecrets s = AttachmentSecrets::generate(rng);
    const Bytes plain = random_bytes(rng, size);
    const auto path = dir.file("f" + std::to_string(size));
    write_file(path, plain);
    const Encrypted e = encrypt_in_pieces(s, plain);
    auto reader = EncryptedFileReader::open(path, s);
    ASSERT_TRUE(reader.ok());
    EXPECT_EQ(reader->plaintext_size(), size);
    EXPECT_EQ(reader->blob_size(), attachment_blob_size(size));
    const Bytes blob = read_all(*reader, 10007);
    EXPECT_EQ(blob, e.blob);
    EXPECT_EQ(reader->digest(), e.digest);
    // Reading at the end keeps giving 0.
    Bytes one(1);
    const Result<std::size_t> again = reader->read(one);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, 0u);
  }
}

TEST(AttachmentCipher, FileReaderSkipToGivesTheSameTail) {
  TempDir dir;
  crypto::DeterministicRng rng(9);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  const Bytes plain = random_bytes(rng, 700 * 1024 + 9);
  const auto path = dir.file("skip");
  write_file(path, plain);
  const Encrypted e = encrypt_in_pieces(s, plain);
  for (const std::uint64_t offset :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{16}, std::uint64_t{17}, std::uint64_t{256 * 1024},
        std::uint64_t{256 * 1024 + 16 + 1}, std::uint64_t{e.blob.size() - 33},
        std::uint64_t{e.blob.size() - 1}, std::uint64_t{e.blob.size()}}) {
    SCOPED_TRACE(offset);
    auto reader = EncryptedFileReader::open(path, s);
    ASSERT_TRUE(reader.ok());
    ASSERT_TRUE(reader->skip_to(offset).ok());
    const Bytes tail = read_all(*reader, 65536);
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), e.blob.begin() + static_cast<std::ptrdiff_t>(offset),
                           e.blob.end()));
    EXPECT_EQ(tail.size(), e.blob.size() - offset);
    EXPECT_EQ(reader->digest(), e.digest);
  }
  // Only forward, never past the end.
  auto reader = EncryptedFileReader::open(path, s);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(reader->skip_to(100).ok());
  EXPECT_FALSE(reader->skip_to(99).ok());
  EXPECT_FALSE(reader->skip_to(e.blob.size() + 1).ok());
  // Skipping in several steps equals one skip.
  ASSERT_TRUE(reader->skip_to(300000).ok());
  const Bytes tail = read_all(*reader, 4096);
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), e.blob.begin() + 300000, e.blob.end()));
}

TEST(AttachmentCipher, FileReaderRefusesAFileChangingSize) {
  TempDir dir;
  crypto::DeterministicRng rng(10);
  const AttachmentSecrets s = AttachmentSecrets::generate(rng);
  const Bytes plain = random_bytes(rng, 1024 * 1024);
  const auto path = dir.file("changing");

  // Shrinks after the first piece was read.
  write_file(path, plain);
  {
    auto reader = EncryptedFileReader::open(path, s);
    ASSERT_TRUE(reader.ok());
    Bytes buf(1000);
    ASSERT_TRUE(reader->read(buf).ok());
    std::filesystem::resize_file(path, 100 * 1024);
    Result<std::size_t> n = std::size_t{1};
    while (n.ok() && *n != 0) n = reader->read(buf);
    EXPECT_EQ(n.error(), make_error_code(Errc::file_error));
    EXPECT_EQ(reader->read(buf).error(), make_error_code(Errc::file_error));  // stays failed
  }
  // Grows while being read.
  write_file(path, plain);
  {
    auto reader = EncryptedFileReader::open(path, s);
    ASSERT_TRUE(reader.ok());
    Bytes buf(1000);
    ASSERT_TRUE(reader->read(buf).ok());
    {
      std::ofstream more(path, std::ios::binary | std::ios::app);
      more << "more";
    }
    Result<std::size_t> n = std::size_t{1};
    while (n.ok() && *n != 0) n = reader->read(buf);
    EXPECT_EQ(n.error(), make_error_code(Errc::file_error));
  }
  // And skip_to sees it too.
  write_file(path, plain);
  {
    auto reader = EncryptedFileReader::open(path, s);
    ASSERT_TRUE(reader.ok());
    std::filesystem::resize_file(path, 10);
    EXPECT_EQ(reader->skip_to(500000).error(), make_error_code(Errc::file_error));
  }
  // A missing file or a directory.
  EXPECT_EQ(EncryptedFileReader::open(dir.file("missing"), s).error(), make_error_code(Errc::file_error));
  EXPECT_EQ(EncryptedFileReader::open(dir.file(""), s).error(), make_error_code(Errc::file_error));
}

}  // namespace
}  // namespace postern::client
