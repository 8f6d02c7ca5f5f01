#include "postern/server/api.h"

#include <charconv>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "postern/account/errors.h"
#include "postern/account/password.h"
#include "postern/account/signup.h"
#include "postern/account/token.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/xeddsa.h"
#include "postern/store/errors.h"

namespace postern::server {

using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxDeviceNameBytes = store::kMaxDeviceNameBytes;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiResponse json_response(unsigned status, const json& j) {
  return {status, dump(j), {}};
}

ApiResponse internal_error(std::string_view what, std::error_code ec) {
  // The category message never carries user data (store values are bound parameters).
  spdlog::error("{}: {} ({}:{})", what, ec.message(), ec.category().name(), ec.value());
  return error_response(500, "internal", "internal server error");
}

ApiResponse too_many_requests(std::int64_t retry_after_ms) {
  std::int64_t seconds = retry_after_ms >= account::kNeverMs ? 3600 : (retry_after_ms + 999) / 1000;
  if (seconds < 1) seconds = 1;
  auto r = error_response(429, "rate_limited", "too many requests; retry later");
  r.headers.emplace_back("Retry-After", std::to_string(seconds));
  return r;
}

ApiResponse unauthorized() {
  auto r = error_response(401, "unauthorized", "a valid bearer token is required");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

ApiResponse bad_json() {
  return error_response(400, "malformed_json", "the body must be a JSON object");
}

ApiResponse bad_field_type(std::string_view field, std::string_view type) {
  return error_response(400, "bad_request", std::string(field) + " must be " + std::string(type));
}

// The body as a JSON object; nlohmann's non-throwing parse (allow_exceptions = false).
std::optional<json> parse_object(std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// A string member: absent or null gives "", another type gives nullopt.
std::optional<std::string> string_member(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return std::nullopt;
  return it->get_ref<const std::string&>();
}

std::optional<std::uint64_t> unsigned_member(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<std::uint64_t>();
  const auto v = it->get<std::int64_t>();
  if (v < 0) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Standard or URL-safe base64, padded or not.
std::optional<Bytes> decode_base64(std::string_view s) {
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  if (s.size() % 4 == 1) return std::nullopt;
  Bytes out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = base64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// Exactly `size` bytes as 2 * size hex digits or base64 (the encoding of every key and signature
// a client sends).
std::optional<Bytes> decode_binary(std::string_view s, std::size_t size) {
  std::optional<Bytes> bytes;
  if (s.size() == 2 * size) {
    auto hex = from_hex(s);
    if (hex) bytes = std::move(*hex);
  } else {
    bytes = decode_base64(s);
  }
  if (!bytes || bytes->size() != size) return std::nullopt;
  return bytes;
}

// 33 bytes (0x05 || X25519 key) as 66 hex digits or base64.
std::optional<Bytes> decode_identity_key(std::string_view s) {
  auto bytes = decode_binary(s, store::kPublicKeyBytes);
  if (!bytes || !crypto::PublicKey::deserialize(*bytes)) return std::nullopt;
  return bytes;
}

// Standard base64 with padding: how the server writes every key and signature.
std::string encode_base64(ByteView bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (unsigned{bytes[i]} << 16) | (unsigned{bytes[i + 1]} << 8) | bytes[i + 2];
    for (int shift : {18, 12, 6, 0}) out.push_back(kAlphabet[(v >> shift) & 63]);
  }
  if (const std::size_t rest = bytes.size() - i; rest > 0) {
    unsigned v = unsigned{bytes[i]} << 16;
    if (rest == 2) v |= unsigned{bytes[i + 1]} << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// The value of query parameter `name` in the target, %XX-decoded ('+' stays '+': it is common in
// e-mail addresses and never stands for a space here). nullopt when absent or badly encoded.
std::optional<std::string> query_parameter(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    const std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '%') {
        out.push_back(raw[i]);
        continue;
      }
      if (i + 2 >= raw.size()) return std::nullopt;
      auto byte = from_hex(raw.substr(i + 1, 2));
      if (!byte) return std::nullopt;
      out.push_back(static_cast<char>((*byte)[0]));
      i += 2;
    }
    return out;
  }
  return std::nullopt;
}

std::optional<std::uint32_t> u32_member(const json& obj, const char* key) {
  const auto v = unsigned_member(obj, key);
  if (!v || *v > 0xffffffffu) return std::nullopt;
  return static_cast<std::uint32_t>(*v);
}

std::string_view strip_query(std::string_view target) {
  return target.substr(0, target.find('?'));
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const char a = (s[i] >= 'A' && s[i] <= 'Z') ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    if (a != prefix[i]) return false;
  }
  return true;
}

json field_list(const std::vector<account::FieldError>& errors) {
  json fields = json::array();
  for (const auto& e : errors) fields.push_back({{"field", e.field}, {"message", e.message}});
  return fields;
}

ApiResponse invalid_fields(const std::vector<account::FieldError>& errors) {
  json j = {{"error", {{"code", "invalid_fields"}, {"message", "some fields are invalid"}, {"fields", field_list(errors)}}}};
  return json_response(422, j);
}

// The device object of a login and of a link approval: {name, identity_key, registration_id}.
struct DeviceFields {
  std::string name;
  Bytes identity_key;  // 33 bytes
  std::uint32_t registration_id = 0;
};

// Validates `device` (an object); appends one error per bad field (device.name,
// device.identity_key, device.registration_id) and returns nullopt when there was any.
std::optional<DeviceFields> parse_device(const json& device, std::vector<account::FieldError>& errors) {
  const std::size_t before = errors.size();
  const auto name = string_member(device, "name");
  if (!name || name->size() > kMaxDeviceNameBytes) {
    errors.push_back({"device.name", "Device name must be a string of at most 256 bytes"});
  }
  const auto key_text = string_member(device, "identity_key");
  auto identity_key = key_text ? decode_identity_key(*key_text) : std::nullopt;
  if (!identity_key) {
    errors.push_back({"device.identity_key", "Identity key must be 33 bytes (0x05 and an X25519 key) in hex or base64"});
  }
  const auto registration_id = unsigned_member(device, "registration_id");
  if (!registration_id || *registration_id > 0xffffffffu) {
    errors.push_back({"device.registration_id", "Registration id must be an integer from 0 to 4294967295"});
  }
  if (errors.size() != before) return std::nullopt;
  return DeviceFields{*name, std::move(*identity_key), static_cast<std::uint32_t>(*registration_id)};
}

}  // namespace

ApiResponse error_response(unsigned status, std::string_view code, std::string_view message) {
  json j = {{"error", {{"code", code}, {"message", message}}}};
  return json_response(status, j);
}

// account::UsedChallenges over the store's ChallengeStore, under the Api's store lock.
class Api::StoreUsedChallenges final : public account::UsedChallenges {
 public:
  explicit StoreUsedChallenges(Api& api) : api_(api) {}
  Result<bool> mark_used(const account::ChallengeId& id, std::int64_t expires_ms) override {
    auto r = api_.with_store([&](store::ServerStore& s) { return s.mark_challenge_used(id, expires_ms); });
    if (!r) {
      spdlog::error("marking a challenge used: {}", r.error().message());
      return account::Errc::store_failure;
    }
    return *r;
  }

 private:
  Api& api_;
};

Api::Api(store::ServerStore& store, const ServerConfig& config, ByteView pow_secret, const Clock& clock,
         crypto::Rng& rng)
    : store_(store),
      config_(config),
      clock_(clock),
      rng_(rng),
      pow_(pow_secret, config.pow_difficulty, config.pow_ttl_ms, clock, rng),
      used_challenges_(std::make_unique<StoreUsedChallenges>(*this)),
      challenges_per_address_(config.rate_limits.challenges_per_address, config.rate_limits.max_keys, clock),
      registrations_per_address_(config.rate_limits.registration_per_address, config.rate_limits.max_keys, clock),
      logins_per_account_(config.rate_limits.login_per_account, config.rate_limits.max_keys, clock),
      logins_per_address_(config.rate_limits.login_per_address, config.rate_limits.max_keys, clock),
      directory_per_account_(config.rate_limits.directory_per_account, config.rate_limits.max_keys, clock),
      key_fetch_per_account_(config.rate_limits.key_fetch_per_account, config.rate_limits.max_keys, clock),
      sends_per_account_(config.rate_limits.sends_per_account, config.rate_limits.max_keys, clock),
      links_per_account_(config.devices.links_per_account, config.rate_limits.max_keys, clock),
      link_requests_per_address_(config.devices.link_requests_per_address, config.rate_limits.max_keys, clock),
      committer_(std::make_unique<GroupCommitter>(
          [this](std::span<const store::Envelope> batch) {
            return with_store([&](store::ServerStore& s) { return s.enqueue(batch); });
          },
          config.messages.max_round_envelopes,
          [this](std::span<const store::Envelope> batch, std::span<const store::Enqueued> results) {
            for (std::size_t i = 0; i < batch.size(); ++i) {
              if (results[i].duplicate) continue;
              for (DeliveryNotifier* n : notifiers_) n->on_enqueued(batch[i], results[i].server_id);
            }
          })) {
  ack_writer_ = std::thread([this] { ack_writer_loop(); });
  Bytes random(24);
  rng_.fill(random);
  auto dummy = account::hash_password(to_hex(random), config.password);
  // With limits libsodium refuses, every registration fails the same way; the dummy hash then
  // stays empty and verify_password() of it is false (but cheap): the start-up check in main
  // refuses such limits first.
  if (dummy) dummy_hash_ = std::move(*dummy);
}

Api::~Api() {
  stop();
}

void Api::stop() {
  committer_.reset();  // commits what is queued, then joins its thread
  {
    std::lock_guard lock(ack_mutex_);
    ack_stopping_ = true;
  }
  ack_cv_.notify_all();
  if (ack_writer_.joinable()) ack_writer_.join();
}

void Api::ack_writer_loop() {
  std::vector<store::AckRef> round;
  std::unique_lock lock(ack_mutex_);
  for (;;) {
    ack_cv_.wait(lock, [&] { return ack_stopping_ || !pending_acks_.empty(); });
    if (pending_acks_.empty()) return;  // stopping, and nothing left to write
    round.clear();
    round.swap(pending_acks_);
    lock.unlock();
    auto deleted = with_store([&](store::ServerStore& s) { return s.ack_batch(round); });
    if (!deleted) spdlog::warn("writing {} acknowledgement(s): {}", round.size(), deleted.error().message());
    lock.lock();
  }
}

void Api::ack_async(const store::TokenOwner& device, std::span<const std::int64_t> server_ids) {
  if (server_ids.empty()) return;
  bump(metrics_.messages_acked, server_ids.size());
  std::lock_guard lock(ack_mutex_);
  for (std::int64_t id : server_ids) pending_acks_.push_back({device.account_id, device.device_id, id});
  ack_cv_.notify_one();
}

Result<std::vector<store::StoredEnvelope>> Api::fetch_queued(const store::TokenOwner& device, std::int64_t after_id,
                                                             std::size_t limit) {
  purge_expired(clock_.now_ms(), false);
  return with_store([&](store::ServerStore& s) { return s.fetch(device.account_id, device.device_id, after_id, limit); });
}

std::optional<std::vector<store::Device>> Api::cached_devices(std::int64_t account_id) {
  std::lock_guard lock(device_cache_mutex_);
  const auto it = device_cache_.find(account_id);
  if (it == device_cache_.end()) return std::nullopt;
  return it->second;
}

void Api::remember_devices(std::int64_t account_id, const std::vector<store::Device>& devices) {
  std::lock_guard lock(device_cache_mutex_);
  if (device_cache_.size() >= kMaxCachedAccounts) device_cache_.clear();
  device_cache_[account_id] = devices;
}

void Api::forget_devices(std::int64_t account_id) {
  std::lock_guard lock(device_cache_mutex_);
  device_cache_.erase(account_id);
}

void Api::notify_device_removed(std::int64_t account_id, std::uint32_t device_id) {
  for (DeliveryNotifier* n : notifiers_) n->on_device_removed(account_id, device_id);
}

std::string_view Api::route_name(std::string_view target) {
  const std::string_view path = strip_query(target);
  // Link ids are capabilities: never in a log line.
  if (path == "/v1/devices/links") return "/v1/devices/links";
  if (path.starts_with("/v1/devices/links/")) {
    const std::string_view rest = path.substr(18);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) return "/v1/devices/links/{id}";
    const std::string_view sub = rest.substr(slash + 1);
    if (sub == "request") return "/v1/devices/links/{id}/request";
    if (sub == "approve") return "/v1/devices/links/{id}/approve";
    if (sub == "provision") return "/v1/devices/links/{id}/provision";
    return "other";
  }
  if (path.starts_with("/v1/devices/")) return "/v1/devices/{id}";
  if (path == "/v1/keys/count") return "/v1/keys/count";
  if (path.starts_with("/v1/keys/")) return "/v1/keys/{account_id}";
  if (path == "/v1/messages/ack") return "/v1/messages/ack";
  if (path.starts_with("/v1/messages/")) return "/v1/messages/{id}";
  for (std::string_view known : {"/v1/ping", "/v1/challenge", "/v1/accounts", "/v1/sessions", "/v1/sessions/current", "/v1/devices",
                                 "/v1/keys", "/v1/directory", "/v1/account", "/v1/account/password",
                                 "/v1/messages"}) {
    if (path == known) return known;
  }
  return "other";
}

ApiResponse Api::handle(const ApiRequest& request) {
  const std::string_view path = strip_query(request.target);
  const std::string_view m = request.method;
  const auto method_not_allowed = [](std::string_view allow) {
    auto r = error_response(405, "method_not_allowed", "method not allowed on this resource");
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
  };
  // An unauthenticated echo with the server's clock: `postern doctor` checks a path end to end
  // with it (through the inner channel) and shows the clock difference. Nothing is stored.
  if (path == "/v1/ping") {
    if (m != "GET") return method_not_allowed("GET");
    return json_response(200, json{{"pong", true}, {"time_ms", clock_.now_ms()}});
  }
  if (path == "/v1/challenge") return m == "POST" ? post_challenge(request) : method_not_allowed("POST");
  if (path == "/v1/accounts") return m == "POST" ? post_account(request) : method_not_allowed("POST");
  if (path == "/v1/sessions") return m == "POST" ? post_session(request) : method_not_allowed("POST");
  if (path == "/v1/sessions/current") {
    return m == "DELETE" ? delete_current_session(request) : method_not_allowed("DELETE");
  }
  if (path == "/v1/devices") return m == "GET" ? get_devices(request) : method_not_allowed("GET");
  if (path == "/v1/devices/links") return m == "POST" ? post_device_link(request) : method_not_allowed("POST");
  if (path.starts_with("/v1/devices/links/")) return route_device_link(request, path.substr(18));
  if (path.starts_with("/v1/devices/")) {
    return m == "DELETE" ? delete_device(request, path.substr(12)) : method_not_allowed("DELETE");
  }
  if (path == "/v1/keys") return m == "PUT" ? put_keys(request) : method_not_allowed("PUT");
  if (path == "/v1/keys/count") return m == "GET" ? get_key_count(request) : method_not_allowed("GET");
  if (path.starts_with("/v1/keys/")) return m == "GET" ? get_keys(request, path.substr(9)) : method_not_allowed("GET");
  if (path == "/v1/directory") return m == "GET" ? get_directory(request) : method_not_allowed("GET");
  if (path == "/v1/account/password") return m == "PUT" ? put_password(request) : method_not_allowed("PUT");
  if (path == "/v1/account") return m == "DELETE" ? delete_account(request) : method_not_allowed("DELETE");
  if (path == "/v1/messages") return m == "GET" ? get_messages(request) : method_not_allowed("GET");
  if (path == "/v1/messages/ack") return m == "POST" ? post_message_acks(request) : method_not_allowed("POST");
  if (path.starts_with("/v1/messages/")) {
    if (m == "PUT") return put_messages(request, path.substr(13));
    if (m == "DELETE") return delete_message(request, path.substr(13));
    return method_not_allowed("PUT, DELETE");
  }
  return error_response(404, "not_found", "no such resource");
}

bool Api::is_message_send(std::string_view method, std::string_view target) {
  return method == "PUT" && route_name(target) == "/v1/messages/{id}";
}

ApiResponse Api::post_challenge(const ApiRequest& request) {
  if (!challenges_per_address_.try_take(request.client_address)) {
    return too_many_requests(challenges_per_address_.retry_after_ms(request.client_address));
  }
  const account::Challenge c = pow_.issue();
  return json_response(200, {{"token", c.token}, {"difficulty", c.difficulty_bits}, {"expires_ms", c.expires_ms}});
}

ApiResponse Api::post_account(const ApiRequest& request) {
  if (!registrations_per_address_.try_take(request.client_address)) {
    return too_many_requests(registrations_per_address_.retry_after_ms(request.client_address));
  }
  const auto body = parse_object(request.body);
  if (!body) return bad_json();

  account::SignupForm form;
  for (auto [key, out] : {std::pair{"email", &form.email}, std::pair{"password", &form.password},
                          std::pair{"birthdate", &form.birthdate}}) {
    auto v = string_member(*body, key);
    if (!v) return bad_field_type(key, "a string");
    *out = std::move(*v);
  }
  if (const auto it = body->find("accept_terms"); it != body->end() && !it->is_null()) {
    if (!it->is_boolean()) return bad_field_type("accept_terms", "a boolean");
    form.accepted_terms = it->get<bool>();
  }
  // Fields first: a form with mistakes does not spend the proof of work, so the user fixes the
  // fields and sends the same solved challenge again.
  if (auto errors = account::validate_signup(form, clock_); !errors.empty()) return invalid_fields(errors);

  const auto pow = body->find("pow");
  if (pow == body->end() || !pow->is_object()) {
    return error_response(400, "pow_required", "pow {token, nonce} is required; get one from POST /v1/challenge");
  }
  const auto token = string_member(*pow, "token");
  const auto nonce = unsigned_member(*pow, "nonce");
  if (!token || !nonce) return error_response(400, "pow_required", "pow.token must be a string and pow.nonce an unsigned integer");
  if (const Status s = pow_.verify(*token, *nonce, *used_challenges_); !s) {
    using account::Errc;
    const std::error_code e = s.error();
    if (e == Errc::malformed || e == Errc::bad_signature) return error_response(403, "pow_invalid", "the challenge was not issued by this server");
    if (e == Errc::expired) return error_response(403, "pow_expired", "the challenge has expired; get a new one");
    if (e == Errc::insufficient_work) return error_response(403, "pow_insufficient", "the nonce does not solve the challenge");
    if (e == Errc::reused) return error_response(403, "pow_reused", "the challenge has already been used; get a new one");
    return internal_error("verifying a proof of work", e);
  }

  auto hash = account::hash_password(form.password, config_.password);
  if (!hash) return internal_error("hashing a password", hash.error());
  const std::string email = account::normalize_email(form.email);
  const std::int64_t now = clock_.now_ms();
  auto id = with_store([&](store::ServerStore& s) { return s.create_account(email, *hash, now); });
  if (!id) {
    if (id.error() == store::Errc::email_taken) {
      return error_response(409, "email_taken", "an account with this e-mail address exists");
    }
    return internal_error("creating an account", id.error());
  }
  spdlog::info("account {} created", *id);
  return json_response(201, {{"account_id", *id}});
}

ApiResponse Api::post_session(const ApiRequest& request) {
  if (!logins_per_address_.try_take(request.client_address)) {
    return too_many_requests(logins_per_address_.retry_after_ms(request.client_address));
  }
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto email_in = string_member(*body, "email");
  const auto password = string_member(*body, "password");
  if (!email_in) return bad_field_type("email", "a string");
  if (!password) return bad_field_type("password", "a string");
  const auto device = body->find("device");
  if (device == body->end() || !device->is_object()) return bad_field_type("device", "an object");

  std::vector<account::FieldError> errors;
  const auto fields = parse_device(*device, errors);
  if (!fields) return invalid_fields(errors);

  const std::string email = account::normalize_email(*email_in);
  if (!logins_per_account_.try_take(email)) return too_many_requests(logins_per_account_.retry_after_ms(email));

  auto found = with_store([&](store::ServerStore& s) { return s.find_account_by_email(email); });
  if (!found) {
    if (found.error() != store::Errc::not_found) return internal_error("finding an account", found.error());
    (void)account::verify_password(dummy_hash_, *password);  // same cost as a wrong password
    return error_response(401, "bad_credentials", "wrong e-mail address or password");
  }
  if (!account::verify_password(found->password_hash, *password)) {
    return error_response(401, "bad_credentials", "wrong e-mail address or password");
  }
  const std::int64_t account_id = found->id;
  if (account::needs_rehash(found->password_hash, config_.password)) {
    if (auto rehashed = account::hash_password(*password, config_.password)) {
      auto s = with_store([&](store::ServerStore& st) { return st.set_password_hash(account_id, *rehashed); });
      if (!s) spdlog::warn("account {}: password rehash not stored: {}", account_id, s.error().message());
    }
  }

  const std::string token = account::generate_token(rng_);
  const auto token_digest = account::token_hash(token);
  const std::int64_t now = clock_.now_ms();
  auto device_id = with_store([&](store::ServerStore& s) -> Result<std::uint32_t> {
    POSTERN_TRY(const std::uint32_t id,
                s.add_device(account_id, fields->identity_key, fields->registration_id, fields->name, now));
    forget_devices(account_id);
    if (auto put = s.put_token(token_digest, account_id, id, now); !put) {
      (void)s.remove_device(account_id, id);  // no device without a token
      return put.error();
    }
    return id;
  });
  if (!device_id) return internal_error("registering a device", device_id.error());
  spdlog::info("account {} signed in as device {}", account_id, *device_id);
  return json_response(201, {{"account_id", account_id}, {"device_id", *device_id}, {"token", token}});
}

namespace {

// The bearer token's owner, or nullopt (the caller answers 401). Store failures other than
// not_found are reported through `failure`.
std::optional<store::TokenOwner> authenticate(std::string_view authorization, std::error_code& failure,
                                              const std::function<Result<store::TokenOwner>(ByteView)>& find) {
  if (!iequals_prefix(authorization, "bearer ")) return std::nullopt;
  std::string_view token = authorization.substr(7);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (!account::is_well_formed_token(token)) return std::nullopt;
  const auto digest = account::token_hash(token);
  auto owner = find(digest);
  if (!owner) {
    if (owner.error() != store::Errc::not_found) failure = owner.error();
    return std::nullopt;
  }
  return *owner;
}

}  // namespace

#define POSTERN_AUTHENTICATE(owner, request)                                                         \
  std::error_code owner##_failure;                                                                   \
  const auto owner = authenticate((request).authorization, owner##_failure, [&](ByteView digest) {   \
    return with_store([&](store::ServerStore& s) { return s.find_token(digest); });                  \
  });                                                                                                \
  if (owner##_failure) return internal_error("authenticating", owner##_failure);                     \
  if (!owner) return unauthorized()

std::optional<store::TokenOwner> Api::authenticate_bearer(std::string_view authorization, std::error_code& failure) {
  failure.clear();
  return authenticate(authorization, failure, [&](ByteView digest) {
    return with_store([&](store::ServerStore& s) { return s.find_token(digest); });
  });
}

ApiResponse Api::delete_current_session(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  std::string_view token = request.authorization.substr(7);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  const auto digest = account::token_hash(token);
  auto deleted = with_store([&](store::ServerStore& s) { return s.delete_token(digest); });
  if (!deleted) return internal_error("deleting a token", deleted.error());
  spdlog::info("account {} device {} signed out", owner->account_id, owner->device_id);
  notify_device_removed(owner->account_id, owner->device_id);
  return {204, {}, {}};
}

ApiResponse Api::get_devices(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  auto devices = with_store([&](store::ServerStore& s) { return s.list_devices(owner->account_id); });
  if (!devices) return internal_error("listing devices", devices.error());
  json list = json::array();
  for (const auto& d : *devices) {
    list.push_back({{"id", d.id},
                    {"name", d.name},
                    {"registration_id", d.registration_id},
                    {"created_ms", d.created_ms},
                    {"last_seen_ms", d.last_seen_ms},
                    {"current", d.id == owner->device_id}});
  }
  return json_response(200, {{"devices", list}});
}

ApiResponse Api::delete_device(const ApiRequest& request, std::string_view id_text) {
  POSTERN_AUTHENTICATE(owner, request);
  std::uint32_t id = 0;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (ec != std::errc{} || end != id_text.data() + id_text.size() || id == 0) {
    return error_response(404, "device_not_found", "no such device");
  }
  auto removed = with_store([&](store::ServerStore& s) {
    forget_devices(owner->account_id);
    return s.remove_device(owner->account_id, id);
  });
  if (!removed) {
    if (removed.error() == store::Errc::not_found) return error_response(404, "device_not_found", "no such device");
    return internal_error("removing a device", removed.error());
  }
  spdlog::info("account {} removed device {}", owner->account_id, id);
  notify_device_removed(owner->account_id, id);
  return {204, {}, {}};
}

// ---- key directory ----

namespace {

constexpr const char* kPublicKeyText = "must be 33 bytes (0x05 and an X25519 key) in hex or base64";

json signed_prekey_json(const store::SignedPreKey& k) {
  return {{"id", k.id}, {"public_key", encode_base64(k.public_key)}, {"signature", encode_base64(k.signature)}};
}

}  // namespace

ApiResponse Api::put_keys(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto body = parse_object(request.body);
  if (!body) return bad_json();

  const auto spk_it = body->find("signed_pre_key");
  const bool has_spk = spk_it != body->end() && !spk_it->is_null();
  const auto otp_it = body->find("one_time_pre_keys");
  const bool has_otp = otp_it != body->end() && !otp_it->is_null();
  if (!has_spk && !has_otp) {
    return error_response(400, "bad_request", "signed_pre_key or one_time_pre_keys is required");
  }
  if (has_spk && !spk_it->is_object()) return bad_field_type("signed_pre_key", "an object");
  if (has_otp && !otp_it->is_array()) return bad_field_type("one_time_pre_keys", "an array");
  if (has_otp && otp_it->size() > store::kMaxPreKeyBatch) {
    return error_response(422, "too_many_prekeys", "at most 100 one-time prekeys per upload");
  }

  std::vector<account::FieldError> errors;
  store::SignedPreKey spk;
  if (has_spk) {
    const auto id = u32_member(*spk_it, "id");
    if (!id) errors.push_back({"signed_pre_key.id", "Key id must be an integer from 0 to 4294967295"});
    const auto key_text = string_member(*spk_it, "public_key");
    auto key = key_text ? decode_identity_key(*key_text) : std::nullopt;
    if (!key) errors.push_back({"signed_pre_key.public_key", std::string("Public key ") + kPublicKeyText});
    const auto sig_text = string_member(*spk_it, "signature");
    auto sig = sig_text ? decode_binary(*sig_text, store::kSignatureBytes) : std::nullopt;
    if (!sig) errors.push_back({"signed_pre_key.signature", "Signature must be 64 bytes in hex or base64"});
    if (id && key && sig) spk = {*id, std::move(*key), std::move(*sig), clock_.now_ms()};
  }
  std::vector<store::OneTimePreKey> one_time;
  if (has_otp) {
    std::set<std::uint32_t> ids;
    one_time.reserve(otp_it->size());
    for (std::size_t i = 0; i < otp_it->size(); ++i) {
      const json& k = (*otp_it)[i];
      const std::string where = "one_time_pre_keys[" + std::to_string(i) + "]";
      if (!k.is_object()) {
        errors.push_back({where, "Each one-time prekey must be an object {id, public_key}"});
        continue;
      }
      const auto id = u32_member(k, "id");
      if (!id) {
        errors.push_back({where + ".id", "Key id must be an integer from 0 to 4294967295"});
      } else if (!ids.insert(*id).second) {
        errors.push_back({where + ".id", "Key id appears twice in this upload"});
      }
      const auto key_text = string_member(k, "public_key");
      auto key = key_text ? decode_identity_key(*key_text) : std::nullopt;
      if (!key) errors.push_back({where + ".public_key", std::string("Public key ") + kPublicKeyText});
      if (id && key) one_time.push_back({*id, std::move(*key)});
    }
  }
  if (!errors.empty()) return invalid_fields(errors);

  if (has_spk) {
    auto device = with_store([&](store::ServerStore& s) { return s.get_device(owner->account_id, owner->device_id); });
    if (!device) return internal_error("reading a device", device.error());
    const auto identity = crypto::PublicKey::deserialize(device->identity_key);
    if (!identity || !crypto::xeddsa_verify(*identity, spk.public_key, spk.signature)) {
      return error_response(422, "invalid_signature",
                            "signed_pre_key.signature is not the device identity key's XEdDSA signature of signed_pre_key.public_key");
    }
  }

  auto count = with_store([&](store::ServerStore& s) -> Result<std::int64_t> {
    if (has_spk) POSTERN_CHECK(s.set_signed_prekey(owner->account_id, owner->device_id, spk));
    if (!one_time.empty()) POSTERN_CHECK(s.add_one_time_prekeys(owner->account_id, owner->device_id, one_time));
    return s.one_time_prekey_count(owner->account_id, owner->device_id);
  });
  if (!count) return internal_error("storing prekeys", count.error());
  spdlog::info("account {} device {} uploaded keys (signed prekey: {}, one-time prekeys: {})", owner->account_id,
               owner->device_id, has_spk, one_time.size());
  return json_response(200, {{"one_time_pre_keys", *count}});
}

ApiResponse Api::get_key_count(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  auto result = with_store([&](store::ServerStore& s) -> Result<std::pair<std::int64_t, json>> {
    POSTERN_TRY(const std::int64_t n, s.one_time_prekey_count(owner->account_id, owner->device_id));
    auto spk = s.get_signed_prekey(owner->account_id, owner->device_id);
    if (!spk) {
      if (spk.error() != store::Errc::not_found) return spk.error();
      return std::pair{n, json(nullptr)};
    }
    return std::pair{n, json(spk->id)};
  });
  if (!result) return internal_error("counting prekeys", result.error());
  return json_response(200, {{"one_time_pre_keys", result->first}, {"signed_pre_key_id", result->second}});
}

ApiResponse Api::get_keys(const ApiRequest& request, std::string_view id_text) {
  POSTERN_AUTHENTICATE(owner, request);
  std::int64_t account_id = 0;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), account_id);
  if (ec != std::errc{} || end != id_text.data() + id_text.size() || account_id <= 0) {
    return error_response(404, "account_not_found", "no such account");
  }
  const std::string limiter_key = std::to_string(owner->account_id);
  if (!key_fetch_per_account_.try_take(limiter_key)) {
    return too_many_requests(key_fetch_per_account_.retry_after_ms(limiter_key));
  }
  auto bundles = with_store([&](store::ServerStore& s) -> Result<std::vector<store::Bundle>> {
    POSTERN_CHECK(s.get_account(account_id));
    return s.take_bundles(account_id);
  });
  if (!bundles) {
    if (bundles.error() == store::Errc::not_found) return error_response(404, "account_not_found", "no such account");
    return internal_error("taking prekey bundles", bundles.error());
  }
  if (bundles->empty()) {
    return error_response(404, "no_keys", "no device of this account has uploaded a signed prekey");
  }
  json devices = json::array();
  for (const auto& b : *bundles) {
    json otp = nullptr;
    if (b.one_time_pre_key) {
      otp = {{"id", b.one_time_pre_key->id}, {"public_key", encode_base64(b.one_time_pre_key->public_key)}};
    }
    devices.push_back({{"device_id", b.device_id},
                       {"registration_id", b.registration_id},
                       {"identity_key", encode_base64(b.identity_key)},
                       {"signed_pre_key", signed_prekey_json(b.signed_pre_key)},
                       {"one_time_pre_key", otp},
                       {"remaining", b.one_time_pre_keys_left}});
  }
  return json_response(200, {{"account_id", account_id}, {"devices", devices}});
}

// ---- directory ----

ApiResponse Api::get_directory(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const std::string limiter_key = std::to_string(owner->account_id);
  if (!directory_per_account_.try_take(limiter_key)) {
    return too_many_requests(directory_per_account_.retry_after_ms(limiter_key));
  }
  const auto email_in = query_parameter(request.target, "email");
  if (!email_in || email_in->empty()) {
    return error_response(400, "bad_request", "the query parameter email is required (percent-encoded)");
  }
  const std::string email = account::normalize_email(*email_in);
  const auto not_found = [] { return error_response(404, "account_not_found", "no account has this e-mail address"); };
  if (email.empty() || email.size() > store::kMaxEmailBytes) return not_found();
  auto found = with_store([&](store::ServerStore& s) -> Result<std::pair<std::int64_t, std::vector<store::Device>>> {
    POSTERN_TRY(const store::Account a, s.find_account_by_email(email));
    POSTERN_TRY(auto devices, s.list_devices(a.id));
    return std::pair{a.id, std::move(devices)};
  });
  if (!found) {
    if (found.error() == store::Errc::not_found) return not_found();
    return internal_error("looking up an e-mail address", found.error());
  }
  json ids = json::array();
  for (const auto& d : found->second) ids.push_back(d.id);
  return json_response(200, {{"account_id", found->first}, {"device_ids", ids}});
}

// ---- account management ----

std::optional<ApiResponse> Api::check_account_password(std::int64_t account_id, const std::string& password) {
  auto acct = with_store([&](store::ServerStore& s) { return s.get_account(account_id); });
  if (!acct) return internal_error("reading an account", acct.error());
  if (!logins_per_account_.try_take(acct->email)) return too_many_requests(logins_per_account_.retry_after_ms(acct->email));
  if (!account::verify_password(acct->password_hash, password)) {
    return error_response(403, "wrong_password", "the password is wrong");
  }
  return std::nullopt;
}

ApiResponse Api::put_password(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto old_password = string_member(*body, "old_password");
  const auto new_password = string_member(*body, "new_password");
  if (!old_password) return bad_field_type("old_password", "a string");
  if (!new_password) return bad_field_type("new_password", "a string");
  if (const std::string_view problem = account::check_password(*new_password); !problem.empty()) {
    return invalid_fields({{"new_password", std::string(problem)}});
  }
  if (auto refused = check_account_password(owner->account_id, *old_password)) return std::move(*refused);

  auto hash = account::hash_password(*new_password, config_.password);
  if (!hash) return internal_error("hashing a password", hash.error());
  std::string_view token = request.authorization.substr(7);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  const auto digest = account::token_hash(token);
  const std::int64_t now = clock_.now_ms();
  auto revoked = with_store([&](store::ServerStore& s) -> Result<std::int64_t> {
    POSTERN_CHECK(s.set_password_hash(owner->account_id, *hash));
    POSTERN_TRY(const auto devices, s.list_devices(owner->account_id));
    std::int64_t n = 0;
    for (const auto& d : devices) {
      POSTERN_TRY(const std::int64_t deleted, s.delete_device_tokens(owner->account_id, d.id));
      n += deleted;
    }
    // Every token of the account is gone; the one of this request is put back.
    POSTERN_CHECK(s.put_token(digest, owner->account_id, owner->device_id, now));
    for (const auto& d : devices) {
      if (d.id != owner->device_id) notify_device_removed(owner->account_id, d.id);
    }
    return n - 1;
  });
  if (!revoked) return internal_error("changing a password", revoked.error());
  spdlog::info("account {} changed its password; {} other session(s) ended", owner->account_id, *revoked);
  return {204, {}, {}};
}

ApiResponse Api::delete_account(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto password = string_member(*body, "password");
  if (!password) return bad_field_type("password", "a string");
  if (auto refused = check_account_password(owner->account_id, *password)) return std::move(*refused);
  auto uploads = with_store([&](store::ServerStore& s) {
    forget_devices(owner->account_id);
    return s.delete_account(owner->account_id);
  });
  if (!uploads) return internal_error("deleting an account", uploads.error());
  spdlog::info("account {} deleted ({} upload record(s))", owner->account_id, uploads->size());
  notify_device_removed(owner->account_id, 0);
  if (upload_files_deleter_ && !uploads->empty()) upload_files_deleter_(*uploads);
  return {204, {}, {}};
}

// ---- messages ----

namespace {

constexpr std::size_t kDefaultFetch = 100;

// An integer member within [lo, hi]; nullopt when absent, not an integer or out of range.
std::optional<std::int64_t> int_member(const json& obj, const char* key, std::int64_t lo, std::int64_t hi) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
  std::int64_t v = 0;
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    v = static_cast<std::int64_t>(u);
  } else {
    v = it->get<std::int64_t>();
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

// A positive decimal id in a path segment.
std::optional<std::int64_t> path_id(std::string_view text) {
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc{} || end != text.data() + text.size() || id <= 0) return std::nullopt;
  return id;
}

// A non-negative decimal query parameter: `fallback` when absent, nullopt when malformed.
std::optional<std::int64_t> query_int(std::string_view target, std::string_view name, std::int64_t fallback) {
  const auto text = query_parameter(target, name);
  if (!text) return fallback;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (text->empty() || ec != std::errc{} || end != text->data() + text->size() || v < 0) return std::nullopt;
  return v;
}

struct Mismatch {
  std::vector<std::uint32_t> missing;  // devices of the recipient without an envelope
  std::vector<std::uint32_t> extra;    // envelopes for devices the recipient does not have
  std::vector<std::uint32_t> stale;    // registration id given and different from the device's
  bool any() const { return !missing.empty() || !extra.empty(); }
};

// The recipient's required devices (all of them, minus the sending device when sending to
// oneself) against the envelopes' device ids.
Mismatch compare_devices(const std::vector<store::Device>& devices, std::int64_t recipient, const store::TokenOwner& sender,
                         const std::vector<std::pair<std::uint32_t, std::optional<std::uint32_t>>>& sent) {
  Mismatch m;
  std::set<std::uint32_t> required;
  for (const auto& d : devices) {
    if (recipient == sender.account_id && d.id == sender.device_id) continue;
    required.insert(d.id);
  }
  std::set<std::uint32_t> given;
  for (const auto& [id, registration_id] : sent) given.insert(id);
  for (std::uint32_t id : required) {
    if (!given.contains(id)) m.missing.push_back(id);
  }
  for (std::uint32_t id : given) {
    if (!required.contains(id)) m.extra.push_back(id);
  }
  for (const auto& [id, registration_id] : sent) {
    if (!registration_id) continue;
    for (const auto& d : devices) {
      if (d.id == id && d.registration_id != *registration_id) m.stale.push_back(id);
    }
  }
  return m;
}

ApiResponse device_mismatch(const Mismatch& m) {
  json j = {{"error",
             {{"code", "device_mismatch"},
              {"message", "the envelopes do not match the recipient's devices"},
              {"missing_devices", m.missing},
              {"extra_devices", m.extra}}}};
  return json_response(409, j);
}

ApiResponse stale_devices(const Mismatch& m) {
  json j = {{"error",
             {{"code", "stale_devices"},
              {"message", "some devices were re-registered; fetch their keys again"},
              {"stale_devices", m.stale}}}};
  return json_response(410, j);
}

}  // namespace

void Api::purge_expired(std::int64_t now_ms, bool force) {
  std::int64_t last = last_purge_ms_.load();
  if (!force && now_ms - last < config_.messages.purge_interval_ms) return;
  if (!last_purge_ms_.compare_exchange_strong(last, now_ms) && !force) return;  // another thread purges
  auto purged = with_store([&](store::ServerStore& s) { return s.purge_expired_messages(now_ms); });
  if (!purged) {
    spdlog::warn("purging expired envelopes: {}", purged.error().message());
  } else if (*purged > 0) {
    spdlog::info("purged {} expired envelope(s)", *purged);
  }
}

namespace {

ApiResponse send_outcome_response(const SendOutcome& o) {
  if (o.status == 200) {
    json results = json::array();
    for (std::size_t i = 0; i < o.results.size(); ++i) {
      results.push_back(
          {{"device_id", o.devices[i]}, {"server_id", o.results[i].server_id}, {"duplicate", o.results[i].duplicate}});
    }
    return json_response(200, {{"messages", results}});
  }
  if (o.status == 422 && !o.field_errors.empty()) return invalid_fields(o.field_errors);
  if (o.status == 409) {
    Mismatch m;
    m.missing = o.missing;
    m.extra = o.extra;
    return device_mismatch(m);
  }
  if (o.status == 410) {
    Mismatch m;
    m.stale = o.stale;
    return stale_devices(m);
  }
  if (o.status == 429) return too_many_requests(o.retry_after_ms);
  return error_response(o.status, o.code, o.message);
}

SendOutcome outcome_error(unsigned status, std::string code, std::string message) {
  SendOutcome o;
  o.status = status;
  o.code = std::move(code);
  o.message = std::move(message);
  return o;
}

SendOutcome outcome_internal(std::string_view what, std::error_code ec) {
  spdlog::error("{}: {} ({}:{})", what, ec.message(), ec.category().name(), ec.value());
  return outcome_error(500, "internal", "internal server error");
}

}  // namespace

std::optional<SendOutcome> Api::check_send(const store::TokenOwner& sender, std::int64_t recipient,
                                           const std::vector<OutgoingEnvelope>& envelopes,
                                           const std::vector<store::Device>* known_devices) {
  std::vector<account::FieldError> errors;
  std::set<std::uint32_t> seen;
  for (std::size_t i = 0; i < envelopes.size(); ++i) {
    const OutgoingEnvelope& e = envelopes[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (e.device_id == 0) {
      errors.push_back({where + ".device_id", "Device id must be an integer from 1 to 4294967295"});
    } else if (!seen.insert(e.device_id).second) {
      errors.push_back({where + ".device_id", "Device id appears twice in this send"});
    }
    if (e.client_id.empty() || e.client_id.size() > store::kMaxClientIdBytes) {
      errors.push_back({where + ".client_id", "Client id must be a string of 1 to 64 bytes"});
    }
    if (e.content.size() > store::kMaxEnvelopeContentBytes) {
      return outcome_error(413, "content_too_large", where + ".content is over 256 KiB (262144 bytes) decoded");
    }
  }
  if (!errors.empty()) {
    SendOutcome o = outcome_error(422, "invalid_fields", "some fields are invalid");
    o.field_errors = std::move(errors);
    return o;
  }
  if (recipient <= 0) return outcome_error(404, "account_not_found", "no such account");

  const std::string limiter_key = std::to_string(sender.account_id);
  const double cost = static_cast<double>(envelopes.empty() ? 1 : envelopes.size());
  if (!sends_per_account_.try_take(limiter_key, cost)) {
    SendOutcome o = outcome_error(429, "rate_limited", "too many requests; retry later");
    o.retry_after_ms = sends_per_account_.retry_after_ms(limiter_key, cost);
    return o;
  }

  std::vector<std::pair<std::uint32_t, std::optional<std::uint32_t>>> sent;
  sent.reserve(envelopes.size());
  for (const auto& e : envelopes) {
    sent.emplace_back(e.device_id, e.registration_id == 0 ? std::nullopt : std::optional<std::uint32_t>(e.registration_id));
  }
  auto mismatch = [&]() -> Result<Mismatch> {
    if (known_devices != nullptr) return compare_devices(*known_devices, recipient, sender, sent);
    if (auto cached = cached_devices(recipient)) return compare_devices(*cached, recipient, sender, sent);
    return with_store([&](store::ServerStore& s) -> Result<Mismatch> {
      POSTERN_CHECK(s.get_account(recipient));
      POSTERN_TRY(auto devices, s.list_devices(recipient));
      for (auto& d : devices) {  // the cache keeps what the check needs
        d.identity_key.clear();
        d.name.clear();
      }
      remember_devices(recipient, devices);
      return compare_devices(devices, recipient, sender, sent);
    });
  }();
  if (!mismatch) {
    if (mismatch.error() == store::Errc::not_found) return outcome_error(404, "account_not_found", "no such account");
    return outcome_internal("listing a recipient's devices", mismatch.error());
  }
  if (mismatch->any()) {
    SendOutcome o = outcome_error(409, "device_mismatch", "the envelopes do not match the recipient's devices");
    o.missing = mismatch->missing;
    o.extra = mismatch->extra;
    return o;
  }
  if (!mismatch->stale.empty()) {
    SendOutcome o = outcome_error(410, "stale_devices", "some devices were re-registered; fetch their keys again");
    o.stale = mismatch->stale;
    return o;
  }
  return std::nullopt;
}

bool Api::try_send_without_blocking(const store::TokenOwner& sender, std::int64_t recipient,
                                    std::vector<OutgoingEnvelope>& envelopes, std::function<void(SendOutcome)>& done) {
  // A snapshot of the cached list: checking against it never reads the store, even if the cache
  // is invalidated meanwhile (the commit still catches a device removed since, as not_found).
  std::optional<std::vector<store::Device>> devices;
  if (recipient > 0) {
    devices = cached_devices(recipient);
    if (!devices) return false;
  }
  send_checked(sender, recipient, std::move(envelopes), std::move(done), devices ? &*devices : nullptr);
  return true;
}

void Api::send_checked(const store::TokenOwner& sender, std::int64_t recipient, std::vector<OutgoingEnvelope> envelopes,
                       std::function<void(SendOutcome)> done, const std::vector<store::Device>* known_devices) {
  if (auto failed = check_send(sender, recipient, envelopes, known_devices)) {
    done(std::move(*failed));
    return;
  }
  submit_checked(sender, recipient, std::move(envelopes), std::move(done));
}

void Api::send_async(const store::TokenOwner& sender, std::int64_t recipient, std::vector<OutgoingEnvelope> envelopes,
                     std::function<void(SendOutcome)> done) {
  send_checked(sender, recipient, std::move(envelopes), std::move(done), nullptr);
}

void Api::submit_checked(const store::TokenOwner& sender, std::int64_t recipient,
                         std::vector<OutgoingEnvelope> envelopes, std::function<void(SendOutcome)> done) {
  const std::int64_t now = clock_.now_ms();
  const std::int64_t expires = now > std::numeric_limits<std::int64_t>::max() - config_.messages.retention_ms
                                   ? std::numeric_limits<std::int64_t>::max()
                                   : now + config_.messages.retention_ms;
  std::vector<store::Envelope> batch;
  std::vector<std::uint32_t> devices;
  batch.reserve(envelopes.size());
  devices.reserve(envelopes.size());
  for (auto& o : envelopes) {
    store::Envelope e;
    e.recipient_account = recipient;
    e.recipient_device = o.device_id;
    e.sender_account = sender.account_id;
    e.sender_device = sender.device_id;
    e.client_id = std::move(o.client_id);
    e.type = o.type;
    e.timestamp_ms = o.timestamp_ms;
    e.content = std::move(o.content);
    e.expires_ms = expires;
    devices.push_back(o.device_id);
    batch.push_back(std::move(e));
  }
  const std::size_t count = batch.size();
  if (!committer_) {
    done(outcome_error(503, "shutting_down", "the server is shutting down"));
    return;
  }
  committer_->submit_async(
      std::move(batch), [this, sender, recipient, count, devices = std::move(devices),
                         done = std::move(done)](Result<std::vector<store::Enqueued>> stored) mutable {
        SendOutcome o;
        if (!stored && stored.error() == store::Errc::not_found) {
          // A device (or the account) went away between the check and the commit.
          o = outcome_error(409, "device_mismatch", "the envelopes do not match the recipient's devices");
          auto list = with_store([&](store::ServerStore& s) {
            forget_devices(recipient);
            return s.list_devices(recipient);
          });
          if (!list || list->empty()) {
            o = outcome_error(404, "account_not_found", "no such account");
          } else {
            std::vector<std::pair<std::uint32_t, std::optional<std::uint32_t>>> sent;
            for (std::uint32_t d : devices) sent.emplace_back(d, std::nullopt);
            const Mismatch m = compare_devices(*list, recipient, sender, sent);
            o.missing = m.missing;
            o.extra = m.extra;
          }
          done(std::move(o));
          return;
        }
        if (!stored) {
          done(outcome_internal("storing envelopes", stored.error()));
          return;
        }
        std::size_t fresh = 0;
        for (const auto& r : *stored) fresh += r.duplicate ? 0 : 1;
        spdlog::debug("account {} device {} sent {} envelope(s) to account {} ({} new)", sender.account_id,
                      sender.device_id, count, recipient, fresh);
        o.devices = std::move(devices);
        o.results = std::move(*stored);
        done(std::move(o));
      });
}

ApiResponse Api::put_messages(const ApiRequest& request, std::string_view id_text) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto recipient = path_id(id_text);
  if (!recipient) return error_response(404, "account_not_found", "no such account");
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto list = body->find("messages");
  if (list == body->end() || !list->is_array()) return bad_field_type("messages", "an array");

  // Shape and encoding here; the meaning (device ids, sizes, devices of the recipient) in
  // check_send, shared with the WebSocket.
  std::vector<account::FieldError> errors;
  std::vector<OutgoingEnvelope> envelopes;
  envelopes.reserve(list->size());
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json& m = (*list)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) {
      errors.push_back({where, "Each message must be an object"});
      continue;
    }
    OutgoingEnvelope e;
    const auto device = int_member(m, "device_id", 1, 0xffffffffLL);
    if (!device) {
      errors.push_back({where + ".device_id", "Device id must be an integer from 1 to 4294967295"});
    } else {
      e.device_id = static_cast<std::uint32_t>(*device);
    }
    if (const auto it = m.find("registration_id"); it != m.end() && !it->is_null()) {
      const auto r = int_member(m, "registration_id", 0, 0xffffffffLL);
      if (!r) {
        errors.push_back({where + ".registration_id", "Registration id must be an integer from 0 to 4294967295"});
      } else {
        e.registration_id = static_cast<std::uint32_t>(*r);
      }
    }
    const auto type = int_member(m, "type", std::numeric_limits<std::int32_t>::min(),
                                 std::numeric_limits<std::int32_t>::max());
    if (!type) {
      errors.push_back({where + ".type", "Type must be a 32-bit integer"});
    } else {
      e.type = static_cast<std::int32_t>(*type);
    }
    const auto timestamp = int_member(m, "timestamp", std::numeric_limits<std::int64_t>::min(),
                                      std::numeric_limits<std::int64_t>::max());
    if (!timestamp) {
      errors.push_back({where + ".timestamp", "Timestamp must be an integer (milliseconds)"});
    } else {
      e.timestamp_ms = *timestamp;
    }
    const auto client_id = string_member(m, "client_id");
    if (!client_id || client_id->empty() || client_id->size() > store::kMaxClientIdBytes) {
      errors.push_back({where + ".client_id", "Client id must be a string of 1 to 64 bytes"});
    } else {
      e.client_id = Bytes(client_id->begin(), client_id->end());
    }
    const auto content_text = string_member(m, "content");
    auto content = content_text ? decode_base64(*content_text) : std::nullopt;
    if (!content) {
      errors.push_back({where + ".content", "Content must be base64"});
    } else if (content->size() > store::kMaxEnvelopeContentBytes) {
      return error_response(413, "content_too_large", where + ".content is over 256 KiB (262144 bytes) decoded");
    } else {
      e.content = std::move(*content);
    }
    if (!errors.empty()) continue;
    envelopes.push_back(std::move(e));
  }
  if (!errors.empty()) return invalid_fields(errors);
  if (auto failed = check_send(*owner, *recipient, envelopes)) return send_outcome_response(*failed);

  // Blocks this worker until the group commit is durable (the WebSocket path does not block).
  std::mutex m;
  std::condition_variable cv;
  std::optional<SendOutcome> outcome;
  const std::size_t count = envelopes.size();
  submit_checked(*owner, *recipient, std::move(envelopes), [&](SendOutcome o) {
    std::lock_guard lock(m);
    outcome = std::move(o);
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return outcome.has_value(); });
  if (outcome->status == 200) bump(metrics_.messages_sent_http, count);
  return send_outcome_response(*outcome);
}

ApiResponse Api::get_messages(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto after = query_int(request.target, "after", 0);
  const auto limit = query_int(request.target, "limit", static_cast<std::int64_t>(kDefaultFetch));
  if (!after) return error_response(400, "bad_request", "after must be a non-negative integer");
  if (!limit || *limit < 1 || static_cast<std::uint64_t>(*limit) > config_.messages.max_fetch) {
    return error_response(400, "bad_request",
                          "limit must be an integer from 1 to " + std::to_string(config_.messages.max_fetch));
  }
  const std::int64_t now = clock_.now_ms();
  purge_expired(now, false);
  const auto n = static_cast<std::size_t>(*limit);
  const auto fetch = [&] {
    return with_store([&](store::ServerStore& s) { return s.fetch(owner->account_id, owner->device_id, *after, n + 1); });
  };
  auto envelopes = fetch();
  if (envelopes) {
    bool expired = false;
    for (const auto& e : *envelopes) expired = expired || e.envelope.expires_ms <= now;
    if (expired) {  // never hand out an expired envelope: purge now and read again
      purge_expired(now, true);
      envelopes = fetch();
    }
  }
  if (!envelopes) return internal_error("fetching envelopes", envelopes.error());
  const bool more = envelopes->size() > n;
  if (more) envelopes->resize(n);
  json list = json::array();
  for (const auto& se : *envelopes) {
    const auto& e = se.envelope;
    list.push_back({{"server_id", se.server_id},
                    {"sender_account", e.sender_account},
                    {"sender_device", e.sender_device},
                    {"type", e.type},
                    {"content", encode_base64(e.content)},
                    {"timestamp", e.timestamp_ms},
                    {"client_id", std::string(e.client_id.begin(), e.client_id.end())}});
  }
  return json_response(200, {{"messages", list}, {"more", more}});
}

ApiResponse Api::delete_message(const ApiRequest& request, std::string_view id_text) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto id = path_id(id_text);
  if (!id) return error_response(404, "not_found", "a server id is a positive integer");
  auto acked = with_store([&](store::ServerStore& s) { return s.ack(owner->account_id, owner->device_id, *id); });
  if (!acked) return internal_error("acknowledging an envelope", acked.error());
  bump(metrics_.messages_acked);
  return {204, {}, {}};  // idempotent: an unknown or already acknowledged id is not an error
}

ApiResponse Api::post_message_acks(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto ids = body->find("server_ids");
  if (ids == body->end() || !ids->is_array()) return bad_field_type("server_ids", "an array");
  if (ids->size() > config_.messages.max_fetch) {
    return error_response(422, "too_many_ids",
                          "at most " + std::to_string(config_.messages.max_fetch) + " server ids per acknowledgement");
  }
  std::vector<store::AckRef> refs;
  refs.reserve(ids->size());
  for (const json& v : *ids) {
    const json holder = {{"id", v}};
    const auto id = int_member(holder, "id", 1, std::numeric_limits<std::int64_t>::max());
    if (!id) return bad_field_type("server_ids", "an array of positive integers");
    refs.push_back({owner->account_id, owner->device_id, *id});
  }
  auto deleted = with_store([&](store::ServerStore& s) { return s.ack_batch(refs); });
  if (!deleted) return internal_error("acknowledging envelopes", deleted.error());
  bump(metrics_.messages_acked, refs.size());
  return json_response(200, {{"deleted", *deleted}});
}

// ---- linked devices ----

namespace {

constexpr std::size_t kLinkIdRandomBytes = 16;  // 128 bits
constexpr std::size_t kLinkIdLength = 22;       // unpadded base64url of 16 bytes
constexpr std::size_t kTokenHashHexLength = 2 * store::kTokenHashBytes;

ApiResponse link_not_found() {
  return error_response(404, "link_not_found", "no such link, or it has expired");
}

ApiResponse link_method_not_allowed(std::string_view allow) {
  auto r = error_response(405, "method_not_allowed", "method not allowed on this resource");
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// Unpadded base64url (RFC 4648 section 5): the alphabet of link ids.
std::string encode_base64url(ByteView bytes) {
  std::string out = encode_base64(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

// The shape of a link id: refused before the store is asked.
bool is_well_formed_link_id(std::string_view id) {
  if (id.size() != kLinkIdLength) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// The token of "Bearer <token>" when it has the shape of a token.
std::optional<std::string_view> bearer_token(std::string_view authorization) {
  if (!iequals_prefix(authorization, "bearer ")) return std::nullopt;
  std::string_view token = authorization.substr(7);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (!account::is_well_formed_token(token)) return std::nullopt;
  return token;
}

std::int64_t add_saturating(std::int64_t a, std::int64_t b) {
  if (b > 0 && a > std::numeric_limits<std::int64_t>::max() - b) return std::numeric_limits<std::int64_t>::max();
  return a + b;
}

std::string_view link_state_name(store::DeviceLinkState state) {
  switch (state) {
    case store::DeviceLinkState::open:
      return "open";
    case store::DeviceLinkState::requested:
      return "requested";
    case store::DeviceLinkState::approved:
      return "approved";
  }
  return "open";
}

// An opaque blob member: base64 of 1..max bytes. nullopt with a field error when it is not
// base64 or empty; `too_large` set (and nullopt) when it decodes to more than `max` bytes.
std::optional<Bytes> blob_member(const std::string& text, std::size_t max, const char* field, const char* what,
                                 std::vector<account::FieldError>& errors, bool& too_large) {
  auto bytes = decode_base64(text);
  if (!bytes || bytes->empty()) {
    errors.push_back({field, std::string(what) + " must be base64 of 1 to " + std::to_string(max) + " bytes"});
    return std::nullopt;
  }
  if (bytes->size() > max) {
    too_large = true;
    return std::nullopt;
  }
  return bytes;
}

}  // namespace

ApiResponse Api::route_device_link(const ApiRequest& request, std::string_view rest) {
  const std::string_view m = request.method;
  const auto slash = rest.find('/');
  const std::string_view id = rest.substr(0, slash);
  if (slash == std::string_view::npos) {
    if (m == "GET") return get_device_link(request, id);
    if (m == "DELETE") return delete_device_link(request, id);
    return link_method_not_allowed("GET, DELETE");
  }
  const std::string_view sub = rest.substr(slash + 1);
  if (sub == "request") return m == "PUT" ? put_device_link_request(request, id) : link_method_not_allowed("PUT");
  if (sub == "approve") return m == "POST" ? post_device_link_approval(request, id) : link_method_not_allowed("POST");
  if (sub == "provision") return m == "GET" ? get_device_link_provision(request, id) : link_method_not_allowed("GET");
  return error_response(404, "not_found", "no such resource");
}

void Api::purge_expired_links(std::int64_t now_ms) {
  std::int64_t last = last_link_purge_ms_.load();
  if (now_ms - last < config_.devices.purge_interval_ms) return;
  if (!last_link_purge_ms_.compare_exchange_strong(last, now_ms)) return;  // another thread purges
  auto purged = with_store([&](store::ServerStore& s) { return s.purge_expired_device_links(now_ms); });
  if (!purged) {
    spdlog::warn("purging expired device links: {}", purged.error().message());
  } else if (*purged > 0) {
    spdlog::info("purged {} expired device link(s)", *purged);
  }
}

ApiResponse Api::post_device_link(const ApiRequest& request) {
  POSTERN_AUTHENTICATE(owner, request);
  const std::string limiter_key = std::to_string(owner->account_id);
  if (!links_per_account_.try_take(limiter_key)) return too_many_requests(links_per_account_.retry_after_ms(limiter_key));
  const std::int64_t now = clock_.now_ms();
  purge_expired_links(now);
  Bytes random(kLinkIdRandomBytes);
  rng_.fill(random);
  const std::string link_id = encode_base64url(random);
  const std::int64_t expires = add_saturating(now, config_.devices.link_ttl_ms);
  auto created = with_store([&](store::ServerStore& s) {
    return s.create_device_link(link_id, owner->account_id, now, expires, config_.devices.max_open_links);
  });
  if (!created) {
    if (created.error() == store::Errc::too_large) {
      return error_response(409, "too_many_links",
                            "at most " + std::to_string(config_.devices.max_open_links) +
                                " links may be open at once; cancel one or wait until it expires");
    }
    if (created.error() == store::Errc::not_found) return unauthorized();  // the account went meanwhile
    return internal_error("creating a device link", created.error());
  }
  spdlog::info("account {} device {} created a device link", owner->account_id, owner->device_id);
  return json_response(201, {{"link_id", link_id}, {"expires_ms", expires}});
}

ApiResponse Api::get_device_link(const ApiRequest& request, std::string_view link_id) {
  POSTERN_AUTHENTICATE(owner, request);
  if (!is_well_formed_link_id(link_id)) return link_not_found();
  const std::int64_t now = clock_.now_ms();
  auto link = with_store([&](store::ServerStore& s) { return s.get_device_link(link_id, now); });
  if (!link) {
    if (link.error() == store::Errc::not_found) return link_not_found();
    return internal_error("reading a device link", link.error());
  }
  if (link->account_id != owner->account_id) return link_not_found();  // another account's: not there
  json j = {{"state", link_state_name(link->state)}, {"expires_ms", link->expires_ms}};
  if (link->state != store::DeviceLinkState::open) j["request"] = encode_base64(link->request);
  if (link->state == store::DeviceLinkState::approved) j["device_id"] = link->device_id;
  return json_response(200, j);
}

ApiResponse Api::put_device_link_request(const ApiRequest& request, std::string_view link_id) {
  // Not authenticated (the new device has no session yet): limited per client address.
  if (!link_requests_per_address_.try_take(request.client_address)) {
    return too_many_requests(link_requests_per_address_.retry_after_ms(request.client_address));
  }
  if (!is_well_formed_link_id(link_id)) return link_not_found();
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto request_text = string_member(*body, "request");
  const auto token_text = string_member(*body, "token_hash");
  if (!request_text) return bad_field_type("request", "a string");
  if (!token_text) return bad_field_type("token_hash", "a string");

  std::vector<account::FieldError> errors;
  bool too_large = false;
  const auto blob = blob_member(*request_text, store::kMaxLinkRequestBytes, "request", "Request", errors, too_large);
  if (too_large) {
    return error_response(413, "request_too_large",
                          "request is over " + std::to_string(store::kMaxLinkRequestBytes) + " bytes decoded");
  }
  std::optional<Bytes> token_hash;
  if (token_text->size() == kTokenHashHexLength) {
    if (auto decoded = from_hex(*token_text)) token_hash = std::move(*decoded);
  }
  if (!token_hash) {
    errors.push_back({"token_hash", "Token hash must be 64 hex digits (the SHA-256 of the new device's token)"});
  }
  if (!errors.empty()) return invalid_fields(errors);

  const std::int64_t now = clock_.now_ms();
  auto stored = with_store([&](store::ServerStore& s) { return s.request_device_link(link_id, *blob, *token_hash, now); });
  if (!stored) {
    if (stored.error() == store::Errc::not_found) return link_not_found();
    if (stored.error() == store::Errc::constraint) {
      return error_response(409, "link_used", "this link already has a request; create a new link");
    }
    return internal_error("storing a device link request", stored.error());
  }
  return json_response(202, json::object());
}

ApiResponse Api::post_device_link_approval(const ApiRequest& request, std::string_view link_id) {
  POSTERN_AUTHENTICATE(owner, request);
  if (!is_well_formed_link_id(link_id)) return link_not_found();
  const auto body = parse_object(request.body);
  if (!body) return bad_json();
  const auto device = body->find("device");
  if (device == body->end() || !device->is_object()) return bad_field_type("device", "an object");
  const auto provision_text = string_member(*body, "provision");
  if (!provision_text) return bad_field_type("provision", "a string");

  std::vector<account::FieldError> errors;
  const auto fields = parse_device(*device, errors);
  bool too_large = false;
  const auto provision =
      blob_member(*provision_text, store::kMaxProvisionBytes, "provision", "Provision", errors, too_large);
  if (too_large) {
    return error_response(413, "provision_too_large",
                          "provision is over " + std::to_string(store::kMaxProvisionBytes) + " bytes decoded");
  }
  if (!errors.empty()) return invalid_fields(errors);

  // The link's state is read and the approval made under one store lock, so the state answered
  // is the one the approval saw.
  struct Outcome {
    store::DeviceLinkState state = store::DeviceLinkState::open;
    std::uint32_t device_id = 0;
    bool token_taken = false;
  };
  const std::int64_t now = clock_.now_ms();
  const std::int64_t pickup_until = add_saturating(now, config_.devices.link_ttl_ms);
  auto outcome = with_store([&](store::ServerStore& s) -> Result<Outcome> {
    POSTERN_TRY(const store::DeviceLink link, s.get_device_link(link_id, now));
    if (link.account_id != owner->account_id) return store::Errc::not_found;
    if (link.state != store::DeviceLinkState::requested) return Outcome{link.state, 0, false};
    auto id = s.approve_device_link(link_id, owner->account_id, fields->identity_key, fields->registration_id,
                                    fields->name, *provision, now, pickup_until);
    if (!id) {
      if (id.error() == store::Errc::constraint) return Outcome{link.state, 0, true};
      return id.error();
    }
    forget_devices(owner->account_id);
    return Outcome{store::DeviceLinkState::approved, *id, false};
  });
  if (!outcome) {
    if (outcome.error() == store::Errc::not_found) return link_not_found();
    return internal_error("approving a device link", outcome.error());
  }
  if (outcome->token_taken) {
    return error_response(409, "token_in_use", "the new device's token is already in use; start again with a new link");
  }
  if (outcome->device_id == 0) {
    return error_response(409, "link_not_requested",
                          outcome->state == store::DeviceLinkState::open ? "the new device has not made its request yet"
                                                                         : "the link has been approved already");
  }
  spdlog::info("account {} device {} linked device {}", owner->account_id, owner->device_id, outcome->device_id);
  return json_response(201, {{"device_id", outcome->device_id}});
}

ApiResponse Api::get_device_link_provision(const ApiRequest& request, std::string_view link_id) {
  // Authenticated by the new device's token, compared with the hash in the link's request: before
  // the approval that token is not a session yet, and the route answers link_not_approved.
  const auto token = bearer_token(request.authorization);
  if (!token) return unauthorized();
  if (!is_well_formed_link_id(link_id)) return link_not_found();
  const auto digest = account::token_hash(*token);
  const std::int64_t now = clock_.now_ms();
  enum class Refusal { none, not_approved, not_a_session };
  struct Outcome {
    Refusal refusal = Refusal::none;
    store::DeviceLink link;
  };
  auto outcome = with_store([&](store::ServerStore& s) -> Result<Outcome> {
    POSTERN_TRY(const store::DeviceLink link, s.get_device_link(link_id, now));
    if (!account::token_hash_equal(link.token_hash, digest)) return store::Errc::not_found;
    if (link.state != store::DeviceLinkState::approved) return Outcome{Refusal::not_approved, {}};
    // The token must still be the linked device's session (not logged out, device not removed).
    auto session = s.find_token(digest);
    if (!session) {
      if (session.error() == store::Errc::not_found) return Outcome{Refusal::not_a_session, {}};
      return session.error();
    }
    if (session->account_id != link.account_id || session->device_id != link.device_id) return store::Errc::not_found;
    POSTERN_TRY(store::DeviceLink taken, s.take_device_link(link_id, digest, now));
    return Outcome{Refusal::none, std::move(taken)};
  });
  if (!outcome) {
    if (outcome.error() == store::Errc::not_found) return link_not_found();
    return internal_error("picking up a device link", outcome.error());
  }
  if (outcome->refusal == Refusal::not_approved) {
    return error_response(409, "link_not_approved", "the link has not been approved yet; ask again shortly");
  }
  if (outcome->refusal == Refusal::not_a_session) return unauthorized();
  const store::DeviceLink& link = outcome->link;
  spdlog::info("account {} device {} picked up its provisioning", link.account_id, link.device_id);
  return json_response(200, {{"provision", encode_base64(link.provision)},
                             {"account_id", link.account_id},
                             {"device_id", link.device_id}});
}

ApiResponse Api::delete_device_link(const ApiRequest& request, std::string_view link_id) {
  POSTERN_AUTHENTICATE(owner, request);
  if (!is_well_formed_link_id(link_id)) return link_not_found();
  const std::int64_t now = clock_.now_ms();
  auto deleted =
      with_store([&](store::ServerStore& s) { return s.delete_device_link(link_id, owner->account_id, now); });
  if (!deleted) return internal_error("deleting a device link", deleted.error());
  if (!*deleted) return link_not_found();
  spdlog::info("account {} device {} cancelled a device link", owner->account_id, owner->device_id);
  return {204, {}, {}};
}

}  // namespace postern::server
