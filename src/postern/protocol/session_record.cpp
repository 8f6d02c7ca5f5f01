#include "postern/protocol/session_record.h"

#include <algorithm>

#include "postern/protocol/detail/binary_io.h"
#include "postern/protocol/errors.h"

// Record layout (little-endian; keys are raw 32-byte values):
//   'P' 'S' format_version(u8 = 1) has_current(u8) [state] previous_count(u8) [state]...
//   state = version u8 | local_identity | remote_identity | root_key | previous_counter u32
//         | sender_ratchet_public | sender_ratchet_private | sender_chain_index u32 | sender_chain_key
//         | chain_count u8 { ratchet_key | index u32 | key | skipped_count u16 { index u32 | seed } }
//         | pending flags u8 (1 = present, 2 = has one-time prekey id) | pre_key_id u32
//         | signed_pre_key_id u32 | base_key | remote_registration_id u32 | local_registration_id u32
//         | alice_base_key
// A fixed binary layout rather than protobuf: records are loaded and stored on every message,
// and this is several times faster to read and write. The version byte guards evolution.

namespace postern::protocol {
namespace {

constexpr std::uint8_t kMagic0 = 'P';
constexpr std::uint8_t kMagic1 = 'S';
constexpr std::uint8_t kFormatVersion = 1;

void write_state(detail::Writer& w, const SessionState& s) {
  w.u8(static_cast<std::uint8_t>(s.version));
  w.key(s.local_identity);
  w.key(s.remote_identity);
  w.secret(s.root_key);
  w.u32(s.previous_counter);
  w.key(s.sender_ratchet.public_key);
  w.secret(s.sender_ratchet.private_key.scalar());
  w.u32(s.sender_chain_index);
  w.secret(s.sender_chain_key);
  w.u8(static_cast<std::uint8_t>(s.receiver_chains.size()));
  for (const ReceiverChain& c : s.receiver_chains) {
    w.key(c.ratchet_key);
    w.u32(c.index);
    w.secret(c.key);
    w.u16(static_cast<std::uint16_t>(c.skipped.size()));
    for (const SkippedKey& k : c.skipped) {
      w.u32(k.index);
      w.secret(k.seed);
    }
  }
  const auto& p = s.pending_pre_key;
  w.u8(static_cast<std::uint8_t>((p ? 1 : 0) | (p && p->pre_key_id ? 2 : 0)));
  w.u32(p && p->pre_key_id ? *p->pre_key_id : 0);
  w.u32(p ? p->signed_pre_key_id : 0);
  w.key(p ? p->base_key : PublicKey{});
  w.u32(s.remote_registration_id);
  w.u32(s.local_registration_id);
  w.key(s.alice_base_key);
}

Result<SessionState> read_state(detail::Reader& r) {
  SessionState s;
  s.version = r.u8();
  if (r.ok() && s.version != 3) return Errc::invalid_version;
  s.local_identity = r.key();
  s.remote_identity = r.key();
  r.secret(s.root_key);
  s.previous_counter = r.u32();
  s.sender_ratchet.public_key = r.key();
  s.sender_ratchet.private_key = r.private_key();
  s.sender_chain_index = r.u32();
  r.secret(s.sender_chain_key);
  const std::size_t chains = r.u8();
  if (chains > kMaxReceiverChains) return Errc::corrupt_record;
  s.receiver_chains.resize(chains);
  for (ReceiverChain& c : s.receiver_chains) {
    c.ratchet_key = r.key();
    c.index = r.u32();
    r.secret(c.key);
    const std::size_t skipped = r.u16();
    if (skipped > kMaxSkippedMessageKeys) return Errc::corrupt_record;
    c.skipped.resize(skipped);
    for (SkippedKey& k : c.skipped) {
      k.index = r.u32();
      r.secret(k.seed);
    }
    if (!r.ok()) return Errc::corrupt_record;
  }
  const std::uint8_t flags = r.u8();
  const std::uint32_t pre_key_id = r.u32();
  const std::uint32_t signed_pre_key_id = r.u32();
  const PublicKey base_key = r.key();
  if (flags > 3) return Errc::corrupt_record;
  if (flags & 1) {
    s.pending_pre_key = PendingPreKey{(flags & 2) ? std::optional<std::uint32_t>(pre_key_id) : std::nullopt,
                                      signed_pre_key_id, base_key};
  }
  s.remote_registration_id = r.u32();
  s.local_registration_id = r.u32();
  s.alice_base_key = r.key();
  if (!r.ok()) return Errc::corrupt_record;
  return s;
}

}  // namespace

ReceiverChain* SessionState::find_receiver_chain(const PublicKey& ratchet_key) {
  for (ReceiverChain& c : receiver_chains) {
    if (c.ratchet_key == ratchet_key) return &c;
  }
  return nullptr;
}

void SessionState::add_receiver_chain(ReceiverChain chain) {
  receiver_chains.push_back(std::move(chain));
  while (receiver_chains.size() > kMaxReceiverChains) receiver_chains.erase(receiver_chains.begin());
}

void SessionRecord::promote_state(SessionState state) {
  if (current_) previous_.insert(previous_.begin(), std::move(*current_));
  current_ = std::move(state);
  if (previous_.size() > kMaxArchivedStates) previous_.resize(kMaxArchivedStates);
}

void SessionRecord::promote_archived(std::size_t index) {
  SessionState s = std::move(previous_[index]);
  previous_.erase(previous_.begin() + static_cast<std::ptrdiff_t>(index));
  promote_state(std::move(s));
}

bool SessionRecord::has_state_with_base_key(const PublicKey& base_key) const {
  if (current_ && current_->alice_base_key == base_key) return true;
  return std::any_of(previous_.begin(), previous_.end(),
                     [&](const SessionState& s) { return s.alice_base_key == base_key; });
}

Bytes SessionRecord::serialize() const {
  detail::Writer w(64 + 400 * (1 + previous_.size()));
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(kFormatVersion);
  w.u8(current_ ? 1 : 0);
  if (current_) write_state(w, *current_);
  w.u8(static_cast<std::uint8_t>(previous_.size()));
  for (const SessionState& s : previous_) write_state(w, s);
  return w.take();
}

Result<SessionRecord> SessionRecord::deserialize(ByteView bytes) {
  detail::Reader r(bytes);
  if (r.u8() != kMagic0 || r.u8() != kMagic1) return Errc::corrupt_record;
  const std::uint8_t version = r.u8();
  if (!r.ok() || version == 0) return Errc::corrupt_record;
  if (version > kFormatVersion) return Errc::invalid_version;
  SessionRecord record;
  const std::uint8_t has_current = r.u8();
  if (has_current > 1) return Errc::corrupt_record;
  if (has_current == 1) {
    POSTERN_TRY(SessionState s, read_state(r));
    record.current_ = std::move(s);
  }
  const std::size_t previous = r.u8();
  if (previous > kMaxArchivedStates) return Errc::corrupt_record;
  for (std::size_t i = 0; i < previous && r.ok(); ++i) {
    POSTERN_TRY(SessionState s, read_state(r));
    record.previous_.push_back(std::move(s));
  }
  if (!r.ok() || !r.at_end()) return Errc::corrupt_record;
  return record;
}

}  // namespace postern::protocol
