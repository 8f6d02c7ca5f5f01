// Helpers for the crypto unit tests: hex literals and Wycheproof files.
//
// Wycheproof vectors are read from POSTERN_VECTORS_DIR (../shared/reference/vectors, not copied
// into the project). A clone without ../shared skips those tests with a message instead of
// failing; when the folder exists, a missing or unreadable file is a failure.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "postern/util/bytes.h"

namespace postern::test {

// Decodes a hex literal typed into a test; a typo fails the test that uses it.
inline Bytes unhex(std::string_view hex) {
  auto r = from_hex(hex);
  if (!r) {
    ADD_FAILURE() << "bad hex literal in test: " << hex << " (" << r.error().message() << ")";
    return {};
  }
  return std::move(r).value();
}

template <std::size_t N>
std::array<std::uint8_t, N> unhex_array(std::string_view hex) {
  std::array<std::uint8_t, N> out{};
  const Bytes b = unhex(hex);
  if (b.size() != N) {
    ADD_FAILURE() << "hex literal has " << b.size() << " bytes, expected " << N << ": " << hex;
    return out;
  }
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

inline bool all_zero(ByteView b) {
  return std::all_of(b.begin(), b.end(), [](std::uint8_t x) { return x == 0; });
}

inline std::filesystem::path vectors_dir() {
  return std::filesystem::path(POSTERN_VECTORS_DIR);
}

inline bool vectors_available() {
  std::error_code ec;
  return std::filesystem::is_directory(vectors_dir(), ec);
}

// Parses a vectors file; on failure records a test failure and returns a null json.
inline nlohmann::json load_vectors(const std::string& file) {
  const std::filesystem::path path = vectors_dir() / file;
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path.string();
    return nullptr;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("testGroups")) {
    ADD_FAILURE() << "not a Wycheproof vectors file: " << path.string();
    return nullptr;
  }
  return j;
}

}  // namespace postern::test

// Declares `var` as the parsed file, skips the test when the vectors folder is absent, and
// stops the test when the file cannot be read.
#define POSTERN_LOAD_VECTORS_OR_SKIP(var, file)                                            \
  if (!::postern::test::vectors_available()) {                                             \
    GTEST_SKIP() << "test vectors are absent: " << ::postern::test::vectors_dir().string() \
                 << " does not exist (a checkout without ../shared/reference/vectors)";    \
  }                                                                                        \
  const nlohmann::json var = ::postern::test::load_vectors(file);                          \
  ASSERT_FALSE(var.is_null()) << "could not load " << (file)
