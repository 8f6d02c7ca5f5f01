// Secret material: fixed-size arrays wiped when they die, wiping of buffers, and comparison
// in constant time. Anything holding a private key, chain key or message key uses these.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "postern/util/bytes.h"

namespace postern::crypto {

// Overwrites the bytes with zeros in a way the compiler cannot remove (sodium_memzero).
void wipe(void* data, std::size_t size);
inline void wipe(MutableByteView bytes) {
  wipe(bytes.data(), bytes.size());
}

// Constant-time equality; sizes are compared first (sizes are not secret).
bool constant_time_equal(ByteView a, ByteView b);

template <std::size_t N>
class SecretArray {
 public:
  SecretArray() { bytes_.fill(0); }
  explicit SecretArray(std::span<const std::uint8_t, N> from) {
    for (std::size_t i = 0; i < N; ++i) bytes_[i] = from[i];
  }
  SecretArray(const SecretArray&) = default;
  SecretArray& operator=(const SecretArray&) = default;
  ~SecretArray() { wipe(bytes_.data(), N); }

  static constexpr std::size_t size() { return N; }
  std::uint8_t* data() { return bytes_.data(); }
  const std::uint8_t* data() const { return bytes_.data(); }
  std::span<std::uint8_t, N> span() { return std::span<std::uint8_t, N>(bytes_); }
  std::span<const std::uint8_t, N> span() const { return std::span<const std::uint8_t, N>(bytes_); }
  ByteView view() const { return {bytes_.data(), N}; }
  std::uint8_t& operator[](std::size_t i) { return bytes_[i]; }
  const std::uint8_t& operator[](std::size_t i) const { return bytes_[i]; }

  friend bool operator==(const SecretArray& a, const SecretArray& b) {
    return constant_time_equal(a.view(), b.view());
  }

 private:
  std::array<std::uint8_t, N> bytes_;
};

// A growable secret buffer, wiped on destruction.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::size_t n) : bytes_(n, 0) {}
  explicit SecretBytes(ByteView from) : bytes_(from.begin(), from.end()) {}
  // Takes over a buffer that already holds a secret (e.g. a serialised session record).
  explicit SecretBytes(Bytes&& from) noexcept : bytes_(std::move(from)) {}
  SecretBytes(const SecretBytes&) = default;
  SecretBytes& operator=(const SecretBytes& other) {
    if (this != &other) {
      wipe(bytes_);
      bytes_ = other.bytes_;
    }
    return *this;
  }
  SecretBytes(SecretBytes&&) noexcept = default;
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      wipe(bytes_);
      bytes_ = std::move(other.bytes_);
    }
    return *this;
  }
  ~SecretBytes() { wipe(bytes_); }

  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  std::uint8_t* data() { return bytes_.data(); }
  const std::uint8_t* data() const { return bytes_.data(); }
  ByteView view() const { return bytes_; }
  MutableByteView mutable_view() { return bytes_; }
  // Growing never leaves a copy of the secret in freed memory: the old buffer is wiped first.
  void append(ByteView more) {
    const std::size_t need = bytes_.size() + more.size();
    if (need > bytes_.capacity()) {
      Bytes bigger;
      bigger.reserve(std::max(need, 2 * bytes_.capacity()));
      bigger.insert(bigger.end(), bytes_.begin(), bytes_.end());
      bigger.insert(bigger.end(), more.begin(), more.end());
      wipe(bytes_);
      bytes_.swap(bigger);
      return;
    }
    bytes_.insert(bytes_.end(), more.begin(), more.end());
  }
  void reserve(std::size_t n) {
    if (n <= bytes_.capacity()) return;
    Bytes bigger;
    bigger.reserve(n);
    bigger.assign(bytes_.begin(), bytes_.end());
    wipe(bytes_);
    bytes_.swap(bigger);
  }

 private:
  Bytes bytes_;
};

}  // namespace postern::crypto
