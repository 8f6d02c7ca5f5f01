#include "postern/client/detail/at_rest.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

#include "postern/client/errors.h"

namespace postern::client::detail {
namespace {

static_assert(kSaltSize == crypto_pwhash_SALTBYTES);
static_assert(kSealNonceSize == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(kSealTagSize == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kDataKeySize == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kDataKeySize == crypto_kdf_KEYBYTES);

// crypto_kdf contexts are exactly 8 characters; the ids separate the two subkeys.
constexpr char kKdfContext[] = "PstrnRst";
static_assert(sizeof(kKdfContext) - 1 == crypto_kdf_CONTEXTBYTES);
constexpr std::uint64_t kSealSubkeyId = 1;
constexpr std::uint64_t kIndexSubkeyId = 2;

// Closes the descriptor when it goes out of scope (on every error path).
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports whether the close succeeded (it can report a deferred write error).
  bool close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0;
  }

 private:
  int fd_;
};

bool write_all(int fd, ByteView data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// A pointer libsodium may read zero bytes from: an empty span's data() can be null.
const std::uint8_t* nonnull(const std::uint8_t* p) {
  static const std::uint8_t kEmpty = 0;
  return p != nullptr ? p : &kEmpty;
}

}  // namespace

Status write_file_atomically(const std::filesystem::path& path, ByteView data, unsigned mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  // A temporary file left by a crash is ours (the caller holds the profile lock): replace it.
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(mode)));
  if (fd.get() < 0) return Errc::file_error;
  // The umask may have cleared bits of `mode`; it must not have added any (it cannot), but a
  // restrictive umask must not make the file unreadable to its owner either.
  const bool written = ::fchmod(fd.get(), static_cast<mode_t>(mode)) == 0 && write_all(fd.get(), data) &&
                       ::fsync(fd.get()) == 0;
  if (!fd.close() || !written || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Errc::file_error;
  }
  // The rename is durable only once the directory entry is.
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) return Errc::file_error;
  return {};
}

Status read_exact_file(const std::filesystem::path& path, MutableByteView out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Errc::file_error;
  std::size_t done = 0;
  // One byte more than expected tells a longer file from an exact one.
  std::uint8_t extra = 0;
  while (true) {
    std::uint8_t* dest = done < out.size() ? out.data() + done : &extra;
    const std::size_t want = done < out.size() ? out.size() - done : 1;
    const ssize_t n = ::read(fd.get(), dest, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errc::file_error;
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
    if (done > out.size()) break;
  }
  if (done != out.size()) {
    crypto::wipe(out);
    return Errc::store_locked;
  }
  return {};
}

Result<DataKey> key_from_file(const std::filesystem::path& path, bool may_create, crypto::Rng& rng) {
  DataKey key;
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  if (ec) return Errc::file_error;
  if (exists) {
    POSTERN_CHECK(read_exact_file(path, key.span()));
    return key;
  }
  if (!may_create) return Errc::store_locked;
  rng.fill(key.span());
  POSTERN_CHECK(write_file_atomically(path, key.view(), 0600));
  return key;
}

Result<DataKey> key_from_passphrase(std::string_view passphrase, const std::filesystem::path& salt_path,
                                    bool may_create, crypto::Rng& rng) {
  crypto::ensure_sodium();
  std::array<std::uint8_t, kSaltSize> salt{};
  std::error_code ec;
  const bool exists = std::filesystem::exists(salt_path, ec);
  if (ec) return Errc::file_error;
  if (exists) {
    POSTERN_CHECK(read_exact_file(salt_path, salt));
  } else {
    if (!may_create) return Errc::store_locked;
    rng.fill(salt);
    POSTERN_CHECK(write_file_atomically(salt_path, salt, 0600));
  }
  DataKey key;
  const int rc = crypto_pwhash(key.data(), key.size(), passphrase.data(), passphrase.size(), salt.data(),
                               crypto_pwhash_OPSLIMIT_MODERATE, crypto_pwhash_MEMLIMIT_MODERATE,
                               crypto_pwhash_ALG_ARGON2ID13);
  // The only failure with valid limits is an allocation of the 256 MiB Argon2 needs.
  if (rc != 0) return std::make_error_code(std::errc::not_enough_memory);
  return key;
}

AtRest::AtRest(const DataKey& data_key) {
  crypto::ensure_sodium();
  crypto_kdf_derive_from_key(seal_key_.data(), seal_key_.size(), kSealSubkeyId, kKdfContext, data_key.data());
  crypto_kdf_derive_from_key(index_key_.data(), index_key_.size(), kIndexSubkeyId, kKdfContext,
                             data_key.data());
}

Bytes AtRest::seal(ByteView plaintext, std::string_view context, crypto::Rng& rng) const {
  Bytes out(kSealOverhead + plaintext.size());
  out[0] = kSealVersion;
  const MutableByteView nonce(out.data() + 1, kSealNonceSize);
  rng.fill(nonce);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      out.data() + 1 + kSealNonceSize, &written, nonnull(plaintext.data()), plaintext.size(),
      nonnull(reinterpret_cast<const std::uint8_t*>(context.data())), context.size(), nullptr, nonce.data(),
      seal_key_.data());
  return out;
}

Result<crypto::SecretBytes> AtRest::unseal(ByteView sealed, std::string_view context) const {
  if (sealed.size() < kSealOverhead || sealed[0] != kSealVersion) return Errc::corrupt_record;
  const std::size_t size = sealed.size() - kSealOverhead;
  crypto::SecretBytes plain(size);
  std::uint8_t empty = 0;
  unsigned long long opened = 0;
  const std::uint8_t* nonce = sealed.data() + 1;
  const std::uint8_t* ciphertext = nonce + kSealNonceSize;
  const int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      size == 0 ? &empty : plain.data(), &opened, nullptr, ciphertext, size + kSealTagSize,
      nonnull(reinterpret_cast<const std::uint8_t*>(context.data())), context.size(), nonce, seal_key_.data());
  if (rc != 0 || opened != size) return Errc::corrupt_record;
  return plain;
}

std::string AtRest::blind_index(std::string_view value) const {
  std::array<std::uint8_t, 32> digest{};
  crypto_generichash(digest.data(), digest.size(), nonnull(reinterpret_cast<const std::uint8_t*>(value.data())),
                     value.size(), index_key_.data(), index_key_.size());
  return to_hex(digest);
}

}  // namespace postern::client::detail
