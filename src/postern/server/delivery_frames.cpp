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

namespace {

ClientFrameValue decode_one(const pb::ClientFrame& frame) {
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
    case pb::ClientFrame::kBatch:
      return problem("nested_batch", "a batch cannot hold another batch");
    case pb::ClientFrame::KIND_NOT_SET:
      break;
  }
  return problem("unknown_frame", "the frame carries nothing this server knows");
}

bool parse(ByteView data, pb::ClientFrame& frame) {
  if (data.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return false;
  return frame.ParseFromArray(data.data(), static_cast<int>(data.size()));
}

}  // namespace

std::vector<ClientFrameValue> decode_client_message(ByteView data) {
  std::vector<ClientFrameValue> out;
  pb::ClientFrame frame;
  if (!parse(data, frame)) {
    out.emplace_back(problem("malformed_frame", "the frame is not a ClientFrame"));
    return out;
  }
  if (frame.kind_case() != pb::ClientFrame::kBatch) {
    out.push_back(decode_one(frame));
    return out;
  }
  const auto& frames = frame.batch().frames();
  if (static_cast<std::size_t>(frames.size()) > kMaxFramesPerBatch) {
    out.emplace_back(problem("too_many_frames", "at most " + std::to_string(kMaxFramesPerBatch) + " frames in a batch"));
    return out;
  }
  if (frames.empty()) {
    out.emplace_back(problem("unknown_frame", "an empty batch carries nothing"));
    return out;
  }
  out.reserve(static_cast<std::size_t>(frames.size()));
  for (const auto& inner : frames) out.push_back(decode_one(inner));
  return out;
}

ClientFrameValue decode_client_frame(ByteView data) {
  pb::ClientFrame frame;
  if (!parse(data, frame)) return problem("malformed_frame", "the frame is not a ClientFrame");
  if (frame.kind_case() == pb::ClientFrame::kBatch) return problem("unknown_frame", "a batch is not expected here");
  return decode_one(frame);
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

namespace postern::server {

namespace {

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// A message whose only field, `outer_tag`, holds a message whose field 1 repeats the frames (all
// length-delimited: tag = field << 3 | 2).
std::string encode_batch(char outer_tag, const std::vector<const std::string*>& frames) {
  std::size_t inner = 0;
  for (const std::string* f : frames) inner += 1 + 10 + f->size();
  std::string batch;
  batch.reserve(inner);
  for (const std::string* f : frames) {
    batch.push_back(static_cast<char>(0x0a));
    put_varint(batch, f->size());
    batch += *f;
  }
  std::string out;
  out.reserve(batch.size() + 11);
  out.push_back(outer_tag);
  put_varint(out, batch.size());
  out += batch;
  return out;
}

}  // namespace

std::string encode_batch_frame(const std::vector<const std::string*>& frames) {
  return encode_batch(static_cast<char>(0x2a), frames);  // ServerFrame.batch = 5
}

std::string encode_client_batch_frame(const std::vector<const std::string*>& frames) {
  return encode_batch(static_cast<char>(0x1a), frames);  // ClientFrame.batch = 3
}

}  // namespace postern::server
