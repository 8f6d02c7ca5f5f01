// Storage interfaces of the protocol layer. The protocol code loads and saves through these on
// every operation, as libsignal does, so a client can put them on SQLite (or anything else)
// without the protocol knowing. Records cross the interface as versioned byte blobs produced by
// SessionRecord / SenderKeyRecord / PreKeyRecord / SignedPreKeyRecord::serialize(), i.e. exactly
// the value column of a database table keyed by address (or id). Every call can fail (a database
// can), and failures come back as errors, never exceptions.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "postern/crypto/curve.h"
#include "postern/protocol/address.h"
#include "postern/protocol/keys.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol {

enum class Direction { sending, receiving };

class IdentityKeyStore {
 public:
  virtual ~IdentityKeyStore() = default;
  virtual Result<IdentityKeyPair> identity_key_pair() = 0;
  virtual Result<std::uint32_t> local_registration_id() = 0;
  // Saves the identity of a remote address; returns true when it replaced a different key.
  virtual Result<bool> save_identity(const ProtocolAddress& address, const crypto::PublicKey& key) = 0;
  // Whether we may talk to `address` holding `key` (trust on first use, or an explicit policy).
  virtual Result<bool> is_trusted_identity(const ProtocolAddress& address, const crypto::PublicKey& key,
                                           Direction direction) = 0;
  virtual Result<std::optional<crypto::PublicKey>> identity(const ProtocolAddress& address) = 0;
};

class PreKeyStore {
 public:
  virtual ~PreKeyStore() = default;
  virtual Result<std::optional<Bytes>> load_pre_key(std::uint32_t id) = 0;
  virtual Status store_pre_key(std::uint32_t id, ByteView record) = 0;
  virtual Status remove_pre_key(std::uint32_t id) = 0;
};

class SignedPreKeyStore {
 public:
  virtual ~SignedPreKeyStore() = default;
  virtual Result<std::optional<Bytes>> load_signed_pre_key(std::uint32_t id) = 0;
  virtual Status store_signed_pre_key(std::uint32_t id, ByteView record) = 0;
  virtual Status remove_signed_pre_key(std::uint32_t id) = 0;
};

class SessionStore {
 public:
  virtual ~SessionStore() = default;
  virtual Result<std::optional<Bytes>> load_session(const ProtocolAddress& address) = 0;
  virtual Status store_session(const ProtocolAddress& address, ByteView record) = 0;
  virtual Status delete_session(const ProtocolAddress& address) = 0;
  // Device ids with a session for this name (for fan-out to all of a user's devices).
  virtual Result<std::vector<std::uint32_t>> device_ids(const std::string& name) = 0;
};

class SenderKeyStore {
 public:
  virtual ~SenderKeyStore() = default;
  virtual Result<std::optional<Bytes>> load_sender_key(const SenderKeyName& name) = 0;
  virtual Status store_sender_key(const SenderKeyName& name, ByteView record) = 0;
};

// The stores a 1:1 session needs, passed together.
struct SessionStores {
  IdentityKeyStore& identity;
  PreKeyStore& pre_keys;
  SignedPreKeyStore& signed_pre_keys;
  SessionStore& sessions;
};

}  // namespace postern::protocol
