// Who a session or sender key belongs to: a user's stable name (at the application level, the
// account id) and one of their devices.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace postern::protocol {

struct ProtocolAddress {
  std::string name;
  std::uint32_t device_id = 0;

  std::string to_string() const { return name + "." + std::to_string(device_id); }
  friend auto operator<=>(const ProtocolAddress&, const ProtocolAddress&) = default;
};

// A sender's key for one group.
struct SenderKeyName {
  std::string group_id;
  ProtocolAddress sender;

  friend auto operator<=>(const SenderKeyName&, const SenderKeyName&) = default;
};

}  // namespace postern::protocol
