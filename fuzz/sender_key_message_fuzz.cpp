// SenderKeyMessage::parse + verify_signature with a fixed Edwards y, and
// SenderKeyDistributionMessage::parse, on the same hostile bytes. Nobody holds the fixed signing
// key's private half (the seeds are signed with other keys) and a mutator cannot forge XEdDSA, so
// `true` from verify_signature would mean the verifier accepts garbage.
#include <array>
#include <cstddef>
#include <cstdint>

#include "invariant.h"
#include "postern/crypto/xeddsa.h"
#include "postern/protocol/messages.h"

namespace {

using postern::ByteView;
using namespace postern::protocol;

const std::array<std::uint8_t, 32>& fixed_edwards_y() {
  static const std::array<std::uint8_t, 32> y = [] {
    std::array<std::uint8_t, 32> u;
    u.fill(0x09);
    auto r = postern::crypto::montgomery_to_edwards_y(PublicKey(u));
    if (!r) postern::fuzz::fail("no Edwards form for the fixed key");
    return *r;
  }();
  return y;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView in(data, size);
  if (auto m = SenderKeyMessage::parse(in)) {
    std::size_t sum = m->key_id() + m->iteration();
    for (std::uint8_t b : m->ciphertext()) sum += b;
    volatile std::size_t sink = sum;
    (void)sink;
    if (m->verify_signature(fixed_edwards_y()))
      postern::fuzz::fail("verify_signature accepted an unused key");
  }
  if (auto d = SenderKeyDistributionMessage::parse(in)) {
    if (d->chain_key().size() != 32)
      postern::fuzz::fail("distribution message with a chain key not 32 bytes");
  }
  return 0;
}
