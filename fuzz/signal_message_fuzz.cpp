// SignalMessage::parse on hostile bytes. A message that parses is MAC-checked with a fixed key
// and fixed identities; that must simply answer no (an 8-byte HMAC is out of a mutator's reach,
// and the seeds were MACed under other keys), so `true` would mean verify_mac accepts garbage.
#include <array>
#include <cstddef>
#include <cstdint>

#include "invariant.h"
#include "postern/protocol/messages.h"

namespace {

using postern::ByteView;
using postern::protocol::PublicKey;
using postern::protocol::SignalMessage;

std::array<std::uint8_t, 32> filled(std::uint8_t v) {
  std::array<std::uint8_t, 32> a;
  a.fill(v);
  return a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const PublicKey kSender(filled(0x11));
  static const PublicKey kReceiver(filled(0x22));
  static const std::array<std::uint8_t, 32> kMacKey = filled(0x42);

  auto m = SignalMessage::parse(ByteView(data, size));
  if (!m) return 0;
  // Read what a caller reads, so that ASan checks every span the parser handed out.
  std::size_t sum = m->counter() + m->previous_counter() + m->version();
  for (std::uint8_t b : m->ciphertext()) sum += b;
  for (std::uint8_t b : m->serialized()) sum += b;
  volatile std::size_t sink = sum;
  (void)sink;
  if (m->serialized().size() != size)
    postern::fuzz::fail("parsed SignalMessage does not keep the received bytes");
  if (m->verify_mac(kSender, kReceiver, kMacKey))
    postern::fuzz::fail("verify_mac accepted a MAC under an unused key");
  return 0;
}
