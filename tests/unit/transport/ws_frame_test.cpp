// Tests for postern/transport/ws_frame.h: the examples of RFC 6455 section 5.7 typed in byte by
// byte, every rule the parser enforces, and parsing a header as its bytes trickle in.
#include "postern/transport/ws_frame.h"

#include <gtest/gtest.h>

#include <string>

#include "postern/transport/errors.h"

namespace postern::transport::ws {
namespace {

// Hands out a fixed 4-byte pattern, so a client frame's masking key is known.
class FixedRng final : public crypto::Rng {
 public:
  explicit FixedRng(std::array<std::uint8_t, 4> pattern) : pattern_(pattern) {}
  void fill(MutableByteView out) override {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern_[i % 4];
  }

 private:
  std::array<std::uint8_t, 4> pattern_;
};

constexpr std::size_t kBig = 1 << 20;

FrameHeader parse_ok(const Bytes& b, bool masked, std::size_t max = kBig) {
  auto r = parse_frame_header(b, masked, max);
  EXPECT_TRUE(r.ok()) << r.error().message();
  if (!r.ok() || !r->has_value()) {
    ADD_FAILURE() << "no header";
    return {};
  }
  return **r;
}

Errc parse_error(const Bytes& b, bool masked, std::size_t max = kBig) {
  auto r = parse_frame_header(b, masked, max);
  if (r.ok()) return Errc::ok;
  EXPECT_EQ(&r.error().category(), &transport_category());
  return static_cast<Errc>(r.error().value());
}

const Bytes kHello = {0x48, 0x65, 0x6c, 0x6c, 0x6f};

TEST(WsFrame, Rfc6455_5_7_UnmaskedHello) {
  // RFC 6455 5.7: "A single-frame unmasked text message".
  const Bytes frame = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  const FrameHeader h = parse_ok(frame, false);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.opcode, Opcode::text);
  EXPECT_FALSE(h.masked);
  EXPECT_EQ(h.payload_size, 5u);
  EXPECT_EQ(h.header_size, 2u);
  EXPECT_EQ(Bytes(frame.begin() + 2, frame.end()), kHello);
  // A server (which reads masked frames) refuses it.
  EXPECT_EQ(parse_error(frame, true), Errc::bad_frame);

  FixedRng rng({0, 0, 0, 0});
  Bytes out;
  append_frame(out, Opcode::text, kHello, Role::server, rng);
  EXPECT_EQ(out, frame);
}

TEST(WsFrame, Rfc6455_5_7_MaskedHello) {
  // RFC 6455 5.7: "A single-frame masked text message", masking key 37 fa 21 3d.
  const Bytes frame = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  const FrameHeader h = parse_ok(frame, true);
  EXPECT_EQ(h.opcode, Opcode::text);
  EXPECT_TRUE(h.masked);
  EXPECT_EQ(h.mask, (std::array<std::uint8_t, 4>{0x37, 0xfa, 0x21, 0x3d}));
  EXPECT_EQ(h.payload_size, 5u);
  EXPECT_EQ(h.header_size, 6u);
  Bytes payload(frame.begin() + 6, frame.end());
  apply_mask(payload, h.mask, 0);
  EXPECT_EQ(payload, kHello);
  EXPECT_EQ(parse_error(frame, false), Errc::bad_frame);

  FixedRng rng({0x37, 0xfa, 0x21, 0x3d});
  Bytes out;
  append_frame(out, Opcode::text, kHello, Role::client, rng);
  EXPECT_EQ(out, frame);
}

TEST(WsFrame, Rfc6455_5_7_FragmentedMessageIsRefused) {
  // RFC 6455 5.7: "A fragmented unmasked text message": we never fragment, so both are refused.
  const Bytes first = {0x01, 0x03, 0x48, 0x65, 0x6c};
  const Bytes second = {0x80, 0x02, 0x6c, 0x6f};
  EXPECT_EQ(parse_error(first, false), Errc::bad_frame);
  EXPECT_EQ(parse_error(second, false), Errc::bad_frame);
}

TEST(WsFrame, Rfc6455_5_7_PingAndMaskedPong) {
  // RFC 6455 5.7: "Unmasked Ping request and masked Ping response".
  const Bytes ping = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  const FrameHeader hp = parse_ok(ping, false);
  EXPECT_EQ(hp.opcode, Opcode::ping);
  EXPECT_EQ(hp.payload_size, 5u);
  const Bytes pong = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  const FrameHeader hq = parse_ok(pong, true);
  EXPECT_EQ(hq.opcode, Opcode::pong);
  EXPECT_EQ(hq.header_size, 6u);
  FixedRng rng({0x37, 0xfa, 0x21, 0x3d});
  Bytes out;
  append_frame(out, Opcode::pong, kHello, Role::client, rng);
  EXPECT_EQ(out, pong);
}

TEST(WsFrame, Rfc6455_5_7_Binary256) {
  // RFC 6455 5.7: "256 bytes binary message in a single unmasked frame": 0x82 0x7E 0x0100.
  Bytes frame = {0x82, 0x7e, 0x01, 0x00};
  const FrameHeader h = parse_ok(frame, false);
  EXPECT_EQ(h.opcode, Opcode::binary);
  EXPECT_EQ(h.payload_size, 256u);
  EXPECT_EQ(h.header_size, 4u);
  std::array<std::uint8_t, kMaxHeaderSize> out{};
  const std::size_t n = write_frame_header(out, Opcode::binary, 256, std::nullopt);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), frame);
}

TEST(WsFrame, Rfc6455_5_7_Binary64KiB) {
  // RFC 6455 5.7: "64KiB binary message in a single unmasked frame": 0x82 0x7F 0x0000000000010000.
  const Bytes frame = {0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
  const FrameHeader h = parse_ok(frame, false);
  EXPECT_EQ(h.payload_size, 65536u);
  EXPECT_EQ(h.header_size, 10u);
  std::array<std::uint8_t, kMaxHeaderSize> out{};
  const std::size_t n = write_frame_header(out, Opcode::binary, 65536, std::nullopt);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), frame);
  // Masked variant: 14 bytes, the largest header.
  const std::array<std::uint8_t, 4> mask{1, 2, 3, 4};
  EXPECT_EQ(write_frame_header(out, Opcode::binary, 65536, mask), kMaxHeaderSize);
  const FrameHeader hm = parse_ok(Bytes(out.begin(), out.end()), true);
  EXPECT_EQ(hm.mask, mask);
  EXPECT_EQ(hm.header_size, 14u);
  EXPECT_EQ(parse_error(frame, false, 65535), Errc::too_large);
}

TEST(WsFrame, LengthBoundariesRoundTrip) {
  for (std::uint64_t size : {0ull, 1ull, 125ull, 126ull, 127ull, 65535ull, 65536ull, (1ull << 40)}) {
    for (bool masked : {false, true}) {
      std::array<std::uint8_t, kMaxHeaderSize> out{};
      std::optional<std::array<std::uint8_t, 4>> mask;
      if (masked) mask = std::array<std::uint8_t, 4>{9, 8, 7, 6};
      const std::size_t n = write_frame_header(out, Opcode::binary, size, mask);
      const std::size_t want = (size < 126 ? 2 : size <= 0xFFFF ? 4 : 10) + (masked ? 4 : 0);
      EXPECT_EQ(n, want) << size;
      const FrameHeader h = parse_ok(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), masked,
                                     std::size_t{1} << 41);
      EXPECT_EQ(h.payload_size, size);
      EXPECT_EQ(h.header_size, n);
    }
  }
}

TEST(WsFrame, RefusesReservedBits) {
  for (int rsv : {0x40, 0x20, 0x10, 0x70}) {
    EXPECT_EQ(parse_error({static_cast<std::uint8_t>(0x82 | rsv), 0x00}, false), Errc::bad_frame);
  }
}

TEST(WsFrame, RefusesUnknownOpcodes) {
  for (int op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    EXPECT_EQ(parse_error({static_cast<std::uint8_t>(0x80 | op), 0x00}, false), Errc::bad_frame) << op;
  }
  // The known ones parse.
  for (int op : {0x1, 0x2, 0x8, 0x9, 0xA}) {
    EXPECT_EQ(parse_error({static_cast<std::uint8_t>(0x80 | op), 0x00}, false), Errc::ok) << op;
  }
}

TEST(WsFrame, RefusesContinuationAndFragments) {
  EXPECT_EQ(parse_error({0x80, 0x00}, false), Errc::bad_frame);  // continuation, FIN
  EXPECT_EQ(parse_error({0x02, 0x00}, false), Errc::bad_frame);  // binary without FIN
}

TEST(WsFrame, RefusesBadControlFrames) {
  // Control frames: at most 125 bytes (never the 16/64-bit lengths) and FIN.
  EXPECT_EQ(parse_error({0x89, 0x7e, 0x00, 0x7e}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x88, 0x7f}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x8a, 0x7e}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x09, 0x00}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x08, 0x00}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x89, 0x7d}, false), Errc::ok);  // 125 is fine
}

TEST(WsFrame, RefusesNonMinimalLengths) {
  EXPECT_EQ(parse_error({0x82, 0x7e, 0x00, 0x7d}, false), Errc::bad_frame);  // 125 in 16 bits
  EXPECT_EQ(parse_error({0x82, 0x7e, 0x00, 0x00}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x82, 0x7e, 0x00, 0x7e}, false), Errc::ok);  // 126: minimal
  EXPECT_EQ(parse_error({0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0x00, 0x05}, false), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0x00, 0x00}, false), Errc::ok);
}

TEST(WsFrame, RefusesLengthWithMostSignificantBit) {
  EXPECT_EQ(parse_error({0x82, 0x7f, 0x80, 0, 0, 0, 0, 1, 0, 0}, false, SIZE_MAX), Errc::bad_frame);
  EXPECT_EQ(parse_error({0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false, SIZE_MAX),
            Errc::ok);
}

TEST(WsFrame, RefusesWrongMaskingDirection) {
  EXPECT_EQ(parse_error({0x82, 0x80, 1, 2, 3, 4}, false), Errc::bad_frame);  // masked, client expects none
  EXPECT_EQ(parse_error({0x82, 0x00}, true), Errc::bad_frame);               // unmasked at a server
}

TEST(WsFrame, RefusesOverMaxPayload) {
  EXPECT_EQ(parse_error({0x82, 0x7e, 0x01, 0x00}, false, 255), Errc::too_large);
  EXPECT_EQ(parse_error({0x82, 0x7e, 0x01, 0x00}, false, 256), Errc::ok);
  EXPECT_EQ(parse_error({0x82, 0x05}, false, 4), Errc::too_large);
  EXPECT_EQ(parse_error({0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false, 1 << 20),
            Errc::too_large);
}

TEST(WsFrame, ParsesByteByByte) {
  // Each prefix of a header is "need more"; the whole header parses.
  for (std::uint64_t size : {5ull, 300ull, 70000ull}) {
    for (bool masked : {false, true}) {
      std::array<std::uint8_t, kMaxHeaderSize> out{};
      std::optional<std::array<std::uint8_t, 4>> mask;
      if (masked) mask = std::array<std::uint8_t, 4>{0xaa, 0xbb, 0xcc, 0xdd};
      const std::size_t n = write_frame_header(out, Opcode::binary, size, mask);
      for (std::size_t k = 0; k < n; ++k) {
        auto r = parse_frame_header(ByteView(out.data(), k), masked, kBig);
        ASSERT_TRUE(r.ok());
        EXPECT_FALSE(r->has_value()) << "prefix " << k;
      }
      const FrameHeader h =
          parse_ok(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), masked);
      EXPECT_EQ(h.payload_size, size);
      if (masked) {
        EXPECT_EQ(h.mask, *mask);
      }
    }
  }
  // A rule broken by the first bytes is reported before the rest of the header arrives.
  EXPECT_EQ(parse_error({0x82, 0x7f}, true), Errc::bad_frame);
  EXPECT_EQ(parse_error({0xc2}, false), Errc::ok);  // one byte: not yet judged
}

TEST(WsFrame, ApplyMaskWithOffset) {
  const std::array<std::uint8_t, 4> mask{0x01, 0x02, 0x04, 0x08};
  Bytes whole(23);
  for (std::size_t i = 0; i < whole.size(); ++i) whole[i] = static_cast<std::uint8_t>(i * 7);
  Bytes pieces = whole;
  apply_mask(whole, mask, 0);
  apply_mask(MutableByteView(pieces).first(5), mask, 0);
  apply_mask(MutableByteView(pieces).subspan(5, 10), mask, 5);
  apply_mask(MutableByteView(pieces).subspan(15), mask, 15);
  EXPECT_EQ(whole, pieces);
  apply_mask(whole, mask, 0);
  EXPECT_EQ(whole[1], 7);  // masking twice restores
}

TEST(WsFrame, ClientFramesUseFreshKeys) {
  crypto::DeterministicRng rng(7);
  Bytes a;
  Bytes b;
  append_frame(a, Opcode::binary, kHello, Role::client, rng);
  append_frame(b, Opcode::binary, kHello, Role::client, rng);
  ASSERT_EQ(a.size(), 11u);
  EXPECT_NE(Bytes(a.begin() + 2, a.begin() + 6), Bytes(b.begin() + 2, b.begin() + 6));
  const FrameHeader h = parse_ok(a, true);
  Bytes payload(a.begin() + 6, a.end());
  apply_mask(payload, h.mask, 0);
  EXPECT_EQ(payload, kHello);
}

}  // namespace
}  // namespace postern::transport::ws
