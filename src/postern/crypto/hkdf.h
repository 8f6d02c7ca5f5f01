// HKDF-SHA256 (RFC 5869), composed from libsodium's HMAC-SHA256. Signal v3 uses the RFC's
// counter starting at 1 ("v3" HKDF); the long-gone v2 started at 0 and is not supported.
#pragma once

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::crypto {

// Derives out.size() bytes (at most 255 * 32). An empty salt means 32 zero bytes (RFC 5869 2.2).
Status hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, MutableByteView out);

}  // namespace postern::crypto
