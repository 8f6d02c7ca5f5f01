// The other stored records on hostile bytes: SenderKeyRecord, PreKeyRecord and
// SignedPreKeyRecord::deserialize. Each that deserializes must round-trip (serialize, deserialize
// again, same bytes the second time).
#include <cstddef>
#include <cstdint>
#include <string>

#include "invariant.h"
#include "postern/protocol/keys.h"
#include "postern/protocol/sender_key_record.h"

namespace {

using postern::Bytes;
using postern::ByteView;

template <class Record>
void round_trip(ByteView in, const char* what) {
  auto record = Record::deserialize(in);
  if (!record) return;
  const Bytes once = record->serialize();
  auto again = Record::deserialize(once);
  if (!again || again->serialize() != once) {
    postern::fuzz::fail(
        (std::string(what) + " does not survive serialize -> deserialize -> serialize").c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView in(data, size);
  round_trip<postern::protocol::SenderKeyRecord>(in, "SenderKeyRecord");
  round_trip<postern::protocol::PreKeyRecord>(in, "PreKeyRecord");
  round_trip<postern::protocol::SignedPreKeyRecord>(in, "SignedPreKeyRecord");
  return 0;
}
