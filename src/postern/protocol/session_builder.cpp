#include "postern/protocol/session_builder.h"

#include "postern/crypto/secret.h"
#include "postern/protocol/detail/x3dh.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/session_record.h"

namespace postern::protocol {

Status process_pre_key_bundle(SessionStores stores, const ProtocolAddress& remote, const PreKeyBundle& bundle,
                              crypto::Rng& rng) {
  POSTERN_TRY(bool trusted,
              stores.identity.is_trusted_identity(remote, bundle.identity_key, Direction::sending));
  if (!trusted) return Errc::untrusted_identity;
  if (!bundle.signature_valid()) return Errc::invalid_key;
  if (bundle.pre_key.has_value() != bundle.pre_key_id.has_value()) return Errc::invalid_key;

  POSTERN_TRY(std::optional<Bytes> stored, stores.sessions.load_session(remote));
  SessionRecord record;
  if (stored) {
    const crypto::SecretBytes blob(std::move(*stored));  // wiped once parsed
    POSTERN_TRY(record, SessionRecord::deserialize(blob.view()));
  }
  POSTERN_TRY(IdentityKeyPair ours, stores.identity.identity_key_pair());
  POSTERN_TRY(std::uint32_t local_registration_id, stores.identity.local_registration_id());

  KeyPair base_key = KeyPair::generate(rng);
  POSTERN_TRY(SessionState state, detail::initialize_alice(ours, base_key, bundle.identity_key,
                                                           bundle.signed_pre_key, bundle.pre_key, rng));
  state.pending_pre_key = PendingPreKey{bundle.pre_key_id, bundle.signed_pre_key_id, base_key.public_key};
  state.local_registration_id = local_registration_id;
  state.remote_registration_id = bundle.registration_id;
  state.alice_base_key = base_key.public_key;
  record.promote_state(std::move(state));

  POSTERN_CHECK(stores.sessions.store_session(remote, crypto::SecretBytes(record.serialize()).view()));
  POSTERN_TRY(bool replaced, stores.identity.save_identity(remote, bundle.identity_key));
  (void)replaced;
  return {};
}

}  // namespace postern::protocol
