// The inner channel's record layer (docs/transport.md), sans-I/O.
//
// After the front authenticated the first request and both sides switched to WebSocket, every
// WebSocket binary frame carries exactly one Noise message. The two handshake messages
// (Noise_NK: client -> server "e, es", server -> client "e, ee") carry a padded payload; then
// each Noise transport message seals one record:
//
//   record (Noise plaintext) = type (1) || length (2, big-endian) || data (length) || zero padding
//
// whose total size is a padding bucket (PaddingPolicy), so the sizes on the wire tell little of
// what is carried. Types: data (bytes of the inner byte stream), cover (padding only: cover
// keep-alives and shaping, discarded by the reader), close (the sender will send nothing more).
// A reader refuses non-zero padding, a length over the record, unknown types and records after
// close (Errc::bad_frame), and any record that does not authenticate (Errc::decrypt_failed).
// (Records after close are never opened: the reader stops at the close record, see next().)
// Cover and close records carry no data (length 0); the reader refuses them otherwise.
//
// Defaults (ShapingPolicy::defaults(), reasons in inner_record.cpp): buckets 232, 488, 1000,
// 2024, 4072, 8168, 16360 (a client frame of 256 .. 16384 bytes, one TLS record; server frames
// 4 bytes less), first burst down 8168, 4072, 2024, up 616, 488, 488, handshake padding 200
// (Noise messages of 248 bytes instead of 48), cover every 20 s +- 50 %.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "postern/crypto/random.h"
#include "postern/transport/noise.h"
#include "postern/transport/ws_frame.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::inner {

inline constexpr std::size_t kRecordHeaderSize = 3;
// Largest record (Noise plaintext): the Noise message limit minus the tag.
inline constexpr std::size_t kMaxRecordSize = noise::kMaxMessage - noise::kTagSize;
inline constexpr std::size_t kMaxDataPerRecord = kMaxRecordSize - kRecordHeaderSize;

enum class RecordType : std::uint8_t { data = 1, cover = 2, close = 3 };

struct PaddingPolicy {
  // Record sizes (Noise plaintext, header included), ascending, each in [kRecordHeaderSize + 1,
  // kMaxRecordSize]. A record takes the smallest bucket that holds it; data longer than the largest
  // bucket is split into records of the largest bucket. Empty: no padding (record = header + data).
  std::vector<std::uint32_t> buckets;
  Status validate() const;  // Errc::bad_config with the rule broken
};

struct ShapingPolicy {
  bool enabled = true;
  PaddingPolicy padding;
  // Cover keep-alives: a cover record after this much silence in a direction, +- jitter (0..1,
  // a fraction of the interval, uniformly drawn). 0 ms: none.
  std::chrono::milliseconds cover_interval{20'000};
  double cover_jitter = 0.5;
  // The first records the server sends after the handshake are padded up to these sizes in
  // turn (like an HTML page and its first assets), then padding follows `padding`.
  std::vector<std::uint32_t> first_burst_down;
  // Likewise the first records the client sends (like the requests of a page load).
  std::vector<std::uint32_t> first_burst_up;
  // The payload of each Noise handshake message is padded to this size (0: none).
  std::uint32_t handshake_padding = 0;

  // Postern's defaults (docs/transport.md gives the reasons).
  static ShapingPolicy defaults();
  Status validate() const;
  // Next cover delay: cover_interval * (1 + jitter * u), u uniform in [-1, 1] drawn from rng.
  // 0 ms (no cover) when !enabled or cover_interval is 0; otherwise at least 1 ms.
  std::chrono::milliseconds next_cover_delay(crypto::Rng& rng) const;
};

// Size of the record (Noise plaintext) that carries `data_size` bytes of data (at most
// kMaxDataPerRecord), at least `minimum` (a first-burst size; 0 for none), under `padding`.
// A `minimum` that holds the data is the size itself (not rounded up to a bucket); buckets need
// not be validated (the result is always in [kRecordHeaderSize, kMaxRecordSize] or, with no
// bucket large enough, the unpadded size).
std::size_t record_size_for(std::size_t data_size, const PaddingPolicy& padding, std::size_t minimum = 0);

// Handshake payloads: length (2, big-endian) || payload || zero padding up to `padded_size`
// (or no padding when the payload is longer).
Bytes pad_handshake_payload(ByteView payload, std::size_t padded_size);
Result<Bytes> unpad_handshake_payload(ByteView padded);

// Seals records into WebSocket frames. Frames are built in place at the end of `out` (which
// must not alias `data`). The first records of data follow the first burst of the writer's
// direction (a server writes first_burst_down, a client first_burst_up): each of them has
// exactly the burst's size, splitting larger data; cover and close records do not count.
// shaping.enabled == false: no padding and no burst (record = header + data).
// After write_close, or after a failed write (the cipher's nonce may have advanced), every
// write returns Errc::wrong_state.
class RecordWriter {
 public:
  RecordWriter(noise::CipherState cipher, ShapingPolicy shaping, ws::Role role, crypto::Rng& rng);
  // Appends frames carrying all of `data` (split into as many records as needed); nothing
  // when `data` is empty. On error `out` is left as it was.
  Status write_data(ByteView data, Bytes& out);
  // Appends one cover record of the smallest bucket (or `size` when given, bucketed). `size`
  // is a record size (Noise plaintext); a cover record has length 0 and is all padding.
  Status write_cover(Bytes& out, std::size_t size = 0);
  // A close record of the smallest bucket.
  Status write_close(Bytes& out);
  // Appends a WebSocket pong/close control frame (not a record).
  void write_pong(ByteView payload, Bytes& out);
  void write_ws_close(Bytes& out);
  std::uint64_t records_written() const noexcept { return records_; }

 private:
  Status seal(RecordType type, ByteView data, std::size_t record_size, Bytes& out);
  struct Chunk {
    std::size_t take = 0;         // data bytes in the record
    std::size_t record_size = 0;  // its size (Noise plaintext)
  };
  const std::vector<std::uint32_t>& burst() const;
  Chunk plan(std::size_t remaining, std::size_t burst_index) const;
  std::size_t frame_size(std::size_t record_size) const;
  noise::CipherState cipher_;
  ShapingPolicy shaping_;
  ws::Role role_;
  crypto::Rng& rng_;
  std::size_t burst_index_ = 0;
  std::uint64_t records_ = 0;
  Bytes scratch_;  // unused: frames are sealed in place in the caller's buffer
  bool closed_ = false;
};

struct Event {
  enum class Kind : std::uint8_t { data, cover, close, ws_ping, ws_close } kind = Kind::data;
  Bytes data;  // data records and ping payloads
};

// Opens records from the WebSocket byte stream.
class RecordReader {
 public:
  // `peer_role`: who sends what we read (a server reads frames from a client: masked).
  // `max_frame`: the largest frame payload accepted (capped at noise::kMaxMessage).
  RecordReader(noise::CipherState cipher, ws::Role peer_role, std::size_t max_frame = noise::kMaxMessage);
  // Appends received bytes to the internal buffer.
  void feed(ByteView bytes);
  // The next event, or std::nullopt when more bytes are needed. After an error, or after a
  // close record, the reader refuses everything (Errc::wrong_state).
  // Errors: Errc::bad_frame (a frame or record that breaks the rules, a text frame),
  // Errc::too_large (a frame over max_frame), Errc::decrypt_failed. A WebSocket close frame
  // gives Kind::ws_close and, as nothing may follow it, also ends the reader; pong frames are
  // skipped; cover records are returned (Kind::cover) for the caller to ignore.
  Result<std::optional<Event>> next();
  std::size_t buffered() const noexcept;

 private:
  noise::CipherState cipher_;
  ws::Role peer_role_;
  std::size_t max_frame_;
  Bytes buffer_;
  std::size_t begin_ = 0;
  bool closed_ = false;
  bool failed_ = false;
  void compact();
};

}  // namespace postern::transport::inner
