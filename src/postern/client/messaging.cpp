// Messenger: sending (outbox, device mismatches), receiving (one local transaction per
// envelope, acknowledgement after commit), history, receipts, typing and disappearing messages.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>

#include "postern/account/signup.h"
#include "postern/client/detail/messenger_impl.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/group_cipher.h"
#include "postern/protocol/session_builder.h"
#include "postern/protocol/session_cipher.h"
#include "postern/server/proto/delivery.pb.h"
#include "postern/store/errors.h"
#include "postern/util/bytes.h"

namespace postern::client {
namespace {

using nlohmann::json;
namespace pb = content::v1;

constexpr std::int32_t kGroupEnvelopeType = static_cast<std::int32_t>(protocol::CiphertextType::sender_key);
constexpr int kMaxSendRounds = 4;

ByteView view_of(const std::string& s) { return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }
std::string text_of(const crypto::SecretBytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

bool contains(const std::vector<std::uint32_t>& v, std::uint32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

Failure untrusted_failure(const std::string& who) {
  return Failure::from(make_error_code(Errc::untrusted_identity),
                       "the safety number with " + who + " changed; nothing was sent. Compare it with `postern verify " + who +
                           "` and accept it with `postern verify " + who + " --accept`");
}

}  // namespace

std::string bytes_string(ByteView b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string kind_of(const pb::DataMessage& dm) {
  if (dm.attachments_size() == 0) return "text";
  const std::string& mime = dm.attachments(0).content_type();
  if (mime.starts_with("image/")) return "image";
  if (mime.starts_with("video/")) return "video";
  return "file";
}

// ---------------------------------------------------------------- sessions and the outbox

Outcome<Done> Messenger::Impl::fetch_sessions(std::int64_t account, const std::vector<std::uint32_t>& only) {
  auto bundles = api->fetch_bundles(account);
  if (!bundles.ok()) {
    if (bundles.failure().server_code == "no_keys" || bundles.failure().server_code == "account_not_found")
      return Failure::from(make_error_code(Errc::unknown_contact), "the recipient has no devices that can receive messages");
    return bundles.failure();
  }
  const std::string name = name_of(account);
  const std::string who = email_of(account).value_or("account " + name);
  for (const auto& b : bundles.value()) {
    if (account == account_id && b.device_id == device_id) continue;
    if (!only.empty() && !contains(only, b.device_id)) continue;
    const protocol::ProtocolAddress address{name, b.device_id};
    POSTERN_OUTCOME_TRY(auto existing, store->identity(address));
    if (!existing) POSTERN_OUTCOME_CHECK(note_new_device_identity(address, b.identity_key));
    if (existing && *existing != b.identity_key) {
      POSTERN_OUTCOME_TRY(bool changed, store->record_identity_change(address, b.identity_key));
      (void)changed;
    }
    auto built = protocol::process_pre_key_bundle(stores(), address, b, rng);
    if (!built.ok()) {
      if (built.error() == make_error_code(protocol::Errc::untrusted_identity)) return untrusted_failure(who);
      return Failure::from(built.error(), "cannot start a session with " + who + ": " + built.error().message());
    }
  }
  return Done{};
}

Result<bool> Messenger::Impl::note_new_device_identity(const protocol::ProtocolAddress& address,
                                                      const crypto::PublicKey& key) {
  if (address.name == name_of(account_id)) return false;  // own devices share our identity
  POSTERN_TRY(auto known, store->identities_of(address.name));
  const IdentityInfo* newest = nullptr;
  for (const auto& [device, info] : known) {
    if (device == address.device_id) continue;
    if (info.key == key) return false;  // a key we already know for this account
    if (newest == nullptr || info.first_seen_ms > newest->first_seen_ms) newest = &info;
  }
  if (newest == nullptr) return false;  // the first key we see for this account: trust on first use
  // The account shows up with a key we never saw (a reinstall, or someone in between): record it
  // as a change of the account's newest key, so the usual policy (block until accepted) applies.
  const crypto::PublicKey previous = newest->key;
  POSTERN_TRY(bool replaced_first, store->save_identity(address, previous));
  (void)replaced_first;
  POSTERN_TRY(bool changed, store->record_identity_change(address, key));
  return changed;
}

namespace {

struct OutboxRow {
  std::string id;
  std::optional<std::int64_t> message_id;
  std::int64_t account = 0;
  json payload;
};

}  // namespace

// Encrypts `padded` for every current device of the account into outbox row `id` (inserted or
// replaced), in one transaction with the ratchet steps.
static Outcome<Done> encrypt_into_outbox(Messenger::Impl& m, const std::string& id, std::int64_t account,
                                         std::optional<std::int64_t> message_id, json payload) {
  const std::string name = Messenger::Impl::name_of(account);
  POSTERN_OUTCOME_TRY(auto ids, m.store->device_ids(name));
  if (account == m.account_id) ids.erase(std::remove(ids.begin(), ids.end(), m.device_id), ids.end());
  const bool group = payload.value("kind", "") == "group";
  Bytes plain;
  if (!group) {
    auto decoded = base64_decode(payload.value("plain", ""));
    if (!decoded.ok()) return Failure::from(make_error_code(Errc::corrupt_record));
    plain = std::move(*decoded);
  }
  POSTERN_OUTCOME_TRY(auto txn, m.store->begin());
  json envelopes = json::array();
  for (auto device : ids) {
    const protocol::ProtocolAddress address{name, device};
    json e = {{"device_id", device}, {"client_id", random_hex(m.rng, 16)}};
    if (group) {
      e["type"] = kGroupEnvelopeType;
      e["content"] = payload.value("group_content", "");
      protocol::SessionCipher cipher(m.stores(), address, m.rng);
      auto reg = cipher.remote_registration_id();
      e["registration_id"] = reg.ok() && *reg ? **reg : 0u;
    } else {
      protocol::SessionCipher cipher(m.stores(), address, m.rng);
      auto sealed = cipher.encrypt(plain);
      if (!sealed.ok()) {
        if (sealed.error() == make_error_code(protocol::Errc::untrusted_identity))
          return untrusted_failure(m.email_of(account).value_or("account " + name));
        return Failure::from(sealed.error(), "encryption failed: " + sealed.error().message());
      }
      auto reg = cipher.remote_registration_id();
      e["type"] = static_cast<std::int32_t>(sealed->type);
      e["content"] = base64_encode(sealed->serialized);
      e["registration_id"] = reg.ok() && *reg ? **reg : 0u;
    }
    envelopes.push_back(std::move(e));
  }
  payload["envelopes"] = std::move(envelopes);
  const std::string text = payload.dump();
  POSTERN_OUTCOME_TRY(auto sealed, m.store->seal(view_of(text), "outbox.payload:" + id));
  POSTERN_OUTCOME_TRY(auto st, m.store->db().prepare(
                                   "INSERT INTO outbox (id, seq, message_id, account_id, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?) "
                                   "ON CONFLICT(id) DO UPDATE SET payload = excluded.payload"));
  POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(id), ++m.outbox_seq));
  if (message_id) {
    POSTERN_OUTCOME_CHECK(st.bind_int64(3, *message_id));
  } else {
    POSTERN_OUTCOME_CHECK(st.bind_null(3));
  }
  POSTERN_OUTCOME_CHECK(st.bind_int64(4, account));
  POSTERN_OUTCOME_CHECK(st.bind_blob(5, sealed));
  POSTERN_OUTCOME_CHECK(st.bind_int64(6, m.clock.now_ms()));
  POSTERN_OUTCOME_CHECK(st.run());
  POSTERN_OUTCOME_CHECK(txn.commit());
  return Done{};
}

static Outcome<OutboxRow> load_outbox(Messenger::Impl& m, const std::string& id) {
  POSTERN_OUTCOME_TRY(auto st, m.store->db().prepare("SELECT message_id, account_id, payload FROM outbox WHERE id = ?"));
  POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(id)));
  POSTERN_OUTCOME_TRY(bool row, st.step());
  if (!row) return Failure::from(make_error_code(Errc::invalid_argument), "no such outbox row");
  OutboxRow out;
  out.id = id;
  if (!st.column_is_null(0)) out.message_id = st.column_int64(0);
  out.account = st.column_int64(1);
  POSTERN_OUTCOME_TRY(auto plain, m.store->unseal(st.column_blob(2), "outbox.payload:" + id));
  out.payload = json::parse(text_of(plain), nullptr, false);
  if (out.payload.is_discarded() || !out.payload.is_object()) return Failure::from(make_error_code(Errc::corrupt_record));
  return out;
}

static Status delete_outbox(Messenger::Impl& m, const std::string& id) {
  POSTERN_TRY(auto st, m.store->db().prepare("DELETE FROM outbox WHERE id = ?"));
  POSTERN_CHECK(st.bind_all(std::string_view(id)));
  return st.run();
}

Outcome<Done> Messenger::Impl::send_outbox_row(const std::string& id) {
  for (int round = 0; round < kMaxSendRounds; ++round) {
    POSTERN_OUTCOME_TRY(auto row, load_outbox(*this, id));
    std::vector<OutgoingEnvelope> envelopes;
    for (const auto& e : row.payload["envelopes"]) {
      OutgoingEnvelope out;
      out.device_id = e.value("device_id", 0u);
      out.registration_id = e.value("registration_id", 0u);
      out.type = e.value("type", 0);
      auto content = base64_decode(e.value("content", ""));
      if (!content.ok()) return Failure::from(make_error_code(Errc::corrupt_record));
      out.content = std::move(*content);
      out.client_id = e.value("client_id", "");
      out.timestamp = row.payload.value("timestamp", std::int64_t{0});
      envelopes.push_back(std::move(out));
    }
    ServerApi::Mismatch mismatch;
    auto sent = api->send(row.account, envelopes, &mismatch);
    if (sent.ok()) {
      // One local transaction (one fsync) for the row and the status changes.
      POSTERN_OUTCOME_TRY(auto txn, store->begin());
      POSTERN_OUTCOME_CHECK(delete_outbox(*this, id));
      if (row.message_id) {
        // The history row moves to `sent` once every recipient's row is gone from the outbox.
        POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT COUNT(*) FROM outbox WHERE message_id = ?"));
        POSTERN_OUTCOME_CHECK(st.bind_all(*row.message_id));
        POSTERN_OUTCOME_TRY(bool r, st.step());
        if (r && st.column_int64(0) == 0) {
          POSTERN_OUTCOME_TRY(auto up, store->db().prepare(
                                           "UPDATE messages SET status = ? WHERE id = ? AND status = ?"));
          POSTERN_OUTCOME_CHECK(up.bind_all(std::int64_t{static_cast<int>(MessageStatus::sent)}, *row.message_id,
                                            std::int64_t{static_cast<int>(MessageStatus::sending)}));
          POSTERN_OUTCOME_CHECK(up.run());
        }
        POSTERN_OUTCOME_TRY(auto rec, store->db().prepare(
                                          "UPDATE message_recipients SET status = ?, updated_ms = ? WHERE message_id = ? AND account_id = ? AND status = ?"));
        POSTERN_OUTCOME_CHECK(rec.bind_all(std::int64_t{static_cast<int>(MessageStatus::sent)}, clock.now_ms(), *row.message_id,
                                           row.account, std::int64_t{static_cast<int>(MessageStatus::sending)}));
        POSTERN_OUTCOME_CHECK(rec.run());
      }
      POSTERN_OUTCOME_CHECK(txn.commit());
      return Done{};
    }
    const Failure& f = sent.failure();
    if (f.http_status == 0 || f.http_status == 429 || f.http_status >= 500) {
      // Transport trouble or a busy server: the row stays and is resent later, unchanged.
      Failure kept = f;
      kept.message += " (the message is kept and will be sent on the next connection)";
      return kept;
    }
    if (f.server_code == "device_mismatch" || f.server_code == "stale_devices") {
      const std::string name = name_of(row.account);
      for (auto d : mismatch.extra) POSTERN_OUTCOME_CHECK(store->delete_session({name, d}));
      for (auto d : mismatch.stale) POSTERN_OUTCOME_CHECK(store->delete_session({name, d}));
      std::vector<std::uint32_t> need = mismatch.missing;
      need.insert(need.end(), mismatch.stale.begin(), mismatch.stale.end());
      if (row.account == account_id) {
        auto others = own_other_devices();
        for (auto d : mismatch.extra) others.erase(std::remove(others.begin(), others.end(), d), others.end());
        for (auto d : need)
          if (!contains(others, d)) others.push_back(d);
        POSTERN_OUTCOME_CHECK(set_own_other_devices(others));
      }
      if (!need.empty()) {
        POSTERN_OUTCOME_CHECK(fetch_sessions(row.account, need));
        if (row.payload.value("kind", "") == "group") {
          // New devices of a member need our sender key before the group message.
          const std::string group_hex = row.payload.value("group_id", "");
          POSTERN_OUTCOME_TRY(auto st, store->db().prepare(
                                           "DELETE FROM sender_key_shared WHERE group_id = ? AND account_id = ?"));
          POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(group_hex), row.account));
          POSTERN_OUTCOME_CHECK(st.run());
          POSTERN_OUTCOME_TRY(auto skdm, protocol::create_sender_key_distribution(
                                             *store, protocol::SenderKeyName{group_hex, {name_of(account_id), device_id}}, rng));
          pb::Content c;
          c.set_sender_key_distribution(skdm.serialized().data(), skdm.serialized().size());
          auto gid = from_hex(group_hex);
          if (gid.ok()) c.set_sender_key_group(gid->data(), gid->size());
          c.set_sender_email(email);
          POSTERN_OUTCOME_CHECK(send_content_to_account(row.account, c, clock.now_ms(), std::nullopt));
        }
      }
      POSTERN_OUTCOME_CHECK(encrypt_into_outbox(*this, id, row.account, row.message_id, row.payload));
      continue;
    }
    // Refused for good (404 account gone, 413, 422 ...): drop the row, mark the message failed.
    POSTERN_OUTCOME_CHECK(delete_outbox(*this, id));
    if (row.message_id) POSTERN_OUTCOME_CHECK(set_message_status(*row.message_id, MessageStatus::failed));
    return f;
  }
  return Failure::from(make_error_code(Errc::server_error), "the recipient's devices kept changing; try again");
}

Outcome<Done> Messenger::Impl::send_to_account(std::int64_t account, ByteView padded, std::int64_t timestamp,
                                               std::optional<std::int64_t> message_id, std::int32_t forced_type) {
  const std::string name = name_of(account);
  POSTERN_OUTCOME_TRY(auto ids, store->device_ids(name));
  if (account == account_id) {
    ids.erase(std::remove(ids.begin(), ids.end(), device_id), ids.end());
    // Sessions with own devices we know of but have not talked to yet.
    std::vector<std::uint32_t> missing;
    for (auto d : own_other_devices())
      if (!contains(ids, d)) missing.push_back(d);
    if (!missing.empty()) POSTERN_OUTCOME_CHECK(fetch_sessions(account, missing));
  } else if (ids.empty()) {
    POSTERN_OUTCOME_CHECK(fetch_sessions(account, {}));
  }
  json payload = {{"timestamp", timestamp}};
  if (forced_type == kGroupEnvelopeType) {
    payload["kind"] = "group";
    payload["group_content"] = base64_encode(padded);
  } else {
    payload["kind"] = "session";
    payload["plain"] = base64_encode(padded);
  }
  const std::string id = random_hex(rng, 16);
  POSTERN_OUTCOME_CHECK(encrypt_into_outbox(*this, id, account, message_id, std::move(payload)));
  return send_outbox_row(id);
}

Outcome<Done> Messenger::Impl::send_content_to_account(std::int64_t account, const pb::Content& c, std::int64_t timestamp,
                                                       std::optional<std::int64_t> message_id) {
  const Bytes padded = serialize_padded(c);
  if (padded.size() > kMaxContentBytes)
    return Failure::from(make_error_code(Errc::too_large), "the message is too long");
  return send_to_account(account, padded, timestamp, message_id);
}

void Messenger::Impl::sync_sent(std::int64_t destination, const std::string& destination_email, const pb::DataMessage& dm) {
  if (own_other_devices().empty()) return;
  pb::Content c;
  auto* sent = c.mutable_sync_message()->mutable_sent();
  sent->set_destination_account(destination);
  sent->set_destination_email(destination_email);
  sent->set_timestamp(dm.timestamp());
  *sent->mutable_message() = dm;
  (void)send_content_to_account(account_id, c, dm.timestamp(), std::nullopt);
}

Outcome<std::size_t> Messenger::flush_outbox() {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  std::vector<std::string> ids;
  {
    POSTERN_OUTCOME_TRY(auto st, impl_->store->db().prepare("SELECT id FROM outbox ORDER BY seq"));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      ids.push_back(st.column_text(0));
    }
  }
  std::size_t sent = 0;
  for (const auto& id : ids) {
    auto r = impl_->send_outbox_row(id);
    if (!r.ok()) {
      // Offline: keep the rest for later. A row that fails for another reason (damaged, refused)
      // must not hold up the rows behind it.
      if (is_offline(r.failure())) return r.failure();
      continue;
    }
    ++sent;
  }
  return sent;
}

// ---------------------------------------------------------------- history rows

Outcome<std::string> Messenger::Impl::conversation_of(const Target& target, std::int64_t* account_out, std::string* group_out) {
  if (target.is_group()) {
    POSTERN_OUTCOME_TRY(auto hex, resolve_group(target.group));
    if (group_out) *group_out = hex;
    return "g:" + hex;
  }
  POSTERN_OUTCOME_TRY(auto contact, contact_by_email(target.email));
  if (account_out) *account_out = contact.account_id;
  return "u:" + std::to_string(contact.account_id);
}

std::uint32_t Messenger::Impl::expire_timer(const std::string& conversation) {
  auto st = store->db().prepare("SELECT expire_timer_s FROM conversations WHERE id = ?");
  if (!st.ok() || !st->bind_all(std::string_view(conversation)).ok()) return 0;
  auto row = st->step();
  return row.ok() && *row ? static_cast<std::uint32_t>(st->column_int64(0)) : 0;
}

Status Messenger::Impl::set_conversation_timer(const std::string& conversation, std::uint32_t seconds) {
  POSTERN_TRY(auto st, store->db().prepare(
                           "INSERT INTO conversations (id, expire_timer_s, updated_ms) VALUES (?, ?, ?) "
                           "ON CONFLICT(id) DO UPDATE SET expire_timer_s = excluded.expire_timer_s, updated_ms = excluded.updated_ms"));
  POSTERN_CHECK(st.bind_all(std::string_view(conversation), std::int64_t{seconds}, clock.now_ms()));
  return st.run();
}

Status Messenger::Impl::touch_conversation(const std::string& conversation) {
  POSTERN_TRY(auto st, store->db().prepare(
                           "INSERT INTO conversations (id, expire_timer_s, updated_ms) VALUES (?, 0, ?) "
                           "ON CONFLICT(id) DO UPDATE SET updated_ms = excluded.updated_ms"));
  POSTERN_CHECK(st.bind_all(std::string_view(conversation), clock.now_ms()));
  return st.run();
}

Outcome<std::int64_t> Messenger::Impl::store_outgoing(const std::string& conversation, std::int64_t timestamp,
                                                      const std::string& kind, const pb::DataMessage& dm,
                                                      const std::vector<std::int64_t>& recipients) {
  POSTERN_OUTCOME_CHECK(touch_conversation(conversation));
  const std::uint32_t timer = dm.expire_timer_s();
  POSTERN_OUTCOME_TRY(auto st, store->db().prepare(
                                   "INSERT INTO messages (conversation, outgoing, sender_account, sender_device, sent_ms, received_ms, "
                                   "kind, body, status, expire_timer_s, expires_at_ms, notified) VALUES (?, 1, ?, ?, ?, ?, ?, x'', ?, ?, ?, 1)"));
  POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(conversation), account_id, std::int64_t{device_id}, timestamp,
                                    clock.now_ms(), std::string_view(kind),
                                    std::int64_t{static_cast<int>(MessageStatus::sending)}, std::int64_t{timer}));
  if (timer > 0) {
    POSTERN_OUTCOME_CHECK(st.bind_int64(9, clock.now_ms() + std::int64_t{timer} * 1000));
  } else {
    POSTERN_OUTCOME_CHECK(st.bind_null(9));
  }
  POSTERN_OUTCOME_CHECK(st.run());
  const std::int64_t id = store->db().last_insert_rowid();
  const std::string body = dm.SerializeAsString();
  POSTERN_OUTCOME_TRY(auto sealed, store->seal(view_of(body), "messages.body:" + std::to_string(id)));
  POSTERN_OUTCOME_TRY(auto up, store->db().prepare("UPDATE messages SET body = ? WHERE id = ?"));
  POSTERN_OUTCOME_CHECK(up.bind_all(ByteView(sealed), id));
  POSTERN_OUTCOME_CHECK(up.run());
  for (auto r : recipients) {
    POSTERN_OUTCOME_TRY(auto rec, store->db().prepare(
                                      "INSERT OR IGNORE INTO message_recipients (message_id, account_id, status, updated_ms) VALUES (?, ?, ?, ?)"));
    POSTERN_OUTCOME_CHECK(rec.bind_all(id, r, std::int64_t{static_cast<int>(MessageStatus::sending)}, clock.now_ms()));
    POSTERN_OUTCOME_CHECK(rec.run());
  }
  for (const auto& a : dm.attachments()) {
    const std::string pointer = a.SerializeAsString();
    POSTERN_OUTCOME_TRY(auto ins, store->db().prepare(
                                      "INSERT INTO attachments (message_id, pointer, path, state) VALUES (?, x'', NULL, 1)"));
    POSTERN_OUTCOME_CHECK(ins.bind_all(id));
    POSTERN_OUTCOME_CHECK(ins.run());
    const std::int64_t aid = store->db().last_insert_rowid();
    POSTERN_OUTCOME_TRY(auto sp, store->seal(view_of(pointer), "attachments.pointer:" + std::to_string(aid)));
    POSTERN_OUTCOME_TRY(auto upd, store->db().prepare("UPDATE attachments SET pointer = ? WHERE id = ?"));
    POSTERN_OUTCOME_CHECK(upd.bind_all(ByteView(sp), aid));
    POSTERN_OUTCOME_CHECK(upd.run());
  }
  return id;
}

Status Messenger::Impl::set_message_status(std::int64_t message_id, MessageStatus status) {
  POSTERN_TRY(auto st, store->db().prepare("UPDATE messages SET status = ? WHERE id = ?"));
  POSTERN_CHECK(st.bind_all(std::int64_t{static_cast<int>(status)}, message_id));
  return st.run();
}

Outcome<MessageView> Messenger::Impl::message_view(std::int64_t message_id) {
  POSTERN_OUTCOME_TRY(auto st, store->db().prepare(
                                   "SELECT conversation, outgoing, sender_account, sender_device, sent_ms, received_ms, kind, body, "
                                   "status, expire_timer_s, expires_at_ms FROM messages WHERE id = ?"));
  POSTERN_OUTCOME_CHECK(st.bind_all(message_id));
  POSTERN_OUTCOME_TRY(bool row, st.step());
  if (!row) return Failure::from(make_error_code(Errc::invalid_argument), "no such message");
  MessageView v;
  v.id = message_id;
  v.conversation = st.column_text(0);
  v.outgoing = st.column_int64(1) != 0;
  v.sender_account = st.column_int64(2);
  v.sender_device = static_cast<std::uint32_t>(st.column_int64(3));
  v.timestamp = st.column_int64(4);
  v.received_ms = st.column_int64(5);
  v.kind = st.column_text(6);
  POSTERN_OUTCOME_TRY(auto body, store->unseal(st.column_blob(7), "messages.body:" + std::to_string(message_id)));
  v.status = static_cast<MessageStatus>(st.column_int64(8));
  v.expire_timer_s = static_cast<std::uint32_t>(st.column_int64(9));
  if (!st.column_is_null(10)) v.expires_at_ms = st.column_int64(10);
  pb::DataMessage dm;
  if (!dm.ParseFromArray(body.data(), static_cast<int>(body.size()))) return Failure::from(make_error_code(Errc::corrupt_record));
  v.text = dm.body();
  v.sender_email = email_of(v.sender_account).value_or("");
  if (v.conversation.starts_with("g:")) {
    v.group_id = v.conversation.substr(2);
    auto g = group_view(v.group_id);
    if (g.ok()) v.group_name = g->name;
    v.peer = v.group_name;
  } else {
    std::int64_t peer = 0;
    std::from_chars(v.conversation.data() + 2, v.conversation.data() + v.conversation.size(), peer);
    v.peer = email_of(peer).value_or("account " + std::to_string(peer));
  }
  POSTERN_OUTCOME_TRY(auto at, store->db().prepare("SELECT id, pointer, path, state FROM attachments WHERE message_id = ? ORDER BY id"));
  POSTERN_OUTCOME_CHECK(at.bind_all(message_id));
  while (true) {
    POSTERN_OUTCOME_TRY(bool r, at.step());
    if (!r) break;
    AttachmentView a;
    a.id = at.column_int64(0);
    POSTERN_OUTCOME_TRY(auto pointer_bytes, store->unseal(at.column_blob(1), "attachments.pointer:" + std::to_string(a.id)));
    pb::AttachmentPointer p;
    if (!p.ParseFromArray(pointer_bytes.data(), static_cast<int>(pointer_bytes.size())))
      return Failure::from(make_error_code(Errc::corrupt_record));
    a.size = p.size();
    a.mime = p.content_type();
    a.file_name = p.file_name();
    a.width = p.width();
    a.height = p.height();
    a.duration_ms = p.duration_ms();
    a.caption = p.caption();
    const auto state = at.column_int64(3);
    a.state = state == 1 ? "saved" : state == 2 ? "failed" : "pending";
    if (!at.column_is_null(2)) {
      POSTERN_OUTCOME_TRY(auto path, store->unseal(at.column_blob(2), "attachments.path:" + std::to_string(a.id)));
      const std::string text = text_of(path);
      // "path\nsha256\nthumbnail"
      const auto nl1 = text.find('\n');
      a.path = text.substr(0, nl1);
      if (nl1 != std::string::npos) {
        const auto nl2 = text.find('\n', nl1 + 1);
        a.sha256 = text.substr(nl1 + 1, nl2 == std::string::npos ? std::string::npos : nl2 - nl1 - 1);
        if (nl2 != std::string::npos) a.thumbnail_path = text.substr(nl2 + 1);
      }
    }
    v.attachments.push_back(std::move(a));
  }
  return v;
}

// ---------------------------------------------------------------- sending

Outcome<MessageView> Messenger::Impl::send_data_message(const Target& to, pb::DataMessage dm, const std::string& kind) {
  std::int64_t account = 0;
  std::string group_hex;
  POSTERN_OUTCOME_TRY(auto conversation, conversation_of(to, &account, &group_hex));
  const std::int64_t timestamp = clock.now_ms();
  dm.set_timestamp(timestamp);
  dm.set_expire_timer_s(expire_timer(conversation));
  std::vector<std::int64_t> recipients;
  if (!group_hex.empty()) {
    POSTERN_OUTCOME_TRY(auto g, group_view(group_hex));
    if (!g.active) return Failure::from(make_error_code(Errc::not_allowed), "you are no longer a member of " + g.name);
    for (auto& [member, mail] : g.members)
      if (member != account_id) recipients.push_back(member);
    dm.mutable_group()->set_id(bytes_string(from_hex(group_hex).value()));
    dm.mutable_group()->set_type(pb::GroupContext::DELIVER);
    dm.mutable_group()->set_revision(g.revision);
  } else {
    recipients.push_back(account);
  }
  std::int64_t message_id = 0;
  {
    POSTERN_OUTCOME_TRY(auto txn, store->begin());
    POSTERN_OUTCOME_TRY(auto id, store_outgoing(conversation, timestamp, kind, dm, recipients));
    POSTERN_OUTCOME_CHECK(txn.commit());
    message_id = id;
  }
  Outcome<Done> sent = Done{};
  if (!group_hex.empty()) {
    sent = send_group_data(group_hex, dm, timestamp, message_id);
  } else {
    pb::Content c;
    *c.mutable_data_message() = dm;
    c.set_sender_email(email);
    sent = send_content_to_account(account, c, timestamp, message_id);
  }
  if (!sent.ok()) {
    // Kept in the outbox (offline): the message stays `sending`; refused: `failed`.
    if (sent.failure().http_status != 0) (void)set_message_status(message_id, MessageStatus::failed);
    return sent.failure();
  }
  sync_sent(group_hex.empty() ? account : 0, group_hex.empty() ? email_of(account).value_or("") : "", dm);
  return message_view(message_id);
}

Outcome<MessageView> Messenger::send_text(const Target& to, const std::string& text) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  if (text.empty()) return Failure::from(make_error_code(Errc::invalid_argument), "the message is empty");
  if (text.size() > 64 * 1024) return Failure::from(make_error_code(Errc::too_large), "the message is longer than 64 KiB");
  (void)flush_outbox();
  pb::DataMessage dm;
  dm.set_body(text);
  return impl_->send_data_message(to, std::move(dm), "text");
}

Outcome<MessageView> Messenger::send_file(const Target& to, const std::filesystem::path& file, const std::string& caption,
                                          const ProgressHandler& progress) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  // Resolve the recipient first: an unknown contact should fail before a long upload.
  POSTERN_OUTCOME_TRY(auto conversation, impl_->conversation_of(to, nullptr, nullptr));
  (void)conversation;
  POSTERN_OUTCOME_TRY(auto pointer, impl_->upload_file(file, progress));
  pointer.set_caption(caption);
  pb::DataMessage dm;
  dm.set_body(caption);
  *dm.add_attachments() = pointer;
  const std::string kind = kind_of(dm);
  return impl_->send_data_message(to, std::move(dm), kind);
}

Outcome<Done> Messenger::send_typing(const Target& to, bool started) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  std::int64_t account = 0;
  std::string group_hex;
  POSTERN_OUTCOME_TRY(auto conversation, impl_->conversation_of(to, &account, &group_hex));
  (void)conversation;
  pb::Content c;
  auto* t = c.mutable_typing_message();
  t->set_action(started ? pb::TypingMessage::STARTED : pb::TypingMessage::STOPPED);
  t->set_timestamp(impl_->clock.now_ms());
  if (!group_hex.empty()) {
    t->set_group_id(bytes_string(from_hex(group_hex).value()));
    for (auto member : impl_->group_members(group_hex))
      if (member != impl_->account_id) (void)impl_->send_content_to_account(member, c, t->timestamp(), std::nullopt);
    return Done{};
  }
  return impl_->send_content_to_account(account, c, t->timestamp(), std::nullopt);
}

// ---------------------------------------------------------------- receiving

static Status mark_processed(Messenger::Impl& m, std::uint64_t server_id) {
  POSTERN_TRY(auto st, m.store->db().prepare("INSERT OR IGNORE INTO processed_envelopes (server_id, processed_ms) VALUES (?, ?)"));
  POSTERN_CHECK(st.bind_all(static_cast<std::int64_t>(server_id), m.clock.now_ms()));
  return st.run();
}

Outcome<Done> Messenger::Impl::process_envelope(const InboundEnvelope& envelope, AfterCommit& after, bool& duplicate) {
  duplicate = false;
  {
    POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT 1 FROM processed_envelopes WHERE server_id = ?"));
    POSTERN_OUTCOME_CHECK(st.bind_all(static_cast<std::int64_t>(envelope.server_id)));
    POSTERN_OUTCOME_TRY(bool seen, st.step());
    if (seen) {
      duplicate = true;
      return Done{};
    }
  }
  POSTERN_OUTCOME_TRY(auto txn, store->begin());
  const protocol::ProtocolAddress address{name_of(envelope.sender_account), envelope.sender_device};
  POSTERN_OUTCOME_TRY(auto identity_before, store->identity(address));
  Result<Bytes> plain = make_error_code(protocol::Errc::invalid_message);
  std::string group_hex;
  if (envelope.type == static_cast<std::int32_t>(protocol::CiphertextType::signal) ||
      envelope.type == static_cast<std::int32_t>(protocol::CiphertextType::prekey)) {
    protocol::SessionCipher cipher(stores(), address, rng);
    plain = cipher.decrypt(static_cast<protocol::CiphertextType>(envelope.type), envelope.content);
  } else if (envelope.type == kGroupEnvelopeType) {
    pb::GroupCiphertext gc;
    if (gc.ParseFromArray(envelope.content.data(), static_cast<int>(envelope.content.size())) && gc.group_id().size() == 16) {
      group_hex = to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(gc.group_id().data()), gc.group_id().size()));
      protocol::GroupCipher cipher(*store, protocol::SenderKeyName{group_hex, address}, rng);
      plain = cipher.decrypt(ByteView(reinterpret_cast<const std::uint8_t*>(gc.ciphertext().data()), gc.ciphertext().size()));
    }
  }
  Event problem;
  problem.kind = Event::Kind::undecryptable;
  problem.from_account = envelope.sender_account;
  problem.from_email = email_of(envelope.sender_account).value_or("");
  if (!plain.ok()) {
    // A failing store is not the sender's fault: stop without acknowledging (sent again later).
    if (plain.error().category() == store::store_category() ||
        plain.error() == make_error_code(protocol::Errc::store_failure))
      return Failure::from(plain.error(), "the local store failed: " + plain.error().message());
    if (plain.error() != make_error_code(protocol::Errc::duplicate_message)) {
      problem.detail = plain.error().message();
      after.events.push_back(problem);
    }
    POSTERN_OUTCOME_CHECK(mark_processed(*this, envelope.server_id));
    POSTERN_OUTCOME_CHECK(txn.commit());
    return Done{};
  }
  POSTERN_OUTCOME_TRY(auto identity_after, store->identity(address));
  if (!identity_before && identity_after) {
    POSTERN_OUTCOME_TRY(bool changed, note_new_device_identity(address, *identity_after));
    if (changed) identity_before = crypto::PublicKey{};  // announce below
  }
  if (identity_before && identity_after && *identity_before != *identity_after) {
    Event e;
    e.kind = Event::Kind::identity_changed;
    e.from_account = envelope.sender_account;
    e.from_email = problem.from_email;
    after.events.push_back(e);
  }
  auto content = parse_padded(*plain);
  if (!content.ok()) {
    problem.detail = "the message content does not parse";
    after.events.push_back(problem);
  } else {
    if (!content->sender_email().empty() && envelope.sender_account != account_id)
      after.learn[envelope.sender_account] = content->sender_email();
    POSTERN_OUTCOME_CHECK(handle_content(envelope, *content, group_hex, after));
  }
  POSTERN_OUTCOME_CHECK(mark_processed(*this, envelope.server_id));
  POSTERN_OUTCOME_CHECK(txn.commit());
  return Done{};
}

Status Messenger::Impl::handle_content(const InboundEnvelope& envelope, const pb::Content& c, const std::string& group_hex,
                                       AfterCommit& after) {
  const std::int64_t sender = envelope.sender_account;
  const bool from_self = sender == account_id;
  if (!c.sender_key_distribution().empty() && c.sender_key_group().size() == 16) {
    auto skdm = protocol::SenderKeyDistributionMessage::parse(
        ByteView(reinterpret_cast<const std::uint8_t*>(c.sender_key_distribution().data()), c.sender_key_distribution().size()));
    if (skdm.ok()) {
      const std::string gid = to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(c.sender_key_group().data()), 16));
      POSTERN_CHECK(protocol::process_sender_key_distribution(
          *store, protocol::SenderKeyName{gid, {name_of(sender), envelope.sender_device}}, *skdm));
    }
  }
  if (c.has_data_message()) {
    const auto& dm = c.data_message();
    if (dm.has_group() && dm.group().id().size() == 16) {
      const std::string gid = to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(dm.group().id().data()), 16));
      // A group message must come through the group's cipher or be a 1:1 update.
      if (!group_hex.empty() && gid != group_hex) return {};
      if (dm.group().type() != pb::GroupContext::DELIVER) {
        POSTERN_CHECK(apply_group_context(sender, dm.group(), after));
        return {};
      }
      const auto members = group_members(gid);
      if (std::find(members.begin(), members.end(), sender) == members.end()) return {};  // not a member: dropped
    } else if (!group_hex.empty()) {
      return {};
    }
    if (!from_self) POSTERN_CHECK(handle_data_message(sender, envelope.sender_device, dm, false, 0, after));
  }
  if (c.has_sync_message() && from_self) {
    const auto& sync = c.sync_message();
    if (sync.has_sent() && sync.sent().has_message()) {
      if (sync.sent().destination_account() != 0 && !sync.sent().destination_email().empty())
        after.learn[sync.sent().destination_account()] = sync.sent().destination_email();
      const auto& sent_dm = sync.sent().message();
      if (sent_dm.has_group() && sent_dm.group().type() != pb::GroupContext::DELIVER) {
        POSTERN_CHECK(apply_group_context(sender, sent_dm.group(), after));
      } else {
        POSTERN_CHECK(handle_data_message(sender, envelope.sender_device, sent_dm, true,
                                          sync.sent().destination_account(), after));
      }
    }
    for (const auto& r : sync.read()) {
      POSTERN_TRY(auto st, store->db().prepare(
                               "UPDATE messages SET read_ms = ?1, expires_at_ms = CASE WHEN expire_timer_s > 0 AND expires_at_ms IS NULL "
                               "THEN ?1 + expire_timer_s * 1000 ELSE expires_at_ms END WHERE outgoing = 0 AND sender_account = ?2 AND sent_ms = ?3 AND read_ms IS NULL"));
      POSTERN_CHECK(st.bind_all(clock.now_ms(), r.sender_account(), r.timestamp()));
      POSTERN_CHECK(st.run());
    }
  }
  if (c.has_receipt_message() && !from_self) {
    const auto& r = c.receipt_message();
    const auto status = r.type() == pb::ReceiptMessage::READ ? MessageStatus::read : MessageStatus::delivered;
    for (auto ts : r.timestamps()) {
      POSTERN_TRY(auto st, store->db().prepare(
                               "UPDATE message_recipients SET status = ?1, updated_ms = ?2 WHERE account_id = ?3 AND status < ?1 AND "
                               "message_id IN (SELECT id FROM messages WHERE outgoing = 1 AND sent_ms = ?4)"));
      POSTERN_CHECK(st.bind_all(std::int64_t{static_cast<int>(status)}, clock.now_ms(), sender, ts));
      POSTERN_CHECK(st.run());
      // The message's status is the least advanced of its recipients'.
      POSTERN_TRY(auto up, store->db().prepare(
                               "UPDATE messages SET status = (SELECT MIN(status) FROM message_recipients WHERE message_id = messages.id) "
                               "WHERE outgoing = 1 AND sent_ms = ?1 AND status < 4 AND EXISTS "
                               "(SELECT 1 FROM message_recipients WHERE message_id = messages.id AND account_id = ?2)"));
      POSTERN_CHECK(up.bind_all(ts, sender));
      POSTERN_CHECK(up.run());
    }
    Event e;
    e.kind = Event::Kind::receipt;
    e.from_account = sender;
    e.receipt_type = status == MessageStatus::read ? "read" : "delivery";
    e.timestamps.assign(r.timestamps().begin(), r.timestamps().end());
    after.events.push_back(std::move(e));
  }
  if (c.has_typing_message() && !from_self) {
    Event e;
    e.kind = Event::Kind::typing;
    e.from_account = sender;
    e.typing_started = c.typing_message().action() == pb::TypingMessage::STARTED;
    if (c.typing_message().group_id().size() == 16)
      e.group_id = to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(c.typing_message().group_id().data()), 16));
    after.events.push_back(std::move(e));
  }
  return {};
}

Status Messenger::Impl::handle_data_message(std::int64_t sender, std::uint32_t sender_device, const pb::DataMessage& dm,
                                            bool outgoing, std::int64_t destination, AfterCommit& after) {
  std::string conversation;
  if (dm.has_group() && dm.group().id().size() == 16) {
    conversation = "g:" + to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(dm.group().id().data()), 16));
  } else {
    conversation = "u:" + std::to_string(outgoing ? destination : sender);
  }
  if (outgoing && destination == 0 && !dm.has_group()) return {};
  // The sender's timer is the conversation's timer (Signal's rule: the latest message sets it).
  if (dm.expire_timer_s() != expire_timer(conversation) && (dm.expire_timer_update() || dm.expire_timer_s() != 0 ||
                                                            expire_timer(conversation) != 0)) {
    POSTERN_CHECK(set_conversation_timer(conversation, dm.expire_timer_s()));
    Event e;
    e.kind = Event::Kind::timer_changed;
    e.from_account = sender;
    e.expire_timer_s = dm.expire_timer_s();
    e.message.conversation = conversation;
    after.events.push_back(std::move(e));
  }
  if (dm.expire_timer_update() || (dm.body().empty() && dm.attachments_size() == 0)) return {};
  POSTERN_CHECK(touch_conversation(conversation));
  const std::uint32_t timer = dm.expire_timer_s();
  const std::string kind = kind_of(dm);  // bound by reference: must outlive run()
  POSTERN_TRY(auto st, store->db().prepare(
                           "INSERT OR IGNORE INTO messages (conversation, outgoing, sender_account, sender_device, sent_ms, received_ms, "
                           "kind, body, status, expire_timer_s, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, x'', ?, ?, ?)"));
  POSTERN_CHECK(st.bind_all(std::string_view(conversation), std::int64_t{outgoing ? 1 : 0}, sender, std::int64_t{sender_device},
                            dm.timestamp(), clock.now_ms(), std::string_view(kind),
                            std::int64_t{static_cast<int>(outgoing ? MessageStatus::sent : MessageStatus::received)},
                            std::int64_t{timer}));
  if (outgoing && timer > 0) {
    POSTERN_CHECK(st.bind_int64(10, clock.now_ms() + std::int64_t{timer} * 1000));
  } else {
    POSTERN_CHECK(st.bind_null(10));
  }
  POSTERN_CHECK(st.run());
  if (store->db().changes() == 0) return {};  // the same message again (a retried send): shown once
  const std::int64_t id = store->db().last_insert_rowid();
  const std::string body = dm.SerializeAsString();
  POSTERN_TRY(auto sealed, store->seal(view_of(body), "messages.body:" + std::to_string(id)));
  POSTERN_TRY(auto up, store->db().prepare("UPDATE messages SET body = ? WHERE id = ?"));
  POSTERN_CHECK(up.bind_all(ByteView(sealed), id));
  POSTERN_CHECK(up.run());
  for (const auto& a : dm.attachments()) {
    POSTERN_TRY(auto ins, store->db().prepare("INSERT INTO attachments (message_id, pointer, path, state) VALUES (?, x'', NULL, 0)"));
    POSTERN_CHECK(ins.bind_all(id));
    POSTERN_CHECK(ins.run());
    const std::int64_t aid = store->db().last_insert_rowid();
    const std::string pointer = a.SerializeAsString();
    POSTERN_TRY(auto sp, store->seal(view_of(pointer), "attachments.pointer:" + std::to_string(aid)));
    POSTERN_TRY(auto upd, store->db().prepare("UPDATE attachments SET pointer = ? WHERE id = ?"));
    POSTERN_CHECK(upd.bind_all(ByteView(sp), aid));
    POSTERN_CHECK(upd.run());
    if (a.size() <= config.auto_download_max_bytes) after.downloads.push_back(aid);
  }
  if (!outgoing) after.delivery_receipts[sender].push_back(dm.timestamp());
  Event e;
  e.kind = Event::Kind::message;
  e.message.id = id;
  after.events.push_back(std::move(e));
  return {};
}

void Messenger::Impl::run_after_commit(AfterCommit& after, const ReceiveOptions& options, const EventHandler& on_event) {
  for (const auto& [account, claimed] : after.learn) learn_contact(account, claimed);
  for (auto id : after.downloads) (void)download_attachment(id, {});
  for (const auto& gid : after.rotate_groups) (void)rotate_own_sender_key(gid);
  std::map<std::int64_t, std::vector<std::int64_t>> read_receipts;
  for (auto& e : after.events) {
    if (e.kind == Event::Kind::message) {
      if (options.mark_read) {
        auto st = store->db().prepare(
            "UPDATE messages SET read_ms = ?1, expires_at_ms = CASE WHEN expire_timer_s > 0 AND expires_at_ms IS NULL "
            "THEN ?1 + expire_timer_s * 1000 ELSE expires_at_ms END WHERE id = ?2 AND outgoing = 0 AND read_ms IS NULL");
        if (st.ok() && st->bind_all(clock.now_ms(), e.message.id).ok() && st->run().ok() && store->db().changes() > 0) {
          auto v = message_view(e.message.id);
          if (v.ok()) read_receipts[v->sender_account].push_back(v->timestamp);
        }
      }
      auto view = message_view(e.message.id);
      if (!view.ok()) continue;
      e.message = std::move(view).value();
      e.from_account = e.message.sender_account;
      e.from_email = e.message.sender_email;
    } else if (e.from_email.empty() && e.from_account != 0) {
      e.from_email = email_of(e.from_account).value_or("");
    }
    if (!e.group_id.empty() && e.group_name.empty()) {
      auto g = group_view(e.group_id);
      if (g.ok()) e.group_name = g->name;
    }
    if (on_event) on_event(e);
    if (e.kind == Event::Kind::message) {
      auto st = store->db().prepare("UPDATE messages SET notified = 1 WHERE id = ?");
      if (st.ok() && st->bind_all(e.message.id).ok()) (void)st->run();
    }
  }
  // Receipts go out after the user has seen the messages (they cost round trips).
  if (options.send_delivery_receipts) {
    for (const auto& [sender, stamps] : after.delivery_receipts) {
      pb::Content c;
      c.mutable_receipt_message()->set_type(pb::ReceiptMessage::DELIVERY);
      for (auto ts : stamps) c.mutable_receipt_message()->add_timestamps(ts);
      (void)send_content_to_account(sender, c, clock.now_ms(), std::nullopt);
    }
  }
  for (const auto& [sender, stamps] : read_receipts) {
    pb::Content c;
    c.mutable_receipt_message()->set_type(pb::ReceiptMessage::READ);
    for (auto ts : stamps) c.mutable_receipt_message()->add_timestamps(ts);
    (void)send_content_to_account(sender, c, clock.now_ms(), std::nullopt);
  }
}

Outcome<ReceiveSummary> Messenger::receive(const ReceiveOptions& options, const EventHandler& on_event) {
  ReceiveSummary summary;
  std::unique_ptr<DeliverySocket> socket;
  {
    std::lock_guard lock(impl_->mutex);
    POSTERN_OUTCOME_CHECK(impl_->require_login());
    auto flushed = flush_outbox();
    if (!flushed.ok() && is_offline(flushed.failure())) return flushed.failure();
    (void)maintain_keys();
    (void)purge_expired();
    auto opened = impl_->link->open_delivery(*impl_->api->token());
    if (!opened.ok()) {
      if (opened.error() == make_error_code(Errc::server_error)) {
        // Refused upgrade: a dead token (401), or a server shutting down (503). Ask which.
        auto probe = impl_->api->devices();
        if (!probe.ok() && probe.failure().http_status == 401)
          return Failure::from(make_error_code(Errc::device_removed), "this device was logged out or removed from the account");
        return Failure::from(opened.error(), "the server refused the delivery connection; try again later");
      }
      return Failure::from(opened.error());
    }
    socket = std::move(opened).value();
    // Messages stored by an earlier run that ended before showing them (a crash between the
    // commit and the screen): shown now, once.
    AfterCommit pending;
    auto st = impl_->store->db().prepare("SELECT id FROM messages WHERE notified = 0 ORDER BY id");
    if (st.ok()) {
      while (true) {
        auto row = st->step();
        if (!row.ok() || !*row) break;
        Event e;
        e.kind = Event::Kind::message;
        e.message.id = st->column_int64(0);
        pending.events.push_back(std::move(e));
      }
    }
    impl_->run_after_commit(pending, options, on_event);
  }
  bool drained = false;
  auto last_activity = std::chrono::steady_clock::now();
  auto last_purge = last_activity;
  while (true) {
    if (options.stop != nullptr && options.stop->load()) break;
    auto frame = socket->receive(std::chrono::milliseconds(200));
    const auto now = std::chrono::steady_clock::now();
    if (!frame.ok()) {
      summary.close_code = socket->close_code();
      if (summary.close_code == 4001)
        return Failure::from(make_error_code(Errc::device_removed), "this device was logged out or removed from the account");
      if (summary.close_code == 4000)
        return Failure::from(make_error_code(Errc::replaced), "another connection of this device took over");
      if (summary.close_code == 1001) return summary;  // the server is restarting
      return Failure::from(frame.error(), "the connection to the server was lost: " + frame.error().message());
    }
    if (now - last_purge > std::chrono::seconds(1)) {
      (void)purge_expired();
      last_purge = now;
    }
    if (!*frame) {
      if (drained && options.idle_timeout.count() >= 0 && now - last_activity >= options.idle_timeout) break;
      continue;
    }
    delivery::v1::ServerFrame top;
    if (!top.ParseFromArray((*frame)->data(), static_cast<int>((*frame)->size()))) continue;
    std::vector<const delivery::v1::ServerFrame*> frames;
    if (top.has_batch()) {
      for (const auto& f : top.batch().frames()) frames.push_back(&f);
    } else {
      frames.push_back(&top);
    }
    delivery::v1::ClientFrame ack;
    bool stop_now = false;
    for (const auto* f : frames) {
      if (f->has_envelope()) {
        const auto& env = f->envelope();
        InboundEnvelope in;
        in.server_id = env.server_id();
        in.sender_account = env.sender_account();
        in.sender_device = env.sender_device();
        in.type = env.type();
        in.timestamp = env.timestamp();
        in.content.assign(env.content().begin(), env.content().end());
        in.client_id = env.client_id();
        AfterCommit after;
        bool duplicate = false;
        {
          std::lock_guard lock(impl_->mutex);
          POSTERN_OUTCOME_CHECK(impl_->process_envelope(in, after, duplicate));
        }
        ++summary.envelopes;
        if (duplicate) ++summary.duplicates;
        if (!duplicate && options.after_commit) options.after_commit();
        ack.mutable_ack()->add_server_ids(env.server_id());
        {
          std::lock_guard lock(impl_->mutex);
          impl_->run_after_commit(after, options, on_event);
        }
      } else if (f->has_queue_empty()) {
        drained = true;
        if (options.idle_timeout.count() == 0) stop_now = true;
      }
    }
    if (ack.has_ack()) {
      const std::string bytes = ack.SerializeAsString();
      POSTERN_OUTCOME_CHECK(socket->send(view_of(bytes)));
    }
    last_activity = std::chrono::steady_clock::now();
    if (stop_now) break;
  }
  socket->close();
  return summary;
}

// ---------------------------------------------------------------- history, read state, timers

Outcome<std::vector<MessageView>> Messenger::history(const Target& with, std::size_t limit) {
  std::lock_guard lock(impl_->mutex);
  (void)purge_expired();
  POSTERN_OUTCOME_TRY(auto conversation, impl_->conversation_of(with, nullptr, nullptr));
  std::vector<std::int64_t> ids;
  {
    POSTERN_OUTCOME_TRY(auto st, impl_->store->db().prepare(
                                     "SELECT id FROM (SELECT id, sent_ms FROM messages WHERE conversation = ? ORDER BY sent_ms DESC, id DESC LIMIT ?) "
                                     "ORDER BY sent_ms, id"));
    POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(conversation), static_cast<std::int64_t>(limit)));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      ids.push_back(st.column_int64(0));
    }
  }
  std::vector<MessageView> out;
  for (auto id : ids) {
    POSTERN_OUTCOME_TRY(auto v, impl_->message_view(id));
    out.push_back(std::move(v));
  }
  return out;
}

Outcome<std::size_t> Messenger::mark_read(const Target& with) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_TRY(auto conversation, impl_->conversation_of(with, nullptr, nullptr));
  std::map<std::int64_t, std::vector<std::int64_t>> receipts;
  std::vector<std::pair<std::int64_t, std::int64_t>> synced;
  {
    POSTERN_OUTCOME_TRY(auto txn, impl_->store->begin());
    POSTERN_OUTCOME_TRY(auto st, impl_->store->db().prepare(
                                     "SELECT sender_account, sent_ms FROM messages WHERE conversation = ? AND outgoing = 0 AND read_ms IS NULL"));
    POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(conversation)));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      receipts[st.column_int64(0)].push_back(st.column_int64(1));
      synced.emplace_back(st.column_int64(0), st.column_int64(1));
    }
    POSTERN_OUTCOME_TRY(auto up, impl_->store->db().prepare(
                                     "UPDATE messages SET read_ms = ?1, expires_at_ms = CASE WHEN expire_timer_s > 0 AND expires_at_ms IS NULL "
                                     "THEN ?1 + expire_timer_s * 1000 ELSE expires_at_ms END WHERE conversation = ?2 AND outgoing = 0 AND read_ms IS NULL"));
    POSTERN_OUTCOME_CHECK(up.bind_all(impl_->clock.now_ms(), std::string_view(conversation)));
    POSTERN_OUTCOME_CHECK(up.run());
    POSTERN_OUTCOME_CHECK(txn.commit());
  }
  if (impl_->require_login().ok()) {
    for (const auto& [sender, stamps] : receipts) {
      pb::Content c;
      c.mutable_receipt_message()->set_type(pb::ReceiptMessage::READ);
      for (auto ts : stamps) c.mutable_receipt_message()->add_timestamps(ts);
      (void)impl_->send_content_to_account(sender, c, impl_->clock.now_ms(), std::nullopt);
    }
    if (!synced.empty() && !impl_->own_other_devices().empty()) {
      pb::Content c;
      for (const auto& [sender, ts] : synced) {
        auto* r = c.mutable_sync_message()->add_read();
        r->set_sender_account(sender);
        r->set_timestamp(ts);
      }
      (void)impl_->send_content_to_account(impl_->account_id, c, impl_->clock.now_ms(), std::nullopt);
    }
  }
  return synced.size();
}

Outcome<Done> Messenger::set_expire_timer(const Target& conversation_target, std::uint32_t seconds) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  if (seconds > 4u * 7 * 24 * 3600) return Failure::from(make_error_code(Errc::invalid_argument), "the longest timer is 4 weeks");
  std::int64_t account = 0;
  std::string group_hex;
  POSTERN_OUTCOME_TRY(auto conversation, impl_->conversation_of(conversation_target, &account, &group_hex));
  POSTERN_OUTCOME_CHECK(impl_->set_conversation_timer(conversation, seconds));
  pb::DataMessage dm;
  dm.set_timestamp(impl_->clock.now_ms());
  dm.set_expire_timer_s(seconds);
  dm.set_expire_timer_update(true);
  if (!group_hex.empty()) {
    POSTERN_OUTCOME_TRY(auto g, impl_->group_view(group_hex));
    dm.mutable_group()->set_id(bytes_string(from_hex(group_hex).value()));
    dm.mutable_group()->set_type(pb::GroupContext::DELIVER);
    dm.mutable_group()->set_revision(g.revision);
    POSTERN_OUTCOME_CHECK(impl_->send_group_data(group_hex, dm, dm.timestamp(), std::nullopt));
  } else {
    pb::Content c;
    *c.mutable_data_message() = dm;
    c.set_sender_email(impl_->email);
    POSTERN_OUTCOME_CHECK(impl_->send_content_to_account(account, c, dm.timestamp(), std::nullopt));
  }
  impl_->sync_sent(account, group_hex.empty() ? impl_->email_of(account).value_or("") : "", dm);
  return Done{};
}

Outcome<std::size_t> Messenger::purge_expired() {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::int64_t> ids;
  {
    POSTERN_OUTCOME_TRY(auto st, impl_->store->db().prepare(
                                     "SELECT id FROM messages WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?"));
    POSTERN_OUTCOME_CHECK(st.bind_all(impl_->clock.now_ms()));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      ids.push_back(st.column_int64(0));
    }
  }
  for (auto id : ids) {
    auto view = impl_->message_view(id);
    if (view.ok()) {
      for (const auto& a : view->attachments) {
        std::error_code ec;
        if (!a.path.empty()) std::filesystem::remove(a.path, ec);
        if (!a.thumbnail_path.empty()) std::filesystem::remove(a.thumbnail_path, ec);
      }
    }
    POSTERN_OUTCOME_TRY(auto del, impl_->store->db().prepare("DELETE FROM messages WHERE id = ?"));
    POSTERN_OUTCOME_CHECK(del.bind_all(id));
    POSTERN_OUTCOME_CHECK(del.run());
  }
  return ids.size();
}

}  // namespace postern::client
