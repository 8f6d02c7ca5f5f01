// Private state and helpers of Messenger, shared by its implementation files
// (messenger.cpp: account, keys, contacts, devices, safety numbers; messaging.cpp: sending,
// receiving, history, receipts, timers; groups.cpp; transfer.cpp: attachments).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "postern/client/content.h"
#include "postern/client/messenger.h"
#include "postern/client/server_api.h"
#include "postern/protocol/store.h"

namespace postern::client {

namespace settings {
inline constexpr std::string_view kInvite = "invite";
inline constexpr std::string_view kAccountId = "account_id";
inline constexpr std::string_view kDeviceId = "device_id";
inline constexpr std::string_view kToken = "token";
inline constexpr std::string_view kEmail = "email";
inline constexpr std::string_view kNextPreKeyId = "next_pre_key_id";
inline constexpr std::string_view kNextSignedPreKeyId = "next_signed_pre_key_id";
inline constexpr std::string_view kOwnDevices = "own_devices";  // the account's other devices, "1,3"
}  // namespace settings

// A delivered envelope, whatever carried it (WebSocket push or HTTP fetch).
using InboundEnvelope = QueuedEnvelope;

// Work left for after the local commit of a received envelope.
struct AfterCommit {
  std::vector<Event> events;
  std::vector<std::int64_t> downloads;          // attachment row ids to fetch
  std::map<std::int64_t, std::vector<std::int64_t>> delivery_receipts;  // sender -> timestamps
  std::set<std::string> rotate_groups;           // groups whose sender key must be rotated
  std::map<std::int64_t, std::string> learn;     // senders' claimed e-mail addresses, to check
};

struct Messenger::Impl {
  Impl(MessengerConfig c, crypto::Rng& r, const Clock& k) : config(std::move(c)), rng(r), clock(k) {}

  MessengerConfig config;
  crypto::Rng& rng;
  const Clock& clock;
  std::unique_ptr<LocalStore> store;
  std::unique_ptr<ServerLink> link;
  std::unique_ptr<ServerApi> api;
  std::optional<Invite> invite;
  std::int64_t account_id = 0;
  std::uint32_t device_id = 0;
  std::string email;
  std::recursive_mutex mutex;
  std::int64_t outbox_seq = 0;

  // ---- messenger.cpp ----
  Outcome<Done> load_settings();
  Outcome<Done> connect_link();  // link + api from the stored invite
  Outcome<Done> require_login();
  protocol::SessionStores stores() { return {*store, *store, *store, *store}; }
  static std::string name_of(std::int64_t account) { return std::to_string(account); }
  Outcome<Done> upload_new_pre_keys(std::size_t count, bool with_signed);
  Outcome<Done> finish_login(const LoginInfo& info, const std::string& normalized_email);
  Outcome<Done> finish_login_with_password(const std::string& email, const std::string& password);
  // The contact for an e-mail: from the local table, else the server directory (and stored).
  Outcome<Contact> contact_by_email(const std::string& email);
  std::optional<std::string> email_of(std::int64_t account);
  // Records a contact learned from a message (sender_email claimed in the content), checked
  // against the directory so a sender cannot name itself after someone else.
  void learn_contact(std::int64_t account, const std::string& claimed_email);
  Status save_contact(std::int64_t account, const std::string& normalized_email);
  std::vector<std::uint32_t> own_other_devices();
  Status set_own_other_devices(const std::vector<std::uint32_t>& ids);

  // ---- messaging.cpp ----
  // Establishes sessions from fetched bundles for the listed devices (all when empty), checking
  // identity changes. Errc::untrusted_identity (message names the contact) when blocked.
  Outcome<Done> fetch_sessions(std::int64_t account, const std::vector<std::uint32_t>& only);
  // A new device of a known account whose key matches none of the account's known keys is
  // recorded as an identity change (blocked until accepted under the default policy).
  Result<bool> note_new_device_identity(const protocol::ProtocolAddress& address, const crypto::PublicKey& key);
  // Encrypts the padded content for every device of the account that has a session (minus this
  // device), commits the ratchet state and an outbox row together, then sends; retries device
  // mismatches. message_id links the outbox row to a history row (status updates).
  Outcome<Done> send_to_account(std::int64_t account, ByteView padded, std::int64_t timestamp,
                                std::optional<std::int64_t> message_id, std::int32_t forced_type = 0);
  Outcome<Done> send_outbox_row(const std::string& id);
  Outcome<Done> send_content_to_account(std::int64_t account, const content::v1::Content& c, std::int64_t timestamp,
                                        std::optional<std::int64_t> message_id);
  // Sent-message sync to this account's other devices.
  void sync_sent(std::int64_t destination, const std::string& destination_email, const content::v1::DataMessage& dm);
  Outcome<std::int64_t> store_outgoing(const std::string& conversation, std::int64_t timestamp, const std::string& kind,
                                       const content::v1::DataMessage& dm, const std::vector<std::int64_t>& recipients);
  Status set_message_status(std::int64_t message_id, MessageStatus status);
  Outcome<MessageView> message_view(std::int64_t message_id);
  Outcome<Done> process_envelope(const InboundEnvelope& envelope, AfterCommit& after, bool& duplicate);
  Status handle_content(const InboundEnvelope& envelope, const content::v1::Content& c, const std::string& group_hex,
                        AfterCommit& after);
  Status handle_data_message(std::int64_t sender, std::uint32_t sender_device, const content::v1::DataMessage& dm,
                             bool outgoing, std::int64_t destination, AfterCommit& after);
  void run_after_commit(AfterCommit& after, const ReceiveOptions& options, const EventHandler& on_event);
  Outcome<std::string> conversation_of(const Target& target, std::int64_t* account_out, std::string* group_out);
  std::uint32_t expire_timer(const std::string& conversation);
  Status set_conversation_timer(const std::string& conversation, std::uint32_t seconds);
  Status touch_conversation(const std::string& conversation);
  Outcome<MessageView> send_data_message(const Target& to, content::v1::DataMessage dm, const std::string& kind);

  // ---- groups.cpp ----
  Outcome<std::string> resolve_group(const std::string& name_or_id);  // -> hex id
  Outcome<GroupView> group_view(const std::string& group_hex);
  std::vector<std::int64_t> group_members(const std::string& group_hex);
  Outcome<Done> send_group_data(const std::string& group_hex, const content::v1::DataMessage& dm, std::int64_t timestamp,
                                std::optional<std::int64_t> message_id);
  Outcome<Done> broadcast_group_update(const std::string& group_hex, const std::vector<std::int64_t>& extra_recipients);
  Status apply_group_context(std::int64_t sender, const content::v1::GroupContext& g, AfterCommit& after);
  Status rotate_own_sender_key(const std::string& group_hex);

  // ---- transfer.cpp ----
  Outcome<content::v1::AttachmentPointer> upload_file(const std::filesystem::path& file, const ProgressHandler& progress);
  Outcome<Done> download_attachment(std::int64_t attachment_id, const ProgressHandler& progress);
  std::filesystem::path attachments_dir() const { return config.profile_dir / "attachments"; }
};

std::string random_hex(crypto::Rng& rng, std::size_t bytes);
// The server could not be reached (as opposed to a refusal or a local problem).
inline bool is_offline(const Failure& f) {
  return f.code == make_error_code(Errc::unreachable) || f.code == make_error_code(Errc::timeout) ||
         f.code == make_error_code(Errc::connection_closed);
}
std::string kind_of(const content::v1::DataMessage& dm);
std::string bytes_string(ByteView b);

}  // namespace postern::client
