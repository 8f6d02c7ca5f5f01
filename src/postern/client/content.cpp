#include "postern/client/content.h"

#include "postern/client/errors.h"

namespace postern::client {

Bytes pad_content(ByteView plaintext) {
  Bytes out(plaintext.begin(), plaintext.end());
  out.push_back(0x80);
  const std::size_t padded = (out.size() + kPaddingBlock - 1) / kPaddingBlock * kPaddingBlock;
  out.resize(padded, 0);
  return out;
}

Result<Bytes> unpad_content(ByteView padded) {
  std::size_t end = padded.size();
  while (end > 0 && padded[end - 1] == 0) --end;
  if (end == 0 || padded[end - 1] != 0x80) return make_error_code(Errc::bad_content);
  return Bytes(padded.begin(), padded.begin() + static_cast<std::ptrdiff_t>(end - 1));
}

Bytes serialize_padded(const content::v1::Content& content) {
  std::string bytes = content.SerializeAsString();
  Bytes out = pad_content(ByteView(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  std::fill(bytes.begin(), bytes.end(), '\0');
  return out;
}

Result<content::v1::Content> parse_padded(ByteView padded) {
  if (padded.size() > kMaxContentBytes + kPaddingBlock) return make_error_code(Errc::bad_content);
  POSTERN_TRY(auto plain, unpad_content(padded));
  content::v1::Content content;
  if (!content.ParseFromArray(plain.data(), static_cast<int>(plain.size()))) return make_error_code(Errc::bad_content);
  return content;
}

}  // namespace postern::client
