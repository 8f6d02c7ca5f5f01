// SessionRecord::deserialize on hostile bytes (a corrupted or tampered database blob). A record
// that deserializes must survive a round trip: serialize() then deserialize() succeeds, and the
// second serialization equals the first (serialize is a function of the in-memory record, so a
// difference means deserialize lost or invented something).
#include <cstddef>
#include <cstdint>

#include "invariant.h"
#include "postern/protocol/session_record.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using postern::fuzz::fail;
  using postern::protocol::SessionRecord;
  auto record = SessionRecord::deserialize(postern::ByteView(data, size));
  if (!record) return 0;
  const postern::Bytes once = record->serialize();
  auto again = SessionRecord::deserialize(once);
  if (!again) fail("re-serialized record does not deserialize");
  if (again->has_current() != record->has_current()) fail("current state appeared or vanished");
  if (again->previous().size() != record->previous().size()) fail("archived state count changed");
  if (again->serialize() != once) fail("second serialization differs from the first");
  return 0;
}
