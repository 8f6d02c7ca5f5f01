// Tests for postern/crypto/secret.h: constant-time comparison, wiping, SecretArray and SecretBytes.
// (That the destructors wipe cannot be observed without reading dead objects, which is undefined
// behaviour; the destructors call the same wipe() that is tested here.)
#include "postern/crypto/secret.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <utility>

#include "postern/crypto/random.h"

namespace postern::crypto {
namespace {

bool all_zero(ByteView b) {
  return std::all_of(b.begin(), b.end(), [](std::uint8_t x) { return x == 0; });
}

TEST(CryptoSecret, ConstantTimeEqualComparesContents) {
  const Bytes a{1, 2, 3, 4, 5, 6, 7, 8};
  const Bytes same = a;
  EXPECT_TRUE(constant_time_equal(a, same));
  for (std::size_t i = 0; i < a.size(); ++i) {
    Bytes b = a;
    b[i] ^= 0x80;
    EXPECT_FALSE(constant_time_equal(a, b)) << i;
    EXPECT_FALSE(constant_time_equal(b, a)) << i;
  }
}

TEST(CryptoSecret, ConstantTimeEqualRejectsDifferentSizes) {
  const Bytes a{1, 2, 3, 4};
  EXPECT_FALSE(constant_time_equal(a, ByteView(a).first(3)));
  EXPECT_FALSE(constant_time_equal(ByteView(a).first(3), a));
  const Bytes longer{1, 2, 3, 4, 0};
  EXPECT_FALSE(constant_time_equal(a, longer));
  EXPECT_FALSE(constant_time_equal(a, ByteView{}));
  EXPECT_FALSE(constant_time_equal(ByteView{}, a));
}

TEST(CryptoSecret, ConstantTimeEqualOfEmptyViewsIsTrue) {
  EXPECT_TRUE(constant_time_equal(ByteView{}, ByteView{}));
  const Bytes a{9};
  EXPECT_TRUE(constant_time_equal(ByteView(a).first(0), ByteView{}));
}

TEST(CryptoSecret, ConstantTimeEqualOnLongBuffers) {
  DeterministicRng rng(1);
  Bytes a(4096);
  rng.fill(a);
  Bytes b = a;
  EXPECT_TRUE(constant_time_equal(a, b));
  b[4095] ^= 1;
  EXPECT_FALSE(constant_time_equal(a, b));
  b[4095] ^= 1;
  b[0] ^= 1;
  EXPECT_FALSE(constant_time_equal(a, b));
}

TEST(CryptoSecret, WipeZeroesTheBytes) {
  Bytes buf(100, 0xaa);
  wipe(MutableByteView(buf).subspan(10, 50));
  EXPECT_TRUE(all_zero(ByteView(buf).subspan(10, 50)));
  // Only the given range is touched.
  EXPECT_TRUE(std::all_of(buf.begin(), buf.begin() + 10, [](std::uint8_t x) { return x == 0xaa; }));
  EXPECT_TRUE(std::all_of(buf.begin() + 60, buf.end(), [](std::uint8_t x) { return x == 0xaa; }));

  std::array<std::uint8_t, 33> raw{};
  raw.fill(0x5c);
  wipe(raw.data(), raw.size());
  EXPECT_TRUE(all_zero(raw));

  // Zero sizes are fine, also with a null pointer.
  wipe(nullptr, 0);
  wipe(MutableByteView{});
  Bytes untouched(4, 0x77);
  wipe(untouched.data(), 0);
  EXPECT_EQ(untouched, Bytes(4, 0x77));
}

TEST(CryptoSecret, SecretArrayStartsZeroAndCopiesItsSource) {
  const SecretArray<32> zero;
  EXPECT_TRUE(all_zero(zero.view()));

  std::array<std::uint8_t, 32> src{};
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i + 1);
  const SecretArray<32> s{std::span<const std::uint8_t, 32>(src)};
  EXPECT_TRUE(std::equal(src.begin(), src.end(), s.view().begin()));
  EXPECT_EQ(s[0], 1);
  EXPECT_EQ(s[31], 32);
  EXPECT_EQ(s.view().size(), 32u);
  EXPECT_EQ(s.span().size(), 32u);
  EXPECT_EQ(s.data(), s.view().data());
}

TEST(CryptoSecret, SecretArrayEquality) {
  DeterministicRng rng(2);
  SecretArray<32> a;
  rng.fill(a.span());
  SecretArray<32> b = a;
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a != b);
  for (std::size_t i : {0u, 15u, 31u}) {
    SecretArray<32> c = a;
    c[i] ^= 0x01;
    EXPECT_FALSE(a == c) << i;
    EXPECT_TRUE(a != c) << i;
  }
  SecretArray<32> assigned;
  EXPECT_FALSE(assigned == a);
  assigned = a;
  EXPECT_TRUE(assigned == a);
  // Mutation through data() is seen by the comparison.
  assigned.data()[7] = static_cast<std::uint8_t>(assigned.data()[7] + 1);
  EXPECT_FALSE(assigned == a);
}

TEST(CryptoSecret, SecretBytesHoldsAndCopiesContents) {
  SecretBytes empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.size(), 0u);

  SecretBytes sized(16);
  EXPECT_EQ(sized.size(), 16u);
  EXPECT_TRUE(all_zero(sized.view()));

  const Bytes content{1, 2, 3};
  SecretBytes s(content);
  s.append(Bytes{4, 5});
  EXPECT_EQ(Bytes(s.view().begin(), s.view().end()), (Bytes{1, 2, 3, 4, 5}));

  SecretBytes copy(s);
  EXPECT_TRUE(constant_time_equal(copy.view(), s.view()));
  SecretBytes assigned(Bytes{9, 9, 9, 9, 9, 9, 9, 9});
  assigned = s;
  EXPECT_TRUE(constant_time_equal(assigned.view(), s.view()));
  const SecretBytes& alias = assigned;
  assigned = alias;  // self-assignment keeps the contents
  EXPECT_TRUE(constant_time_equal(assigned.view(), s.view()));

  SecretBytes moved(std::move(copy));
  EXPECT_EQ(Bytes(moved.view().begin(), moved.view().end()), (Bytes{1, 2, 3, 4, 5}));
  SecretBytes move_assigned(Bytes{7});
  move_assigned = std::move(moved);
  EXPECT_EQ(Bytes(move_assigned.view().begin(), move_assigned.view().end()), (Bytes{1, 2, 3, 4, 5}));

  wipe(move_assigned.mutable_view());
  EXPECT_EQ(move_assigned.size(), 5u);
  EXPECT_TRUE(all_zero(move_assigned.view()));
}

}  // namespace
}  // namespace postern::crypto
