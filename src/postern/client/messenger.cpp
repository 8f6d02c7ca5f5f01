// Messenger: opening a profile, the server and the account, keys, contacts, devices and safety
// numbers. Sending and receiving are in messaging.cpp, groups in groups.cpp, attachments in
// transfer.cpp.
#include "postern/client/messenger.h"

#include <algorithm>
#include <charconv>

#include "postern/account/proof_of_work.h"
#include "postern/account/signup.h"
#include "postern/client/detail/messenger_impl.h"
#include "postern/protocol/fingerprint.h"
#include "postern/protocol/keys.h"
#include "postern/util/bytes.h"

namespace postern::client {
namespace {

constexpr std::uint32_t kMaxPreKeyId = 0xFFFFFF;

}  // namespace

std::string random_hex(crypto::Rng& rng, std::size_t bytes) {
  Bytes b(bytes);
  rng.fill(b);
  return to_hex(b);
}

const char* to_string(MessageStatus status) {
  switch (status) {
    case MessageStatus::sending: return "sending";
    case MessageStatus::sent: return "sent";
    case MessageStatus::delivered: return "delivered";
    case MessageStatus::read: return "read";
    case MessageStatus::failed: return "failed";
    case MessageStatus::received: return "received";
  }
  return "unknown";
}

Messenger::Messenger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Messenger::~Messenger() = default;

LocalStore& Messenger::store() { return *impl_->store; }
const MessengerConfig& Messenger::config() const { return impl_->config; }

Outcome<std::unique_ptr<Messenger>> Messenger::open(MessengerConfig config, crypto::Rng& rng, const Clock& clock) {
  auto impl = std::make_unique<Impl>(std::move(config), rng, clock);
  auto store = LocalStore::open(impl->config.profile_dir, impl->config.store, rng, clock);
  if (!store.ok()) {
    if (store.error() == make_error_code(Errc::store_locked))
      return Failure::from(store.error(),
                           "the profile is locked: another postern process (a daemon?) uses it, or the passphrase is wrong");
    return Failure::from(store.error(), "cannot open the profile: " + store.error().message());
  }
  impl->store = std::move(store).value();
  impl->store->set_identity_change_policy(impl->config.identity_policy);
  POSTERN_OUTCOME_CHECK(impl->load_settings());
  return std::unique_ptr<Messenger>(new Messenger(std::move(impl)));
}

Outcome<Done> Messenger::Impl::load_settings() {
  POSTERN_OUTCOME_TRY(auto invite_text, store->setting_text(settings::kInvite));
  if (invite_text) {
    auto parsed = parse_invite(*invite_text);
    if (parsed.ok()) invite = *parsed;
  }
  POSTERN_OUTCOME_TRY(auto account, store->setting_int(settings::kAccountId));
  POSTERN_OUTCOME_TRY(auto device, store->setting_int(settings::kDeviceId));
  POSTERN_OUTCOME_TRY(auto mail, store->setting_text(settings::kEmail));
  account_id = account.value_or(0);
  device_id = static_cast<std::uint32_t>(device.value_or(0));
  email = mail.value_or("");
  POSTERN_OUTCOME_TRY(auto seq, store->db().prepare("SELECT COALESCE(MAX(seq), 0) FROM outbox"));
  POSTERN_OUTCOME_TRY(bool row, seq.step());
  outbox_seq = row ? seq.column_int64(0) : 0;
  return Done{};
}

Outcome<Done> Messenger::Impl::connect_link() {
  if (api) return Done{};
  if (!invite) return Failure::from(make_error_code(Errc::not_registered), "no server yet: run `postern join INVITE` first");
  if (!config.link_factory) return Failure::from(make_error_code(Errc::unreachable), "no network link configured");
  auto made = config.link_factory(*invite);
  if (!made.ok()) return Failure::from(made.error(), "cannot set up the connection: " + made.error().message());
  link = std::move(made).value();
  api = std::make_unique<ServerApi>(*link);
  POSTERN_OUTCOME_TRY(auto token, store->setting(settings::kToken));
  if (token) api->set_token(std::string(reinterpret_cast<const char*>(token->data()), token->size()));
  return Done{};
}

Outcome<Done> Messenger::Impl::require_login() {
  POSTERN_OUTCOME_CHECK(connect_link());
  if (account_id == 0 || !api->token())
    return Failure::from(make_error_code(Errc::not_registered), "this profile is not signed in: run `postern register` or `postern login`");
  return Done{};
}

Outcome<Done> Messenger::join(std::string_view invite_text) {
  std::lock_guard lock(impl_->mutex);
  auto parsed = parse_invite(invite_text);
  if (!parsed.ok()) return Failure::from(parsed.error(), "invalid invite: " + explain_invite_error(invite_text));
  // A signed-in profile may change the path to its server (another address, a port forward), not
  // the server: the pinned key must stay the same.
  if (impl_->account_id != 0 && impl_->invite && impl_->invite->pin != parsed->pin)
    return Failure::from(make_error_code(Errc::not_allowed),
                         "this profile is signed in on another server; use a new --profile for this invite");
  POSTERN_OUTCOME_CHECK(impl_->store->set_setting_text(settings::kInvite, parsed->to_string()));
  impl_->invite = *parsed;
  impl_->api.reset();
  impl_->link.reset();
  return Done{};
}

std::optional<Invite> Messenger::invite() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->invite;
}

bool Messenger::logged_in() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->account_id != 0 && impl_->device_id != 0;
}
std::int64_t Messenger::account_id() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->account_id;
}
std::uint32_t Messenger::device_id() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->device_id;
}
std::string Messenger::email() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->email;
}

Outcome<Done> Messenger::register_account(const RegisterForm& form,
                                          const std::function<bool(std::uint64_t)>& pow_progress) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->account_id != 0)
    return Failure::from(make_error_code(Errc::not_allowed), "this profile is already signed in; use a new --profile");
  // The same rules as the server, so mistakes are shown before any work is done.
  account::SignupForm signup{form.email, form.password, form.birthdate, form.accept_terms};
  const auto problems = account::validate_signup(signup, impl_->clock);
  if (!problems.empty()) {
    Failure f = Failure::from(make_error_code(Errc::invalid_argument), "the form has mistakes");
    f.server_code = "invalid_fields";
    for (const auto& p : problems) f.fields.push_back({p.field, p.message});
    return f;
  }
  POSTERN_OUTCOME_CHECK(impl_->connect_link());
  POSTERN_OUTCOME_TRY(auto challenge, impl_->api->challenge());
  auto nonce = account::solve(challenge.token, challenge.difficulty, pow_progress);
  if (!nonce.ok()) return Failure::from(nonce.error(), "the anti-bot challenge was not solved: " + nonce.error().message());
  POSTERN_OUTCOME_TRY(auto account, impl_->api->register_account(form.email, form.password, form.birthdate,
                                                                 form.accept_terms, challenge.token, *nonce));
  (void)account;
  return impl_->finish_login_with_password(form.email, form.password);
}

Outcome<Done> Messenger::login(const std::string& email, const std::string& password) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->account_id != 0 && impl_->api && impl_->api->token())
    return Failure::from(make_error_code(Errc::not_allowed), "this profile is already signed in (run `postern logout` first)");
  POSTERN_OUTCOME_CHECK(impl_->connect_link());
  return impl_->finish_login_with_password(email, password);
}

Outcome<Done> Messenger::Impl::finish_login_with_password(const std::string& mail, const std::string& password) {
  // The identity belongs to the profile: a profile that logs in again keeps it (contacts see no
  // change); a new profile makes one (contacts are told the safety number changed).
  POSTERN_OUTCOME_TRY(bool has_identity, store->has_local_identity());
  if (!has_identity) {
    const auto pair = protocol::IdentityKeyPair::generate(rng);
    POSTERN_OUTCOME_CHECK(store->set_local_identity(pair, protocol::generate_registration_id(rng)));
  }
  POSTERN_OUTCOME_TRY(auto pair, store->identity_key_pair());
  POSTERN_OUTCOME_TRY(auto registration_id, store->local_registration_id());
  POSTERN_OUTCOME_TRY(auto info, api->login(mail, password, config.device_name, pair.public_key, registration_id));
  return finish_login(info, account::normalize_email(mail));
}

Outcome<Done> Messenger::Impl::finish_login(const LoginInfo& info, const std::string& normalized_email) {
  {
    POSTERN_OUTCOME_TRY(auto txn, store->begin());
    POSTERN_OUTCOME_CHECK(store->set_setting_int(settings::kAccountId, info.account_id));
    POSTERN_OUTCOME_CHECK(store->set_setting_int(settings::kDeviceId, info.device_id));
    POSTERN_OUTCOME_CHECK(store->set_setting(settings::kToken, ByteView(reinterpret_cast<const std::uint8_t*>(info.token.data()), info.token.size())));
    POSTERN_OUTCOME_CHECK(store->set_setting_text(settings::kEmail, normalized_email));
    POSTERN_OUTCOME_CHECK(txn.commit());
  }
  account_id = info.account_id;
  device_id = info.device_id;
  email = normalized_email;
  api->set_token(info.token);
  return upload_new_pre_keys(config.pre_key_batch, /*with_signed=*/true);
}

Outcome<Done> Messenger::Impl::upload_new_pre_keys(std::size_t count, bool with_signed) {
  POSTERN_OUTCOME_TRY(auto pair, store->identity_key_pair());
  POSTERN_OUTCOME_TRY(auto next, store->setting_int(settings::kNextPreKeyId));
  std::uint32_t id = static_cast<std::uint32_t>(next.value_or(1));
  std::vector<OneTimePreKey> uploads;
  std::optional<SignedPreKeyUpload> signed_upload;
  {
    POSTERN_OUTCOME_TRY(auto txn, store->begin());
    for (std::size_t i = 0; i < count; ++i) {
      const auto record = protocol::PreKeyRecord::generate(id, rng);
      POSTERN_OUTCOME_CHECK(store->store_pre_key(id, record.serialize()));
      uploads.push_back({id, record.key_pair.public_key});
      id = id >= kMaxPreKeyId ? 1 : id + 1;
    }
    POSTERN_OUTCOME_CHECK(store->set_setting_int(settings::kNextPreKeyId, id));
    if (with_signed) {
      POSTERN_OUTCOME_TRY(auto next_signed, store->setting_int(settings::kNextSignedPreKeyId));
      const auto signed_id = static_cast<std::uint32_t>(next_signed.value_or(1));
      const auto record = protocol::SignedPreKeyRecord::generate(signed_id, pair, clock.now_ms(), rng);
      POSTERN_OUTCOME_CHECK(store->store_signed_pre_key(signed_id, record.serialize()));
      POSTERN_OUTCOME_CHECK(store->set_setting_int(settings::kNextSignedPreKeyId, signed_id >= kMaxPreKeyId ? 1 : signed_id + 1));
      signed_upload = SignedPreKeyUpload{signed_id, record.key_pair.public_key, record.signature};
    }
    POSTERN_OUTCOME_CHECK(txn.commit());
  }
  POSTERN_OUTCOME_TRY(auto remaining, api->upload_keys(signed_upload, uploads));
  (void)remaining;
  return Done{};
}

Outcome<Done> Messenger::maintain_keys() {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  POSTERN_OUTCOME_TRY(auto count, impl_->api->key_count());
  POSTERN_OUTCOME_TRY(auto signed_keys, impl_->store->signed_pre_keys());
  const std::int64_t now = impl_->clock.now_ms();
  const bool rotate = signed_keys.empty() || !count.signed_pre_key_id ||
                      now - signed_keys.back().created_ms >= impl_->config.signed_pre_key_rotation_ms;
  const bool refill = count.one_time < impl_->config.pre_key_low_water;
  if (rotate || refill) {
    const std::size_t n = refill ? impl_->config.pre_key_batch - std::min(count.one_time, impl_->config.pre_key_batch) : 0;
    POSTERN_OUTCOME_CHECK(impl_->upload_new_pre_keys(n, rotate));
  }
  // Old signed prekeys stay a while for messages still in flight, then go.
  POSTERN_OUTCOME_TRY(auto after, impl_->store->signed_pre_keys());
  for (std::size_t i = 0; i + 1 < after.size(); ++i) {
    if (now - after[i + 1].created_ms > impl_->config.signed_pre_key_keep_ms)
      POSTERN_OUTCOME_CHECK(impl_->store->remove_signed_pre_key(after[i].id));
  }
  return Done{};
}

Outcome<Done> Messenger::logout() {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  auto result = impl_->api->logout();
  // A token the server no longer knows is as good as logged out.
  if (!result.ok() && result.failure().http_status != 401) return result.failure();
  POSTERN_OUTCOME_CHECK(impl_->store->delete_setting(settings::kToken));
  POSTERN_OUTCOME_CHECK(impl_->store->delete_setting(settings::kAccountId));
  POSTERN_OUTCOME_CHECK(impl_->store->delete_setting(settings::kDeviceId));
  impl_->api->set_token(std::nullopt);
  impl_->account_id = 0;
  impl_->device_id = 0;
  return Done{};
}

// ---- contacts ----

Status Messenger::Impl::save_contact(std::int64_t account, const std::string& normalized_email) {
  const std::string index = store->blind_index(normalized_email);
  POSTERN_TRY(auto sealed, store->seal(ByteView(reinterpret_cast<const std::uint8_t*>(normalized_email.data()), normalized_email.size()),
                                       "contacts.email:" + std::to_string(account)));
  // An address that moved to another account (deleted and registered again) follows the newest.
  POSTERN_TRY(auto del, store->db().prepare("DELETE FROM contacts WHERE email_index = ? AND account_id != ?"));
  POSTERN_CHECK(del.bind_all(std::string_view(index), account));
  POSTERN_CHECK(del.run());
  POSTERN_TRY(auto st, store->db().prepare(
                           "INSERT INTO contacts (account_id, email_index, email, added_ms) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT(account_id) DO UPDATE SET email_index = excluded.email_index, email = excluded.email"));
  POSTERN_CHECK(st.bind_all(account, std::string_view(index), ByteView(sealed), clock.now_ms()));
  return st.run();
}

std::optional<std::string> Messenger::Impl::email_of(std::int64_t account) {
  if (account == account_id && !email.empty()) return email;
  auto st = store->db().prepare("SELECT email FROM contacts WHERE account_id = ?");
  if (!st.ok() || !st->bind_all(account).ok()) return std::nullopt;
  auto row = st->step();
  if (!row.ok() || !*row) return std::nullopt;
  auto plain = store->unseal(st->column_blob(0), "contacts.email:" + std::to_string(account));
  if (!plain.ok()) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(plain->data()), plain->size());
}

Outcome<Contact> Messenger::Impl::contact_by_email(const std::string& raw_email) {
  const std::string normalized = account::normalize_email(raw_email);
  if (!account::check_email(normalized).empty())
    return Failure::from(make_error_code(Errc::invalid_argument), "not an e-mail address: " + std::string(account::check_email(normalized)));
  Contact contact;
  contact.email = normalized;
  {
    POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT account_id FROM contacts WHERE email_index = ?"));
    const std::string index = store->blind_index(normalized);  // bound by reference: must outlive step()
    POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(index)));
    POSTERN_OUTCOME_TRY(bool row, st.step());
    if (row) contact.account_id = st.column_int64(0);
  }
  if (contact.account_id == 0) {
    POSTERN_OUTCOME_CHECK(require_login());
    auto entry = api->lookup(normalized);
    if (!entry.ok()) {
      if (entry.failure().http_status == 404)
        return Failure::from(make_error_code(Errc::unknown_contact), "no Postern account uses " + normalized);
      return entry.failure();
    }
    contact.account_id = entry->account_id;
    POSTERN_OUTCOME_CHECK(save_contact(contact.account_id, normalized));
  }
  POSTERN_OUTCOME_TRY(auto ids, store->identities_of(name_of(contact.account_id)));
  for (const auto& [device, info] : ids) {
    if (info.state == TrustState::verified) contact.verified = true;
    if (info.state == TrustState::changed_blocked) contact.identity_blocked = true;
  }
  return contact;
}

void Messenger::Impl::learn_contact(std::int64_t account, const std::string& claimed_email) {
  if (account == account_id || claimed_email.empty() || email_of(account)) return;
  const std::string normalized = account::normalize_email(claimed_email);
  if (!account::check_email(normalized).empty() || !api) return;
  auto entry = api->lookup(normalized);
  if (entry.ok() && entry->account_id == account) (void)save_contact(account, normalized);
}

Outcome<Contact> Messenger::add_contact(const std::string& email) {
  std::lock_guard lock(impl_->mutex);
  return impl_->contact_by_email(email);
}

Outcome<std::vector<Contact>> Messenger::contacts() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Contact> out;
  std::vector<std::int64_t> ids;
  {
    POSTERN_OUTCOME_TRY(auto st, impl_->store->db().prepare("SELECT account_id FROM contacts ORDER BY added_ms, account_id"));
    while (true) {
      POSTERN_OUTCOME_TRY(bool row, st.step());
      if (!row) break;
      ids.push_back(st.column_int64(0));
    }
  }
  for (auto id : ids) {
    Contact c;
    c.account_id = id;
    c.email = impl_->email_of(id).value_or("");
    POSTERN_OUTCOME_TRY(auto identities, impl_->store->identities_of(Impl::name_of(id)));
    for (const auto& [device, info] : identities) {
      if (info.state == TrustState::verified) c.verified = true;
      if (info.state == TrustState::changed_blocked) c.identity_blocked = true;
    }
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const Contact& a, const Contact& b) { return a.email < b.email; });
  return out;
}

// ---- own devices ----

std::vector<std::uint32_t> Messenger::Impl::own_other_devices() {
  std::vector<std::uint32_t> out;
  auto text = store->setting_text(settings::kOwnDevices);
  if (!text.ok() || !*text) return out;
  std::string_view rest = **text;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto part = rest.substr(0, comma);
    std::uint32_t id = 0;
    if (std::from_chars(part.data(), part.data() + part.size(), id).ec == std::errc{} && id != device_id) out.push_back(id);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return out;
}

Status Messenger::Impl::set_own_other_devices(const std::vector<std::uint32_t>& ids) {
  std::string text;
  for (auto id : ids) {
    if (id == device_id) continue;
    if (!text.empty()) text += ',';
    text += std::to_string(id);
  }
  return store->set_setting_text(settings::kOwnDevices, text);
}

Outcome<std::vector<DeviceInfo>> Messenger::devices() {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  POSTERN_OUTCOME_TRY(auto list, impl_->api->devices());
  std::vector<std::uint32_t> ids;
  for (const auto& d : list) ids.push_back(d.id);
  POSTERN_OUTCOME_CHECK(impl_->set_own_other_devices(ids));
  return list;
}

Outcome<Done> Messenger::remove_device(std::uint32_t id) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  if (id == impl_->device_id)
    return Failure::from(make_error_code(Errc::not_allowed), "this is the current device; use `postern logout` instead");
  auto removed = impl_->api->remove_device(id);
  if (!removed.ok()) {
    if (removed.failure().http_status == 404)
      return Failure::from(make_error_code(Errc::invalid_argument), "the account has no device " + std::to_string(id));
    return removed.failure();
  }
  POSTERN_OUTCOME_CHECK(impl_->store->delete_session({Impl::name_of(impl_->account_id), id}));
  auto others = impl_->own_other_devices();
  others.erase(std::remove(others.begin(), others.end(), id), others.end());
  POSTERN_OUTCOME_CHECK(impl_->set_own_other_devices(others));
  return Done{};
}

// ---- safety numbers ----

Outcome<SafetyNumber> Messenger::safety_number(const std::string& email) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_TRY(auto contact, impl_->contact_by_email(email));
  const std::string name = Impl::name_of(contact.account_id);
  POSTERN_OUTCOME_TRY(auto identities, impl_->store->identities_of(name));
  if (identities.empty()) {
    POSTERN_OUTCOME_CHECK(impl_->fetch_sessions(contact.account_id, {}));
    POSTERN_OUTCOME_TRY(auto again, impl_->store->identities_of(name));
    identities = std::move(again);
  }
  if (identities.empty())
    return Failure::from(make_error_code(Errc::unknown_contact), contact.email + " has no keys on the server yet");
  POSTERN_OUTCOME_TRY(auto own, impl_->store->identity_key_pair());
  // The account's identity: the newest key we hold for it (linked devices share one key; after a
  // reinstall the new key is the one to compare).
  const IdentityInfo* newest = &identities.front().second;
  for (const auto& [device, info] : identities)
    if (info.first_seen_ms > newest->first_seen_ms) newest = &info;
  const IdentityInfo& theirs = *newest;
  POSTERN_OUTCOME_TRY(auto fp, protocol::create_fingerprint(5200, 0, impl_->email, own.public_key, contact.email, theirs.key));
  SafetyNumber out;
  out.digits = fp.displayable;
  out.scannable = fp.scannable;
  out.contact_account = contact.account_id;
  for (const auto& [device, info] : identities) {
    if (info.state == TrustState::changed_blocked) out.changed = true;
  }
  out.verified = !out.changed && theirs.state == TrustState::verified;
  return out;
}

Outcome<Done> Messenger::accept_identity(const std::string& email) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_TRY(auto contact, impl_->contact_by_email(email));
  POSTERN_OUTCOME_TRY(auto identities, impl_->store->identities_of(Impl::name_of(contact.account_id)));
  for (const auto& [device, info] : identities)
    POSTERN_OUTCOME_CHECK(impl_->store->accept_identity({Impl::name_of(contact.account_id), device}));
  return Done{};
}

Outcome<Done> Messenger::set_verified(const std::string& email, bool verified) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_TRY(auto contact, impl_->contact_by_email(email));
  POSTERN_OUTCOME_TRY(auto identities, impl_->store->identities_of(Impl::name_of(contact.account_id)));
  for (const auto& [device, info] : identities)
    POSTERN_OUTCOME_CHECK(impl_->store->set_verified({Impl::name_of(contact.account_id), device}, verified));
  return Done{};
}

}  // namespace postern::client
