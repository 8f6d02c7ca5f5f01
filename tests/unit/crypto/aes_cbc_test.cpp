// Tests for postern/crypto/aes_cbc.h: NIST SP 800-38A F.2.5 (CBC-AES256), round trips, the
// error cases, and the Wycheproof AES-CBC-PKCS5 set (all key sizes).
#include "postern/crypto/aes_cbc.h"

#include <gtest/gtest.h>

#include <iostream>
#include <set>
#include <string>

#include "crypto/test_vectors.h"
#include "postern/crypto/errors.h"
#include "postern/crypto/random.h"

namespace postern::crypto {
namespace {

using test::unhex;

Bytes iota_bytes(std::size_t n, std::uint8_t start = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(start + i);
  return b;
}

TEST(CryptoAesCbc, NistSp80038aCbcAes256) {
  // NIST SP 800-38A appendix F.2.5 (CBC-AES256.Encrypt). The SP has no padding; with PKCS#7 the four
  // blocks are followed by one full block of padding, so the first 64 bytes must match exactly.
  const Bytes key = unhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
  const Bytes iv = unhex("000102030405060708090a0b0c0d0e0f");
  const Bytes pt = unhex(
      "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
      "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710");
  const std::string ct_hex =
      "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
      "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b";
  auto ct = aes_cbc_encrypt(key, iv, pt);
  ASSERT_TRUE(ct.ok()) << ct.error().message();
  ASSERT_EQ(ct->size(), 80u);
  EXPECT_EQ(to_hex(ByteView(*ct).first(64)), ct_hex);
  auto back = aes_cbc_decrypt(key, iv, *ct);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, pt);
}

TEST(CryptoAesCbc, RoundTripsEveryLengthUpTo100ForEveryKeySize) {
  DeterministicRng rng(1);
  for (std::size_t key_len : {16u, 24u, 32u}) {
    Bytes key(key_len);
    Bytes iv(16);
    for (std::size_t len = 0; len <= 100; ++len) {
      rng.fill(key);
      rng.fill(iv);
      Bytes pt(len);
      rng.fill(pt);
      auto ct = aes_cbc_encrypt(key, iv, pt);
      ASSERT_TRUE(ct.ok()) << key_len << "/" << len << ": " << ct.error().message();
      EXPECT_EQ(ct->size(), (len / 16 + 1) * 16) << key_len << "/" << len;
      auto back = aes_cbc_decrypt(key, iv, *ct);
      ASSERT_TRUE(back.ok()) << key_len << "/" << len << ": " << back.error().message();
      EXPECT_EQ(*back, pt) << key_len << "/" << len;
    }
  }
}

TEST(CryptoAesCbc, CiphertextDependsOnKeyAndIv) {
  const Bytes key(32, 0x42);
  const Bytes iv(16, 0x24);
  const Bytes pt = iota_bytes(40);
  Bytes key2 = key;
  key2[0] ^= 1;
  Bytes iv2 = iv;
  iv2[15] ^= 1;
  auto a = aes_cbc_encrypt(key, iv, pt);
  auto b = aes_cbc_encrypt(key2, iv, pt);
  auto c = aes_cbc_encrypt(key, iv2, pt);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(*a, *c);
  // Same inputs, same output (no hidden randomness).
  auto again = aes_cbc_encrypt(key, iv, pt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*a, *again);
}

TEST(CryptoAesCbc, DecryptRejectsEmptyAndPartialBlocks) {
  const Bytes key(32, 1);
  const Bytes iv(16, 2);
  for (std::size_t len : {0u, 1u, 15u, 17u, 31u, 33u, 47u}) {
    auto r = aes_cbc_decrypt(key, iv, Bytes(len, 0x5a));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.error(), Errc::bad_length) << len;
  }
}

// Encrypts a 16-byte block P so that decrypting only the first ciphertext block makes the
// decryptor see P as its final block: that checks the padding rules on chosen bytes.
Result<Bytes> decrypt_as_final_block(const Bytes& key, const Bytes& iv, const Bytes& block) {
  auto ct = aes_cbc_encrypt(key, iv, block);
  if (!ct) return ct.error();
  return aes_cbc_decrypt(key, iv, ByteView(*ct).first(16));
}

TEST(CryptoAesCbc, DecryptRejectsBadPadding) {
  const Bytes key = iota_bytes(32, 0x80);
  const Bytes iv = iota_bytes(16, 0x40);
  Bytes block = iota_bytes(16, 0x20);

  // Valid paddings first, so that the construction is shown to work.
  block[15] = 0x01;
  auto one = decrypt_as_final_block(key, iv, block);
  ASSERT_TRUE(one.ok()) << one.error().message();
  EXPECT_EQ(*one, Bytes(block.begin(), block.begin() + 15));
  Bytes full(16, 0x10);
  auto sixteen = decrypt_as_final_block(key, iv, full);
  ASSERT_TRUE(sixteen.ok()) << sixteen.error().message();
  EXPECT_TRUE(sixteen->empty());

  struct Bad {
    const char* what;
    Bytes block;
  };
  Bytes zero_pad = block;
  zero_pad[15] = 0x00;
  Bytes too_long = block;
  too_long[15] = 0x11;
  Bytes inconsistent = block;
  inconsistent[14] = 0x03;
  inconsistent[15] = 0x02;
  Bytes almost_full(16, 0x10);
  almost_full[0] = 0x0f;
  Bytes max_byte = block;
  max_byte[15] = 0xff;
  for (const Bad& bad :
       {Bad{"pad byte 0", zero_pad}, Bad{"pad 17 > block", too_long}, Bad{"03 02", inconsistent},
        Bad{"16 x 0x10 but first 0x0f", almost_full}, Bad{"pad 0xff", max_byte}}) {
    auto r = decrypt_as_final_block(key, iv, bad.block);
    ASSERT_FALSE(r.ok()) << bad.what;
    EXPECT_EQ(r.error(), Errc::bad_padding) << bad.what;
  }
}

TEST(CryptoAesCbc, WrongKeyOrIvLengthIsBadKeyLength) {
  const Bytes pt = iota_bytes(20);
  const Bytes iv(16, 0);
  for (std::size_t key_len : {0u, 1u, 15u, 17u, 23u, 25u, 31u, 33u, 64u}) {
    const Bytes key(key_len, 7);
    auto e = aes_cbc_encrypt(key, iv, pt);
    ASSERT_FALSE(e.ok()) << key_len;
    EXPECT_EQ(e.error(), Errc::bad_key_length) << key_len;
    auto d = aes_cbc_decrypt(key, iv, Bytes(32, 0));
    ASSERT_FALSE(d.ok()) << key_len;
    EXPECT_EQ(d.error(), Errc::bad_key_length) << key_len;
  }
  const Bytes key(32, 7);
  for (std::size_t iv_len : {0u, 8u, 12u, 15u, 17u, 32u}) {
    const Bytes bad_iv(iv_len, 9);
    auto e = aes_cbc_encrypt(key, bad_iv, pt);
    ASSERT_FALSE(e.ok()) << iv_len;
    EXPECT_EQ(e.error(), Errc::bad_key_length) << iv_len;
    auto d = aes_cbc_decrypt(key, bad_iv, Bytes(32, 0));
    ASSERT_FALSE(d.ok()) << iv_len;
    EXPECT_EQ(d.error(), Errc::bad_key_length) << iv_len;
  }
}

// Wycheproof: C2SP/wycheproof testvectors_v1/aes_cbc_pkcs5_test.json (128-, 192- and 256-bit keys).
TEST(CryptoAesCbc, Wycheproof) {
  POSTERN_LOAD_VECTORS_OR_SKIP(j, "wycheproof-aes_cbc_pkcs5.json");
  int valid = 0;
  int invalid = 0;
  std::set<std::size_t> key_sizes;
  for (const auto& group : j.at("testGroups")) {
    for (const auto& t : group.at("tests")) {
      const int id = t.at("tcId").get<int>();
      const Bytes key = unhex(t.at("key").get<std::string>());
      const Bytes iv = unhex(t.at("iv").get<std::string>());
      const Bytes msg = unhex(t.at("msg").get<std::string>());
      const Bytes ct = unhex(t.at("ct").get<std::string>());
      const std::string result = t.at("result").get<std::string>();
      key_sizes.insert(key.size());
      if (result == "valid") {
        auto e = aes_cbc_encrypt(key, iv, msg);
        ASSERT_TRUE(e.ok()) << "tcId " << id << ": " << e.error().message();
        EXPECT_EQ(*e, ct) << "tcId " << id;
        auto d = aes_cbc_decrypt(key, iv, ct);
        ASSERT_TRUE(d.ok()) << "tcId " << id << ": " << d.error().message();
        EXPECT_EQ(*d, msg) << "tcId " << id;
        ++valid;
      } else {
        ASSERT_EQ(result, "invalid") << "tcId " << id;
        auto d = aes_cbc_decrypt(key, iv, ct);
        ASSERT_FALSE(d.ok()) << "tcId " << id << " decrypted";
        EXPECT_TRUE(d.error() == Errc::bad_padding || d.error() == Errc::bad_length)
            << "tcId " << id << ": " << d.error().message();
        ++invalid;
      }
    }
  }
  EXPECT_EQ(key_sizes, (std::set<std::size_t>{16, 24, 32}));
  EXPECT_GE(valid, 60);
  EXPECT_GE(invalid, 100);
  std::cout << "[ vectors  ] wycheproof-aes_cbc_pkcs5: " << valid << " valid, " << invalid << " invalid\n";
}

}  // namespace
}  // namespace postern::crypto
