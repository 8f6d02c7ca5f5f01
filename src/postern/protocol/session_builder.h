// Starting a session as the initiator ("Alice"): verify the responder's prekey bundle, run X3DH,
// and store a session whose first messages are PreKeySignalMessages. The responder's side of
// X3DH runs inside SessionCipher when the first PreKeySignalMessage arrives.
#pragma once

#include "postern/crypto/random.h"
#include "postern/protocol/address.h"
#include "postern/protocol/keys.h"
#include "postern/protocol/store.h"

namespace postern::protocol {

// Errors: untrusted_identity (the bundle's identity differs from the one we trust),
// invalid_key (bad signed-prekey signature, or a key that gives a weak agreement), store errors.
Status process_pre_key_bundle(SessionStores stores, const ProtocolAddress& remote, const PreKeyBundle& bundle,
                              crypto::Rng& rng);

}  // namespace postern::protocol
