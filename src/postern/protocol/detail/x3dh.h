// X3DH (Signal v3, no post-quantum part) producing the first SessionState of each side.
// Private to the protocol layer: callers use process_pre_key_bundle and SessionCipher.
#pragma once

#include <optional>

#include "postern/crypto/random.h"
#include "postern/protocol/keys.h"
#include "postern/protocol/session_record.h"

namespace postern::protocol::detail {

// Alice: she holds her identity and a fresh base (ephemeral) key; Bob's keys come from his bundle.
Result<SessionState> initialize_alice(const IdentityKeyPair& ours, const KeyPair& base_key,
                                      const PublicKey& their_identity, const PublicKey& their_signed_pre_key,
                                      const std::optional<PublicKey>& their_one_time_pre_key,
                                      crypto::Rng& rng);

// Bob: his signed prekey becomes his first ratchet key pair.
Result<SessionState> initialize_bob(const IdentityKeyPair& ours, const KeyPair& signed_pre_key,
                                    const std::optional<KeyPair>& one_time_pre_key,
                                    const PublicKey& their_identity, const PublicKey& their_base_key);

}  // namespace postern::protocol::detail
