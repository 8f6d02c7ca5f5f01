// The server's JSON API (docs/protocol.md), typed, over a ServerLink. Every call turns a refusal
// into a Failure carrying the server's status, code, message and field errors, and a transport
// failure into a Failure with the link's error. Nothing here keeps state besides the token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "postern/client/outcome.h"
#include "postern/client/server_link.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/xeddsa.h"
#include "postern/protocol/keys.h"

namespace postern::client {

struct ChallengeInfo {
  std::string token;
  unsigned difficulty = 0;
  std::int64_t expires_ms = 0;
};

struct LoginInfo {
  std::int64_t account_id = 0;
  std::uint32_t device_id = 0;
  std::string token;
};

struct DeviceInfo {
  std::uint32_t id = 0;
  std::string name;
  std::uint32_t registration_id = 0;
  std::int64_t created_ms = 0;
  std::int64_t last_seen_ms = 0;
  bool current = false;
};

struct OneTimePreKey {
  std::uint32_t id = 0;
  crypto::PublicKey public_key;
};

struct SignedPreKeyUpload {
  std::uint32_t id = 0;
  crypto::PublicKey public_key;
  crypto::Signature signature{};
};

struct OutgoingEnvelope {
  std::uint32_t device_id = 0;
  std::uint32_t registration_id = 0;  // 0: not checked
  std::int32_t type = 0;
  Bytes content;
  std::string client_id;
  std::int64_t timestamp = 0;
};

struct SendResult {
  std::uint32_t device_id = 0;
  std::uint64_t server_id = 0;
  bool duplicate = false;
};

struct QueuedEnvelope {
  std::uint64_t server_id = 0;
  std::int64_t sender_account = 0;
  std::uint32_t sender_device = 0;
  std::int32_t type = 0;
  std::int64_t timestamp = 0;
  Bytes content;
  std::string client_id;
};

class ServerApi {
 public:
  explicit ServerApi(ServerLink& link) : link_(link) {}
  void set_token(std::optional<std::string> token) { token_ = std::move(token); }
  const std::optional<std::string>& token() const { return token_; }
  ServerLink& link() { return link_; }

  Outcome<ChallengeInfo> challenge();
  Outcome<std::int64_t> register_account(const std::string& email, const std::string& password,
                                         const std::string& birthdate, bool accept_terms,
                                         const std::string& pow_token, std::uint64_t nonce);
  Outcome<LoginInfo> login(const std::string& email, const std::string& password, const std::string& device_name,
                           const crypto::PublicKey& identity_key, std::uint32_t registration_id);
  Outcome<Done> logout();
  Outcome<std::vector<DeviceInfo>> devices();
  Outcome<Done> remove_device(std::uint32_t device_id);
  // Returns the device's one-time prekey count after the upload.
  Outcome<std::size_t> upload_keys(const std::optional<SignedPreKeyUpload>& signed_pre_key,
                                   const std::vector<OneTimePreKey>& one_time);
  struct KeyCount {
    std::size_t one_time = 0;
    std::optional<std::uint32_t> signed_pre_key_id;
  };
  Outcome<KeyCount> key_count();
  // Bundles of every device of the account (one one-time prekey consumed per device).
  Outcome<std::vector<protocol::PreKeyBundle>> fetch_bundles(std::int64_t account_id);
  struct DirectoryEntry {
    std::int64_t account_id = 0;
    std::vector<std::uint32_t> device_ids;
  };
  Outcome<DirectoryEntry> lookup(const std::string& email);
  // 409/410 come back as a Failure whose server_code is device_mismatch/stale_devices and whose
  // mismatch lists are in `mismatch` below (when the pointer is given).
  struct Mismatch {
    std::vector<std::uint32_t> missing, extra, stale;
  };
  Outcome<std::vector<SendResult>> send(std::int64_t account_id, const std::vector<OutgoingEnvelope>& envelopes,
                                        Mismatch* mismatch = nullptr);
  struct Page {
    std::vector<QueuedEnvelope> envelopes;
    bool more = false;
  };
  Outcome<Page> fetch_queue(std::uint64_t after, unsigned limit);
  Outcome<Done> ack(const std::vector<std::uint64_t>& server_ids);

  // A Failure from a non-2xx answer (parses the JSON error body).
  static Failure failure_from(const HttpResponse& response);

 private:
  Outcome<HttpResponse> call(const std::string& method, const std::string& target, const std::string& body,
                             bool authenticated);
  ServerLink& link_;
  std::optional<std::string> token_;
};

// Standard base64 with padding (the server's answers) and decoding of either alphabet.
std::string base64_encode(ByteView bytes);
Result<Bytes> base64_decode(std::string_view text);

}  // namespace postern::client
