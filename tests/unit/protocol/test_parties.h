// Two-party fixtures for protocol tests: each party owns an in-memory store; helpers publish a
// bundle and open a session, as the server would carry them.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "postern/crypto/random.h"
#include "postern/protocol/in_memory_store.h"
#include "postern/protocol/session_builder.h"
#include "postern/protocol/session_cipher.h"

namespace postern::protocol::testing {

struct Party {
  std::string name;
  std::uint32_t device = 1;
  InMemoryProtocolStore store;

  Party(std::string n, crypto::Rng& rng)
      : name(std::move(n)), store(IdentityKeyPair::generate(rng), generate_registration_id(rng)) {}
  ProtocolAddress address() const { return {name, device}; }
  PublicKey identity() { return store.identity_key_pair()->public_key; }

  // Generates and stores a signed prekey (and a one-time prekey unless pre_key_id is empty).
  PreKeyBundle publish(std::uint32_t signed_id, std::optional<std::uint32_t> pre_key_id, crypto::Rng& rng) {
    IdentityKeyPair id = *store.identity_key_pair();
    auto spk = SignedPreKeyRecord::generate(signed_id, id, 0, rng);
    EXPECT_TRUE(store.store_signed_pre_key(signed_id, spk.serialize()).ok());
    PreKeyBundle b;
    b.registration_id = *store.local_registration_id();
    b.device_id = device;
    b.signed_pre_key_id = signed_id;
    b.signed_pre_key = spk.key_pair.public_key;
    b.signed_pre_key_signature = spk.signature;
    b.identity_key = id.public_key;
    if (pre_key_id) {
      auto pk = PreKeyRecord::generate(*pre_key_id, rng);
      EXPECT_TRUE(store.store_pre_key(*pre_key_id, pk.serialize()).ok());
      b.pre_key_id = pre_key_id;
      b.pre_key = pk.key_pair.public_key;
    }
    return b;
  }

  SessionCipher cipher_to(const Party& other, crypto::Rng& rng) {
    return SessionCipher(store.session_stores(), other.address(), rng);
  }

  Bytes session_bytes(const Party& other) {
    auto b = store.load_session(other.address());
    return b.ok() && b->has_value() ? **b : Bytes{};
  }
};

inline Bytes text(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

}  // namespace postern::protocol::testing
