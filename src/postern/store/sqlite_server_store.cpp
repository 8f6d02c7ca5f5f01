#include "postern/store/sqlite_server_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

namespace postern::store {
namespace {

// The server schema. Append-only: a released step is never edited (docs/storage.md).
// Choices worth knowing:
// - accounts.id is AUTOINCREMENT so an id is never reused: queued messages keep the sender id of
//   a deleted account, and a new account must never inherit them.
// - accounts.email is COLLATE NOCASE and the unique index inherits it, so "A@x" and "a@x" clash
//   even if a caller forgets to normalise. NOCASE folds ASCII only; the account layer's
//   normalisation handles the rest.
// - Children reference devices by (account_id, device_id) with ON DELETE CASCADE, and devices
//   reference accounts the same way, so deleting an account or a device is one DELETE and the
//   engine removes tokens, keys and queued messages in the same transaction.
// - messages.id is AUTOINCREMENT: strictly increasing over the life of the file, even after the
//   newest rows are deleted, so "after_id" paging and per-sender order never see an id twice.
// - delivered remembers acknowledged envelopes' dedup keys until their expiry, so a sender that
//   retries after the recipient acknowledged does not cause a second delivery.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE accounts (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  email         TEXT    NOT NULL COLLATE NOCASE CHECK (length(CAST(email AS BLOB)) BETWEEN 1 AND 254),
  password_hash TEXT    NOT NULL,
  created_ms    INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_email ON accounts (email);

CREATE TABLE devices (
  account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  device_id       INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 4294967295),
  identity_key    BLOB    NOT NULL CHECK (length(identity_key) = 33),
  registration_id INTEGER NOT NULL CHECK (registration_id BETWEEN 0 AND 4294967295),
  name            TEXT    NOT NULL,
  created_ms      INTEGER NOT NULL,
  last_seen_ms    INTEGER NOT NULL,
  PRIMARY KEY (account_id, device_id)
) WITHOUT ROWID;

CREATE TABLE tokens (
  token_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
  account_id INTEGER NOT NULL,
  device_id  INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tokens_device ON tokens (account_id, device_id);

CREATE TABLE signed_prekeys (
  account_id   INTEGER NOT NULL,
  device_id    INTEGER NOT NULL,
  key_id       INTEGER NOT NULL,
  public_key   BLOB    NOT NULL CHECK (length(public_key) = 33),
  signature    BLOB    NOT NULL CHECK (length(signature) = 64),
  timestamp_ms INTEGER NOT NULL,
  PRIMARY KEY (account_id, device_id),
  FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE one_time_prekeys (
  account_id INTEGER NOT NULL,
  device_id  INTEGER NOT NULL,
  key_id     INTEGER NOT NULL,
  public_key BLOB    NOT NULL CHECK (length(public_key) = 33),
  PRIMARY KEY (account_id, device_id, key_id),
  FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE messages (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient_account INTEGER NOT NULL,
  recipient_device  INTEGER NOT NULL,
  sender_account    INTEGER NOT NULL,
  sender_device     INTEGER NOT NULL,
  client_id         BLOB    NOT NULL CHECK (length(client_id) BETWEEN 1 AND 64),
  type              INTEGER NOT NULL,
  timestamp_ms      INTEGER NOT NULL,
  content           BLOB    NOT NULL CHECK (length(content) <= 262144),
  expires_ms        INTEGER NOT NULL,
  FOREIGN KEY (recipient_account, recipient_device)
    REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);
CREATE INDEX messages_queue ON messages (recipient_account, recipient_device, id);
CREATE UNIQUE INDEX messages_dedup
  ON messages (sender_account, sender_device, client_id, recipient_account, recipient_device);
CREATE INDEX messages_expiry ON messages (expires_ms);

CREATE TABLE delivered (
  sender_account    INTEGER NOT NULL,
  sender_device     INTEGER NOT NULL,
  client_id         BLOB    NOT NULL,
  recipient_account INTEGER NOT NULL,
  recipient_device  INTEGER NOT NULL,
  server_id         INTEGER NOT NULL,
  expires_ms        INTEGER NOT NULL,
  PRIMARY KEY (sender_account, sender_device, client_id, recipient_account, recipient_device),
  FOREIGN KEY (recipient_account, recipient_device)
    REFERENCES devices (account_id, device_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX delivered_recipient ON delivered (recipient_account, recipient_device);
CREATE INDEX delivered_expiry ON delivered (expires_ms);

CREATE TABLE used_challenges (
  challenge_id BLOB    NOT NULL PRIMARY KEY,
  expires_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX used_challenges_expiry ON used_challenges (expires_ms);

CREATE TABLE uploads (
  id           TEXT    NOT NULL PRIMARY KEY,
  account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  total_length INTEGER NOT NULL CHECK (total_length >= 0),
  received     INTEGER NOT NULL DEFAULT 0 CHECK (received BETWEEN 0 AND total_length),
  complete     INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
  created_ms   INTEGER NOT NULL,
  expires_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_account ON uploads (account_id);
CREATE INDEX uploads_expiry ON uploads (expires_ms);
)sql";

// Version 2: one-time links that add a device to an account (linked devices). They belong to the
// account (cascade), not to the device that created one. The state is spelled out, so that an
// operator reading the table needs no decoder; the CHECKs tie each state to the columns it fills.
// device_id is not a foreign key: removing the new device before the pickup leaves the link to
// expire (its token is gone with the device, so the pickup is refused anyway).
constexpr std::string_view kSchemaV2 = R"sql(
CREATE TABLE device_links (
  id         TEXT    NOT NULL PRIMARY KEY CHECK (length(CAST(id AS BLOB)) BETWEEN 1 AND 64),
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  state      TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'requested', 'approved')),
  request    BLOB    CHECK (request IS NULL OR length(request) BETWEEN 1 AND 4096),
  token_hash BLOB    CHECK (token_hash IS NULL OR length(token_hash) = 32),
  provision  BLOB    CHECK (provision IS NULL OR length(provision) BETWEEN 1 AND 8192),
  device_id  INTEGER CHECK (device_id IS NULL OR device_id BETWEEN 1 AND 4294967295),
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  CHECK ((state = 'open') = (request IS NULL AND token_hash IS NULL)),
  CHECK ((state = 'approved') = (provision IS NOT NULL AND device_id IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX device_links_account ON device_links (account_id, expires_ms);
CREATE INDEX device_links_expiry ON device_links (expires_ms);
)sql";

constexpr std::array<Migration, 2> kSchema{{
    {1, "accounts, devices, tokens, key directory, message queue, used challenges, uploads", kSchemaV1},
    {2, "device links (adding a device to an account with a one-time link)", kSchemaV2},
}};

std::uint32_t as_u32(std::int64_t v) {
  return static_cast<std::uint32_t>(v);
}

std::int64_t clamp_limit(std::size_t limit) {
  return static_cast<std::int64_t>(std::min<std::size_t>(limit, std::numeric_limits<std::int32_t>::max()));
}

// Columns: id, email, password_hash, created_ms.
Account read_account(const Statement& s) {
  return Account{s.column_int64(0), s.column_text(1), s.column_text(2), s.column_int64(3)};
}

// Columns: device_id, identity_key, registration_id, name, created_ms, last_seen_ms.
Device read_device(const Statement& s) {
  return Device{as_u32(s.column_int64(0)), s.column_blob(1),  as_u32(s.column_int64(2)),
                s.column_text(3),          s.column_int64(4), s.column_int64(5)};
}

// Columns: id, account_id, total_length, received, complete, created_ms, expires_ms.
Upload read_upload(const Statement& s) {
  return Upload{s.column_text(0),       s.column_int64(1), s.column_int64(2), s.column_int64(3),
                s.column_int64(4) != 0, s.column_int64(5), s.column_int64(6)};
}

// Both read the columns read_upload() expects.
constexpr std::string_view kSelectUpload =
    "SELECT id, account_id, total_length, received, complete, created_ms, expires_ms FROM uploads WHERE id = "
    "?1";
constexpr std::string_view kSelectExpiredUploads =
    "SELECT id, account_id, total_length, received, complete, created_ms, expires_ms FROM uploads "
    "WHERE expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2";

bool valid_upload_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxUploadIdBytes;
}

bool valid_link_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxDeviceLinkIdBytes;
}

DeviceLinkState link_state_from_text(std::string_view text) {
  if (text == "requested") return DeviceLinkState::requested;
  if (text == "approved") return DeviceLinkState::approved;
  return DeviceLinkState::open;
}

// Columns: id, account_id, state, request, token_hash, provision, device_id, created_ms, expires_ms.
DeviceLink read_device_link(const Statement& s) {
  DeviceLink link;
  link.id = s.column_text(0);
  link.account_id = s.column_int64(1);
  link.state = link_state_from_text(s.column_text(2));
  link.request = s.column_blob(3);
  link.token_hash = s.column_blob(4);
  link.provision = s.column_blob(5);
  link.device_id = as_u32(s.column_int64(6));
  link.created_ms = s.column_int64(7);
  link.expires_ms = s.column_int64(8);
  return link;
}

}  // namespace

std::span<const Migration> SqliteServerStore::schema() {
  return kSchema;
}

Result<std::unique_ptr<SqliteServerStore>> SqliteServerStore::open(const std::string& path,
                                                                   const OpenOptions& options) {
  POSTERN_TRY(Database db, Database::open(path, options));
  POSTERN_CHECK(migrate(db, schema()));
  return std::unique_ptr<SqliteServerStore>(new SqliteServerStore(std::move(db)));
}

Status SqliteServerStore::set_auto_checkpoint(int pages) {
  return db_.exec("PRAGMA wal_autocheckpoint = " + std::to_string(pages < 0 ? 0 : pages));
}

Status SqliteServerStore::backup_to(const std::string& path) {
  POSTERN_TRY(Statement stmt, db_.prepare("VACUUM INTO ?1"));
  POSTERN_CHECK(stmt.bind_text(1, path));
  return stmt.run();
}

std::error_code SqliteServerStore::missing_parent_as_not_found(std::error_code error) const {
  if (error == Errc::constraint && db_.last_extended_code() == SQLITE_CONSTRAINT_FOREIGNKEY) {
    return Errc::not_found;
  }
  return error;
}

// ---- AccountStore ----

Result<std::int64_t> SqliteServerStore::create_account(std::string_view email, std::string_view password_hash,
                                                       std::int64_t created_ms) {
  if (email.empty() || email.size() > kMaxEmailBytes || password_hash.empty()) return Errc::invalid_argument;
  POSTERN_TRY(auto st,
              db_.cached("INSERT INTO accounts (email, password_hash, created_ms) VALUES (?1, ?2, ?3)"));
  POSTERN_CHECK(st->bind_all(email, password_hash, created_ms));
  if (Status s = st->run(); !s.ok()) {
    if (s.error() == Errc::constraint && db_.last_extended_code() == SQLITE_CONSTRAINT_UNIQUE) {
      return Errc::email_taken;
    }
    return s.error();
  }
  return db_.last_insert_rowid();
}

Result<Account> SqliteServerStore::find_account_by_email(std::string_view email) {
  // The column's NOCASE collation applies to this comparison, and accounts_email serves it.
  POSTERN_TRY(auto st,
              db_.cached("SELECT id, email, password_hash, created_ms FROM accounts WHERE email = ?1"));
  POSTERN_CHECK(st->bind_all(email));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return read_account(*st);
}

Result<Account> SqliteServerStore::get_account(std::int64_t account_id) {
  POSTERN_TRY(auto st, db_.cached("SELECT id, email, password_hash, created_ms FROM accounts WHERE id = ?1"));
  POSTERN_CHECK(st->bind_all(account_id));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return read_account(*st);
}

Status SqliteServerStore::set_password_hash(std::int64_t account_id, std::string_view password_hash) {
  if (password_hash.empty()) return Errc::invalid_argument;
  POSTERN_TRY(auto st, db_.cached("UPDATE accounts SET password_hash = ?2 WHERE id = ?1"));
  POSTERN_CHECK(st->bind_all(account_id, password_hash));
  POSTERN_CHECK(st->run());
  if (db_.changes() == 0) return Errc::not_found;
  return {};
}

Result<std::vector<std::string>> SqliteServerStore::delete_account(std::int64_t account_id) {
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  std::vector<std::string> uploads;
  {
    POSTERN_TRY(auto st, db_.cached("SELECT id FROM uploads WHERE account_id = ?1 ORDER BY id"));
    POSTERN_CHECK(st->bind_all(account_id));
    for (;;) {
      POSTERN_TRY(bool row, st->step());
      if (!row) break;
      uploads.push_back(st->column_text(0));
    }
  }
  {
    // Cascades: devices -> tokens, signed and one-time prekeys, messages, delivered; uploads;
    // device links.
    POSTERN_TRY(auto st, db_.cached("DELETE FROM accounts WHERE id = ?1"));
    POSTERN_CHECK(st->bind_all(account_id));
    POSTERN_CHECK(st->run());
    if (db_.changes() == 0) return Errc::not_found;
  }
  POSTERN_CHECK(tx.commit());
  return uploads;
}

// ---- DeviceStore ----

Result<std::uint32_t> SqliteServerStore::add_device(std::int64_t account_id, ByteView identity_key,
                                                    std::uint32_t registration_id, std::string_view name,
                                                    std::int64_t now_ms) {
  if (identity_key.size() != kPublicKeyBytes || name.size() > kMaxDeviceNameBytes)
    return Errc::invalid_argument;
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(const std::uint32_t id, add_device_locked(account_id, identity_key, registration_id, name, now_ms));
  POSTERN_CHECK(tx.commit());
  return id;
}

Result<std::uint32_t> SqliteServerStore::add_device_locked(std::int64_t account_id, ByteView identity_key,
                                                           std::uint32_t registration_id, std::string_view name,
                                                           std::int64_t now_ms) {
  if (identity_key.size() != kPublicKeyBytes || name.size() > kMaxDeviceNameBytes)
    return Errc::invalid_argument;
  std::uint32_t next = 1;
  {
    // Device ids in order: the first gap (or one past the end) is the lowest free id.
    POSTERN_TRY(auto st,
                db_.cached("SELECT device_id FROM devices WHERE account_id = ?1 ORDER BY device_id"));
    POSTERN_CHECK(st->bind_all(account_id));
    for (;;) {
      POSTERN_TRY(bool row, st->step());
      if (!row || st->column_int64(0) != next) break;
      if (next == std::numeric_limits<std::uint32_t>::max()) return Errc::too_large;
      ++next;
    }
  }
  {
    POSTERN_TRY(auto st,
                db_.cached("INSERT INTO devices (account_id, device_id, identity_key, registration_id, name, "
                           "created_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"));
    POSTERN_CHECK(st->bind_all(account_id, std::int64_t{next}, identity_key, std::int64_t{registration_id},
                               name, now_ms));
    if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
  }
  return next;
}

Result<Device> SqliteServerStore::get_device(std::int64_t account_id, std::uint32_t device_id) {
  POSTERN_TRY(auto st,
              db_.cached("SELECT device_id, identity_key, registration_id, name, created_ms, last_seen_ms "
                         "FROM devices WHERE account_id = ?1 AND device_id = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return read_device(*st);
}

Result<std::vector<Device>> SqliteServerStore::list_devices(std::int64_t account_id) {
  POSTERN_TRY(auto st,
              db_.cached("SELECT device_id, identity_key, registration_id, name, created_ms, last_seen_ms "
                         "FROM devices WHERE account_id = ?1 ORDER BY device_id"));
  POSTERN_CHECK(st->bind_all(account_id));
  std::vector<Device> devices;
  for (;;) {
    POSTERN_TRY(bool row, st->step());
    if (!row) break;
    devices.push_back(read_device(*st));
  }
  return devices;
}

Status SqliteServerStore::remove_device(std::int64_t account_id, std::uint32_t device_id) {
  // One statement, so one implicit transaction; the cascades run inside it.
  POSTERN_TRY(auto st, db_.cached("DELETE FROM devices WHERE account_id = ?1 AND device_id = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
  POSTERN_CHECK(st->run());
  if (db_.changes() == 0) return Errc::not_found;
  return {};
}

Status SqliteServerStore::touch_device(std::int64_t account_id, std::uint32_t device_id,
                                       std::int64_t now_ms) {
  POSTERN_TRY(auto st,
              db_.cached("UPDATE devices SET last_seen_ms = ?3 WHERE account_id = ?1 AND device_id = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}, now_ms));
  POSTERN_CHECK(st->run());
  if (db_.changes() == 0) return Errc::not_found;
  return {};
}

// ---- TokenStore ----

Status SqliteServerStore::put_token(ByteView token_hash, std::int64_t account_id, std::uint32_t device_id,
                                    std::int64_t created_ms) {
  if (token_hash.size() != kTokenHashBytes) return Errc::invalid_argument;
  POSTERN_TRY(auto st, db_.cached("INSERT INTO tokens (token_hash, account_id, device_id, created_ms) "
                                  "VALUES (?1, ?2, ?3, ?4)"));
  POSTERN_CHECK(st->bind_all(token_hash, account_id, std::int64_t{device_id}, created_ms));
  if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
  return {};
}

Result<TokenOwner> SqliteServerStore::find_token(ByteView token_hash) {
  if (token_hash.size() != kTokenHashBytes) return Errc::not_found;
  POSTERN_TRY(auto st, db_.cached("SELECT account_id, device_id FROM tokens WHERE token_hash = ?1"));
  POSTERN_CHECK(st->bind_all(token_hash));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return TokenOwner{st->column_int64(0), as_u32(st->column_int64(1))};
}

Result<bool> SqliteServerStore::delete_token(ByteView token_hash) {
  POSTERN_TRY(auto st, db_.cached("DELETE FROM tokens WHERE token_hash = ?1"));
  POSTERN_CHECK(st->bind_all(token_hash));
  POSTERN_CHECK(st->run());
  return db_.changes() > 0;
}

Result<std::int64_t> SqliteServerStore::delete_device_tokens(std::int64_t account_id,
                                                             std::uint32_t device_id) {
  POSTERN_TRY(auto st, db_.cached("DELETE FROM tokens WHERE account_id = ?1 AND device_id = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
  POSTERN_CHECK(st->run());
  return db_.changes();
}

// ---- KeyStore ----

Status SqliteServerStore::set_signed_prekey(std::int64_t account_id, std::uint32_t device_id,
                                            const SignedPreKey& key) {
  if (key.public_key.size() != kPublicKeyBytes || key.signature.size() != kSignatureBytes) {
    return Errc::invalid_argument;
  }
  POSTERN_TRY(auto st,
              db_.cached("INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature, "
                         "timestamp_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                         "ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, "
                         "public_key = excluded.public_key, signature = excluded.signature, "
                         "timestamp_ms = excluded.timestamp_ms"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}, std::int64_t{key.id},
                             ByteView(key.public_key), ByteView(key.signature), key.timestamp_ms));
  if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
  return {};
}

Result<SignedPreKey> SqliteServerStore::get_signed_prekey(std::int64_t account_id, std::uint32_t device_id) {
  POSTERN_TRY(auto st, db_.cached("SELECT key_id, public_key, signature, timestamp_ms FROM signed_prekeys "
                                  "WHERE account_id = ?1 AND device_id = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return SignedPreKey{as_u32(st->column_int64(0)), st->column_blob(1), st->column_blob(2),
                      st->column_int64(3)};
}

Status SqliteServerStore::add_one_time_prekeys(std::int64_t account_id, std::uint32_t device_id,
                                               std::span<const OneTimePreKey> keys) {
  if (keys.size() > kMaxPreKeyBatch) return Errc::too_large;
  std::vector<std::uint32_t> ids;
  ids.reserve(keys.size());
  for (const OneTimePreKey& key : keys) {
    if (key.public_key.size() != kPublicKeyBytes) return Errc::invalid_argument;
    ids.push_back(key.id);
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) return Errc::invalid_argument;
  if (keys.empty()) return {};

  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(auto st, db_.cached("INSERT INTO one_time_prekeys (account_id, device_id, key_id, public_key) "
                                  "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account_id, device_id, key_id) "
                                  "DO UPDATE SET public_key = excluded.public_key"));
  for (const OneTimePreKey& key : keys) {
    POSTERN_CHECK(
        st->bind_all(account_id, std::int64_t{device_id}, std::int64_t{key.id}, ByteView(key.public_key)));
    if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
    st->reset();
  }
  return tx.commit();
}

Result<Bundle> SqliteServerStore::take_bundle_locked(std::int64_t account_id, std::uint32_t device_id) {
  Bundle bundle;
  bundle.device_id = device_id;
  {
    POSTERN_TRY(auto st,
                db_.cached("SELECT d.registration_id, d.identity_key, s.key_id, s.public_key, s.signature, "
                           "s.timestamp_ms FROM devices d JOIN signed_prekeys s "
                           "ON s.account_id = d.account_id AND s.device_id = d.device_id "
                           "WHERE d.account_id = ?1 AND d.device_id = ?2"));
    POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
    POSTERN_TRY(bool row, st->step());
    if (!row) return Errc::not_found;
    bundle.registration_id = as_u32(st->column_int64(0));
    bundle.identity_key = st->column_blob(1);
    bundle.signed_pre_key = SignedPreKey{as_u32(st->column_int64(2)), st->column_blob(3), st->column_blob(4),
                                         st->column_int64(5)};
  }
  {
    // Take and delete in one statement; the transaction's write lock makes it exclusive.
    POSTERN_TRY(
        auto st,
        db_.cached("DELETE FROM one_time_prekeys WHERE account_id = ?1 AND device_id = ?2 AND key_id = "
                   "(SELECT min(key_id) FROM one_time_prekeys WHERE account_id = ?1 AND device_id = ?2) "
                   "RETURNING key_id, public_key"));
    POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
    POSTERN_TRY(bool row, st->step());
    if (row) {
      bundle.one_time_pre_key = OneTimePreKey{as_u32(st->column_int64(0)), st->column_blob(1)};
      POSTERN_TRY(bool more, st->step());
      (void)more;
    }
  }
  POSTERN_TRY(bundle.one_time_pre_keys_left, one_time_prekey_count(account_id, device_id));
  return bundle;
}

Result<Bundle> SqliteServerStore::take_bundle(std::int64_t account_id, std::uint32_t device_id) {
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(Bundle bundle, take_bundle_locked(account_id, device_id));
  POSTERN_CHECK(tx.commit());
  return bundle;
}

Result<std::vector<Bundle>> SqliteServerStore::take_bundles(std::int64_t account_id) {
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  std::vector<std::uint32_t> device_ids;
  {
    POSTERN_TRY(auto st,
                db_.cached("SELECT device_id FROM signed_prekeys WHERE account_id = ?1 ORDER BY device_id"));
    POSTERN_CHECK(st->bind_all(account_id));
    for (;;) {
      POSTERN_TRY(bool row, st->step());
      if (!row) break;
      device_ids.push_back(as_u32(st->column_int64(0)));
    }
  }
  std::vector<Bundle> bundles;
  bundles.reserve(device_ids.size());
  for (std::uint32_t device_id : device_ids) {
    POSTERN_TRY(Bundle bundle, take_bundle_locked(account_id, device_id));
    bundles.push_back(std::move(bundle));
  }
  POSTERN_CHECK(tx.commit());
  return bundles;
}

Result<std::int64_t> SqliteServerStore::one_time_prekey_count(std::int64_t account_id,
                                                              std::uint32_t device_id) {
  POSTERN_TRY(auto st,
              db_.cached("SELECT count(*) FROM one_time_prekeys WHERE account_id = ?1 AND device_id = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::sqlite_error;
  return st->column_int64(0);
}

// ---- MessageQueue ----

Result<std::vector<Enqueued>> SqliteServerStore::enqueue(std::span<const Envelope> batch) {
  for (const Envelope& e : batch) {
    if (e.client_id.empty() || e.client_id.size() > kMaxClientIdBytes) return Errc::invalid_argument;
    if (e.content.size() > kMaxEnvelopeContentBytes) return Errc::too_large;
  }
  std::vector<Enqueued> results;
  results.reserve(batch.size());
  if (batch.empty()) return results;

  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  for (const Envelope& e : batch) {
    const std::int64_t recipient_device = e.recipient_device;
    const std::int64_t sender_device = e.sender_device;
    // A retry of an envelope still queued, or of one already delivered and acknowledged.
    std::optional<std::int64_t> existing;
    {
      POSTERN_TRY(auto st,
                  db_.cached("SELECT id FROM messages WHERE sender_account = ?1 AND sender_device = ?2 AND "
                             "client_id = ?3 AND recipient_account = ?4 AND recipient_device = ?5"));
      POSTERN_CHECK(st->bind_all(e.sender_account, sender_device, ByteView(e.client_id), e.recipient_account,
                                 recipient_device));
      POSTERN_TRY(bool row, st->step());
      if (row) existing = st->column_int64(0);
    }
    if (!existing) {
      POSTERN_TRY(
          auto st,
          db_.cached("SELECT server_id FROM delivered WHERE sender_account = ?1 AND sender_device = ?2 "
                     "AND client_id = ?3 AND recipient_account = ?4 AND recipient_device = ?5"));
      POSTERN_CHECK(st->bind_all(e.sender_account, sender_device, ByteView(e.client_id), e.recipient_account,
                                 recipient_device));
      POSTERN_TRY(bool row, st->step());
      if (row) existing = st->column_int64(0);
    }
    if (existing) {
      results.push_back(Enqueued{*existing, true});
      continue;
    }
    POSTERN_TRY(auto st,
                db_.cached("INSERT INTO messages (recipient_account, recipient_device, sender_account, "
                           "sender_device, client_id, type, timestamp_ms, content, expires_ms) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"));
    POSTERN_CHECK(st->bind_all(e.recipient_account, recipient_device, e.sender_account, sender_device,
                               ByteView(e.client_id), std::int64_t{e.type}, e.timestamp_ms,
                               ByteView(e.content), e.expires_ms));
    if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
    results.push_back(Enqueued{db_.last_insert_rowid(), false});
  }
  // Returning only after COMMIT (fsync of the WAL, synchronous=FULL) is what makes it safe for the
  // server to acknowledge every envelope of the batch.
  POSTERN_CHECK(tx.commit());
  return results;
}

Result<std::vector<StoredEnvelope>> SqliteServerStore::fetch(std::int64_t account_id, std::uint32_t device_id,
                                                             std::int64_t after_id, std::size_t limit) {
  POSTERN_TRY(auto st,
              db_.cached("SELECT id, sender_account, sender_device, client_id, type, timestamp_ms, content, "
                         "expires_ms FROM messages WHERE recipient_account = ?1 AND recipient_device = ?2 "
                         "AND id > ?3 ORDER BY id LIMIT ?4"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}, after_id, clamp_limit(limit)));
  std::vector<StoredEnvelope> out;
  for (;;) {
    POSTERN_TRY(bool row, st->step());
    if (!row) break;
    StoredEnvelope s;
    s.server_id = st->column_int64(0);
    s.envelope.recipient_account = account_id;
    s.envelope.recipient_device = device_id;
    s.envelope.sender_account = st->column_int64(1);
    s.envelope.sender_device = as_u32(st->column_int64(2));
    s.envelope.client_id = st->column_blob(3);
    s.envelope.type = static_cast<std::int32_t>(st->column_int64(4));
    s.envelope.timestamp_ms = st->column_int64(5);
    s.envelope.content = st->column_blob(6);
    s.envelope.expires_ms = st->column_int64(7);
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::int64_t> SqliteServerStore::ack_batch(std::span<const AckRef> acks) {
  if (acks.empty()) return std::int64_t{0};
  // Acknowledgements are committed without waiting for the disk (synchronous=NORMAL for this
  // transaction only): a crash may lose the last of them, and then those envelopes are delivered
  // again, which clients handle (they drop repeats by server id). The next FULL commit's fsync of
  // the WAL makes them durable too. This keeps acknowledgements from taking an fsync away from
  // the sends waiting for theirs.
  POSTERN_CHECK(db_.exec("PRAGMA synchronous = NORMAL"));
  struct RestoreFull {
    Database& db;
    ~RestoreFull() { (void)db.exec("PRAGMA synchronous = FULL"); }
  } restore{db_};
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  std::int64_t deleted = 0;
  for (const AckRef& a : acks) {
    const std::int64_t device_id = a.device_id;
    {
      POSTERN_TRY(auto st,
                  db_.cached("INSERT OR IGNORE INTO delivered (sender_account, sender_device, client_id, "
                             "recipient_account, recipient_device, server_id, expires_ms) "
                             "SELECT sender_account, sender_device, client_id, recipient_account, "
                             "recipient_device, id, expires_ms FROM messages "
                             "WHERE id = ?1 AND recipient_account = ?2 AND recipient_device = ?3"));
      POSTERN_CHECK(st->bind_all(a.server_id, a.account_id, device_id));
      POSTERN_CHECK(st->run());
    }
    POSTERN_TRY(auto st, db_.cached("DELETE FROM messages WHERE id = ?1 AND recipient_account = ?2 AND "
                                    "recipient_device = ?3"));
    POSTERN_CHECK(st->bind_all(a.server_id, a.account_id, device_id));
    POSTERN_CHECK(st->run());
    deleted += db_.changes();
  }
  POSTERN_CHECK(tx.commit());
  return deleted;
}

Result<std::int64_t> SqliteServerStore::queued_count(std::int64_t account_id, std::uint32_t device_id) {
  POSTERN_TRY(
      auto st,
      db_.cached("SELECT count(*) FROM messages WHERE recipient_account = ?1 AND recipient_device = ?2"));
  POSTERN_CHECK(st->bind_all(account_id, std::int64_t{device_id}));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::sqlite_error;
  return st->column_int64(0);
}

Result<std::int64_t> SqliteServerStore::purge_expired_messages(std::int64_t now_ms) {
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  std::int64_t purged = 0;
  {
    POSTERN_TRY(auto st, db_.cached("DELETE FROM messages WHERE expires_ms <= ?1"));
    POSTERN_CHECK(st->bind_all(now_ms));
    POSTERN_CHECK(st->run());
    purged = db_.changes();
  }
  {
    // Past its expiry an envelope can no longer be retried meaningfully; forget its dedup key.
    POSTERN_TRY(auto st, db_.cached("DELETE FROM delivered WHERE expires_ms <= ?1"));
    POSTERN_CHECK(st->bind_all(now_ms));
    POSTERN_CHECK(st->run());
  }
  POSTERN_CHECK(tx.commit());
  return purged;
}

// ---- ChallengeStore ----

Result<bool> SqliteServerStore::mark_challenge_used(ByteView challenge_id, std::int64_t expires_ms) {
  if (challenge_id.empty() || challenge_id.size() > 64) return Errc::invalid_argument;
  // Insert-if-absent in one statement is atomic, so two racing redemptions cannot both win.
  POSTERN_TRY(auto st, db_.cached("INSERT INTO used_challenges (challenge_id, expires_ms) VALUES (?1, ?2) "
                                  "ON CONFLICT (challenge_id) DO NOTHING"));
  POSTERN_CHECK(st->bind_all(challenge_id, expires_ms));
  POSTERN_CHECK(st->run());
  return db_.changes() == 1;
}

Result<std::int64_t> SqliteServerStore::purge_expired_challenges(std::int64_t now_ms) {
  POSTERN_TRY(auto st, db_.cached("DELETE FROM used_challenges WHERE expires_ms <= ?1"));
  POSTERN_CHECK(st->bind_all(now_ms));
  POSTERN_CHECK(st->run());
  return db_.changes();
}

// ---- AttachmentStore ----

Status SqliteServerStore::create_upload(std::string_view upload_id, std::int64_t account_id,
                                        std::int64_t length, std::int64_t created_ms,
                                        std::int64_t expires_ms) {
  if (!valid_upload_id(upload_id) || length < 0) return Errc::invalid_argument;
  POSTERN_TRY(auto st,
              db_.cached("INSERT INTO uploads (id, account_id, total_length, created_ms, expires_ms) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)"));
  POSTERN_CHECK(st->bind_all(upload_id, account_id, length, created_ms, expires_ms));
  if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
  return {};
}

Result<Upload> SqliteServerStore::get_upload(std::string_view upload_id) {
  if (!valid_upload_id(upload_id)) return Errc::not_found;
  POSTERN_TRY(auto st, db_.cached(kSelectUpload));
  POSTERN_CHECK(st->bind_all(upload_id));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return read_upload(*st);
}

Status SqliteServerStore::set_upload_offset(std::string_view upload_id, std::int64_t offset) {
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(Upload upload, get_upload(upload_id));
  if (upload.complete || offset < upload.offset || offset > upload.length) return Errc::invalid_argument;
  POSTERN_TRY(auto st, db_.cached("UPDATE uploads SET received = ?2 WHERE id = ?1"));
  POSTERN_CHECK(st->bind_all(upload_id, offset));
  POSTERN_CHECK(st->run());
  return tx.commit();
}

Status SqliteServerStore::complete_upload(std::string_view upload_id) {
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(Upload upload, get_upload(upload_id));
  if (upload.offset != upload.length) return Errc::invalid_argument;
  POSTERN_TRY(auto st, db_.cached("UPDATE uploads SET complete = 1 WHERE id = ?1"));
  POSTERN_CHECK(st->bind_all(upload_id));
  POSTERN_CHECK(st->run());
  return tx.commit();
}

Result<bool> SqliteServerStore::delete_upload(std::string_view upload_id) {
  POSTERN_TRY(auto st, db_.cached("DELETE FROM uploads WHERE id = ?1"));
  POSTERN_CHECK(st->bind_all(upload_id));
  POSTERN_CHECK(st->run());
  return db_.changes() > 0;
}

Result<std::int64_t> SqliteServerStore::account_upload_bytes(std::int64_t account_id) {
  POSTERN_TRY(auto st,
              db_.cached("SELECT coalesce(sum(total_length), 0) FROM uploads WHERE account_id = ?1"));
  POSTERN_CHECK(st->bind_all(account_id));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::sqlite_error;
  return st->column_int64(0);
}

Result<std::vector<Upload>> SqliteServerStore::list_expired_uploads(std::int64_t now_ms, std::size_t limit) {
  POSTERN_TRY(auto st, db_.cached(kSelectExpiredUploads));
  POSTERN_CHECK(st->bind_all(now_ms, clamp_limit(limit)));
  std::vector<Upload> out;
  for (;;) {
    POSTERN_TRY(bool row, st->step());
    if (!row) break;
    out.push_back(read_upload(*st));
  }
  return out;
}

// ---- DeviceLinkStore ----

Status SqliteServerStore::create_device_link(std::string_view link_id, std::int64_t account_id,
                                             std::int64_t created_ms, std::int64_t expires_ms,
                                             std::size_t max_live) {
  if (!valid_link_id(link_id)) return Errc::invalid_argument;
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  {
    // Served by device_links_account (account_id, expires_ms).
    POSTERN_TRY(auto st,
                db_.cached("SELECT count(*) FROM device_links WHERE account_id = ?1 AND expires_ms > ?2"));
    POSTERN_CHECK(st->bind_all(account_id, created_ms));
    POSTERN_TRY(bool row, st->step());
    if (!row) return Errc::sqlite_error;
    if (static_cast<std::uint64_t>(st->column_int64(0)) >= max_live) return Errc::too_large;
  }
  {
    POSTERN_TRY(auto st, db_.cached("INSERT INTO device_links (id, account_id, created_ms, expires_ms) "
                                    "VALUES (?1, ?2, ?3, ?4)"));
    POSTERN_CHECK(st->bind_all(link_id, account_id, created_ms, expires_ms));
    if (Status s = st->run(); !s.ok()) return missing_parent_as_not_found(s.error());
  }
  return tx.commit();
}

Result<DeviceLink> SqliteServerStore::get_device_link(std::string_view link_id, std::int64_t now_ms) {
  if (!valid_link_id(link_id)) return Errc::not_found;
  POSTERN_TRY(auto st, db_.cached("SELECT id, account_id, state, request, token_hash, provision, device_id, "
                                  "created_ms, expires_ms FROM device_links WHERE id = ?1 AND expires_ms > ?2"));
  POSTERN_CHECK(st->bind_all(link_id, now_ms));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  return read_device_link(*st);
}

Status SqliteServerStore::request_device_link(std::string_view link_id, ByteView request, ByteView token_hash,
                                              std::int64_t now_ms) {
  if (request.empty() || token_hash.size() != kTokenHashBytes) return Errc::invalid_argument;
  if (request.size() > kMaxLinkRequestBytes) return Errc::too_large;
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(const DeviceLink link, get_device_link(link_id, now_ms));
  if (link.state != DeviceLinkState::open) return Errc::constraint;  // one request per link
  POSTERN_TRY(auto st, db_.cached("UPDATE device_links SET state = 'requested', request = ?2, token_hash = ?3 "
                                  "WHERE id = ?1 AND state = 'open'"));
  POSTERN_CHECK(st->bind_all(link_id, request, token_hash));
  POSTERN_CHECK(st->run());
  if (db_.changes() != 1) return Errc::constraint;
  return tx.commit();
}

Result<std::uint32_t> SqliteServerStore::approve_device_link(std::string_view link_id, std::int64_t account_id,
                                                             ByteView identity_key, std::uint32_t registration_id,
                                                             std::string_view name, ByteView provision,
                                                             std::int64_t now_ms, std::int64_t expires_ms) {
  if (provision.empty() || identity_key.size() != kPublicKeyBytes || name.size() > kMaxDeviceNameBytes) {
    return Errc::invalid_argument;
  }
  if (provision.size() > kMaxProvisionBytes) return Errc::too_large;
  POSTERN_TRY(Transaction tx, Transaction::begin(db_));
  POSTERN_TRY(const DeviceLink link, get_device_link(link_id, now_ms));
  if (link.account_id != account_id) return Errc::not_found;
  if (link.state != DeviceLinkState::requested || link.token_hash.size() != kTokenHashBytes) {
    return Errc::constraint;
  }
  POSTERN_TRY(const std::uint32_t device_id,
              add_device_locked(account_id, identity_key, registration_id, name, now_ms));
  // A token hash that is already a session fails on the tokens primary key (Errc::constraint),
  // and the rollback takes the device away again.
  POSTERN_CHECK(put_token(link.token_hash, account_id, device_id, now_ms));
  {
    POSTERN_TRY(auto st, db_.cached("UPDATE device_links SET state = 'approved', provision = ?2, device_id = ?3, "
                                    "expires_ms = ?4 WHERE id = ?1 AND state = 'requested'"));
    POSTERN_CHECK(st->bind_all(link_id, provision, std::int64_t{device_id}, expires_ms));
    POSTERN_CHECK(st->run());
    if (db_.changes() != 1) return Errc::constraint;
  }
  POSTERN_CHECK(tx.commit());
  return device_id;
}

Result<DeviceLink> SqliteServerStore::take_device_link(std::string_view link_id, ByteView token_hash,
                                                       std::int64_t now_ms) {
  if (!valid_link_id(link_id) || token_hash.size() != kTokenHashBytes) return Errc::not_found;
  // Find and delete in one statement, so two pickups can never both get the blob.
  POSTERN_TRY(auto st, db_.cached("DELETE FROM device_links WHERE id = ?1 AND state = 'approved' AND "
                                  "token_hash = ?2 AND expires_ms > ?3 RETURNING id, account_id, state, request, "
                                  "token_hash, provision, device_id, created_ms, expires_ms"));
  POSTERN_CHECK(st->bind_all(link_id, token_hash, now_ms));
  POSTERN_TRY(bool row, st->step());
  if (!row) return Errc::not_found;
  DeviceLink link = read_device_link(*st);
  POSTERN_TRY(bool more, st->step());  // runs the statement to its end
  (void)more;
  return link;
}

Result<bool> SqliteServerStore::delete_device_link(std::string_view link_id, std::int64_t account_id,
                                                   std::int64_t now_ms) {
  if (!valid_link_id(link_id)) return false;
  POSTERN_TRY(auto st,
              db_.cached("DELETE FROM device_links WHERE id = ?1 AND account_id = ?2 AND expires_ms > ?3"));
  POSTERN_CHECK(st->bind_all(link_id, account_id, now_ms));
  POSTERN_CHECK(st->run());
  return db_.changes() > 0;
}

Result<std::int64_t> SqliteServerStore::purge_expired_device_links(std::int64_t now_ms) {
  POSTERN_TRY(auto st, db_.cached("DELETE FROM device_links WHERE expires_ms <= ?1"));
  POSTERN_CHECK(st->bind_all(now_ms));
  POSTERN_CHECK(st->run());
  return db_.changes();
}

}  // namespace postern::store
