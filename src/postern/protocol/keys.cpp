#include "postern/protocol/keys.h"

#include "postern/protocol/detail/record_io.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/proto/storage.pb.h"

namespace postern::protocol {

IdentityKeyPair IdentityKeyPair::generate(crypto::Rng& rng) {
  KeyPair kp = KeyPair::generate(rng);
  return IdentityKeyPair{kp.public_key, std::move(kp.private_key)};
}

std::uint32_t generate_registration_id(crypto::Rng& rng) {
  return rng.uniform(16380) + 1;
}

PreKeyRecord PreKeyRecord::generate(std::uint32_t id, crypto::Rng& rng) {
  return PreKeyRecord{id, KeyPair::generate(rng)};
}

Bytes PreKeyRecord::serialize() const {
  storage::PreKeyRecord pb;
  pb.set_format_version(detail::kRecordFormatVersion);
  pb.set_id(id);
  pb.set_public_key(detail::to_string(key_pair.public_key.raw()));
  pb.set_private_key(detail::to_string(key_pair.private_key.scalar().view()));
  return detail::serialize_message(pb);
}

Result<PreKeyRecord> PreKeyRecord::deserialize(ByteView bytes) {
  storage::PreKeyRecord pb;
  POSTERN_CHECK(detail::parse_record(pb, bytes));
  POSTERN_CHECK(detail::check_format_version(pb.format_version()));
  POSTERN_TRY(KeyPair kp, detail::key_pair_from(pb.public_key(), pb.private_key()));
  detail::wipe_string(*pb.mutable_private_key());
  return PreKeyRecord{pb.id(), std::move(kp)};
}

SignedPreKeyRecord SignedPreKeyRecord::generate(std::uint32_t id, const IdentityKeyPair& identity,
                                                std::int64_t now_ms, crypto::Rng& rng) {
  SignedPreKeyRecord r;
  r.id = id;
  r.key_pair = KeyPair::generate(rng);
  r.signature = crypto::xeddsa_sign(identity.private_key, r.key_pair.public_key.serialize(), rng);
  r.timestamp_ms = now_ms;
  return r;
}

Bytes SignedPreKeyRecord::serialize() const {
  storage::SignedPreKeyRecord pb;
  pb.set_format_version(detail::kRecordFormatVersion);
  pb.set_id(id);
  pb.set_public_key(detail::to_string(key_pair.public_key.raw()));
  pb.set_private_key(detail::to_string(key_pair.private_key.scalar().view()));
  pb.set_signature(detail::to_string(signature));
  pb.set_timestamp_ms(timestamp_ms);
  return detail::serialize_message(pb);
}

Result<SignedPreKeyRecord> SignedPreKeyRecord::deserialize(ByteView bytes) {
  storage::SignedPreKeyRecord pb;
  POSTERN_CHECK(detail::parse_record(pb, bytes));
  POSTERN_CHECK(detail::check_format_version(pb.format_version()));
  if (pb.signature().size() != crypto::kSignatureSize) return Errc::corrupt_record;
  POSTERN_TRY(KeyPair kp, detail::key_pair_from(pb.public_key(), pb.private_key()));
  detail::wipe_string(*pb.mutable_private_key());
  SignedPreKeyRecord r;
  r.id = pb.id();
  r.key_pair = std::move(kp);
  std::copy(pb.signature().begin(), pb.signature().end(), r.signature.begin());
  r.timestamp_ms = pb.timestamp_ms();
  return r;
}

bool PreKeyBundle::signature_valid() const {
  return crypto::xeddsa_verify(identity_key, signed_pre_key.serialize(), signed_pre_key_signature);
}

}  // namespace postern::protocol
