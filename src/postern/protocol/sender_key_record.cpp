#include "postern/protocol/sender_key_record.h"

#include "postern/protocol/detail/record_io.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/proto/storage.pb.h"

namespace postern::protocol {

SenderKeyState* SenderKeyRecord::find(std::uint32_t key_id) {
  for (SenderKeyState& s : states_) {
    if (s.key_id == key_id) return &s;
  }
  return nullptr;
}

void SenderKeyRecord::add_state(SenderKeyState state) {
  states_.push_front(std::move(state));
  while (states_.size() > kMaxSenderKeyStates) states_.pop_back();
}

Bytes SenderKeyRecord::serialize() const {
  storage::SenderKeyRecord pb;
  pb.set_format_version(detail::kRecordFormatVersion);
  for (const SenderKeyState& s : states_) {
    storage::SenderKeyState* p = pb.add_states();
    p->set_key_id(s.key_id);
    p->set_iteration(s.iteration);
    p->set_chain_key(detail::to_string(s.chain_key.view()));
    p->set_signing_public(detail::to_string(s.signing_public.raw()));
    if (s.signing_private) p->set_signing_private(detail::to_string(s.signing_private->scalar().view()));
    p->set_signing_edwards_y(detail::to_string(s.signing_edwards_y));
    p->set_signing_negated(s.signing_negated);
    for (const SkippedKey& k : s.skipped) {
      auto* sk = p->add_skipped();
      sk->set_index(k.index);
      sk->set_seed(detail::to_string(k.seed.view()));
    }
  }
  Bytes out = detail::serialize_message(pb);
  for (auto& p : *pb.mutable_states()) {
    detail::wipe_string(*p.mutable_chain_key());
    detail::wipe_string(*p.mutable_signing_private());
    for (auto& k : *p.mutable_skipped()) detail::wipe_string(*k.mutable_seed());
  }
  return out;
}

Result<SenderKeyRecord> SenderKeyRecord::deserialize(ByteView bytes) {
  storage::SenderKeyRecord pb;
  POSTERN_CHECK(detail::parse_record(pb, bytes));
  POSTERN_CHECK(detail::check_format_version(pb.format_version()));
  if (static_cast<std::size_t>(pb.states_size()) > kMaxSenderKeyStates) return Errc::corrupt_record;
  SenderKeyRecord r;
  for (auto& p : *pb.mutable_states()) {
    SenderKeyState s;
    s.key_id = p.key_id();
    s.iteration = p.iteration();
    POSTERN_CHECK(detail::copy_secret(p.chain_key(), s.chain_key));
    POSTERN_TRY(s.signing_public, detail::public_from(p.signing_public()));
    if (!p.signing_private().empty()) {
      POSTERN_TRY(crypto::PrivateKey k, detail::private_from(p.signing_private()));
      s.signing_private = std::move(k);
    }
    POSTERN_TRY(s.signing_edwards_y, detail::array32(p.signing_edwards_y()));
    s.signing_negated = p.signing_negated();
    if (static_cast<std::size_t>(p.skipped_size()) > kMaxSkippedMessageKeys) return Errc::corrupt_record;
    for (auto& k : *p.mutable_skipped()) {
      SkippedKey key;
      key.index = k.index();
      POSTERN_CHECK(detail::copy_secret(k.seed(), key.seed));
      detail::wipe_string(*k.mutable_seed());
      s.skipped.push_back(std::move(key));
    }
    detail::wipe_string(*p.mutable_chain_key());
    detail::wipe_string(*p.mutable_signing_private());
    r.states_.push_back(std::move(s));
  }
  return r;
}

}  // namespace postern::protocol
