// What interop_line_fuzz does before running an input, shared with the seed generator so that
// seed scripts (bundle, then decrypt a message made for that bundle) replay identically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace postern::fuzz {

inline constexpr std::uint64_t kInteropPeerSeed = 0x696e7465726f7031;  // "interop1"
inline constexpr std::string_view kInteropInitLine = "init fuzz 1";
inline constexpr std::size_t kInteropMaxLines = 32;

}  // namespace postern::fuzz
