// The Noise Protocol Framework (revision 34), the parts Postern uses, over libsodium: X25519,
// ChaCha20-Poly1305 (IETF, 96-bit nonce = 32 zero bits || 64-bit little-endian counter) and
// SHA-256 or BLAKE2b (HMAC / HKDF as the spec defines them). No I/O, no allocation of secrets
// outside wiped buffers.
//
// Supported protocol names: Noise_<P>_25519_ChaChaPoly_<H> for the one-way-free interactive
// patterns P in {NN, NK, NX, KN, KK, KX, XN, XK, XX, IN, IK, IX} and H in {SHA256, BLAKE2b}.
// No PSK modifiers, no fallback. Postern's inner channel uses Noise_NK_25519_ChaChaPoly_BLAKE2b
// (docs/transport.md): the client knows the server's static key from the invite, the client
// stays anonymous at this layer (it signs in inside).
//
// Tested against the cacophony vectors in ../shared/reference/vectors/noise-cacophony.json.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::transport::noise {

inline constexpr std::size_t kDhSize = 32;
inline constexpr std::size_t kKeySize = 32;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kMaxMessage = 65535;  // any Noise message, handshake or transport

using PublicKey = std::array<std::uint8_t, kDhSize>;

struct KeyPair {
  crypto::SecretArray<kDhSize> private_key;
  PublicKey public_key{};

  static KeyPair generate(crypto::Rng& rng);
  // From a 32-byte private key (clamped by X25519 itself). Errc::bad_key on a wrong size.
  static Result<KeyPair> from_private(ByteView private_key);
};

// A CipherState: a key (or none) and a 64-bit nonce. Without a key, encrypt/decrypt pass the
// bytes through unchanged, as the spec says. Nonce 2^64-1 is reserved: Errc::wrong_state.
class CipherState {
 public:
  CipherState() = default;
  void initialize_key(const crypto::SecretArray<kKeySize>& key);
  void clear_key();
  bool has_key() const noexcept { return has_key_; }
  std::uint64_t nonce() const noexcept { return nonce_; }
  void set_nonce(std::uint64_t n) noexcept { nonce_ = n; }

  // out.size() must be plaintext.size() + kTagSize (plaintext.size() without a key); out may
  // alias plaintext (in-place). Errc::too_large over kMaxMessage; Errc::bad_config when out has
  // the wrong size (a caller's mistake; nothing is written, the nonce stays).
  Status encrypt_with_ad(ByteView ad, ByteView plaintext, MutableByteView out);
  // out.size() must be ciphertext.size() - kTagSize (the same size without a key); may alias.
  // Errc::decrypt_failed when the tag does not verify or the input is shorter than a tag (the
  // nonce then does not advance, and out is zeroed: an in-place buffer loses the refused bytes);
  // Errc::too_large over kMaxMessage; Errc::bad_config when out has the wrong size.
  Status decrypt_with_ad(ByteView ad, ByteView ciphertext, MutableByteView out);
  Result<Bytes> encrypt_with_ad(ByteView ad, ByteView plaintext);
  Result<Bytes> decrypt_with_ad(ByteView ad, ByteView ciphertext);
  // REKEY(k): k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros[32]).
  void rekey();

 private:
  crypto::SecretArray<kKeySize> key_;
  bool has_key_ = false;
  std::uint64_t nonce_ = 0;
};

struct HandshakeOptions {
  std::string protocol_name;  // e.g. "Noise_NK_25519_ChaChaPoly_BLAKE2b"
  bool initiator = true;
  Bytes prologue;
  const KeyPair* local_static = nullptr;     // required when the pattern sends or pre-shares it
  const KeyPair* local_ephemeral = nullptr;  // fixed ephemeral (test vectors); else from rng
  std::optional<PublicKey> remote_static;    // required when the pattern pre-shares it (NK: the server)
  std::optional<PublicKey> remote_ephemeral; // pre-shared ephemeral (no supported pattern uses it)
};

struct TransportPair {
  CipherState send;     // initiator: the first of Split()'s pair; responder: the second
  CipherState receive;
  Bytes handshake_hash;  // h after the last message (channel binding)
};

class HandshakeState {
 public:
  // Errc::unsupported_protocol for a name we do not implement; Errc::bad_key when a key the
  // pattern needs is missing. Copies the keys it is given.
  static Result<HandshakeState> start(const HandshakeOptions& options, crypto::Rng& rng);

  HandshakeState(HandshakeState&&) noexcept;
  HandshakeState& operator=(HandshakeState&&) noexcept;
  ~HandshakeState();

  // The next message with this payload. Errc::wrong_state when it is the peer's turn or the
  // handshake is over; Errc::too_large when the message would exceed kMaxMessage (both leave the
  // state as it was); Errc::bad_key for a low-order DH result (the state is then dead).
  Result<Bytes> write_message(ByteView payload);
  // Reads the peer's next message and returns its payload. Errc::handshake_failed when it does
  // not decrypt or is too short; Errc::bad_key for a low-order DH result; Errc::wrong_state out
  // of turn; Errc::too_large over kMaxMessage. After an error the state must be discarded (it
  // refuses every later call with Errc::wrong_state; an out-of-turn call changes nothing).
  Result<Bytes> read_message(ByteView message);

  bool is_finished() const noexcept;
  bool is_initiator() const noexcept;
  bool my_turn() const noexcept;
  Bytes handshake_hash() const;                     // h (HASHLEN bytes)
  std::optional<PublicKey> remote_static() const;   // once known
  // After the last message: the two CipherStates. Errc::wrong_state before, and on a second
  // call (Split() wipes the chaining key and the ephemeral private key).
  Result<TransportPair> split();

  struct Impl;

 private:
  explicit HandshakeState(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::transport::noise
