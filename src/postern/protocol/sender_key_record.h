// Sender Keys for groups (libsignal-protocol-c / WhatsApp format). One SenderKeyRecord per
// (group, sender device) holds up to 5 states, newest first: the sender's chain at some
// iteration, its signing key, and keys of skipped iterations (up to 2000).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "postern/crypto/curve.h"
#include "postern/protocol/ratchet.h"
#include "postern/protocol/session_record.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol {

inline constexpr std::size_t kMaxSenderKeyStates = 5;

struct SenderKeyState {
  std::uint32_t key_id = 0;
  std::uint32_t iteration = 0;  // iteration of the next message key
  ChainKey chain_key;
  PublicKey signing_public;
  std::optional<crypto::PrivateKey> signing_private;  // only in our own sending state
  std::array<std::uint8_t, 32> signing_edwards_y{};   // derived from signing_public, cached
  bool signing_negated = false;                       // derived from signing_private, cached
  std::vector<SkippedKey> skipped;                    // oldest first
};

class SenderKeyRecord {
 public:
  bool empty() const { return states_.empty(); }
  SenderKeyState& newest() { return states_.front(); }
  SenderKeyState* find(std::uint32_t key_id);
  // Adds a state as the newest, dropping the oldest beyond kMaxSenderKeyStates.
  void add_state(SenderKeyState state);
  const std::vector<SenderKeyState>& states() const { return states_; }

  Bytes serialize() const;
  static Result<SenderKeyRecord> deserialize(ByteView bytes);

 private:
  std::vector<SenderKeyState> states_;
};

}  // namespace postern::protocol
