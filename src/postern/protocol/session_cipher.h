// Encrypting to and decrypting from one remote device with the Double Ratchet.
//
// Every call loads the session record from the SessionStore and stores it back only when the
// operation succeeded, so a message that fails (bad MAC, duplicate, too far ahead, garbage)
// leaves the stored session exactly as it was. Decryption derives everything it needs
// tentatively and commits only after the MAC verified and the body decrypted.
//
// Sealed sender (a later issue) wraps these messages; it will unwrap to (sender address, type,
// bytes) and hand them to decrypt() unchanged, so nothing here needs to know about it.
#pragma once

#include "postern/crypto/random.h"
#include "postern/protocol/address.h"
#include "postern/protocol/messages.h"
#include "postern/protocol/store.h"

namespace postern::protocol {

struct CiphertextMessage {
  CiphertextType type;
  Bytes serialized;
};

class SessionCipher {
 public:
  SessionCipher(SessionStores stores, ProtocolAddress remote, crypto::Rng& rng)
      : stores_(stores), remote_(std::move(remote)), rng_(rng) {}

  // A PreKeySignalMessage until the other side has answered, a SignalMessage afterwards.
  Result<CiphertextMessage> encrypt(ByteView plaintext);

  // Dispatches on type (2 = SignalMessage, 3 = PreKeySignalMessage).
  Result<Bytes> decrypt(CiphertextType type, ByteView serialized);
  Result<Bytes> decrypt(const SignalMessage& message);
  // Runs the responder's X3DH when the message starts a new session, then decrypts; removes the
  // used one-time prekey (unless it is the last-resort key) only after success.
  Result<Bytes> decrypt(const PreKeySignalMessage& message);

  // The remote registration id of the current session (for addressing devices), if any.
  Result<std::optional<std::uint32_t>> remote_registration_id();

 private:
  SessionStores stores_;
  ProtocolAddress remote_;
  crypto::Rng& rng_;
};

}  // namespace postern::protocol
