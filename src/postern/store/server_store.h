// The storage interfaces of postern-server. The API layer (HTTP handlers, WebSocket delivery,
// group commit) is written against these only; SqliteServerStore is the embedded default and a
// PostgreSQL implementation can replace it without the API layer changing (docs/storage.md).
//
// Rules every implementation keeps:
// - Every call is atomic: it either happens completely or not at all. Calls that take a batch
//   (enqueue, ack_batch, add_one_time_prekeys) run the whole batch as one transaction, and return
//   only once that transaction is durable. That is what lets the server acknowledge a message
//   after enqueue() returns, and batch many senders into one commit (group commit).
// - Errors are postern::store::Errc values; "not there" is Errc::not_found, never a crash.
// - Rows are plain structs; timestamps are int64 milliseconds since the Unix epoch, supplied by
//   the caller (the store never reads a clock, so tests and replicas agree on time).
// - Validation here is of shape and size (key lengths, limits), as a last line; the API layer
//   validates the meaning (e-mail syntax, signatures) first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "postern/store/errors.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::store {

// Limits enforced by every implementation (and by the schema of the SQLite one).
inline constexpr std::size_t kMaxEmailBytes = 254;
inline constexpr std::size_t kPublicKeyBytes = 33;  // type byte 0x05 + X25519 key
inline constexpr std::size_t kSignatureBytes = 64;  // XEdDSA
inline constexpr std::size_t kTokenHashBytes = 32;  // SHA-256 of the bearer token
inline constexpr std::size_t kMaxPreKeyBatch = 100;
inline constexpr std::size_t kMaxClientIdBytes = 64;
inline constexpr std::size_t kMaxEnvelopeContentBytes = 256 * 1024;
inline constexpr std::size_t kMaxDeviceNameBytes = 256;
inline constexpr std::size_t kMaxUploadIdBytes = 128;
inline constexpr std::size_t kMaxDeviceLinkIdBytes = 64;
inline constexpr std::size_t kMaxLinkRequestBytes = 4096;  // the new device's opaque request
inline constexpr std::size_t kMaxProvisionBytes = 8192;    // the encrypted provisioning blob

// ---- rows ----

struct Account {
  std::int64_t id = 0;
  std::string email;          // as normalised by the caller
  std::string password_hash;  // Argon2id encoded string (libsodium crypto_pwhash_str)
  std::int64_t created_ms = 0;
};

struct Device {
  std::uint32_t id = 0;  // 1, 2, ... per account
  Bytes identity_key;    // 33 bytes
  std::uint32_t registration_id = 0;
  std::string name;
  std::int64_t created_ms = 0;
  std::int64_t last_seen_ms = 0;
};

struct TokenOwner {
  std::int64_t account_id = 0;
  std::uint32_t device_id = 0;
};

struct SignedPreKey {
  std::uint32_t id = 0;
  Bytes public_key;  // 33 bytes
  Bytes signature;   // 64 bytes, over public_key by the identity key
  std::int64_t timestamp_ms = 0;
};

struct OneTimePreKey {
  std::uint32_t id = 0;
  Bytes public_key;  // 33 bytes
};

struct Bundle {
  std::uint32_t device_id = 0;
  std::uint32_t registration_id = 0;
  Bytes identity_key;
  SignedPreKey signed_pre_key;
  std::optional<OneTimePreKey> one_time_pre_key;  // empty when the device has none left
  std::int64_t one_time_pre_keys_left = 0;        // after this take; clients refill below 10
};

// One envelope to one recipient device, as the sender submitted it.
struct Envelope {
  std::int64_t recipient_account = 0;
  std::uint32_t recipient_device = 0;
  std::int64_t sender_account = 0;
  std::uint32_t sender_device = 0;
  Bytes client_id;  // 1..64 bytes chosen by the sender; makes a retried send idempotent
  std::int32_t type = 0;
  std::int64_t timestamp_ms = 0;  // the sender's timestamp
  Bytes content;                  // opaque ciphertext, at most 256 KiB
  std::int64_t expires_ms = 0;    // dropped by purge_expired_messages after this
};

struct StoredEnvelope {
  std::int64_t server_id = 0;  // increases with every stored envelope; order of arrival
  Envelope envelope;
};

struct Enqueued {
  std::int64_t server_id = 0;
  // The same (sender, client id, recipient) was stored before (queued or already delivered):
  // nothing new was stored and the caller must not push it again.
  bool duplicate = false;
};

struct AckRef {
  std::int64_t account_id = 0;
  std::uint32_t device_id = 0;
  std::int64_t server_id = 0;
};

struct Upload {
  std::string id;  // unguessable, chosen by the caller (it is also the download capability)
  std::int64_t account_id = 0;
  std::int64_t length = 0;  // declared total length (Upload-Length)
  std::int64_t offset = 0;  // bytes received so far (Upload-Offset)
  bool complete = false;
  std::int64_t created_ms = 0;
  std::int64_t expires_ms = 0;
};

// A one-time link that adds a device to an account (docs/protocol.md, "Linked devices"). Its
// life: open (created by a signed-in device) -> requested (the new device left its request and the
// hash of a session token it made itself) -> approved (the device is registered, the provisioning
// blob waits) -> deleted when the new device picks the blob up, when cancelled or when expired.
enum class DeviceLinkState { open, requested, approved };

struct DeviceLink {
  std::string id;  // unguessable, chosen by the caller
  std::int64_t account_id = 0;
  DeviceLinkState state = DeviceLinkState::open;
  Bytes request;                // requested, approved: opaque, 1..kMaxLinkRequestBytes
  Bytes token_hash;             // requested, approved: SHA-256 of the new device's session token
  Bytes provision;              // approved: opaque, 1..kMaxProvisionBytes
  std::uint32_t device_id = 0;  // approved: the device the approval registered
  std::int64_t created_ms = 0;
  std::int64_t expires_ms = 0;  // gone (not_found everywhere) at or after this
};

// ---- interfaces ----

class AccountStore {
 public:
  virtual ~AccountStore() = default;
  // Errc::email_taken when the e-mail exists, compared case-insensitively (the caller normalises;
  // the store enforces it again). Returns the new account id; ids are never reused.
  virtual Result<std::int64_t> create_account(std::string_view email, std::string_view password_hash,
                                              std::int64_t created_ms) = 0;
  virtual Result<Account> find_account_by_email(std::string_view email) = 0;
  virtual Result<Account> get_account(std::int64_t account_id) = 0;
  virtual Status set_password_hash(std::int64_t account_id, std::string_view password_hash) = 0;
  // Deletes the account and everything it owns, in one transaction: its devices, their tokens,
  // keys and queued messages (the messages addressed TO it), its upload records. Messages it
  // SENT that still wait in other accounts' queues are kept: they were accepted for their
  // recipients, and account ids are never reused, so they cannot be mistaken for a newer
  // account's. Returns the ids of the uploads whose records went, so the caller deletes the files.
  virtual Result<std::vector<std::string>> delete_account(std::int64_t account_id) = 0;
};

class DeviceStore {
 public:
  virtual ~DeviceStore() = default;
  // Gives the device the lowest free id, starting at 1 (as Signal does). Errc::not_found when the
  // account does not exist, Errc::invalid_argument for a key that is not 33 bytes.
  virtual Result<std::uint32_t> add_device(std::int64_t account_id, ByteView identity_key,
                                           std::uint32_t registration_id, std::string_view name,
                                           std::int64_t now_ms) = 0;
  virtual Result<Device> get_device(std::int64_t account_id, std::uint32_t device_id) = 0;
  // In device-id order.
  virtual Result<std::vector<Device>> list_devices(std::int64_t account_id) = 0;
  // Removes the device with its tokens, keys and queue. Errc::not_found when absent.
  virtual Status remove_device(std::int64_t account_id, std::uint32_t device_id) = 0;
  virtual Status touch_device(std::int64_t account_id, std::uint32_t device_id, std::int64_t now_ms) = 0;
};

class TokenStore {
 public:
  virtual ~TokenStore() = default;
  // token_hash: SHA-256 of the bearer token (the token itself is never stored).
  virtual Status put_token(ByteView token_hash, std::int64_t account_id, std::uint32_t device_id,
                           std::int64_t created_ms) = 0;
  virtual Result<TokenOwner> find_token(ByteView token_hash) = 0;
  // false when there was no such token.
  virtual Result<bool> delete_token(ByteView token_hash) = 0;
  // Returns how many were deleted.
  virtual Result<std::int64_t> delete_device_tokens(std::int64_t account_id, std::uint32_t device_id) = 0;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;
  // Sets or rotates the device's signed prekey (the API layer has verified the signature).
  virtual Status set_signed_prekey(std::int64_t account_id, std::uint32_t device_id,
                                   const SignedPreKey& key) = 0;
  virtual Result<SignedPreKey> get_signed_prekey(std::int64_t account_id, std::uint32_t device_id) = 0;
  // At most kMaxPreKeyBatch keys (Errc::too_large), all or none stored. The same id twice in one
  // batch is Errc::invalid_argument (a client bug); an id already stored is replaced, so a
  // retried upload is harmless and the newest public key for an id wins.
  virtual Status add_one_time_prekeys(std::int64_t account_id, std::uint32_t device_id,
                                      std::span<const OneTimePreKey> keys) = 0;
  // Atomically: the signed prekey plus the one-time prekey with the lowest id, which is deleted,
  // so no two callers ever receive the same one; the signed prekey alone when none is left.
  // Errc::not_found when the device does not exist or has no signed prekey.
  virtual Result<Bundle> take_bundle(std::int64_t account_id, std::uint32_t device_id) = 0;
  // take_bundle for every device of the account that has a signed prekey, in one transaction.
  virtual Result<std::vector<Bundle>> take_bundles(std::int64_t account_id) = 0;
  virtual Result<std::int64_t> one_time_prekey_count(std::int64_t account_id, std::uint32_t device_id) = 0;
};

class MessageQueue {
 public:
  virtual ~MessageQueue() = default;
  // Stores the whole batch in one durable transaction (the group commit) and returns one result
  // per envelope, in batch order. Validation happens first: a client id outside 1..64 bytes is
  // Errc::invalid_argument, content above 256 KiB is Errc::too_large, a recipient device that does
  // not exist is Errc::not_found; any of them rejects the whole batch, so the caller validates per
  // request before batching. A retry with the same (sender account, sender device, client id,
  // recipient account, recipient device) is stored once; the retry gets the first server id with
  // duplicate=true, also after the first was acknowledged, until its expiry.
  virtual Result<std::vector<Enqueued>> enqueue(std::span<const Envelope> batch) = 0;
  // Up to `limit` envelopes for the device with server id > after_id, in server-id order (which
  // is the order they were stored, so each sender device's order is kept).
  virtual Result<std::vector<StoredEnvelope>> fetch(std::int64_t account_id, std::uint32_t device_id,
                                                    std::int64_t after_id, std::size_t limit) = 0;
  // Deletes acknowledged envelopes (only those addressed to the given device: a device cannot
  // delete another's). One transaction. Returns how many were deleted; unknown ids are skipped.
  // The one exception to "durable on return": an implementation may commit acknowledgements
  // without waiting for the disk, because losing one in a crash only delivers that envelope again
  // (clients drop repeats by server id); they become durable with the next durable commit.
  virtual Result<std::int64_t> ack_batch(std::span<const AckRef> acks) = 0;
  Result<bool> ack(std::int64_t account_id, std::uint32_t device_id, std::int64_t server_id) {
    const AckRef ref{account_id, device_id, server_id};
    POSTERN_TRY(std::int64_t n, ack_batch(std::span<const AckRef>(&ref, 1)));
    return n == 1;
  }
  virtual Result<std::int64_t> queued_count(std::int64_t account_id, std::uint32_t device_id) = 0;
  // Deletes envelopes whose expiry is at or before now_ms; returns how many.
  virtual Result<std::int64_t> purge_expired_messages(std::int64_t now_ms) = 0;
};

class ChallengeStore {
 public:
  virtual ~ChallengeStore() = default;
  // Records a proof-of-work challenge as spent until expires_ms. true: it was unused and is now
  // spent; false: it had been used already (a replay).
  virtual Result<bool> mark_challenge_used(ByteView challenge_id, std::int64_t expires_ms) = 0;
  // Forgets spent challenges whose expiry is at or before now_ms (they fail the expiry check
  // anyway). Returns how many.
  virtual Result<std::int64_t> purge_expired_challenges(std::int64_t now_ms) = 0;
};

class AttachmentStore {
 public:
  virtual ~AttachmentStore() = default;
  // Errc::constraint when the id exists, Errc::not_found when the account does not.
  virtual Status create_upload(std::string_view upload_id, std::int64_t account_id, std::int64_t length,
                               std::int64_t created_ms, std::int64_t expires_ms) = 0;
  virtual Result<Upload> get_upload(std::string_view upload_id) = 0;
  // The offset only moves forward and never past the declared length (Errc::invalid_argument),
  // and not once the upload is complete.
  virtual Status set_upload_offset(std::string_view upload_id, std::int64_t offset) = 0;
  // Only when offset == length (Errc::invalid_argument otherwise).
  virtual Status complete_upload(std::string_view upload_id) = 0;
  // false when there was no such upload.
  virtual Result<bool> delete_upload(std::string_view upload_id) = 0;
  // Sum of the declared lengths of the account's uploads, complete or not: a started upload
  // reserves its whole length against the quota, so parallel uploads cannot overshoot it.
  virtual Result<std::int64_t> account_upload_bytes(std::int64_t account_id) = 0;
  // Uploads whose expiry is at or before now_ms; the caller deletes each file, then the record.
  virtual Result<std::vector<Upload>> list_expired_uploads(std::int64_t now_ms, std::size_t limit) = 0;
};

// Links belong to the account (deleting it deletes them); removing the device that created one
// does not matter. Every method takes `now_ms` where expiry matters: a link whose expires_ms is at
// or before it counts as absent (Errc::not_found) even before purge_expired_device_links runs.
class DeviceLinkStore {
 public:
  virtual ~DeviceLinkStore() = default;
  // Creates an open link. Errc::too_large when the account already has `max_live` links not
  // expired at created_ms (whatever their state); Errc::not_found when the account does not
  // exist; Errc::constraint when the id exists; Errc::invalid_argument for an empty or long id.
  virtual Status create_device_link(std::string_view link_id, std::int64_t account_id, std::int64_t created_ms,
                                    std::int64_t expires_ms, std::size_t max_live) = 0;
  virtual Result<DeviceLink> get_device_link(std::string_view link_id, std::int64_t now_ms) = 0;
  // open -> requested; the first request wins. Errc::constraint when the link already has one,
  // Errc::too_large for a request over kMaxLinkRequestBytes, Errc::invalid_argument for an empty
  // request or a token hash that is not kTokenHashBytes.
  virtual Status request_device_link(std::string_view link_id, ByteView request, ByteView token_hash,
                                     std::int64_t now_ms) = 0;
  // requested -> approved, in one transaction: adds the device to the account as add_device does
  // (lowest free id), makes the request's token hash that device's session token (as put_token),
  // keeps the provisioning blob and sets the link's expiry to `expires_ms` (the time left for the
  // pickup). Returns the new device id. Errc::not_found when the link is absent, expired or
  // another account's; Errc::constraint when it is not in the requested state or the token hash
  // is already a session; Errc::too_large for a blob over kMaxProvisionBytes;
  // Errc::invalid_argument as add_device, or for an empty blob.
  virtual Result<std::uint32_t> approve_device_link(std::string_view link_id, std::int64_t account_id,
                                                    ByteView identity_key, std::uint32_t registration_id,
                                                    std::string_view name, ByteView provision, std::int64_t now_ms,
                                                    std::int64_t expires_ms) = 0;
  // Deletes an approved link whose token hash is `token_hash` and returns it (with the blob): a
  // blob is handed out once. Errc::not_found otherwise (absent, expired, not approved, other hash).
  virtual Result<DeviceLink> take_device_link(std::string_view link_id, ByteView token_hash, std::int64_t now_ms) = 0;
  // Deletes the account's link, whatever its state. false when it has no such link (or it expired).
  virtual Result<bool> delete_device_link(std::string_view link_id, std::int64_t account_id, std::int64_t now_ms) = 0;
  // Deletes links whose expiry is at or before now_ms; returns how many.
  virtual Result<std::int64_t> purge_expired_device_links(std::int64_t now_ms) = 0;
};

// Everything the server needs, as one object to pass around.
class ServerStore : public AccountStore,
                    public DeviceStore,
                    public TokenStore,
                    public KeyStore,
                    public MessageQueue,
                    public ChallengeStore,
                    public AttachmentStore,
                    public DeviceLinkStore {};

}  // namespace postern::store
