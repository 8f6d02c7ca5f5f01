// TLS-in-TLS burst heuristic: a record-header tokenizer per direction (any chunking), a small
// per-direction phase machine that finds the end of the outer handshake, and burst accounting
// (see the header for the rules).
#include "postern/lab/tls_in_tls.h"

#include <algorithm>

namespace postern::lab {
namespace {

constexpr std::uint8_t kChangeCipherSpec = 20;
constexpr std::uint8_t kHandshake = 22;
constexpr std::uint8_t kApplicationData = 23;
constexpr std::size_t kMaxRecord = 16384 + 2048;  // TLSCiphertext limit of TLS 1.2 (1.3: +256)

std::size_t index(Direction d) {
  return d == Direction::client_to_server ? 0 : 1;
}

bool within(std::size_t v, std::size_t lo, std::size_t hi) {
  return v >= lo && v <= hi;
}

}  // namespace

void TlsInTlsDetector::feed(Direction d, ByteView bytes) {
  Side& side = sides_[index(d)];
  std::size_t pos = 0;
  while (pos < bytes.size() && !decided_) {
    if (side.skip > 0) {
      const std::size_t n = std::min(side.skip, bytes.size() - pos);
      side.skip -= n;
      pos += n;
      continue;
    }
    side.header[side.have++] = bytes[pos++];
    if (side.have < sizeof side.header) continue;
    side.have = 0;
    const std::uint8_t type = side.header[0];
    const std::size_t length = (std::size_t{side.header[3]} << 8) | side.header[4];
    if (type < kChangeCipherSpec || type > kApplicationData || side.header[1] != 0x03 ||
        side.header[2] > 0x04 || length > kMaxRecord) {
      not_tls();
      return;
    }
    side.skip = length;
    record(d, type, length);
  }
}

void TlsInTlsDetector::not_tls() {
  suspicious_ = false;
  decided_ = true;
}

void TlsInTlsDetector::record(Direction d, std::uint8_t type, std::size_t length) {
  Side& side = sides_[index(d)];
  const bool client = d == Direction::client_to_server;
  switch (side.phase) {
    case Phase::handshake:
      if (type == kChangeCipherSpec) {
        side.phase = Phase::after_ccs;
      } else if (type == kApplicationData) {
        // TLS 1.3 without a compat ChangeCipherSpec: this record is already encrypted handshake
        // (the client's Finished, or the start of the server's flight).
        side.phase = Phase::data;
      }
      return;
    case Phase::after_ccs:
      if (type == kHandshake) {  // TLS 1.2: the encrypted Finished
        side.phase = Phase::data;
      } else if (type == kApplicationData) {  // TLS 1.3: the Finished or the server's flight
        side.phase = Phase::data;
      }
      return;
    case Phase::data:
      if (type != kApplicationData) return;  // alerts, post-handshake messages
      // Bursts begin with the client's first application data: the server's application_data
      // before it is its encrypted handshake flight (TLS 1.3) or its session tickets, sent
      // after the client's Finished, which would otherwise open the burst list.
      if (!client && bursts_.empty()) return;
      application_data(d, length);
      return;
  }
}

void TlsInTlsDetector::application_data(Direction d, std::size_t length) {
  if (length == 0) return;
  if (!bursts_.empty() && bursts_.back().direction == d) {
    bursts_.back().bytes += length;
    ++bursts_.back().records;
    return;
  }
  // A new burst completes the previous one.
  const std::size_t complete = bursts_.size();
  const std::size_t needed = std::max<std::size_t>(settings_.bursts, 3);
  if (complete >= 3) {
    const TlsInTlsSettings& s = settings_;
    suspicious_ = bursts_[0].direction == Direction::client_to_server &&
                  within(bursts_[0].first_record, s.hello_min, s.hello_max) &&
                  bursts_[1].direction == Direction::server_to_client &&
                  within(bursts_[1].bytes, s.server_min, s.server_max) &&
                  bursts_[2].direction == Direction::client_to_server &&
                  within(bursts_[2].first_record, s.finished_min, s.finished_max);
  }
  if (complete >= needed) {
    decided_ = true;
    return;
  }
  bursts_.push_back({d, length, length, 1});
}

std::string TlsInTlsDetector::describe() const {
  std::string s;
  for (const Burst& b : bursts_) {
    if (!s.empty()) s += ' ';
    s += b.direction == Direction::client_to_server ? 'c' : 's';
    s += std::to_string(b.bytes);
    if (b.direction == Direction::client_to_server && b.records > 1) s += "/" + std::to_string(b.first_record);
  }
  return s;
}

}  // namespace postern::lab
