// Safety numbers, with the known answer from shared/reference/signal-v3-wire.md (checked there
// against libsignal-protocol-c and an implementation written from the spec).
#include "postern/protocol/fingerprint.h"

#include <gtest/gtest.h>

#include "postern/protocol/errors.h"

namespace postern::protocol {
namespace {

crypto::PublicKey key(std::string_view hex) {
  return *crypto::PublicKey::deserialize(*from_hex(hex));
}

const crypto::PublicKey kAlice = key("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
const crypto::PublicKey kBob = key("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");

TEST(ProtocolFingerprint, KnownAnswer) {
  auto a = create_fingerprint(5200, 1, "+14152222222", kAlice, "+14153333333", kBob);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->displayable, "300354477692869396892869876765458257569162576843440918079131");
  EXPECT_EQ(
      to_hex(a->scannable),
      "080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df1a220a20d62cbf73a11592"
      "015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d");
  auto b = create_fingerprint(5200, 1, "+14153333333", kBob, "+14152222222", kAlice);
  EXPECT_EQ(b->displayable, a->displayable);
  EXPECT_EQ(*scannable_fingerprints_match(a->scannable, b->scannable), true);
  EXPECT_EQ(*scannable_fingerprints_match(a->scannable, a->scannable), false);
}

TEST(ProtocolFingerprint, VersionZeroCarriesKeysAndIdentifiers) {
  auto a = create_fingerprint(5200, 0, "+14152222222", kAlice, "+14153333333", kBob);
  auto b = create_fingerprint(5200, 0, "+14153333333", kBob, "+14152222222", kAlice);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string hex = to_hex(a->scannable);
  EXPECT_EQ(hex.substr(0, 4), "0800");  // version 0, present on the wire
  EXPECT_NE(hex.find(to_hex(kAlice.serialize())), std::string::npos);
  EXPECT_NE(hex.find(to_hex(as_bytes("+14152222222"))), std::string::npos);
  EXPECT_EQ(*scannable_fingerprints_match(a->scannable, b->scannable), true);
  auto c = create_fingerprint(5200, 0, "+14153333333", kBob, "+19999999999", kAlice);
  EXPECT_EQ(scannable_fingerprints_match(a->scannable, c->scannable).error(),
            Errc::fingerprint_identity_mismatch);
  auto v1 = create_fingerprint(5200, 1, "+14153333333", kBob, "+14152222222", kAlice);
  EXPECT_EQ(scannable_fingerprints_match(a->scannable, v1->scannable).error(),
            Errc::fingerprint_version_mismatch);
}

TEST(ProtocolFingerprint, ChangedKeyChangesNumber) {
  crypto::DeterministicRng rng(1);
  auto other = crypto::KeyPair::generate(rng).public_key;
  auto a = create_fingerprint(5200, 1, "alice", kAlice, "bob", kBob);
  auto b = create_fingerprint(5200, 1, "alice", kAlice, "bob", other);
  EXPECT_NE(a->displayable, b->displayable);
  auto bob_view = create_fingerprint(5200, 1, "bob", other, "alice", kAlice);
  EXPECT_EQ(*scannable_fingerprints_match(a->scannable, bob_view->scannable), false);
}

TEST(ProtocolFingerprint, BadArguments) {
  EXPECT_EQ(create_fingerprint(5200, 2, "a", kAlice, "b", kBob).error(), Errc::invalid_version);
  EXPECT_EQ(create_fingerprint(0, 1, "a", kAlice, "b", kBob).error(), Errc::invalid_version);
  Bytes junk{0xff, 0xff, 0xff};
  auto a = create_fingerprint(10, 1, "a", kAlice, "b", kBob);
  EXPECT_EQ(scannable_fingerprints_match(junk, a->scannable).error(), Errc::invalid_protobuf);
  Bytes empty;
  EXPECT_FALSE(scannable_fingerprints_match(empty, a->scannable).ok());
}

}  // namespace
}  // namespace postern::protocol
