// The messenger: everything a user does, over a profile's LocalStore and a ServerLink.
// Boost-free and synchronous: the CLI calls it directly; the daemon runs receive() on one thread
// and serves JSON-RPC calls on others (calls are serialised by an internal mutex, which receive()
// releases between envelopes).
//
// Guarantees (docs/client.md):
// - Sending: the ratchet step and the encrypted envelopes are committed locally (outbox) before
//   anything leaves; a send interrupted by a crash is resent with the same client ids on the
//   next start, which the server stores once (idempotent retries).
// - Receiving: an envelope is decrypted, its effects stored and its server id recorded in ONE
//   local transaction; only after the commit is it acknowledged to the server. A crash before
//   the commit means the server sends it again; a crash after it means the redelivery is
//   recognised by its server id and only acknowledged. Nothing is lost or shown twice.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "postern/client/invite.h"
#include "postern/client/local_store.h"
#include "postern/client/outcome.h"
#include "postern/client/server_api.h"
#include "postern/client/server_link.h"
#include "postern/crypto/random.h"
#include "postern/util/clock.h"

namespace postern::client {

using LinkFactory = std::function<Result<std::unique_ptr<ServerLink>>(const Invite&)>;

struct MessengerConfig {
  std::filesystem::path profile_dir;
  OpenOptions store;
  LinkFactory link_factory;
  std::string device_name = "postern";
  std::int64_t signed_pre_key_rotation_ms = 2LL * 24 * 3600 * 1000;  // every 2 days
  std::int64_t signed_pre_key_keep_ms = 30LL * 24 * 3600 * 1000;     // old ones kept for late messages
  std::size_t pre_key_low_water = 10;   // refill when the server holds fewer
  std::size_t pre_key_batch = 100;      // keys per upload (server maximum)
  IdentityChangePolicy identity_policy = IdentityChangePolicy::block_until_accepted;
  // Largest attachment downloaded automatically on receive (larger ones stay pending).
  std::uint64_t auto_download_max_bytes = 2ULL << 30;
};

enum class MessageStatus { sending = 0, sent = 1, delivered = 2, read = 3, failed = 4, received = 10 };
const char* to_string(MessageStatus status);

struct Contact {
  std::int64_t account_id = 0;
  std::string email;
  bool verified = false;
  bool identity_blocked = false;  // a changed key waits for acceptance
};

struct AttachmentView {
  std::int64_t id = 0;
  std::string path;  // where the decrypted file is (empty until downloaded)
  std::uint64_t size = 0;
  std::string mime;
  std::string sha256;  // hex, of the decrypted file
  std::string file_name;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uint32_t duration_ms = 0;
  std::string thumbnail_path;  // the thumbnail written next to the file, if any
  std::string caption;
  std::string state;  // "saved", "pending", "failed"
};

struct MessageView {
  std::int64_t id = 0;
  std::string conversation;  // "u:<account>" or "g:<group hex>"
  std::string peer;          // the contact's e-mail (1:1) or the group's name
  bool outgoing = false;
  std::int64_t sender_account = 0;
  std::string sender_email;
  std::uint32_t sender_device = 0;
  std::int64_t timestamp = 0;  // the sender's timestamp (ms): the message id for receipts
  std::int64_t received_ms = 0;
  std::string kind;  // text, image, video, file
  std::string text;
  std::vector<AttachmentView> attachments;
  MessageStatus status = MessageStatus::received;
  std::string group_id;    // hex, empty for 1:1
  std::string group_name;
  std::uint32_t expire_timer_s = 0;
  std::optional<std::int64_t> expires_at_ms;
};

struct Event {
  enum class Kind {
    message,           // a new message (incoming, or sent by another own device: outgoing = true)
    receipt,           // a delivery or read receipt for our messages
    typing,            // a contact started or stopped typing
    identity_changed,  // a contact's safety number changed
    group_updated,     // a group's name or members changed
    timer_changed,     // a conversation's disappearing-message timer changed
    undecryptable,     // an envelope that could not be decrypted (dropped)
  };
  Kind kind = Kind::message;
  MessageView message;                  // message
  std::int64_t from_account = 0;        // receipt, typing, identity_changed, undecryptable
  std::string from_email;
  std::string receipt_type;             // "delivery" / "read"
  std::vector<std::int64_t> timestamps; // receipt: the messages it covers
  bool typing_started = false;
  std::string group_id;                 // typing in a group, group_updated
  std::string group_name;
  std::uint32_t expire_timer_s = 0;     // timer_changed
  std::string detail;                   // undecryptable: why
};

using EventHandler = std::function<void(const Event&)>;
// Progress of an upload or download: bytes done and total.
using ProgressHandler = std::function<void(std::uint64_t done, std::uint64_t total)>;

struct Target {
  std::string email;  // 1:1
  std::string group;  // a group by name or id (hex)
  bool is_group() const { return !group.empty(); }
};

struct RegisterForm {
  std::string email;
  std::string password;
  std::string birthdate;
  bool accept_terms = false;
};

struct ReceiveOptions {
  // Stop after this long without any envelope once the queue is drained (QueueEmpty); 0: return
  // as soon as the queue is drained; negative: run until `stop` becomes true.
  std::chrono::milliseconds idle_timeout{5000};
  const std::atomic<bool>* stop = nullptr;
  bool send_delivery_receipts = true;
  bool mark_read = false;  // shown messages count as read (read receipts, timers start)
  // Fault injection for crash-safety tests (the CLI sets it from POSTERN_FAULT_INJECTION): called
  // after an envelope's effects are committed, before they are shown and acknowledged.
  std::function<void()> after_commit;
};

struct ReceiveSummary {
  std::size_t envelopes = 0;
  std::size_t duplicates = 0;  // redelivered envelopes already processed before
  std::optional<std::uint16_t> close_code;
};

struct SafetyNumber {
  std::string digits;  // 60 digits in 12 groups of 5
  Bytes scannable;     // for the QR code
  bool verified = false;
  bool changed = false;  // the contact's key changed and is not yet accepted
  std::int64_t contact_account = 0;
};

// A link offered by this (signed-in) device to a new device (Messenger::offer_link).
struct LinkOffer {
  std::string link_id;
  std::string code;  // the invite with &link=ID.SECRET: typed or scanned on the new device
  std::int64_t expires_ms = 0;
};

// A new device that answered a link offer, verified with the offer's secret.
struct LinkRequest {
  std::string device_name;
  std::uint32_t registration_id = 0;
  Bytes ephemeral_key;  // 33 bytes
};

struct GroupView {
  std::string id;  // hex
  std::string name;
  std::vector<std::pair<std::int64_t, std::string>> members;  // account id, e-mail (if known)
  std::uint64_t revision = 0;
  bool active = true;
};

class Messenger {
 public:
  static Outcome<std::unique_ptr<Messenger>> open(MessengerConfig config, crypto::Rng& rng, const Clock& clock);
  ~Messenger();

  // ---- server and account ----
  Outcome<Done> join(std::string_view invite_text);
  std::optional<Invite> invite() const;
  // Checks the form locally (the same rules as the server), solves the proof of work (progress
  // is called with the attempts so far; return false to cancel), registers, and logs this profile
  // in as the account's first device.
  Outcome<Done> register_account(const RegisterForm& form, const std::function<bool(std::uint64_t)>& pow_progress);
  Outcome<Done> login(const std::string& email, const std::string& password);
  Outcome<Done> logout();
  bool logged_in() const;
  std::int64_t account_id() const;
  std::uint32_t device_id() const;
  std::string email() const;
  // Refills one-time prekeys below the low-water mark and rotates the signed prekey when due.
  Outcome<Done> maintain_keys();

  // ---- contacts ----
  Outcome<Contact> add_contact(const std::string& email);
  Outcome<std::vector<Contact>> contacts();

  // ---- messages ----
  Outcome<MessageView> send_text(const Target& to, const std::string& text);
  Outcome<MessageView> send_file(const Target& to, const std::filesystem::path& file, const std::string& caption,
                                 const ProgressHandler& progress);
  Outcome<Done> send_typing(const Target& to, bool started);
  Outcome<ReceiveSummary> receive(const ReceiveOptions& options, const EventHandler& on_event);
  Outcome<std::vector<MessageView>> history(const Target& with, std::size_t limit);
  // Marks every unread incoming message of the conversation read: read receipts go to the
  // senders, disappearing timers start.
  Outcome<std::size_t> mark_read(const Target& with);
  // Resends what a crash left in the outbox (called by open(), receive() and the sends).
  Outcome<std::size_t> flush_outbox();

  // ---- disappearing messages ----
  Outcome<Done> set_expire_timer(const Target& conversation, std::uint32_t seconds);
  // Deletes messages (and their files) whose timer ran out; returns how many.
  Outcome<std::size_t> purge_expired();

  // ---- groups ----
  Outcome<GroupView> create_group(const std::string& name, const std::vector<std::string>& member_emails);
  Outcome<GroupView> add_members(const std::string& group, const std::vector<std::string>& emails);
  Outcome<GroupView> remove_members(const std::string& group, const std::vector<std::string>& emails);
  Outcome<GroupView> rename_group(const std::string& group, const std::string& new_name);
  Outcome<std::vector<GroupView>> groups();

  // ---- devices ----
  Outcome<std::vector<DeviceInfo>> devices();
  Outcome<Done> remove_device(std::uint32_t device_id);
  // Linked devices (docs/client.md). On the signed-in device: offer a one-time link, wait for a
  // new device's request (checked with the secret in the code, which the server never sees), and
  // approve it: the account's identity key goes to the new device end-to-end encrypted.
  Outcome<LinkOffer> offer_link();
  // std::nullopt while nobody has answered yet.
  Outcome<std::optional<LinkRequest>> poll_link(const LinkOffer& offer);
  Outcome<std::uint32_t> approve_link(const LinkOffer& offer, const LinkRequest& request);
  // On the new device (an empty profile): join the server in the code and become a device of the
  // account once the other device approves. `wait` bounds the wait; `stop` cancels it.
  Outcome<Done> accept_link(const std::string& code, const std::string& device_name, std::chrono::milliseconds wait,
                            const std::atomic<bool>* stop);

  // ---- safety numbers ----
  Outcome<SafetyNumber> safety_number(const std::string& email);
  Outcome<Done> accept_identity(const std::string& email);
  Outcome<Done> set_verified(const std::string& email, bool verified);

  LocalStore& store();
  const MessengerConfig& config() const;

  // Opaque: defined in detail/messenger_impl.h for the implementation files only.
  struct Impl;

 private:
  explicit Messenger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::client
