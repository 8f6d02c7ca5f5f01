// ServerApi against a scripted link: requests are built as docs/protocol.md says, and answers
// (including refusals and malformed ones) become values or Failures with the server's words.
#include "postern/client/server_api.h"

#include <gtest/gtest.h>

#include <deque>

#include "postern/client/errors.h"
#include "postern/crypto/random.h"
#include "postern/protocol/keys.h"

namespace postern::client {
namespace {

class ScriptedLink final : public ServerLink {
 public:
  std::deque<Result<HttpResponse>> answers;
  std::vector<HttpRequest> requests;

  Result<HttpResponse> send(const HttpRequest& request) override {
    requests.push_back(request);
    if (answers.empty()) return make_error_code(Errc::unreachable);
    auto a = std::move(answers.front());
    answers.pop_front();
    return a;
  }
  Result<std::unique_ptr<DeliverySocket>> open_delivery(std::string_view) override { return make_error_code(Errc::unreachable); }
  std::string describe() const override { return "scripted"; }

  void answer(unsigned status, std::string body, std::vector<HttpHeader> headers = {}) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    answers.push_back(std::move(r));
  }
};

TEST(ServerApi, FieldErrorsOfARefusedRegistration) {
  ScriptedLink link;
  ServerApi api(link);
  link.answer(422, R"({"error":{"code":"invalid_fields","message":"some fields are invalid","fields":[
      {"field":"email","message":"E-mail address is invalid"},{"field":"terms","message":"You must accept the terms"}]}})");
  auto r = api.register_account("x", "y", "z", false, "t", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().http_status, 422u);
  EXPECT_EQ(r.failure().server_code, "invalid_fields");
  ASSERT_EQ(r.failure().fields.size(), 2u);
  EXPECT_EQ(r.failure().fields[1].field, "terms");
  EXPECT_EQ(link.requests[0].method, "POST");
  EXPECT_EQ(link.requests[0].target, "/v1/accounts");
}

TEST(ServerApi, RetryAfterAndTransportFailures) {
  ScriptedLink link;
  ServerApi api(link);
  link.answer(429, R"({"error":{"code":"rate_limited","message":"slow down"}})", {{"retry-after", "30"}});
  auto r = api.challenge();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().retry_after_s, 30);
  EXPECT_EQ(r.failure().message, "slow down");
  auto offline = api.challenge();
  ASSERT_FALSE(offline.ok());
  EXPECT_EQ(offline.failure().code, make_error_code(Errc::unreachable));
  EXPECT_EQ(offline.failure().http_status, 0u);
}

TEST(ServerApi, AuthenticatedCallsNeedAToken) {
  ScriptedLink link;
  ServerApi api(link);
  auto r = api.devices();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().code, make_error_code(Errc::not_registered));
  EXPECT_TRUE(link.requests.empty());
  api.set_token("tok");
  link.answer(200, R"({"devices":[{"id":1,"name":"phone","registration_id":7,"created_ms":1,"last_seen_ms":2,"current":true}]})");
  auto d = api.devices();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->size(), 1u);
  EXPECT_TRUE((*d)[0].current);
  EXPECT_EQ(link.requests[0].bearer, "tok");
}

TEST(ServerApi, MalformedAnswersAreProtocolErrors) {
  ScriptedLink link;
  ServerApi api(link);
  api.set_token("tok");
  for (const char* body : {"", "[]", "{", R"({"devices":7})", R"({"devices":[{"id":-1}]})", R"({"devices":[{"id":"1"}]})"}) {
    link.answer(200, body);
    auto d = api.devices();
    ASSERT_FALSE(d.ok()) << body;
    EXPECT_EQ(d.failure().code, make_error_code(Errc::protocol_error)) << body;
  }
}

TEST(ServerApi, DeviceMismatchListsComeBack) {
  ScriptedLink link;
  ServerApi api(link);
  api.set_token("tok");
  link.answer(409, R"({"error":{"code":"device_mismatch","message":"m","missing_devices":[3],"extra_devices":[2]}})");
  ServerApi::Mismatch mismatch;
  auto r = api.send(7, {OutgoingEnvelope{2, 0, 3, Bytes{1, 2}, "c", 5}}, &mismatch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().server_code, "device_mismatch");
  EXPECT_EQ(mismatch.missing, std::vector<std::uint32_t>{3});
  EXPECT_EQ(mismatch.extra, std::vector<std::uint32_t>{2});
  EXPECT_NE(link.requests[0].body.find("\"content\":\"AQI=\""), std::string::npos) << link.requests[0].body;
}

TEST(ServerApi, BundlesParseAndBadKeysAreRefused) {
  crypto::DeterministicRng rng(5);
  const auto identity = protocol::IdentityKeyPair::generate(rng);
  const auto spk = protocol::SignedPreKeyRecord::generate(1, identity, 0, rng);
  const auto key_b64 = base64_encode(identity.public_key.serialize());
  const auto spk_b64 = base64_encode(spk.key_pair.public_key.serialize());
  const auto sig_b64 = base64_encode(spk.signature);
  ScriptedLink link;
  ServerApi api(link);
  api.set_token("tok");
  link.answer(200, R"({"account_id":7,"devices":[{"device_id":1,"registration_id":9,"identity_key":")" + key_b64 +
                       R"(","signed_pre_key":{"id":1,"public_key":")" + spk_b64 + R"(","signature":")" + sig_b64 +
                       R"("},"one_time_pre_key":null,"remaining":0}]})");
  auto bundles = api.fetch_bundles(7);
  ASSERT_TRUE(bundles.ok());
  ASSERT_EQ(bundles->size(), 1u);
  EXPECT_TRUE((*bundles)[0].signature_valid());
  EXPECT_FALSE((*bundles)[0].pre_key.has_value());
  link.answer(200, R"({"account_id":7,"devices":[{"device_id":1,"registration_id":9,"identity_key":"AAAA",)"
                   R"("signed_pre_key":{"id":1,"public_key":"AAAA","signature":"AAAA"}}]})");
  EXPECT_FALSE(api.fetch_bundles(7).ok());
}

TEST(ServerApi, Base64BothAlphabets) {
  auto a = base64_decode("-_8");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (Bytes{0xfb, 0xff}));
  auto b = base64_decode("+/8=");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(base64_decode("!!!").ok());
  EXPECT_EQ(base64_encode(Bytes{0xfb, 0xff}), "+/8=");
}

}  // namespace
}  // namespace postern::client
