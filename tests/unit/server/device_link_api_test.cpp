// Tests of linked devices through Api::handle (src/postern/server/api.cpp, docs/protocol.md
// "Linked devices"): the whole flow from link to provision pickup, single use, expiry on a manual
// clock, other accounts, the state rules, sizes, limits, and that a linked device is an ordinary
// device afterwards (its token authenticates, it is listed, senders must include it, it can be
// removed). The Api runs over a real SqliteServerStore in a temporary directory.
#include <gtest/gtest.h>

#include <array>
#include <concepts>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "postern/client/server_api.h"
#include "postern/account/token.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/store/sqlite_server_store.h"
#include "postern/util/bytes.h"
#include "postern/util/clock.h"
#include "store/temp_dir.h"

namespace postern::server {
namespace {

using json = nlohmann::json;

constexpr std::int64_t kStart = 1'800'000'000'000;

struct Session {
  std::int64_t account_id = 0;
  std::uint32_t device_id = 0;
  std::string token;
};

// Standard base64 with padding, as the server writes keys (libsodium, through the client's helper).
std::string base64(ByteView bytes) { return client::base64_encode(bytes); }

json parse(const ApiResponse& r) {
  return r.body.empty() ? json() : json::parse(r.body, nullptr, false);
}

std::string code_of(const ApiResponse& r) {
  const json j = parse(r);
  if (!j.is_object() || !j.contains("error")) return "";
  return j["error"].value("code", "");
}

class DeviceLinkApi : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::SqliteServerStore::open(dir_.file("postern.db"));
    ASSERT_TRUE(opened.ok()) << opened.error().message();
    db_ = std::move(*opened);
    config_.pow_difficulty = 0;
    config_.password = account::PasswordHashParams::minimum();
    const account::RateLimit plenty{1e9, 1e9};
    config_.rate_limits.registration_per_address = plenty;
    config_.rate_limits.challenges_per_address = plenty;
    config_.rate_limits.login_per_account = plenty;
    config_.rate_limits.login_per_address = plenty;
    config_.rate_limits.sends_per_account = plenty;
    config_.devices.links_per_account = plenty;
    config_.devices.link_requests_per_address = plenty;
    start();
  }

  void TearDown() override {
    api_.reset();
    db_.reset();
  }

  // (Re)creates the Api over the store with config_ as it is now.
  void start() {
    api_.reset();
    std::array<std::uint8_t, 32> secret{};
    secret.fill(9);
    api_ = std::make_unique<Api>(*db_, config_, ByteView(secret.data(), secret.size()), clock_, rng_);
  }

  ApiResponse call(std::string_view method, std::string_view target, const std::string& body = "",
                   const std::string& token = "", const std::string& address = "192.0.2.1") {
    const std::string authorization = token.empty() ? "" : "Bearer " + token;
    ApiRequest request{method, target, authorization, body, address};
    return api_->handle(request);
  }
  template <class J>
    requires std::same_as<J, json>
  ApiResponse call(std::string_view method, std::string_view target, const J& body, const std::string& token = "") {
    return call(method, target, body.dump(), token);
  }

  std::string identity_key_hex() {
    const auto pair = crypto::KeyPair::generate(rng_);
    const auto bytes = pair.public_key.serialize();
    return to_hex(ByteView(bytes.data(), bytes.size()));
  }

  Session sign_up(const std::string& email) {
    const ApiResponse challenge = call("POST", "/v1/challenge");
    EXPECT_EQ(challenge.status, 200u);
    const json form = {{"email", email},
                       {"password", "Secret1"},
                       {"birthdate", "1990-05-17"},
                       {"accept_terms", true},
                       {"pow", {{"token", parse(challenge)["token"]}, {"nonce", 0}}}};
    const ApiResponse created = call("POST", "/v1/accounts", form);
    EXPECT_EQ(created.status, 201u) << created.body;
    return log_in(email, "first");
  }

  Session log_in(const std::string& email, const std::string& name) {
    const json login = {{"email", email},
                        {"password", "Secret1"},
                        {"device", {{"name", name}, {"identity_key", identity_key_hex()}, {"registration_id", 1}}}};
    const ApiResponse r = call("POST", "/v1/sessions", login);
    EXPECT_EQ(r.status, 201u) << r.body;
    const json j = parse(r);
    return {j.value("account_id", std::int64_t{0}), j.value("device_id", 0u), j.value("token", "")};
  }

  std::string create_link(const Session& s) {
    const ApiResponse r = call("POST", "/v1/devices/links", "", s.token);
    EXPECT_EQ(r.status, 201u) << r.body;
    return parse(r).value("link_id", "");
  }

  json request_body(const std::string& new_token, std::size_t request_bytes = 32) {
    const auto digest = account::token_hash(new_token);
    return {{"request", base64(Bytes(request_bytes, 0x5a))}, {"token_hash", to_hex(digest)}};
  }

  json approve_body(std::size_t provision_bytes = 64, const std::string& name = "laptop") {
    return {{"device", {{"name", name}, {"identity_key", identity_key_hex()}, {"registration_id", 4242}}},
            {"provision", base64(Bytes(provision_bytes, 0x33))}};
  }

  // Creates a link of `s`, requests it with a fresh token and approves it: the new device's token.
  std::string link_device(const Session& s, std::string& link_id, std::uint32_t& device_id) {
    link_id = create_link(s);
    const std::string new_token = account::generate_token(rng_);
    EXPECT_EQ(call("PUT", "/v1/devices/links/" + link_id + "/request", request_body(new_token)).status, 202u);
    const ApiResponse approved = call("POST", "/v1/devices/links/" + link_id + "/approve", approve_body(), s.token);
    EXPECT_EQ(approved.status, 201u) << approved.body;
    device_id = parse(approved).value("device_id", 0u);
    return new_token;
  }

  store::store_test::TempDir dir_;
  ManualClock clock_{kStart};
  crypto::DeterministicRng rng_{7};
  std::unique_ptr<store::SqliteServerStore> db_;
  ServerConfig config_;
  std::unique_ptr<Api> api_;
};

TEST_F(DeviceLinkApi, WholeFlowRegistersTheDeviceAndHandsTheProvisionOutOnce) {
  const Session alice = sign_up("alice@example.com");

  const ApiResponse created = call("POST", "/v1/devices/links", "", alice.token);
  ASSERT_EQ(created.status, 201u) << created.body;
  const std::string link_id = parse(created)["link_id"];
  EXPECT_EQ(link_id.size(), 22u);
  EXPECT_EQ(link_id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_EQ(parse(created)["expires_ms"], kStart + 600'000);
  const std::string link = "/v1/devices/links/" + link_id;

  ApiResponse state = call("GET", link, "", alice.token);
  ASSERT_EQ(state.status, 200u) << state.body;
  EXPECT_EQ(parse(state)["state"], "open");
  EXPECT_FALSE(parse(state).contains("request"));
  EXPECT_EQ(parse(state)["expires_ms"], kStart + 600'000);

  // The new device: its own token, only the hash goes to the server, no Authorization.
  const std::string new_token = account::generate_token(rng_);
  const ApiResponse requested = call("PUT", link + "/request", request_body(new_token, 100));
  ASSERT_EQ(requested.status, 202u) << requested.body;
  EXPECT_EQ(parse(requested), json::object());

  state = call("GET", link, "", alice.token);
  EXPECT_EQ(parse(state)["state"], "requested");
  EXPECT_EQ(parse(state)["request"], base64(Bytes(100, 0x5a)));

  // Before the approval the new device's token is not a session, and the pickup says so.
  EXPECT_EQ(call("GET", "/v1/devices", "", new_token).status, 401u);
  const ApiResponse early = call("GET", link + "/provision", "", new_token);
  EXPECT_EQ(early.status, 409u);
  EXPECT_EQ(code_of(early), "link_not_approved");

  clock_.advance_ms(1000);
  const ApiResponse approved = call("POST", link + "/approve", approve_body(300), alice.token);
  ASSERT_EQ(approved.status, 201u) << approved.body;
  EXPECT_EQ(parse(approved)["device_id"], 2);

  state = call("GET", link, "", alice.token);
  EXPECT_EQ(parse(state)["state"], "approved");
  EXPECT_EQ(parse(state)["device_id"], 2);
  EXPECT_EQ(parse(state)["request"], base64(Bytes(100, 0x5a)));
  EXPECT_EQ(parse(state)["expires_ms"], kStart + 1000 + 600'000);  // the pickup gets a whole TTL

  // The new device is an ordinary device with a session now.
  const ApiResponse devices = call("GET", "/v1/devices", "", new_token);
  ASSERT_EQ(devices.status, 200u);
  const json list = parse(devices)["devices"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1]["id"], 2);
  EXPECT_EQ(list[1]["name"], "laptop");
  EXPECT_EQ(list[1]["registration_id"], 4242);
  EXPECT_EQ(list[1]["current"], true);
  EXPECT_EQ(list[0]["current"], false);
  EXPECT_EQ(call("GET", "/v1/keys/count", "", new_token).status, 200u);

  // Another token (even the account's other device) does not get the provision.
  EXPECT_EQ(code_of(call("GET", link + "/provision", "", alice.token)), "link_not_found");
  const ApiResponse pickup = call("GET", link + "/provision", "", new_token);
  ASSERT_EQ(pickup.status, 200u) << pickup.body;
  EXPECT_EQ(parse(pickup)["provision"], base64(Bytes(300, 0x33)));
  EXPECT_EQ(parse(pickup)["account_id"], alice.account_id);
  EXPECT_EQ(parse(pickup)["device_id"], 2);

  // Single use: the link is gone.
  EXPECT_EQ(code_of(call("GET", link + "/provision", "", new_token)), "link_not_found");
  EXPECT_EQ(call("GET", link, "", alice.token).status, 404u);
  EXPECT_EQ(db_->get_device_link(link_id, clock_.now_ms()).error(), store::Errc::not_found);
  EXPECT_EQ(call("GET", "/v1/devices", "", new_token).status, 200u);  // the session stays
}

TEST_F(DeviceLinkApi, RequestTwiceIsALinkUsedConflict) {
  const Session alice = sign_up("alice@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  const std::string first = account::generate_token(rng_);
  ASSERT_EQ(call("PUT", link + "/request", request_body(first)).status, 202u);
  const ApiResponse second = call("PUT", link + "/request", request_body(account::generate_token(rng_), 7));
  EXPECT_EQ(second.status, 409u);
  EXPECT_EQ(code_of(second), "link_used");
  EXPECT_EQ(parse(call("GET", link, "", alice.token))["request"], base64(Bytes(32, 0x5a)));  // the first wins
}

TEST_F(DeviceLinkApi, OnlyARequestedLinkIsApproved) {
  const Session alice = sign_up("alice@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  const ApiResponse early = call("POST", link + "/approve", approve_body(), alice.token);
  EXPECT_EQ(early.status, 409u);
  EXPECT_EQ(code_of(early), "link_not_requested");
  ASSERT_EQ(call("PUT", link + "/request", request_body(account::generate_token(rng_))).status, 202u);
  ASSERT_EQ(call("POST", link + "/approve", approve_body(), alice.token).status, 201u);
  const ApiResponse again = call("POST", link + "/approve", approve_body(), alice.token);
  EXPECT_EQ(again.status, 409u);
  EXPECT_EQ(code_of(again), "link_not_requested");
  EXPECT_EQ(parse(call("GET", "/v1/devices", "", alice.token))["devices"].size(), 2u);
}

TEST_F(DeviceLinkApi, ExpiryOnTheClock) {
  const Session alice = sign_up("alice@example.com");
  const std::string open_id = create_link(alice);
  const std::string requested_id = create_link(alice);
  const std::string token = account::generate_token(rng_);
  ASSERT_EQ(call("PUT", "/v1/devices/links/" + requested_id + "/request", request_body(token)).status, 202u);

  clock_.advance_ms(600'000 - 1);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + open_id, "", alice.token).status, 200u);
  clock_.advance_ms(1);  // expires_ms itself is past
  for (const std::string& id : {open_id, requested_id}) {
    EXPECT_EQ(code_of(call("GET", "/v1/devices/links/" + id, "", alice.token)), "link_not_found");
    EXPECT_EQ(code_of(call("DELETE", "/v1/devices/links/" + id, "", alice.token)), "link_not_found");
  }
  EXPECT_EQ(code_of(call("PUT", "/v1/devices/links/" + open_id + "/request", request_body(token))), "link_not_found");
  const ApiResponse late = call("POST", "/v1/devices/links/" + requested_id + "/approve", approve_body(), alice.token);
  EXPECT_EQ(late.status, 404u);
  EXPECT_EQ(code_of(late), "link_not_found");
  EXPECT_EQ(parse(call("GET", "/v1/devices", "", alice.token))["devices"].size(), 1u);

  // Expired links still count in the table until a purge, which runs on creation.
  EXPECT_EQ(*db_->purge_expired_device_links(0), 0);
  create_link(alice);
  EXPECT_EQ(*db_->purge_expired_device_links(clock_.now_ms()), 0);  // the creation purged them
}

TEST_F(DeviceLinkApi, AnApprovedProvisionExpiresTooButTheDeviceStays) {
  const Session alice = sign_up("alice@example.com");
  std::string link_id;
  std::uint32_t device_id = 0;
  const std::string new_token = link_device(alice, link_id, device_id);
  clock_.advance_ms(600'000);
  EXPECT_EQ(code_of(call("GET", "/v1/devices/links/" + link_id + "/provision", "", new_token)), "link_not_found");
  EXPECT_EQ(call("GET", "/v1/devices", "", new_token).status, 200u);
}

TEST_F(DeviceLinkApi, AnotherAccountGetsNotFound) {
  const Session alice = sign_up("alice@example.com");
  const Session bob = sign_up("bob@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  EXPECT_EQ(code_of(call("GET", link, "", bob.token)), "link_not_found");
  EXPECT_EQ(code_of(call("DELETE", link, "", bob.token)), "link_not_found");
  ASSERT_EQ(call("PUT", link + "/request", request_body(account::generate_token(rng_))).status, 202u);
  const ApiResponse approve = call("POST", link + "/approve", approve_body(), bob.token);
  EXPECT_EQ(approve.status, 404u);
  EXPECT_EQ(code_of(approve), "link_not_found");
  EXPECT_EQ(parse(call("GET", "/v1/devices", "", bob.token))["devices"].size(), 1u);
  EXPECT_EQ(parse(call("GET", link, "", alice.token))["state"], "requested");
}

TEST_F(DeviceLinkApi, CancelDeletesTheLink) {
  const Session alice = sign_up("alice@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  const ApiResponse cancelled = call("DELETE", link, "", alice.token);
  EXPECT_EQ(cancelled.status, 204u);
  EXPECT_TRUE(cancelled.body.empty());
  EXPECT_EQ(code_of(call("DELETE", link, "", alice.token)), "link_not_found");
  EXPECT_EQ(code_of(call("PUT", link + "/request", request_body(account::generate_token(rng_)))), "link_not_found");
}

TEST_F(DeviceLinkApi, OversizeBlobsAre413AndMalformedOnes422) {
  const Session alice = sign_up("alice@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  const std::string token = account::generate_token(rng_);

  const ApiResponse big = call("PUT", link + "/request", request_body(token, 4097));
  EXPECT_EQ(big.status, 413u);
  EXPECT_EQ(code_of(big), "request_too_large");

  json bad = request_body(token);
  bad["request"] = "not base64!";
  bad["token_hash"] = "abc";
  ApiResponse r = call("PUT", link + "/request", bad);
  EXPECT_EQ(r.status, 422u);
  EXPECT_EQ(code_of(r), "invalid_fields");
  ASSERT_EQ(parse(r)["error"]["fields"].size(), 2u);
  EXPECT_EQ(parse(r)["error"]["fields"][0]["field"], "request");
  EXPECT_EQ(parse(r)["error"]["fields"][1]["field"], "token_hash");
  bad = request_body(token);
  bad["request"] = "";
  EXPECT_EQ(code_of(call("PUT", link + "/request", bad)), "invalid_fields");
  bad = request_body(token);
  bad["token_hash"] = std::string(64, 'g');
  EXPECT_EQ(code_of(call("PUT", link + "/request", bad)), "invalid_fields");
  bad = request_body(token);
  bad["request"] = 5;
  EXPECT_EQ(code_of(call("PUT", link + "/request", bad)), "bad_request");
  EXPECT_EQ(code_of(call("PUT", link + "/request", std::string("[1]"))), "malformed_json");

  ASSERT_EQ(call("PUT", link + "/request", request_body(token, 4096)).status, 202u);  // exactly the limit

  r = call("POST", link + "/approve", approve_body(8193), alice.token);
  EXPECT_EQ(r.status, 413u);
  EXPECT_EQ(code_of(r), "provision_too_large");
  json approve = approve_body();
  approve["device"]["identity_key"] = "05";
  approve["device"]["registration_id"] = -1;
  approve["provision"] = "";
  r = call("POST", link + "/approve", approve, alice.token);
  EXPECT_EQ(r.status, 422u);
  ASSERT_EQ(parse(r)["error"]["fields"].size(), 3u);
  EXPECT_EQ(parse(r)["error"]["fields"][0]["field"], "device.identity_key");
  EXPECT_EQ(parse(r)["error"]["fields"][1]["field"], "device.registration_id");
  EXPECT_EQ(parse(r)["error"]["fields"][2]["field"], "provision");
  approve = approve_body(10, std::string(257, 'n'));
  EXPECT_EQ(parse(call("POST", link + "/approve", approve, alice.token))["error"]["fields"][0]["field"], "device.name");
  approve = approve_body();
  approve["device"] = "x";
  EXPECT_EQ(code_of(call("POST", link + "/approve", approve, alice.token)), "bad_request");
  // None of that registered anything; the largest blob is accepted.
  EXPECT_EQ(parse(call("GET", link, "", alice.token))["state"], "requested");
  EXPECT_EQ(call("POST", link + "/approve", approve_body(8192), alice.token).status, 201u);
}

TEST_F(DeviceLinkApi, AtMostFiveOpenLinks) {
  const Session alice = sign_up("alice@example.com");
  std::string first;
  for (int i = 0; i < 5; ++i) {
    const std::string id = create_link(alice);
    if (i == 0) first = id;
  }
  const ApiResponse sixth = call("POST", "/v1/devices/links", "", alice.token);
  EXPECT_EQ(sixth.status, 409u);
  EXPECT_EQ(code_of(sixth), "too_many_links");
  ASSERT_EQ(call("DELETE", "/v1/devices/links/" + first, "", alice.token).status, 204u);
  EXPECT_EQ(call("POST", "/v1/devices/links", "", alice.token).status, 201u);
}

TEST_F(DeviceLinkApi, RateLimits) {
  config_.devices.links_per_account = {2, 0.001};
  config_.devices.link_requests_per_address = {2, 0.001};
  start();
  const Session alice = sign_up("alice@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  create_link(alice);
  const ApiResponse limited = call("POST", "/v1/devices/links", "", alice.token);
  EXPECT_EQ(limited.status, 429u);
  EXPECT_EQ(code_of(limited), "rate_limited");
  bool retry_after = false;
  for (const auto& [k, v] : limited.headers) retry_after = retry_after || k == "Retry-After";
  EXPECT_TRUE(retry_after);

  const json body = request_body(account::generate_token(rng_));
  EXPECT_EQ(call("PUT", link + "/request", body.dump(), "", "198.51.100.7").status, 202u);
  EXPECT_EQ(call("PUT", link + "/request", body.dump(), "", "198.51.100.7").status, 409u);
  EXPECT_EQ(call("PUT", link + "/request", body.dump(), "", "198.51.100.7").status, 429u);
  EXPECT_EQ(call("PUT", link + "/request", body.dump(), "", "198.51.100.8").status, 409u);  // per address
}

TEST_F(DeviceLinkApi, RoutesMethodsAndAuthentication) {
  const Session alice = sign_up("alice@example.com");
  const std::string id = create_link(alice);
  EXPECT_EQ(call("POST", "/v1/devices/links").status, 401u);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + id).status, 401u);
  EXPECT_EQ(call("DELETE", "/v1/devices/links/" + id).status, 401u);
  EXPECT_EQ(call("POST", "/v1/devices/links/" + id + "/approve", approve_body()).status, 401u);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + id + "/provision").status, 401u);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + id + "/provision", "", "", "").status, 401u);

  EXPECT_EQ(call("GET", "/v1/devices/links", "", alice.token).status, 405u);
  EXPECT_EQ(call("PUT", "/v1/devices/links/" + id, "", alice.token).status, 405u);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + id + "/request").status, 405u);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + id + "/approve", "", alice.token).status, 405u);
  EXPECT_EQ(call("POST", "/v1/devices/links/" + id + "/provision", "", alice.token).status, 405u);
  EXPECT_EQ(code_of(call("GET", "/v1/devices/links/" + id + "/other", "", alice.token)), "not_found");

  for (const std::string& bad : std::vector<std::string>{"", "short", std::string(22, '+'), id + "A"}) {
    EXPECT_EQ(code_of(call("GET", "/v1/devices/links/" + bad, "", alice.token)), "link_not_found") << bad;
  }
  EXPECT_EQ(code_of(call("GET", "/v1/devices/links/" + std::string(22, 'A'), "", alice.token)), "link_not_found");
  EXPECT_EQ(code_of(call("GET", "/v1/devices/links/../../v1/devices", "", alice.token)), "not_found");
  EXPECT_EQ(code_of(call("DELETE", "/v1/devices/links", "", alice.token)), "method_not_allowed");
  EXPECT_EQ(code_of(call("DELETE", "/v1/devices/9", "", alice.token)), "device_not_found");  // unchanged

  EXPECT_EQ(Api::route_name("/v1/devices/links"), "/v1/devices/links");
  EXPECT_EQ(Api::route_name("/v1/devices/links/" + id), "/v1/devices/links/{id}");
  EXPECT_EQ(Api::route_name("/v1/devices/links/" + id + "/request"), "/v1/devices/links/{id}/request");
  EXPECT_EQ(Api::route_name("/v1/devices/links/" + id + "/approve"), "/v1/devices/links/{id}/approve");
  EXPECT_EQ(Api::route_name("/v1/devices/links/" + id + "/provision"), "/v1/devices/links/{id}/provision");
  EXPECT_EQ(Api::route_name("/v1/devices/3"), "/v1/devices/{id}");
}

TEST_F(DeviceLinkApi, ALinkedDeviceIsAnOrdinaryDevice) {
  const Session alice = sign_up("alice@example.com");
  const Session bob = sign_up("bob@example.com");
  const auto send_to_alice = [&](const json& device_ids, const std::string& client_id) {
    json messages = json::array();
    for (const auto& d : device_ids) {
      messages.push_back({{"device_id", d}, {"type", 1}, {"content", "AAAA"}, {"client_id", client_id}, {"timestamp", 1}});
    }
    return call("PUT", "/v1/messages/" + std::to_string(alice.account_id), json{{"messages", messages}}, bob.token);
  };
  ASSERT_EQ(send_to_alice({1}, "m1").status, 200u);  // the server now caches alice's devices

  std::string link_id;
  std::uint32_t device_id = 0;
  const std::string new_token = link_device(alice, link_id, device_id);
  ASSERT_EQ(device_id, 2u);

  // Senders must include the new device at once (the device cache was invalidated).
  const ApiResponse mismatch = send_to_alice({1}, "m2");
  EXPECT_EQ(mismatch.status, 409u);
  EXPECT_EQ(parse(mismatch)["error"]["missing_devices"], json::array({2}));
  EXPECT_EQ(send_to_alice({1, 2}, "m3").status, 200u);
  const ApiResponse queued = call("GET", "/v1/messages", "", new_token);
  ASSERT_EQ(queued.status, 200u);
  EXPECT_EQ(parse(queued)["messages"].size(), 1u);

  // Logging out ends its session; the pickup then needs a live session.
  EXPECT_EQ(call("DELETE", "/v1/sessions/current", "", new_token).status, 204u);
  EXPECT_EQ(call("GET", "/v1/devices/links/" + link_id + "/provision", "", new_token).status, 401u);
  EXPECT_EQ(call("GET", "/v1/devices", "", new_token).status, 401u);
  // And it is removed like any device.
  EXPECT_EQ(call("DELETE", "/v1/devices/2", "", alice.token).status, 204u);
  EXPECT_EQ(parse(call("GET", "/v1/devices", "", alice.token))["devices"].size(), 1u);
}

TEST_F(DeviceLinkApi, RemovingTheCreatingDeviceKeepsTheLink) {
  const Session alice = sign_up("alice@example.com");
  const Session second = log_in("alice@example.com", "second");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  ASSERT_EQ(call("DELETE", "/v1/devices/" + std::to_string(alice.device_id), "", second.token).status, 204u);
  ASSERT_EQ(call("PUT", link + "/request", request_body(account::generate_token(rng_))).status, 202u);
  const ApiResponse approved = call("POST", link + "/approve", approve_body(), second.token);
  ASSERT_EQ(approved.status, 201u);
  EXPECT_EQ(parse(approved)["device_id"], 1);  // the lowest free id
}

TEST_F(DeviceLinkApi, DeletingTheAccountDeletesItsLinks) {
  const Session alice = sign_up("alice@example.com");
  const std::string id = create_link(alice);
  ASSERT_EQ(call("DELETE", "/v1/account", json{{"password", "Secret1"}}, alice.token).status, 204u);
  EXPECT_EQ(db_->get_device_link(id, clock_.now_ms()).error(), store::Errc::not_found);
  EXPECT_EQ(code_of(call("PUT", "/v1/devices/links/" + id + "/request", request_body(account::generate_token(rng_)))),
            "link_not_found");
}

TEST_F(DeviceLinkApi, ATokenHashAlreadyInUseIsRefusedAtApproval) {
  const Session alice = sign_up("alice@example.com");
  const std::string link = "/v1/devices/links/" + create_link(alice);
  ASSERT_EQ(call("PUT", link + "/request", request_body(alice.token)).status, 202u);  // a copied hash
  const ApiResponse r = call("POST", link + "/approve", approve_body(), alice.token);
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(code_of(r), "token_in_use");
  EXPECT_EQ(parse(call("GET", "/v1/devices", "", alice.token))["devices"].size(), 1u);
}

TEST(DeviceLinkConfig, DevicesSectionIsRead) {
  store::store_test::TempDir dir;
  const std::string path = dir.file("server.toml");
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(
        "[devices]\nlink_ttl_ms = 120000\nmax_open_links = 2\npurge_interval_ms = 1000\n"
        "links_per_account = { capacity = 3, refill_per_second = 0.5 }\n"
        "link_requests_per_address = { capacity = 4, refill_per_second = 2 }\n",
        f);
    std::fclose(f);
  }
  ServerConfig config;
  EXPECT_EQ(config.devices.link_ttl_ms, 600'000);
  EXPECT_EQ(config.devices.max_open_links, 5u);
  load_config(path, config);
  EXPECT_EQ(config.devices.link_ttl_ms, 120'000);
  EXPECT_EQ(config.devices.max_open_links, 2u);
  EXPECT_EQ(config.devices.purge_interval_ms, 1000);
  EXPECT_EQ(config.devices.links_per_account.capacity, 3);
  EXPECT_EQ(config.devices.link_requests_per_address.refill_per_second, 2);
  for (const char* bad : {"[devices]\nlink_ttl_ms = 10\n", "[devices]\nmax_open_links = 0\n", "[devices]\nother = 1\n"}) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(bad, f);
    std::fclose(f);
    ServerConfig c;
    EXPECT_THROW(load_config(path, c), std::runtime_error) << bad;
  }
}

}  // namespace
}  // namespace postern::server
