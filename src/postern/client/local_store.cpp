// LocalStore over SQLite with field-level sealing (docs/client-storage.md).
//
// Opening a profile, in order: create the directory (0700), take the profile lock (flock, one
// process at a time), open and migrate the database, then find the data key. The key file or salt
// may be created only while the database has no check value yet (a new profile): a profile whose
// key file went missing, or that was made with a passphrase and is opened without one, is refused
// (store_locked) instead of being given a fresh key that would orphan every sealed field.
//
// Every sealed column goes through seal_into / select_sealed with the context string that
// schema.cpp gives for it, so a value copied into another row or column fails to open.
#include "postern/client/local_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "postern/client/detail/at_rest.h"
#include "postern/client/errors.h"
#include "postern/client/schema.h"
#include "postern/store/migrations.h"

namespace postern::client {
namespace {

using protocol::ProtocolAddress;

constexpr std::string_view kCheckSetting = "__check";
constexpr std::string_view kCheckPlaintext = "postern profile data key check v1";
constexpr std::string_view kIdentityKeyPairSetting = "local_identity_key_pair";
constexpr std::string_view kRegistrationIdSetting = "local_registration_id";

// The profile lock: an open descriptor holding flock(LOCK_EX). Closing it releases the lock.
class LockFile {
 public:
  explicit LockFile(int fd) : fd_(fd) {}
  LockFile(LockFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  LockFile& operator=(LockFile&&) = delete;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_;
};

Status make_profile_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  const std::filesystem::path parent = dir.parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return Errc::file_error;
  }
  if (::mkdir(dir.c_str(), 0700) != 0) {
    // Created meanwhile by someone else is fine; a file of that name is not.
    return errno == EEXIST && std::filesystem::is_directory(dir, ec) ? Status{} : Status{Errc::file_error};
  }
  // mkdir's mode passes through the umask; a new profile must end up 0700 whatever it was.
  if (::chmod(dir.c_str(), 0700) != 0) return Errc::file_error;
  return {};
}

Result<LockFile> lock_profile(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "profile.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errc::file_error;
  LockFile lock(fd);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Errc::store_locked;
    return Errc::file_error;
  }
  // The pid is for people (and the CLI's message) finding the holder; failing to write it does
  // not weaken the lock, so it is not an error.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    const ssize_t ignored = ::pwrite(fd, pid.data(), pid.size(), 0);
    (void)ignored;
  }
  return lock;
}

// Creates the database file as 0600 before SQLite does (it would use 0644); SQLite gives the
// -wal and -shm files the mode of the database file.
Status create_private_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errc::file_error;
  ::close(fd);
  return {};
}

std::string row_key(const ProtocolAddress& address) {
  return address.name + "." + std::to_string(address.device_id);
}

Result<crypto::PublicKey> parse_public_key(ByteView bytes) {
  auto key = crypto::PublicKey::deserialize(bytes);
  if (!key.ok()) return Errc::corrupt_record;
  return *key;
}

Bytes to_bytes(const crypto::SecretBytes& secret) {
  return Bytes(secret.view().begin(), secret.view().end());
}

// Setting names starting with "__" belong to the store itself (the key check).
Status check_setting_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return Errc::invalid_argument;
  return {};
}

}  // namespace

struct LocalStore::Impl {
  LockFile lock;  // declared first: released last, after the database is closed
  store::Database db;
  detail::AtRest at_rest;
  crypto::Rng& rng;
  const Clock& clock;
  std::optional<store::Transaction> txn;  // declared after db: rolled back before it closes

  Bytes seal(ByteView plaintext, std::string_view context) const { return at_rest.seal(plaintext, context, rng); }

  // Runs a statement returning one sealed blob column and opens it.
  template <class... Args>
  Result<std::optional<crypto::SecretBytes>> select_sealed(std::string_view sql, std::string_view context,
                                                           const Args&... args) {
    Bytes sealed;
    {
      POSTERN_TRY(auto stmt, db.cached(sql));
      POSTERN_CHECK(stmt->bind_all(args...));
      POSTERN_TRY(bool row, stmt->step());
      if (!row) return std::optional<crypto::SecretBytes>{};
      sealed = stmt->column_blob(0);
    }
    POSTERN_TRY(auto plain, at_rest.unseal(sealed, context));
    return std::optional<crypto::SecretBytes>(std::move(plain));
  }

  // Seals `plaintext` under `context` and runs `sql` with args..., then the sealed blob bound last.
  template <class... Args>
  Status write_sealed(std::string_view sql, ByteView plaintext, std::string_view context, const Args&... args) {
    const Bytes sealed = seal(plaintext, context);  // outlives the lease, which is reset first
    POSTERN_TRY(auto stmt, db.cached(sql));
    POSTERN_CHECK(stmt->bind_all(args..., ByteView(sealed)));
    return stmt->run();
  }

  template <class... Args>
  Status run(std::string_view sql, const Args&... args) {
    POSTERN_TRY(auto stmt, db.cached(sql));
    POSTERN_CHECK(stmt->bind_all(args...));
    return stmt->run();
  }

  // Runs `body` inside the caller's transaction if one is open, else in one of its own.
  template <class F>
  Status atomically(F&& body) {
    if (db.in_transaction()) return body();
    POSTERN_TRY(auto t, store::Transaction::begin(db));
    POSTERN_CHECK(body());
    return t.commit();
  }

  // ---- identities ----
  struct IdentityRow {
    std::uint32_t device_id = 0;
    Bytes key;
    std::int64_t state = 0;
    std::int64_t first_seen_ms = 0;
    std::optional<Bytes> previous_key;
  };

  // The trust state is part of the key's sealing context: the state column is stored in clear (for
  // queries) but cannot be changed without the data key (a blocked key cannot be made trusted by
  // editing the file).
  static std::string key_context(const std::string& row, std::int64_t state) {
    return "identities.key:" + row + "#state=" + std::to_string(state);
  }

  Result<IdentityInfo> decode_identity(const ProtocolAddress& address, const IdentityRow& row) const {
    const std::string key = row_key(address);
    IdentityInfo info;
    if (row.state < 0 || row.state > 2) return Errc::corrupt_record;
    {
      POSTERN_TRY(auto plain, at_rest.unseal(row.key, key_context(key, row.state)));
      POSTERN_TRY(info.key, parse_public_key(plain.view()));
    }
    info.state = static_cast<TrustState>(row.state);
    info.first_seen_ms = row.first_seen_ms;
    if (row.previous_key) {
      POSTERN_TRY(auto plain, at_rest.unseal(*row.previous_key, "identities.previous_key:" + key));
      POSTERN_TRY(info.previous_key, parse_public_key(plain.view()));
    }
    return info;
  }

  static IdentityRow read_identity_row(const store::Statement& stmt, int first_column) {
    IdentityRow row;
    row.key = stmt.column_blob(first_column);
    row.state = stmt.column_int64(first_column + 1);
    row.first_seen_ms = stmt.column_int64(first_column + 2);
    if (!stmt.column_is_null(first_column + 3)) row.previous_key = stmt.column_blob(first_column + 3);
    return row;
  }

  Result<std::optional<IdentityInfo>> load_identity(const ProtocolAddress& address) {
    IdentityRow row;
    {
      POSTERN_TRY(auto stmt, db.cached("SELECT key, state, first_seen_ms, previous_key FROM identities "
                                       "WHERE name = ?1 AND device_id = ?2"));
      POSTERN_CHECK(stmt->bind_all(std::string_view(address.name), std::int64_t{address.device_id}));
      POSTERN_TRY(bool found, stmt->step());
      if (!found) return std::optional<IdentityInfo>{};
      row = read_identity_row(*stmt, 0);
    }
    POSTERN_TRY(auto info, decode_identity(address, row));
    return std::optional<IdentityInfo>(std::move(info));
  }

  Status write_identity(const ProtocolAddress& address, const IdentityInfo& info) {
    const std::string key = row_key(address);
    const auto serialized = info.key.serialize();
    const Bytes sealed_key = seal(serialized, key_context(key, static_cast<std::int64_t>(info.state)));
    Bytes sealed_previous;
    if (info.previous_key) {
      sealed_previous = seal(info.previous_key->serialize(), "identities.previous_key:" + key);
    }
    POSTERN_TRY(auto stmt,
                db.cached("INSERT INTO identities (name, device_id, key, state, first_seen_ms, previous_key) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name, device_id) DO UPDATE SET "
                          "key = excluded.key, state = excluded.state, first_seen_ms = excluded.first_seen_ms, "
                          "previous_key = excluded.previous_key"));
    POSTERN_CHECK(stmt->bind_all(std::string_view(address.name), std::int64_t{address.device_id},
                                 ByteView(sealed_key), static_cast<std::int64_t>(info.state), info.first_seen_ms));
    if (info.previous_key) {
      POSTERN_CHECK(stmt->bind_blob(6, sealed_previous));
    } else {
      POSTERN_CHECK(stmt->bind_null(6));
    }
    return stmt->run();
  }

  // Re-seals the key under the new state's context.
  Status write_identity_state(const ProtocolAddress& address, TrustState state) {
    POSTERN_TRY(auto existing, load_identity(address));
    if (!existing) return Errc::unknown_contact;
    existing->state = state;
    return write_identity(address, *existing);
  }

  // TOFU for an unknown address; a different key replaces the stored one (kept as previous_key)
  // and is blocked or trusted by the policy. True when the key changed.
  Result<bool> remember_identity(const ProtocolAddress& address, const crypto::PublicKey& key,
                                 IdentityChangePolicy policy) {
    POSTERN_TRY(auto existing, load_identity(address));
    if (existing && existing->key == key) return false;
    IdentityInfo info;
    info.key = key;
    info.first_seen_ms = clock.now_ms();
    if (!existing) {
      info.state = TrustState::trusted;
      POSTERN_CHECK(write_identity(address, info));
      return false;
    }
    info.state = policy == IdentityChangePolicy::block_until_accepted ? TrustState::changed_blocked
                                                                      : TrustState::trusted;
    info.previous_key = existing->key;
    POSTERN_CHECK(write_identity(address, info));
    return true;
  }
};

LocalStore::LocalStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LocalStore::~LocalStore() = default;

Result<std::unique_ptr<LocalStore>> LocalStore::open(const std::filesystem::path& profile_dir,
                                                     const OpenOptions& options, crypto::Rng& rng,
                                                     const Clock& clock) {
  if (options.passphrase && options.passphrase->empty()) return Errc::invalid_argument;
  POSTERN_CHECK(make_profile_dir(profile_dir));
  POSTERN_TRY(LockFile lock, lock_profile(profile_dir));

  const std::filesystem::path db_path = profile_dir / "profile.db";
  POSTERN_CHECK(create_private_file(db_path));
  POSTERN_TRY(store::Database db, store::Database::open(db_path.string()));
  // Database::open sets these already; they are repeated because the store depends on them:
  // a committed transaction must survive a crash (FULL), and deleted records (old sessions,
  // used prekeys) are overwritten in the file rather than left in free pages.
  POSTERN_CHECK(db.exec("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON"));
  POSTERN_CHECK(store::migrate(db, client_schema()));

  std::optional<Bytes> check;
  {
    POSTERN_TRY(auto stmt, db.cached("SELECT value FROM settings WHERE name = ?1"));
    POSTERN_CHECK(stmt->bind_all(kCheckSetting));
    POSTERN_TRY(bool row, stmt->step());
    if (row) check = stmt->column_blob(0);
  }
  const bool new_profile = !check.has_value();

  std::optional<detail::AtRest> at_rest;
  if (options.passphrase) {
    POSTERN_TRY(auto key, detail::key_from_passphrase(*options.passphrase, profile_dir / "data.salt",
                                                      new_profile, rng));
    at_rest.emplace(key);
  } else {
    POSTERN_TRY(auto key, detail::key_from_file(profile_dir / "data.key", new_profile, rng));
    at_rest.emplace(key);
  }

  const std::string check_context = "settings.value:" + std::string(kCheckSetting);
  if (check) {
    auto plain = at_rest->unseal(*check, check_context);
    if (!plain.ok() || !crypto::constant_time_equal(plain->view(), as_bytes(kCheckPlaintext))) {
      return Errc::store_locked;
    }
  } else {
    const Bytes sealed = at_rest->seal(as_bytes(kCheckPlaintext), check_context, rng);
    POSTERN_TRY(auto stmt, db.cached("INSERT INTO settings (name, value) VALUES (?1, ?2)"));
    POSTERN_CHECK(stmt->bind_all(kCheckSetting, ByteView(sealed)));
    POSTERN_CHECK(stmt->run());
  }

  auto impl = std::unique_ptr<Impl>(
      new Impl{std::move(lock), std::move(db), std::move(*at_rest), rng, clock, std::nullopt});
  return std::unique_ptr<LocalStore>(new LocalStore(std::move(impl)));
}

// ---- transactions ----

LocalStore::Transaction::Transaction(Transaction&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)) {}

LocalStore::Transaction::~Transaction() {
  if (store_ != nullptr) store_->impl_->txn.reset();  // store::Transaction rolls back
}

Status LocalStore::Transaction::commit() {
  if (store_ == nullptr || !store_->impl_->txn) return Errc::invalid_argument;
  // On failure the transaction stays open and the destructor rolls it back.
  POSTERN_CHECK(store_->impl_->txn->commit());
  store_->impl_->txn.reset();
  store_ = nullptr;
  return {};
}

Result<LocalStore::Transaction> LocalStore::begin() {
  if (impl_->txn || impl_->db.in_transaction()) return Errc::invalid_argument;
  POSTERN_TRY(auto txn, store::Transaction::begin(impl_->db));
  impl_->txn.emplace(std::move(txn));
  return Transaction(this);
}

// ---- sealing ----

Result<Bytes> LocalStore::seal(ByteView plaintext, std::string_view context) {
  // SQLite's default limit for one value is 1e9 bytes; refuse before allocating the copy.
  if (plaintext.size() > 1'000'000'000 - detail::kSealOverhead) return Errc::too_large;
  return impl_->seal(plaintext, context);
}

Result<crypto::SecretBytes> LocalStore::unseal(ByteView sealed, std::string_view context) {
  return impl_->at_rest.unseal(sealed, context);
}

std::string LocalStore::blind_index(std::string_view value) {
  return impl_->at_rest.blind_index(value);
}

store::Database& LocalStore::db() {
  return impl_->db;
}

// ---- settings ----

Result<std::optional<crypto::SecretBytes>> LocalStore::setting(std::string_view name) {
  POSTERN_CHECK(check_setting_name(name));
  return impl_->select_sealed("SELECT value FROM settings WHERE name = ?1", "settings.value:" + std::string(name),
                              name);
}

Status LocalStore::set_setting(std::string_view name, ByteView value) {
  POSTERN_CHECK(check_setting_name(name));
  return impl_->write_sealed(
      "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      value, "settings.value:" + std::string(name), name);
}

Status LocalStore::delete_setting(std::string_view name) {
  POSTERN_CHECK(check_setting_name(name));
  return impl_->run("DELETE FROM settings WHERE name = ?1", name);
}

Result<std::optional<std::string>> LocalStore::setting_text(std::string_view name) {
  POSTERN_TRY(auto value, setting(name));
  if (!value) return std::optional<std::string>{};
  return std::optional<std::string>(std::string(as_chars(value->view())));
}

Status LocalStore::set_setting_text(std::string_view name, std::string_view value) {
  return set_setting(name, as_bytes(value));
}

Result<std::optional<std::int64_t>> LocalStore::setting_int(std::string_view name) {
  POSTERN_TRY(auto value, setting(name));
  if (!value) return std::optional<std::int64_t>{};
  if (value->size() != 8) return Errc::corrupt_record;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | value->data()[i];
  return std::optional<std::int64_t>(static_cast<std::int64_t>(v));
}

Status LocalStore::set_setting_int(std::string_view name, std::int64_t value) {
  std::array<std::uint8_t, 8> bytes{};
  auto v = static_cast<std::uint64_t>(value);
  for (std::size_t i = 8; i-- > 0; v >>= 8) bytes[i] = static_cast<std::uint8_t>(v & 0xff);
  return set_setting(name, bytes);
}

// ---- this device's identity ----

Status LocalStore::set_local_identity(const protocol::IdentityKeyPair& pair, std::uint32_t registration_id) {
  // private scalar (32) || serialized public key (33)
  crypto::SecretBytes value(pair.private_key.scalar().view());
  value.append(pair.public_key.serialize());
  return impl_->atomically([&]() -> Status {
    POSTERN_CHECK(set_setting(kIdentityKeyPairSetting, value.view()));
    return set_setting_int(kRegistrationIdSetting, registration_id);
  });
}

Result<bool> LocalStore::has_local_identity() {
  POSTERN_TRY(auto stmt, impl_->db.cached("SELECT 1 FROM settings WHERE name = ?1"));
  POSTERN_CHECK(stmt->bind_all(kIdentityKeyPairSetting));
  return stmt->step();
}

Result<protocol::IdentityKeyPair> LocalStore::identity_key_pair() {
  POSTERN_TRY(auto value, setting(kIdentityKeyPairSetting));
  if (!value) return Errc::not_registered;
  if (value->size() != crypto::kKeySize + crypto::kPublicKeySize) return Errc::corrupt_record;
  auto private_key = crypto::PrivateKey::deserialize(value->view().first(crypto::kKeySize));
  if (!private_key.ok()) return Errc::corrupt_record;
  POSTERN_TRY(auto public_key, parse_public_key(value->view().subspan(crypto::kKeySize)));
  return protocol::IdentityKeyPair{public_key, std::move(*private_key)};
}

Result<std::uint32_t> LocalStore::local_registration_id() {
  POSTERN_TRY(auto id, setting_int(kRegistrationIdSetting));
  if (!id) return Errc::not_registered;
  if (*id < 0 || *id > 0xFFFFFFFF) return Errc::corrupt_record;
  return static_cast<std::uint32_t>(*id);
}

// ---- trust in remote identities ----

Result<std::optional<IdentityInfo>> LocalStore::identity_info(const ProtocolAddress& address) {
  return impl_->load_identity(address);
}

Result<std::vector<std::pair<std::uint32_t, IdentityInfo>>> LocalStore::identities_of(const std::string& name) {
  std::vector<Impl::IdentityRow> rows;
  {
    POSTERN_TRY(auto stmt, impl_->db.cached("SELECT device_id, key, state, first_seen_ms, previous_key "
                                            "FROM identities WHERE name = ?1 ORDER BY device_id"));
    POSTERN_CHECK(stmt->bind_all(std::string_view(name)));
    while (true) {
      POSTERN_TRY(bool row, stmt->step());
      if (!row) break;
      Impl::IdentityRow r = Impl::read_identity_row(*stmt, 1);
      r.device_id = static_cast<std::uint32_t>(stmt->column_int64(0));
      rows.push_back(std::move(r));
    }
  }
  std::vector<std::pair<std::uint32_t, IdentityInfo>> out;
  out.reserve(rows.size());
  for (const auto& row : rows) {
    POSTERN_TRY(auto info, impl_->decode_identity(ProtocolAddress{name, row.device_id}, row));
    out.emplace_back(row.device_id, std::move(info));
  }
  return out;
}

Status LocalStore::accept_identity(const ProtocolAddress& address) {
  POSTERN_TRY(auto info, impl_->load_identity(address));
  if (!info) return Errc::unknown_contact;
  if (info->state != TrustState::changed_blocked) return {};
  return impl_->write_identity_state(address, TrustState::trusted);
}

Status LocalStore::set_verified(const ProtocolAddress& address, bool verified) {
  POSTERN_TRY(auto info, impl_->load_identity(address));
  if (!info) return Errc::unknown_contact;
  // Verifying compares the safety number of the key now stored, so it also accepts a changed
  // key; unverifying only withdraws a verification and never unblocks a changed key.
  if (verified) {
    if (info->state == TrustState::verified) return {};
    return impl_->write_identity_state(address, TrustState::verified);
  }
  if (info->state != TrustState::verified) return {};
  return impl_->write_identity_state(address, TrustState::trusted);
}

Result<bool> LocalStore::record_identity_change(const ProtocolAddress& address, const crypto::PublicKey& key) {
  return impl_->remember_identity(address, key, policy_);
}

Result<bool> LocalStore::save_identity(const ProtocolAddress& address, const crypto::PublicKey& key) {
  return impl_->remember_identity(address, key, policy_);
}

Result<bool> LocalStore::is_trusted_identity(const ProtocolAddress& address, const crypto::PublicKey& key,
                                             protocol::Direction direction) {
  if (direction == protocol::Direction::receiving) return true;
  POSTERN_TRY(auto info, impl_->load_identity(address));
  if (!info) return true;
  return info->key == key && (info->state == TrustState::trusted || info->state == TrustState::verified);
}

Result<std::optional<crypto::PublicKey>> LocalStore::identity(const ProtocolAddress& address) {
  POSTERN_TRY(auto info, impl_->load_identity(address));
  if (!info) return std::optional<crypto::PublicKey>{};
  return std::optional<crypto::PublicKey>(info->key);
}

// ---- prekeys ----

Result<std::optional<Bytes>> LocalStore::load_pre_key(std::uint32_t id) {
  POSTERN_TRY(auto plain, impl_->select_sealed("SELECT record FROM pre_keys WHERE id = ?1",
                                               "pre_keys.record:" + std::to_string(id), std::int64_t{id}));
  if (!plain) return std::optional<Bytes>{};
  return std::optional<Bytes>(to_bytes(*plain));
}

Status LocalStore::store_pre_key(std::uint32_t id, ByteView record) {
  return impl_->write_sealed(
      "INSERT INTO pre_keys (id, record) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET record = excluded.record",
      record, "pre_keys.record:" + std::to_string(id), std::int64_t{id});
}

Status LocalStore::remove_pre_key(std::uint32_t id) {
  return impl_->run("DELETE FROM pre_keys WHERE id = ?1", std::int64_t{id});
}

Result<std::size_t> LocalStore::pre_key_count() {
  POSTERN_TRY(auto stmt, impl_->db.cached("SELECT count(*) FROM pre_keys"));
  POSTERN_TRY(bool row, stmt->step());
  if (!row) return std::size_t{0};
  return static_cast<std::size_t>(stmt->column_int64(0));
}

// ---- signed prekeys ----

Result<std::optional<Bytes>> LocalStore::load_signed_pre_key(std::uint32_t id) {
  POSTERN_TRY(auto plain, impl_->select_sealed("SELECT record FROM signed_pre_keys WHERE id = ?1",
                                               "signed_pre_keys.record:" + std::to_string(id), std::int64_t{id}));
  if (!plain) return std::optional<Bytes>{};
  return std::optional<Bytes>(to_bytes(*plain));
}

Status LocalStore::store_signed_pre_key(std::uint32_t id, ByteView record) {
  // created_ms is kept when a record is stored again under the same id: rotation ages keys by it.
  return impl_->write_sealed(
      "INSERT INTO signed_pre_keys (id, created_ms, record) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (id) DO UPDATE SET record = excluded.record",
      record, "signed_pre_keys.record:" + std::to_string(id), std::int64_t{id}, impl_->clock.now_ms());
}

Status LocalStore::remove_signed_pre_key(std::uint32_t id) {
  return impl_->run("DELETE FROM signed_pre_keys WHERE id = ?1", std::int64_t{id});
}

Result<std::vector<LocalStore::SignedPreKeyInfo>> LocalStore::signed_pre_keys() {
  POSTERN_TRY(auto stmt, impl_->db.cached("SELECT id, created_ms FROM signed_pre_keys ORDER BY created_ms, id"));
  std::vector<SignedPreKeyInfo> out;
  while (true) {
    POSTERN_TRY(bool row, stmt->step());
    if (!row) break;
    out.push_back({static_cast<std::uint32_t>(stmt->column_int64(0)), stmt->column_int64(1)});
  }
  return out;
}

// ---- sessions ----

Result<std::optional<Bytes>> LocalStore::load_session(const ProtocolAddress& address) {
  POSTERN_TRY(auto plain, impl_->select_sealed("SELECT record FROM sessions WHERE name = ?1 AND device_id = ?2",
                                               "sessions.record:" + row_key(address),
                                               std::string_view(address.name), std::int64_t{address.device_id}));
  if (!plain) return std::optional<Bytes>{};
  return std::optional<Bytes>(to_bytes(*plain));
}

Status LocalStore::store_session(const ProtocolAddress& address, ByteView record) {
  return impl_->write_sealed(
      "INSERT INTO sessions (name, device_id, record) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (name, device_id) DO UPDATE SET record = excluded.record",
      record, "sessions.record:" + row_key(address), std::string_view(address.name),
      std::int64_t{address.device_id});
}

Status LocalStore::delete_session(const ProtocolAddress& address) {
  return impl_->run("DELETE FROM sessions WHERE name = ?1 AND device_id = ?2", std::string_view(address.name),
                    std::int64_t{address.device_id});
}

Result<std::vector<std::uint32_t>> LocalStore::device_ids(const std::string& name) {
  POSTERN_TRY(auto stmt, impl_->db.cached("SELECT device_id FROM sessions WHERE name = ?1 ORDER BY device_id"));
  POSTERN_CHECK(stmt->bind_all(std::string_view(name)));
  std::vector<std::uint32_t> out;
  while (true) {
    POSTERN_TRY(bool row, stmt->step());
    if (!row) break;
    out.push_back(static_cast<std::uint32_t>(stmt->column_int64(0)));
  }
  return out;
}

// ---- sender keys ----

namespace {
std::string sender_key_context(const protocol::SenderKeyName& name) {
  return "sender_keys.record:" + name.group_id + "/" + row_key(name.sender);
}
}  // namespace

Result<std::optional<Bytes>> LocalStore::load_sender_key(const protocol::SenderKeyName& name) {
  POSTERN_TRY(auto plain, impl_->select_sealed("SELECT record FROM sender_keys WHERE group_id = ?1 AND "
                                               "sender_name = ?2 AND sender_device = ?3",
                                               sender_key_context(name), std::string_view(name.group_id),
                                               std::string_view(name.sender.name),
                                               std::int64_t{name.sender.device_id}));
  if (!plain) return std::optional<Bytes>{};
  return std::optional<Bytes>(to_bytes(*plain));
}

Status LocalStore::store_sender_key(const protocol::SenderKeyName& name, ByteView record) {
  return impl_->write_sealed(
      "INSERT INTO sender_keys (group_id, sender_name, sender_device, record) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT (group_id, sender_name, sender_device) DO UPDATE SET record = excluded.record",
      record, sender_key_context(name), std::string_view(name.group_id), std::string_view(name.sender.name),
      std::int64_t{name.sender.device_id});
}

Status LocalStore::delete_sender_keys(const std::string& group_id) {
  return impl_->run("DELETE FROM sender_keys WHERE group_id = ?1", std::string_view(group_id));
}

}  // namespace postern::client
