// FrontAuthenticator::verify on hostile token text and binding (the request target and the
// Sec-WebSocket-Key of a first request). The first input byte is the binding's length; the
// binding follows, then the token. A token that verifies must be the one make_token writes for
// its timestamp, nonce and binding (one accepted spelling per token). Each input is also tried
// in the form of a genuine token with the input's bytes written over part of it, so that the
// decoder and tag check see well-formed lengths and alphabets, not only noise.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "invariant.h"
#include "postern/transport/front_auth.h"

namespace {

using namespace postern;
using namespace postern::transport;

constexpr std::int64_t kNow = 1'790'000'000;

const FrontAuthenticator& authenticator() {
  static const FrontAuthenticator auth = [] {
    Bytes secret(kFrontSecretSize);
    for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::uint8_t>(i * 3 + 1);
    auto a = FrontAuthenticator::create(secret);
    if (!a.ok()) fuzz::fail("create failed");
    return std::move(a).value();
  }();
  return auth;
}

void check(std::string_view token, std::string_view binding) {
  const FrontAuthenticator& auth = authenticator();
  for (std::int64_t window : {std::int64_t{300}, std::int64_t{-1}, INT64_MAX}) {
    auto v = auth.verify(token, binding, kNow, window);
    if (!v.ok()) continue;
    if (auth.make_token(v->timestamp, v->nonce, binding) != token)
      fuzz::fail("accepted a non-canonical token");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t blen = std::min<std::size_t>(data[0], size - 1);
  const std::string binding(reinterpret_cast<const char*>(data + 1), blen);
  const std::string token(reinterpret_cast<const char*>(data + 1 + blen), size - 1 - blen);
  check(token, binding);

  FrontNonce nonce{};
  std::string genuine = authenticator().make_token(kNow, nonce, binding);
  std::copy_n(token.begin(), std::min(token.size(), genuine.size()), genuine.begin());
  check(genuine, binding);
  return 0;
}
