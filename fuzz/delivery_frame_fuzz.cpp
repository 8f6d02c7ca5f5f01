// The delivery WebSocket's client messages (decode_client_message, batches included) on hostile bytes, and what the
// server does with them: a decoded send goes through Api::send_async over a real
// SqliteServerStore (validation, rate limit, the recipient's devices, the group commit), an
// acknowledgement through Api::ack_async, a refused frame becomes an error frame.
// Invariants: decoding never aborts; a decoded send holds at most kMaxEnvelopesPerSend envelopes
// and an acknowledgement only ids in 1..INT64_MAX; a send is answered exactly once, never with
// 500, with a status from the documented set and, on 200, one result per envelope; every server
// frame we encode parses back as a ServerFrame.
//
// Recipient accounts 1 and 2 exist (device 1 each; the sender is account 1 device 1), so small
// recipient ids reach the device checks and the store.
#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "api_fixture.h"
#include "invariant.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/server/delivery_frames.h"
#include "postern/server/proto/delivery.pb.h"
#include "postern/store/sqlite_server_store.h"
#include "postern/util/bytes.h"
#include "postern/util/clock.h"

namespace {

using postern::fuzz::fail;
using json = nlohmann::json;
namespace server = postern::server;

void check_server_frame(const std::string& bytes) {
  postern::delivery::v1::ServerFrame frame;
  if (!frame.ParseFromString(bytes)) fail("an encoded server frame does not parse");
  if (frame.kind_case() == postern::delivery::v1::ServerFrame::KIND_NOT_SET) fail("an encoded server frame is empty");
}

bool known_status(unsigned s) {
  for (unsigned k : {200u, 404u, 409u, 410u, 413u, 422u, 429u}) {
    if (s == k) return true;
  }
  return false;
}

class World {
 public:
  World() : f_(3, "frame-fuzz") {
    for (const char* email : {"one@example.com", "two@example.com"}) add_account(email);
  }


  void run(const std::uint8_t* data, std::size_t size) {
    std::vector<server::ClientFrameValue> values = server::decode_client_message(postern::ByteView(data, size));
    if (values.empty() || values.size() > server::kMaxFramesPerBatch) fail("a message decoded into no or too many frames");
    for (auto& value : values) handle(value);
  }

  void handle(server::ClientFrameValue& value) {
    if (auto* problem = std::get_if<server::FrameProblem>(&value)) {
      if (problem->code.empty() || problem->message.empty()) fail("a refused frame without code or message");
      check_server_frame(server::encode_error_frame(*problem));
      return;
    }
    if (auto* ack = std::get_if<server::AckFrame>(&value)) {
      if (ack->server_ids.size() > server::kMaxAcksPerFrame) fail("too many acknowledgements decoded");
      for (auto id : ack->server_ids) {
        if (id <= 0) fail("a non-positive server id decoded");
      }
      f_.api->ack_async({1, 1}, ack->server_ids);
      return;
    }
    auto& send = std::get<server::SendFrame>(value);
    if (send.envelopes.size() > server::kMaxEnvelopesPerSend) fail("too many envelopes decoded");
    const std::size_t count = send.envelopes.size();
    std::mutex m;
    std::condition_variable cv;
    std::optional<server::SendOutcome> outcome;
    int answers = 0;
    f_.api->send_async({1, 1}, send.recipient_account, std::move(send.envelopes), [&](server::SendOutcome o) {
      std::lock_guard lock(m);
      ++answers;
      outcome = std::move(o);
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return outcome.has_value(); });
    if (answers != 1) fail("a send answered more than once");
    if (outcome->status == 500) fail("a send made the server fail (500)");
    if (!known_status(outcome->status)) fail("a send answered with an undocumented status");
    if (outcome->status == 200 && (outcome->results.size() != count || outcome->devices.size() != count)) {
      fail("a successful send without one result per envelope");
    }
    if (outcome->status != 200 && outcome->code.empty()) fail("a failed send without an error code");
    check_server_frame(server::encode_send_response_frame(send.request_id, *outcome));
    f_.clock.advance_ms(1000);
  }

 private:
  server::ApiResponse post(std::string_view path, const json& body) {
    const std::string text = body.dump();
    return f_.api->handle({"POST", path, {}, text, "192.0.2.1"});
  }

  void add_account(const std::string& email) {
    const auto challenge = f_.api->handle({"POST", "/v1/challenge", {}, {}, "192.0.2.1"});
    if (challenge.status != 200) fail("issuing a challenge");
    const std::string token = json::parse(challenge.body).at("token").get<std::string>();
    const auto created = post("/v1/accounts", {{"email", email},
                                               {"password", "Secret1"},
                                               {"birthdate", "1990-01-01"},
                                               {"accept_terms", true},
                                               {"pow", {{"token", token}, {"nonce", 0}}}});
    if (created.status != 201) fail("creating an account");
    const auto identity = postern::crypto::KeyPair::generate(f_.rng);
    const auto ik = identity.public_key.serialize();
    const auto login = post("/v1/sessions", {{"email", email},
                                             {"password", "Secret1"},
                                             {"device",
                                              {{"name", "fuzz"},
                                               {"identity_key", postern::to_hex(postern::ByteView(ik.data(), ik.size()))},
                                               {"registration_id", 1}}}});
    if (login.status != 201) fail("logging in");
  }

  postern::fuzz::ApiFixture f_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  world.run(data, size);
  return 0;
}
