// The inner channel's record layer. The writer builds each frame directly in the caller's output
// buffer: header, then the record's plaintext, sealed in place by the CipherState (the tag lands
// right after it), then masked in place; a write of any size reserves the output once and copies
// each data byte once. The reader keeps one buffer with a consumed offset, unmasks and decrypts
// each frame where it lies, and copies out only the data bytes it hands over; it compacts the
// buffer when the consumed prefix is large, so a long-lived connection does not grow it.
// Sizes are clamped by the code itself, not only by validate(), so that even an unvalidated
// policy cannot produce a record outside [kRecordHeaderSize, kMaxRecordSize].
#include "postern/transport/inner_record.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "postern/transport/errors.h"

namespace postern::transport::inner {
namespace {

constexpr std::size_t kMinRecordSize = kRecordHeaderSize + 1;
// The reader moves its unread bytes to the front once this much has been consumed (and the
// consumed part is at least half the buffer), keeping moves rare and their cost amortised.
constexpr std::size_t kCompactThreshold = 64 * 1024;

std::size_t clamp_record(std::size_t size) {
  return std::clamp(size, kRecordHeaderSize, kMaxRecordSize);
}

std::size_t largest_bucket(const PaddingPolicy& padding) {
  std::size_t largest = 0;
  for (std::uint32_t b : padding.buckets) largest = std::max<std::size_t>(largest, b);
  return clamp_record(largest);
}

// Data that fits one record under `padding`: the largest bucket's room, or the Noise limit.
std::size_t data_room(const PaddingPolicy& padding) {
  if (padding.buckets.empty()) return kMaxDataPerRecord;
  return std::max<std::size_t>(largest_bucket(padding) - kRecordHeaderSize, 1);
}

}  // namespace

Status PaddingPolicy::validate() const {
  std::uint32_t previous = 0;
  for (std::uint32_t b : buckets) {
    if (b < kMinRecordSize || b > kMaxRecordSize) return Errc::bad_config;
    if (b <= previous) return Errc::bad_config;  // strictly ascending
    previous = b;
  }
  return {};
}

// Why these numbers. The inner channel runs in TLS (1.3: at most 16384 bytes of plaintext per
// record). A frame = WebSocket header + record + 16-byte tag, the header being 4 bytes from the
// server and 8 from the client (masking key) for every bucket below (payload 126..65535 bytes).
// Each bucket is a power-of-two TLS plaintext size minus 24 (16 tag + 8 client header): a client
// frame is exactly 256 .. 16384 bytes and a server frame 4 bytes less, so whichever side sends,
// a frame written on its own fills one TLS record and never spills 4 bytes into a second one
// (a tell-tale tiny record). The largest bucket makes bulk transfers a run of full-size records,
// like any download; the small ones keep the overhead of chat-sized messages below 2x.
// - first_burst_down: a page load's first server flight, an HTML document (8 KiB) and two assets
//   (4 KiB, 2 KiB), all on the same bucket sizes, so the burst adds no size seen nowhere else.
// - first_burst_up: browser requests with their cookies and headers are ~500-700 bytes; the
//   first request is a little larger (640-byte frame), the following ones 512.
// - handshake_padding 200: a Noise_NK message is 32 (e) + payload + 16 (tag) bytes; without
//   padding both messages are 48 bytes, a size nothing else on the web uses at that point. With
//   200 they are 248 bytes, the same Noise message size as a record of the smallest bucket, so
//   the handshake looks like the first two small records.
// - cover every 20 s +- 50 %: below common idle timeouts of middleboxes (30-60 s), sparse enough
//   to cost nothing, jittered so the keep-alives do not form a periodic signature.
ShapingPolicy ShapingPolicy::defaults() {
  ShapingPolicy p;
  p.enabled = true;
  constexpr std::uint32_t kOverhead = noise::kTagSize + 8;
  p.padding.buckets = {256 - kOverhead,  512 - kOverhead,  1024 - kOverhead, 2048 - kOverhead,
                       4096 - kOverhead, 8192 - kOverhead, 16384 - kOverhead};
  p.cover_interval = std::chrono::milliseconds{20'000};
  p.cover_jitter = 0.5;
  p.first_burst_down = {8192 - kOverhead, 4096 - kOverhead, 2048 - kOverhead};
  p.first_burst_up = {640 - kOverhead, 512 - kOverhead, 512 - kOverhead};
  p.handshake_padding = 256 - kOverhead - noise::kDhSize;  // 200
  return p;
}

Status ShapingPolicy::validate() const {
  POSTERN_CHECK(padding.validate());
  if (cover_interval.count() < 0) return Errc::bad_config;
  if (!(cover_jitter >= 0.0 && cover_jitter <= 1.0)) return Errc::bad_config;  // also refuses NaN
  for (const auto* burst : {&first_burst_down, &first_burst_up}) {
    for (std::uint32_t s : *burst) {
      if (s < kMinRecordSize || s > kMaxRecordSize) return Errc::bad_config;
    }
  }
  // The padded payload must leave room for e and the tag in one Noise message.
  if (handshake_padding > noise::kMaxMessage - noise::kDhSize - noise::kTagSize) return Errc::bad_config;
  return {};
}

std::chrono::milliseconds ShapingPolicy::next_cover_delay(crypto::Rng& rng) const {
  if (!enabled || cover_interval.count() <= 0) return std::chrono::milliseconds{0};
  // u in [-1, 1): 32 random bits scaled; the bias of the open end is 2^-32, irrelevant here.
  const double u = static_cast<double>(rng.next_u32()) / 4294967296.0 * 2.0 - 1.0;
  const double jitter = std::clamp(std::isnan(cover_jitter) ? 0.0 : cover_jitter, 0.0, 1.0);
  const double ms = static_cast<double>(cover_interval.count()) * (1.0 + jitter * u);
  // Never 0, which would mean "no cover".
  return std::chrono::milliseconds{std::max<std::int64_t>(1, std::llround(ms))};
}

std::size_t record_size_for(std::size_t data_size, const PaddingPolicy& padding, std::size_t minimum) {
  const std::size_t needed = kRecordHeaderSize + std::min(data_size, kMaxDataPerRecord);
  // A first-burst size is taken as it is (not rounded up to a bucket), so the burst has exactly
  // the sizes configured; data that does not fit it falls back to the buckets.
  if (minimum > 0 && needed <= minimum) return clamp_record(minimum);
  if (padding.buckets.empty()) return needed;
  std::size_t best = 0;
  for (std::uint32_t b : padding.buckets) {
    if (b >= needed && (best == 0 || b < best)) best = b;
  }
  // Longer than every bucket: the caller splits at the largest bucket, so only a caller that did
  // not split gets here; it gets the unpadded size.
  if (best == 0) return needed;
  return clamp_record(best);
}

Bytes pad_handshake_payload(ByteView payload, std::size_t padded_size) {
  // A payload over 65535 bytes cannot be a Noise handshake payload anyway (the message would be
  // refused as too large); its length field is saturated rather than wrapped.
  const std::size_t n = payload.size();
  const std::size_t len = std::min<std::size_t>(n, 0xFFFF);
  Bytes out;
  out.reserve(std::max(2 + n, padded_size));
  out.push_back(static_cast<std::uint8_t>(len >> 8));
  out.push_back(static_cast<std::uint8_t>(len));
  out.insert(out.end(), payload.begin(), payload.end());
  if (out.size() < padded_size) out.resize(padded_size, 0);
  return out;
}

Result<Bytes> unpad_handshake_payload(ByteView padded) {
  if (padded.size() < 2) return Errc::bad_frame;
  const std::size_t len = (std::size_t{padded[0]} << 8) | padded[1];
  if (len > padded.size() - 2) return Errc::bad_frame;
  std::uint8_t nonzero = 0;
  for (std::size_t i = 2 + len; i < padded.size(); ++i) nonzero |= padded[i];
  if (nonzero != 0) return Errc::bad_frame;
  return Bytes(padded.begin() + 2, padded.begin() + 2 + static_cast<std::ptrdiff_t>(len));
}

// ---------------------------------------------------------------------------------------------

RecordWriter::RecordWriter(noise::CipherState cipher, ShapingPolicy shaping, ws::Role role, crypto::Rng& rng)
    : cipher_(std::move(cipher)), shaping_(std::move(shaping)), role_(role), rng_(rng) {
  if (!shaping_.enabled) {
    // Unshaped: records are exactly header + data, no first burst.
    shaping_.padding.buckets.clear();
    shaping_.first_burst_down.clear();
    shaping_.first_burst_up.clear();
  }
}

const std::vector<std::uint32_t>& RecordWriter::burst() const {
  // The server sends down, the client up.
  return role_ == ws::Role::server ? shaping_.first_burst_down : shaping_.first_burst_up;
}

RecordWriter::Chunk RecordWriter::plan(std::size_t remaining, std::size_t burst_index) const {
  const auto& sizes = burst();
  if (burst_index < sizes.size()) {
    // During the first burst each record has exactly the burst's size, however much data there is.
    const std::size_t size = std::max(clamp_record(sizes[burst_index]), kMinRecordSize);
    const std::size_t take = std::min(remaining, size - kRecordHeaderSize);
    return {take, record_size_for(take, shaping_.padding, size)};
  }
  const std::size_t take = std::min(remaining, data_room(shaping_.padding));
  return {take, record_size_for(take, shaping_.padding)};
}

std::size_t RecordWriter::frame_size(std::size_t record_size) const {
  const std::size_t payload = record_size + noise::kTagSize;
  std::size_t header = payload < 126 ? 2 : (payload <= 0xFFFF ? 4 : 10);
  if (role_ == ws::Role::client) header += 4;
  return header + payload;
}

Status RecordWriter::write_data(ByteView data, Bytes& out) {
  if (closed_) return Errc::wrong_state;
  if (data.empty()) return {};
  // First pass: the exact output size, so `out` grows once however many records there are.
  std::size_t total = 0;
  for (std::size_t remaining = data.size(), burst = burst_index_; remaining > 0;) {
    const Chunk c = plan(remaining, burst);
    if (burst < this->burst().size()) ++burst;
    total += frame_size(c.record_size);
    remaining -= c.take;
  }
  out.reserve(out.size() + total);
  const std::size_t rollback = out.size();
  std::size_t done = 0;
  while (done < data.size()) {
    const Chunk c = plan(data.size() - done, burst_index_);
    Status s = seal(RecordType::data, data.subspan(done, c.take), c.record_size, out);
    if (!s.ok()) {
      // All or nothing: a partial write would leave the caller unsure what the peer will get.
      // The cipher's nonce has advanced for the sealed records, so the writer is unusable now.
      out.resize(rollback);
      closed_ = true;
      return s.error();
    }
    if (burst_index_ < burst().size()) ++burst_index_;
    done += c.take;
  }
  return {};
}

Status RecordWriter::write_cover(Bytes& out, std::size_t size) {
  if (closed_) return Errc::wrong_state;
  // `size` is the wanted record size; a cover record carries no data, only padding.
  const std::size_t wanted = std::max(clamp_record(size), kRecordHeaderSize);
  return seal(RecordType::cover, {}, record_size_for(wanted - kRecordHeaderSize, shaping_.padding), out);
}

Status RecordWriter::write_close(Bytes& out) {
  if (closed_) return Errc::wrong_state;
  POSTERN_CHECK(seal(RecordType::close, {}, record_size_for(0, shaping_.padding), out));
  closed_ = true;
  return {};
}

void RecordWriter::write_pong(ByteView payload, Bytes& out) {
  // Control frames carry at most 125 bytes (RFC 6455 5.5); a ping's payload always fits.
  ws::append_frame(out, ws::Opcode::pong, payload.first(std::min<std::size_t>(payload.size(), 125)), role_,
                   rng_);
}

void RecordWriter::write_ws_close(Bytes& out) {
  // Status 1000 (normal closure), as a browser closing the page would send.
  static constexpr std::uint8_t kNormalClosure[2] = {0x03, 0xE8};
  ws::append_frame(out, ws::Opcode::close, ByteView(kNormalClosure, 2), role_, rng_);
}

Status RecordWriter::seal(RecordType type, ByteView data, std::size_t record_size, Bytes& out) {
  record_size = std::max(clamp_record(record_size), kRecordHeaderSize + data.size());
  if (record_size > kMaxRecordSize) return Errc::too_large;
  const std::size_t payload_size = record_size + noise::kTagSize;
  std::optional<std::array<std::uint8_t, 4>> mask;
  if (role_ == ws::Role::client) mask = rng_.bytes<4>();
  std::array<std::uint8_t, ws::kMaxHeaderSize> header{};
  const std::size_t header_size = ws::write_frame_header(header, ws::Opcode::binary, payload_size, mask);

  const std::size_t start = out.size();
  out.resize(start + header_size + payload_size);  // zero-fills: the padding
  std::copy_n(header.begin(), header_size, out.begin() + static_cast<std::ptrdiff_t>(start));
  const MutableByteView payload = MutableByteView(out).subspan(start + header_size, payload_size);
  payload[0] = static_cast<std::uint8_t>(type);
  payload[1] = static_cast<std::uint8_t>(data.size() >> 8);
  payload[2] = static_cast<std::uint8_t>(data.size());
  std::copy(data.begin(), data.end(), payload.begin() + kRecordHeaderSize);
  Status s = cipher_.encrypt_with_ad({}, payload.first(record_size), payload);
  if (!s.ok()) {
    crypto::wipe(payload);
    out.resize(start);
    return s.error();
  }
  if (mask) ws::apply_mask(payload, *mask, 0);
  ++records_;
  return {};
}

// ---------------------------------------------------------------------------------------------

RecordReader::RecordReader(noise::CipherState cipher, ws::Role peer_role, std::size_t max_frame)
    : cipher_(std::move(cipher)),
      peer_role_(peer_role),
      max_frame_(std::min(max_frame, noise::kMaxMessage)) {}

void RecordReader::compact() {
  if (begin_ == buffer_.size()) {
    buffer_.clear();
    begin_ = 0;
  } else if (begin_ >= kCompactThreshold && begin_ * 2 >= buffer_.size()) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(begin_));
    begin_ = 0;
  }
}

void RecordReader::feed(ByteView bytes) {
  compact();
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

std::size_t RecordReader::buffered() const noexcept {
  return buffer_.size() - begin_;
}

Result<std::optional<Event>> RecordReader::next() {
  if (failed_ || closed_) return Errc::wrong_state;
  auto fail = [this](Errc e) -> Result<std::optional<Event>> {
    failed_ = true;
    return e;
  };
  for (;;) {
    const ByteView pending = ByteView(buffer_).subspan(begin_);
    auto parsed = ws::parse_frame_header(pending, peer_role_ == ws::Role::client, max_frame_);
    if (!parsed.ok()) return fail(static_cast<Errc>(parsed.error().value()));
    if (!parsed->has_value()) return std::optional<Event>{};
    const ws::FrameHeader h = **parsed;
    const std::size_t payload_size = static_cast<std::size_t>(h.payload_size);  // <= max_frame_
    if (pending.size() - h.header_size < payload_size) return std::optional<Event>{};
    const MutableByteView payload = MutableByteView(buffer_).subspan(begin_ + h.header_size, payload_size);
    begin_ += h.header_size + payload_size;
    if (h.masked) ws::apply_mask(payload, h.mask, 0);

    switch (h.opcode) {
      case ws::Opcode::binary:
        break;
      case ws::Opcode::ping: {
        Event e;
        e.kind = Event::Kind::ws_ping;
        e.data.assign(payload.begin(), payload.end());
        return std::optional<Event>{std::move(e)};
      }
      case ws::Opcode::pong:
        continue;  // unsolicited pongs are allowed (RFC 6455 5.5.3)
      case ws::Opcode::close: {
        // A close body is empty or starts with a 2-byte status code (5.5.1); nothing may follow.
        if (payload_size == 1) return fail(Errc::bad_frame);
        closed_ = true;
        Event e;
        e.kind = Event::Kind::ws_close;
        return std::optional<Event>{std::move(e)};
      }
      default:
        return fail(Errc::bad_frame);  // text (continuation never parses)
    }

    if (payload_size < noise::kTagSize + kRecordHeaderSize) return fail(Errc::bad_frame);
    const MutableByteView record = payload.first(payload_size - noise::kTagSize);
    if (Status s = cipher_.decrypt_with_ad({}, payload, record); !s.ok()) {
      // decrypt_failed for a record that does not authenticate; wrong_state for a used-up nonce.
      const bool ours = s.error().category() == transport_category();
      return fail(ours ? static_cast<Errc>(s.error().value()) : Errc::decrypt_failed);
    }
    const std::uint8_t type = record[0];
    const std::size_t length = (std::size_t{record[1]} << 8) | record[2];
    if (length > record.size() - kRecordHeaderSize) return fail(Errc::bad_frame);
    std::uint8_t nonzero = 0;
    for (std::size_t i = kRecordHeaderSize + length; i < record.size(); ++i) nonzero |= record[i];
    if (nonzero != 0) return fail(Errc::bad_frame);

    Event e;
    switch (static_cast<RecordType>(type)) {
      case RecordType::data:
        e.kind = Event::Kind::data;
        e.data.assign(record.begin() + kRecordHeaderSize,
                      record.begin() + static_cast<std::ptrdiff_t>(kRecordHeaderSize + length));
        break;
      case RecordType::cover:
        // Our writer never puts data in cover or close records; a peer that does is not ours.
        if (length != 0) return fail(Errc::bad_frame);
        e.kind = Event::Kind::cover;
        break;
      case RecordType::close:
        if (length != 0) return fail(Errc::bad_frame);
        e.kind = Event::Kind::close;
        closed_ = true;
        break;
      default:
        return fail(Errc::bad_frame);
    }
    return std::optional<Event>{std::move(e)};
  }
}

}  // namespace postern::transport::inner
