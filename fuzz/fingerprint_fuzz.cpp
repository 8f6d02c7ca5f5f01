// scannable_fingerprints_match on hostile bytes: `theirs` is what a camera read off another
// screen. The input is split in two at a position given by its first two bytes (big-endian), so
// both arguments are fuzzed and a matching pair (the seeds) can be mutated on either side.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "postern/protocol/fingerprint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t wanted = (static_cast<std::size_t>(data[0]) << 8) | data[1];
  const postern::ByteView rest(data + 2, size - 2);
  const std::size_t split = std::min(wanted, rest.size());
  auto r = postern::protocol::scannable_fingerprints_match(rest.first(split), rest.subspan(split));
  (void)r;
  return 0;
}
