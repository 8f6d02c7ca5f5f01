// Tests for postern/crypto/xeddsa.h.
//
// Besides round trips and rejections, two independent references are used:
//  - libsodium's Ed25519 verifier and Edwards-to-Montgomery conversion, to check that our
//    signatures are plain Ed25519 signatures under A and that A belongs to the X25519 key;
//  - a re-implementation of libsignal's signer (libsignal-protocol-c curve_sigs.c
//    curve25519_sign, Rust calculate_signature) from libsodium's low-level scalar and point
//    functions. It signs with the real sign of A = kB and stores that sign in sig[63], which is
//    what the deployed verifiers expect (see shared/reference/signal-v3-wire.md, "Signatures").
#include "postern/crypto/xeddsa.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <cstring>
#include <string>

#include "crypto/test_vectors.h"
#include "postern/crypto/errors.h"

namespace postern::crypto {
namespace {

using Bytes32 = std::array<std::uint8_t, 32>;

Bytes random_message(Rng& rng) {
  Bytes m(rng.uniform(200));
  rng.fill(m);
  return m;
}

// libsignal's signing variant, for reference. a = k mod L (k the clamped scalar), A = aB with its
// real sign, r = SHA-512(0xFE || 0xFF*31 || k || M || Z) mod L, R = rB, h = SHA-512(R || A || M)
// mod L, S = r + h a, and sig[63] |= sign(A).
Signature libsignal_sign(const PrivateKey& key, ByteView message, const std::array<std::uint8_t, 64>& z) {
  const std::uint8_t* k = key.scalar().data();
  std::array<std::uint8_t, 64> wide{};
  std::memcpy(wide.data(), k, 32);
  Bytes32 a{};
  crypto_core_ed25519_scalar_reduce(a.data(), wide.data());
  Bytes32 A{};
  EXPECT_EQ(crypto_scalarmult_ed25519_base_noclamp(A.data(), a.data()), 0);
  const std::uint8_t sign_bit = A[31] & 0x80;

  Bytes32 prefix{};
  prefix.fill(0xff);
  prefix[0] = 0xfe;
  std::array<std::uint8_t, 64> r_wide{};
  crypto_hash_sha512_state st;
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, prefix.data(), prefix.size());
  crypto_hash_sha512_update(&st, k, 32);
  crypto_hash_sha512_update(&st, message.data(), message.size());
  crypto_hash_sha512_update(&st, z.data(), z.size());
  crypto_hash_sha512_final(&st, r_wide.data());
  Bytes32 r{};
  crypto_core_ed25519_scalar_reduce(r.data(), r_wide.data());

  Signature sig{};
  EXPECT_EQ(crypto_scalarmult_ed25519_base_noclamp(sig.data(), r.data()), 0);

  std::array<std::uint8_t, 64> h_wide{};
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, sig.data(), 32);
  crypto_hash_sha512_update(&st, A.data(), A.size());
  crypto_hash_sha512_update(&st, message.data(), message.size());
  crypto_hash_sha512_final(&st, h_wide.data());
  Bytes32 h{};
  crypto_core_ed25519_scalar_reduce(h.data(), h_wide.data());

  Bytes32 ha{};
  crypto_core_ed25519_scalar_mul(ha.data(), h.data(), a.data());
  crypto_core_ed25519_scalar_add(sig.data() + 32, r.data(), ha.data());
  sig[63] = static_cast<std::uint8_t>((sig[63] & 0x7f) | sign_bit);
  return sig;
}

// kB computed by libsodium with its real sign bit.
Bytes32 edwards_point_of(const PrivateKey& key) {
  Bytes32 A{};
  EXPECT_EQ(crypto_scalarmult_ed25519_base_noclamp(A.data(), key.scalar().data()), 0);
  return A;
}

// ---- Round trips ----

TEST(CryptoXeddsa, SignVerifyRoundTripsForManyKeysAndMessages) {
  DeterministicRng rng(0x5eed);
  for (int i = 0; i < 200; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    const Bytes message = random_message(rng);
    const Signature sig = xeddsa_sign(kp.private_key, message, rng);
    EXPECT_TRUE(xeddsa_verify(kp.public_key, message, sig)) << "key " << i;
    // Spec signatures carry sign bit 0 and a reduced S.
    EXPECT_EQ(sig[63] & 0xe0, 0) << "key " << i;
    // Signal's signed pre key case: a signature over a serialized 33-byte public key.
    const auto spk = KeyPair::generate(rng).public_key.serialize();
    const Signature spk_sig = xeddsa_sign(kp.private_key, spk, rng);
    EXPECT_TRUE(xeddsa_verify(kp.public_key, spk, spk_sig)) << "key " << i;
  }
}

TEST(CryptoXeddsa, EmptyAndLongMessagesVerify) {
  DeterministicRng rng(3);
  const KeyPair kp = KeyPair::generate(rng);
  const Signature empty = xeddsa_sign(kp.private_key, ByteView{}, rng);
  EXPECT_TRUE(xeddsa_verify(kp.public_key, ByteView{}, empty));
  EXPECT_FALSE(xeddsa_verify(kp.public_key, Bytes{0}, empty));
  Bytes big(100000);
  rng.fill(big);
  const Signature sig = xeddsa_sign(kp.private_key, big, rng);
  EXPECT_TRUE(xeddsa_verify(kp.public_key, big, sig));
  big[99999] ^= 1;
  EXPECT_FALSE(xeddsa_verify(kp.public_key, big, sig));
}

TEST(CryptoXeddsa, SignaturesAreRandomizedButDeterministicGivenTheRng) {
  DeterministicRng keys(11);
  const KeyPair kp = KeyPair::generate(keys);
  const Bytes message = {1, 2, 3, 4, 5};
  DeterministicRng r1(100);
  DeterministicRng r1_again(100);
  DeterministicRng r2(200);
  const Signature a = xeddsa_sign(kp.private_key, message, r1);
  const Signature a_again = xeddsa_sign(kp.private_key, message, r1_again);
  const Signature b = xeddsa_sign(kp.private_key, message, r2);
  EXPECT_EQ(a, a_again);
  EXPECT_NE(a, b);
  EXPECT_TRUE(xeddsa_verify(kp.public_key, message, a));
  EXPECT_TRUE(xeddsa_verify(kp.public_key, message, b));
}

TEST(CryptoXeddsa, SignaturesAreEd25519SignaturesUnderTheSignerEdwardsKey) {
  DeterministicRng rng(25519);
  int negated = 0;
  for (int i = 0; i < 100; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    const XeddsaSigner signer(kp.private_key);
    const Bytes32& A = signer.edwards_public();
    EXPECT_EQ(A[31] & 0x80, 0) << "key " << i;
    // A is |kB|, and negated() tells whether kB had sign bit 1.
    Bytes32 kB = edwards_point_of(kp.private_key);
    EXPECT_EQ(signer.negated(), (kB[31] & 0x80) != 0) << "key " << i;
    kB[31] &= 0x7f;
    EXPECT_EQ(kB, A) << "key " << i;
    // Converting A back to Montgomery form (libsodium) gives the X25519 public key.
    Bytes32 u{};
    ASSERT_EQ(crypto_sign_ed25519_pk_to_curve25519(u.data(), A.data()), 0);
    EXPECT_EQ(u, kp.public_key.raw()) << "key " << i;
    // The signature is a standard Ed25519 signature under A.
    const Bytes message = random_message(rng);
    const Signature sig = signer.sign(message, rng);
    EXPECT_EQ(crypto_sign_ed25519_verify_detached(sig.data(), message.data(), message.size(), A.data()), 0)
        << "key " << i;
    if (signer.negated()) ++negated;
  }
  // Both branches (scalar negated or not) were exercised.
  EXPECT_GT(negated, 20);
  EXPECT_LT(negated, 80);
}

TEST(CryptoXeddsa, SignerConstructorsAndFreeFunctionAgree) {
  DeterministicRng rng(77);
  for (int i = 0; i < 50; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    const XeddsaSigner derived(kp.private_key);
    const XeddsaSigner cached(kp.private_key, derived.edwards_public(), derived.negated());
    EXPECT_EQ(cached.edwards_public(), derived.edwards_public());
    EXPECT_EQ(cached.negated(), derived.negated());
    const Bytes message = random_message(rng);
    const std::uint64_t seed = 1000u + static_cast<std::uint64_t>(i);
    DeterministicRng r1(seed);
    DeterministicRng r2(seed);
    DeterministicRng r3(seed);
    const Signature s1 = xeddsa_sign(kp.private_key, message, r1);
    const Signature s2 = derived.sign(message, r2);
    const Signature s3 = cached.sign(message, r3);
    EXPECT_EQ(s1, s2) << "key " << i;
    EXPECT_EQ(s1, s3) << "key " << i;
    EXPECT_TRUE(xeddsa_verify(kp.public_key, message, s2)) << "key " << i;
    EXPECT_TRUE(xeddsa_verify(kp.public_key, message, s3)) << "key " << i;
  }
}

TEST(CryptoXeddsa, CachedSignerWithWrongNegationProducesInvalidSignatures) {
  // The cached constructor trusts its arguments; a wrong `negated` must show up as a bad
  // signature, not silently as a good one.
  DeterministicRng rng(78);
  const KeyPair kp = KeyPair::generate(rng);
  const XeddsaSigner derived(kp.private_key);
  const XeddsaSigner wrong(kp.private_key, derived.edwards_public(), !derived.negated());
  const Bytes message = random_message(rng);
  EXPECT_FALSE(xeddsa_verify(kp.public_key, message, wrong.sign(message, rng)));
}

// ---- Edwards conversion ----

TEST(CryptoXeddsa, MontgomeryToEdwardsMatchesTheSignerKey) {
  DeterministicRng rng(9);
  for (int i = 0; i < 200; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    auto y = montgomery_to_edwards_y(kp.public_key);
    ASSERT_TRUE(y.ok()) << y.error().message();
    EXPECT_EQ(*y, XeddsaSigner(kp.private_key).edwards_public()) << "key " << i;
  }
}

TEST(CryptoXeddsa, MontgomeryToEdwardsKnownPoints) {
  // u = 9 (the base point) maps to y = 4/5, the Ed25519 base point 5866...66 (RFC 8032 5.1).
  Bytes32 nine{};
  nine[0] = 9;
  auto y = montgomery_to_edwards_y(PublicKey(nine));
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(to_hex(*y), "5866666666666666666666666666666666666666666666666666666666666666");
  // u = 0 maps to y = -1 = p - 1.
  auto y0 = montgomery_to_edwards_y(PublicKey(Bytes32{}));
  ASSERT_TRUE(y0.ok());
  EXPECT_EQ(to_hex(*y0), "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
  // u = -1 = p - 1 has no Edwards form.
  auto bad = montgomery_to_edwards_y(
      PublicKey(test::unhex_array<32>("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), Errc::bad_key_type);
}

// ---- libsignal-style signatures (sign bit of A stored in sig[63]) ----

TEST(CryptoXeddsa, LibsignalStyleSignaturesVerify) {
  DeterministicRng rng(0x1b519a1);
  int with_sign_bit = 0;
  for (int i = 0; i < 100; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    const Bytes message = random_message(rng);
    const auto z = rng.bytes<64>();
    const Signature sig = libsignal_sign(kp.private_key, message, z);
    const bool sign = (sig[63] & 0x80) != 0;
    EXPECT_EQ(sign, (edwards_point_of(kp.private_key)[31] & 0x80) != 0) << "key " << i;
    EXPECT_TRUE(xeddsa_verify(kp.public_key, message, sig)) << "key " << i << " sign bit " << sign;
    auto y = montgomery_to_edwards_y(kp.public_key);
    ASSERT_TRUE(y.ok());
    EXPECT_TRUE(xeddsa_verify_with_edwards(*y, message, sig)) << "key " << i;
    // The sign bit is really used: flipping it selects -A, which must not verify.
    Signature flipped = sig;
    flipped[63] ^= 0x80;
    EXPECT_FALSE(xeddsa_verify(kp.public_key, message, flipped)) << "key " << i;
    // Where the bit is 0, the libsignal signature is also a plain Ed25519 signature under |A|.
    if (!sign) {
      EXPECT_EQ(crypto_sign_ed25519_verify_detached(sig.data(), message.data(), message.size(),
                                                    XeddsaSigner(kp.private_key).edwards_public().data()),
                0);
    }
    if (sign) ++with_sign_bit;
  }
  EXPECT_GT(with_sign_bit, 25);
  EXPECT_LT(with_sign_bit, 75);
}

// ---- Rejections ----

struct Fixture {
  KeyPair kp;
  Bytes message;
  Signature sig;
};

Fixture make_fixture(std::uint64_t seed) {
  DeterministicRng rng(seed);
  Fixture f{KeyPair::generate(rng), Bytes(57), {}};
  rng.fill(f.message);
  f.sig = xeddsa_sign(f.kp.private_key, f.message, rng);
  EXPECT_TRUE(xeddsa_verify(f.kp.public_key, f.message, f.sig));
  return f;
}

TEST(CryptoXeddsa, RejectsAFlippedMessageBit) {
  const Fixture f = make_fixture(1);
  for (std::size_t byte = 0; byte < f.message.size(); ++byte) {
    for (int bit : {0, 7}) {
      Bytes m = f.message;
      m[byte] = static_cast<std::uint8_t>(m[byte] ^ (1u << bit));
      EXPECT_FALSE(xeddsa_verify(f.kp.public_key, m, f.sig)) << byte << "/" << bit;
    }
  }
  Bytes longer = f.message;
  longer.push_back(0);
  EXPECT_FALSE(xeddsa_verify(f.kp.public_key, longer, f.sig));
  EXPECT_FALSE(xeddsa_verify(f.kp.public_key, ByteView(f.message).first(56), f.sig));
}

TEST(CryptoXeddsa, RejectsFlippedSignatureBytes) {
  const Fixture f = make_fixture(2);
  for (std::size_t i = 0; i < 64; ++i) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x10}}) {
      Signature s = f.sig;
      s[i] ^= mask;
      EXPECT_FALSE(xeddsa_verify(f.kp.public_key, f.message, s)) << (i < 32 ? "R" : "S") << " byte " << i;
    }
  }
}

TEST(CryptoXeddsa, RejectsHighBitsOfS) {
  for (std::uint64_t seed = 3; seed < 8; ++seed) {
    const Fixture f = make_fixture(seed);
    for (std::uint8_t bits :
         {std::uint8_t{0x20}, std::uint8_t{0x40}, std::uint8_t{0x60}, std::uint8_t{0xe0}}) {
      Signature s = f.sig;
      s[63] |= bits;
      EXPECT_FALSE(xeddsa_verify(f.kp.public_key, f.message, s)) << "bits " << int{bits};
    }
  }
}

TEST(CryptoXeddsa, RejectsNonCanonicalS) {
  // S + L (L the group order) is the same scalar mod L; accepting it would make signatures
  // malleable. Find a signature whose S + L still fits in 253 bits (about half of them do).
  const Bytes32 order =
      test::unhex_array<32>("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
  DeterministicRng rng(12);
  const KeyPair kp = KeyPair::generate(rng);
  int tested = 0;
  for (int attempt = 0; attempt < 64 && tested < 5; ++attempt) {
    const Bytes message = random_message(rng);
    const Signature sig = xeddsa_sign(kp.private_key, message, rng);
    Signature bumped = sig;
    unsigned carry = 0;
    for (std::size_t i = 0; i < 32; ++i) {
      const unsigned sum = unsigned{sig[32 + i]} + unsigned{order[i]} + carry;
      bumped[32 + i] = static_cast<std::uint8_t>(sum & 0xff);
      carry = sum >> 8;
    }
    if (carry != 0 || (bumped[63] & 0xe0) != 0) continue;
    ASSERT_TRUE(xeddsa_verify(kp.public_key, message, sig));
    EXPECT_FALSE(xeddsa_verify(kp.public_key, message, bumped)) << "attempt " << attempt;
    ++tested;
  }
  EXPECT_EQ(tested, 5);
}

TEST(CryptoXeddsa, RejectsWrongLengths) {
  const Fixture f = make_fixture(13);
  const ByteView sig(f.sig);
  auto y = montgomery_to_edwards_y(f.kp.public_key);
  ASSERT_TRUE(y.ok());
  EXPECT_FALSE(xeddsa_verify(f.kp.public_key, f.message, sig.first(63)));
  EXPECT_FALSE(xeddsa_verify_with_edwards(*y, f.message, sig.first(63)));
  Bytes longer(sig.begin(), sig.end());
  longer.push_back(0);
  EXPECT_FALSE(xeddsa_verify(f.kp.public_key, f.message, longer));
  EXPECT_FALSE(xeddsa_verify_with_edwards(*y, f.message, longer));
  EXPECT_FALSE(xeddsa_verify(f.kp.public_key, f.message, ByteView{}));
  EXPECT_FALSE(xeddsa_verify(f.kp.public_key, f.message, Bytes(128, 0)));
  // The 64-byte prefix of the longer buffer is still the good signature.
  EXPECT_TRUE(xeddsa_verify(f.kp.public_key, f.message, ByteView(longer).first(64)));
}

TEST(CryptoXeddsa, RejectsTheWrongKey) {
  const Fixture f = make_fixture(14);
  DeterministicRng rng(15);
  for (int i = 0; i < 20; ++i) {
    const KeyPair other = KeyPair::generate(rng);
    EXPECT_FALSE(xeddsa_verify(other.public_key, f.message, f.sig)) << i;
  }
}

TEST(CryptoXeddsa, KeyWithNoEdwardsFormIsRejectedWithoutCrashing) {
  const Fixture f = make_fixture(16);
  // u = p - 1 = 2^255 - 20: y = (u - 1) / (u + 1) divides by zero.
  const PublicKey minus_one(
      test::unhex_array<32>("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"));
  EXPECT_FALSE(xeddsa_verify(minus_one, f.message, f.sig));
  // The same with the ignored top bit set: still u = p - 1.
  const PublicKey minus_one_high(
      test::unhex_array<32>("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"));
  EXPECT_FALSE(xeddsa_verify(minus_one_high, f.message, f.sig));
  auto y = montgomery_to_edwards_y(minus_one_high);
  ASSERT_FALSE(y.ok());
  EXPECT_EQ(y.error(), Errc::bad_key_type);
}

TEST(CryptoXeddsa, SmallOrderAndRandomKeysNeverVerify) {
  const Fixture f = make_fixture(17);
  for (const char* hex : {"0000000000000000000000000000000000000000000000000000000000000000",
                          "0100000000000000000000000000000000000000000000000000000000000000",
                          "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
                          "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
                          "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"}) {
    EXPECT_FALSE(xeddsa_verify(PublicKey(test::unhex_array<32>(hex)), f.message, f.sig)) << hex;
  }
  // Arbitrary u values (about half have no point on the curve) and arbitrary signatures.
  DeterministicRng rng(18);
  for (int i = 0; i < 300; ++i) {
    const PublicKey u(rng.bytes<32>());
    const Signature junk = rng.bytes<64>();
    EXPECT_FALSE(xeddsa_verify(u, f.message, junk)) << i;
    EXPECT_FALSE(xeddsa_verify(u, f.message, f.sig)) << i;
  }
}

TEST(CryptoXeddsa, TopBitOfTheMontgomeryKeyIsIgnored) {
  // As in libsignal: the top bit of u is masked before conversion.
  const Fixture f = make_fixture(19);
  Bytes32 high = f.kp.public_key.raw();
  high[31] |= 0x80;
  EXPECT_TRUE(xeddsa_verify(PublicKey(high), f.message, f.sig));
  auto a = montgomery_to_edwards_y(f.kp.public_key);
  auto b = montgomery_to_edwards_y(PublicKey(high));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

// ---- Cached verification ----

TEST(CryptoXeddsa, VerifyWithEdwardsAgreesWithVerify) {
  DeterministicRng rng(20);
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < 100; ++i) {
    const KeyPair kp = KeyPair::generate(rng);
    auto y = montgomery_to_edwards_y(kp.public_key);
    ASSERT_TRUE(y.ok());
    const Bytes message = random_message(rng);
    Signature sig = (i % 2 == 0) ? xeddsa_sign(kp.private_key, message, rng)
                                 : libsignal_sign(kp.private_key, message, rng.bytes<64>());
    // Every third signature is damaged in a random place.
    if (i % 3 == 0) {
      const std::uint32_t pos = rng.uniform(64);
      sig[pos] = static_cast<std::uint8_t>(sig[pos] ^ (1u << rng.uniform(8)));
    }
    const bool full = xeddsa_verify(kp.public_key, message, sig);
    const bool cached = xeddsa_verify_with_edwards(*y, message, sig);
    EXPECT_EQ(full, cached) << i;
    EXPECT_EQ(full, i % 3 != 0) << i;
    (full ? accepted : rejected)++;
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 25);
}

}  // namespace
}  // namespace postern::crypto
