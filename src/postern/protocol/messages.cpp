#include "postern/protocol/messages.h"

#include <algorithm>

#include "postern/crypto/hash.h"
#include "postern/protocol/detail/record_io.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/proto/wire.pb.h"

namespace postern::protocol {
namespace {

constexpr std::uint8_t kVersionByte = (kCurrentVersion << 4) | kCurrentVersion;

// Checks the version byte the way libsignal-protocol-c does (high nibble is the message version).
Status check_version_byte(std::uint8_t b) {
  const std::uint8_t v = b >> 4;
  if (v < kCurrentVersion) return Errc::legacy_message;
  if (v > kCurrentVersion) return Errc::invalid_version;
  return {};
}

Status parse_pb(google::protobuf::MessageLite& m, ByteView body) {
  if (!m.ParseFromArray(body.data(), static_cast<int>(body.size()))) return Errc::invalid_protobuf;
  return {};
}

Bytes with_version(const google::protobuf::MessageLite& m, std::size_t trailer) {
  const std::size_t n = m.ByteSizeLong();
  Bytes out(1 + n + trailer);
  out[0] = kVersionByte;
  m.SerializeWithCachedSizesToArray(out.data() + 1);
  return out;
}

Result<PublicKey> wire_public_key(const std::string& s) {
  auto k = PublicKey::deserialize(as_bytes(s));
  if (!k) return Errc::invalid_key;
  return *k;
}

void put_varint(Bytes& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

std::array<std::uint8_t, 32> compute_mac(const PublicKey& sender, const PublicKey& receiver, ByteView mac_key,
                                         ByteView body) {
  crypto::HmacSha256 mac(mac_key);
  mac.update(sender.serialize()).update(receiver.serialize()).update(body);
  return mac.finish();
}

}  // namespace

// Encoded directly (it is made for every message sent): the canonical protobuf encoding of
// fields 1-4 in order, which is what libprotobuf writes too (checked by a unit test against it).
SignalMessage SignalMessage::create(const PublicKey& ratchet_key, std::uint32_t counter,
                                    std::uint32_t previous_counter, ByteView ciphertext, ByteView mac_key,
                                    const PublicKey& sender_identity, const PublicKey& receiver_identity) {
  SignalMessage m;
  m.ratchet_key_ = ratchet_key;
  m.counter_ = counter;
  m.previous_counter_ = previous_counter;
  m.ciphertext_.assign(ciphertext.begin(), ciphertext.end());
  Bytes& out = m.serialized_;
  out.reserve(1 + 2 + 33 + 12 + 6 + ciphertext.size() + kMacSize);
  out.push_back(kVersionByte);
  out.push_back(0x0a);  // field 1, length-delimited
  out.push_back(static_cast<std::uint8_t>(crypto::kPublicKeySize));
  const auto key = ratchet_key.serialize();
  out.insert(out.end(), key.begin(), key.end());
  out.push_back(0x10);  // field 2, varint
  put_varint(out, counter);
  out.push_back(0x18);  // field 3, varint
  put_varint(out, previous_counter);
  out.push_back(0x22);  // field 4, length-delimited
  put_varint(out, ciphertext.size());
  out.insert(out.end(), ciphertext.begin(), ciphertext.end());
  const std::size_t body = out.size();
  auto mac = compute_mac(sender_identity, receiver_identity, mac_key, ByteView(out.data(), body));
  out.insert(out.end(), mac.begin(), mac.begin() + kMacSize);
  return m;
}

Result<SignalMessage> SignalMessage::parse(ByteView serialized) {
  if (serialized.size() <= 1 + kMacSize || serialized.size() > kMaxMessageSize) return Errc::invalid_message;
  POSTERN_CHECK(check_version_byte(serialized[0]));
  wire::SignalMessage pb;
  POSTERN_CHECK(parse_pb(pb, serialized.subspan(1, serialized.size() - 1 - kMacSize)));
  if (!pb.has_ratchet_key() || !pb.has_counter() || !pb.has_ciphertext()) return Errc::invalid_message;
  POSTERN_TRY(PublicKey ratchet, wire_public_key(pb.ratchet_key()));
  SignalMessage m;
  m.version_ = serialized[0] >> 4;
  m.ratchet_key_ = ratchet;
  m.counter_ = pb.counter();
  m.previous_counter_ = pb.previous_counter();
  m.ciphertext_.assign(pb.ciphertext().begin(), pb.ciphertext().end());
  m.serialized_.assign(serialized.begin(), serialized.end());
  return m;
}

bool SignalMessage::verify_mac(const PublicKey& sender_identity, const PublicKey& receiver_identity,
                               ByteView mac_key) const {
  if (serialized_.size() <= kMacSize) return false;
  const std::size_t body = serialized_.size() - kMacSize;
  auto mac = compute_mac(sender_identity, receiver_identity, mac_key, ByteView(serialized_.data(), body));
  return crypto::constant_time_equal(ByteView(mac.data(), kMacSize), ByteView(serialized_).subspan(body));
}

PreKeySignalMessage PreKeySignalMessage::create(std::uint32_t registration_id,
                                                std::optional<std::uint32_t> pre_key_id,
                                                std::uint32_t signed_pre_key_id, const PublicKey& base_key,
                                                const PublicKey& identity_key, SignalMessage message) {
  wire::PreKeySignalMessage pb;
  pb.set_registration_id(registration_id);
  if (pre_key_id) pb.set_pre_key_id(*pre_key_id);
  pb.set_signed_pre_key_id(signed_pre_key_id);
  pb.set_base_key(detail::to_string(base_key.serialize()));
  pb.set_identity_key(detail::to_string(identity_key.serialize()));
  pb.set_message(detail::to_string(message.serialized()));

  PreKeySignalMessage m;
  m.registration_id_ = registration_id;
  m.pre_key_id_ = pre_key_id;
  m.signed_pre_key_id_ = signed_pre_key_id;
  m.base_key_ = base_key;
  m.identity_key_ = identity_key;
  m.message_ = std::move(message);
  m.serialized_ = with_version(pb, 0);
  return m;
}

Result<PreKeySignalMessage> PreKeySignalMessage::parse(ByteView serialized) {
  if (serialized.size() < 2 || serialized.size() > kMaxMessageSize) return Errc::invalid_message;
  POSTERN_CHECK(check_version_byte(serialized[0]));
  wire::PreKeySignalMessage pb;
  POSTERN_CHECK(parse_pb(pb, serialized.subspan(1)));
  if (!pb.has_base_key() || !pb.has_identity_key() || !pb.has_message() || !pb.has_signed_pre_key_id()) {
    return Errc::invalid_message;
  }
  POSTERN_TRY(PublicKey base, wire_public_key(pb.base_key()));
  POSTERN_TRY(PublicKey identity, wire_public_key(pb.identity_key()));
  POSTERN_TRY(SignalMessage inner, SignalMessage::parse(as_bytes(pb.message())));
  if (inner.version() != (serialized[0] >> 4)) return Errc::invalid_message;

  PreKeySignalMessage m;
  m.version_ = serialized[0] >> 4;
  m.registration_id_ = pb.registration_id();
  if (pb.has_pre_key_id()) m.pre_key_id_ = pb.pre_key_id();
  m.signed_pre_key_id_ = pb.signed_pre_key_id();
  m.base_key_ = base;
  m.identity_key_ = identity;
  m.message_ = std::move(inner);
  m.serialized_.assign(serialized.begin(), serialized.end());
  return m;
}

SenderKeyMessage SenderKeyMessage::create(std::uint32_t key_id, std::uint32_t iteration, ByteView ciphertext,
                                          const crypto::XeddsaSigner& signer, crypto::Rng& rng) {
  wire::SenderKeyMessage pb;
  pb.set_id(key_id);
  pb.set_iteration(iteration);
  pb.set_ciphertext(detail::to_string(ciphertext));

  SenderKeyMessage m;
  m.key_id_ = key_id;
  m.iteration_ = iteration;
  m.ciphertext_.assign(ciphertext.begin(), ciphertext.end());
  m.serialized_ = with_version(pb, crypto::kSignatureSize);
  const std::size_t body = m.serialized_.size() - crypto::kSignatureSize;
  crypto::Signature sig = signer.sign(ByteView(m.serialized_.data(), body), rng);
  std::copy(sig.begin(), sig.end(), m.serialized_.begin() + static_cast<std::ptrdiff_t>(body));
  return m;
}

Result<SenderKeyMessage> SenderKeyMessage::parse(ByteView serialized) {
  if (serialized.size() <= 1 + crypto::kSignatureSize || serialized.size() > kMaxMessageSize) {
    return Errc::invalid_message;
  }
  POSTERN_CHECK(check_version_byte(serialized[0]));
  wire::SenderKeyMessage pb;
  POSTERN_CHECK(parse_pb(pb, serialized.subspan(1, serialized.size() - 1 - crypto::kSignatureSize)));
  if (!pb.has_id() || !pb.has_iteration() || !pb.has_ciphertext()) return Errc::invalid_message;
  SenderKeyMessage m;
  m.key_id_ = pb.id();
  m.iteration_ = pb.iteration();
  m.ciphertext_.assign(pb.ciphertext().begin(), pb.ciphertext().end());
  m.serialized_.assign(serialized.begin(), serialized.end());
  return m;
}

bool SenderKeyMessage::verify_signature(const std::array<std::uint8_t, 32>& signing_edwards_y) const {
  const std::size_t body = serialized_.size() - crypto::kSignatureSize;
  return crypto::xeddsa_verify_with_edwards(signing_edwards_y, ByteView(serialized_.data(), body),
                                            ByteView(serialized_).subspan(body));
}

SenderKeyDistributionMessage SenderKeyDistributionMessage::create(std::uint32_t key_id,
                                                                  std::uint32_t iteration, ByteView chain_key,
                                                                  const PublicKey& signing_key) {
  wire::SenderKeyDistributionMessage pb;
  pb.set_id(key_id);
  pb.set_iteration(iteration);
  pb.set_chain_key(detail::to_string(chain_key));
  pb.set_signing_key(detail::to_string(signing_key.serialize()));
  SenderKeyDistributionMessage m;
  m.key_id_ = key_id;
  m.iteration_ = iteration;
  m.chain_key_.assign(chain_key.begin(), chain_key.end());
  m.signing_key_ = signing_key;
  m.serialized_ = with_version(pb, 0);
  detail::wipe_string(*pb.mutable_chain_key());
  return m;
}

Result<SenderKeyDistributionMessage> SenderKeyDistributionMessage::parse(ByteView serialized) {
  if (serialized.size() < 2 || serialized.size() > kMaxMessageSize) return Errc::invalid_message;
  POSTERN_CHECK(check_version_byte(serialized[0]));
  wire::SenderKeyDistributionMessage pb;
  POSTERN_CHECK(parse_pb(pb, serialized.subspan(1)));
  if (!pb.has_id() || !pb.has_iteration() || !pb.has_chain_key() || !pb.has_signing_key()) {
    return Errc::invalid_message;
  }
  if (pb.chain_key().size() != 32) return Errc::invalid_message;
  POSTERN_TRY(PublicKey signing, wire_public_key(pb.signing_key()));
  SenderKeyDistributionMessage m;
  m.key_id_ = pb.id();
  m.iteration_ = pb.iteration();
  m.chain_key_.assign(pb.chain_key().begin(), pb.chain_key().end());
  m.signing_key_ = signing;
  m.serialized_.assign(serialized.begin(), serialized.end());
  detail::wipe_string(*pb.mutable_chain_key());
  return m;
}

}  // namespace postern::protocol
