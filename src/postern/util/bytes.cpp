#include "postern/util/bytes.h"

namespace postern {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class HexCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.hex"; }
  std::string message(int c) const override {
    switch (static_cast<HexErrc>(c)) {
      case HexErrc::odd_length:
        return "hex string has an odd length";
      case HexErrc::bad_digit:
        return "hex string has a character that is not a hex digit";
    }
    return "unknown hex error";
  }
};

}  // namespace

std::error_code make_error_code(HexErrc e) {
  static const HexCategory category;
  return {static_cast<int>(e), category};
}

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
  return out;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return HexErrc::odd_length;
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return HexErrc::bad_digit;
    out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return out;
}

}  // namespace postern
