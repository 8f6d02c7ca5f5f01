#include "postern/client/content.h"

#include <gtest/gtest.h>

namespace postern::client {
namespace {

TEST(Content, PadsToBlocksOf160) {
  for (std::size_t n : {0u, 1u, 158u, 159u, 160u, 1000u}) {
    Bytes plain(n, 0x41);
    const Bytes padded = pad_content(plain);
    EXPECT_EQ(padded.size() % kPaddingBlock, 0u) << n;
    EXPECT_GT(padded.size(), n);
    auto back = unpad_content(padded);
    ASSERT_TRUE(back.ok()) << n;
    EXPECT_EQ(*back, plain);
  }
}

TEST(Content, TrailingZerosOfThePlaintextSurvive) {
  Bytes plain = {1, 2, 0, 0};
  auto back = unpad_content(pad_content(plain));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, plain);
}

TEST(Content, BadPaddingRefused) {
  EXPECT_FALSE(unpad_content(Bytes{}).ok());
  EXPECT_FALSE(unpad_content(Bytes(160, 0)).ok());
  EXPECT_FALSE(unpad_content(Bytes{1, 2, 3}).ok());
}

TEST(Content, RoundTripAndLimits) {
  content::v1::Content c;
  c.mutable_data_message()->set_body("hello");
  c.mutable_data_message()->set_timestamp(42);
  auto parsed = parse_padded(serialize_padded(c));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->data_message().body(), "hello");
  EXPECT_FALSE(parse_padded(Bytes(kMaxContentBytes + 2 * kPaddingBlock, 0x80)).ok());
  Bytes garbage = pad_content(Bytes{0xff, 0xff, 0xff});
  EXPECT_FALSE(parse_padded(garbage).ok());
}

}  // namespace
}  // namespace postern::client
