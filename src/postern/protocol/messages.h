// The four Signal v3 wire messages. Each is created from its fields (and serialised once) or
// parsed from received bytes; a parsed message keeps the exact bytes it came in, so the MAC and
// signature are checked over what was received, never over a re-encoding.
//
//   SignalMessage               = 0x33 || protobuf || MAC[8]
//   PreKeySignalMessage         = 0x33 || protobuf (carries a complete SignalMessage)
//   SenderKeyMessage            = 0x33 || protobuf || signature[64]
//   SenderKeyDistributionMessage = 0x33 || protobuf
#pragma once

#include <cstdint>
#include <optional>

#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/crypto/xeddsa.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol {

using crypto::PublicKey;

inline constexpr std::uint8_t kCurrentVersion = 3;
inline constexpr std::size_t kMacSize = 8;
// Largest wire message accepted by a parser: far above any real message (attachments travel as
// separate blobs), and small enough that a hostile peer cannot make us allocate much.
inline constexpr std::size_t kMaxMessageSize = 1 << 20;

// Application-level type numbers (libsignal-protocol-c's; also the interop line protocol's).
enum class CiphertextType : std::uint32_t {
  signal = 2,
  prekey = 3,
  sender_key = 4,
  sender_key_distribution = 5,
};

class SignalMessage {
 public:
  static SignalMessage create(const PublicKey& ratchet_key, std::uint32_t counter,
                              std::uint32_t previous_counter, ByteView ciphertext, ByteView mac_key,
                              const PublicKey& sender_identity, const PublicKey& receiver_identity);
  static Result<SignalMessage> parse(ByteView serialized);

  // MAC over sender identity (33) || receiver identity (33) || the received bytes before the MAC.
  bool verify_mac(const PublicKey& sender_identity, const PublicKey& receiver_identity,
                  ByteView mac_key) const;

  std::uint8_t version() const { return version_; }
  const PublicKey& ratchet_key() const { return ratchet_key_; }
  std::uint32_t counter() const { return counter_; }
  std::uint32_t previous_counter() const { return previous_counter_; }
  ByteView ciphertext() const { return ciphertext_; }
  const Bytes& serialized() const { return serialized_; }
  Bytes take_serialized() && { return std::move(serialized_); }

 private:
  std::uint8_t version_ = kCurrentVersion;
  PublicKey ratchet_key_;
  std::uint32_t counter_ = 0;
  std::uint32_t previous_counter_ = 0;
  Bytes ciphertext_;
  Bytes serialized_;
};

class PreKeySignalMessage {
 public:
  static PreKeySignalMessage create(std::uint32_t registration_id, std::optional<std::uint32_t> pre_key_id,
                                    std::uint32_t signed_pre_key_id, const PublicKey& base_key,
                                    const PublicKey& identity_key, SignalMessage message);
  static Result<PreKeySignalMessage> parse(ByteView serialized);

  std::uint8_t version() const { return version_; }
  std::uint32_t registration_id() const { return registration_id_; }
  std::optional<std::uint32_t> pre_key_id() const { return pre_key_id_; }
  std::uint32_t signed_pre_key_id() const { return signed_pre_key_id_; }
  const PublicKey& base_key() const { return base_key_; }
  const PublicKey& identity_key() const { return identity_key_; }
  const SignalMessage& message() const { return message_; }
  const Bytes& serialized() const { return serialized_; }
  Bytes take_serialized() && { return std::move(serialized_); }

 private:
  std::uint8_t version_ = kCurrentVersion;
  std::uint32_t registration_id_ = 0;
  std::optional<std::uint32_t> pre_key_id_;
  std::uint32_t signed_pre_key_id_ = 0;
  PublicKey base_key_;
  PublicKey identity_key_;
  SignalMessage message_;
  Bytes serialized_;
};

class SenderKeyMessage {
 public:
  static SenderKeyMessage create(std::uint32_t key_id, std::uint32_t iteration, ByteView ciphertext,
                                 const crypto::XeddsaSigner& signer, crypto::Rng& rng);
  static Result<SenderKeyMessage> parse(ByteView serialized);

  // Signature over 0x33 || protobuf, with the Edwards y of the sender's signing key.
  bool verify_signature(const std::array<std::uint8_t, 32>& signing_edwards_y) const;

  std::uint32_t key_id() const { return key_id_; }
  std::uint32_t iteration() const { return iteration_; }
  ByteView ciphertext() const { return ciphertext_; }
  const Bytes& serialized() const { return serialized_; }

 private:
  std::uint32_t key_id_ = 0;
  std::uint32_t iteration_ = 0;
  Bytes ciphertext_;
  Bytes serialized_;
};

class SenderKeyDistributionMessage {
 public:
  static SenderKeyDistributionMessage create(std::uint32_t key_id, std::uint32_t iteration,
                                             ByteView chain_key, const PublicKey& signing_key);
  static Result<SenderKeyDistributionMessage> parse(ByteView serialized);

  std::uint32_t key_id() const { return key_id_; }
  std::uint32_t iteration() const { return iteration_; }
  ByteView chain_key() const { return chain_key_; }
  const PublicKey& signing_key() const { return signing_key_; }
  const Bytes& serialized() const { return serialized_; }

 private:
  std::uint32_t key_id_ = 0;
  std::uint32_t iteration_ = 0;
  Bytes chain_key_;
  PublicKey signing_key_;
  Bytes serialized_;
};

}  // namespace postern::protocol
