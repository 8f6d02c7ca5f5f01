// SqliteServerStore: every interface of server_store.h on one SQLite connection (WAL,
// synchronous=FULL, foreign keys with ON DELETE CASCADE doing the deleting of what an account or
// device owns). The schema and its migrations are listed in sqlite_server_store.cpp and described
// in docs/storage.md.
//
// Thread safety: none inside one object; it is one connection. Use one object per thread. The
// server owns one writer object on its storage thread (which runs the group commit) and may open
// more objects, e.g. for readers; several objects (or processes) on the same file are safe, since
// every read-then-write runs under BEGIN IMMEDIATE and SQLite serialises the writers, each
// waiting up to busy_timeout.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "postern/store/migrations.h"
#include "postern/store/server_store.h"
#include "postern/store/sqlite.h"

namespace postern::store {

class SqliteServerStore final : public ServerStore {
 public:
  // Opens (creating when allowed) the database at `path` and brings its schema up to date.
  // Errors: Errc::corrupt for a file that is not a database, Errc::schema_too_new for a file of a
  // newer program, Errc::io_error when the file cannot be opened.
  static Result<std::unique_ptr<SqliteServerStore>> open(const std::string& path,
                                                         const OpenOptions& options = {});

  // The migration steps of the server schema (version = position + 1).
  static std::span<const Migration> schema();

  // A consistent copy of the whole database into a new file at `path`, taken while the server
  // runs (VACUUM INTO: one read transaction, writers continue). The copy is compact and has no
  // -wal file to carry along. Fails if `path` exists.
  Status backup_to(const std::string& path);
  // PRAGMA wal_autocheckpoint for this connection: 0 turns automatic checkpoints off (when a
  // WalCheckpointer does them); SQLite's default is 1000 pages.
  Status set_auto_checkpoint(int pages);

  // The connection, for diagnostics (last_message()) and tests.
  Database& database() { return db_; }

  // AccountStore
  Result<std::int64_t> create_account(std::string_view email, std::string_view password_hash,
                                      std::int64_t created_ms) override;
  Result<Account> find_account_by_email(std::string_view email) override;
  Result<Account> get_account(std::int64_t account_id) override;
  Status set_password_hash(std::int64_t account_id, std::string_view password_hash) override;
  Result<std::vector<std::string>> delete_account(std::int64_t account_id) override;

  // DeviceStore
  Result<std::uint32_t> add_device(std::int64_t account_id, ByteView identity_key,
                                   std::uint32_t registration_id, std::string_view name,
                                   std::int64_t now_ms) override;
  Result<Device> get_device(std::int64_t account_id, std::uint32_t device_id) override;
  Result<std::vector<Device>> list_devices(std::int64_t account_id) override;
  Status remove_device(std::int64_t account_id, std::uint32_t device_id) override;
  Status touch_device(std::int64_t account_id, std::uint32_t device_id, std::int64_t now_ms) override;

  // TokenStore
  Status put_token(ByteView token_hash, std::int64_t account_id, std::uint32_t device_id,
                   std::int64_t created_ms) override;
  Result<TokenOwner> find_token(ByteView token_hash) override;
  Result<bool> delete_token(ByteView token_hash) override;
  Result<std::int64_t> delete_device_tokens(std::int64_t account_id, std::uint32_t device_id) override;

  // KeyStore
  Status set_signed_prekey(std::int64_t account_id, std::uint32_t device_id,
                           const SignedPreKey& key) override;
  Result<SignedPreKey> get_signed_prekey(std::int64_t account_id, std::uint32_t device_id) override;
  Status add_one_time_prekeys(std::int64_t account_id, std::uint32_t device_id,
                              std::span<const OneTimePreKey> keys) override;
  Result<Bundle> take_bundle(std::int64_t account_id, std::uint32_t device_id) override;
  Result<std::vector<Bundle>> take_bundles(std::int64_t account_id) override;
  Result<std::int64_t> one_time_prekey_count(std::int64_t account_id, std::uint32_t device_id) override;

  // MessageQueue
  Result<std::vector<Enqueued>> enqueue(std::span<const Envelope> batch) override;
  Result<std::vector<StoredEnvelope>> fetch(std::int64_t account_id, std::uint32_t device_id,
                                            std::int64_t after_id, std::size_t limit) override;
  Result<std::int64_t> ack_batch(std::span<const AckRef> acks) override;
  Result<std::int64_t> queued_count(std::int64_t account_id, std::uint32_t device_id) override;
  Result<std::int64_t> purge_expired_messages(std::int64_t now_ms) override;

  // ChallengeStore
  Result<bool> mark_challenge_used(ByteView challenge_id, std::int64_t expires_ms) override;
  Result<std::int64_t> purge_expired_challenges(std::int64_t now_ms) override;

  // AttachmentStore
  Status create_upload(std::string_view upload_id, std::int64_t account_id, std::int64_t length,
                       std::int64_t created_ms, std::int64_t expires_ms) override;
  Result<Upload> get_upload(std::string_view upload_id) override;
  Status set_upload_offset(std::string_view upload_id, std::int64_t offset) override;
  Status complete_upload(std::string_view upload_id) override;
  Result<bool> delete_upload(std::string_view upload_id) override;
  Result<std::int64_t> account_upload_bytes(std::int64_t account_id) override;
  Result<std::vector<Upload>> list_expired_uploads(std::int64_t now_ms, std::size_t limit) override;

  // DeviceLinkStore
  Status create_device_link(std::string_view link_id, std::int64_t account_id, std::int64_t created_ms,
                            std::int64_t expires_ms, std::size_t max_live) override;
  Result<DeviceLink> get_device_link(std::string_view link_id, std::int64_t now_ms) override;
  Status request_device_link(std::string_view link_id, ByteView request, ByteView token_hash,
                             std::int64_t now_ms) override;
  Result<std::uint32_t> approve_device_link(std::string_view link_id, std::int64_t account_id, ByteView identity_key,
                                            std::uint32_t registration_id, std::string_view name, ByteView provision,
                                            std::int64_t now_ms, std::int64_t expires_ms) override;
  Result<DeviceLink> take_device_link(std::string_view link_id, ByteView token_hash, std::int64_t now_ms) override;
  Result<bool> delete_device_link(std::string_view link_id, std::int64_t account_id, std::int64_t now_ms) override;
  Result<std::int64_t> purge_expired_device_links(std::int64_t now_ms) override;

 private:
  explicit SqliteServerStore(Database db) : db_(std::move(db)) {}

  // add_device inside a transaction the caller holds.
  Result<std::uint32_t> add_device_locked(std::int64_t account_id, ByteView identity_key,
                                          std::uint32_t registration_id, std::string_view name, std::int64_t now_ms);
  // take_bundle inside a transaction the caller holds.
  Result<Bundle> take_bundle_locked(std::int64_t account_id, std::uint32_t device_id);
  // A failed write whose cause was a missing parent row (foreign key) becomes Errc::not_found.
  std::error_code missing_parent_as_not_found(std::error_code error) const;

  Database db_;
};

}  // namespace postern::store
