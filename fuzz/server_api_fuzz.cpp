// Api::handle (postern-server's request handling, without a socket) on hostile requests, over a
// real SqliteServerStore in a temporary directory. Every answer must be well formed: a known
// status, an empty body for 204, otherwise a JSON object that is an error {"error": {"code",
// "message"}} exactly when the status is 4xx, with the headers its status promises. A 500 is a
// finding too: no request may make the store or the handler fail.
//
// Input: [method][auth][route][body template] then the text: "PATH-SUFFIX\nAUTHORIZATION\nBODY"
// (each part optional). The route and body template bytes pick from tables below so that the
// fuzzer reaches every endpoint with plausible bodies at once; in them $TOKEN is a live bearer
// token, $ACCOUNT its account id, $POW a fresh proof-of-work token (difficulty 0: any nonce
// solves it), $IK the device's identity key, $SPK/$SIG a signed prekey and its valid signature,
// and %s the fuzzed body text. After every input the session is repaired if the input ended it
// (logout, password change, device or account deletion), so inputs stay independent.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api_fixture.h"
#include "invariant.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/crypto/xeddsa.h"
#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/store/sqlite_server_store.h"
#include "postern/util/bytes.h"
#include "postern/util/clock.h"

namespace {

using postern::fuzz::fail;
using postern::server::ApiRequest;
using postern::server::ApiResponse;
using json = nlohmann::json;

constexpr std::array<std::string_view, 7> kMethods{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"};

constexpr std::array<std::string_view, 22> kRoutes{
    "/v1/challenge",    "/v1/accounts",       "/v1/sessions",      "/v1/sessions/current",
    "/v1/devices",      "/v1/devices/",       "/v1/keys",          "/v1/keys/count",
    "/v1/keys/",        "/v1/keys/$ACCOUNT",  "/v1/directory",     "/v1/directory?email=",
    "/v1/account",      "/v1/account/password", "/",               "",
    "/v1/messages",     "/v1/messages/$ACCOUNT", "/v1/messages/ack", "/v1/messages?after=",
    "/v1/devices/links", "/v1/devices/links/"};

constexpr std::array<std::string_view, 12> kBodies{
    "%s",
    R"({"email": "fuzz@example.com", "password": "Secret1", "birthdate": "1990-01-01", "accept_terms": true, "pow": {"token": "$POW", "nonce": 0}, %s})",
    R"({"email": "%s", "password": "Secret1", "birthdate": "1990-01-01", "accept_terms": true, "pow": {"token": "$POW", "nonce": 0}})",
    R"({"email": "fuzz@example.com", "password": "Secret1", "device": {"name": "n", "identity_key": "$IK", "registration_id": 1}, %s})",
    R"({"email": "fuzz@example.com", "password": "Secret1", "device": %s})",
    R"({"signed_pre_key": {"id": 1, "public_key": "$SPK", "signature": "$SIG"}, "one_time_pre_keys": [%s]})",
    R"({"signed_pre_key": {"id": 2, "public_key": "$SPK", "signature": "%s"}})",
    R"({"one_time_pre_keys": [{"id": 1, "public_key": "$SPK"}, %s]})",
    R"({"signed_pre_key": %s})",
    R"({"old_password": "Secret1", "new_password": "%s"})",
    R"({"old_password": "%s", "new_password": "Secret2"})",
    R"({"password": "%s"})"};

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

bool known_status(unsigned s) {
  for (unsigned k : {200u, 201u, 202u, 204u, 400u, 401u, 403u, 404u, 405u, 409u, 413u, 422u, 429u}) {
    if (s == k) return true;
  }
  return false;
}

bool has_header(const ApiResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name && !v.empty()) return true;
  }
  return false;
}

void check_response(const ApiResponse& r) {
  if (r.status == 500) fail("a request made the handler answer 500");
  if (!known_status(r.status)) fail("unexpected status");
  if (r.status == 204) {
    if (!r.body.empty()) fail("204 with a body");
    return;
  }
  const json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("the body is not a JSON object");
  const auto err = j.find("error");
  if (r.status >= 400) {
    if (err == j.end() || !err->is_object()) fail("an error status without an error object");
    const auto code = err->find("code");
    const auto message = err->find("message");
    if (code == err->end() || !code->is_string() || code->get_ref<const std::string&>().empty()) fail("error.code");
    if (message == err->end() || !message->is_string()) fail("error.message");
    if (r.status == 401 && !has_header(r, "WWW-Authenticate")) fail("401 without WWW-Authenticate");
    if (r.status == 405 && !has_header(r, "Allow")) fail("405 without Allow");
    if (r.status == 429 && !has_header(r, "Retry-After")) fail("429 without Retry-After");
  } else if (err != j.end()) {
    fail("a success status with an error object");
  }
}

class World {
 public:
  World() : f_(1, "api-fuzz") {
    const auto identity = postern::crypto::KeyPair::generate(f_.rng);
    const auto spk = postern::crypto::KeyPair::generate(f_.rng);
    const auto ik_bytes = identity.public_key.serialize();
    const auto spk_bytes = spk.public_key.serialize();
    const auto sig = postern::crypto::xeddsa_sign(identity.private_key,
                                                  postern::ByteView(spk_bytes.data(), spk_bytes.size()), f_.rng);
    ik_ = postern::to_hex(postern::ByteView(ik_bytes.data(), ik_bytes.size()));
    spk_ = postern::to_hex(postern::ByteView(spk_bytes.data(), spk_bytes.size()));
    sig_ = postern::to_hex(postern::ByteView(sig.data(), sig.size()));
    repair_session();
  }


  void run(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return;
    const std::string_view method = kMethods[data[0] % kMethods.size()];
    const unsigned auth_mode = data[1] % 4;
    std::string path(kRoutes[data[2] % kRoutes.size()]);
    const std::string_view body_template = kBodies[data[3] % kBodies.size()];
    std::string_view text(reinterpret_cast<const char*>(data + 4), size - 4);
    const auto next_part = [&text] {
      const auto nl = text.find('\n');
      const std::string_view part = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      return part;
    };
    if (data[2] & 0x80) path += next_part();
    std::string authorization;
    if (auth_mode == 1) authorization = "Bearer " + token_;
    if (auth_mode == 2) authorization = std::string(next_part());
    if (auth_mode == 3) authorization = "Bearer " + std::string(next_part());
    std::string body(body_template);
    replace_all(body, "%s", text);
    substitute(path);
    substitute(body);

    ApiRequest request{method, path, authorization, body, "192.0.2.1"};
    check_response(f_.api->handle(request));
    (void)postern::server::Api::route_name(path);
    f_.clock.advance_ms(1000);
    repair_session();
  }

 private:
  void substitute(std::string& s) {
    if (s.find('$') == std::string::npos) return;
    replace_all(s, "$TOKEN", token_);
    replace_all(s, "$ACCOUNT", std::to_string(account_id_));
    replace_all(s, "$IK", ik_);
    replace_all(s, "$SPK", spk_);
    replace_all(s, "$SIG", sig_);
    if (s.find("$POW") != std::string::npos) replace_all(s, "$POW", fresh_pow());
  }

  std::string fresh_pow() {
    const ApiResponse r = f_.api->handle({"POST", "/v1/challenge", {}, {}, "192.0.2.1"});
    if (r.status != 200) fail("issuing a challenge");
    return json::parse(r.body).at("token").get<std::string>();
  }

  ApiResponse post(std::string_view path, const json& body) {
    const std::string text = body.dump();
    return f_.api->handle({"POST", path, {}, text, "192.0.2.1"});
  }

  // A live session of an account with one device whose keys are uploaded; a new account when the
  // input deleted it or changed its password.
  void repair_session() {
    if (!token_.empty()) {
      const std::string auth = "Bearer " + token_;
      if (f_.api->handle({"GET", "/v1/keys/count", auth, {}, "192.0.2.1"}).status == 200) return;
    }
    const json device = {{"name", "fuzz"}, {"identity_key", ik_}, {"registration_id", 1}};
    ApiResponse r = post("/v1/sessions", {{"email", email_}, {"password", "Secret1"}, {"device", device}});
    if (r.status != 201) {
      email_ = "fuzz" + std::to_string(++accounts_) + "@example.com";
      const ApiResponse created =
          post("/v1/accounts", {{"email", email_}, {"password", "Secret1"}, {"birthdate", "1990-01-01"},
                                {"accept_terms", true}, {"pow", {{"token", fresh_pow()}, {"nonce", 0}}}});
      if (created.status != 201) fail("registering the fuzz account");
      r = post("/v1/sessions", {{"email", email_}, {"password", "Secret1"}, {"device", device}});
      if (r.status != 201) fail("signing in the fuzz account");
    }
    const json session = json::parse(r.body);
    token_ = session.at("token").get<std::string>();
    account_id_ = session.at("account_id").get<std::int64_t>();
    const std::string keys = R"({"signed_pre_key": {"id": 1, "public_key": ")" + spk_ + R"(", "signature": ")" +
                             sig_ + R"("}, "one_time_pre_keys": [{"id": 1, "public_key": ")" + spk_ + R"("}]})";
    if (f_.api->handle({"PUT", "/v1/keys", "Bearer " + token_, keys, "192.0.2.1"}).status != 200) {
      fail("uploading the fuzz device's keys");
    }
  }

  postern::fuzz::ApiFixture f_;
  std::string ik_, spk_, sig_;
  std::string email_ = "fuzz0@example.com";
  std::string token_;
  std::int64_t account_id_ = 0;
  unsigned accounts_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  world.run(data, size);
  return 0;
}
