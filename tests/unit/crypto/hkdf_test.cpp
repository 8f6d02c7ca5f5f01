// Tests for postern/crypto/hkdf.h: RFC 5869 appendix A (SHA-256 cases 1-3), the Wycheproof
// HKDF-SHA256 set, and the length limits.
#include "postern/crypto/hkdf.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <string>

#include "crypto/test_vectors.h"
#include "postern/crypto/errors.h"
#include "postern/crypto/random.h"

namespace postern::crypto {
namespace {

using test::unhex;

Bytes range_bytes(int first, int last_inclusive) {
  Bytes b;
  for (int i = first; i <= last_inclusive; ++i) b.push_back(static_cast<std::uint8_t>(i));
  return b;
}

Bytes derive(ByteView ikm, ByteView salt, ByteView info, std::size_t n) {
  Bytes out(n, 0xee);
  Status s = hkdf_sha256(ikm, salt, info, out);
  EXPECT_TRUE(s.ok()) << s.error().message();
  return out;
}

TEST(CryptoHkdf, Rfc5869TestCase1) {
  // RFC 5869 A.1: basic test case with SHA-256.
  const Bytes ikm(22, 0x0b);
  const Bytes salt = range_bytes(0x00, 0x0c);
  const Bytes info = range_bytes(0xf0, 0xf9);
  EXPECT_EQ(to_hex(derive(ikm, salt, info, 42)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(CryptoHkdf, Rfc5869TestCase2) {
  // RFC 5869 A.2: longer inputs/outputs with SHA-256.
  const Bytes ikm = range_bytes(0x00, 0x4f);
  const Bytes salt = range_bytes(0x60, 0xaf);
  const Bytes info = range_bytes(0xb0, 0xff);
  EXPECT_EQ(to_hex(derive(ikm, salt, info, 82)),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

TEST(CryptoHkdf, Rfc5869TestCase3) {
  // RFC 5869 A.3: zero-length salt and info with SHA-256.
  const Bytes ikm(22, 0x0b);
  EXPECT_EQ(to_hex(derive(ikm, ByteView{}, ByteView{}, 42)),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(CryptoHkdf, EmptySaltEqualsThirtyTwoZeroBytes) {
  DeterministicRng rng(5869);
  for (int i = 0; i < 20; ++i) {
    Bytes ikm(static_cast<std::size_t>(1 + rng.uniform(80)));
    Bytes info(static_cast<std::size_t>(rng.uniform(40)));
    rng.fill(ikm);
    rng.fill(info);
    const std::string with_empty = to_hex(derive(ikm, ByteView{}, info, 64));
    EXPECT_EQ(with_empty, to_hex(derive(ikm, Bytes(32, 0), info, 64)));
    // ... and differs from another salt. (Not from other all-zero salts of up to 64 bytes: HMAC
    // pads its key with zeros, so those are the same key.)
    EXPECT_NE(with_empty, to_hex(derive(ikm, Bytes(32, 1), info, 64)));
    EXPECT_NE(with_empty, to_hex(derive(ikm, Bytes(65, 0), info, 64)));
  }
}

TEST(CryptoHkdf, ZeroLengthOutputIsOk) {
  Bytes none;
  Status s = hkdf_sha256(as_bytes("ikm"), as_bytes("salt"), as_bytes("info"), none);
  EXPECT_TRUE(s.ok()) << s.error().message();
}

TEST(CryptoHkdf, MaximumLengthIsOkAndPrefixStable) {
  const Bytes ikm(22, 0x0b);
  const Bytes salt = range_bytes(0x00, 0x0c);
  const Bytes info = range_bytes(0xf0, 0xf9);
  const Bytes full = derive(ikm, salt, info, 255 * 32);
  ASSERT_EQ(full.size(), 8160u);
  // HKDF output of length n is the prefix of any longer output: check against RFC 5869 A.1.
  EXPECT_EQ(to_hex(ByteView(full).first(42)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  for (std::size_t n : {1u, 31u, 32u, 33u, 64u, 1000u, 8159u}) {
    const Bytes part = derive(ikm, salt, info, n);
    EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin())) << n;
  }
  // The last block (counter 255) was written: the tail is not the fill pattern.
  EXPECT_FALSE(std::all_of(full.end() - 32, full.end(), [](std::uint8_t b) { return b == 0xee; }));
  // Distinct blocks.
  EXPECT_FALSE(std::equal(full.end() - 32, full.end(), full.end() - 64));
}

TEST(CryptoHkdf, OneByteOverTheMaximumIsRejected) {
  for (std::size_t n : {8161u, 8192u, 100000u}) {
    Bytes out(n);
    Status s = hkdf_sha256(as_bytes("ikm"), ByteView{}, ByteView{}, out);
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_EQ(s.error(), Errc::bad_length) << n;
    EXPECT_STREQ(s.error().category().name(), "postern.crypto");
  }
}

TEST(CryptoHkdf, InfoAndIkmChangeTheOutput) {
  const Bytes a = derive(as_bytes("ikm"), as_bytes("salt"), as_bytes("info"), 32);
  EXPECT_NE(a, derive(as_bytes("ikm"), as_bytes("salt"), as_bytes("infO"), 32));
  EXPECT_NE(a, derive(as_bytes("ikn"), as_bytes("salt"), as_bytes("info"), 32));
  EXPECT_NE(a, derive(as_bytes("ikm"), as_bytes("salu"), as_bytes("info"), 32));
}

// Wycheproof: C2SP/wycheproof testvectors_v1/hkdf_sha256_test.json.
TEST(CryptoHkdf, Wycheproof) {
  POSTERN_LOAD_VECTORS_OR_SKIP(j, "wycheproof-hkdf_sha256.json");
  int valid = 0;
  int invalid = 0;
  for (const auto& group : j.at("testGroups")) {
    for (const auto& t : group.at("tests")) {
      const int id = t.at("tcId").get<int>();
      const Bytes ikm = unhex(t.at("ikm").get<std::string>());
      const Bytes salt = unhex(t.at("salt").get<std::string>());
      const Bytes info = unhex(t.at("info").get<std::string>());
      const std::size_t size = t.at("size").get<std::size_t>();
      const std::string result = t.at("result").get<std::string>();
      Bytes out(size);
      Status s = hkdf_sha256(ikm, salt, info, out);
      if (result == "valid") {
        ASSERT_TRUE(s.ok()) << "tcId " << id << ": " << s.error().message();
        EXPECT_EQ(to_hex(out), t.at("okm").get<std::string>()) << "tcId " << id;
        ++valid;
      } else {
        ASSERT_EQ(result, "invalid") << "tcId " << id;
        EXPECT_FALSE(s.ok()) << "tcId " << id;
        EXPECT_EQ(s.error(), Errc::bad_length) << "tcId " << id;
        ++invalid;
      }
    }
  }
  EXPECT_GE(valid, 80);
  EXPECT_GE(invalid, 1);
  std::cout << "[ vectors  ] wycheproof-hkdf_sha256: " << valid << " valid, " << invalid << " invalid\n";
}

}  // namespace
}  // namespace postern::crypto
