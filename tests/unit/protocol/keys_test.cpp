#include "postern/protocol/keys.h"

#include <gtest/gtest.h>

#include <set>

#include "postern/protocol/errors.h"

namespace postern::protocol {
namespace {

TEST(ProtocolKeys, RegistrationIdRange) {
  crypto::DeterministicRng rng(2);
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 20000; ++i) {
    auto id = generate_registration_id(rng);
    ASSERT_GE(id, 1u);
    ASSERT_LE(id, 16380u);
    seen.insert(id);
  }
  EXPECT_GT(seen.size(), 10000u);
}

TEST(ProtocolKeys, SignedPreKeyVerifiesAndRoundTrips) {
  crypto::DeterministicRng rng(3);
  auto identity = IdentityKeyPair::generate(rng);
  auto spk = SignedPreKeyRecord::generate(17, identity, 1234, rng);
  EXPECT_TRUE(crypto::xeddsa_verify(identity.public_key, spk.key_pair.public_key.serialize(), spk.signature));
  auto round = SignedPreKeyRecord::deserialize(spk.serialize());
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->id, 17u);
  EXPECT_EQ(round->timestamp_ms, 1234);
  EXPECT_EQ(round->signature, spk.signature);
  EXPECT_EQ(round->key_pair.public_key, spk.key_pair.public_key);
  EXPECT_EQ(round->key_pair.private_key.scalar(), spk.key_pair.private_key.scalar());

  PreKeyBundle b;
  b.identity_key = identity.public_key;
  b.signed_pre_key = spk.key_pair.public_key;
  b.signed_pre_key_signature = spk.signature;
  EXPECT_TRUE(b.signature_valid());
  b.signed_pre_key_signature[63] ^= 0x01;
  EXPECT_FALSE(b.signature_valid());
}

TEST(ProtocolKeys, PreKeyRecordRoundTripAndCorruption) {
  crypto::DeterministicRng rng(4);
  auto pk = PreKeyRecord::generate(5, rng);
  Bytes bytes = pk.serialize();
  auto round = PreKeyRecord::deserialize(bytes);
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->id, 5u);
  EXPECT_EQ(round->key_pair.public_key, pk.key_pair.public_key);
  for (std::size_t n = 0; n + 1 < bytes.size(); ++n) {
    EXPECT_FALSE(PreKeyRecord::deserialize(ByteView(bytes.data(), n)).ok()) << n;
  }
  EXPECT_FALSE(SignedPreKeyRecord::deserialize(Bytes{0x08, 0x01}).ok());
}

}  // namespace
}  // namespace postern::protocol
