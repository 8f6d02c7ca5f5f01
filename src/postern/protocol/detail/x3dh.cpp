#include "postern/protocol/detail/x3dh.h"

#include <algorithm>

#include "postern/crypto/hkdf.h"
#include "postern/protocol/errors.h"

namespace postern::protocol::detail {
namespace {

constexpr std::string_view kX3dhInfo = "WhisperText";

// Appends DH(ours, theirs) to the secret; a weak (all-zero) result is an invalid key.
Status mix(crypto::SecretBytes& secret, const crypto::PrivateKey& ours, const PublicKey& theirs) {
  auto shared = crypto::agreement(ours, theirs);
  if (!shared) return Errc::invalid_key;
  secret.append(shared->view());
  return {};
}

struct Derived {
  RootKey root_key;
  ChainKey chain_key;
};

Derived derive(const crypto::SecretBytes& secret) {
  crypto::SecretArray<64> okm;
  (void)crypto::hkdf_sha256(secret.view(), {}, as_bytes(kX3dhInfo), okm.span());
  Derived d;
  std::copy_n(okm.data(), 32, d.root_key.data());
  std::copy_n(okm.data() + 32, 32, d.chain_key.data());
  return d;
}

crypto::SecretBytes discontinuity() {
  crypto::SecretBytes s;
  s.reserve(32 * 5);
  std::uint8_t ff[32];
  std::fill(std::begin(ff), std::end(ff), std::uint8_t{0xff});
  s.append(ff);
  return s;
}

}  // namespace

Result<SessionState> initialize_alice(const IdentityKeyPair& ours, const KeyPair& base_key,
                                      const PublicKey& their_identity, const PublicKey& their_signed_pre_key,
                                      const std::optional<PublicKey>& their_one_time_pre_key,
                                      crypto::Rng& rng) {
  crypto::SecretBytes secret = discontinuity();
  POSTERN_CHECK(mix(secret, ours.private_key, their_signed_pre_key));
  POSTERN_CHECK(mix(secret, base_key.private_key, their_identity));
  POSTERN_CHECK(mix(secret, base_key.private_key, their_signed_pre_key));
  if (their_one_time_pre_key) POSTERN_CHECK(mix(secret, base_key.private_key, *their_one_time_pre_key));
  Derived d = derive(secret);

  SessionState s;
  s.local_identity = ours.public_key;
  s.remote_identity = their_identity;

  ReceiverChain first;
  first.ratchet_key = their_signed_pre_key;
  first.key = d.chain_key;
  s.add_receiver_chain(std::move(first));

  s.sender_ratchet = KeyPair::generate(rng);
  auto step = root_step(d.root_key, s.sender_ratchet.private_key, their_signed_pre_key);
  if (!step) return step.error();
  s.root_key = step->root_key;
  s.sender_chain_key = step->chain_key;
  s.sender_chain_index = 0;
  return s;
}

Result<SessionState> initialize_bob(const IdentityKeyPair& ours, const KeyPair& signed_pre_key,
                                    const std::optional<KeyPair>& one_time_pre_key,
                                    const PublicKey& their_identity, const PublicKey& their_base_key) {
  crypto::SecretBytes secret = discontinuity();
  POSTERN_CHECK(mix(secret, signed_pre_key.private_key, their_identity));
  POSTERN_CHECK(mix(secret, ours.private_key, their_base_key));
  POSTERN_CHECK(mix(secret, signed_pre_key.private_key, their_base_key));
  if (one_time_pre_key) POSTERN_CHECK(mix(secret, one_time_pre_key->private_key, their_base_key));
  Derived d = derive(secret);

  SessionState s;
  s.local_identity = ours.public_key;
  s.remote_identity = their_identity;
  s.sender_ratchet = signed_pre_key;
  s.sender_chain_key = d.chain_key;
  s.sender_chain_index = 0;
  s.root_key = d.root_key;
  return s;
}

}  // namespace postern::protocol::detail
