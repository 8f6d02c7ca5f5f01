// The front's first-request authenticator (docs/transport.md, docs/threat-model.md).
//
// A client that holds the deployment secret (from the invite, or a relay's own secret from its
// link) opens its TLS connection with a WebSocket upgrade whose request target is
// "/" + token, token = base64url-without-padding(timestamp (8, big-endian unix seconds) ||
// nonce (16) || tag (16)), tag = the first 16 bytes of
// HMAC-SHA256(K, "postern front v1" || timestamp || nonce || binding), K = HKDF-SHA256(secret,
// salt = "", info = "postern front auth v1"), binding = the request's Sec-WebSocket-Key.
//
// The front accepts a token once: the tag must verify (constant time), the timestamp must lie
// within +- window of the server's clock, and the nonce must not have been seen within the window
// (ReplayFilter, kept on disk so that a restart does not reopen the window). Anything else is not
// an error the client can see: the request is answered by the web site like any other.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport {

inline constexpr std::size_t kFrontSecretSize = 32;
inline constexpr std::size_t kFrontNonceSize = 16;
inline constexpr std::size_t kFrontTokenChars = 54;  // base64url of 40 bytes, no padding

using FrontNonce = std::array<std::uint8_t, kFrontNonceSize>;

class FrontAuthenticator {
 public:
  // Errc::bad_key unless the secret is kFrontSecretSize bytes.
  static Result<FrontAuthenticator> create(ByteView deployment_secret);

  std::string make_token(std::int64_t unix_seconds, const FrontNonce& nonce, std::string_view binding) const;
  std::string make_token(crypto::Rng& rng, std::int64_t unix_seconds, std::string_view binding) const;

  struct Verified {
    std::int64_t timestamp = 0;
    FrontNonce nonce{};
  };
  // Errc::bad_token for a malformed token, a wrong tag or a timestamp outside now +- window.
  // Does not consult the replay filter (the caller does, after this succeeds).
  Result<Verified> verify(std::string_view token, std::string_view binding, std::int64_t now_unix_seconds,
                          std::int64_t window_seconds) const;

 private:
  FrontAuthenticator() = default;
  crypto::SecretArray<32> key_;
};

// Nonces seen within the window, in memory and (unless the path is empty) in an append-only
// file that is read back on open, so that a token replayed after a restart is still refused.
// Thread-safe. Full (max_entries live nonces): every new nonce is refused (fail closed).
// The file (mode 0600) holds 24-byte records, nonce || timestamp (8, big-endian); it is locked
// with flock() while open, so a second filter on the same file, in this process or another,
// fails to open (Errc::io_error). Errc::bad_config for window_seconds <= 0 or max_entries 0.
// A nonce is kept while its token could still verify (timestamp + window >= now); a nonce whose
// token is already older than that is refused (false) without being recorded.
class ReplayFilter {
 public:
  static Result<std::unique_ptr<ReplayFilter>> open(const std::filesystem::path& file, std::int64_t window_seconds,
                                                    std::size_t max_entries = 1'000'000);
  ~ReplayFilter();
  // true: first sight, now recorded (written to the file before returning); false: seen before,
  // or the filter is full. Errc::io_error when the file cannot be written (the nonce is then
  // refused too).
  Result<bool> check_and_record(const FrontNonce& nonce, std::int64_t timestamp, std::int64_t now_unix_seconds);
  std::size_t size() const;

  struct Impl;

 private:
  explicit ReplayFilter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::transport
