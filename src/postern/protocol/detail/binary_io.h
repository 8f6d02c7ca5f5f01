// A bounds-checked little-endian byte writer and reader for Postern's compact record formats.
// Every read checks the remaining length; a reader that ran out or met a bad value stays failed,
// so a parser can read a whole structure and test ok() once. Private to the protocol layer.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "postern/crypto/curve.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"

namespace postern::protocol::detail {

class Writer {
 public:
  explicit Writer(std::size_t reserve = 512) { out_.reserve(reserve); }
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    for (int i = 0; i < 2; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void raw(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void key(const crypto::PublicKey& k) { raw(k.raw()); }
  template <std::size_t N>
  void secret(const crypto::SecretArray<N>& s) {
    raw(s.view());
  }
  Bytes take() { return std::move(out_); }

 private:
  Bytes out_;
};

class Reader {
 public:
  explicit Reader(ByteView in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  void fail() { ok_ = false; }

  std::uint8_t u8() {
    std::uint8_t v = 0;
    if (need(1)) v = in_[pos_++];
    return v;
  }
  std::uint16_t u16() {
    std::uint16_t v = 0;
    if (need(2)) {
      v = static_cast<std::uint16_t>(in_[pos_] | (in_[pos_ + 1] << 8));
      pos_ += 2;
    }
    return v;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    if (need(4)) {
      for (int i = 3; i >= 0; --i) v = (v << 8) | in_[pos_ + static_cast<std::size_t>(i)];
      pos_ += 4;
    }
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    if (need(8)) {
      for (int i = 7; i >= 0; --i) v = (v << 8) | in_[pos_ + static_cast<std::size_t>(i)];
      pos_ += 8;
    }
    return v;
  }
  crypto::PublicKey key() {
    std::array<std::uint8_t, 32> a{};
    if (need(32)) {
      std::copy_n(in_.begin() + static_cast<std::ptrdiff_t>(pos_), 32, a.begin());
      pos_ += 32;
    }
    return crypto::PublicKey(a);
  }
  template <std::size_t N>
  void secret(crypto::SecretArray<N>& out) {
    if (need(N)) {
      std::copy_n(in_.begin() + static_cast<std::ptrdiff_t>(pos_), N, out.data());
      pos_ += N;
    }
  }
  template <std::size_t N>
  void array(std::array<std::uint8_t, N>& out) {
    if (need(N)) {
      std::copy_n(in_.begin() + static_cast<std::ptrdiff_t>(pos_), N, out.data());
      pos_ += N;
    }
  }
  crypto::PrivateKey private_key() {
    crypto::SecretArray<32> s;
    secret(s);
    auto k = crypto::PrivateKey::deserialize(s.view());
    return k.ok() ? std::move(k).value() : crypto::PrivateKey{};
  }

 private:
  bool need(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  ByteView in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace postern::protocol::detail
