// The frames of the delivery WebSocket (proto/delivery.proto) as plain values: decoding of what
// a client sends, encoding of what the server sends. Boost-free and transport-free, so that the
// fuzz target drives the decoder directly and a later transport (the inner channel of the
// censorship-resistant transport) reuses it unchanged.
//
// Decoding never throws and never trusts a length: protobuf-lite parses into bounded strings,
// then every field is checked against the limits below before it becomes a value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "postern/server/api.h"
#include "postern/store/server_store.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::server {

// At most this many envelopes in one send (one per recipient device; Signal allows far fewer
// devices per account) and this many ids in one acknowledgement.
inline constexpr std::size_t kMaxEnvelopesPerSend = 1000;
inline constexpr std::size_t kMaxAcksPerFrame = 1000;
inline constexpr std::size_t kMaxFramesPerBatch = 1000;

struct SendFrame {
  std::uint64_t request_id = 0;
  std::int64_t recipient_account = 0;
  std::vector<OutgoingEnvelope> envelopes;
};

struct AckFrame {
  std::vector<std::int64_t> server_ids;  // each in 1..INT64_MAX
};

// Why a client frame was refused: the code and message of the FrameError the server answers.
struct FrameProblem {
  std::string code;  // "malformed_frame", "unknown_frame", "too_many_envelopes", "too_many_ids", "bad_server_id"
  std::string message;
};

using ClientFrameValue = std::variant<SendFrame, AckFrame, FrameProblem>;

// Decodes one binary WebSocket message from a client: one value, or one per frame of a
// ClientBatch, in order. A batch that is nested or holds more than kMaxFramesPerBatch frames is
// one FrameProblem ("nested_batch", "too_many_frames", an empty batch "unknown_frame"); a bad
// frame inside a batch is a problem in its place and does not spoil the others. Never empty.
std::vector<ClientFrameValue> decode_client_message(ByteView data);
// The same for a message that must not be a batch (a batch is "unknown_frame" here).
ClientFrameValue decode_client_frame(ByteView data);

// Server frames, serialised.
std::string encode_envelope_frame(const store::Envelope& envelope, std::int64_t server_id);
std::string encode_queue_empty_frame();
std::string encode_send_response_frame(std::uint64_t request_id, const SendOutcome& outcome);
std::string encode_error_frame(const FrameProblem& problem);
// One ServerFrame{batch} holding the given serialised ServerFrames, in order, without parsing
// them again (the bytes of a repeated message field are the concatenation of its elements).
std::string encode_batch_frame(const std::vector<const std::string*>& frames);
// The client's counterpart: one ClientFrame{batch} of serialised ClientFrames (for clients and
// the load generator).
std::string encode_client_batch_frame(const std::vector<const std::string*>& frames);

}  // namespace postern::server
