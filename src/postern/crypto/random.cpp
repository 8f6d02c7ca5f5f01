#include "postern/crypto/random.h"

#include <sodium.h>

#include <cstdlib>

#include "postern/crypto/secret.h"

namespace postern::crypto {

void ensure_sodium() {
  static const bool ready = [] {
    // sodium_init returns -1 only if it could not initialise; nothing can work without it.
    if (sodium_init() < 0) std::abort();
    return true;
  }();
  (void)ready;
}

void wipe(void* data, std::size_t size) {
  if (size != 0) sodium_memzero(data, size);
}

bool constant_time_equal(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::uint32_t Rng::next_u32() {
  std::uint8_t b[4];
  fill(b);
  return static_cast<std::uint32_t>(b[0]) | (static_cast<std::uint32_t>(b[1]) << 8) |
         (static_cast<std::uint32_t>(b[2]) << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
}

std::uint32_t Rng::uniform(std::uint32_t upper) {
  if (upper < 2) return 0;
  const std::uint32_t min = (0u - upper) % upper;  // 2^32 mod upper
  for (;;) {
    std::uint32_t r = next_u32();
    if (r >= min) return r % upper;
  }
}

SystemRng::SystemRng() {
  ensure_sodium();
}

void SystemRng::fill(MutableByteView out) {
  if (!out.empty()) randombytes_buf(out.data(), out.size());
}

DeterministicRng::DeterministicRng(std::uint64_t seed) {
  ensure_sodium();
  std::uint8_t seed_bytes[8];
  for (int i = 0; i < 8; ++i) seed_bytes[i] = static_cast<std::uint8_t>(seed >> (8 * i));
  crypto_generichash(key_.data(), key_.size(), seed_bytes, sizeof seed_bytes, nullptr, 0);
}

DeterministicRng::~DeterministicRng() {
  wipe(key_.data(), key_.size());
}

void DeterministicRng::fill(MutableByteView out) {
  if (out.empty()) return;
  std::uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
  for (std::size_t i = 0; i < sizeof nonce; ++i) nonce[i] = static_cast<std::uint8_t>(counter_ >> (8 * i));
  ++counter_;
  crypto_stream_chacha20(out.data(), out.size(), nonce, key_.data());
}

}  // namespace postern::crypto
