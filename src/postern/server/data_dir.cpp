#include "postern/server/data_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "postern/server/errors.h"

namespace postern::server {
namespace {

bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

Status ensure_directory(const std::string& path) {
  std::error_code ec;
  // Only a directory we create gets mode 0700; an operator's own directory keeps its mode.
  if (std::filesystem::create_directories(path, ec)) {
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, ec);
  }
  if (ec) return Errc::io_error;
  if (!std::filesystem::is_directory(path, ec)) return Errc::io_error;
  return {};
}

Result<crypto::SecretBytes> load_or_create_secret(const std::string& path, crypto::Rng& rng) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    crypto::SecretBytes secret(kServerSecretBytes + 1);
    std::size_t got = 0;
    while (got < secret.size()) {
      const ssize_t n = ::read(fd, secret.data() + got, secret.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    if (got != kServerSecretBytes) return Errc::bad_secret;
    return crypto::SecretBytes(secret.view().first(kServerSecretBytes));
  }
  if (errno != ENOENT) return Errc::io_error;
  crypto::SecretBytes secret(kServerSecretBytes);
  rng.fill(secret.mutable_view());
  fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Errc::io_error;
  const bool ok = write_all(fd, secret.data(), secret.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Errc::io_error;
  }
  return secret;
}

Status write_file_atomically(const std::string& path, std::string_view content, unsigned mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return Errc::io_error;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(content.data());
  const bool ok = write_all(fd, bytes, content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Errc::io_error;
  }
  return {};
}

}  // namespace postern::server
