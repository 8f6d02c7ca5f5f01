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

// Decodes one binary WebSocket message from a client.
ClientFrameValue decode_client_frame(ByteView data);

// Server frames, serialised.
std::string encode_envelope_frame(const store::Envelope& envelope, std::int64_t server_id);
std::string encode_queue_empty_frame();
std::string encode_send_response_frame(std::uint64_t request_id, const SendOutcome& outcome);
std::string encode_error_frame(const FrameProblem& problem);

}  // namespace postern::server
