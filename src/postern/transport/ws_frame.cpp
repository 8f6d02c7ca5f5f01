// WebSocket framing (RFC 6455 section 5). The parser is strict because only our own endpoints
// produce these frames: anything the RFC forbids, and anything our writer never produces
// (fragmentation, continuation frames), is refused as soon as the bytes that show it have
// arrived, before the rest of the header, so a hostile peer cannot make us wait for more.
// Text frames parse (they are valid RFC 6455); the record reader refuses them.
#include "postern/transport/ws_frame.h"

#include <cstring>

#include "postern/transport/errors.h"

namespace postern::transport::ws {
namespace {

constexpr std::uint8_t kFin = 0x80;
constexpr std::uint8_t kReservedBits = 0x70;
constexpr std::uint8_t kOpcodeBits = 0x0F;
constexpr std::uint8_t kMaskBit = 0x80;
constexpr std::uint8_t kLengthBits = 0x7F;
constexpr std::uint8_t kLength16 = 126;
constexpr std::uint8_t kLength64 = 127;
constexpr std::size_t kMaxControlPayload = 125;

bool is_control(Opcode op) {
  return (static_cast<std::uint8_t>(op) & 0x08) != 0;
}

bool known_opcode(std::uint8_t op) {
  switch (static_cast<Opcode>(op)) {
    case Opcode::continuation:
    case Opcode::text:
    case Opcode::binary:
    case Opcode::close:
    case Opcode::ping:
    case Opcode::pong:
      return true;
  }
  return false;
}

}  // namespace

Result<std::optional<FrameHeader>> parse_frame_header(ByteView buffered, bool expect_masked,
                                                      std::size_t max_payload) {
  if (buffered.size() < 2) return std::optional<FrameHeader>{};
  const std::uint8_t b0 = buffered[0];
  const std::uint8_t b1 = buffered[1];
  FrameHeader h;
  h.fin = (b0 & kFin) != 0;
  // No extension is negotiated, so RSV1-3 must be 0 (5.2).
  if ((b0 & kReservedBits) != 0) return Errc::bad_frame;
  const std::uint8_t op = b0 & kOpcodeBits;
  if (!known_opcode(op)) return Errc::bad_frame;
  h.opcode = static_cast<Opcode>(op);
  // We never fragment, so a continuation frame, or a data frame announcing one, is not ours.
  if (h.opcode == Opcode::continuation || !h.fin) return Errc::bad_frame;
  h.masked = (b1 & kMaskBit) != 0;
  // 5.1: client-to-server frames are masked, server-to-client frames are not.
  if (h.masked != expect_masked) return Errc::bad_frame;
  const std::uint8_t len7 = b1 & kLengthBits;
  // 5.5: control frames carry at most 125 bytes, so they always use the 7-bit length.
  if (is_control(h.opcode) && len7 > kMaxControlPayload) return Errc::bad_frame;

  std::size_t pos = 2;
  if (len7 == kLength16) {
    if (buffered.size() < pos + 2) return std::optional<FrameHeader>{};
    h.payload_size = (std::uint64_t{buffered[2]} << 8) | buffered[3];
    pos += 2;
    // 5.2: "the minimal number of bytes MUST be used to encode the length".
    if (h.payload_size < kLength16) return Errc::bad_frame;
  } else if (len7 == kLength64) {
    if (buffered.size() < pos + 8) return std::optional<FrameHeader>{};
    // 5.2: the most significant bit of the 64-bit length MUST be 0.
    if ((buffered[2] & 0x80) != 0) return Errc::bad_frame;
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < 8; ++i) n = (n << 8) | buffered[2 + i];
    h.payload_size = n;
    pos += 8;
    if (h.payload_size <= 0xFFFF) return Errc::bad_frame;
  } else {
    h.payload_size = len7;
  }
  if (h.payload_size > max_payload) return Errc::too_large;
  if (h.masked) {
    if (buffered.size() < pos + 4) return std::optional<FrameHeader>{};
    for (std::size_t i = 0; i < 4; ++i) h.mask[i] = buffered[pos + i];
    pos += 4;
  }
  h.header_size = pos;
  return std::optional<FrameHeader>{h};
}

std::size_t write_frame_header(std::array<std::uint8_t, kMaxHeaderSize>& out, Opcode opcode,
                               std::uint64_t payload_size,
                               const std::optional<std::array<std::uint8_t, 4>>& mask) {
  std::size_t pos = 0;
  out[pos++] = static_cast<std::uint8_t>(kFin | static_cast<std::uint8_t>(opcode));
  const std::uint8_t mask_bit = mask ? kMaskBit : 0;
  if (payload_size < kLength16) {
    out[pos++] = static_cast<std::uint8_t>(mask_bit | payload_size);
  } else if (payload_size <= 0xFFFF) {
    out[pos++] = static_cast<std::uint8_t>(mask_bit | kLength16);
    out[pos++] = static_cast<std::uint8_t>(payload_size >> 8);
    out[pos++] = static_cast<std::uint8_t>(payload_size);
  } else {
    out[pos++] = static_cast<std::uint8_t>(mask_bit | kLength64);
    for (int shift = 56; shift >= 0; shift -= 8)
      out[pos++] = static_cast<std::uint8_t>(payload_size >> shift);
  }
  if (mask) {
    for (std::size_t i = 0; i < 4; ++i) out[pos++] = (*mask)[i];
  }
  return pos;
}

void apply_mask(MutableByteView data, const std::array<std::uint8_t, 4>& mask,
                std::uint64_t offset) noexcept {
  // 5.3: octet i of the payload is XORed with mask[i mod 4]. Eight bytes at a time in the
  // middle (the key repeated, rotated to the start offset): masking is on every client byte.
  const std::size_t start = static_cast<std::size_t>(offset & 3);
  std::size_t i = 0;
  std::array<std::uint8_t, 8> key8{};
  for (std::size_t k = 0; k < 8; ++k) key8[k] = mask[(start + k) & 3];
  std::uint64_t word_key = 0;
  std::memcpy(&word_key, key8.data(), 8);
  for (; i + 8 <= data.size(); i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, data.data() + i, 8);
    w ^= word_key;
    std::memcpy(data.data() + i, &w, 8);
  }
  for (; i < data.size(); ++i) data[i] ^= mask[(start + i) & 3];
}

void append_frame(Bytes& out, Opcode opcode, ByteView payload, Role role, crypto::Rng& rng) {
  std::optional<std::array<std::uint8_t, 4>> mask;
  // 5.3: a fresh, unpredictable key for every frame the client sends.
  if (role == Role::client) mask = rng.bytes<4>();
  std::array<std::uint8_t, kMaxHeaderSize> header{};
  const std::size_t header_size = write_frame_header(header, opcode, payload.size(), mask);
  const std::size_t start = out.size();
  out.reserve(start + header_size + payload.size());
  out.insert(out.end(), header.begin(), header.begin() + static_cast<std::ptrdiff_t>(header_size));
  out.insert(out.end(), payload.begin(), payload.end());
  if (mask) apply_mask(MutableByteView(out).subspan(start + header_size), *mask, 0);
}

}  // namespace postern::transport::ws
