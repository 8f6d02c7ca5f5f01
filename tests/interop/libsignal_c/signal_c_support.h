// Support code that makes Debian's libsignal-protocol-c 2.3.3 usable as an independent Signal v3
// implementation for interop tests and benchmarks.
//
// The Debian package ships the protocol logic only. This library adds what an application must supply:
//   - a crypto provider over OpenSSL 3 (random, HMAC-SHA256, SHA-512, AES-CBC/PKCS#7 and AES-CTR). The
//     EVP_MAC / EVP_MD / EVP_CIPHER objects are fetched once per process and contexts are pooled, because
//     implicit fetches in OpenSSL 3 cost more than the primitives themselves at these message sizes;
//   - in-memory stores (session, pre key, signed pre key, identity, sender key) that hold SERIALIZED records
//     (the bytes libsignal hands to a database), so every operation pays the same (de)serialization a
//     messenger would. The identity store trusts on first use and remembers identities;
//   - SignalCContext: one local party (signal_context + store context + identity key pair + registration
//     id + a recursive lock) with one call per protocol operation.
//
// Errors are values: every operation returns 0 (or a documented non-negative value) on success and a
// negative libsignal code (SG_ERR_*, see <signal_protocol.h>) on failure. Nothing on the data path throws.
// Note: pooled OpenSSL contexts keep the last key's state until reused; fine for tests and benchmarks,
// not meant for production.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// libsignal-protocol-c handles, for callers that want the raw C API (declared in <signal_protocol.h>).
struct signal_context;
struct signal_protocol_store_context;
struct signal_crypto_provider;

namespace postern::interop::signal_c {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// Message types as returned by encrypt() and expected by decrypt() (libsignal-c's CIPHERTEXT_*_TYPE).
inline constexpr int kSignalMessageType = 2;        // SignalMessage
inline constexpr int kPreKeySignalMessageType = 3;  // PreKeySignalMessage

// A pre key bundle as a server would hand it out. Public keys are 33 bytes (0x05 || X25519 u).
struct PreKeyBundle {
  std::uint32_t registration_id = 0;
  std::int32_t device_id = 0;
  Bytes identity_public;
  std::uint32_t signed_prekey_id = 0;
  Bytes signed_prekey_public;
  Bytes signed_prekey_signature;           // 64 bytes
  std::optional<std::uint32_t> prekey_id;  // one-time pre key; absent for a 3-DH session
  Bytes prekey_public;                     // empty when prekey_id is absent
};

struct Ciphertext {
  int type = 0;  // kSignalMessageType or kPreKeySignalMessageType
  Bytes wire;
};

struct Fingerprint {
  std::string displayable;  // 60 digits
  Bytes scannable;          // serialized CombinedFingerprints
};

// The OpenSSL 3 provider, shared by all contexts of the process. Returns nullptr if OpenSSL could not
// fetch the algorithms (then SignalCContext::create fails with SG_ERR_UNKNOWN).
const signal_crypto_provider* openssl_crypto_provider();

// "SG_ERR_DUPLICATE_MESSAGE" etc. for a libsignal error code; "error" for codes it does not know.
std::string_view error_name(int code);

// One local party: identity key pair, registration id, stores, and a libsignal context locked by a
// recursive mutex. Not copyable or movable (libsignal keeps pointers into it). All methods may be called
// from several threads; libsignal serializes them on the party's lock.
class SignalCContext {
 public:
  // Creates a party with a fresh identity key pair and registration id. `name`/`device_id` is the party's
  // own address (used as the sender in its group sender keys).
  [[nodiscard]] static int create(std::string_view name, std::int32_t device_id,
                                  std::unique_ptr<SignalCContext>& out);
  ~SignalCContext();
  SignalCContext(const SignalCContext&) = delete;
  SignalCContext& operator=(const SignalCContext&) = delete;

  const std::string& name() const;
  std::int32_t device_id() const;
  std::uint32_t registration_id() const;
  const Bytes& identity_public() const;  // 33 bytes

  // Raw handles for direct use of the C API. Owned by this object.
  signal_context* global_context() const;
  signal_protocol_store_context* store_context() const;

  // X3DH, responder side: generates and stores a signed pre key (and a one-time pre key if `prekey_id`),
  // and fills `out` with the public bundle.
  [[nodiscard]] int generate_bundle(std::uint32_t signed_prekey_id, std::optional<std::uint32_t> prekey_id,
                                    PreKeyBundle& out);
  // X3DH, initiator side: verifies the bundle's signature (SG_ERR_INVALID_KEY if bad or not 64 bytes) and
  // stores a new session with peer_name/peer_device.
  [[nodiscard]] int process_bundle(std::string_view peer_name, std::int32_t peer_device,
                                   const PreKeyBundle& bundle);

  [[nodiscard]] int encrypt(std::string_view peer_name, std::int32_t peer_device, ByteView plaintext,
                            Ciphertext& out);
  // `type` is kSignalMessageType or kPreKeySignalMessageType (else SG_ERR_INVAL). A failed decrypt leaves
  // the stored session unchanged.
  [[nodiscard]] int decrypt(std::string_view peer_name, std::int32_t peer_device, int type, ByteView wire,
                            Bytes& plaintext);

  // Sender Keys. create_skdm creates (or reuses) our sender key for `group` and returns the serialized
  // SenderKeyDistributionMessage, which must travel to the members inside 1:1 sessions.
  [[nodiscard]] int create_skdm(std::string_view group, Bytes& skdm);
  [[nodiscard]] int process_skdm(std::string_view group, std::string_view sender_name,
                                 std::int32_t sender_device, ByteView skdm);
  [[nodiscard]] int group_encrypt(std::string_view group, ByteView plaintext, Bytes& wire);
  [[nodiscard]] int group_decrypt(std::string_view group, std::string_view sender_name,
                                  std::int32_t sender_device, ByteView wire, Bytes& plaintext);

  // Signature by the identity private key (curve_calculate_signature), 64 bytes.
  [[nodiscard]] int sign(ByteView message, Bytes& signature);
  // 1 if valid, 0 if not; negative only for a malformed key (not 33 bytes / 0x05) or signature length.
  [[nodiscard]] int verify(ByteView public_key, ByteView message, ByteView signature) const;

  // Safety number between our identity and `remote_identity_public`. `scannable_version` is 0 or 1;
  // `iterations` >= 1 (5200 in Signal). Ids must not contain NUL.
  [[nodiscard]] int fingerprint(int iterations, int scannable_version, const std::string& local_id,
                                const std::string& remote_id, ByteView remote_identity_public,
                                Fingerprint& out) const;

  // Size of the stored serialized session record with that peer (0 if none), e.g. for benchmark reports.
  std::size_t session_record_size(std::string_view peer_name, std::int32_t peer_device) const;

  struct State;  // implementation detail (stores, handles); public only for the C callbacks

 private:
  explicit SignalCContext(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace postern::interop::signal_c
