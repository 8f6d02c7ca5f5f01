// The client's local store: one SQLite file per profile (PROFILE/profile.db) holding the protocol
// stores (identity, prekeys, signed prekeys, sessions, sender keys) and the messenger's data
// (settings, contacts, conversations, history, groups, attachments, processed envelopes).
//
// Encryption at rest (docs/client-storage.md): every secret or personal field is sealed with
// XChaCha20-Poly1305 (libsodium) under the profile's 32-byte data key, with the table, column and
// row key as associated data, so a sealed value cannot be moved to another row or column unnoticed.
// The data key comes from PROFILE/data.key (32 random bytes, mode 0600, created on first open) or,
// when a passphrase is given, from Argon2id(passphrase, PROFILE/data.salt). A sealed check value in
// the settings table tells a wrong key (Errc::store_locked) from a damaged file.
//
// One process at a time: open() takes an exclusive flock on PROFILE/profile.lock and refuses a
// profile another process holds (Errc::store_locked, message names the holder's pid when known).
//
// Not thread-safe: the owner (the Messenger) serialises calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/protocol/keys.h"
#include "postern/protocol/store.h"
#include "postern/store/sqlite.h"
#include "postern/util/clock.h"
#include "postern/util/result.h"

namespace postern::client {

// What happens when a contact's identity key changes (Signal's choice is `block_until_accepted`
// for verified contacts and a warning otherwise; we block for everyone by default).
enum class IdentityChangePolicy {
  block_until_accepted,  // nothing is sent to the new key before `verify --accept`
  warn_and_trust,        // the new key is trusted at once; the change is still announced
};

enum class TrustState {
  trusted = 0,          // first seen (trust on first use) or accepted after a change
  verified = 1,         // the user compared safety numbers and marked it verified
  changed_blocked = 2,  // the key changed and the user has not accepted it yet
};

struct IdentityInfo {
  crypto::PublicKey key;
  TrustState state = TrustState::trusted;
  std::int64_t first_seen_ms = 0;  // when this key was first stored
  std::optional<crypto::PublicKey> previous_key;  // the key it replaced, if any
};

struct OpenOptions {
  // Argon2id over this passphrase (libsodium MODERATE limits) instead of the key file.
  std::optional<std::string> passphrase;
};

class LocalStore final : public protocol::IdentityKeyStore,
                         public protocol::PreKeyStore,
                         public protocol::SignedPreKeyStore,
                         public protocol::SessionStore,
                         public protocol::SenderKeyStore {
 public:
  // Opens PROFILE/profile.db (creating the directory, mode 0700, and the file when absent) and
  // runs the schema migrations (client/schema.h).
  static Result<std::unique_ptr<LocalStore>> open(const std::filesystem::path& profile_dir,
                                                  const OpenOptions& options, crypto::Rng& rng,
                                                  const Clock& clock);
  ~LocalStore() override;

  // ---- transactions: several calls committed together (BEGIN IMMEDIATE .. COMMIT) ----
  class Transaction {
   public:
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();  // rolls back unless committed
    Status commit();

   private:
    friend class LocalStore;
    explicit Transaction(LocalStore* store) : store_(store) {}
    LocalStore* store_;
  };
  Result<Transaction> begin();

  // ---- sealing (for the messenger's own tables) ----
  // `context` names the place: "table.column:rowkey". open() fails with Errc::corrupt_record
  // when the value was altered or sealed under another context.
  Result<Bytes> seal(ByteView plaintext, std::string_view context);
  Result<crypto::SecretBytes> unseal(ByteView sealed, std::string_view context);
  // A keyed hash (BLAKE2b under a subkey of the data key), hex, for looking up sealed values
  // (e-mail addresses) without storing them in clear.
  std::string blind_index(std::string_view value);

  // The database, for the messenger's tables (client/schema.h lists them).
  store::Database& db();

  // ---- settings: small sealed values by name ----
  Result<std::optional<crypto::SecretBytes>> setting(std::string_view name);
  Status set_setting(std::string_view name, ByteView value);
  Status delete_setting(std::string_view name);
  // Convenience wrappers over the same table.
  Result<std::optional<std::string>> setting_text(std::string_view name);
  Status set_setting_text(std::string_view name, std::string_view value);
  Result<std::optional<std::int64_t>> setting_int(std::string_view name);
  Status set_setting_int(std::string_view name, std::int64_t value);

  // ---- this device's identity ----
  Status set_local_identity(const protocol::IdentityKeyPair& pair, std::uint32_t registration_id);
  Result<bool> has_local_identity();

  // ---- trust in remote identities ----
  void set_identity_change_policy(IdentityChangePolicy policy) { policy_ = policy; }
  IdentityChangePolicy identity_change_policy() const { return policy_; }
  Result<std::optional<IdentityInfo>> identity_info(const protocol::ProtocolAddress& address);
  // Every stored identity of an account (all its devices), by device id.
  Result<std::vector<std::pair<std::uint32_t, IdentityInfo>>> identities_of(const std::string& name);
  // The user accepts a changed key (changed_blocked -> trusted) or marks it verified / unverified.
  Status accept_identity(const protocol::ProtocolAddress& address);
  Status set_verified(const protocol::ProtocolAddress& address, bool verified);
  // Stores a key seen in a fetched bundle that differs from the stored one: the stored key is
  // replaced and, under block_until_accepted, the state becomes changed_blocked.
  // Returns true when the key changed.
  Result<bool> record_identity_change(const protocol::ProtocolAddress& address, const crypto::PublicKey& key);

  // protocol::IdentityKeyStore. save_identity: a new address is stored as trusted (TOFU); a
  // different key replaces the old one (previous_key kept) and returns true, with state
  // changed_blocked under block_until_accepted (trusted under warn_and_trust).
  // is_trusted_identity: receiving -> always true (as libsignal's clients: a message from a new
  // key is decrypted and the change announced); sending -> true for an unknown address or the
  // stored key in state trusted/verified, false otherwise.
  Result<protocol::IdentityKeyPair> identity_key_pair() override;
  Result<std::uint32_t> local_registration_id() override;
  Result<bool> save_identity(const protocol::ProtocolAddress& address, const crypto::PublicKey& key) override;
  Result<bool> is_trusted_identity(const protocol::ProtocolAddress& address, const crypto::PublicKey& key,
                                   protocol::Direction direction) override;
  Result<std::optional<crypto::PublicKey>> identity(const protocol::ProtocolAddress& address) override;

  // protocol::PreKeyStore
  Result<std::optional<Bytes>> load_pre_key(std::uint32_t id) override;
  Status store_pre_key(std::uint32_t id, ByteView record) override;
  Status remove_pre_key(std::uint32_t id) override;
  Result<std::size_t> pre_key_count();

  // protocol::SignedPreKeyStore (+ what rotation needs)
  Result<std::optional<Bytes>> load_signed_pre_key(std::uint32_t id) override;
  Status store_signed_pre_key(std::uint32_t id, ByteView record) override;
  Status remove_signed_pre_key(std::uint32_t id) override;
  struct SignedPreKeyInfo {
    std::uint32_t id = 0;
    std::int64_t created_ms = 0;
  };
  Result<std::vector<SignedPreKeyInfo>> signed_pre_keys();  // oldest first

  // protocol::SessionStore
  Result<std::optional<Bytes>> load_session(const protocol::ProtocolAddress& address) override;
  Status store_session(const protocol::ProtocolAddress& address, ByteView record) override;
  Status delete_session(const protocol::ProtocolAddress& address) override;
  Result<std::vector<std::uint32_t>> device_ids(const std::string& name) override;

  // protocol::SenderKeyStore (+ deletion when a group is left or rotated)
  Result<std::optional<Bytes>> load_sender_key(const protocol::SenderKeyName& name) override;
  Status store_sender_key(const protocol::SenderKeyName& name, ByteView record) override;
  Status delete_sender_keys(const std::string& group_id);

 private:
  struct Impl;
  explicit LocalStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  IdentityChangePolicy policy_ = IdentityChangePolicy::block_until_accepted;
};

}  // namespace postern::client
