// In-memory implementation of every protocol store. Records are kept serialised, as a database
// would keep them, so code using it pays the same (de)serialisation a real client pays.
// Identities are trusted on first use; a changed key is untrusted until saved again.
#pragma once

#include <map>

#include "postern/protocol/store.h"

namespace postern::protocol {

class InMemoryProtocolStore final : public IdentityKeyStore,
                                    public PreKeyStore,
                                    public SignedPreKeyStore,
                                    public SessionStore,
                                    public SenderKeyStore {
 public:
  InMemoryProtocolStore(IdentityKeyPair identity, std::uint32_t registration_id);

  SessionStores session_stores() { return SessionStores{*this, *this, *this, *this}; }

  Result<IdentityKeyPair> identity_key_pair() override;
  Result<std::uint32_t> local_registration_id() override;
  Result<bool> save_identity(const ProtocolAddress& address, const crypto::PublicKey& key) override;
  Result<bool> is_trusted_identity(const ProtocolAddress& address, const crypto::PublicKey& key,
                                   Direction direction) override;
  Result<std::optional<crypto::PublicKey>> identity(const ProtocolAddress& address) override;

  Result<std::optional<Bytes>> load_pre_key(std::uint32_t id) override;
  Status store_pre_key(std::uint32_t id, ByteView record) override;
  Status remove_pre_key(std::uint32_t id) override;

  Result<std::optional<Bytes>> load_signed_pre_key(std::uint32_t id) override;
  Status store_signed_pre_key(std::uint32_t id, ByteView record) override;
  Status remove_signed_pre_key(std::uint32_t id) override;

  Result<std::optional<Bytes>> load_session(const ProtocolAddress& address) override;
  Status store_session(const ProtocolAddress& address, ByteView record) override;
  Status delete_session(const ProtocolAddress& address) override;
  Result<std::vector<std::uint32_t>> device_ids(const std::string& name) override;

  Result<std::optional<Bytes>> load_sender_key(const SenderKeyName& name) override;
  Status store_sender_key(const SenderKeyName& name, ByteView record) override;

  std::size_t pre_key_count() const { return pre_keys_.size(); }

 private:
  IdentityKeyPair identity_;
  std::uint32_t registration_id_;
  std::map<ProtocolAddress, crypto::PublicKey> identities_;
  std::map<std::uint32_t, Bytes> pre_keys_;
  std::map<std::uint32_t, Bytes> signed_pre_keys_;
  std::map<ProtocolAddress, Bytes> sessions_;
  std::map<SenderKeyName, Bytes> sender_keys_;
};

}  // namespace postern::protocol
