// Tests for the DeviceLinkStore part of postern/store/sqlite_server_store.h: the life of a link
// (open -> requested -> approved -> taken), the limit of live links per account, expiry before and
// by the purge, the approval as one transaction (device, token, link), and the cascade from the
// account.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "postern/store/sqlite_server_store.h"
#include "store/temp_dir.h"

namespace postern::store {
namespace {

using store_test::TempDir;

Bytes key33(std::uint8_t v) {
  Bytes k(kPublicKeyBytes, v);
  k[0] = 0x05;
  return k;
}

class DeviceLinkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = SqliteServerStore::open(dir_.file("server.db"));
    ASSERT_TRUE(opened.ok()) << opened.error().message();
    store_ = std::move(*opened);
    auto a = store_->create_account("alice@example.com", "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", 1000);
    auto b = store_->create_account("bob@example.com", "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", 1000);
    ASSERT_TRUE(a.ok() && b.ok());
    alice_ = *a;
    bob_ = *b;
    auto d = store_->add_device(alice_, key33(1), 11, "phone", 1000);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, 1u);
  }

  // An open link of alice's, created at 1000, expiring at 2000.
  void open_link(const std::string& id) {
    ASSERT_TRUE(store_->create_device_link(id, alice_, 1000, 2000, 5).ok());
  }

  void requested_link(const std::string& id) {
    open_link(id);
    ASSERT_TRUE(store_->request_device_link(id, request_, token_hash_, 1100).ok());
  }

  TempDir dir_;
  std::unique_ptr<SqliteServerStore> store_;
  std::int64_t alice_ = 0;
  std::int64_t bob_ = 0;
  const Bytes request_ = Bytes{1, 2, 3};
  const Bytes token_hash_ = Bytes(kTokenHashBytes, 0x42);
  const Bytes provision_ = Bytes(100, 0x77);
};

TEST_F(DeviceLinkStoreTest, WholeLifeOfALink) {
  open_link("link-1");
  auto link = store_->get_device_link("link-1", 1500);
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->state, DeviceLinkState::open);
  EXPECT_EQ(link->account_id, alice_);
  EXPECT_EQ(link->created_ms, 1000);
  EXPECT_EQ(link->expires_ms, 2000);
  EXPECT_TRUE(link->request.empty());

  ASSERT_TRUE(store_->request_device_link("link-1", request_, token_hash_, 1100).ok());
  link = store_->get_device_link("link-1", 1500);
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->state, DeviceLinkState::requested);
  EXPECT_EQ(link->request, request_);
  EXPECT_EQ(link->token_hash, token_hash_);

  auto device = store_->approve_device_link("link-1", alice_, key33(2), 22, "laptop", provision_, 1200, 5000);
  ASSERT_TRUE(device.ok()) << device.error().message();
  EXPECT_EQ(*device, 2u);  // the lowest free id, as add_device gives
  link = store_->get_device_link("link-1", 1500);
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->state, DeviceLinkState::approved);
  EXPECT_EQ(link->device_id, 2u);
  EXPECT_EQ(link->provision, provision_);
  EXPECT_EQ(link->expires_ms, 5000);  // the approval gives the pickup its own time

  // The device is registered with the key and registration id given, the token hash is its session.
  auto registered = store_->get_device(alice_, 2);
  ASSERT_TRUE(registered.ok());
  EXPECT_EQ(registered->identity_key, key33(2));
  EXPECT_EQ(registered->registration_id, 22u);
  EXPECT_EQ(registered->name, "laptop");
  auto owner = store_->find_token(token_hash_);
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(owner->account_id, alice_);
  EXPECT_EQ(owner->device_id, 2u);

  // Taken once: with the wrong hash it is not there, with the right one it goes.
  EXPECT_EQ(store_->take_device_link("link-1", Bytes(kTokenHashBytes, 0x43), 3000).error(), Errc::not_found);
  auto taken = store_->take_device_link("link-1", token_hash_, 3000);
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(taken->provision, provision_);
  EXPECT_EQ(taken->device_id, 2u);
  EXPECT_EQ(store_->take_device_link("link-1", token_hash_, 3000).error(), Errc::not_found);
  EXPECT_EQ(store_->get_device_link("link-1", 3000).error(), Errc::not_found);
  EXPECT_TRUE(store_->find_token(token_hash_).ok());  // the session stays
}

TEST_F(DeviceLinkStoreTest, OneRequestPerLinkAndOnlyRequestedLinksAreApproved) {
  open_link("link-1");
  EXPECT_EQ(store_->approve_device_link("link-1", alice_, key33(2), 22, "x", provision_, 1200, 5000).error(),
            Errc::constraint);
  ASSERT_TRUE(store_->request_device_link("link-1", request_, token_hash_, 1100).ok());
  EXPECT_EQ(store_->request_device_link("link-1", Bytes{9}, Bytes(kTokenHashBytes, 1), 1100).error(),
            Errc::constraint);
  EXPECT_EQ(store_->get_device_link("link-1", 1100)->request, request_);  // the first wins
  ASSERT_TRUE(store_->approve_device_link("link-1", alice_, key33(2), 22, "x", provision_, 1200, 5000).ok());
  EXPECT_EQ(store_->approve_device_link("link-1", alice_, key33(3), 22, "x", provision_, 1200, 5000).error(),
            Errc::constraint);
  EXPECT_EQ(store_->list_devices(alice_)->size(), 2u);
}

TEST_F(DeviceLinkStoreTest, AnotherAccountNeitherSeesNorApprovesNorDeletes) {
  requested_link("link-1");
  EXPECT_EQ(store_->approve_device_link("link-1", bob_, key33(2), 22, "x", provision_, 1200, 5000).error(),
            Errc::not_found);
  EXPECT_FALSE(*store_->delete_device_link("link-1", bob_, 1200));
  EXPECT_TRUE(*store_->delete_device_link("link-1", alice_, 1200));
  EXPECT_EQ(store_->get_device_link("link-1", 1200).error(), Errc::not_found);
}

TEST_F(DeviceLinkStoreTest, ExpiredLinksAreAbsentAndPurged) {
  requested_link("link-1");
  open_link("link-2");
  EXPECT_EQ(store_->get_device_link("link-1", 2000).error(), Errc::not_found);  // expiry is exclusive
  EXPECT_EQ(store_->request_device_link("link-2", request_, token_hash_, 2000).error(), Errc::not_found);
  EXPECT_EQ(store_->approve_device_link("link-1", alice_, key33(2), 22, "x", provision_, 2000, 5000).error(),
            Errc::not_found);
  EXPECT_FALSE(*store_->delete_device_link("link-2", alice_, 2000));
  EXPECT_EQ(*store_->purge_expired_device_links(1999), 0);
  EXPECT_EQ(*store_->purge_expired_device_links(2000), 2);
  EXPECT_EQ(store_->get_device_link("link-1", 0).error(), Errc::not_found);
  EXPECT_EQ(store_->list_devices(alice_)->size(), 1u);
}

TEST_F(DeviceLinkStoreTest, AtMostMaxLiveLinksPerAccount) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->create_device_link("l" + std::to_string(i), alice_, 1000, 2000 + i, 3).ok());
  }
  EXPECT_EQ(store_->create_device_link("l3", alice_, 1000, 3000, 3).error(), Errc::too_large);
  EXPECT_TRUE(store_->create_device_link("b0", bob_, 1000, 3000, 3).ok());  // per account
  // Once one has expired, a new one fits, even before the purge.
  EXPECT_TRUE(store_->create_device_link("l3", alice_, 2000, 4000, 3).ok());
  EXPECT_EQ(store_->create_device_link("l4", alice_, 2000, 4000, 3).error(), Errc::too_large);
  EXPECT_EQ(store_->create_device_link("b0", bob_, 1000, 3000, 3).error(), Errc::constraint);  // id taken
  EXPECT_EQ(store_->create_device_link("x", 9999, 1000, 3000, 3).error(), Errc::not_found);
  EXPECT_EQ(store_->create_device_link("", alice_, 1000, 3000, 3).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->create_device_link(std::string(65, 'a'), alice_, 1000, 3000, 3).error(), Errc::invalid_argument);
}

TEST_F(DeviceLinkStoreTest, SizesAreChecked) {
  open_link("link-1");
  EXPECT_EQ(store_->request_device_link("link-1", Bytes{}, token_hash_, 1100).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->request_device_link("link-1", request_, Bytes(31, 1), 1100).error(), Errc::invalid_argument);
  EXPECT_EQ(store_->request_device_link("link-1", Bytes(kMaxLinkRequestBytes + 1, 1), token_hash_, 1100).error(),
            Errc::too_large);
  ASSERT_TRUE(store_->request_device_link("link-1", Bytes(kMaxLinkRequestBytes, 1), token_hash_, 1100).ok());
  EXPECT_EQ(
      store_->approve_device_link("link-1", alice_, key33(2), 1, "x", Bytes(kMaxProvisionBytes + 1, 1), 1200, 5000)
          .error(),
      Errc::too_large);
  EXPECT_EQ(store_->approve_device_link("link-1", alice_, key33(2), 1, "x", Bytes{}, 1200, 5000).error(),
            Errc::invalid_argument);
  EXPECT_EQ(store_->approve_device_link("link-1", alice_, Bytes(32, 5), 1, "x", provision_, 1200, 5000).error(),
            Errc::invalid_argument);
  EXPECT_TRUE(
      store_->approve_device_link("link-1", alice_, key33(2), 1, "x", Bytes(kMaxProvisionBytes, 1), 1200, 5000).ok());
}

TEST_F(DeviceLinkStoreTest, ApprovalIsAllOrNothingWhenTheTokenIsTaken) {
  ASSERT_TRUE(store_->put_token(token_hash_, alice_, 1, 1000).ok());  // already device 1's session
  requested_link("link-1");
  EXPECT_EQ(store_->approve_device_link("link-1", alice_, key33(2), 22, "x", provision_, 1200, 5000).error(),
            Errc::constraint);
  EXPECT_EQ(store_->list_devices(alice_)->size(), 1u);  // the device went with the rollback
  EXPECT_EQ(store_->get_device_link("link-1", 1200)->state, DeviceLinkState::requested);
  EXPECT_EQ(store_->find_token(token_hash_)->device_id, 1u);
}

TEST_F(DeviceLinkStoreTest, LinksGoWithTheAccountNotWithTheDevice) {
  requested_link("link-1");
  open_link("link-2");
  ASSERT_TRUE(store_->remove_device(alice_, 1).ok());  // the creating device
  EXPECT_TRUE(store_->get_device_link("link-1", 1200).ok());
  auto device = store_->approve_device_link("link-1", alice_, key33(2), 22, "x", provision_, 1200, 5000);
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(*device, 1u);  // id 1 is free again
  ASSERT_TRUE(store_->delete_account(alice_).ok());
  EXPECT_EQ(store_->get_device_link("link-1", 1200).error(), Errc::not_found);
  EXPECT_EQ(store_->get_device_link("link-2", 1200).error(), Errc::not_found);
  EXPECT_EQ(*store_->purge_expired_device_links(std::numeric_limits<std::int64_t>::max()), 0);
}

TEST_F(DeviceLinkStoreTest, LinksSurviveAReopen) {
  requested_link("link-1");
  store_.reset();
  auto opened = SqliteServerStore::open(dir_.file("server.db"));
  ASSERT_TRUE(opened.ok());
  store_ = std::move(*opened);
  auto link = store_->get_device_link("link-1", 1200);
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->state, DeviceLinkState::requested);
  EXPECT_EQ(link->token_hash, token_hash_);
}

TEST(DeviceLinkStoreMigration, AVersionOneFileGainsTheTable) {
  TempDir dir;
  {
    auto db = Database::open(dir.file("v1.db"));
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(migrate(*db, SqliteServerStore::schema().first(1)).ok());
    ASSERT_TRUE(db->exec("INSERT INTO accounts (email, password_hash, created_ms) VALUES ('a@x', 'h', 1)").ok());
  }
  auto opened = SqliteServerStore::open(dir.file("v1.db"));
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  EXPECT_EQ(*schema_version((*opened)->database()), static_cast<int>(SqliteServerStore::schema().size()));
  EXPECT_TRUE((*opened)->create_device_link("l", 1, 10, 20, 5).ok());
}

}  // namespace
}  // namespace postern::store
