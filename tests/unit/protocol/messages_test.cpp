// Parsers of the four wire messages: every malformed input is an error value.
#include "postern/protocol/messages.h"

#include <gtest/gtest.h>

#include "postern/protocol/errors.h"
#include "postern/protocol/proto/wire.pb.h"

namespace postern::protocol {
namespace {

using crypto::KeyPair;

class ProtocolMessages : public ::testing::Test {
 protected:
  crypto::DeterministicRng rng{3};
  KeyPair ratchet = KeyPair::generate(rng);
  KeyPair sender = KeyPair::generate(rng);
  KeyPair receiver = KeyPair::generate(rng);
  Bytes mac_key = Bytes(32, 0x42);

  SignalMessage make() {
    Bytes body(32, 0xab);
    return SignalMessage::create(ratchet.public_key, 5, 4, body, mac_key, sender.public_key,
                                 receiver.public_key);
  }
  static Bytes with_pb(const google::protobuf::MessageLite& pb, std::size_t trailer) {
    Bytes out{0x33};
    std::string s = pb.SerializeAsString();
    out.insert(out.end(), s.begin(), s.end());
    out.resize(out.size() + trailer, 0);
    return out;
  }
};

TEST_F(ProtocolMessages, SignalMessageRoundTrip) {
  SignalMessage m = make();
  EXPECT_EQ(m.serialized()[0], 0x33);
  auto p = SignalMessage::parse(m.serialized());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->counter(), 5u);
  EXPECT_EQ(p->previous_counter(), 4u);
  EXPECT_EQ(p->ratchet_key(), ratchet.public_key);
  EXPECT_TRUE(p->verify_mac(sender.public_key, receiver.public_key, mac_key));
  EXPECT_FALSE(p->verify_mac(receiver.public_key, sender.public_key, mac_key)) << "direction matters";
  Bytes other_key(32, 0x43);
  EXPECT_FALSE(p->verify_mac(sender.public_key, receiver.public_key, other_key));
}

TEST_F(ProtocolMessages, SignalMessageVersions) {
  Bytes b = make().serialized();
  b[0] = 0x23;
  EXPECT_EQ(SignalMessage::parse(b).error(), Errc::legacy_message);
  b[0] = 0x43;
  EXPECT_EQ(SignalMessage::parse(b).error(), Errc::invalid_version);
}

TEST_F(ProtocolMessages, SignalMessageTruncations) {
  Bytes b = make().serialized();
  for (std::size_t n = 0; n < b.size(); ++n) {
    EXPECT_FALSE(SignalMessage::parse(ByteView(b.data(), n)).ok()) << n;
  }
}

TEST_F(ProtocolMessages, SignalMessageMissingFieldsAndBadKey) {
  wire::SignalMessage pb;
  pb.set_counter(1);
  pb.set_ciphertext("x");
  EXPECT_EQ(SignalMessage::parse(with_pb(pb, kMacSize)).error(), Errc::invalid_message);
  pb.set_ratchet_key(std::string(32, '\x05'));
  EXPECT_EQ(SignalMessage::parse(with_pb(pb, kMacSize)).error(), Errc::invalid_key);
  std::string typed(33, '\x01');
  typed[0] = 0x06;
  pb.set_ratchet_key(typed);
  EXPECT_EQ(SignalMessage::parse(with_pb(pb, kMacSize)).error(), Errc::invalid_key);
  Bytes junk{0x33, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(SignalMessage::parse(junk).error(), Errc::invalid_protobuf);
}

TEST_F(ProtocolMessages, PreKeySignalMessageRoundTripAndRules) {
  SignalMessage inner = make();
  auto m = PreKeySignalMessage::create(77, 12, 3, ratchet.public_key, sender.public_key, inner);
  auto p = PreKeySignalMessage::parse(m.serialized());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->registration_id(), 77u);
  EXPECT_EQ(p->pre_key_id(), std::optional<std::uint32_t>(12));
  EXPECT_EQ(p->signed_pre_key_id(), 3u);
  EXPECT_EQ(p->message().serialized(), inner.serialized());

  wire::PreKeySignalMessage pb;
  pb.ParseFromArray(m.serialized().data() + 1, static_cast<int>(m.serialized().size() - 1));
  wire::PreKeySignalMessage no_spk = pb;
  no_spk.clear_signed_pre_key_id();
  EXPECT_EQ(PreKeySignalMessage::parse(with_pb(no_spk, 0)).error(), Errc::invalid_message);
  wire::PreKeySignalMessage no_inner = pb;
  no_inner.clear_message();
  EXPECT_EQ(PreKeySignalMessage::parse(with_pb(no_inner, 0)).error(), Errc::invalid_message);
  wire::PreKeySignalMessage bad_inner = pb;
  std::string inner_bytes = bad_inner.message();
  inner_bytes[0] = 0x22;
  bad_inner.set_message(inner_bytes);
  EXPECT_EQ(PreKeySignalMessage::parse(with_pb(bad_inner, 0)).error(), Errc::legacy_message);
  wire::PreKeySignalMessage short_key = pb;
  short_key.set_base_key(std::string(32, 'k'));
  EXPECT_EQ(PreKeySignalMessage::parse(with_pb(short_key, 0)).error(), Errc::invalid_key);
  Bytes b = m.serialized();
  b[0] = 0x43;
  EXPECT_EQ(PreKeySignalMessage::parse(b).error(), Errc::invalid_version);
}

TEST_F(ProtocolMessages, SenderKeyMessageSignature) {
  crypto::XeddsaSigner signer(sender.private_key);
  Bytes body(48, 1);
  auto m = SenderKeyMessage::create(9, 2, body, signer, rng);
  auto p = SenderKeyMessage::parse(m.serialized());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->key_id(), 9u);
  EXPECT_EQ(p->iteration(), 2u);
  auto y = crypto::montgomery_to_edwards_y(sender.public_key);
  ASSERT_TRUE(y.ok());
  EXPECT_TRUE(p->verify_signature(*y));
  Bytes bad = m.serialized();
  bad[3] ^= 1;
  auto pb = SenderKeyMessage::parse(bad);
  if (pb.ok()) {
    EXPECT_FALSE(pb->verify_signature(*y));
  }
  auto other = crypto::montgomery_to_edwards_y(receiver.public_key);
  EXPECT_FALSE(p->verify_signature(*other));
  EXPECT_FALSE(SenderKeyMessage::parse(ByteView(m.serialized().data(), 64)).ok());
}

TEST_F(ProtocolMessages, SenderKeyDistributionMessageRules) {
  Bytes chain(32, 7);
  auto m = SenderKeyDistributionMessage::create(5, 0, chain, sender.public_key);
  auto p = SenderKeyDistributionMessage::parse(m.serialized());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->signing_key(), sender.public_key);
  EXPECT_EQ(Bytes(p->chain_key().begin(), p->chain_key().end()), chain);
  wire::SenderKeyDistributionMessage pb;
  pb.set_id(1);
  pb.set_iteration(0);
  pb.set_chain_key(std::string(31, 'c'));
  pb.set_signing_key(std::string(reinterpret_cast<const char*>(sender.public_key.serialize().data()), 33));
  EXPECT_EQ(SenderKeyDistributionMessage::parse(with_pb(pb, 0)).error(), Errc::invalid_message);
  pb.set_chain_key(std::string(32, 'c'));
  pb.clear_signing_key();
  EXPECT_EQ(SenderKeyDistributionMessage::parse(with_pb(pb, 0)).error(), Errc::invalid_message);
}

TEST_F(ProtocolMessages, OversizedInputIsRefused) {
  Bytes huge(kMaxMessageSize + 1, 0x33);
  EXPECT_FALSE(SignalMessage::parse(huge).ok());
  EXPECT_FALSE(PreKeySignalMessage::parse(huge).ok());
  EXPECT_FALSE(SenderKeyMessage::parse(huge).ok());
  EXPECT_FALSE(SenderKeyDistributionMessage::parse(huge).ok());
}

}  // namespace
}  // namespace postern::protocol

namespace postern::protocol {
namespace {

// SignalMessage::create encodes by hand; it must be byte for byte what libprotobuf writes.
TEST(ProtocolMessagesEncoding, SignalMessageMatchesLibprotobuf) {
  crypto::DeterministicRng rng(8);
  const std::uint32_t values[] = {0,     1,       127,     128,        300,       16383,
                                  16384, 2097151, 2097152, 0xfffffffe, 0xffffffff};
  for (std::uint32_t counter : values) {
    for (std::size_t len : {std::size_t{16}, std::size_t{112}, std::size_t{128}, std::size_t{20000}}) {
      crypto::KeyPair ratchet = crypto::KeyPair::generate(rng);
      Bytes body(len);
      rng.fill(body);
      Bytes mac_key(32, 1);
      auto m = SignalMessage::create(ratchet.public_key, counter, counter / 3, body, mac_key,
                                     ratchet.public_key, ratchet.public_key);
      wire::SignalMessage pb;
      auto k = ratchet.public_key.serialize();
      pb.set_ratchet_key(std::string(k.begin(), k.end()));
      pb.set_counter(counter);
      pb.set_previous_counter(counter / 3);
      pb.set_ciphertext(std::string(body.begin(), body.end()));
      const std::string expected = pb.SerializeAsString();
      const Bytes& got = m.serialized();
      ASSERT_EQ(got.size(), 1 + expected.size() + kMacSize);
      EXPECT_EQ(std::string(got.begin() + 1, got.end() - static_cast<std::ptrdiff_t>(kMacSize)), expected);
      auto parsed = SignalMessage::parse(got);
      ASSERT_TRUE(parsed.ok());
      EXPECT_EQ(parsed->counter(), counter);
      EXPECT_TRUE(parsed->verify_mac(ratchet.public_key, ratchet.public_key, mac_key));
    }
  }
}

}  // namespace
}  // namespace postern::protocol
