// Sender Keys: distribution, shuffled delivery, limits, duplicates, forged signatures, rotation.
#include "postern/protocol/group_cipher.h"

#include <algorithm>
#include <random>

#include "postern/protocol/errors.h"
#include "postern/protocol/sender_key_record.h"
#include "test_parties.h"

namespace postern::protocol {
namespace {

using testing::Party;
using testing::text;

class ProtocolGroup : public ::testing::Test {
 protected:
  crypto::DeterministicRng rng{11};
  Party alice{"alice", rng};
  Party bob{"bob", rng};
  SenderKeyName alice_key{"group-1", {"alice", 1}};

  void distribute() {
    auto skdm = create_sender_key_distribution(alice.store, alice_key, rng);
    ASSERT_TRUE(skdm.ok());
    auto parsed = SenderKeyDistributionMessage::parse(skdm->serialized());
    ASSERT_TRUE(parsed.ok());
    ASSERT_TRUE(process_sender_key_distribution(bob.store, alice_key, *parsed).ok());
  }
  Bytes encrypt(std::string_view s) { return *GroupCipher(alice.store, alice_key, rng).encrypt(text(s)); }
  Result<Bytes> decrypt(const Bytes& m) { return GroupCipher(bob.store, alice_key, rng).decrypt(m); }
  Bytes bob_record() { return **bob.store.load_sender_key(alice_key); }
};

TEST_F(ProtocolGroup, ShuffledDelivery) {
  distribute();
  std::vector<std::pair<Bytes, std::string>> msgs;
  for (int i = 0; i < 300; ++i) msgs.emplace_back(encrypt("g" + std::to_string(i)), "g" + std::to_string(i));
  std::shuffle(msgs.begin(), msgs.end(), std::mt19937(5));
  for (auto& [m, t] : msgs) ASSERT_EQ(*decrypt(m), text(t));
}

TEST_F(ProtocolGroup, DistributionIsStableUntilRotation) {
  auto a = create_sender_key_distribution(alice.store, alice_key, rng);
  auto b = create_sender_key_distribution(alice.store, alice_key, rng);
  EXPECT_EQ(a->key_id(), b->key_id());
  EXPECT_LT(a->key_id(), 0x80000000u);
  ASSERT_TRUE(rotate_sender_key(alice.store, alice_key).ok());
  auto c = create_sender_key_distribution(alice.store, alice_key, rng);
  EXPECT_NE(a->key_id(), c->key_id());
  EXPECT_FALSE(a->signing_key() == c->signing_key());
}

TEST_F(ProtocolGroup, RemovedMemberCannotReadAfterRotation) {
  distribute();
  ASSERT_TRUE(decrypt(encrypt("before")).ok());
  ASSERT_TRUE(rotate_sender_key(alice.store, alice_key).ok());
  ASSERT_TRUE(create_sender_key_distribution(alice.store, alice_key, rng).ok());  // sent to the others only
  EXPECT_EQ(decrypt(encrypt("after")).error(), Errc::no_session);
}

TEST_F(ProtocolGroup, DuplicateAndLimits) {
  distribute();
  auto m0 = encrypt("zero");
  ASSERT_TRUE(decrypt(m0).ok());
  EXPECT_EQ(decrypt(m0).error(), Errc::duplicate_message);
  std::vector<Bytes> msgs;
  for (int i = 0; i < 2002; ++i) msgs.push_back(encrypt("x"));  // iterations 1..2002
  const Bytes before = bob_record();
  EXPECT_EQ(decrypt(msgs[2001]).error(), Errc::invalid_message);  // 2001 skipped
  EXPECT_EQ(bob_record(), before);
  EXPECT_TRUE(decrypt(msgs[2000]).ok());  // exactly 2000 skipped
  EXPECT_TRUE(decrypt(msgs[0]).ok());
}

TEST_F(ProtocolGroup, ForgedOrTamperedMessagesLeaveStateUntouched) {
  distribute();
  Bytes m = encrypt("signed");
  const Bytes before = bob_record();
  for (std::size_t i = 0; i < m.size(); ++i) {
    Bytes bad = m;
    bad[i] ^= 0x04;
    EXPECT_FALSE(decrypt(bad).ok()) << i;
  }
  EXPECT_EQ(bob_record(), before);
  // A message signed by someone else under Alice's key id is refused.
  SenderKeyRecord rec = *SenderKeyRecord::deserialize(**alice.store.load_sender_key(alice_key));
  crypto::XeddsaSigner mallory(KeyPair::generate(rng).private_key);
  auto forged = SenderKeyMessage::create(rec.newest().key_id, 1, Bytes(32, 9), mallory, rng);
  EXPECT_EQ(decrypt(forged.serialized()).error(), Errc::invalid_message);
  EXPECT_EQ(bob_record(), before);
  EXPECT_EQ(*decrypt(m), text("signed"));
}

TEST_F(ProtocolGroup, UnknownKeyIdAndNoState) {
  Bytes m;
  {
    ASSERT_TRUE(create_sender_key_distribution(alice.store, alice_key, rng).ok());
    m = encrypt("nobody has my key");
  }
  EXPECT_EQ(decrypt(m).error(), Errc::no_session);
  EXPECT_EQ(GroupCipher(bob.store, {"g", {"bob", 1}}, rng).encrypt(text("x")).error(), Errc::no_session);
}

TEST_F(ProtocolGroup, ReprocessingSameDistributionDoesNotRewind) {
  distribute();
  auto m = encrypt("one");
  ASSERT_TRUE(decrypt(m).ok());
  // An old copy of the same distribution message arrives again: it must not allow a replay.
  SenderKeyRecord rec = *SenderKeyRecord::deserialize(**alice.store.load_sender_key(alice_key));
  auto again =
      SenderKeyDistributionMessage::create(rec.newest().key_id, 0, Bytes(32, 0), rec.newest().signing_public);
  ASSERT_TRUE(process_sender_key_distribution(bob.store, alice_key, again).ok());
  EXPECT_EQ(decrypt(m).error(), Errc::duplicate_message);
}

TEST_F(ProtocolGroup, RecordKeepsFiveStates) {
  SenderKeyRecord r;
  for (std::uint32_t i = 0; i < 7; ++i) {
    SenderKeyState s;
    s.key_id = i;
    r.add_state(std::move(s));
  }
  EXPECT_EQ(r.states().size(), kMaxSenderKeyStates);
  EXPECT_EQ(r.newest().key_id, 6u);
  EXPECT_EQ(r.find(1), nullptr);
  auto round = SenderKeyRecord::deserialize(r.serialize());
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->states().size(), kMaxSenderKeyStates);
  Bytes bytes = r.serialize();
  EXPECT_FALSE(SenderKeyRecord::deserialize(ByteView(bytes.data(), bytes.size() - 3)).ok());
}

}  // namespace
}  // namespace postern::protocol
