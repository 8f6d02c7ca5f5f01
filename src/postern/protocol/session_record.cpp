#include "postern/protocol/session_record.h"

#include <algorithm>

#include "postern/protocol/detail/record_io.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/proto/storage.pb.h"

namespace postern::protocol {
namespace {

using detail::to_string;

void write_chain(const ReceiverChain& c, storage::Chain& pb) {
  pb.set_ratchet_key(to_string(c.ratchet_key.raw()));
  pb.set_index(c.index);
  pb.set_key(to_string(c.key.view()));
  for (const SkippedKey& k : c.skipped) {
    storage::Chain::Skipped* s = pb.add_skipped();
    s->set_index(k.index);
    s->set_seed(to_string(k.seed.view()));
  }
}

Result<ReceiverChain> read_chain(storage::Chain& pb) {
  ReceiverChain c;
  POSTERN_TRY(c.ratchet_key, detail::public_from(pb.ratchet_key()));
  c.index = pb.index();
  POSTERN_CHECK(detail::copy_secret(pb.key(), c.key));
  if (static_cast<std::size_t>(pb.skipped_size()) > kMaxSkippedMessageKeys) return Errc::corrupt_record;
  for (auto& s : *pb.mutable_skipped()) {
    SkippedKey k;
    k.index = s.index();
    POSTERN_CHECK(detail::copy_secret(s.seed(), k.seed));
    detail::wipe_string(*s.mutable_seed());
    c.skipped.push_back(std::move(k));
  }
  detail::wipe_string(*pb.mutable_key());
  return c;
}

void write_state(const SessionState& s, storage::SessionState& pb) {
  pb.set_session_version(s.version);
  pb.set_local_identity(to_string(s.local_identity.raw()));
  pb.set_remote_identity(to_string(s.remote_identity.raw()));
  pb.set_root_key(to_string(s.root_key.view()));
  pb.set_previous_counter(s.previous_counter);
  pb.set_sender_ratchet_public(to_string(s.sender_ratchet.public_key.raw()));
  pb.set_sender_ratchet_private(to_string(s.sender_ratchet.private_key.scalar().view()));
  pb.set_sender_chain_index(s.sender_chain_index);
  pb.set_sender_chain_key(to_string(s.sender_chain_key.view()));
  for (const ReceiverChain& c : s.receiver_chains) write_chain(c, *pb.add_receiver_chains());
  if (s.pending_pre_key) {
    storage::PendingPreKey* p = pb.mutable_pending_pre_key();
    p->set_has_pre_key_id(s.pending_pre_key->pre_key_id.has_value());
    p->set_pre_key_id(s.pending_pre_key->pre_key_id.value_or(0));
    p->set_signed_pre_key_id(s.pending_pre_key->signed_pre_key_id);
    p->set_base_key(to_string(s.pending_pre_key->base_key.raw()));
  }
  pb.set_remote_registration_id(s.remote_registration_id);
  pb.set_local_registration_id(s.local_registration_id);
  pb.set_alice_base_key(to_string(s.alice_base_key.raw()));
}

Result<SessionState> read_state(storage::SessionState& pb) {
  SessionState s;
  s.version = pb.session_version();
  if (s.version != 3) return Errc::invalid_version;
  POSTERN_TRY(s.local_identity, detail::public_from(pb.local_identity()));
  POSTERN_TRY(s.remote_identity, detail::public_from(pb.remote_identity()));
  POSTERN_CHECK(detail::copy_secret(pb.root_key(), s.root_key));
  s.previous_counter = pb.previous_counter();
  POSTERN_TRY(s.sender_ratchet, detail::key_pair_from(pb.sender_ratchet_public(), pb.sender_ratchet_private()));
  s.sender_chain_index = pb.sender_chain_index();
  POSTERN_CHECK(detail::copy_secret(pb.sender_chain_key(), s.sender_chain_key));
  if (static_cast<std::size_t>(pb.receiver_chains_size()) > kMaxReceiverChains) return Errc::corrupt_record;
  s.receiver_chains.reserve(static_cast<std::size_t>(pb.receiver_chains_size()));
  for (auto& c : *pb.mutable_receiver_chains()) {
    POSTERN_TRY(ReceiverChain chain, read_chain(c));
    s.receiver_chains.push_back(std::move(chain));
  }
  if (pb.has_pending_pre_key()) {
    const storage::PendingPreKey& p = pb.pending_pre_key();
    PendingPreKey pending;
    if (p.has_pre_key_id()) pending.pre_key_id = p.pre_key_id();
    pending.signed_pre_key_id = p.signed_pre_key_id();
    POSTERN_TRY(pending.base_key, detail::public_from(p.base_key()));
    s.pending_pre_key = pending;
  }
  s.remote_registration_id = pb.remote_registration_id();
  s.local_registration_id = pb.local_registration_id();
  POSTERN_TRY(s.alice_base_key, detail::public_from(pb.alice_base_key()));
  detail::wipe_string(*pb.mutable_root_key());
  detail::wipe_string(*pb.mutable_sender_ratchet_private());
  detail::wipe_string(*pb.mutable_sender_chain_key());
  return s;
}

void wipe_serialized_state(storage::SessionState& pb) {
  detail::wipe_string(*pb.mutable_root_key());
  detail::wipe_string(*pb.mutable_sender_ratchet_private());
  detail::wipe_string(*pb.mutable_sender_chain_key());
  for (auto& c : *pb.mutable_receiver_chains()) {
    detail::wipe_string(*c.mutable_key());
    for (auto& k : *c.mutable_skipped()) detail::wipe_string(*k.mutable_seed());
  }
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
  if (current_) previous_.push_front(std::move(*current_));
  current_ = std::move(state);
  while (previous_.size() > kMaxArchivedStates) previous_.pop_back();
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
  storage::SessionRecord pb;
  pb.set_format_version(detail::kRecordFormatVersion);
  if (current_) write_state(*current_, *pb.mutable_current());
  for (const SessionState& s : previous_) write_state(s, *pb.add_previous());
  Bytes out = detail::serialize_message(pb);
  if (pb.has_current()) wipe_serialized_state(*pb.mutable_current());
  for (auto& s : *pb.mutable_previous()) wipe_serialized_state(s);
  return out;
}

Result<SessionRecord> SessionRecord::deserialize(ByteView bytes) {
  storage::SessionRecord pb;
  POSTERN_CHECK(detail::parse_record(pb, bytes));
  POSTERN_CHECK(detail::check_format_version(pb.format_version()));
  if (static_cast<std::size_t>(pb.previous_size()) > kMaxArchivedStates) return Errc::corrupt_record;
  SessionRecord r;
  if (pb.has_current()) {
    auto s = read_state(*pb.mutable_current());
    wipe_serialized_state(*pb.mutable_current());
    if (!s) return s.error();
    r.current_ = std::move(s).value();
  }
  for (auto& p : *pb.mutable_previous()) {
    auto s = read_state(p);
    wipe_serialized_state(p);
    if (!s) return s.error();
    r.previous_.push_back(std::move(s).value());
  }
  return r;
}

}  // namespace postern::protocol
