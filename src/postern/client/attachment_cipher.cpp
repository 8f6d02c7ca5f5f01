// Streaming attachment encryption (see attachment_cipher.h for the blob layout).
//
// Design: one EVP_CIPHER_CTX per stream with OpenSSL's own padding switched off. The encryptor
// lets OpenSSL pad (EVP_EncryptFinal_ex). The decryptor knows the blob size up front, so it knows
// exactly where the ciphertext ends: it decrypts every block but the last as bytes arrive, keeps
// the last ciphertext block and the MAC aside, and only in finish(), after the MAC and the digest
// compared equal in constant time, decrypts the last block and checks the PKCS#7 padding itself.
// No plaintext of the last block (and so no padding oracle) exists before the blob is
// authenticated. Every error poisons the stream: later calls fail the same way.
#include "postern/client/attachment_cipher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <system_error>

#include "postern/client/errors.h"
#include "postern/crypto/errors.h"
#include "postern/crypto/hash.h"

namespace postern::client {
namespace {

constexpr std::size_t kBlock = 16;
constexpr std::size_t kAesKeySize = 32;
constexpr std::size_t kMinBlobSize = kAttachmentIvSize + kBlock + kAttachmentMacSize;
// EVP's update functions take int lengths; larger inputs are fed in pieces of this size.
constexpr std::size_t kMaxEvpPiece = std::size_t{1} << 30;
// The reader's piece of the file (and so the most plaintext it holds at once).
constexpr std::size_t kFilePiece = 256 * 1024;

const EVP_CIPHER* aes256cbc() {
  static EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return cipher;
}
const EVP_MD* md_sha256() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

// EVP_CIPHER_CTX_free resets the context, which makes the provider wipe the key schedule
// (OPENSSL_clear_free); the same holds for the digest context.
struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// Runs EVP_CipherUpdate over `in` (any size), appending the output to `out`.
bool cipher_update(EVP_CIPHER_CTX* ctx, ByteView in, Bytes& out) {
  while (!in.empty()) {
    const std::size_t piece = std::min(in.size(), kMaxEvpPiece);
    const std::size_t old = out.size();
    out.resize(old + piece + kBlock);
    int n = 0;
    if (EVP_CipherUpdate(ctx, out.data() + old, &n, in.data(), static_cast<int>(piece)) != 1 || n < 0) {
      out.resize(old);
      return false;
    }
    out.resize(old + static_cast<std::size_t>(n));
    in = in.subspan(piece);
  }
  return true;
}

}  // namespace

AttachmentSecrets AttachmentSecrets::generate(crypto::Rng& rng) {
  AttachmentSecrets s;
  rng.fill(MutableByteView(s.key.data(), s.key.size()));
  rng.fill(s.iv);
  return s;
}

std::uint64_t attachment_blob_size(std::uint64_t plaintext_size) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  if (plaintext_size > kMax - kMinBlobSize) return kMax;  // no real file; saturate, never wrap
  const std::uint64_t padded = (plaintext_size / kBlock + 1) * kBlock;
  return kAttachmentIvSize + padded + kAttachmentMacSize;
}

// ---------------------------------------------------------------------------------------------
// AttachmentEncryptor

struct AttachmentEncryptor::Impl {
  explicit Impl(const AttachmentSecrets& s)
      : ctx(EVP_CIPHER_CTX_new()), sha(EVP_MD_CTX_new()), mac(s.key.view().subspan(kAesKeySize)), iv(s.iv) {
    ok = ctx != nullptr && sha != nullptr && aes256cbc() != nullptr && md_sha256() != nullptr &&
         EVP_EncryptInit_ex2(ctx.get(), aes256cbc(), s.key.data(), s.iv.data(), nullptr) == 1 &&
         EVP_DigestInit_ex2(sha.get(), md_sha256(), nullptr) == 1;
  }

  // Blob bytes leave through here: the MAC covers IV || ciphertext, the digest everything.
  void emit(Bytes& out, std::size_t from, bool into_mac) {
    const ByteView fresh(out.data() + from, out.size() - from);
    if (into_mac) mac.update(fresh);
    if (EVP_DigestUpdate(sha.get(), fresh.data(), fresh.size()) != 1) ok = false;
  }
  void emit_iv(Bytes& out) {
    if (iv_written) return;
    const std::size_t from = out.size();
    append(out, iv);
    emit(out, from, true);
    iv_written = true;
  }

  CipherCtx ctx;
  MdCtx sha;
  crypto::HmacSha256 mac;
  std::array<std::uint8_t, kAttachmentIvSize> iv;
  AttachmentDigest digest{};
  bool ok = false;
  bool iv_written = false;
  bool finished = false;
};

AttachmentEncryptor::AttachmentEncryptor(const AttachmentSecrets& secrets)
    : impl_(std::make_unique<Impl>(secrets)) {}
AttachmentEncryptor::~AttachmentEncryptor() = default;
AttachmentEncryptor::AttachmentEncryptor(AttachmentEncryptor&&) noexcept = default;
AttachmentEncryptor& AttachmentEncryptor::operator=(AttachmentEncryptor&&) noexcept = default;

Status AttachmentEncryptor::update(ByteView plaintext, Bytes& out) {
  if (!impl_ || impl_->finished) return Errc::invalid_argument;
  if (!impl_->ok) return crypto::Errc::backend_failure;
  impl_->emit_iv(out);
  const std::size_t from = out.size();
  if (!cipher_update(impl_->ctx.get(), plaintext, out)) impl_->ok = false;
  impl_->emit(out, from, true);
  if (!impl_->ok) return crypto::Errc::backend_failure;
  return {};
}

Status AttachmentEncryptor::finish(Bytes& out) {
  if (!impl_ || impl_->finished) return Errc::invalid_argument;
  if (!impl_->ok) return crypto::Errc::backend_failure;
  Impl& s = *impl_;
  s.emit_iv(out);
  std::size_t from = out.size();
  out.resize(from + kBlock);
  int n = 0;
  if (EVP_EncryptFinal_ex(s.ctx.get(), out.data() + from, &n) != 1 || n < 0) {
    out.resize(from);
    s.ok = false;
    return crypto::Errc::backend_failure;
  }
  out.resize(from + static_cast<std::size_t>(n));
  s.emit(out, from, true);
  const crypto::Hmac256Tag tag = s.mac.finish();
  from = out.size();
  append(out, tag);
  s.emit(out, from, false);
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(s.sha.get(), s.digest.data(), &len) != 1 || len != s.digest.size()) s.ok = false;
  s.finished = true;
  s.ctx.reset();  // drops the key schedule now rather than at destruction
  if (!s.ok) return crypto::Errc::backend_failure;
  return {};
}

AttachmentDigest AttachmentEncryptor::digest() const {
  return impl_ ? impl_->digest : AttachmentDigest{};
}

// ---------------------------------------------------------------------------------------------
// AttachmentDecryptor

struct AttachmentDecryptor::Impl {
  Impl(ByteView key64, const AttachmentDigest& expected, std::uint64_t size)
      : ctx(EVP_CIPHER_CTX_new()),
        sha(EVP_MD_CTX_new()),
        mac(key64.size() == kAttachmentKeySize ? key64.subspan(kAesKeySize) : ByteView{}),
        expected_digest(expected),
        blob_size(size) {
    const bool size_ok =
        size >= kMinBlobSize && (size - kAttachmentIvSize - kAttachmentMacSize) % kBlock == 0;
    // The IV is not known yet: the key is set now (so it need not be kept), the IV when it arrives.
    failed = !(key64.size() == kAttachmentKeySize && size_ok && ctx != nullptr && sha != nullptr &&
               aes256cbc() != nullptr && md_sha256() != nullptr &&
               EVP_DecryptInit_ex2(ctx.get(), aes256cbc(), key64.data(), nullptr, nullptr) == 1 &&
               EVP_DigestInit_ex2(sha.get(), md_sha256(), nullptr) == 1);
    if (!failed) {
      ciphertext_end = blob_size - kAttachmentMacSize;
      last_block_start = ciphertext_end - kBlock;
    }
  }
  ~Impl() { crypto::wipe(last_block.data(), last_block.size()); }

  Status fail() {
    failed = true;
    ctx.reset();
    return Errc::bad_attachment;
  }

  CipherCtx ctx;
  MdCtx sha;
  crypto::HmacSha256 mac;
  AttachmentDigest expected_digest;
  std::uint64_t blob_size;
  std::uint64_t ciphertext_end = 0;    // offset of the MAC
  std::uint64_t last_block_start = 0;  // offset of the last ciphertext block
  std::uint64_t position = 0;          // blob bytes consumed so far
  std::array<std::uint8_t, kAttachmentIvSize> iv{};
  std::array<std::uint8_t, kBlock> last_block{};
  std::array<std::uint8_t, kAttachmentMacSize> their_mac{};
  bool failed = false;
  bool finished = false;
};

AttachmentDecryptor::AttachmentDecryptor(ByteView key64, const AttachmentDigest& expected_digest,
                                         std::uint64_t blob_size)
    : impl_(std::make_unique<Impl>(key64, expected_digest, blob_size)) {}
AttachmentDecryptor::~AttachmentDecryptor() = default;
AttachmentDecryptor::AttachmentDecryptor(AttachmentDecryptor&&) noexcept = default;
AttachmentDecryptor& AttachmentDecryptor::operator=(AttachmentDecryptor&&) noexcept = default;

Status AttachmentDecryptor::update(ByteView blob, Bytes& out) {
  if (!impl_) return Errc::invalid_argument;
  Impl& s = *impl_;
  if (s.failed) return Errc::bad_attachment;
  if (s.finished) return Errc::invalid_argument;
  if (blob.size() > s.blob_size - s.position) return s.fail();
  if (EVP_DigestUpdate(s.sha.get(), blob.data(), blob.size()) != 1) return s.fail();

  // The IV.
  if (s.position < kAttachmentIvSize && !blob.empty()) {
    const std::size_t n = std::min<std::size_t>(blob.size(), kAttachmentIvSize - s.position);
    std::copy_n(blob.begin(), n, s.iv.begin() + static_cast<std::ptrdiff_t>(s.position));
    s.mac.update(blob.first(n));
    s.position += n;
    blob = blob.subspan(n);
    if (s.position == kAttachmentIvSize) {
      if (EVP_DecryptInit_ex2(s.ctx.get(), nullptr, nullptr, s.iv.data(), nullptr) != 1 ||
          EVP_CIPHER_CTX_set_padding(s.ctx.get(), 0) != 1) {
        return s.fail();
      }
    }
  }
  // Ciphertext before the last block: decrypted as it comes.
  if (s.position < s.last_block_start && !blob.empty()) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(blob.size(), s.last_block_start - s.position));
    s.mac.update(blob.first(n));
    if (!cipher_update(s.ctx.get(), blob.first(n), out)) return s.fail();
    s.position += n;
    blob = blob.subspan(n);
  }
  // The last ciphertext block: kept until the blob is authenticated.
  if (s.position < s.ciphertext_end && !blob.empty()) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(blob.size(), s.ciphertext_end - s.position));
    std::copy_n(blob.begin(), n,
                s.last_block.begin() + static_cast<std::ptrdiff_t>(s.position - s.last_block_start));
    s.mac.update(blob.first(n));
    s.position += n;
    blob = blob.subspan(n);
  }
  // The MAC.
  if (!blob.empty()) {
    std::copy(blob.begin(), blob.end(),
              s.their_mac.begin() + static_cast<std::ptrdiff_t>(s.position - s.ciphertext_end));
    s.position += blob.size();
  }
  return {};
}

Status AttachmentDecryptor::finish(Bytes& out) {
  if (!impl_) return Errc::invalid_argument;
  Impl& s = *impl_;
  if (s.failed) return Errc::bad_attachment;
  if (s.finished) return Errc::invalid_argument;
  if (s.position != s.blob_size) return s.fail();

  const crypto::Hmac256Tag our_mac = s.mac.finish();
  AttachmentDigest digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(s.sha.get(), digest.data(), &len) != 1 || len != digest.size()) return s.fail();
  // Both comparisons run whatever the first one gives.
  const bool mac_ok = crypto::constant_time_equal(our_mac, s.their_mac);
  const bool digest_ok = crypto::constant_time_equal(digest, s.expected_digest);
  if (!(mac_ok && digest_ok)) return s.fail();

  std::array<std::uint8_t, kBlock> plain{};
  int n = 0;
  if (EVP_DecryptUpdate(s.ctx.get(), plain.data(), &n, s.last_block.data(), static_cast<int>(kBlock)) != 1 ||
      n != static_cast<int>(kBlock)) {
    return s.fail();
  }
  // The blob is authentic, so the padding is the sender's: a bad one means a broken sender, not
  // an attack, and timing no longer matters.
  const std::uint8_t pad = plain[kBlock - 1];
  bool pad_ok = pad >= 1 && pad <= kBlock;
  for (std::size_t i = 0; pad_ok && i < pad; ++i) pad_ok = plain[kBlock - 1 - i] == pad;
  if (!pad_ok) {
    crypto::wipe(plain.data(), plain.size());
    return s.fail();
  }
  append(out, ByteView(plain.data(), kBlock - pad));
  crypto::wipe(plain.data(), plain.size());
  s.finished = true;
  s.ctx.reset();
  return {};
}

// ---------------------------------------------------------------------------------------------
// EncryptedFileReader

namespace {
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
}  // namespace

struct EncryptedFileReader::Impl {
  Impl(std::unique_ptr<std::FILE, FileCloser> f, std::uint64_t size, const AttachmentSecrets& secrets)
      : file(std::move(f)), plaintext_size(size), blob_size(attachment_blob_size(size)), encryptor(secrets) {}
  ~Impl() {
    crypto::wipe(piece);
    crypto::wipe(pending);
  }

  // Reads the next piece of the file and encrypts it into `pending`; after the last piece, the
  // padding and the MAC.
  Status refill() {
    pending.clear();
    pending_pos = 0;
    if (plaintext_read < plaintext_size) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(kFilePiece, plaintext_size - plaintext_read));
      piece.resize(want);
      const std::size_t got = std::fread(piece.data(), 1, want, file.get());
      if (got != want) return Errc::file_error;  // shrunk (or a read error)
      plaintext_read += got;
      POSTERN_CHECK(encryptor.update(piece, pending));
      return {};
    }
    // Everything announced was read: the file must end here.
    std::uint8_t extra = 0;
    if (std::fread(&extra, 1, 1, file.get()) != 0 || std::ferror(file.get()) != 0) return Errc::file_error;
    POSTERN_CHECK(encryptor.finish(pending));
    encrypted_all = true;
    file.reset();
    return {};
  }

  // Gives up to out.size() next blob bytes (to `out`, or nowhere when skipping).
  Result<std::size_t> produce(std::uint8_t* out, std::size_t size) {
    if (failed) return Errc::file_error;
    std::size_t done = 0;
    while (done < size) {
      if (pending_pos == pending.size()) {
        if (encrypted_all) break;
        if (const Status st = refill(); !st.ok()) {
          failed = true;
          file.reset();
          return st.error();
        }
        continue;
      }
      const std::size_t n = std::min(size - done, pending.size() - pending_pos);
      if (out != nullptr) std::copy_n(pending.data() + pending_pos, n, out + done);
      pending_pos += n;
      done += n;
    }
    position += done;
    return done;
  }

  std::unique_ptr<std::FILE, FileCloser> file;
  std::uint64_t plaintext_size;
  std::uint64_t blob_size;
  AttachmentEncryptor encryptor;
  Bytes piece;    // the current piece of plaintext
  Bytes pending;  // blob bytes made but not handed out yet
  std::size_t pending_pos = 0;
  std::uint64_t plaintext_read = 0;
  std::uint64_t position = 0;  // blob bytes handed out (or skipped)
  bool encrypted_all = false;
  bool failed = false;
};

Result<EncryptedFileReader> EncryptedFileReader::open(const std::filesystem::path& file,
                                                      const AttachmentSecrets& secrets) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(file.c_str(), "rb"));
  if (!f) return Errc::file_error;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec) || ec) return Errc::file_error;
  const std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (ec) return Errc::file_error;
  return EncryptedFileReader(std::make_unique<Impl>(std::move(f), static_cast<std::uint64_t>(size), secrets));
}

EncryptedFileReader::EncryptedFileReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EncryptedFileReader::~EncryptedFileReader() = default;
EncryptedFileReader::EncryptedFileReader(EncryptedFileReader&&) noexcept = default;
EncryptedFileReader& EncryptedFileReader::operator=(EncryptedFileReader&&) noexcept = default;

std::uint64_t EncryptedFileReader::plaintext_size() const {
  return impl_ ? impl_->plaintext_size : 0;
}
std::uint64_t EncryptedFileReader::blob_size() const {
  return impl_ ? impl_->blob_size : 0;
}

Status EncryptedFileReader::skip_to(std::uint64_t offset) {
  if (!impl_) return Errc::invalid_argument;
  if (offset < impl_->position || offset > impl_->blob_size) return Errc::invalid_argument;
  while (impl_->position < offset) {
    const std::size_t step =
        static_cast<std::size_t>(std::min<std::uint64_t>(offset - impl_->position, kFilePiece));
    POSTERN_TRY(const std::size_t n, impl_->produce(nullptr, step));
    if (n == 0) return Errc::file_error;
  }
  return {};
}

Result<std::size_t> EncryptedFileReader::read(std::span<std::uint8_t> out) {
  if (!impl_) return Errc::invalid_argument;
  return impl_->produce(out.data(), out.size());
}

AttachmentDigest EncryptedFileReader::digest() const {
  return impl_ && impl_->encrypted_all ? impl_->encryptor.digest() : AttachmentDigest{};
}

}  // namespace postern::client
