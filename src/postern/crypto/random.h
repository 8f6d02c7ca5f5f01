// Injected randomness. Everything that draws random bytes takes an Rng&, so that tests and
// known-answer checks are deterministic (DeterministicRng) while programs use SystemRng.
#pragma once

#include <array>
#include <cstdint>

#include "postern/util/bytes.h"

namespace postern::crypto {

class Rng {
 public:
  virtual ~Rng() = default;
  virtual void fill(MutableByteView out) = 0;

  template <std::size_t N>
  std::array<std::uint8_t, N> bytes() {
    std::array<std::uint8_t, N> a;
    fill(a);
    return a;
  }
  std::uint32_t next_u32();
  // Uniform in [0, upper) without modulo bias; upper must be > 0.
  std::uint32_t uniform(std::uint32_t upper);
};

// The operating system's CSPRNG through libsodium (getrandom).
class SystemRng final : public Rng {
 public:
  SystemRng();
  void fill(MutableByteView out) override;
};

// A reproducible stream (ChaCha20 keyed by a seed). For tests and benchmarks only.
class DeterministicRng final : public Rng {
 public:
  explicit DeterministicRng(std::uint64_t seed);
  ~DeterministicRng() override;
  void fill(MutableByteView out) override;

 private:
  std::array<std::uint8_t, 32> key_{};
  std::uint64_t counter_ = 0;
};

// Initialises libsodium once (thread-safe); every entry point that needs it calls this.
void ensure_sodium();

}  // namespace postern::crypto
