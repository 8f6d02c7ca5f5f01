// Tests for postern/crypto/curve.h: RFC 7748 X25519 vectors (sections 5.2 and 6.1), Signal key
// serialization, clamping, the weak-key check, and the Wycheproof X25519 set.
#include "postern/crypto/curve.h"

#include <gtest/gtest.h>

#include <iostream>
#include <set>
#include <string>

#include "crypto/test_vectors.h"
#include "postern/crypto/errors.h"

namespace postern::crypto {
namespace {

using test::all_zero;
using test::unhex;
using test::unhex_array;

PrivateKey private_from_hex(std::string_view hex) {
  auto k = PrivateKey::deserialize(unhex(hex));
  EXPECT_TRUE(k.ok()) << k.error().message();
  return k.ok() ? std::move(k).value() : PrivateKey();
}

PublicKey public_from_hex(std::string_view hex) {
  return PublicKey(unhex_array<32>(hex));
}

std::string shared_hex(const PrivateKey& ours, const PublicKey& theirs) {
  auto s = agreement(ours, theirs);
  if (!s) return "error: " + s.error().message();
  return to_hex(s->view());
}

// decodeScalar25519 of RFC 7748 section 5, written out independently of curve.cpp.
std::array<std::uint8_t, 32> rfc7748_clamp(std::array<std::uint8_t, 32> k) {
  k[0] = static_cast<std::uint8_t>(k[0] & 248);
  k[31] = static_cast<std::uint8_t>((k[31] & 127) | 64);
  return k;
}

// ---- RFC 7748 ----

TEST(CryptoCurve, Rfc7748Section5_2Vectors) {
  // RFC 7748 section 5.2, X25519: the two (scalar, u-coordinate) test vectors. The scalars are
  // not clamped and the second u has its top bit set; X25519 clamps and masks both.
  EXPECT_EQ(shared_hex(private_from_hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                       public_from_hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")),
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
  EXPECT_EQ(shared_hex(private_from_hex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
                       public_from_hex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")),
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
}

TEST(CryptoCurve, Rfc7748Section5_2Iterated) {
  // RFC 7748 section 5.2: k = u = 9; repeat k, u = X25519(k, u), k. After 1 and 1,000 iterations.
  std::array<std::uint8_t, 32> k{};
  k[0] = 9;
  std::array<std::uint8_t, 32> u = k;
  for (int i = 1; i <= 1000; ++i) {
    auto priv = PrivateKey::deserialize(k);
    ASSERT_TRUE(priv.ok());
    auto out = agreement(*priv, PublicKey(u));
    ASSERT_TRUE(out.ok()) << "iteration " << i << ": " << out.error().message();
    u = k;
    std::copy(out->data(), out->data() + 32, k.begin());
    if (i == 1) {
      EXPECT_EQ(to_hex(k), "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    }
  }
  EXPECT_EQ(to_hex(k), "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
}

TEST(CryptoCurve, Rfc7748Section6_1DiffieHellman) {
  // RFC 7748 section 6.1, Curve25519 Diffie-Hellman.
  const PrivateKey alice =
      private_from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const PrivateKey bob = private_from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const PublicKey alice_pub =
      public_from_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  const PublicKey bob_pub =
      public_from_hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  EXPECT_EQ(to_hex(alice.public_key().raw()), to_hex(alice_pub.raw()));
  EXPECT_EQ(to_hex(bob.public_key().raw()), to_hex(bob_pub.raw()));
  const std::string k = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  EXPECT_EQ(shared_hex(alice, bob_pub), k);
  EXPECT_EQ(shared_hex(bob, alice_pub), k);
  EXPECT_EQ(to_hex(KeyPair::from_private(alice).public_key.raw()), to_hex(alice_pub.raw()));
}

// ---- Serialization ----

TEST(CryptoCurve, PublicKeyDeserializeRejectsWrongLength) {
  const Bytes serialized = [] {
    Bytes b(33, 0x11);
    b[0] = kDjbKeyType;
    return b;
  }();
  for (std::size_t len : {0u, 1u, 32u, 34u, 65u}) {
    Bytes b(len, 0x11);
    if (len > 0) b[0] = kDjbKeyType;
    auto r = PublicKey::deserialize(b);
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.error(), Errc::bad_key_length) << len;
  }
  // A bare 32-byte key (accepted by libsignal-node) is rejected, like libsignal-protocol-c does.
  auto bare = PublicKey::deserialize(ByteView(serialized).subspan(1));
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.error(), Errc::bad_key_length);
  EXPECT_TRUE(PublicKey::deserialize(serialized).ok());
}

TEST(CryptoCurve, PublicKeyDeserializeRejectsWrongType) {
  Bytes b(33, 0x22);
  for (int type : {0x00, 0x01, 0x04, 0x06, 0x85, 0xff}) {
    b[0] = static_cast<std::uint8_t>(type);
    auto r = PublicKey::deserialize(b);
    ASSERT_FALSE(r.ok()) << type;
    EXPECT_EQ(r.error(), Errc::bad_key_type) << type;
    EXPECT_EQ(r.error().message(), "public key has an unknown type byte");
  }
}

TEST(CryptoCurve, PublicKeySerializationRoundTrips) {
  DeterministicRng rng(7748);
  for (int i = 0; i < 50; ++i) {
    const PublicKey key = PrivateKey::generate(rng).public_key();
    const auto s = key.serialize();
    EXPECT_EQ(s[0], kDjbKeyType);
    EXPECT_TRUE(std::equal(key.raw().begin(), key.raw().end(), s.begin() + 1));
    std::array<std::uint8_t, 33> s2{};
    key.serialize_to(s2.data());
    EXPECT_EQ(s, s2);
    auto back = PublicKey::deserialize(s);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, key);
  }
  // Any 32 bytes deserialize (X25519 accepts every u); the raw bytes are kept as they are.
  Bytes odd(33, 0xff);
  odd[0] = kDjbKeyType;
  auto k = PublicKey::deserialize(odd);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(to_hex(k->raw()), std::string(64, 'f'));
}

TEST(CryptoCurve, PublicKeyOrderingFollowsTheBytes) {
  std::array<std::uint8_t, 32> a{};
  std::array<std::uint8_t, 32> b{};
  b[0] = 1;
  EXPECT_LT(PublicKey(a), PublicKey(b));
  EXPECT_NE(PublicKey(a), PublicKey(b));
  std::set<PublicKey> set{PublicKey(b), PublicKey(a), PublicKey(b)};
  EXPECT_EQ(set.size(), 2u);
}

TEST(CryptoCurve, PrivateKeyDeserializeRejectsWrongLength) {
  for (std::size_t len : {0u, 1u, 31u, 33u, 64u}) {
    auto r = PrivateKey::deserialize(Bytes(len, 0x33));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.error(), Errc::bad_key_length) << len;
  }
}

TEST(CryptoCurve, PrivateKeyDeserializeClamps) {
  auto ones = PrivateKey::deserialize(Bytes(32, 0xff));
  ASSERT_TRUE(ones.ok());
  std::array<std::uint8_t, 32> expected_ones{};
  expected_ones.fill(0xff);
  expected_ones[0] = 0xf8;
  expected_ones[31] = 0x7f;
  EXPECT_EQ(to_hex(ones->scalar().view()), to_hex(expected_ones));

  auto zeros = PrivateKey::deserialize(Bytes(32, 0x00));
  ASSERT_TRUE(zeros.ok());
  std::array<std::uint8_t, 32> expected_zeros{};
  expected_zeros[31] = 0x40;
  EXPECT_EQ(to_hex(zeros->scalar().view()), to_hex(expected_zeros));

  DeterministicRng rng(255);
  for (int i = 0; i < 50; ++i) {
    const auto raw = rng.bytes<32>();
    auto k = PrivateKey::deserialize(raw);
    ASSERT_TRUE(k.ok());
    EXPECT_EQ(to_hex(k->scalar().view()), to_hex(rfc7748_clamp(raw)));
  }
}

TEST(CryptoCurve, GeneratedKeysAreClampedDistinctAndReproducible) {
  DeterministicRng rng(25519);
  DeterministicRng same(25519);
  std::set<PublicKey> seen;
  for (int i = 0; i < 100; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    const std::uint8_t* k = kp.private_key.scalar().data();
    EXPECT_EQ(k[0] & 7, 0);
    EXPECT_EQ(k[31] & 0x80, 0);
    EXPECT_EQ(k[31] & 0x40, 0x40);
    EXPECT_EQ(kp.public_key, kp.private_key.public_key());
    EXPECT_TRUE(seen.insert(kp.public_key).second) << "duplicate key " << i;
    const KeyPair again = KeyPair::generate(same);
    EXPECT_EQ(again.public_key, kp.public_key);
    EXPECT_EQ(again.private_key.scalar(), kp.private_key.scalar());
  }
}

// ---- Agreement ----

TEST(CryptoCurve, AgreementIsSymmetricForRandomKeys) {
  DeterministicRng rng(42);
  for (int i = 0; i < 100; ++i) {
    const KeyPair a = KeyPair::generate(rng);
    const KeyPair b = KeyPair::generate(rng);
    auto ab = agreement(a.private_key, b.public_key);
    auto ba = agreement(b.private_key, a.public_key);
    ASSERT_TRUE(ab.ok()) << ab.error().message();
    ASSERT_TRUE(ba.ok()) << ba.error().message();
    EXPECT_EQ(*ab, *ba);
    EXPECT_FALSE(all_zero(ab->view()));
    // Another peer gives another secret.
    const KeyPair c = KeyPair::generate(rng);
    auto ac = agreement(a.private_key, c.public_key);
    ASSERT_TRUE(ac.ok());
    EXPECT_NE(*ab, *ac);
  }
}

TEST(CryptoCurve, AgreementIgnoresTheTopBitOfU) {
  // RFC 7748 section 5: implementations MUST mask the most significant bit of the u-coordinate.
  DeterministicRng rng(5);
  for (int i = 0; i < 20; ++i) {
    const KeyPair a = KeyPair::generate(rng);
    const KeyPair b = KeyPair::generate(rng);
    std::array<std::uint8_t, 32> high = b.public_key.raw();
    high[31] |= 0x80;
    auto plain = agreement(a.private_key, b.public_key);
    auto masked = agreement(a.private_key, PublicKey(high));
    ASSERT_TRUE(plain.ok() && masked.ok());
    EXPECT_EQ(*plain, *masked);
  }
}

TEST(CryptoCurve, AgreementWithSmallOrderKeysIsWeak) {
  // The points of order 1, 2, 4 and 8, their non-canonical encodings (u + p) and encodings with
  // the ignored top bit set: X25519 with any of them gives the all-zero secret, which agreement
  // must refuse.
  const char* small_order[] = {
      "0000000000000000000000000000000000000000000000000000000000000000",  // u = 0
      "0100000000000000000000000000000000000000000000000000000000000000",  // u = 1
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  // order 8
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  // order 8
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // u = p - 1
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // u = p (= 0)
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // u = p + 1 (= 1)
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",  // order 8, top bit set
      "0000000000000000000000000000000000000000000000000000000000000080",  // u = 0, top bit set
  };
  DeterministicRng rng(8);
  for (const char* hex : small_order) {
    const PublicKey bad = public_from_hex(hex);
    for (int i = 0; i < 5; ++i) {
      const PrivateKey k = PrivateKey::generate(rng);
      auto r = agreement(k, bad);
      ASSERT_FALSE(r.ok()) << hex;
      EXPECT_EQ(r.error(), Errc::weak_key) << hex;
      EXPECT_EQ(r.error().message(), "key agreement produced a weak (all-zero) secret");
    }
  }
}

// ---- Wycheproof: C2SP/wycheproof testvectors_v1/x25519_test.json ----

TEST(CryptoCurve, WycheproofX25519) {
  POSTERN_LOAD_VECTORS_OR_SKIP(j, "wycheproof-x25519.json");
  int valid = 0;
  int acceptable_equal = 0;
  int acceptable_weak = 0;
  for (const auto& group : j.at("testGroups")) {
    ASSERT_EQ(group.at("curve").get<std::string>(), "curve25519");
    for (const auto& t : group.at("tests")) {
      const int id = t.at("tcId").get<int>();
      const std::string result = t.at("result").get<std::string>();
      const Bytes pub = unhex(t.at("public").get<std::string>());
      const Bytes shared = unhex(t.at("shared").get<std::string>());
      ASSERT_EQ(pub.size(), 32u) << "tcId " << id;
      auto priv = PrivateKey::deserialize(unhex(t.at("private").get<std::string>()));
      ASSERT_TRUE(priv.ok()) << "tcId " << id;
      std::array<std::uint8_t, 32> u{};
      std::copy(pub.begin(), pub.end(), u.begin());
      auto out = agreement(*priv, PublicKey(u));
      if (result == "valid") {
        ASSERT_TRUE(out.ok()) << "tcId " << id << ": " << out.error().message();
        EXPECT_EQ(to_hex(out->view()), to_hex(shared)) << "tcId " << id;
        ++valid;
      } else {
        ASSERT_EQ(result, "acceptable") << "tcId " << id;
        if (all_zero(shared)) {
          // An all-zero secret must never be returned.
          ASSERT_FALSE(out.ok()) << "tcId " << id << " returned the all-zero secret";
          EXPECT_EQ(out.error(), Errc::weak_key) << "tcId " << id;
          ++acceptable_weak;
        } else {
          ASSERT_TRUE(out.ok()) << "tcId " << id << ": " << out.error().message();
          EXPECT_EQ(to_hex(out->view()), to_hex(shared)) << "tcId " << id;
          ++acceptable_equal;
        }
      }
    }
  }
  EXPECT_GE(valid, 200);
  EXPECT_GE(acceptable_equal, 100);
  EXPECT_GE(acceptable_weak, 10);
  std::cout << "[ vectors  ] wycheproof-x25519: " << valid << " valid, " << acceptable_equal
            << " acceptable (equal), " << acceptable_weak << " acceptable (weak_key)\n";
}

}  // namespace
}  // namespace postern::crypto
