// PreKeySignalMessage::parse (and, through it, the embedded SignalMessage) on hostile bytes.
#include <cstddef>
#include <cstdint>

#include "invariant.h"
#include "postern/protocol/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto m = postern::protocol::PreKeySignalMessage::parse(postern::ByteView(data, size));
  if (!m) return 0;
  // A parsed message carries a complete inner SignalMessage of its own version.
  if (m->message().version() != m->version()) postern::fuzz::fail("inner SignalMessage of another version");
  if (m->serialized().size() != size) postern::fuzz::fail("parsed message does not keep the received bytes");
  std::size_t sum = m->registration_id() + m->signed_pre_key_id() + m->pre_key_id().value_or(0);
  for (std::uint8_t b : m->message().ciphertext()) sum += b;
  for (std::uint8_t b : m->message().serialized()) sum += b;
  volatile std::size_t sink = sum;
  (void)sink;
  return 0;
}
