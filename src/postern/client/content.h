// Padding and parsing of end-to-end content (proto/content.proto). Content is padded before
// encryption as Signal does (the plaintext, 0x80, then zeros up to a multiple of 160 bytes), so
// ciphertext lengths do not tell short messages apart.
#pragma once

#include "postern/client/proto/content.pb.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::client {

inline constexpr std::size_t kPaddingBlock = 160;
inline constexpr std::size_t kMaxContentBytes = 200 * 1024;  // under the server's 256 KiB per envelope

Bytes pad_content(ByteView plaintext);
// Errc::bad_content when the padding is malformed.
Result<Bytes> unpad_content(ByteView padded);

Bytes serialize_padded(const content::v1::Content& content);
// Unpads and parses, with the size limit. Errc::bad_content otherwise.
Result<content::v1::Content> parse_padded(ByteView padded);

}  // namespace postern::client
