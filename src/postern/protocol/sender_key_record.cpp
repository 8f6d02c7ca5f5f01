#include "postern/protocol/sender_key_record.h"

#include "postern/protocol/detail/binary_io.h"
#include "postern/protocol/errors.h"

namespace postern::protocol {

SenderKeyState* SenderKeyRecord::find(std::uint32_t key_id) {
  for (SenderKeyState& s : states_) {
    if (s.key_id == key_id) return &s;
  }
  return nullptr;
}

void SenderKeyRecord::add_state(SenderKeyState state) {
  states_.insert(states_.begin(), std::move(state));
  if (states_.size() > kMaxSenderKeyStates) states_.resize(kMaxSenderKeyStates);
}

// Record layout (little-endian; keys raw 32 bytes), versioned like session records:
//   'P' 'K' format_version(u8 = 1) state_count(u8) { key_id u32 | iteration u32 | chain_key
//   | signing_public | has_private u8 [signing_private] | signing_edwards_y | signing_negated u8
//   | skipped_count u16 { index u32 | seed } }
namespace {
constexpr std::uint8_t kMagic0 = 'P';
constexpr std::uint8_t kMagic1 = 'K';
constexpr std::uint8_t kFormatVersion = 1;
}  // namespace

Bytes SenderKeyRecord::serialize() const {
  detail::Writer w;
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(kFormatVersion);
  w.u8(static_cast<std::uint8_t>(states_.size()));
  for (const SenderKeyState& s : states_) {
    w.u32(s.key_id);
    w.u32(s.iteration);
    w.secret(s.chain_key);
    w.key(s.signing_public);
    w.u8(s.signing_private ? 1 : 0);
    if (s.signing_private) w.secret(s.signing_private->scalar());
    w.raw(s.signing_edwards_y);
    w.u8(s.signing_negated ? 1 : 0);
    w.u16(static_cast<std::uint16_t>(s.skipped.size()));
    for (const SkippedKey& k : s.skipped) {
      w.u32(k.index);
      w.secret(k.seed);
    }
  }
  return w.take();
}

Result<SenderKeyRecord> SenderKeyRecord::deserialize(ByteView bytes) {
  detail::Reader r(bytes);
  if (r.u8() != kMagic0 || r.u8() != kMagic1) return Errc::corrupt_record;
  const std::uint8_t version = r.u8();
  if (!r.ok() || version == 0) return Errc::corrupt_record;
  if (version > kFormatVersion) return Errc::invalid_version;
  const std::size_t count = r.u8();
  if (count > kMaxSenderKeyStates) return Errc::corrupt_record;
  SenderKeyRecord record;
  for (std::size_t i = 0; i < count && r.ok(); ++i) {
    SenderKeyState s;
    s.key_id = r.u32();
    s.iteration = r.u32();
    r.secret(s.chain_key);
    s.signing_public = r.key();
    const std::uint8_t has_private = r.u8();
    if (has_private > 1) return Errc::corrupt_record;
    if (has_private == 1) s.signing_private = r.private_key();
    r.array(s.signing_edwards_y);
    const std::uint8_t negated = r.u8();
    if (negated > 1) return Errc::corrupt_record;
    s.signing_negated = negated == 1;
    const std::size_t skipped = r.u16();
    if (skipped > kMaxSkippedMessageKeys) return Errc::corrupt_record;
    s.skipped.resize(skipped);
    for (SkippedKey& k : s.skipped) {
      k.index = r.u32();
      r.secret(k.seed);
    }
    record.states_.push_back(std::move(s));
  }
  if (!r.ok() || !r.at_end()) return Errc::corrupt_record;
  return record;
}

}  // namespace postern::protocol
