// Group messaging with Sender Keys. Each member creates a sender key for the group and sends its
// SenderKeyDistributionMessage to every other member inside their 1:1 sessions (it is neither
// signed nor MACed, so it must never travel in the clear); then one group message is encrypted
// once and signed, whatever the group's size. Like SessionCipher, a failed decrypt stores nothing.
#pragma once

#include "postern/crypto/random.h"
#include "postern/protocol/address.h"
#include "postern/protocol/messages.h"
#include "postern/protocol/store.h"

namespace postern::protocol {

// Our own distribution message for the group, creating our sender key on first use.
Result<SenderKeyDistributionMessage> create_sender_key_distribution(SenderKeyStore& store,
                                                                    const SenderKeyName& name,
                                                                    crypto::Rng& rng);

// Forgets our sender key for the group so the next create_sender_key_distribution makes a new one
// (after a member leaves: the removed member cannot derive the new chain).
Status rotate_sender_key(SenderKeyStore& store, const SenderKeyName& name);

// Records another member's sender key. Processing the same key twice keeps the state we already
// have (so an old distribution message cannot rewind the chain); a new key id is added as newest.
Status process_sender_key_distribution(SenderKeyStore& store, const SenderKeyName& name,
                                       const SenderKeyDistributionMessage& message);

class GroupCipher {
 public:
  GroupCipher(SenderKeyStore& store, SenderKeyName name, crypto::Rng& rng)
      : store_(store), name_(std::move(name)), rng_(rng) {}

  // A serialized SenderKeyMessage. Errors: no_session without our sender key.
  Result<Bytes> encrypt(ByteView plaintext);
  // Errors: no_session (unknown key id), invalid_message (bad signature, too far ahead, garbage),
  // duplicate_message.
  Result<Bytes> decrypt(ByteView serialized);

 private:
  SenderKeyStore& store_;
  SenderKeyName name_;
  crypto::Rng& rng_;
};

}  // namespace postern::protocol
