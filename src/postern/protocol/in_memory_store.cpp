#include "postern/protocol/in_memory_store.h"

#include "postern/crypto/secret.h"

namespace postern::protocol {
namespace {

template <class Map, class Key>
std::optional<Bytes> find(const Map& m, const Key& k) {
  auto it = m.find(k);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

template <class Map, class Key>
void put(Map& m, const Key& k, ByteView record) {
  Bytes& slot = m[k];
  crypto::wipe(slot);
  slot.assign(record.begin(), record.end());
}

template <class Map, class Key>
void erase(Map& m, const Key& k) {
  auto it = m.find(k);
  if (it == m.end()) return;
  crypto::wipe(it->second);
  m.erase(it);
}

}  // namespace

InMemoryProtocolStore::InMemoryProtocolStore(IdentityKeyPair identity, std::uint32_t registration_id)
    : identity_(std::move(identity)), registration_id_(registration_id) {}

Result<IdentityKeyPair> InMemoryProtocolStore::identity_key_pair() {
  return identity_;
}
Result<std::uint32_t> InMemoryProtocolStore::local_registration_id() {
  return registration_id_;
}

Result<bool> InMemoryProtocolStore::save_identity(const ProtocolAddress& address,
                                                  const crypto::PublicKey& key) {
  auto [it, inserted] = identities_.try_emplace(address, key);
  if (inserted) return false;
  const bool changed = !(it->second == key);
  it->second = key;
  return changed;
}

Result<bool> InMemoryProtocolStore::is_trusted_identity(const ProtocolAddress& address,
                                                        const crypto::PublicKey& key, Direction) {
  auto it = identities_.find(address);
  return it == identities_.end() || it->second == key;
}

Result<std::optional<crypto::PublicKey>> InMemoryProtocolStore::identity(const ProtocolAddress& address) {
  auto it = identities_.find(address);
  if (it == identities_.end()) return std::optional<crypto::PublicKey>{};
  return std::optional<crypto::PublicKey>{it->second};
}

Result<std::optional<Bytes>> InMemoryProtocolStore::load_pre_key(std::uint32_t id) {
  return find(pre_keys_, id);
}
Status InMemoryProtocolStore::store_pre_key(std::uint32_t id, ByteView record) {
  put(pre_keys_, id, record);
  return {};
}
Status InMemoryProtocolStore::remove_pre_key(std::uint32_t id) {
  erase(pre_keys_, id);
  return {};
}

Result<std::optional<Bytes>> InMemoryProtocolStore::load_signed_pre_key(std::uint32_t id) {
  return find(signed_pre_keys_, id);
}
Status InMemoryProtocolStore::store_signed_pre_key(std::uint32_t id, ByteView record) {
  put(signed_pre_keys_, id, record);
  return {};
}
Status InMemoryProtocolStore::remove_signed_pre_key(std::uint32_t id) {
  erase(signed_pre_keys_, id);
  return {};
}

Result<std::optional<Bytes>> InMemoryProtocolStore::load_session(const ProtocolAddress& address) {
  return find(sessions_, address);
}
Status InMemoryProtocolStore::store_session(const ProtocolAddress& address, ByteView record) {
  put(sessions_, address, record);
  return {};
}
Status InMemoryProtocolStore::delete_session(const ProtocolAddress& address) {
  erase(sessions_, address);
  return {};
}
Result<std::vector<std::uint32_t>> InMemoryProtocolStore::device_ids(const std::string& name) {
  std::vector<std::uint32_t> ids;
  for (auto it = sessions_.lower_bound(ProtocolAddress{name, 0});
       it != sessions_.end() && it->first.name == name; ++it) {
    ids.push_back(it->first.device_id);
  }
  return ids;
}

Result<std::optional<Bytes>> InMemoryProtocolStore::load_sender_key(const SenderKeyName& name) {
  return find(sender_keys_, name);
}
Status InMemoryProtocolStore::store_sender_key(const SenderKeyName& name, ByteView record) {
  put(sender_keys_, name, record);
  return {};
}

}  // namespace postern::protocol
