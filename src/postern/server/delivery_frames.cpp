#include "postern/server/delivery_frames.h"

#include <limits>
#include <utility>

#include "postern/server/proto/delivery.pb.h"

namespace postern::server {

namespace pb = postern::delivery::v1;

namespace {

FrameProblem problem(std::string code, std::string message) {
  return FrameProblem{std::move(code), std::move(message)};
}

Bytes to_bytes(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

}  // namespace

ClientFrameValue decode_client_frame(ByteView data) {
  if (data.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    return problem("malformed_frame", "the frame is too large");
  }
  pb::ClientFrame frame;
  if (!frame.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return problem("malformed_frame", "the frame is not a ClientFrame");
  }
  switch (frame.kind_case()) {
    case pb::ClientFrame::kSend: {
      const pb::SendRequest& request = frame.send();
      if (static_cast<std::size_t>(request.envelopes_size()) > kMaxEnvelopesPerSend) {
        return problem("too_many_envelopes",
                       "at most " + std::to_string(kMaxEnvelopesPerSend) + " envelopes in one send");
      }
      SendFrame send;
      send.request_id = request.request_id();
      send.recipient_account = request.recipient_account();
      send.envelopes.reserve(static_cast<std::size_t>(request.envelopes_size()));
      for (const auto& e : request.envelopes()) {
        OutgoingEnvelope o;
        o.device_id = e.device_id();
        o.registration_id = e.registration_id();
        o.type = e.type();
        o.timestamp_ms = e.timestamp();
        o.content = to_bytes(e.content());
        o.client_id = to_bytes(e.client_id());
        send.envelopes.push_back(std::move(o));
      }
      return send;
    }
    case pb::ClientFrame::kAck: {
      const auto& ids = frame.ack().server_ids();
      if (static_cast<std::size_t>(ids.size()) > kMaxAcksPerFrame) {
        return problem("too_many_ids", "at most " + std::to_string(kMaxAcksPerFrame) + " server ids per acknowledgement");
      }
      AckFrame ack;
      ack.server_ids.reserve(static_cast<std::size_t>(ids.size()));
      for (std::uint64_t id : ids) {
        if (id == 0 || id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          return problem("bad_server_id", "server ids are integers from 1 to 9223372036854775807");
        }
        ack.server_ids.push_back(static_cast<std::int64_t>(id));
      }
      return ack;
    }
    case pb::ClientFrame::KIND_NOT_SET:
      break;
  }
  return problem("unknown_frame", "the frame carries nothing this server knows");
}

std::string encode_envelope_frame(const store::Envelope& e, std::int64_t server_id) {
  pb::ServerFrame frame;
  auto* out = frame.mutable_envelope();
  out->set_server_id(static_cast<std::uint64_t>(server_id));
  out->set_sender_account(e.sender_account);
  out->set_sender_device(e.sender_device);
  out->set_type(e.type);
  out->set_timestamp(e.timestamp_ms);
  out->set_content(reinterpret_cast<const char*>(e.content.data()), e.content.size());
  out->set_client_id(reinterpret_cast<const char*>(e.client_id.data()), e.client_id.size());
  return frame.SerializeAsString();
}

std::string encode_queue_empty_frame() {
  pb::ServerFrame frame;
  frame.mutable_queue_empty();
  return frame.SerializeAsString();
}

std::string encode_send_response_frame(std::uint64_t request_id, const SendOutcome& o) {
  pb::ServerFrame frame;
  auto* r = frame.mutable_send_response();
  r->set_request_id(request_id);
  r->set_status(o.status);
  for (std::size_t i = 0; i < o.results.size(); ++i) {
    auto* result = r->add_results();
    result->set_device_id(i < o.devices.size() ? o.devices[i] : 0);
    result->set_server_id(static_cast<std::uint64_t>(o.results[i].server_id));
    result->set_duplicate(o.results[i].duplicate);
  }
  for (auto d : o.missing) r->add_missing_devices(d);
  for (auto d : o.extra) r->add_extra_devices(d);
  for (auto d : o.stale) r->add_stale_devices(d);
  r->set_error_code(o.code);
  std::string message = o.message;
  for (const auto& f : o.field_errors) message += "; " + f.field + ": " + f.message;
  r->set_error_message(message);
  if (o.retry_after_ms > 0) r->set_retry_after_ms(static_cast<std::uint64_t>(o.retry_after_ms));
  return frame.SerializeAsString();
}

std::string encode_error_frame(const FrameProblem& p) {
  pb::ServerFrame frame;
  frame.mutable_error()->set_error_code(p.code);
  frame.mutable_error()->set_error_message(p.message);
  return frame.SerializeAsString();
}

}  // namespace postern::server
