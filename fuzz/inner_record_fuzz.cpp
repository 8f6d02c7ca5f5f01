// The inner channel's record layer on hostile bytes. The first input byte picks what is fuzzed:
//   0: RecordReader (fixed key) fed the rest in pieces, as a client or a server would read it;
//   1: parse_frame_header with and without masking (header within bounds when it parses);
//   2: unpad_handshake_payload (whatever it accepts re-pads to the same bytes);
//   3: records sealed with the fixed key from the input's pieces, so that the reader's record
//      rules (type, length, padding) are reached past authentication;
//   4: RecordWriter -> RecordReader round trip of the input under a policy drawn from it.
// Random bytes almost never authenticate, which is why modes 3 and 4 seal them first.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "invariant.h"
#include "postern/transport/inner_record.h"

namespace {

using namespace postern;
using namespace postern::transport;

noise::CipherState fixed_cipher() {
  crypto::SecretArray<noise::kKeySize> key;
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(0x42 + i);
  noise::CipherState c;
  c.initialize_key(key);
  return c;
}

void drain(inner::RecordReader& reader) {
  for (int i = 0; i < 100000; ++i) {
    auto r = reader.next();
    if (!r.ok() || !r->has_value()) return;
  }
}

void read_pieces(ByteView in, ws::Role peer) {
  inner::RecordReader reader(fixed_cipher(), peer);
  std::size_t pos = 0;
  while (pos < in.size()) {
    const std::size_t n = std::min<std::size_t>(in.size() - pos, 1 + in[pos] % 64);
    reader.feed(in.subspan(pos, n));
    pos += n;
    drain(reader);
  }
}

void headers(ByteView in) {
  for (bool masked : {false, true}) {
    for (std::size_t max : {std::size_t{125}, noise::kMaxMessage, SIZE_MAX}) {
      auto r = ws::parse_frame_header(in, masked, max);
      if (!r.ok() || !r->has_value()) continue;
      const ws::FrameHeader& h = **r;
      if (h.header_size < 2 || h.header_size > ws::kMaxHeaderSize || h.header_size > in.size()) {
        fuzz::fail("header size out of bounds");
      }
      if (h.payload_size > max || h.masked != masked || !h.fin)
        fuzz::fail("header breaks a rule it was checked for");
    }
  }
}

void unpad(ByteView in) {
  auto r = inner::unpad_handshake_payload(in);
  if (!r.ok()) return;
  if (inner::pad_handshake_payload(*r, in.size()) != Bytes(in.begin(), in.end()))
    fuzz::fail("unpad/pad differ");
}

void sealed_records(ByteView in, ws::Role peer) {
  noise::CipherState c = fixed_cipher();
  crypto::DeterministicRng rng(1);
  Bytes wire;
  std::size_t pos = 0;
  while (pos < in.size()) {
    const std::size_t n = std::min<std::size_t>(in.size() - pos - 1, in[pos]);
    auto sealed = c.encrypt_with_ad({}, in.subspan(pos + 1, n));
    if (!sealed.ok()) break;
    ws::append_frame(wire, ws::Opcode::binary, *sealed, peer, rng);
    pos += 1 + n;
  }
  inner::RecordReader reader(fixed_cipher(), peer);
  reader.feed(wire);
  drain(reader);
}

void round_trip(ByteView in) {
  if (in.size() < 4) return;
  inner::ShapingPolicy p = inner::ShapingPolicy::defaults();
  p.enabled = (in[0] & 1) != 0;
  const ws::Role role = (in[0] & 2) != 0 ? ws::Role::client : ws::Role::server;
  if ((in[0] & 4) != 0) p.padding.buckets = {static_cast<std::uint32_t>(4 + ((in[1] << 8) | in[2]) % 2000)};
  const std::size_t cover = in[3];
  const ByteView data = in.subspan(4);
  crypto::DeterministicRng rng(2);
  inner::RecordWriter writer(fixed_cipher(), p, role, rng);
  Bytes wire;
  // Written in two parts with a cover record between them.
  const std::size_t half = data.size() / 2;
  if (!writer.write_data(data.first(half), wire).ok()) fuzz::fail("write_data failed");
  if (!writer.write_cover(wire, cover * 17).ok()) fuzz::fail("write_cover failed");
  if (!writer.write_data(data.subspan(half), wire).ok()) fuzz::fail("write_data failed");
  if (!writer.write_close(wire).ok()) fuzz::fail("write_close failed");
  inner::RecordReader reader(fixed_cipher(), role);
  reader.feed(wire);
  Bytes got;
  for (;;) {
    auto r = reader.next();
    if (!r.ok() || !r->has_value()) fuzz::fail("reader stopped before close");
    if ((*r)->kind == inner::Event::Kind::data) append(got, (*r)->data);
    if ((*r)->kind == inner::Event::Kind::close) break;
  }
  if (got != Bytes(data.begin(), data.end())) fuzz::fail("round trip changed the data");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const ByteView in(data + 1, size - 1);
  const ws::Role peer = (data[0] & 0x80) != 0 ? ws::Role::client : ws::Role::server;
  switch (data[0] % 5) {
    case 0:
      read_pieces(in, peer);
      break;
    case 1:
      headers(in);
      break;
    case 2:
      unpad(in);
      break;
    case 3:
      sealed_records(in, peer);
      break;
    default:
      round_trip(in);
      break;
  }
  return 0;
}
