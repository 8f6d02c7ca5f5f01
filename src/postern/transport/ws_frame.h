// WebSocket framing (RFC 6455 section 5), sans-I/O: just enough for the inner channel, whose
// frames only our own endpoints parse (a relay splices the byte stream without parsing it).
// Binary, ping, pong and close frames; no fragmentation on send; continuation frames are
// refused (Errc::bad_frame). Client-to-server frames are masked with a fresh random key, as the
// RFC requires; a server refuses unmasked frames and a client refuses masked ones.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "postern/crypto/random.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::ws {

enum class Role : std::uint8_t { client, server };  // who *sends*: a client masks
enum class Opcode : std::uint8_t { continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

inline constexpr std::size_t kMaxHeaderSize = 14;

struct FrameHeader {
  bool fin = true;
  Opcode opcode = Opcode::binary;
  bool masked = false;
  std::array<std::uint8_t, 4> mask{};
  std::uint64_t payload_size = 0;
  std::size_t header_size = 0;  // bytes of the header on the wire (2..14)
};

// Parses a frame header at the start of `buffered`. std::nullopt: more bytes are needed.
// Errc::bad_frame: reserved bits, unknown opcode, a control frame over 125 bytes or not FIN,
// non-minimal length encoding, a masked frame when `expect_masked` is false or the reverse.
// Errc::too_large: payload over `max_payload`.
Result<std::optional<FrameHeader>> parse_frame_header(ByteView buffered, bool expect_masked, std::size_t max_payload);

// Appends one complete frame (FIN set) with this payload; masked with a key from `rng` when
// role == client.
void append_frame(Bytes& out, Opcode opcode, ByteView payload, Role role, crypto::Rng& rng);
// Writes only a header (for payloads encrypted in place after it); returns its size.
std::size_t write_frame_header(std::array<std::uint8_t, kMaxHeaderSize>& out, Opcode opcode, std::uint64_t payload_size,
                               const std::optional<std::array<std::uint8_t, 4>>& mask);
// XORs `data` with the mask, `offset` being the position of data[0] within the payload.
void apply_mask(MutableByteView data, const std::array<std::uint8_t, 4>& mask, std::uint64_t offset) noexcept;

}  // namespace postern::transport::ws
