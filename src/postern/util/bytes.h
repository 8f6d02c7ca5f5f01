// Byte containers and views used by every layer, and hex conversion for tools and tests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "postern/util/result.h"

namespace postern {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using MutableByteView = std::span<std::uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline void append(Bytes& out, ByteView more) {
  out.insert(out.end(), more.begin(), more.end());
}

// Lower-case hex of the bytes.
std::string to_hex(ByteView bytes);

enum class HexErrc { odd_length = 1, bad_digit };
std::error_code make_error_code(HexErrc e);

// Decodes hex (either case). Errors: odd length, a non-hex character.
Result<Bytes> from_hex(std::string_view hex);

}  // namespace postern

template <>
struct std::is_error_code_enum<postern::HexErrc> : std::true_type {};
