// Tests for postern/crypto/hash.h: SHA-256 and SHA-512 (FIPS 180-4 examples), HMAC-SHA256
// (RFC 4231 and the Wycheproof HMAC-SHA256 set), and the incremental interfaces.
#include "postern/crypto/hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/test_vectors.h"
#include "postern/crypto/random.h"

namespace postern::crypto {
namespace {

using test::unhex;

ByteView view(const Sha256Digest& d) {
  return d;
}
ByteView view(const Sha512Digest& d) {
  return d;
}

// ---- SHA-256 / SHA-512: FIPS 180-2 appendix B/C examples (also in FIPS 180-4's example file) ----

TEST(CryptoHash, Sha256Fips180Abc) {
  // FIPS 180-2 B.1: SHA-256("abc").
  EXPECT_EQ(to_hex(view(sha256(as_bytes("abc")))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(CryptoHash, Sha256Fips180TwoBlockAndEmpty) {
  // FIPS 180-2 B.2: the 448-bit message.
  EXPECT_EQ(to_hex(view(sha256(as_bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // SHA-256 of the empty string (NIST CAVS SHA256ShortMsg, Len = 0).
  EXPECT_EQ(to_hex(view(sha256(ByteView{}))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(CryptoHash, Sha256Fips180MillionA) {
  // FIPS 180-2 B.3: one million 'a'.
  const std::string m(1000000, 'a');
  EXPECT_EQ(to_hex(view(sha256(as_bytes(m)))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(CryptoHash, Sha512Fips180Abc) {
  // FIPS 180-2 C.1: SHA-512("abc").
  EXPECT_EQ(to_hex(view(sha512(as_bytes("abc")))),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

TEST(CryptoHash, Sha512Fips180TwoBlockAndMillionA) {
  // FIPS 180-2 C.2: the 896-bit message.
  EXPECT_EQ(to_hex(view(sha512(as_bytes("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                                        "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")))),
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
            "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909");
  // FIPS 180-2 C.3: one million 'a'.
  const std::string m(1000000, 'a');
  EXPECT_EQ(to_hex(view(sha512(as_bytes(m)))),
            "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
            "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b");
}

TEST(CryptoHash, Sha512IncrementalEqualsOneShot) {
  DeterministicRng rng(512);
  for (std::size_t len : {0u, 1u, 63u, 64u, 111u, 112u, 127u, 128u, 129u, 300u, 1000u}) {
    Bytes data(len);
    rng.fill(data);
    const Sha512Digest whole = sha512(data);
    // Split at every position that is interesting for the 128-byte block, and in three parts.
    for (std::size_t cut = 0; cut <= len; cut += (len < 20 ? 1 : 7)) {
      Sha512 h;
      h.update(ByteView(data).first(cut)).update(ByteView(data).subspan(cut));
      EXPECT_EQ(h.finish(), whole) << "len " << len << " cut " << cut;
    }
    Sha512 bytewise;
    for (std::uint8_t b : data) bytewise.update(ByteView(&b, 1));
    EXPECT_EQ(bytewise.finish(), whole) << "len " << len;
  }
}

TEST(CryptoHash, DifferentInputsGiveDifferentDigests) {
  EXPECT_NE(sha256(as_bytes("abc")), sha256(as_bytes("abd")));
  EXPECT_NE(sha512(as_bytes("abc")), sha512(as_bytes("abc ")));
}

// ---- HMAC-SHA256: RFC 4231 section 4 ----

struct Rfc4231Case {
  int number;
  Bytes key;
  Bytes data;
  std::string tag_hex;  // truncated to 128 bits in test case 5
};

std::vector<Rfc4231Case> rfc4231_cases() {
  Bytes key4(25);
  for (std::size_t i = 0; i < key4.size(); ++i) key4[i] = static_cast<std::uint8_t>(i + 1);
  auto bytes_of = [](std::string_view s) { return Bytes(s.begin(), s.end()); };
  return {
      {1, Bytes(20, 0x0b), bytes_of("Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {2, bytes_of("Jefe"), bytes_of("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {3, Bytes(20, 0xaa), Bytes(50, 0xdd),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {4, key4, Bytes(50, 0xcd), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {5, Bytes(20, 0x0c), bytes_of("Test With Truncation"), "a3b6167473100ee06e0c796c2955552b"},
      {6, Bytes(131, 0xaa), bytes_of("Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {7, Bytes(131, 0xaa),
       bytes_of(
           "This is a test using a larger than block-size key and a larger than block-size data. The key "
           "needs to be hashed before being used by the HMAC algorithm."),
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
}

TEST(CryptoHash, HmacSha256Rfc4231) {
  for (const auto& c : rfc4231_cases()) {
    const Hmac256Tag tag = hmac_sha256(c.key, c.data);
    const std::string hex = to_hex(tag);
    EXPECT_EQ(hex.substr(0, c.tag_hex.size()), c.tag_hex) << "RFC 4231 test case " << c.number;
  }
}

TEST(CryptoHash, HmacSha256IncrementalEqualsOneShot) {
  for (const auto& c : rfc4231_cases()) {
    const Hmac256Tag whole = hmac_sha256(c.key, c.data);
    for (std::size_t cut = 0; cut <= c.data.size(); ++cut) {
      HmacSha256 mac(c.key);
      mac.update(ByteView(c.data).first(cut)).update(ByteView(c.data).subspan(cut));
      EXPECT_EQ(mac.finish(), whole) << "case " << c.number << " cut " << cut;
    }
    HmacSha256 bytewise(c.key);
    for (std::uint8_t b : c.data) bytewise.update(b);
    EXPECT_EQ(bytewise.finish(), whole) << "case " << c.number;
  }
}

TEST(CryptoHash, HmacSha256DependsOnKeyAndData) {
  const Bytes key(32, 0x11);
  Bytes key2 = key;
  key2[31] ^= 1;
  EXPECT_NE(hmac_sha256(key, as_bytes("m")), hmac_sha256(key2, as_bytes("m")));
  EXPECT_NE(hmac_sha256(key, as_bytes("m")), hmac_sha256(key, as_bytes("n")));
  // An empty key is a valid HMAC key (padded with zeros): it equals the all-zero 64-byte key.
  EXPECT_EQ(hmac_sha256(ByteView{}, as_bytes("m")), hmac_sha256(Bytes(64, 0), as_bytes("m")));
}

// ---- HMAC-SHA256: Wycheproof (C2SP/wycheproof testvectors_v1/hmac_sha256_test.json) ----

TEST(CryptoHash, HmacSha256Wycheproof) {
  POSTERN_LOAD_VECTORS_OR_SKIP(j, "wycheproof-hmac_sha256.json");
  int valid = 0;
  int invalid = 0;
  for (const auto& group : j.at("testGroups")) {
    const std::size_t tag_bytes = group.at("tagSize").get<std::size_t>() / 8;
    ASSERT_GT(tag_bytes, 0u);
    ASSERT_LE(tag_bytes, 32u);
    for (const auto& t : group.at("tests")) {
      const int id = t.at("tcId").get<int>();
      const Bytes key = unhex(t.at("key").get<std::string>());
      const Bytes msg = unhex(t.at("msg").get<std::string>());
      const Bytes expected = unhex(t.at("tag").get<std::string>());
      const std::string result = t.at("result").get<std::string>();
      const Hmac256Tag tag = hmac_sha256(key, msg);
      const bool match =
          expected.size() == tag_bytes && std::equal(expected.begin(), expected.end(), tag.begin());
      if (result == "valid") {
        EXPECT_TRUE(match) << "tcId " << id;
        ++valid;
      } else {
        ASSERT_EQ(result, "invalid") << "tcId " << id;
        EXPECT_FALSE(match) << "tcId " << id;
        ++invalid;
      }
    }
  }
  EXPECT_GE(valid, 50);
  EXPECT_GE(invalid, 50);
  std::cout << "[ vectors  ] wycheproof-hmac_sha256: " << valid << " valid, " << invalid << " invalid\n";
}

}  // namespace
}  // namespace postern::crypto
