// The delivery WebSocket's frames: client frames decode into values or a stated problem, never
// anything else; server frames encode into ServerFrames that parse back field for field.
#include "postern/server/delivery_frames.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "postern/server/proto/delivery.pb.h"

namespace postern::server {
namespace {

namespace pb = postern::delivery::v1;

ByteView view(const std::string& s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

std::string problem_code(const ClientFrameValue& v) {
  const auto* p = std::get_if<FrameProblem>(&v);
  return p == nullptr ? std::string("(not a problem)") : p->code;
}

TEST(DeliveryFrames, DecodesASendWithItsEnvelopes) {
  pb::ClientFrame frame;
  auto* send = frame.mutable_send();
  send->set_request_id(42);
  send->set_recipient_account(7);
  for (std::uint32_t device : {1u, 3u}) {
    auto* e = send->add_envelopes();
    e->set_device_id(device);
    e->set_registration_id(1234);
    e->set_type(3);
    e->set_content(std::string("\x00\x01\x02", 3));
    e->set_client_id("cid");
    e->set_timestamp(-5);
  }
  const auto value = decode_client_frame(view(frame.SerializeAsString()));
  const auto* decoded = std::get_if<SendFrame>(&value);
  ASSERT_NE(decoded, nullptr);
  EXPECT_EQ(decoded->request_id, 42u);
  EXPECT_EQ(decoded->recipient_account, 7);
  ASSERT_EQ(decoded->envelopes.size(), 2u);
  EXPECT_EQ(decoded->envelopes[1].device_id, 3u);
  EXPECT_EQ(decoded->envelopes[1].registration_id, 1234u);
  EXPECT_EQ(decoded->envelopes[1].type, 3);
  EXPECT_EQ(decoded->envelopes[1].timestamp_ms, -5);
  EXPECT_EQ(decoded->envelopes[1].content, (Bytes{0, 1, 2}));
  EXPECT_EQ(decoded->envelopes[1].client_id, (Bytes{'c', 'i', 'd'}));
}

TEST(DeliveryFrames, DecodesAnAcknowledgementAndRefusesIdsOutOfRange) {
  pb::ClientFrame frame;
  frame.mutable_ack()->add_server_ids(5);
  frame.mutable_ack()->add_server_ids(9);
  const auto value = decode_client_frame(view(frame.SerializeAsString()));
  const auto* ack = std::get_if<AckFrame>(&value);
  ASSERT_NE(ack, nullptr);
  EXPECT_EQ(ack->server_ids, (std::vector<std::int64_t>{5, 9}));

  frame.mutable_ack()->add_server_ids(0);
  EXPECT_EQ(problem_code(decode_client_frame(view(frame.SerializeAsString()))), "bad_server_id");
  frame.mutable_ack()->clear_server_ids();
  frame.mutable_ack()->add_server_ids(1ULL << 63);
  EXPECT_EQ(problem_code(decode_client_frame(view(frame.SerializeAsString()))), "bad_server_id");
}

TEST(DeliveryFrames, EnforcesTheLimits) {
  pb::ClientFrame sends;
  for (std::size_t i = 0; i <= kMaxEnvelopesPerSend; ++i) sends.mutable_send()->add_envelopes()->set_device_id(1);
  EXPECT_EQ(problem_code(decode_client_frame(view(sends.SerializeAsString()))), "too_many_envelopes");
  pb::ClientFrame acks;
  for (std::size_t i = 0; i <= kMaxAcksPerFrame; ++i) acks.mutable_ack()->add_server_ids(i + 1);
  EXPECT_EQ(problem_code(decode_client_frame(view(acks.SerializeAsString()))), "too_many_ids");
}

TEST(DeliveryFrames, RefusesMalformedAndEmptyFrames) {
  EXPECT_EQ(problem_code(decode_client_frame(view(std::string("\xff\xff\xff\xff", 4)))), "malformed_frame");
  EXPECT_EQ(problem_code(decode_client_frame(view(std::string("\x0a\x05\x08", 3)))), "malformed_frame");  // truncated
  EXPECT_EQ(problem_code(decode_client_frame(ByteView())), "unknown_frame");
  // A field this version does not know is skipped, like any protobuf: the frame is then empty.
  EXPECT_EQ(problem_code(decode_client_frame(view(std::string("\x78\x01", 2)))), "unknown_frame");
}

TEST(DeliveryFrames, ABatchDecodesIntoItsFramesInOrder) {
  pb::ClientFrame batch;
  auto* first = batch.mutable_batch()->add_frames();
  first->mutable_send()->set_request_id(1);
  batch.mutable_batch()->add_frames()->mutable_ack()->add_server_ids(0);  // bad: a problem in its place
  batch.mutable_batch()->add_frames()->mutable_ack()->add_server_ids(8);
  batch.mutable_batch()->add_frames()->mutable_batch();                   // nested
  const auto values = decode_client_message(view(batch.SerializeAsString()));
  ASSERT_EQ(values.size(), 4u);
  ASSERT_TRUE(std::holds_alternative<SendFrame>(values[0]));
  EXPECT_EQ(std::get<SendFrame>(values[0]).request_id, 1u);
  EXPECT_EQ(problem_code(values[1]), "bad_server_id");
  ASSERT_TRUE(std::holds_alternative<AckFrame>(values[2]));
  EXPECT_EQ(problem_code(values[3]), "nested_batch");
  // decode_client_frame does not take batches.
  EXPECT_EQ(problem_code(decode_client_frame(view(batch.SerializeAsString()))), "unknown_frame");

  pb::ClientFrame big;
  for (std::size_t i = 0; i <= kMaxFramesPerBatch; ++i) big.mutable_batch()->add_frames()->mutable_ack()->add_server_ids(1);
  const auto refused = decode_client_message(view(big.SerializeAsString()));
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(problem_code(refused[0]), "too_many_frames");
  const auto empty = decode_client_message(view(std::string("\x1a\x00", 2)));
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(problem_code(empty[0]), "unknown_frame");
  const auto malformed = decode_client_message(view(std::string("\x1a\x05", 2)));
  ASSERT_EQ(malformed.size(), 1u);
  EXPECT_EQ(problem_code(malformed[0]), "malformed_frame");
}

TEST(DeliveryFrames, ABatchOfSerialisedFramesParsesAsAServerBatch) {
  store::Envelope e;
  e.content = Bytes(300, 0x41);  // a length that needs a two-byte varint
  e.client_id = Bytes{'c'};
  const std::string a = encode_envelope_frame(e, 1);
  const std::string b = encode_queue_empty_frame();
  const std::string c = encode_error_frame({"x", "y"});
  pb::ServerFrame frame;
  ASSERT_TRUE(frame.ParseFromString(encode_batch_frame({&a, &b, &c})));
  ASSERT_TRUE(frame.has_batch());
  ASSERT_EQ(frame.batch().frames_size(), 3);
  EXPECT_EQ(frame.batch().frames(0).envelope().content().size(), 300u);
  EXPECT_TRUE(frame.batch().frames(1).has_queue_empty());
  EXPECT_EQ(frame.batch().frames(2).error().error_code(), "x");
}

TEST(DeliveryFrames, ServerFramesParseBack) {
  store::Envelope e;
  e.sender_account = 11;
  e.sender_device = 2;
  e.type = 1;
  e.timestamp_ms = 1700000000000;
  e.content = Bytes{9, 8, 7};
  e.client_id = Bytes{'x'};
  pb::ServerFrame frame;
  ASSERT_TRUE(frame.ParseFromString(encode_envelope_frame(e, 77)));
  ASSERT_TRUE(frame.has_envelope());
  EXPECT_EQ(frame.envelope().server_id(), 77u);
  EXPECT_EQ(frame.envelope().sender_account(), 11);
  EXPECT_EQ(frame.envelope().sender_device(), 2u);
  EXPECT_EQ(frame.envelope().timestamp(), 1700000000000);
  EXPECT_EQ(frame.envelope().content(), std::string("\x09\x08\x07", 3));
  EXPECT_EQ(frame.envelope().client_id(), "x");

  ASSERT_TRUE(frame.ParseFromString(encode_queue_empty_frame()));
  EXPECT_TRUE(frame.has_queue_empty());

  SendOutcome mismatch;
  mismatch.status = 409;
  mismatch.code = "device_mismatch";
  mismatch.missing = {1};
  mismatch.extra = {4, 5};
  ASSERT_TRUE(frame.ParseFromString(encode_send_response_frame(3, mismatch)));
  EXPECT_EQ(frame.send_response().request_id(), 3u);
  EXPECT_EQ(frame.send_response().status(), 409u);
  EXPECT_EQ(frame.send_response().error_code(), "device_mismatch");
  ASSERT_EQ(frame.send_response().extra_devices_size(), 2);
  EXPECT_EQ(frame.send_response().extra_devices(1), 5u);

  ASSERT_TRUE(frame.ParseFromString(encode_error_frame({"malformed_frame", "bad"})));
  EXPECT_EQ(frame.error().error_code(), "malformed_frame");
}

}  // namespace
}  // namespace postern::server
