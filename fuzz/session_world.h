// The fixed two-party world of the stateful fuzz target (session_cipher_fuzz) and of the seed
// generator (make_seeds.cpp). It is built from a DeterministicRng with a fixed seed, so both
// programs build byte-identical parties: the seed generator can then hand the fuzzer messages that
// really belong to the session it attacks (duplicates, not-yet-delivered messages, a second X3DH),
// which lets mutations start from deep inside the decrypt path instead of at the parser.
//
// After construction: Alice ran X3DH twice with Bob's bundles (signed prekey 7, one-time prekeys
// 30 then 31) and sent a PreKeySignalMessage on each session that Bob decrypted, so Bob's record
// has the second session current and the first archived (a failed decrypt walks both); Bob
// answered on the current session and Alice decrypted the answer. Alice also sent Bob her sender
// key for the group and one group message Bob decrypted. Bob still holds an unused one-time
// prekey 32, so a PreKeySignalMessage naming it reaches the whole responder X3DH.
// snapshot() records every stored record that a decrypt may change; restore() puts them back.
#pragma once

#include <cstdint>
#include <string>

#include "invariant.h"
#include "postern/crypto/random.h"
#include "postern/protocol/address.h"
#include "postern/protocol/in_memory_store.h"
#include "postern/protocol/keys.h"
#include "postern/protocol/session_cipher.h"
#include "postern/util/bytes.h"

namespace postern::fuzz {

inline constexpr std::uint64_t kWorldSeed = 0x506f737465726e31;  // "Postern1"
inline constexpr std::uint32_t kBobSignedPreKeyId = 7;
inline constexpr std::uint32_t kBobFirstPreKeyId = 30;
inline constexpr std::uint32_t kBobUsedPreKeyId = 31;
inline constexpr std::uint32_t kBobSparePreKeyId = 32;

struct FuzzParty {
  std::string name;
  std::uint32_t device = 1;
  protocol::InMemoryProtocolStore store;

  FuzzParty(std::string n, crypto::Rng& rng);
  protocol::ProtocolAddress address() const { return {name, device}; }
  protocol::SessionCipher cipher_to(const FuzzParty& other, crypto::Rng& rng) {
    return protocol::SessionCipher(store.session_stores(), other.address(), rng);
  }
  // The stored session record with `other` (empty when there is none).
  Bytes session_with(const FuzzParty& other);
  // The stored sender-key record for `name` (empty when there is none).
  Bytes sender_key(const protocol::SenderKeyName& name);
};

// The messages exchanged while building the world, kept for the seed generator.
struct WorldTranscript {
  Bytes archived_session_message;    // type 3 of the first (now archived) session, never delivered
  Bytes alice_first_prekey_message;  // type 3 of the current session, delivered
  Bytes bob_reply;                   // type 2, delivered
  Bytes alice_distribution;          // SenderKeyDistributionMessage, processed by Bob
  Bytes alice_first_group_message;   // SenderKeyMessage, delivered
};

class SessionWorld {
 public:
  SessionWorld();
  SessionWorld(const SessionWorld&) = delete;
  SessionWorld& operator=(const SessionWorld&) = delete;

  crypto::DeterministicRng rng{kWorldSeed};
  FuzzParty alice{"alice", rng};
  FuzzParty bob{"bob", rng};
  // Alice's sender key in the group: Alice's own sending state, and Bob's copy of it.
  protocol::SenderKeyName group{"fuzz-group", {"alice", 1}};
  WorldTranscript transcript;

  void snapshot();
  void restore();

 private:
  struct Snapshot {
    Bytes alice_session, bob_session, alice_sender_key, bob_sender_key, bob_spare_pre_key;
  } saved_;
};

}  // namespace postern::fuzz
