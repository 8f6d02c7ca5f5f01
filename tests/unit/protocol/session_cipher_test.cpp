// Scenario tests of 1:1 sessions: X3DH, the Double Ratchet, out-of-order delivery and its limits,
// and the rule that a failed decrypt leaves the stored session untouched.
#include "postern/protocol/session_cipher.h"

#include <algorithm>
#include <random>

#include "postern/protocol/errors.h"
#include "postern/protocol/session_record.h"
#include "test_parties.h"

namespace postern::protocol {
namespace {

using testing::Party;
using testing::text;

class ProtocolSession : public ::testing::Test {
 protected:
  crypto::DeterministicRng rng{42};
  Party alice{"alice", rng};
  Party bob{"bob", rng};

  void start(std::optional<std::uint32_t> pre_key_id = 31) {
    PreKeyBundle bundle = bob.publish(7, pre_key_id, rng);
    ASSERT_TRUE(process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng).ok());
  }
  CiphertextMessage send(Party& from, Party& to, std::string_view msg) {
    auto c = from.cipher_to(to, rng).encrypt(text(msg));
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : CiphertextMessage{};
  }
  Result<Bytes> receive(Party& at, Party& from, const CiphertextMessage& c) {
    return at.cipher_to(from, rng).decrypt(c.type, c.serialized);
  }
};

TEST_F(ProtocolSession, FirstMessagesArePreKeyMessagesUntilAnswered) {
  start();
  auto m1 = send(alice, bob, "one");
  auto m2 = send(alice, bob, "two");
  EXPECT_EQ(m1.type, CiphertextType::prekey);
  EXPECT_EQ(m2.type, CiphertextType::prekey);
  EXPECT_EQ(*receive(bob, alice, m1), text("one"));
  EXPECT_EQ(*receive(bob, alice, m2), text("two"));
  auto reply = send(bob, alice, "three");
  EXPECT_EQ(reply.type, CiphertextType::signal);
  EXPECT_EQ(*receive(alice, bob, reply), text("three"));
  EXPECT_EQ(send(alice, bob, "four").type, CiphertextType::signal);
}

TEST_F(ProtocolSession, OneTimePreKeyIsConsumedAfterSuccess) {
  start(31);
  EXPECT_TRUE(bob.store.load_pre_key(31)->has_value());
  auto m = send(alice, bob, "hello");
  ASSERT_TRUE(receive(bob, alice, m).ok());
  EXPECT_FALSE(bob.store.load_pre_key(31)->has_value());
}

TEST_F(ProtocolSession, WorksWithoutOneTimePreKey) {
  start(std::nullopt);
  auto m = send(alice, bob, "no one-time key");
  auto pre = PreKeySignalMessage::parse(m.serialized);
  ASSERT_TRUE(pre.ok());
  EXPECT_FALSE(pre->pre_key_id().has_value());
  EXPECT_EQ(*receive(bob, alice, m), text("no one-time key"));
  EXPECT_EQ(*receive(alice, bob, send(bob, alice, "ok")), text("ok"));
}

TEST_F(ProtocolSession, BadSignedPreKeySignatureIsRejected) {
  PreKeyBundle bundle = bob.publish(7, 31, rng);
  bundle.signed_pre_key_signature[5] ^= 0x10;
  auto s = process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng);
  EXPECT_EQ(s.error(), Errc::invalid_key);
  EXPECT_TRUE(alice.session_bytes(bob).empty());
}

TEST_F(ProtocolSession, MismatchedOneTimePreKeyFieldsAreRejected) {
  PreKeyBundle bundle = bob.publish(7, 31, rng);
  bundle.pre_key_id.reset();
  EXPECT_EQ(process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng).error(),
            Errc::invalid_key);
}

TEST_F(ProtocolSession, ChangedIdentityIsUntrusted) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "hi")).ok());
  Party mallory("bob", rng);  // same address, other identity
  PreKeyBundle bundle = mallory.publish(9, 1, rng);
  EXPECT_EQ(process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng).error(),
            Errc::untrusted_identity);
}

TEST_F(ProtocolSession, PingPongRatchetsEveryTurn) {
  start();
  Bytes last_alice_key, last_bob_key;
  for (int i = 0; i < 50; ++i) {
    auto a = send(alice, bob, "ping " + std::to_string(i));
    ASSERT_EQ(*receive(bob, alice, a), text("ping " + std::to_string(i)));
    auto b = send(bob, alice, "pong " + std::to_string(i));
    ASSERT_EQ(*receive(alice, bob, b), text("pong " + std::to_string(i)));
    auto sm = SignalMessage::parse(b.serialized);
    ASSERT_TRUE(sm.ok());
    Bytes key(sm->ratchet_key().raw().begin(), sm->ratchet_key().raw().end());
    EXPECT_NE(key, last_bob_key) << "Bob's ratchet key must change every turn";
    last_bob_key = key;
  }
}

TEST_F(ProtocolSession, ShuffledDeliveryBothWays) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "open")).ok());
  std::vector<std::pair<CiphertextMessage, std::string>> to_bob, to_alice;
  for (int i = 0; i < 200; ++i) {
    to_bob.emplace_back(send(alice, bob, "a" + std::to_string(i)), "a" + std::to_string(i));
    to_alice.emplace_back(send(bob, alice, "b" + std::to_string(i)), "b" + std::to_string(i));
  }
  std::mt19937 g(7);
  std::shuffle(to_bob.begin(), to_bob.end(), g);
  std::shuffle(to_alice.begin(), to_alice.end(), g);
  for (auto& [m, t] : to_bob) ASSERT_EQ(*receive(bob, alice, m), text(t));
  for (auto& [m, t] : to_alice) ASSERT_EQ(*receive(alice, bob, m), text(t));
}

TEST_F(ProtocolSession, SkippedKeyLimitIsExactly2000) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "open")).ok());  // counter 0
  std::vector<CiphertextMessage> msgs;
  for (int i = 0; i < 2002; ++i)
    msgs.push_back(send(alice, bob, "m" + std::to_string(i)));  // counters 1..2002
  const Bytes before = bob.session_bytes(alice);
  // Counter 2002 would skip 2001 keys (1..2001): refused, state untouched.
  EXPECT_EQ(receive(bob, alice, msgs[2001]).error(), Errc::invalid_message);
  EXPECT_EQ(bob.session_bytes(alice), before);
  // Counter 2001 skips exactly 2000 keys: accepted; then the skipped ones decrypt.
  EXPECT_EQ(*receive(bob, alice, msgs[2000]), text("m2000"));
  for (int i = 0; i < 2000; ++i)
    ASSERT_EQ(*receive(bob, alice, msgs[static_cast<std::size_t>(i)]), text("m" + std::to_string(i)));
  EXPECT_EQ(*receive(bob, alice, msgs[2001]), text("m2001"));
}

TEST_F(ProtocolSession, DuplicateIsRejectedAndStateUntouched) {
  start();
  auto m = send(alice, bob, "once");
  ASSERT_TRUE(receive(bob, alice, m).ok());
  auto m2 = send(alice, bob, "twice");
  ASSERT_TRUE(receive(bob, alice, m2).ok());
  const Bytes before = bob.session_bytes(alice);
  EXPECT_EQ(receive(bob, alice, m2).error(), Errc::duplicate_message);
  EXPECT_EQ(bob.session_bytes(alice), before);
}

TEST_F(ProtocolSession, TamperedMessagesAreRejectedWithoutDamage) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "open")).ok());
  ASSERT_TRUE(receive(alice, bob, send(bob, alice, "answer")).ok());
  auto m = send(alice, bob, "precious");
  ASSERT_EQ(m.type, CiphertextType::signal);  // every byte is covered by the MAC
  const Bytes before = bob.session_bytes(alice);
  for (std::size_t i = 0; i < m.serialized.size(); ++i) {
    Bytes bad = m.serialized;
    bad[i] ^= 0x01;
    auto r = bob.cipher_to(alice, rng).decrypt(m.type, bad);
    EXPECT_FALSE(r.ok()) << "flipped byte " << i;
    ASSERT_EQ(bob.session_bytes(alice), before) << "flipped byte " << i;
  }
  Bytes truncated(m.serialized.begin(), m.serialized.end() - 1);
  EXPECT_FALSE(bob.cipher_to(alice, rng).decrypt(m.type, truncated).ok());
  EXPECT_EQ(*receive(bob, alice, m), text("precious"));
}

TEST_F(ProtocolSession, PreKeyMessageReplayIsRejected) {
  start();
  auto m = send(alice, bob, "first");
  ASSERT_TRUE(receive(bob, alice, m).ok());
  EXPECT_EQ(receive(bob, alice, m).error(), Errc::duplicate_message);
}

TEST_F(ProtocolSession, UnknownSignedPreKeyId) {
  PreKeyBundle bundle = bob.publish(7, 31, rng);
  ASSERT_TRUE(bob.store.remove_signed_pre_key(7).ok());
  ASSERT_TRUE(process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng).ok());
  EXPECT_EQ(receive(bob, alice, send(alice, bob, "x")).error(), Errc::invalid_key_id);
}

TEST_F(ProtocolSession, NoSession) {
  EXPECT_EQ(alice.cipher_to(bob, rng).encrypt(text("x")).error(), Errc::no_session);
}

TEST_F(ProtocolSession, ArchivedSessionStillDecryptsDelayedMessages) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "open")).ok());
  ASSERT_TRUE(receive(alice, bob, send(bob, alice, "answer")).ok());
  auto delayed = send(alice, bob, "delayed from the old session");
  // Alice starts a fresh session (e.g. after reinstalling the app's session state).
  PreKeyBundle bundle = bob.publish(8, 32, rng);
  ASSERT_TRUE(process_pre_key_bundle(alice.store.session_stores(), bob.address(), bundle, rng).ok());
  auto fresh = send(alice, bob, "new session");
  EXPECT_EQ(fresh.type, CiphertextType::prekey);
  EXPECT_EQ(*receive(bob, alice, fresh), text("new session"));
  auto record = SessionRecord::deserialize(bob.session_bytes(alice));
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->previous().size(), 1u);
  EXPECT_EQ(*receive(bob, alice, delayed), text("delayed from the old session"));
}

TEST_F(ProtocolSession, ArchiveKeepsAtMost40States) {
  SessionRecord record;
  for (int i = 0; i < 45; ++i) {
    SessionState s;
    s.sender_ratchet = KeyPair::generate(rng);
    s.previous_counter = static_cast<std::uint32_t>(i);
    record.promote_state(std::move(s));
  }
  EXPECT_EQ(record.previous().size(), kMaxArchivedStates);
  EXPECT_EQ(record.current().previous_counter, 44u);
  EXPECT_EQ(record.previous().front().previous_counter, 43u);
  auto round = SessionRecord::deserialize(record.serialize());
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->previous().size(), kMaxArchivedStates);
}

TEST_F(ProtocolSession, AtMostFiveReceiverChains) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "open")).ok());
  std::vector<CiphertextMessage> old_chain_messages;
  for (int turn = 0; turn < 8; ++turn) {
    auto from_bob = send(bob, alice, "b");
    auto straggler = send(bob, alice, "late " + std::to_string(turn));
    old_chain_messages.push_back(straggler);
    ASSERT_TRUE(receive(alice, bob, from_bob).ok());
    ASSERT_TRUE(receive(bob, alice, send(alice, bob, "a")).ok());
  }
  auto record = SessionRecord::deserialize(alice.session_bytes(bob));
  ASSERT_TRUE(record.ok());
  EXPECT_LE(record->current().receiver_chains.size(), kMaxReceiverChains);
  // The stragglers of the last 4 of Bob's chains still decrypt; the oldest chains are forgotten.
  EXPECT_EQ(*receive(alice, bob, old_chain_messages.back()), text("late 7"));
  EXPECT_FALSE(receive(alice, bob, old_chain_messages.front()).ok());
}

TEST_F(ProtocolSession, RecordRoundTripIsExact) {
  start();
  ASSERT_TRUE(receive(bob, alice, send(alice, bob, "open")).ok());
  for (int i = 0; i < 5; ++i) send(alice, bob, "skip");
  auto m = send(alice, bob, "last");
  ASSERT_TRUE(receive(bob, alice, m).ok());
  const Bytes bytes = bob.session_bytes(alice);
  auto record = SessionRecord::deserialize(bytes);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->serialize(), bytes);
  EXPECT_EQ(record->current().receiver_chains.back().skipped.size(), 5u);
}

TEST_F(ProtocolSession, CorruptAndFutureRecordsAreRefused) {
  start();
  Bytes bytes = alice.session_bytes(bob);
  Bytes truncated(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2));
  EXPECT_EQ(SessionRecord::deserialize(truncated).error(), Errc::corrupt_record);
  Bytes future = bytes;
  ASSERT_EQ(future[2], 1);  // format version byte after the magic "PS"
  future[2] = 2;
  EXPECT_EQ(SessionRecord::deserialize(future).error(), Errc::invalid_version);
  Bytes bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_EQ(SessionRecord::deserialize(bad_magic).error(), Errc::corrupt_record);
  Bytes trailing = bytes;
  trailing.push_back(0);
  EXPECT_EQ(SessionRecord::deserialize(trailing).error(), Errc::corrupt_record);
  ASSERT_TRUE(alice.store.store_session(bob.address(), truncated).ok());
  EXPECT_EQ(alice.cipher_to(bob, rng).encrypt(text("x")).error(), Errc::corrupt_record);
}

TEST_F(ProtocolSession, MessageSizesMatchLibsignal) {
  start();
  Bytes hundred(100, 'x');
  auto pre = alice.cipher_to(bob, rng).encrypt(hundred);
  ASSERT_TRUE(pre.ok());
  // libsignal-protocol-c measured 244 bytes (wire notes); the exact size depends on the varint
  // lengths of the ids: version 1 + base key 35 + identity 35 + inner message 2+1+162
  // + registration id 1+varint + signed prekey id 1+1 (7) + prekey id 1+1 (31).
  const std::uint32_t alice_reg = *alice.store.local_registration_id();
  const std::size_t reg_varint = alice_reg < 128 ? 1 : 2;
  EXPECT_EQ(pre->serialized.size(), 1 + 35 + 35 + 165 + 1 + reg_varint + 2 + 2);
  ASSERT_TRUE(bob.cipher_to(alice, rng).decrypt(pre->type, pre->serialized).ok());
  auto sig = bob.cipher_to(alice, rng).encrypt(hundred);
  EXPECT_EQ(sig->serialized.size(), 162u);
}

}  // namespace
}  // namespace postern::protocol
