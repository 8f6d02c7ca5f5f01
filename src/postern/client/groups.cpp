// Messenger: groups. Membership travels as GroupContext UPDATE messages inside 1:1 sessions;
// group messages are encrypted once with the sender's Sender Key (GroupCipher) and sent to every
// member device. A member's sender key reaches each device of each member over 1:1 sessions
// before the first group message that needs it (table sender_key_shared). When anyone is removed,
// every remaining member rotates its own sender key, so the removed member cannot read anything
// sent afterwards: the new keys are only distributed to current members.
#include <algorithm>
#include <set>

#include "postern/account/signup.h"
#include "postern/client/detail/messenger_impl.h"
#include "postern/protocol/group_cipher.h"
#include "postern/util/bytes.h"

namespace postern::client {
namespace {

namespace pb = content::v1;
constexpr std::int32_t kGroupEnvelopeType = static_cast<std::int32_t>(protocol::CiphertextType::sender_key);
constexpr std::size_t kMaxGroupMembers = 1024;
constexpr std::size_t kMaxGroupName = 128;

ByteView view_of(const std::string& s) { return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }

bool is_hex_id(const std::string& s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::vector<std::int64_t> Messenger::Impl::group_members(const std::string& group_hex) {
  std::vector<std::int64_t> out;
  auto st = store->db().prepare("SELECT account_id FROM group_members WHERE group_id = ? ORDER BY account_id");
  if (!st.ok() || !st->bind_all(std::string_view(group_hex)).ok()) return out;
  while (true) {
    auto row = st->step();
    if (!row.ok() || !*row) break;
    out.push_back(st->column_int64(0));
  }
  return out;
}

Outcome<GroupView> Messenger::Impl::group_view(const std::string& group_hex) {
  POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT name, revision, active FROM groups WHERE id = ?"));
  POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(group_hex)));
  POSTERN_OUTCOME_TRY(bool row, st.step());
  if (!row) return Failure::from(make_error_code(Errc::unknown_group), "no such group");
  GroupView g;
  g.id = group_hex;
  POSTERN_OUTCOME_TRY(auto name, store->unseal(st.column_blob(0), "groups.name:" + group_hex));
  g.name.assign(reinterpret_cast<const char*>(name.data()), name.size());
  g.revision = static_cast<std::uint64_t>(st.column_int64(1));
  g.active = st.column_int64(2) != 0;
  for (auto m : group_members(group_hex)) g.members.emplace_back(m, email_of(m).value_or(""));
  return g;
}

Outcome<std::string> Messenger::Impl::resolve_group(const std::string& name_or_id) {
  std::vector<std::string> ids;
  {
    POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT id FROM groups ORDER BY updated_ms DESC"));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      ids.push_back(st.column_text(0));
    }
  }
  if (is_hex_id(name_or_id) && std::find(ids.begin(), ids.end(), name_or_id) != ids.end()) return name_or_id;
  std::vector<std::string> matches;
  for (const auto& id : ids) {
    auto g = group_view(id);
    if (g.ok() && g->name == name_or_id) matches.push_back(id);
  }
  if (matches.empty()) return Failure::from(make_error_code(Errc::unknown_group), "no group is named " + name_or_id);
  if (matches.size() > 1)
    return Failure::from(make_error_code(Errc::invalid_argument),
                         "several groups are named " + name_or_id + "; name one by its id (postern groups list)");
  return matches.front();
}

static Status write_group(Messenger::Impl& m, const std::string& gid, const std::string& name, std::uint64_t revision,
                          std::int64_t creator, bool active, const std::vector<std::int64_t>& members) {
  POSTERN_TRY(auto sealed, m.store->seal(view_of(name), "groups.name:" + gid));
  POSTERN_TRY(auto st, m.store->db().prepare(
                           "INSERT INTO groups (id, name, revision, creator, active, updated_ms) VALUES (?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT(id) DO UPDATE SET name = excluded.name, revision = excluded.revision, active = excluded.active, "
                           "updated_ms = excluded.updated_ms"));
  POSTERN_CHECK(st.bind_all(std::string_view(gid), ByteView(sealed), static_cast<std::int64_t>(revision), creator,
                            std::int64_t{active ? 1 : 0}, m.clock.now_ms()));
  POSTERN_CHECK(st.run());
  POSTERN_TRY(auto del, m.store->db().prepare("DELETE FROM group_members WHERE group_id = ?"));
  POSTERN_CHECK(del.bind_all(std::string_view(gid)));
  POSTERN_CHECK(del.run());
  for (auto member : members) {
    POSTERN_TRY(auto ins, m.store->db().prepare("INSERT OR IGNORE INTO group_members (group_id, account_id) VALUES (?, ?)"));
    POSTERN_CHECK(ins.bind_all(std::string_view(gid), member));
    POSTERN_CHECK(ins.run());
  }
  POSTERN_TRY(auto conv, m.store->db().prepare(
                             "INSERT INTO conversations (id, expire_timer_s, updated_ms) VALUES (?, 0, ?) "
                             "ON CONFLICT(id) DO UPDATE SET updated_ms = excluded.updated_ms"));
  const std::string conversation = "g:" + gid;  // bound by reference: must outlive run()
  POSTERN_CHECK(conv.bind_all(std::string_view(conversation), m.clock.now_ms()));
  return conv.run();
}

Status Messenger::Impl::rotate_own_sender_key(const std::string& group_hex) {
  POSTERN_CHECK(protocol::rotate_sender_key(*store, protocol::SenderKeyName{group_hex, {name_of(account_id), device_id}}));
  POSTERN_TRY(auto st, store->db().prepare("DELETE FROM sender_key_shared WHERE group_id = ?"));
  POSTERN_CHECK(st.bind_all(std::string_view(group_hex)));
  return st.run();
}

Status Messenger::Impl::apply_group_context(std::int64_t sender, const pb::GroupContext& g, AfterCommit& after) {
  if (g.id().size() != 16) return {};
  const std::string gid = to_hex(view_of(g.id()));
  auto existing = group_view(gid);
  std::vector<std::int64_t> members(g.members().begin(), g.members().end());
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  if (members.size() > kMaxGroupMembers || g.name().size() > kMaxGroupName) return {};
  const bool self_in = std::find(members.begin(), members.end(), account_id) != members.end();
  Event e;
  e.kind = Event::Kind::group_updated;
  e.from_account = sender;
  e.group_id = gid;
  if (!existing.ok()) {
    if (g.type() != pb::GroupContext::UPDATE || !self_in) return {};
    if (std::find(members.begin(), members.end(), sender) == members.end()) return {};
    POSTERN_CHECK(write_group(*this, gid, g.name(), g.revision(), sender, true, members));
    e.group_name = g.name();
    after.events.push_back(std::move(e));
    return {};
  }
  const auto current = group_members(gid);
  if (sender != account_id && std::find(current.begin(), current.end(), sender) == current.end()) return {};
  if (g.type() == pb::GroupContext::QUIT) {
    std::vector<std::int64_t> rest;
    for (auto m : current)
      if (m != sender) rest.push_back(m);
    POSTERN_CHECK(write_group(*this, gid, existing->name, existing->revision + 1, sender, existing->active, rest));
    after.rotate_groups.insert(gid);
    e.group_name = existing->name;
    after.events.push_back(std::move(e));
    return {};
  }
  if (g.type() != pb::GroupContext::UPDATE || g.revision() <= existing->revision) return {};
  bool removed_someone = false;
  for (auto m : current)
    if (std::find(members.begin(), members.end(), m) == members.end()) removed_someone = true;
  POSTERN_CHECK(write_group(*this, gid, g.name(), g.revision(), sender, self_in, members));
  if (!self_in) {
    // Removed: forget every sender key of the group, ours included.
    POSTERN_CHECK(store->delete_sender_keys(gid));
  } else if (removed_someone) {
    after.rotate_groups.insert(gid);
  }
  e.group_name = g.name();
  after.events.push_back(std::move(e));
  return {};
}

Outcome<Done> Messenger::Impl::broadcast_group_update(const std::string& group_hex, const std::vector<std::int64_t>& extra) {
  POSTERN_OUTCOME_TRY(auto g, group_view(group_hex));
  pb::DataMessage dm;
  dm.set_timestamp(clock.now_ms());
  auto* ctx = dm.mutable_group();
  ctx->set_id(bytes_string(from_hex(group_hex).value()));
  ctx->set_type(pb::GroupContext::UPDATE);
  ctx->set_revision(g.revision);
  ctx->set_name(g.name);
  std::vector<std::int64_t> recipients;
  for (const auto& [member, mail] : g.members) {
    ctx->add_members(member);
    if (member != account_id) recipients.push_back(member);
  }
  recipients.insert(recipients.end(), extra.begin(), extra.end());
  pb::Content c;
  *c.mutable_data_message() = dm;
  c.set_sender_email(email);
  std::optional<Failure> first_failure;
  for (auto r : recipients) {
    auto sent = send_content_to_account(r, c, dm.timestamp(), std::nullopt);
    if (!sent.ok() && !first_failure) first_failure = sent.failure();
  }
  sync_sent(0, "", dm);
  if (first_failure && first_failure->http_status == 0) return *first_failure;
  return Done{};
}

Outcome<Done> Messenger::Impl::send_group_data(const std::string& group_hex, const pb::DataMessage& dm, std::int64_t timestamp,
                                               std::optional<std::int64_t> message_id) {
  const protocol::SenderKeyName own{group_hex, {name_of(account_id), device_id}};
  std::vector<std::int64_t> recipients;
  for (auto m : group_members(group_hex))
    if (m != account_id) recipients.push_back(m);
  std::optional<Failure> first_failure;
  std::vector<std::int64_t> reachable;
  // 1. Our current sender key to every member device that lacks it.
  for (auto member : recipients) {
    const std::string name = name_of(member);
    POSTERN_OUTCOME_TRY(auto devices, store->device_ids(name));
    if (devices.empty()) {
      auto fetched = fetch_sessions(member, {});
      if (!fetched.ok()) {
        if (!first_failure) first_failure = fetched.failure();
        continue;
      }
      POSTERN_OUTCOME_TRY(auto again, store->device_ids(name));
      devices = std::move(again);
    }
    bool missing = false;
    for (auto d : devices) {
      POSTERN_OUTCOME_TRY(auto st, store->db().prepare(
                                       "SELECT 1 FROM sender_key_shared WHERE group_id = ? AND account_id = ? AND device_id = ?"));
      POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(group_hex), member, std::int64_t{d}));
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) missing = true;
    }
    if (missing) {
      POSTERN_OUTCOME_TRY(auto skdm, protocol::create_sender_key_distribution(*store, own, rng));
      pb::Content c;
      c.set_sender_key_distribution(skdm.serialized().data(), skdm.serialized().size());
      c.set_sender_key_group(bytes_string(from_hex(group_hex).value()));
      c.set_sender_email(email);
      auto sent = send_content_to_account(member, c, clock.now_ms(), std::nullopt);
      if (!sent.ok()) {
        if (!first_failure) first_failure = sent.failure();
        continue;
      }
      POSTERN_OUTCOME_TRY(auto now_devices, store->device_ids(name));
      for (auto d : now_devices) {
        POSTERN_OUTCOME_TRY(auto ins, store->db().prepare(
                                          "INSERT OR IGNORE INTO sender_key_shared (group_id, account_id, device_id) VALUES (?, ?, ?)"));
        POSTERN_OUTCOME_CHECK(ins.bind_all(std::string_view(group_hex), member, std::int64_t{d}));
        POSTERN_OUTCOME_CHECK(ins.run());
      }
    }
    reachable.push_back(member);
  }
  // 2. One encryption with our sender key, the same ciphertext to every member device.
  pb::Content c;
  *c.mutable_data_message() = dm;
  c.set_sender_email(email);
  const Bytes padded = serialize_padded(c);
  protocol::GroupCipher cipher(*store, own, rng);
  POSTERN_OUTCOME_TRY(auto ciphertext, cipher.encrypt(padded));
  pb::GroupCiphertext gc;
  gc.set_group_id(bytes_string(from_hex(group_hex).value()));
  gc.set_ciphertext(ciphertext.data(), ciphertext.size());
  const std::string wire = gc.SerializeAsString();
  for (auto member : reachable) {
    auto sent = send_to_account(member, view_of(wire), timestamp, message_id, kGroupEnvelopeType);
    if (!sent.ok() && !first_failure) first_failure = sent.failure();
  }
  if (first_failure && (reachable.empty() || first_failure->http_status == 0)) return *first_failure;
  return Done{};
}

// ---- public group operations ----

Outcome<GroupView> Messenger::create_group(const std::string& name, const std::vector<std::string>& member_emails) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  if (name.empty() || name.size() > kMaxGroupName)
    return Failure::from(make_error_code(Errc::invalid_argument), "a group name has 1 to 128 bytes");
  if (member_emails.size() + 1 > kMaxGroupMembers)
    return Failure::from(make_error_code(Errc::too_large), "a group has at most 1024 members");
  std::vector<std::int64_t> members{impl_->account_id};
  for (const auto& mail : member_emails) {
    POSTERN_OUTCOME_TRY(auto contact, impl_->contact_by_email(mail));
    members.push_back(contact.account_id);
  }
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  Bytes id(16);
  impl_->rng.fill(id);
  const std::string gid = to_hex(id);
  {
    POSTERN_OUTCOME_TRY(auto txn, impl_->store->begin());
    POSTERN_OUTCOME_CHECK(write_group(*impl_, gid, name, 1, impl_->account_id, true, members));
    POSTERN_OUTCOME_CHECK(txn.commit());
  }
  POSTERN_OUTCOME_CHECK(impl_->broadcast_group_update(gid, {}));
  return impl_->group_view(gid);
}

static Outcome<GroupView> change_group(Messenger::Impl& m, const std::string& group, const std::vector<std::string>* add,
                                       const std::vector<std::string>* remove, const std::string* rename) {
  POSTERN_OUTCOME_CHECK(m.require_login());
  POSTERN_OUTCOME_TRY(auto gid, m.resolve_group(group));
  POSTERN_OUTCOME_TRY(auto g, m.group_view(gid));
  if (!g.active) return Failure::from(make_error_code(Errc::not_allowed), "you are no longer a member of " + g.name);
  std::vector<std::int64_t> members;
  for (const auto& [id, mail] : g.members) members.push_back(id);
  std::vector<std::int64_t> removed;
  if (add != nullptr) {
    for (const auto& mail : *add) {
      POSTERN_OUTCOME_TRY(auto contact, m.contact_by_email(mail));
      if (std::find(members.begin(), members.end(), contact.account_id) == members.end()) members.push_back(contact.account_id);
    }
    if (members.size() > kMaxGroupMembers) return Failure::from(make_error_code(Errc::too_large), "a group has at most 1024 members");
  }
  if (remove != nullptr) {
    for (const auto& mail : *remove) {
      POSTERN_OUTCOME_TRY(auto contact, m.contact_by_email(mail));
      if (contact.account_id == m.account_id)
        return Failure::from(make_error_code(Errc::not_allowed), "you cannot remove yourself; leave the group instead");
      const auto it = std::find(members.begin(), members.end(), contact.account_id);
      if (it == members.end()) return Failure::from(make_error_code(Errc::invalid_argument), contact.email + " is not in " + g.name);
      members.erase(it);
      removed.push_back(contact.account_id);
    }
  }
  std::string name = g.name;
  if (rename != nullptr) {
    if (rename->empty() || rename->size() > kMaxGroupName)
      return Failure::from(make_error_code(Errc::invalid_argument), "a group name has 1 to 128 bytes");
    name = *rename;
  }
  std::sort(members.begin(), members.end());
  {
    POSTERN_OUTCOME_TRY(auto txn, m.store->begin());
    POSTERN_OUTCOME_CHECK(write_group(m, gid, name, g.revision + 1, m.account_id, true, members));
    POSTERN_OUTCOME_CHECK(txn.commit());
  }
  POSTERN_OUTCOME_CHECK(m.broadcast_group_update(gid, removed));
  if (!removed.empty()) POSTERN_OUTCOME_CHECK(m.rotate_own_sender_key(gid));
  return m.group_view(gid);
}

Outcome<GroupView> Messenger::add_members(const std::string& group, const std::vector<std::string>& emails) {
  std::lock_guard lock(impl_->mutex);
  return change_group(*impl_, group, &emails, nullptr, nullptr);
}

Outcome<GroupView> Messenger::remove_members(const std::string& group, const std::vector<std::string>& emails) {
  std::lock_guard lock(impl_->mutex);
  return change_group(*impl_, group, nullptr, &emails, nullptr);
}

Outcome<GroupView> Messenger::rename_group(const std::string& group, const std::string& new_name) {
  std::lock_guard lock(impl_->mutex);
  return change_group(*impl_, group, nullptr, nullptr, &new_name);
}

Outcome<std::vector<GroupView>> Messenger::groups() {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string> ids;
  {
    POSTERN_OUTCOME_TRY(auto st, impl_->store->db().prepare("SELECT id FROM groups ORDER BY updated_ms DESC"));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      ids.push_back(st.column_text(0));
    }
  }
  std::vector<GroupView> out;
  for (const auto& id : ids) {
    POSTERN_OUTCOME_TRY(auto g, impl_->group_view(id));
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace postern::client
