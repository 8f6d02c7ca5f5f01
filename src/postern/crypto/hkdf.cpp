#include "postern/crypto/hkdf.h"

#include <algorithm>
#include <array>

#include "postern/crypto/errors.h"
#include "postern/crypto/hash.h"
#include "postern/crypto/secret.h"

namespace postern::crypto {

Status hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, MutableByteView out) {
  constexpr std::size_t kHashLen = 32;
  if (out.size() > 255 * kHashLen) return Errc::bad_length;
  SecretArray<kHashLen> prk;
  {
    // An empty salt is HashLen zero bytes (RFC 5869 2.2); HMAC pads keys with zeros, so both are
    // the empty HMAC key, which has a cached context.
    HmacSha256 extract = salt.empty() ? HmacSha256::zero_key() : HmacSha256(salt);
    extract.update(ikm);
    Hmac256Tag t = extract.finish();
    std::copy(t.begin(), t.end(), prk.data());
    wipe(t.data(), t.size());
  }

  Hmac256Tag block{};
  std::size_t done = 0;
  HmacSha256 expand(prk.view());
  for (std::uint8_t counter = 1; done < out.size(); ++counter) {
    if (counter > 1) expand.update(block);
    expand.update(info);
    expand.update(counter);
    block = expand.finish();
    const std::size_t n = std::min(kHashLen, out.size() - done);
    std::copy_n(block.begin(), n, out.begin() + static_cast<std::ptrdiff_t>(done));
    done += n;
  }
  wipe(block.data(), block.size());
  return {};
}

}  // namespace postern::crypto
