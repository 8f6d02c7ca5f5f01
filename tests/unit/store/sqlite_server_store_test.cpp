// Tests for postern/store/sqlite_server_store.h: every interface of server_store.h on SQLite,
// including cascades, atomic prekey consumption across connections, batch idempotency, ordering,
// durability across reopen, limits and hostile database files.
#include "postern/store/sqlite_server_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <thread>

#include "store/temp_dir.h"

namespace postern::store {
namespace {

using store_test::TempDir;

Bytes filled(std::size_t n, std::uint8_t v) {
  return Bytes(n, v);
}
Bytes key33(std::uint8_t v) {
  Bytes k = filled(kPublicKeyBytes, v);
  k[0] = 0x05;
  return k;
}
Bytes token(std::uint8_t v) {
  return filled(kTokenHashBytes, v);
}
Bytes client_id(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

class StoreServer : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = SqliteServerStore::open(path());
    ASSERT_TRUE(opened.ok()) << opened.error().message();
    store_ = std::move(*opened);
  }

  std::string path() const { return dir_.file("server.db"); }

  void reopen() {
    store_.reset();
    auto opened = SqliteServerStore::open(path());
    ASSERT_TRUE(opened.ok()) << opened.error().message();
    store_ = std::move(*opened);
  }

  std::int64_t new_account(std::string_view email) {
    auto id = store_->create_account(email, "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", 1000);
    EXPECT_TRUE(id.ok()) << id.error().message();
    return id.ok() ? *id : 0;
  }

  std::uint32_t new_device(std::int64_t account, std::uint8_t key_byte = 1) {
    auto id = store_->add_device(account, key33(key_byte), 4242, "phone", 2000);
    EXPECT_TRUE(id.ok()) << id.error().message();
    return id.ok() ? *id : 0;
  }

  SignedPreKey signed_key(std::uint32_t id) {
    return SignedPreKey{id, key33(static_cast<std::uint8_t>(id)), filled(kSignatureBytes, 0xAB), 3000 + id};
  }

  static std::vector<OneTimePreKey> one_time_keys(std::uint32_t first, std::size_t n) {
    std::vector<OneTimePreKey> keys;
    for (std::size_t i = 0; i < n; ++i) {
      const auto id = first + static_cast<std::uint32_t>(i);
      keys.push_back(OneTimePreKey{id, key33(static_cast<std::uint8_t>(id))});
    }
    return keys;
  }

  static Envelope envelope(std::int64_t to, std::uint32_t to_device, std::int64_t from,
                           std::uint32_t from_device, std::string_view id,
                           std::int64_t expires_ms = 1'000'000) {
    Envelope e;
    e.recipient_account = to;
    e.recipient_device = to_device;
    e.sender_account = from;
    e.sender_device = from_device;
    e.client_id = client_id(id);
    e.type = 3;
    e.timestamp_ms = 5000;
    e.content = Bytes(id.begin(), id.end());
    e.content.push_back(0);
    e.expires_ms = expires_ms;
    return e;
  }

  TempDir dir_;
  std::unique_ptr<SqliteServerStore> store_;
};

// ---- accounts ----

TEST_F(StoreServer, CreatesFindsAndGetsAccounts) {
  const std::int64_t a = new_account("alice@example.org");
  const std::int64_t b = new_account("bob@example.org");
  EXPECT_GT(a, 0);
  EXPECT_GT(b, a);
  auto found = store_->find_account_by_email("alice@example.org");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->id, a);
  EXPECT_EQ(found->email, "alice@example.org");
  EXPECT_EQ(found->created_ms, 1000);
  auto got = store_->get_account(b);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->email, "bob@example.org");
  EXPECT_EQ(store_->get_account(999).error(), Errc::not_found);
  EXPECT_EQ(store_->find_account_by_email("carol@example.org").error(), Errc::not_found);
}

TEST_F(StoreServer, EmailIsUniqueCaseInsensitively) {
  new_account("alice@example.org");
  EXPECT_EQ(store_->create_account("alice@example.org", "h", 1).error(), Errc::email_taken);
  // The schema's COLLATE NOCASE enforces it even if a caller forgot to normalise.
  EXPECT_EQ(store_->create_account("ALICE@Example.ORG", "h", 1).error(), Errc::email_taken);
  auto found = store_->find_account_by_email("Alice@EXAMPLE.org");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->email, "alice@example.org");
}

TEST_F(StoreServer, RejectsBadAccountValues) {
  EXPECT_EQ(store_->create_account("", "h", 1).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->create_account(std::string(255, 'a'), "h", 1).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->create_account("a@b", "", 1).error(), Errc::invalid_argument);
  EXPECT_TRUE(store_->create_account(std::string(250, 'a') + "@b.c", "h", 1).ok());  // 254 bytes
}

TEST_F(StoreServer, UpdatesPasswordHash) {
  const std::int64_t a = new_account("alice@example.org");
  ASSERT_TRUE(store_->set_password_hash(a, "new-hash").ok());
  EXPECT_EQ(store_->get_account(a)->password_hash, "new-hash");
  EXPECT_EQ(store_->set_password_hash(a + 100, "x").error(), Errc::not_found);
}

TEST_F(StoreServer, DeletingAnAccountDeletesEverythingItOwns) {
  const std::int64_t a = new_account("alice@example.org");
  const std::int64_t b = new_account("bob@example.org");
  const std::uint32_t a1 = new_device(a);
  const std::uint32_t b1 = new_device(b);
  ASSERT_TRUE(store_->put_token(token(1), a, a1, 1).ok());
  ASSERT_TRUE(store_->set_signed_prekey(a, a1, signed_key(1)).ok());
  ASSERT_TRUE(store_->add_one_time_prekeys(a, a1, one_time_keys(1, 5)).ok());
  ASSERT_TRUE(store_->create_upload("upload-a", a, 100, 1, 10'000).ok());
  ASSERT_TRUE(store_->create_upload("upload-b", b, 100, 1, 10'000).ok());
  const std::vector<Envelope> batch = {envelope(a, a1, b, b1, "to-alice"), envelope(b, b1, a, a1, "to-bob")};
  ASSERT_TRUE(store_->enqueue(batch).ok());

  auto uploads = store_->delete_account(a);
  ASSERT_TRUE(uploads.ok()) << uploads.error().message();
  EXPECT_EQ(*uploads, std::vector<std::string>{"upload-a"});

  EXPECT_EQ(store_->get_account(a).error(), Errc::not_found);
  EXPECT_TRUE(store_->list_devices(a)->empty());
  EXPECT_EQ(store_->find_token(token(1)).error(), Errc::not_found);
  EXPECT_EQ(store_->get_signed_prekey(a, a1).error(), Errc::not_found);
  EXPECT_EQ(*store_->one_time_prekey_count(a, a1), 0);
  EXPECT_EQ(*store_->queued_count(a, a1), 0);
  EXPECT_EQ(store_->get_upload("upload-a").error(), Errc::not_found);
  // Kept: what Alice sent to Bob, and Bob's own data.
  EXPECT_EQ(*store_->queued_count(b, b1), 1);
  EXPECT_TRUE(store_->get_upload("upload-b").ok());
  // Nothing is left in the tables Alice had rows in.
  auto st = store_->database().prepare(
      "SELECT (SELECT count(*) FROM devices WHERE account_id = ?1) + (SELECT count(*) FROM tokens) + "
      "(SELECT count(*) FROM signed_prekeys WHERE account_id = ?1) + "
      "(SELECT count(*) FROM one_time_prekeys) + (SELECT count(*) FROM messages WHERE recipient_account = "
      "?1)");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(st->bind_int64(1, a).ok());
  ASSERT_TRUE(*st->step());
  EXPECT_EQ(st->column_int64(0), 0);

  EXPECT_EQ(store_->delete_account(a).error(), Errc::not_found);
  // Ids are never reused, so Bob's queued message from Alice cannot be attributed to a newcomer.
  EXPECT_GT(new_account("carol@example.org"), b);
  // The e-mail is free again.
  EXPECT_TRUE(store_->create_account("alice@example.org", "h", 2).ok());
}

// ---- devices ----

TEST_F(StoreServer, DevicesGetTheLowestFreeIdFromOne) {
  const std::int64_t a = new_account("alice@example.org");
  EXPECT_EQ(new_device(a, 1), 1u);
  EXPECT_EQ(new_device(a, 2), 2u);
  EXPECT_EQ(new_device(a, 3), 3u);
  ASSERT_TRUE(store_->remove_device(a, 2).ok());
  EXPECT_EQ(new_device(a, 4), 2u);
  EXPECT_EQ(new_device(a, 5), 4u);
  auto devices = store_->list_devices(a);
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 4u);
  EXPECT_EQ((*devices)[0].id, 1u);
  EXPECT_EQ((*devices)[1].id, 2u);
  EXPECT_EQ((*devices)[1].identity_key, key33(4));
  EXPECT_EQ((*devices)[1].registration_id, 4242u);
  EXPECT_EQ((*devices)[1].name, "phone");
  EXPECT_EQ((*devices)[3].id, 4u);
  // Another account numbers its own devices.
  const std::int64_t b = new_account("bob@example.org");
  EXPECT_EQ(new_device(b), 1u);
}

TEST_F(StoreServer, DeviceValidationAndMissingAccount) {
  const std::int64_t a = new_account("alice@example.org");
  EXPECT_EQ(store_->add_device(a, filled(32, 5), 1, "x", 1).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->add_device(a, key33(1), 1, std::string(kMaxDeviceNameBytes + 1, 'n'), 1).error(),
            Errc::invalid_argument);
  EXPECT_EQ(store_->add_device(a + 50, key33(1), 1, "x", 1).error(), Errc::not_found);
  EXPECT_EQ(store_->add_device(a, key33(1), 0xFFFFFFFFu, "", 1).value(), 1u);
  EXPECT_EQ(store_->get_device(a, 1)->registration_id, 0xFFFFFFFFu);
  EXPECT_EQ(store_->get_device(a, 2).error(), Errc::not_found);
}

TEST_F(StoreServer, TouchUpdatesLastSeen) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d = new_device(a);
  ASSERT_TRUE(store_->touch_device(a, d, 99'000).ok());
  auto device = store_->get_device(a, d);
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->created_ms, 2000);
  EXPECT_EQ(device->last_seen_ms, 99'000);
  EXPECT_EQ(store_->touch_device(a, d + 1, 1).error(), Errc::not_found);
}

TEST_F(StoreServer, RemovingADeviceRemovesItsTokensKeysAndQueueOnly) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d1 = new_device(a, 1);
  const std::uint32_t d2 = new_device(a, 2);
  for (std::uint32_t d : {d1, d2}) {
    ASSERT_TRUE(store_->put_token(token(static_cast<std::uint8_t>(d)), a, d, 1).ok());
    ASSERT_TRUE(store_->set_signed_prekey(a, d, signed_key(d)).ok());
    ASSERT_TRUE(store_->add_one_time_prekeys(a, d, one_time_keys(1, 3)).ok());
    const std::vector<Envelope> batch = {envelope(a, d, a, d == d1 ? d2 : d1, "m")};
    ASSERT_TRUE(store_->enqueue(batch).ok());
  }
  ASSERT_TRUE(store_->remove_device(a, d2).ok());
  EXPECT_EQ(store_->remove_device(a, d2).error(), Errc::not_found);
  EXPECT_EQ(store_->find_token(token(static_cast<std::uint8_t>(d2))).error(), Errc::not_found);
  EXPECT_EQ(store_->get_signed_prekey(a, d2).error(), Errc::not_found);
  EXPECT_EQ(*store_->one_time_prekey_count(a, d2), 0);
  EXPECT_EQ(*store_->queued_count(a, d2), 0);
  EXPECT_TRUE(store_->find_token(token(static_cast<std::uint8_t>(d1))).ok());
  EXPECT_TRUE(store_->get_signed_prekey(a, d1).ok());
  EXPECT_EQ(*store_->one_time_prekey_count(a, d1), 3);
  // Sent by the removed device to d1: still queued for d1.
  EXPECT_EQ(*store_->queued_count(a, d1), 1);
}

// ---- tokens ----

TEST_F(StoreServer, TokensMapHashesToDevices) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d1 = new_device(a, 1);
  const std::uint32_t d2 = new_device(a, 2);
  ASSERT_TRUE(store_->put_token(token(1), a, d1, 1).ok());
  ASSERT_TRUE(store_->put_token(token(2), a, d1, 1).ok());
  ASSERT_TRUE(store_->put_token(token(3), a, d2, 1).ok());
  auto owner = store_->find_token(token(3));
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(owner->account_id, a);
  EXPECT_EQ(owner->device_id, d2);
  EXPECT_EQ(store_->put_token(token(1), a, d2, 1).error(), Errc::constraint);
  EXPECT_EQ(store_->put_token(token(9), a, 77, 1).error(), Errc::not_found);
  EXPECT_EQ(store_->put_token(filled(31, 1), a, d1, 1).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->find_token(filled(5, 1)).error(), Errc::not_found);

  EXPECT_TRUE(*store_->delete_token(token(3)));
  EXPECT_FALSE(*store_->delete_token(token(3)));
  EXPECT_EQ(*store_->delete_device_tokens(a, d1), 2);
  EXPECT_EQ(store_->find_token(token(1)).error(), Errc::not_found);
  EXPECT_EQ(*store_->delete_device_tokens(a, d1), 0);
}

// ---- keys ----

TEST_F(StoreServer, SignedPreKeyIsSetAndRotated) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d = new_device(a);
  EXPECT_EQ(store_->get_signed_prekey(a, d).error(), Errc::not_found);
  ASSERT_TRUE(store_->set_signed_prekey(a, d, signed_key(1)).ok());
  ASSERT_TRUE(store_->set_signed_prekey(a, d, signed_key(2)).ok());
  auto k = store_->get_signed_prekey(a, d);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->id, 2u);
  EXPECT_EQ(k->public_key, key33(2));
  EXPECT_EQ(k->signature, filled(kSignatureBytes, 0xAB));
  EXPECT_EQ(k->timestamp_ms, 3002);

  SignedPreKey bad = signed_key(3);
  bad.signature.pop_back();
  EXPECT_EQ(store_->set_signed_prekey(a, d, bad).error(), Errc::invalid_argument);
  bad = signed_key(3);
  bad.public_key.push_back(0);
  EXPECT_EQ(store_->set_signed_prekey(a, d, bad).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->set_signed_prekey(a, d + 1, signed_key(3)).error(), Errc::not_found);
}

TEST_F(StoreServer, OneTimePreKeyBatchesAreLimitedTo100) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d = new_device(a);
  EXPECT_EQ(store_->add_one_time_prekeys(a, d, one_time_keys(1, 101)).error(), Errc::too_large);
  EXPECT_EQ(*store_->one_time_prekey_count(a, d), 0);
  ASSERT_TRUE(store_->add_one_time_prekeys(a, d, one_time_keys(1, 100)).ok());
  ASSERT_TRUE(store_->add_one_time_prekeys(a, d, one_time_keys(101, 100)).ok());
  EXPECT_EQ(*store_->one_time_prekey_count(a, d), 200);
  EXPECT_TRUE(store_->add_one_time_prekeys(a, d, {}).ok());
}

TEST_F(StoreServer, OneTimePreKeyDuplicatesInABatchAreRejectedStoredOnesReplaced) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d = new_device(a);
  auto dup = one_time_keys(1, 3);
  dup[2].id = 1;
  EXPECT_EQ(store_->add_one_time_prekeys(a, d, dup).error(), Errc::invalid_argument);
  EXPECT_EQ(*store_->one_time_prekey_count(a, d), 0);

  ASSERT_TRUE(store_->add_one_time_prekeys(a, d, one_time_keys(1, 3)).ok());
  std::vector<OneTimePreKey> again = {OneTimePreKey{1, key33(0x77)}};
  ASSERT_TRUE(store_->add_one_time_prekeys(a, d, again).ok());
  EXPECT_EQ(*store_->one_time_prekey_count(a, d), 3);
  ASSERT_TRUE(store_->set_signed_prekey(a, d, signed_key(1)).ok());
  auto bundle = store_->take_bundle(a, d);
  ASSERT_TRUE(bundle.ok());
  ASSERT_TRUE(bundle->one_time_pre_key.has_value());
  EXPECT_EQ(bundle->one_time_pre_key->id, 1u);
  EXPECT_EQ(bundle->one_time_pre_key->public_key, key33(0x77));

  auto bad = one_time_keys(10, 2);
  bad[1].public_key.resize(32);
  EXPECT_EQ(store_->add_one_time_prekeys(a, d, bad).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->add_one_time_prekeys(a, d + 1, one_time_keys(1, 2)).error(), Errc::not_found);
}

TEST_F(StoreServer, TakeBundleConsumesLowestIdThenFallsBackToSignedPreKey) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d = new_device(a, 9);
  EXPECT_EQ(store_->take_bundle(a, d).error(), Errc::not_found);  // no signed prekey yet
  ASSERT_TRUE(store_->set_signed_prekey(a, d, signed_key(7)).ok());
  auto keys = one_time_keys(5, 3);
  std::reverse(keys.begin(), keys.end());
  ASSERT_TRUE(store_->add_one_time_prekeys(a, d, keys).ok());

  for (std::uint32_t expected : {5u, 6u, 7u}) {
    auto b = store_->take_bundle(a, d);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b->device_id, d);
    EXPECT_EQ(b->registration_id, 4242u);
    EXPECT_EQ(b->identity_key, key33(9));
    EXPECT_EQ(b->signed_pre_key.id, 7u);
    ASSERT_TRUE(b->one_time_pre_key.has_value());
    EXPECT_EQ(b->one_time_pre_key->id, expected);
    EXPECT_EQ(b->one_time_pre_key->public_key, key33(static_cast<std::uint8_t>(expected)));
    EXPECT_EQ(b->one_time_pre_keys_left, static_cast<std::int64_t>(7 - expected));
  }
  auto last = store_->take_bundle(a, d);
  ASSERT_TRUE(last.ok());
  EXPECT_FALSE(last->one_time_pre_key.has_value());
  EXPECT_EQ(last->one_time_pre_keys_left, 0);
  EXPECT_EQ(last->signed_pre_key.signature, filled(kSignatureBytes, 0xAB));
  EXPECT_EQ(store_->take_bundle(a, d + 1).error(), Errc::not_found);
}

TEST_F(StoreServer, TakeBundlesCoversEveryDeviceWithASignedPreKey) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d1 = new_device(a, 1);
  const std::uint32_t d2 = new_device(a, 2);
  new_device(a, 3);  // no signed prekey yet: not in the answer
  ASSERT_TRUE(store_->set_signed_prekey(a, d1, signed_key(1)).ok());
  ASSERT_TRUE(store_->set_signed_prekey(a, d2, signed_key(2)).ok());
  ASSERT_TRUE(store_->add_one_time_prekeys(a, d2, one_time_keys(1, 2)).ok());
  auto bundles = store_->take_bundles(a);
  ASSERT_TRUE(bundles.ok());
  ASSERT_EQ(bundles->size(), 2u);
  EXPECT_EQ((*bundles)[0].device_id, d1);
  EXPECT_FALSE((*bundles)[0].one_time_pre_key.has_value());
  EXPECT_EQ((*bundles)[1].device_id, d2);
  EXPECT_EQ((*bundles)[1].one_time_pre_key->id, 1u);
  EXPECT_EQ((*bundles)[1].one_time_pre_keys_left, 1);
  EXPECT_TRUE(store_->take_bundles(a + 10)->empty());
}

TEST_F(StoreServer, ConcurrentConnectionsNeverHandOutTheSameOneTimePreKey) {
  const std::int64_t a = new_account("alice@example.org");
  const std::uint32_t d = new_device(a);
  ASSERT_TRUE(store_->set_signed_prekey(a, d, signed_key(1)).ok());
  constexpr std::uint32_t kKeys = 300;
  for (std::uint32_t first = 1; first <= kKeys; first += 100) {
    ASSERT_TRUE(store_->add_one_time_prekeys(a, d, one_time_keys(first, 100)).ok());
  }

  constexpr int kThreads = 2;
  constexpr int kTakesPerThread = 200;  // 400 takes for 300 keys: the last ones get none
  std::vector<std::vector<std::uint32_t>> taken(kThreads);
  std::vector<int> failures(kThreads, 0);
  std::vector<int> without_key(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      OpenOptions options;
      options.busy_timeout = std::chrono::milliseconds(30'000);
      auto own = SqliteServerStore::open(path(), options);  // its own connection
      if (!own.ok()) {
        ++failures[t];
        return;
      }
      for (int i = 0; i < kTakesPerThread; ++i) {
        auto b = (*own)->take_bundle(a, d);
        if (!b.ok()) {
          ++failures[t];
        } else if (b->one_time_pre_key) {
          taken[t].push_back(b->one_time_pre_key->id);
        } else {
          ++without_key[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  std::set<std::uint32_t> all;
  std::size_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], 0);
    total += taken[t].size();
    all.insert(taken[t].begin(), taken[t].end());
    // Each connection sees the keys in increasing order.
    EXPECT_TRUE(std::is_sorted(taken[t].begin(), taken[t].end()));
  }
  EXPECT_EQ(total, kKeys);       // every key handed out...
  EXPECT_EQ(all.size(), kKeys);  // ...exactly once
  EXPECT_EQ(without_key[0] + without_key[1], kThreads * kTakesPerThread - static_cast<int>(kKeys));
  EXPECT_EQ(*store_->one_time_prekey_count(a, d), 0);
}

// ---- message queue ----

class StoreServerQueue : public StoreServer {
 protected:
  void SetUp() override {
    StoreServer::SetUp();
    alice_ = new_account("alice@example.org");
    bob_ = new_account("bob@example.org");
    a1_ = new_device(alice_, 1);
    a2_ = new_device(alice_, 2);
    b1_ = new_device(bob_, 3);
  }
  std::int64_t alice_ = 0, bob_ = 0;
  std::uint32_t a1_ = 0, a2_ = 0, b1_ = 0;
};

TEST_F(StoreServerQueue, EnqueuesABatchAndFetchesInOrder) {
  std::vector<Envelope> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(envelope(bob_, b1_, alice_, a1_, "m" + std::to_string(i)));
  batch.push_back(envelope(alice_, a2_, bob_, b1_, "other-recipient"));
  auto ids = store_->enqueue(batch);
  ASSERT_TRUE(ids.ok()) << ids.error().message();
  ASSERT_EQ(ids->size(), batch.size());
  for (std::size_t i = 1; i < ids->size(); ++i) {
    EXPECT_GT((*ids)[i].server_id, (*ids)[i - 1].server_id);
    EXPECT_FALSE((*ids)[i].duplicate);
  }
  EXPECT_EQ(*store_->queued_count(bob_, b1_), 10);
  EXPECT_EQ(*store_->queued_count(alice_, a2_), 1);
  EXPECT_EQ(*store_->queued_count(alice_, a1_), 0);

  auto page1 = store_->fetch(bob_, b1_, 0, 4);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->size(), 4u);
  auto page2 = store_->fetch(bob_, b1_, page1->back().server_id, 100);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->size(), 6u);
  std::vector<StoredEnvelope> all = *page1;
  all.insert(all.end(), page2->begin(), page2->end());
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].server_id, (*ids)[i].server_id);
    const Envelope& got = all[i].envelope;
    const Envelope& sent = batch[i];
    EXPECT_EQ(got.recipient_account, bob_);
    EXPECT_EQ(got.recipient_device, b1_);
    EXPECT_EQ(got.sender_account, sent.sender_account);
    EXPECT_EQ(got.sender_device, sent.sender_device);
    EXPECT_EQ(got.client_id, sent.client_id);
    EXPECT_EQ(got.type, sent.type);
    EXPECT_EQ(got.timestamp_ms, sent.timestamp_ms);
    EXPECT_EQ(got.content, sent.content);
    EXPECT_EQ(got.expires_ms, sent.expires_ms);
  }
  EXPECT_TRUE(store_->fetch(bob_, b1_, all.back().server_id, 10)->empty());
  EXPECT_TRUE(store_->fetch(bob_, b1_, 0, 0)->empty());
}

TEST_F(StoreServerQueue, OrderPerSenderDeviceHoldsAcrossBatches) {
  for (int round = 0; round < 5; ++round) {
    std::vector<Envelope> batch = {envelope(bob_, b1_, alice_, a1_, "a1-" + std::to_string(round)),
                                   envelope(bob_, b1_, alice_, a2_, "a2-" + std::to_string(round))};
    ASSERT_TRUE(store_->enqueue(batch).ok());
  }
  auto got = store_->fetch(bob_, b1_, 0, 100);
  ASSERT_TRUE(got.ok());
  std::vector<std::string> from_a1;
  for (const auto& s : *got) {
    if (s.envelope.sender_device == a1_)
      from_a1.emplace_back(s.envelope.client_id.begin(), s.envelope.client_id.end());
  }
  EXPECT_EQ(from_a1, (std::vector<std::string>{"a1-0", "a1-1", "a1-2", "a1-3", "a1-4"}));
}

TEST_F(StoreServerQueue, RetriedEnvelopeIsStoredOnce) {
  std::vector<Envelope> first = {envelope(bob_, b1_, alice_, a1_, "x"),
                                 envelope(bob_, b1_, alice_, a1_, "y")};
  auto ids = store_->enqueue(first);
  ASSERT_TRUE(ids.ok());
  // The retry comes in a later batch, next to a new envelope, and once more inside the same batch.
  std::vector<Envelope> retry = {envelope(bob_, b1_, alice_, a1_, "z"), envelope(bob_, b1_, alice_, a1_, "x"),
                                 envelope(bob_, b1_, alice_, a1_, "z")};
  auto again = store_->enqueue(retry);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE((*again)[0].duplicate);
  EXPECT_TRUE((*again)[1].duplicate);
  EXPECT_EQ((*again)[1].server_id, (*ids)[0].server_id);
  EXPECT_TRUE((*again)[2].duplicate);
  EXPECT_EQ((*again)[2].server_id, (*again)[0].server_id);
  EXPECT_EQ(*store_->queued_count(bob_, b1_), 3);

  // The same client id from another sender device, or to another recipient, is a different message.
  std::vector<Envelope> distinct = {envelope(bob_, b1_, alice_, a2_, "x"),
                                    envelope(alice_, a2_, alice_, a1_, "x")};
  auto d = store_->enqueue(distinct);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE((*d)[0].duplicate);
  EXPECT_FALSE((*d)[1].duplicate);

  // A retry after the recipient acknowledged is still not delivered twice.
  ASSERT_TRUE(*store_->ack(bob_, b1_, (*ids)[0].server_id));
  std::vector<Envelope> late = {envelope(bob_, b1_, alice_, a1_, "x")};
  auto l = store_->enqueue(late);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE((*l)[0].duplicate);
  EXPECT_EQ((*l)[0].server_id, (*ids)[0].server_id);
  EXPECT_EQ(*store_->queued_count(bob_, b1_), 3);  // y, z and alice's a2 "x"
}

TEST_F(StoreServerQueue, InvalidEnvelopeRejectsTheWholeBatch) {
  std::vector<Envelope> batch = {envelope(bob_, b1_, alice_, a1_, "ok")};
  batch.push_back(envelope(bob_, b1_, alice_, a1_, "big"));
  batch.back().content.assign(kMaxEnvelopeContentBytes + 1, 0x42);
  EXPECT_EQ(store_->enqueue(batch).error(), Errc::too_large);
  batch.back().content.assign(kMaxEnvelopeContentBytes, 0x42);  // exactly the limit is fine
  ASSERT_TRUE(store_->enqueue(batch).ok());
  EXPECT_EQ(store_->fetch(bob_, b1_, 0, 10)->back().envelope.content.size(), kMaxEnvelopeContentBytes);

  std::vector<Envelope> bad_id = {envelope(bob_, b1_, alice_, a1_, "new"),
                                  envelope(bob_, b1_, alice_, a1_, "")};
  EXPECT_EQ(store_->enqueue(bad_id).error(), Errc::invalid_argument);
  bad_id[1].client_id.assign(kMaxClientIdBytes + 1, 'i');
  EXPECT_EQ(store_->enqueue(bad_id).error(), Errc::invalid_argument);
  bad_id[1].client_id.assign(kMaxClientIdBytes, 'i');
  EXPECT_TRUE(store_->enqueue(bad_id).ok());

  // An unknown recipient device aborts the batch after earlier envelopes were inserted: all rolled back.
  std::vector<Envelope> unknown = {envelope(bob_, b1_, alice_, a1_, "before"),
                                   envelope(bob_, 99, alice_, a1_, "nowhere")};
  const std::int64_t before = *store_->queued_count(bob_, b1_);
  EXPECT_EQ(store_->enqueue(unknown).error(), Errc::not_found);
  EXPECT_EQ(*store_->queued_count(bob_, b1_), before);
  EXPECT_TRUE(store_->enqueue({})->empty());
}

TEST_F(StoreServerQueue, AckDeletesOnlyTheRecipientsOwnEnvelopes) {
  std::vector<Envelope> batch = {envelope(bob_, b1_, alice_, a1_, "1"), envelope(bob_, b1_, alice_, a1_, "2"),
                                 envelope(alice_, a2_, bob_, b1_, "3")};
  auto ids = store_->enqueue(batch);
  ASSERT_TRUE(ids.ok());
  // Alice's device cannot acknowledge (delete) Bob's envelope.
  EXPECT_FALSE(*store_->ack(alice_, a2_, (*ids)[0].server_id));
  EXPECT_EQ(*store_->queued_count(bob_, b1_), 2);
  EXPECT_TRUE(*store_->ack(bob_, b1_, (*ids)[0].server_id));
  EXPECT_FALSE(*store_->ack(bob_, b1_, (*ids)[0].server_id));
  auto rest = store_->fetch(bob_, b1_, 0, 10);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ(rest->front().server_id, (*ids)[1].server_id);

  const std::vector<AckRef> acks = {
      {bob_, b1_, (*ids)[1].server_id}, {alice_, a2_, (*ids)[2].server_id}, {alice_, a2_, 123456}};
  EXPECT_EQ(*store_->ack_batch(acks), 2);
  EXPECT_EQ(*store_->queued_count(bob_, b1_), 0);
  EXPECT_EQ(*store_->queued_count(alice_, a2_), 0);
  EXPECT_EQ(*store_->ack_batch({}), 0);
}

TEST_F(StoreServerQueue, ServerIdsKeepIncreasingAfterTheNewestIsDeleted) {
  std::vector<Envelope> one = {envelope(bob_, b1_, alice_, a1_, "1")};
  auto first = store_->enqueue(one);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(*store_->ack(bob_, b1_, (*first)[0].server_id));
  reopen();
  std::vector<Envelope> two = {envelope(bob_, b1_, alice_, a1_, "2")};
  auto second = store_->enqueue(two);
  ASSERT_TRUE(second.ok());
  EXPECT_GT((*second)[0].server_id, (*first)[0].server_id);
}

TEST_F(StoreServerQueue, PurgeExpiredDropsOnlyExpiredEnvelopes) {
  std::vector<Envelope> batch = {envelope(bob_, b1_, alice_, a1_, "old", 100),
                                 envelope(bob_, b1_, alice_, a1_, "edge", 200),
                                 envelope(bob_, b1_, alice_, a1_, "new", 300)};
  ASSERT_TRUE(store_->enqueue(batch).ok());
  EXPECT_EQ(*store_->purge_expired_messages(50), 0);
  EXPECT_EQ(*store_->purge_expired_messages(200), 2);  // expiry at or before now
  auto rest = store_->fetch(bob_, b1_, 0, 10);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ(rest->front().envelope.client_id, client_id("new"));

  // Once past its expiry, an acknowledged envelope's dedup key is forgotten too.
  auto id = rest->front().server_id;
  ASSERT_TRUE(*store_->ack(bob_, b1_, id));
  std::vector<Envelope> retry = {envelope(bob_, b1_, alice_, a1_, "new", 300)};
  EXPECT_TRUE((*store_->enqueue(retry))[0].duplicate);
  EXPECT_EQ(*store_->purge_expired_messages(300), 0);
  retry[0].expires_ms = 900;
  EXPECT_FALSE((*store_->enqueue(retry))[0].duplicate);
}

TEST_F(StoreServerQueue, AcknowledgedStateSurvivesCloseAndReopen) {
  std::vector<Envelope> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(envelope(bob_, b1_, alice_, a1_, "d" + std::to_string(i)));
  auto ids = store_->enqueue(batch);
  ASSERT_TRUE(ids.ok());
  ASSERT_TRUE(*store_->ack(bob_, b1_, (*ids)[0].server_id));
  ASSERT_TRUE(store_->add_one_time_prekeys(bob_, b1_, one_time_keys(1, 10)).ok());
  ASSERT_TRUE(store_->put_token(token(7), bob_, b1_, 1).ok());
  reopen();
  EXPECT_EQ(*store_->queued_count(bob_, b1_), 49);
  auto got = store_->fetch(bob_, b1_, 0, 100);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 49u);
  EXPECT_EQ(got->front().server_id, (*ids)[1].server_id);
  EXPECT_EQ(got->back().envelope.content, batch.back().content);
  EXPECT_EQ(*store_->one_time_prekey_count(bob_, b1_), 10);
  EXPECT_EQ(store_->find_token(token(7))->device_id, b1_);
  EXPECT_EQ(store_->find_account_by_email("bob@example.org")->id, bob_);
}

TEST_F(StoreServerQueue, CommittedBatchIsDurableWithoutACleanClose) {
  // Another connection sees the batch as soon as enqueue returns: it is committed to the WAL, not
  // sitting in this connection's memory. (The SIGKILL test of the server covers the process.)
  std::vector<Envelope> batch = {envelope(bob_, b1_, alice_, a1_, "durable")};
  ASSERT_TRUE(store_->enqueue(batch).ok());
  auto other = SqliteServerStore::open(path());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*(*other)->queued_count(bob_, b1_), 1);
}

// ---- challenges ----

TEST_F(StoreServer, ChallengesAreSingleUseUntilPurged) {
  const Bytes c1 = filled(16, 1);
  const Bytes c2 = filled(16, 2);
  EXPECT_TRUE(*store_->mark_challenge_used(c1, 1000));
  EXPECT_FALSE(*store_->mark_challenge_used(c1, 1000));
  EXPECT_TRUE(*store_->mark_challenge_used(c2, 2000));
  EXPECT_EQ(*store_->purge_expired_challenges(999), 0);
  EXPECT_FALSE(*store_->mark_challenge_used(c1, 1000));
  EXPECT_EQ(*store_->purge_expired_challenges(1000), 1);
  EXPECT_FALSE(*store_->mark_challenge_used(c2, 2000));
  EXPECT_EQ(store_->mark_challenge_used({}, 1).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->mark_challenge_used(filled(65, 1), 1).error(), Errc::invalid_argument);
  reopen();
  EXPECT_FALSE(*store_->mark_challenge_used(c2, 2000));  // spent survives a restart
}

// ---- uploads ----

TEST_F(StoreServer, UploadsTrackOffsetsCompletionAndQuota) {
  const std::int64_t a = new_account("alice@example.org");
  ASSERT_TRUE(store_->create_upload("u1", a, 1000, 10, 5000).ok());
  ASSERT_TRUE(store_->create_upload("u2", a, 24, 10, 9000).ok());
  EXPECT_EQ(store_->create_upload("u1", a, 5, 10, 5000).error(), Errc::constraint);
  EXPECT_EQ(store_->create_upload("u3", a + 9, 5, 10, 5000).error(), Errc::not_found);
  EXPECT_EQ(store_->create_upload("", a, 5, 10, 5000).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->create_upload(std::string(kMaxUploadIdBytes + 1, 'u'), a, 5, 10, 5000).error(),
            Errc::invalid_argument);
  EXPECT_EQ(store_->create_upload("neg", a, -1, 10, 5000).error(), Errc::invalid_argument);
  EXPECT_EQ(*store_->account_upload_bytes(a), 1024);
  EXPECT_EQ(*store_->account_upload_bytes(a + 9), 0);

  auto u = store_->get_upload("u1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->account_id, a);
  EXPECT_EQ(u->length, 1000);
  EXPECT_EQ(u->offset, 0);
  EXPECT_FALSE(u->complete);
  EXPECT_EQ(u->created_ms, 10);
  EXPECT_EQ(u->expires_ms, 5000);

  ASSERT_TRUE(store_->set_upload_offset("u1", 400).ok());
  EXPECT_EQ(store_->set_upload_offset("u1", 300).error(), Errc::invalid_argument);   // backwards
  EXPECT_EQ(store_->set_upload_offset("u1", 1001).error(), Errc::invalid_argument);  // past the end
  EXPECT_EQ(store_->complete_upload("u1").error(), Errc::invalid_argument);          // not all there
  EXPECT_EQ(store_->set_upload_offset("nope", 1).error(), Errc::not_found);
  EXPECT_EQ(store_->get_upload("u1")->offset, 400);
  ASSERT_TRUE(store_->set_upload_offset("u1", 1000).ok());
  ASSERT_TRUE(store_->complete_upload("u1").ok());
  EXPECT_TRUE(store_->get_upload("u1")->complete);
  EXPECT_EQ(store_->set_upload_offset("u1", 1000).error(), Errc::invalid_argument);  // closed
  EXPECT_EQ(store_->complete_upload("nope").error(), Errc::not_found);

  auto expired = store_->list_expired_uploads(6000, 10);
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ(expired->front().id, "u1");
  EXPECT_EQ(store_->list_expired_uploads(10'000, 1)->size(), 1u);
  EXPECT_EQ(store_->list_expired_uploads(10'000, 10)->size(), 2u);
  EXPECT_TRUE(*store_->delete_upload("u1"));
  EXPECT_FALSE(*store_->delete_upload("u1"));
  EXPECT_EQ(store_->get_upload("u1").error(), Errc::not_found);
  EXPECT_EQ(*store_->account_upload_bytes(a), 24);
}

// ---- schema, files, backup ----

TEST_F(StoreServer, SchemaIsAtTheLatestVersionWithItsIndexes) {
  EXPECT_EQ(*schema_version(store_->database()), static_cast<int>(SqliteServerStore::schema().size()));
  // The queue query is served by its index, not a scan.
  auto plan = store_->database().prepare(
      "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE recipient_account = 1 AND recipient_device = 1 "
      "AND id > 0 ORDER BY id LIMIT 10");
  ASSERT_TRUE(plan.ok());
  std::string details;
  for (;;) {
    auto row = plan->step();
    ASSERT_TRUE(row.ok());
    if (!*row) break;
    details += plan->column_text(3) + "\n";
  }
  EXPECT_NE(details.find("messages_queue"), std::string::npos) << details;
  EXPECT_EQ(details.find("TEMP B-TREE"), std::string::npos) << details;
}

TEST(StoreServerFiles, DatabaseFromTheFutureIsRefused) {
  TempDir dir;
  {
    auto db = Database::open(dir.file("s.db"));
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->exec("PRAGMA user_version = 1000").ok());
  }
  EXPECT_EQ(SqliteServerStore::open(dir.file("s.db")).error(), Errc::schema_too_new);
}

TEST(StoreServerFiles, GarbageFileIsAnErrorNotACrash) {
  TempDir dir;
  const std::string path = dir.file("s.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(i * 7));
  }
  auto opened = SqliteServerStore::open(path);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error(), Errc::corrupt);
}

TEST(StoreServerFiles, DamagedPagesAreReportedAsErrors) {
  TempDir dir;
  const std::string path = dir.file("s.db");
  {
    auto store = SqliteServerStore::open(path);
    ASSERT_TRUE(store.ok());
    auto a = (*store)->create_account("alice@example.org", "h", 1);
    ASSERT_TRUE(a.ok());
    // Checkpoint and leave WAL mode so every page is in the main file for the damage below.
    ASSERT_TRUE(
        (*store)->database().exec("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE").ok());
  }
  {
    // Overwrite everything after the first page (the header stays valid).
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    ASSERT_GT(size, 4096);
    f.seekp(4096);
    for (std::streamoff i = 4096; i < size; ++i) f.put(static_cast<char>(0xA5 ^ (i & 0x3F)));
  }
  auto opened = SqliteServerStore::open(path);
  if (opened.ok()) {
    // The schema page may survive; then queries on damaged pages must fail cleanly.
    auto found = (*opened)->find_account_by_email("alice@example.org");
    EXPECT_FALSE(found.ok() && found->email != "alice@example.org");
  } else {
    EXPECT_TRUE(opened.error() == Errc::corrupt || opened.error() == Errc::sqlite_error)
        << opened.error().message();
  }
}

TEST(StoreServerFiles, BackupWhileOpenIsACompleteDatabase) {
  TempDir dir;
  auto store = SqliteServerStore::open(dir.file("live.db"));
  ASSERT_TRUE(store.ok());
  auto a = (*store)->create_account("alice@example.org", "h", 1);
  ASSERT_TRUE(a.ok());
  auto d = (*store)->add_device(*a, key33(1), 1, "p", 1);
  ASSERT_TRUE(d.ok());
  std::vector<Envelope> batch(1);
  batch[0].recipient_account = *a;
  batch[0].recipient_device = *d;
  batch[0].client_id = client_id("c");
  batch[0].content = {1, 2, 3};
  batch[0].expires_ms = 10;
  ASSERT_TRUE((*store)->enqueue(batch).ok());

  ASSERT_TRUE((*store)->backup_to(dir.file("backup.db")).ok()) << (*store)->database().last_message();
  EXPECT_FALSE((*store)->backup_to(dir.file("backup.db")).ok());  // never overwrites
  auto copy = SqliteServerStore::open(dir.file("backup.db"));
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ((*copy)->find_account_by_email("alice@example.org")->id, *a);
  EXPECT_EQ(*(*copy)->queued_count(*a, *d), 1);
}

}  // namespace
}  // namespace postern::store
