// Tests for postern/client/local_store.h: opening a profile (key file, passphrase, lock), sealing
// (tampering, moved values, no plaintext in the files), settings, the protocol stores, trust in
// remote identities under both change policies, and transactions.
#include "store/temp_dir.h"
#include "postern/client/local_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

#include "postern/client/errors.h"

namespace postern::client {
namespace {

namespace fs = std::filesystem;
using protocol::Direction;
using protocol::ProtocolAddress;
using protocol::SenderKeyName;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
// A temporary directory per test (tests/unit/store/temp_dir.h), as a std::filesystem::path.
struct TempDir : store::store_test::TempDir {
  fs::path path() const { return store::store_test::TempDir::path(); }
};

unsigned file_mode(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool contains(const Bytes& haystack, ByteView needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) != haystack.end();
}

Bytes bytes_of(std::string_view s) {
  const ByteView v = as_bytes(s);
  return Bytes(v.begin(), v.end());
}

class LocalStoreTest : public ::testing::Test {
 protected:
  fs::path profile() const { return dir_.path() / "profile"; }

  std::unique_ptr<LocalStore> open_store(const OpenOptions& options = {}) {
    auto store = LocalStore::open(profile(), options, rng_, clock_);
    EXPECT_TRUE(store.ok()) << store.error().message();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::error_code open_error(const OpenOptions& options = {}) {
    auto store = LocalStore::open(profile(), options, rng_, clock_);
    return store.error();
  }

  // Reads one blob column of one row through the store's own connection.
  static Bytes raw_blob(LocalStore& store, const std::string& sql) {
    auto stmt = store.db().prepare(sql);
    EXPECT_TRUE(stmt.ok());
    auto row = stmt->step();
    EXPECT_TRUE(row.ok() && *row) << sql;
    return stmt->column_blob(0);
  }
  static void raw_write_blob(LocalStore& store, const std::string& sql, ByteView blob) {
    auto stmt = store.db().prepare(sql);
    ASSERT_TRUE(stmt.ok()) << store.db().last_message();
    ASSERT_TRUE(stmt->bind_blob(1, blob).ok());
    ASSERT_TRUE(stmt->run().ok()) << store.db().last_message();
    EXPECT_EQ(store.db().changes(), 1);
  }

  crypto::PublicKey new_key() { return crypto::KeyPair::generate(rng_).public_key; }

  TempDir dir_;
  crypto::DeterministicRng rng_{42};
  ManualClock clock_{1'700'000'000'000};
};

// ---- opening ----

TEST_F(LocalStoreTest, CreatesProfileWithKeyFileAndReopens) {
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->set_setting_text("server", "https://example.org").ok());
  }
  EXPECT_EQ(file_mode(profile()), 0700u);
  EXPECT_EQ(file_mode(profile() / "data.key"), 0600u);
  EXPECT_EQ(file_mode(profile() / "profile.db"), 0600u);
  EXPECT_EQ(read_file(profile() / "data.key").size(), 32u);
  EXPECT_FALSE(fs::exists(profile() / "data.key.tmp"));
  EXPECT_FALSE(fs::exists(profile() / "data.salt"));
  const Bytes key_before = read_file(profile() / "data.key");

  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto server = store->setting_text("server");
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(*server, std::optional<std::string>("https://example.org"));
  EXPECT_EQ(read_file(profile() / "data.key"), key_before);  // not regenerated
}

TEST_F(LocalStoreTest, DatabaseIsDurableWithForeignKeys) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  for (const auto& [pragma, expected] :
       {std::pair{"PRAGMA synchronous", 2}, std::pair{"PRAGMA foreign_keys", 1}, std::pair{"PRAGMA secure_delete", 1}}) {
    auto stmt = store->db().prepare(pragma);
    ASSERT_TRUE(stmt.ok());
    ASSERT_TRUE(*stmt->step());
    EXPECT_EQ(stmt->column_int64(0), expected) << pragma;
  }
}

TEST_F(LocalStoreTest, OtherKeyFileIsStoreLocked) {
  { ASSERT_NE(open_store(), nullptr); }
  std::ofstream(profile() / "data.key", std::ios::binary | std::ios::trunc) << std::string(32, 'x');
  EXPECT_EQ(open_error(), make_error_code(Errc::store_locked));
}

TEST_F(LocalStoreTest, MissingKeyFileOfExistingProfileIsStoreLockedAndNotRecreated) {
  { ASSERT_NE(open_store(), nullptr); }
  fs::remove(profile() / "data.key");
  EXPECT_EQ(open_error(), make_error_code(Errc::store_locked));
  EXPECT_FALSE(fs::exists(profile() / "data.key"));
}

TEST_F(LocalStoreTest, TruncatedKeyFileIsStoreLocked) {
  { ASSERT_NE(open_store(), nullptr); }
  fs::resize_file(profile() / "data.key", 31);
  EXPECT_EQ(open_error(), make_error_code(Errc::store_locked));
}

TEST_F(LocalStoreTest, PassphraseCreatesSaltAndReopens) {
  OpenOptions options;
  options.passphrase = "correct horse battery staple";
  {
    auto store = open_store(options);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->set_setting_int("answer", 42).ok());
  }
  EXPECT_FALSE(fs::exists(profile() / "data.key"));
  EXPECT_EQ(read_file(profile() / "data.salt").size(), 16u);
  EXPECT_EQ(file_mode(profile() / "data.salt"), 0600u);

  auto store = open_store(options);
  ASSERT_NE(store, nullptr);
  auto answer = store->setting_int("answer");
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(*answer, std::optional<std::int64_t>(42));
}

TEST_F(LocalStoreTest, WrongPassphraseOrNoneIsStoreLocked) {
  OpenOptions options;
  options.passphrase = "right";
  { ASSERT_NE(open_store(options), nullptr); }
  OpenOptions wrong;
  wrong.passphrase = "wrong";
  EXPECT_EQ(open_error(wrong), make_error_code(Errc::store_locked));
  // Without a passphrase the store looks for a key file; it must not invent one.
  EXPECT_EQ(open_error(), make_error_code(Errc::store_locked));
  EXPECT_FALSE(fs::exists(profile() / "data.key"));
  OpenOptions empty;
  empty.passphrase = "";
  EXPECT_EQ(open_error(empty), make_error_code(Errc::invalid_argument));
}

TEST_F(LocalStoreTest, SecondOpenWhileHeldIsStoreLocked) {
  auto first = open_store();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(open_error(), make_error_code(Errc::store_locked));
  const Bytes lock = read_file(profile() / "profile.lock");
  EXPECT_EQ(std::string(as_chars(lock)), std::to_string(::getpid()) + "\n");
  first.reset();
  EXPECT_NE(open_store(), nullptr);  // released with the store
}

TEST_F(LocalStoreTest, CreatesMissingParentDirectories) {
  auto store = LocalStore::open(dir_.path() / "a" / "b" / "profile", {}, rng_, clock_);
  ASSERT_TRUE(store.ok()) << store.error().message();
  EXPECT_EQ(file_mode(dir_.path() / "a" / "b" / "profile"), 0700u);

  // A file where the directory should be is an error, and its mode is left alone.
  const fs::path file = dir_.path() / "not-a-dir";
  std::ofstream(file) << "x";
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  EXPECT_EQ(LocalStore::open(file, {}, rng_, clock_).error(), make_error_code(Errc::file_error));
  EXPECT_EQ(file_mode(file), 0640u);
}

// ---- sealing ----

TEST_F(LocalStoreTest, SealLayoutAndContextBinding) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const Bytes plain = bytes_of("hello");
  auto a = store->seal(plain, "messages.body:1");
  auto b = store->seal(plain, "messages.body:1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 1 + 24 + plain.size() + 16);
  EXPECT_EQ((*a)[0], 1);
  EXPECT_NE(*a, *b);  // a fresh nonce each time
  auto opened = store->unseal(*a, "messages.body:1");
  ASSERT_TRUE(opened.ok());
  EXPECT_TRUE(std::ranges::equal(opened->view(), plain));
  EXPECT_EQ(store->unseal(*a, "messages.body:2").error(), make_error_code(Errc::corrupt_record));
  EXPECT_EQ(store->unseal(ByteView(*a).first(20), "messages.body:1").error(),
            make_error_code(Errc::corrupt_record));

  auto empty = store->seal({}, "x");
  ASSERT_TRUE(empty.ok());
  auto empty_opened = store->unseal(*empty, "x");
  ASSERT_TRUE(empty_opened.ok());
  EXPECT_TRUE(empty_opened->empty());
}

TEST_F(LocalStoreTest, BlindIndexIsKeyedAndStable) {
  std::string first;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    first = store->blind_index("alice@example.org");
    EXPECT_EQ(first.size(), 64u);
    EXPECT_EQ(first.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_NE(first, store->blind_index("bob@example.org"));
  }
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->blind_index("alice@example.org"), first);
  }
  // Another profile (another data key) gives another index for the same value.
  auto other = LocalStore::open(dir_.path() / "other", {}, rng_, clock_);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)->blind_index("alice@example.org"), first);
}

TEST_F(LocalStoreTest, TamperedSealedValueIsCorruptRecord) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->store_pre_key(7, bytes_of("prekey seven")).ok());
  ASSERT_TRUE(store->set_setting_text("token", "secret-token").ok());

  Bytes record = raw_blob(*store, "SELECT record FROM pre_keys WHERE id = 7");
  record[record.size() / 2] ^= 0x01;
  raw_write_blob(*store, "UPDATE pre_keys SET record = ?1 WHERE id = 7", record);
  EXPECT_EQ(store->load_pre_key(7).error(), make_error_code(Errc::corrupt_record));

  Bytes value = raw_blob(*store, "SELECT value FROM settings WHERE name = 'token'");
  value[0] ^= 0x80;  // the version byte
  raw_write_blob(*store, "UPDATE settings SET value = ?1 WHERE name = 'token'", value);
  EXPECT_EQ(store->setting_text("token").error(), make_error_code(Errc::corrupt_record));
}

TEST_F(LocalStoreTest, ValueMovedToAnotherRowIsCorruptRecord) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->store_pre_key(1, bytes_of("one")).ok());
  ASSERT_TRUE(store->store_pre_key(2, bytes_of("two")).ok());
  const Bytes one = raw_blob(*store, "SELECT record FROM pre_keys WHERE id = 1");
  raw_write_blob(*store, "UPDATE pre_keys SET record = ?1 WHERE id = 2", one);
  EXPECT_EQ(store->load_pre_key(2).error(), make_error_code(Errc::corrupt_record));
  ASSERT_TRUE(store->load_pre_key(1).ok());

  // Same id, another table: the context names the table and column too.
  ASSERT_TRUE(store->store_signed_pre_key(1, bytes_of("signed")).ok());
  raw_write_blob(*store, "UPDATE signed_pre_keys SET record = ?1 WHERE id = 1", one);
  EXPECT_EQ(store->load_signed_pre_key(1).error(), make_error_code(Errc::corrupt_record));

  const ProtocolAddress alice{"1001", 1}, bob{"1002", 1};
  ASSERT_TRUE(store->store_session(alice, bytes_of("alice session")).ok());
  ASSERT_TRUE(store->store_session(bob, bytes_of("bob session")).ok());
  const Bytes alice_record = raw_blob(*store, "SELECT record FROM sessions WHERE name = '1001'");
  raw_write_blob(*store, "UPDATE sessions SET record = ?1 WHERE name = '1002'", alice_record);
  EXPECT_EQ(store->load_session(bob).error(), make_error_code(Errc::corrupt_record));

  ASSERT_TRUE(store->save_identity(alice, new_key()).ok());
  ASSERT_TRUE(store->save_identity(bob, new_key()).ok());
  const Bytes alice_key = raw_blob(*store, "SELECT key FROM identities WHERE name = '1001'");
  raw_write_blob(*store, "UPDATE identities SET key = ?1 WHERE name = '1002'", alice_key);
  EXPECT_EQ(store->identity(bob).error(), make_error_code(Errc::corrupt_record));
  // A sealed key in the previous_key column of its own row fails too.
  raw_write_blob(*store, "UPDATE identities SET previous_key = ?1 WHERE name = '1001'", alice_key);
  EXPECT_EQ(store->identity_info(alice).error(), make_error_code(Errc::corrupt_record));
}

TEST_F(LocalStoreTest, NoPlaintextInDatabaseFiles) {
  const std::string setting = "PLAINTEXT-SETTING-VALUE-8c1f";
  const std::string session = "PLAINTEXT-SESSION-RECORD-5d2e";
  const std::string prekey = "PLAINTEXT-PREKEY-RECORD-77aa";
  auto check_files = [&](const char* when) {
    for (const auto& entry : fs::directory_iterator(profile())) {
      const Bytes content = read_file(entry.path());
      for (const auto& secret : {setting, session, prekey}) {
        EXPECT_FALSE(contains(content, as_bytes(secret))) << secret << " in " << entry.path() << " " << when;
      }
    }
  };
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->set_setting_text("note", setting).ok());
  ASSERT_TRUE(store->store_session({"1001", 2}, bytes_of(session)).ok());
  ASSERT_TRUE(store->store_pre_key(3, bytes_of(prekey)).ok());
  // Deleted values must not linger either (secure_delete; they were sealed anyway).
  ASSERT_TRUE(store->set_setting_text("gone", setting).ok());
  ASSERT_TRUE(store->delete_setting("gone").ok());
  check_files("while open (WAL)");
  store.reset();  // the last connection checkpoints the WAL into profile.db
  check_files("after close");
  EXPECT_GT(read_file(profile() / "profile.db").size(), 0u);
}

// ---- settings ----

TEST_F(LocalStoreTest, SettingsRoundTrip) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto missing = store->setting("nothing");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  EXPECT_FALSE(store->setting_text("nothing")->has_value());
  EXPECT_FALSE(store->setting_int("nothing")->has_value());

  const Bytes blob{0, 1, 2, 0xff, 0};
  ASSERT_TRUE(store->set_setting("blob", blob).ok());
  auto got = store->setting("blob");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_TRUE(std::ranges::equal((*got)->view(), blob));

  ASSERT_TRUE(store->set_setting_text("text", "first").ok());
  ASSERT_TRUE(store->set_setting_text("text", "second").ok());
  EXPECT_EQ(*store->setting_text("text"), std::optional<std::string>("second"));
  ASSERT_TRUE(store->set_setting_text("empty", "").ok());
  EXPECT_EQ(*store->setting_text("empty"), std::optional<std::string>(""));

  for (const std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1} << 40,
                               std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()}) {
    ASSERT_TRUE(store->set_setting_int("int", v).ok());
    EXPECT_EQ(*store->setting_int("int"), std::optional<std::int64_t>(v));
  }
  EXPECT_EQ(store->setting_int("text").error(), make_error_code(Errc::corrupt_record));  // not 8 bytes

  ASSERT_TRUE(store->delete_setting("text").ok());
  EXPECT_FALSE(store->setting_text("text")->has_value());
  EXPECT_TRUE(store->delete_setting("text").ok());  // deleting nothing is fine

  // The store's own names are reserved.
  EXPECT_EQ(store->set_setting_text("__check", "x").error(), make_error_code(Errc::invalid_argument));
  EXPECT_EQ(store->delete_setting("__check").error(), make_error_code(Errc::invalid_argument));
  EXPECT_EQ(store->set_setting_text("", "x").error(), make_error_code(Errc::invalid_argument));
}

// ---- this device's identity ----

TEST_F(LocalStoreTest, LocalIdentityRoundTrip) {
  const auto pair = protocol::IdentityKeyPair::generate(rng_);
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    EXPECT_FALSE(*store->has_local_identity());
    EXPECT_EQ(store->identity_key_pair().error(), make_error_code(Errc::not_registered));
    EXPECT_EQ(store->local_registration_id().error(), make_error_code(Errc::not_registered));
    ASSERT_TRUE(store->set_local_identity(pair, 12345).ok());
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(*store->has_local_identity());
  auto got = store->identity_key_pair();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->public_key, pair.public_key);
  EXPECT_EQ(got->private_key.scalar(), pair.private_key.scalar());
  EXPECT_EQ(*store->local_registration_id(), 12345u);
}

// ---- protocol stores ----

TEST_F(LocalStoreTest, PreKeysRoundTrip) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->pre_key_count(), 0u);
  EXPECT_FALSE(store->load_pre_key(1)->has_value());
  const auto record = protocol::PreKeyRecord::generate(1, rng_).serialize();
  ASSERT_TRUE(store->store_pre_key(1, record).ok());
  ASSERT_TRUE(store->store_pre_key(protocol::kLastResortPreKeyId, bytes_of("last resort")).ok());
  EXPECT_EQ(*store->pre_key_count(), 2u);
  auto got = store->load_pre_key(1);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(**got, record);
  ASSERT_TRUE(store->store_pre_key(1, bytes_of("replaced")).ok());
  EXPECT_EQ(**store->load_pre_key(1), bytes_of("replaced"));
  ASSERT_TRUE(store->remove_pre_key(1).ok());
  EXPECT_FALSE(store->load_pre_key(1)->has_value());
  EXPECT_EQ(*store->pre_key_count(), 1u);
  EXPECT_EQ(**store->load_pre_key(protocol::kLastResortPreKeyId), bytes_of("last resort"));
}

TEST_F(LocalStoreTest, SignedPreKeysRoundTripOldestFirst) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  clock_.set_ms(2000);
  ASSERT_TRUE(store->store_signed_pre_key(9, bytes_of("nine")).ok());
  clock_.set_ms(1000);
  ASSERT_TRUE(store->store_signed_pre_key(5, bytes_of("five")).ok());
  clock_.set_ms(3000);
  ASSERT_TRUE(store->store_signed_pre_key(7, bytes_of("seven")).ok());
  ASSERT_TRUE(store->store_signed_pre_key(9, bytes_of("nine again")).ok());  // keeps created_ms

  auto list = store->signed_pre_keys();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].id, 5u);
  EXPECT_EQ((*list)[0].created_ms, 1000);
  EXPECT_EQ((*list)[1].id, 9u);
  EXPECT_EQ((*list)[1].created_ms, 2000);
  EXPECT_EQ((*list)[2].id, 7u);
  EXPECT_EQ(**store->load_signed_pre_key(9), bytes_of("nine again"));
  ASSERT_TRUE(store->remove_signed_pre_key(5).ok());
  EXPECT_FALSE(store->load_signed_pre_key(5)->has_value());
  EXPECT_EQ(store->signed_pre_keys()->size(), 2u);
}

TEST_F(LocalStoreTest, SessionsRoundTripAndDeviceIds) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->load_session({"1001", 1})->has_value());
  EXPECT_TRUE(store->device_ids("1001")->empty());
  ASSERT_TRUE(store->store_session({"1001", 3}, bytes_of("a3")).ok());
  ASSERT_TRUE(store->store_session({"1001", 1}, bytes_of("a1")).ok());
  ASSERT_TRUE(store->store_session({"1002", 2}, bytes_of("b2")).ok());
  ASSERT_TRUE(store->store_session({"1001", 1}, bytes_of("a1 v2")).ok());
  EXPECT_EQ(*store->device_ids("1001"), (std::vector<std::uint32_t>{1, 3}));
  EXPECT_EQ(*store->device_ids("1002"), (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(**store->load_session({"1001", 1}), bytes_of("a1 v2"));
  EXPECT_EQ(**store->load_session({"1002", 2}), bytes_of("b2"));
  ASSERT_TRUE(store->delete_session({"1001", 1}).ok());
  EXPECT_FALSE(store->load_session({"1001", 1})->has_value());
  EXPECT_EQ(*store->device_ids("1001"), (std::vector<std::uint32_t>{3}));
}

TEST_F(LocalStoreTest, SenderKeysPerGroupAndDelete) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const SenderKeyName g1_a{"g1", {"1001", 1}}, g1_b{"g1", {"1002", 1}}, g2_a{"g2", {"1001", 1}};
  EXPECT_FALSE(store->load_sender_key(g1_a)->has_value());
  ASSERT_TRUE(store->store_sender_key(g1_a, bytes_of("g1 a")).ok());
  ASSERT_TRUE(store->store_sender_key(g1_b, bytes_of("g1 b")).ok());
  ASSERT_TRUE(store->store_sender_key(g2_a, bytes_of("g2 a")).ok());
  EXPECT_EQ(**store->load_sender_key(g1_a), bytes_of("g1 a"));
  EXPECT_EQ(**store->load_sender_key(g1_b), bytes_of("g1 b"));
  EXPECT_EQ(**store->load_sender_key(g2_a), bytes_of("g2 a"));
  ASSERT_TRUE(store->store_sender_key(g1_a, bytes_of("g1 a v2")).ok());
  EXPECT_EQ(**store->load_sender_key(g1_a), bytes_of("g1 a v2"));

  ASSERT_TRUE(store->delete_sender_keys("g1").ok());
  EXPECT_FALSE(store->load_sender_key(g1_a)->has_value());
  EXPECT_FALSE(store->load_sender_key(g1_b)->has_value());
  EXPECT_EQ(**store->load_sender_key(g2_a), bytes_of("g2 a"));
}

// ---- trust ----

TEST_F(LocalStoreTest, TrustOnFirstUse) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const ProtocolAddress alice{"1001", 1};
  const auto key = new_key();
  EXPECT_FALSE(store->identity(alice)->has_value());
  EXPECT_TRUE(*store->is_trusted_identity(alice, key, Direction::sending));  // unknown: TOFU

  clock_.set_ms(5000);
  auto changed = store->save_identity(alice, key);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(**store->identity(alice), key);
  auto info = store->identity_info(alice);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->state, TrustState::trusted);
  EXPECT_EQ((*info)->first_seen_ms, 5000);
  EXPECT_FALSE((*info)->previous_key.has_value());
  EXPECT_TRUE(*store->is_trusted_identity(alice, key, Direction::sending));
  EXPECT_FALSE(*store->is_trusted_identity(alice, new_key(), Direction::sending));
  EXPECT_TRUE(*store->is_trusted_identity(alice, new_key(), Direction::receiving));

  clock_.set_ms(6000);
  EXPECT_FALSE(*store->save_identity(alice, key));  // same key again: no change
  EXPECT_EQ((*store->identity_info(alice))->first_seen_ms, 5000);
}

TEST_F(LocalStoreTest, TrustStateEditedInTheFileDoesNotUnblock) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const ProtocolAddress alice{"1001", 1};
  ASSERT_TRUE(store->save_identity(alice, new_key()).ok());
  ASSERT_TRUE(store->save_identity(alice, new_key()).ok());  // changed: blocked
  ASSERT_EQ((*store->identity_info(alice))->state, TrustState::changed_blocked);
  // Someone with write access to the file but not the key marks it trusted.
  ASSERT_TRUE(store->db().exec("UPDATE identities SET state = 0 WHERE name = '1001'").ok());
  auto info = store->identity_info(alice);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error(), make_error_code(Errc::corrupt_record));
  auto trusted = store->is_trusted_identity(alice, new_key(), Direction::sending);
  EXPECT_FALSE(trusted.ok() && *trusted);
}

TEST_F(LocalStoreTest, IdentityChangeBlocksUntilAccepted) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->identity_change_policy(), IdentityChangePolicy::block_until_accepted);
  const ProtocolAddress alice{"1001", 1};
  const auto old_key = new_key();
  const auto replacement = new_key();
  ASSERT_FALSE(*store->save_identity(alice, old_key));
  clock_.set_ms(9000);
  auto changed = store->save_identity(alice, replacement);
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(*changed);
  auto info = *store->identity_info(alice);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->key, replacement);
  EXPECT_EQ(info->state, TrustState::changed_blocked);
  EXPECT_EQ(info->previous_key, std::optional<crypto::PublicKey>(old_key));
  EXPECT_EQ(info->first_seen_ms, 9000);
  EXPECT_FALSE(*store->is_trusted_identity(alice, replacement, Direction::sending));
  EXPECT_FALSE(*store->is_trusted_identity(alice, old_key, Direction::sending));
  EXPECT_TRUE(*store->is_trusted_identity(alice, replacement, Direction::receiving));

  ASSERT_TRUE(store->accept_identity(alice).ok());
  EXPECT_EQ((*store->identity_info(alice))->state, TrustState::trusted);
  EXPECT_TRUE(*store->is_trusted_identity(alice, replacement, Direction::sending));
  ASSERT_TRUE(store->accept_identity(alice).ok());  // nothing to accept: no-op
  EXPECT_EQ((*store->identity_info(alice))->state, TrustState::trusted);

  // A verified contact whose key changes is blocked as well, and loses "verified".
  ASSERT_TRUE(store->set_verified(alice, true).ok());
  const auto third = new_key();
  EXPECT_TRUE(*store->record_identity_change(alice, third));
  EXPECT_EQ((*store->identity_info(alice))->state, TrustState::changed_blocked);
  EXPECT_EQ((*store->identity_info(alice))->previous_key, std::optional<crypto::PublicKey>(replacement));
}

TEST_F(LocalStoreTest, IdentityChangeWarnAndTrust) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  store->set_identity_change_policy(IdentityChangePolicy::warn_and_trust);
  const ProtocolAddress alice{"1001", 2};
  const auto old_key = new_key();
  const auto next = new_key();
  ASSERT_FALSE(*store->save_identity(alice, old_key));
  EXPECT_TRUE(*store->save_identity(alice, next));
  auto info = *store->identity_info(alice);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, TrustState::trusted);
  EXPECT_EQ(info->previous_key, std::optional<crypto::PublicKey>(old_key));
  EXPECT_TRUE(*store->is_trusted_identity(alice, next, Direction::sending));

  // A verified key that changes is trusted but no longer verified.
  ASSERT_TRUE(store->set_verified(alice, true).ok());
  EXPECT_TRUE(*store->record_identity_change(alice, new_key()));
  EXPECT_EQ((*store->identity_info(alice))->state, TrustState::trusted);
}

TEST_F(LocalStoreTest, RecordIdentityChange) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const ProtocolAddress bob{"1002", 1};
  const auto key = new_key();
  EXPECT_FALSE(*store->record_identity_change(bob, key));  // unknown: stored, trusted
  EXPECT_EQ((*store->identity_info(bob))->state, TrustState::trusted);
  EXPECT_FALSE(*store->record_identity_change(bob, key));  // same key
  EXPECT_TRUE(*store->record_identity_change(bob, new_key()));
  EXPECT_EQ((*store->identity_info(bob))->state, TrustState::changed_blocked);
  EXPECT_EQ((*store->identity_info(bob))->previous_key, std::optional<crypto::PublicKey>(key));
}

TEST_F(LocalStoreTest, AcceptAndVerify) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const ProtocolAddress carol{"1003", 1};
  EXPECT_EQ(store->accept_identity(carol).error(), make_error_code(Errc::unknown_contact));
  EXPECT_EQ(store->set_verified(carol, true).error(), make_error_code(Errc::unknown_contact));

  const auto key = new_key();
  ASSERT_FALSE(*store->save_identity(carol, key));
  ASSERT_TRUE(store->set_verified(carol, true).ok());
  EXPECT_EQ((*store->identity_info(carol))->state, TrustState::verified);
  EXPECT_TRUE(*store->is_trusted_identity(carol, key, Direction::sending));
  ASSERT_TRUE(store->accept_identity(carol).ok());  // does not downgrade
  EXPECT_EQ((*store->identity_info(carol))->state, TrustState::verified);
  ASSERT_TRUE(store->set_verified(carol, false).ok());
  EXPECT_EQ((*store->identity_info(carol))->state, TrustState::trusted);

  // Unverifying never unblocks a changed key; verifying the new key accepts it.
  const auto changed = new_key();
  ASSERT_TRUE(*store->save_identity(carol, changed));
  ASSERT_TRUE(store->set_verified(carol, false).ok());
  EXPECT_EQ((*store->identity_info(carol))->state, TrustState::changed_blocked);
  ASSERT_TRUE(store->set_verified(carol, true).ok());
  EXPECT_EQ((*store->identity_info(carol))->state, TrustState::verified);
  EXPECT_TRUE(*store->is_trusted_identity(carol, changed, Direction::sending));
}

TEST_F(LocalStoreTest, IdentitiesOfAllDevices) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const auto k3 = new_key(), k1 = new_key(), other = new_key();
  ASSERT_TRUE(store->save_identity({"1001", 3}, k3).ok());
  ASSERT_TRUE(store->save_identity({"1001", 1}, k1).ok());
  ASSERT_TRUE(store->save_identity({"1002", 1}, other).ok());
  auto all = store->identities_of("1001");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].first, 1u);
  EXPECT_EQ((*all)[0].second.key, k1);
  EXPECT_EQ((*all)[1].first, 3u);
  EXPECT_EQ((*all)[1].second.key, k3);
  EXPECT_TRUE(store->identities_of("9999")->empty());
}

// ---- transactions ----

TEST_F(LocalStoreTest, TransactionCommits) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  {
    auto txn = store->begin();
    ASSERT_TRUE(txn.ok());
    EXPECT_TRUE(store->db().in_transaction());
    ASSERT_TRUE(store->store_pre_key(1, bytes_of("one")).ok());
    ASSERT_TRUE(store->set_setting_text("a", "b").ok());
    // One level only.
    EXPECT_EQ(store->begin().error(), make_error_code(Errc::invalid_argument));
    ASSERT_TRUE(txn->commit().ok());
    EXPECT_EQ(txn->commit().error(), make_error_code(Errc::invalid_argument));
  }
  EXPECT_FALSE(store->db().in_transaction());
  store.reset();
  store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(**store->load_pre_key(1), bytes_of("one"));
  EXPECT_EQ(*store->setting_text("a"), std::optional<std::string>("b"));
}

TEST_F(LocalStoreTest, TransactionRollsBackUnlessCommitted) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->store_pre_key(1, bytes_of("kept")).ok());
  {
    auto txn = store->begin();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(store->store_pre_key(1, bytes_of("overwritten")).ok());
    ASSERT_TRUE(store->store_pre_key(2, bytes_of("two")).ok());
    ASSERT_TRUE(store->set_local_identity(protocol::IdentityKeyPair::generate(rng_), 7).ok());
    ASSERT_TRUE(store->save_identity({"1001", 1}, new_key()).ok());
    // Moving the guard keeps one transaction.
    LocalStore::Transaction moved(std::move(*txn));
    EXPECT_TRUE(store->db().in_transaction());
  }
  EXPECT_FALSE(store->db().in_transaction());
  EXPECT_EQ(**store->load_pre_key(1), bytes_of("kept"));
  EXPECT_FALSE(store->load_pre_key(2)->has_value());
  EXPECT_FALSE(*store->has_local_identity());
  EXPECT_FALSE(store->identity({"1001", 1})->has_value());

  // A new transaction can start after the rollback.
  auto again = store->begin();
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(store->store_pre_key(2, bytes_of("two")).ok());
  ASSERT_TRUE(again->commit().ok());
  EXPECT_EQ(**store->load_pre_key(2), bytes_of("two"));
}

}  // namespace
}  // namespace postern::client
