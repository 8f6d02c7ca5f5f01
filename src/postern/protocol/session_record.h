// A session with one remote device: the current Double Ratchet state plus up to 40 archived
// states (older sessions that may still receive delayed messages). SessionRecord serialises to a
// versioned byte format (storage.proto) so that any store - memory, SQLite, PostgreSQL - keeps
// it as an opaque blob.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "postern/crypto/curve.h"
#include "postern/protocol/ratchet.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol {

using crypto::KeyPair;
using crypto::PublicKey;

inline constexpr std::size_t kMaxReceiverChains = 5;
inline constexpr std::size_t kMaxArchivedStates = 40;

struct ReceiverChain {
  PublicKey ratchet_key;
  std::uint32_t index = 0;  // index of the next message key this chain will derive
  ChainKey key;
  std::vector<SkippedKey> skipped;  // oldest first
};

struct PendingPreKey {
  std::optional<std::uint32_t> pre_key_id;
  std::uint32_t signed_pre_key_id = 0;
  PublicKey base_key;
};

struct SessionState {
  std::uint32_t version = 3;
  PublicKey local_identity;
  PublicKey remote_identity;
  RootKey root_key;
  std::uint32_t previous_counter = 0;
  KeyPair sender_ratchet;
  std::uint32_t sender_chain_index = 0;
  ChainKey sender_chain_key;
  std::vector<ReceiverChain> receiver_chains;  // newest last
  std::optional<PendingPreKey> pending_pre_key;
  std::uint32_t remote_registration_id = 0;
  std::uint32_t local_registration_id = 0;
  PublicKey alice_base_key;

  ReceiverChain* find_receiver_chain(const PublicKey& ratchet_key);
  // Adds a chain, dropping the oldest beyond kMaxReceiverChains.
  void add_receiver_chain(ReceiverChain chain);
};

class SessionRecord {
 public:
  bool has_current() const { return current_.has_value(); }
  SessionState& current() { return *current_; }
  const SessionState& current() const { return *current_; }
  std::vector<SessionState>& previous() { return previous_; }
  const std::vector<SessionState>& previous() const { return previous_; }

  // Makes `state` current, archiving the old current state (at most kMaxArchivedStates kept).
  void promote_state(SessionState state);
  // Moves archived state `index` to current, archiving the old current one.
  void promote_archived(std::size_t index);
  // True when the current or an archived state was started with this X3DH base key.
  bool has_state_with_base_key(const PublicKey& base_key) const;

  Bytes serialize() const;
  static Result<SessionRecord> deserialize(ByteView bytes);

 private:
  std::optional<SessionState> current_;
  std::vector<SessionState> previous_;  // newest first
};

}  // namespace postern::protocol
