#include "postern/client/server_api.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

namespace postern::client {
namespace {

using nlohmann::json;

std::optional<json> parse_json(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

Failure protocol_failure(std::string what) {
  return Failure::from(make_error_code(Errc::protocol_error), "the server's answer does not parse: " + std::move(what));
}

template <class T>
bool get_int(const json& j, const char* key, T& out) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return false;
  if constexpr (std::is_unsigned_v<T>) {
    if (it->is_number_unsigned()) {
      const auto v = it->get<std::uint64_t>();
      if (v > std::numeric_limits<T>::max()) return false;
      out = static_cast<T>(v);
      return true;
    }
    const auto v = it->get<std::int64_t>();
    if (v < 0 || static_cast<std::uint64_t>(v) > std::numeric_limits<T>::max()) return false;
    out = static_cast<T>(v);
    return true;
  } else {
    if (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      return false;
    const auto v = it->get<std::int64_t>();
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) return false;
    out = static_cast<T>(v);
    return true;
  }
}

bool get_string(const json& j, const char* key, std::string& out) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

Result<crypto::PublicKey> key_from(const json& j, const char* key) {
  std::string text;
  if (!get_string(j, key, text)) return make_error_code(Errc::protocol_error);
  POSTERN_TRY(auto bytes, base64_decode(text));
  return crypto::PublicKey::deserialize(bytes);
}

std::vector<std::uint32_t> id_list(const json& j, const char* key) {
  std::vector<std::uint32_t> out;
  const auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it)
    if (v.is_number_unsigned() && v.get<std::uint64_t>() <= 0xffffffffu) out.push_back(static_cast<std::uint32_t>(v.get<std::uint64_t>()));
  return out;
}

bool is_success(unsigned status) { return status >= 200 && status < 300; }

}  // namespace

std::string base64_encode(ByteView bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::char_traits<char>::length(out.c_str()));
  return out;
}

Result<Bytes> base64_decode(std::string_view text) {
  // Either alphabet, padding optional.
  std::string normal(text);
  std::replace(normal.begin(), normal.end(), '-', '+');
  std::replace(normal.begin(), normal.end(), '_', '/');
  while (!normal.empty() && normal.back() == '=') normal.pop_back();
  Bytes out(normal.size() * 3 / 4 + 3);
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), normal.data(), normal.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
      end != normal.data() + normal.size())
    return make_error_code(Errc::protocol_error);
  out.resize(len);
  return out;
}

Failure ServerApi::failure_from(const HttpResponse& response) {
  Failure f;
  f.code = make_error_code(Errc::server_error);
  f.http_status = response.status;
  f.message = "the server answered " + std::to_string(response.status);
  if (const auto j = parse_json(response.body); j && j->is_object()) {
    const auto err = j->find("error");
    if (err != j->end() && err->is_object()) {
      get_string(*err, "code", f.server_code);
      std::string message;
      if (get_string(*err, "message", message) && !message.empty()) f.message = message;
      if (const auto fields = err->find("fields"); fields != err->end() && fields->is_array()) {
        for (const auto& fe : *fields) {
          FieldProblem p;
          if (fe.is_object() && get_string(fe, "field", p.field) && get_string(fe, "message", p.message))
            f.fields.push_back(std::move(p));
        }
      }
    }
  }
  if (const auto ra = response.header("Retry-After")) {
    std::int64_t seconds = 0;
    const auto [p, ec] = std::from_chars(ra->data(), ra->data() + ra->size(), seconds);
    if (ec == std::errc{} && seconds >= 0) f.retry_after_s = seconds;
  }
  return f;
}

Outcome<HttpResponse> ServerApi::call(const std::string& method, const std::string& target, const std::string& body,
                                      bool authenticated) {
  HttpRequest request;
  request.method = method;
  request.target = target;
  request.body = body;
  if (!body.empty()) request.headers.push_back({"Content-Type", "application/json"});
  if (authenticated) {
    if (!token_) return Failure::from(make_error_code(Errc::not_registered));
    request.bearer = *token_;
  }
  auto response = link_.send(request);
  if (!response.ok()) return Failure::from(response.error());
  if (!is_success(response->status)) return failure_from(*response);
  return std::move(response).value();
}

Outcome<ChallengeInfo> ServerApi::challenge() {
  POSTERN_OUTCOME_TRY(auto response, call("POST", "/v1/challenge", "", false));
  const auto j = parse_json(response.body);
  ChallengeInfo info;
  if (!j || !get_string(*j, "token", info.token) || !get_int(*j, "difficulty", info.difficulty) ||
      !get_int(*j, "expires_ms", info.expires_ms))
    return protocol_failure("challenge");
  return info;
}

Outcome<std::int64_t> ServerApi::register_account(const std::string& email, const std::string& password,
                                                  const std::string& birthdate, bool accept_terms,
                                                  const std::string& pow_token, std::uint64_t nonce) {
  json body = {{"email", email}, {"password", password}, {"birthdate", birthdate}, {"accept_terms", accept_terms},
               {"pow", {{"token", pow_token}, {"nonce", nonce}}}};
  std::string text = body.dump();
  auto response = call("POST", "/v1/accounts", text, false);
  sodium_memzero(text.data(), text.size());
  if (!response.ok()) return response.failure();
  const auto j = parse_json(response->body);
  std::int64_t id = 0;
  if (!j || !get_int(*j, "account_id", id)) return protocol_failure("registration");
  return id;
}

Outcome<LoginInfo> ServerApi::login(const std::string& email, const std::string& password,
                                    const std::string& device_name, const crypto::PublicKey& identity_key,
                                    std::uint32_t registration_id) {
  const auto key = identity_key.serialize();
  json body = {{"email", email},
               {"password", password},
               {"device", {{"name", device_name}, {"identity_key", base64_encode(key)}, {"registration_id", registration_id}}}};
  std::string text = body.dump();
  auto response = call("POST", "/v1/sessions", text, false);
  sodium_memzero(text.data(), text.size());
  if (!response.ok()) return response.failure();
  const auto j = parse_json(response->body);
  LoginInfo info;
  if (!j || !get_int(*j, "account_id", info.account_id) || !get_int(*j, "device_id", info.device_id) ||
      !get_string(*j, "token", info.token))
    return protocol_failure("login");
  return info;
}

Outcome<Done> ServerApi::logout() {
  POSTERN_OUTCOME_TRY(auto response, call("DELETE", "/v1/sessions/current", "", true));
  (void)response;
  return Done{};
}

Outcome<std::vector<DeviceInfo>> ServerApi::devices() {
  POSTERN_OUTCOME_TRY(auto response, call("GET", "/v1/devices", "", true));
  const auto j = parse_json(response.body);
  if (!j || !j->contains("devices") || !(*j)["devices"].is_array()) return protocol_failure("devices");
  std::vector<DeviceInfo> out;
  for (const auto& d : (*j)["devices"]) {
    DeviceInfo info;
    if (!d.is_object() || !get_int(d, "id", info.id)) return protocol_failure("devices");
    get_string(d, "name", info.name);
    get_int(d, "registration_id", info.registration_id);
    get_int(d, "created_ms", info.created_ms);
    get_int(d, "last_seen_ms", info.last_seen_ms);
    if (const auto c = d.find("current"); c != d.end() && c->is_boolean()) info.current = c->get<bool>();
    out.push_back(std::move(info));
  }
  return out;
}

Outcome<Done> ServerApi::remove_device(std::uint32_t device_id) {
  POSTERN_OUTCOME_TRY(auto response, call("DELETE", "/v1/devices/" + std::to_string(device_id), "", true));
  (void)response;
  return Done{};
}

Outcome<std::size_t> ServerApi::upload_keys(const std::optional<SignedPreKeyUpload>& signed_pre_key,
                                            const std::vector<OneTimePreKey>& one_time) {
  json body = json::object();
  if (signed_pre_key) {
    body["signed_pre_key"] = {{"id", signed_pre_key->id},
                              {"public_key", base64_encode(signed_pre_key->public_key.serialize())},
                              {"signature", base64_encode(signed_pre_key->signature)}};
  }
  if (!one_time.empty()) {
    json list = json::array();
    for (const auto& k : one_time) list.push_back({{"id", k.id}, {"public_key", base64_encode(k.public_key.serialize())}});
    body["one_time_pre_keys"] = std::move(list);
  }
  POSTERN_OUTCOME_TRY(auto response, call("PUT", "/v1/keys", body.dump(), true));
  const auto j = parse_json(response.body);
  std::size_t count = 0;
  if (!j || !get_int(*j, "one_time_pre_keys", count)) return protocol_failure("key upload");
  return count;
}

Outcome<ServerApi::KeyCount> ServerApi::key_count() {
  POSTERN_OUTCOME_TRY(auto response, call("GET", "/v1/keys/count", "", true));
  const auto j = parse_json(response.body);
  KeyCount count;
  if (!j || !get_int(*j, "one_time_pre_keys", count.one_time)) return protocol_failure("key count");
  std::uint32_t id = 0;
  if (get_int(*j, "signed_pre_key_id", id)) count.signed_pre_key_id = id;
  return count;
}

Outcome<std::vector<protocol::PreKeyBundle>> ServerApi::fetch_bundles(std::int64_t account_id) {
  POSTERN_OUTCOME_TRY(auto response, call("GET", "/v1/keys/" + std::to_string(account_id), "", true));
  const auto j = parse_json(response.body);
  if (!j || !j->contains("devices") || !(*j)["devices"].is_array()) return protocol_failure("key bundles");
  std::vector<protocol::PreKeyBundle> out;
  for (const auto& d : (*j)["devices"]) {
    protocol::PreKeyBundle b;
    if (!d.is_object() || !get_int(d, "device_id", b.device_id) || !get_int(d, "registration_id", b.registration_id))
      return protocol_failure("key bundles");
    auto identity = key_from(d, "identity_key");
    if (!identity.ok()) return protocol_failure("identity key");
    b.identity_key = *identity;
    const auto spk = d.find("signed_pre_key");
    if (spk == d.end() || !spk->is_object() || !get_int(*spk, "id", b.signed_pre_key_id)) return protocol_failure("signed prekey");
    auto spk_key = key_from(*spk, "public_key");
    std::string sig_text;
    if (!spk_key.ok() || !get_string(*spk, "signature", sig_text)) return protocol_failure("signed prekey");
    auto sig = base64_decode(sig_text);
    if (!sig.ok() || sig->size() != b.signed_pre_key_signature.size()) return protocol_failure("signature");
    std::copy(sig->begin(), sig->end(), b.signed_pre_key_signature.begin());
    b.signed_pre_key = *spk_key;
    const auto otk = d.find("one_time_pre_key");
    if (otk != d.end() && otk->is_object()) {
      std::uint32_t id = 0;
      auto k = key_from(*otk, "public_key");
      if (!get_int(*otk, "id", id) || !k.ok()) return protocol_failure("one-time prekey");
      b.pre_key_id = id;
      b.pre_key = *k;
    }
    out.push_back(b);
  }
  return out;
}

Outcome<ServerApi::DirectoryEntry> ServerApi::lookup(const std::string& email) {
  std::string encoded;
  for (unsigned char c : email) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '+' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      encoded += '%';
      encoded += kHex[c >> 4];
      encoded += kHex[c & 15];
    }
  }
  POSTERN_OUTCOME_TRY(auto response, call("GET", "/v1/directory?email=" + encoded, "", true));
  const auto j = parse_json(response.body);
  DirectoryEntry entry;
  if (!j || !get_int(*j, "account_id", entry.account_id)) return protocol_failure("directory");
  entry.device_ids = id_list(*j, "device_ids");
  return entry;
}

Outcome<std::vector<SendResult>> ServerApi::send(std::int64_t account_id, const std::vector<OutgoingEnvelope>& envelopes,
                                                 Mismatch* mismatch) {
  json list = json::array();
  for (const auto& e : envelopes) {
    json m = {{"device_id", e.device_id}, {"type", e.type}, {"content", base64_encode(e.content)},
              {"client_id", e.client_id}, {"timestamp", e.timestamp}};
    if (e.registration_id != 0) m["registration_id"] = e.registration_id;
    list.push_back(std::move(m));
  }
  const json body = {{"messages", std::move(list)}};
  HttpRequest request;
  request.method = "PUT";
  request.target = "/v1/messages/" + std::to_string(account_id);
  request.body = body.dump();
  request.headers.push_back({"Content-Type", "application/json"});
  if (!token_) return Failure::from(make_error_code(Errc::not_registered));
  request.bearer = *token_;
  auto response = link_.send(request);
  if (!response.ok()) return Failure::from(response.error());
  if (!is_success(response->status)) {
    if (mismatch != nullptr) {
      if (const auto j = parse_json(response->body); j && j->is_object() && j->contains("error")) {
        const auto& err = (*j)["error"];
        if (err.is_object()) {
          mismatch->missing = id_list(err, "missing_devices");
          mismatch->extra = id_list(err, "extra_devices");
          mismatch->stale = id_list(err, "stale_devices");
        }
      }
    }
    return failure_from(*response);
  }
  const auto j = parse_json(response->body);
  if (!j || !j->contains("messages") || !(*j)["messages"].is_array()) return protocol_failure("send");
  std::vector<SendResult> out;
  for (const auto& r : (*j)["messages"]) {
    SendResult s;
    if (!r.is_object() || !get_int(r, "device_id", s.device_id) || !get_int(r, "server_id", s.server_id))
      return protocol_failure("send");
    if (const auto d = r.find("duplicate"); d != r.end() && d->is_boolean()) s.duplicate = d->get<bool>();
    out.push_back(s);
  }
  return out;
}

Outcome<ServerApi::Page> ServerApi::fetch_queue(std::uint64_t after, unsigned limit) {
  POSTERN_OUTCOME_TRY(auto response, call("GET", "/v1/messages?after=" + std::to_string(after) + "&limit=" + std::to_string(limit), "", true));
  const auto j = parse_json(response.body);
  if (!j || !j->contains("messages") || !(*j)["messages"].is_array()) return protocol_failure("queue");
  Page page;
  for (const auto& m : (*j)["messages"]) {
    QueuedEnvelope e;
    std::string content;
    if (!m.is_object() || !get_int(m, "server_id", e.server_id) || !get_int(m, "sender_account", e.sender_account) ||
        !get_int(m, "sender_device", e.sender_device) || !get_int(m, "type", e.type) ||
        !get_int(m, "timestamp", e.timestamp) || !get_string(m, "content", content))
      return protocol_failure("queue");
    get_string(m, "client_id", e.client_id);
    auto bytes = base64_decode(content);
    if (!bytes.ok()) return protocol_failure("queue content");
    e.content = std::move(*bytes);
    page.envelopes.push_back(std::move(e));
  }
  if (const auto more = j->find("more"); more != j->end() && more->is_boolean()) page.more = more->get<bool>();
  return page;
}

Outcome<Done> ServerApi::ack(const std::vector<std::uint64_t>& server_ids) {
  const json body = {{"server_ids", server_ids}};
  POSTERN_OUTCOME_TRY(auto response, call("POST", "/v1/messages/ack", body.dump(), true));
  (void)response;
  return Done{};
}

}  // namespace postern::client
