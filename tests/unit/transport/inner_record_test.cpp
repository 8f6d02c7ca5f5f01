// Tests for postern/transport/inner_record.h: records round trip between a RecordWriter and a
// RecordReader (keys from a real Noise_NK handshake, or a fixed key), the exact sizes frames
// take on the wire, the first bursts, cover and close records, and every way the reader
// refuses what our writer never produces.
#include "postern/transport/inner_record.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "postern/transport/errors.h"

namespace postern::transport::inner {
namespace {

Errc code(const std::error_code& e) {
  EXPECT_EQ(&e.category(), &transport_category());
  return static_cast<Errc>(e.value());
}

noise::CipherState fixed_cipher(std::uint8_t seed = 0x42) {
  crypto::SecretArray<noise::kKeySize> key;
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(seed + i);
  noise::CipherState c;
  c.initialize_key(key);
  return c;
}

// Shaping without first bursts, so that frame sizes depend only on the buckets.
ShapingPolicy plain(std::vector<std::uint32_t> buckets) {
  ShapingPolicy p = ShapingPolicy::defaults();
  p.padding.buckets = std::move(buckets);
  p.first_burst_down.clear();
  p.first_burst_up.clear();
  return p;
}

std::size_t ws_header(std::size_t payload, ws::Role role) {
  return (payload < 126 ? 2 : payload <= 0xFFFF ? 4 : 10) + (role == ws::Role::client ? 4 : 0);
}

Bytes pattern(std::size_t n, std::uint8_t salt = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 31 + salt + (i >> 8));
  return b;
}

// Reads every event; data concatenated; counts of the other kinds.
struct Drained {
  Bytes data;
  std::size_t data_records = 0;
  std::size_t covers = 0;
  std::size_t closes = 0;
  std::error_code error;
};

Drained drain(RecordReader& reader) {
  Drained d;
  for (;;) {
    auto r = reader.next();
    if (!r.ok()) {
      d.error = r.error();
      return d;
    }
    if (!r->has_value()) return d;
    Event& e = **r;
    switch (e.kind) {
      case Event::Kind::data:
        append(d.data, e.data);
        ++d.data_records;
        break;
      case Event::Kind::cover:
        ++d.covers;
        break;
      case Event::Kind::close:
        ++d.closes;
        return d;
      default:
        ADD_FAILURE() << "unexpected event";
        return d;
    }
  }
}

// The two directions of a real Noise_NK_25519_ChaChaPoly_BLAKE2b handshake with padded payloads.
struct Channel {
  noise::CipherState client_send, client_receive, server_send, server_receive;
  std::size_t message1_size = 0, message2_size = 0;
};

Channel handshake(crypto::Rng& rng, std::size_t padding) {
  Channel ch;
  const noise::KeyPair server_static = noise::KeyPair::generate(rng);
  noise::HandshakeOptions client_opts;
  client_opts.protocol_name = "Noise_NK_25519_ChaChaPoly_BLAKE2b";
  client_opts.initiator = true;
  client_opts.remote_static = server_static.public_key;
  noise::HandshakeOptions server_opts;
  server_opts.protocol_name = client_opts.protocol_name;
  server_opts.initiator = false;
  server_opts.local_static = &server_static;
  auto client = noise::HandshakeState::start(client_opts, rng);
  auto server = noise::HandshakeState::start(server_opts, rng);
  EXPECT_TRUE(client.ok() && server.ok());
  if (!client.ok() || !server.ok()) return ch;
  const std::string hello = "client hello";
  auto m1 = client->write_message(pad_handshake_payload(as_bytes(hello), padding));
  EXPECT_TRUE(m1.ok());
  if (!m1.ok()) return ch;
  ch.message1_size = m1->size();
  auto p1 = server->read_message(*m1);
  EXPECT_TRUE(p1.ok());
  if (!p1.ok()) return ch;
  auto u1 = unpad_handshake_payload(*p1);
  EXPECT_TRUE(u1.ok());
  if (u1.ok()) {
    EXPECT_EQ(as_chars(*u1), hello);
  }
  auto m2 = server->write_message(pad_handshake_payload({}, padding));
  EXPECT_TRUE(m2.ok());
  if (!m2.ok()) return ch;
  ch.message2_size = m2->size();
  auto p2 = client->read_message(*m2);
  EXPECT_TRUE(p2.ok());
  if (p2.ok()) {
    auto u2 = unpad_handshake_payload(*p2);
    EXPECT_TRUE(u2.ok() && u2->empty());
  }
  auto cs = client->split();
  auto ss = server->split();
  EXPECT_TRUE(cs.ok() && ss.ok());
  if (!cs.ok() || !ss.ok()) return ch;
  ch.client_send = std::move(cs->send);
  ch.client_receive = std::move(cs->receive);
  ch.server_send = std::move(ss->send);
  ch.server_receive = std::move(ss->receive);
  return ch;
}

TEST(InnerRecord, DefaultsAreValidAndFitTlsRecords) {
  const ShapingPolicy p = ShapingPolicy::defaults();
  ASSERT_TRUE(p.validate().ok());
  EXPECT_TRUE(p.enabled);
  ASSERT_FALSE(p.padding.buckets.empty());
  for (std::uint32_t b : p.padding.buckets) {
    // A client frame is a power of two, at most one TLS record (16384 bytes of plaintext).
    const std::size_t client_frame = b + noise::kTagSize + ws_header(b + noise::kTagSize, ws::Role::client);
    EXPECT_EQ(client_frame & (client_frame - 1), 0u) << client_frame;
    EXPECT_LE(client_frame, 16384u);
  }
  EXPECT_EQ(p.padding.buckets.back() + noise::kTagSize + 8, 16384u);
  EXPECT_EQ(p.cover_interval, std::chrono::milliseconds{20'000});
  EXPECT_DOUBLE_EQ(p.cover_jitter, 0.5);
  EXPECT_FALSE(p.first_burst_down.empty());
  EXPECT_FALSE(p.first_burst_up.empty());
  // The handshake messages are not 48 bytes but the size of the smallest record's Noise message.
  EXPECT_EQ(noise::kDhSize + p.handshake_padding + noise::kTagSize,
            p.padding.buckets.front() + noise::kTagSize);
}

TEST(InnerRecord, PolicyValidation) {
  PaddingPolicy pad;
  EXPECT_TRUE(pad.validate().ok());  // empty: no padding
  pad.buckets = {4, 100, kMaxRecordSize};
  EXPECT_TRUE(pad.validate().ok());
  for (std::vector<std::uint32_t> bad : std::vector<std::vector<std::uint32_t>>{
           {3}, {0}, {100, 50}, {100, 100}, {static_cast<std::uint32_t>(kMaxRecordSize + 1)}}) {
    pad.buckets = bad;
    EXPECT_EQ(code(pad.validate().error()), Errc::bad_config);
  }
  auto broken = [](auto change) {
    ShapingPolicy p = ShapingPolicy::defaults();
    change(p);
    return p.validate().ok() ? Errc::ok : code(p.validate().error());
  };
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.cover_jitter = 1.5; }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.cover_jitter = -0.1; }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.cover_jitter = std::nan(""); }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.cover_interval = std::chrono::milliseconds{-1}; }),
            Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.first_burst_down.push_back(2); }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.first_burst_up.push_back(70000); }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.handshake_padding = 65535; }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.padding.buckets = {500, 400}; }), Errc::bad_config);
  EXPECT_EQ(broken([](ShapingPolicy& p) { p.cover_interval = std::chrono::milliseconds{0}; }), Errc::ok);
}

TEST(InnerRecord, RecordSizeFor) {
  PaddingPolicy pad{{64, 256, 1024}};
  EXPECT_EQ(record_size_for(0, pad), 64u);
  EXPECT_EQ(record_size_for(61, pad), 64u);
  EXPECT_EQ(record_size_for(62, pad), 256u);
  EXPECT_EQ(record_size_for(1021, pad), 1024u);
  EXPECT_EQ(record_size_for(1022, pad), 1025u);    // no bucket holds it: unpadded
  EXPECT_EQ(record_size_for(10, pad, 500), 500u);  // a burst size is taken as it is
  EXPECT_EQ(record_size_for(600, pad, 500), 1024u);
  EXPECT_EQ(record_size_for(10, PaddingPolicy{}), 13u);
  EXPECT_EQ(record_size_for(kMaxDataPerRecord + 100, PaddingPolicy{}), kMaxRecordSize);
}

TEST(InnerRecord, NextCoverDelay) {
  crypto::DeterministicRng rng(1);
  ShapingPolicy p = ShapingPolicy::defaults();
  std::int64_t lo = 1'000'000, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    const auto d = p.next_cover_delay(rng).count();
    ASSERT_GE(d, 10'000);
    ASSERT_LE(d, 30'000);
    lo = std::min<std::int64_t>(lo, d);
    hi = std::max<std::int64_t>(hi, d);
  }
  EXPECT_LT(lo, 11'000);  // the whole range is used
  EXPECT_GT(hi, 29'000);
  p.cover_jitter = 0;
  EXPECT_EQ(p.next_cover_delay(rng).count(), 20'000);
  p.cover_interval = std::chrono::milliseconds{0};
  EXPECT_EQ(p.next_cover_delay(rng).count(), 0);
  p = ShapingPolicy::defaults();
  p.enabled = false;
  EXPECT_EQ(p.next_cover_delay(rng).count(), 0);
}

TEST(InnerRecord, HandshakePayloadPadding) {
  const Bytes payload = {1, 2, 3};
  const Bytes padded = pad_handshake_payload(payload, 200);
  ASSERT_EQ(padded.size(), 200u);
  EXPECT_EQ(padded[0], 0);
  EXPECT_EQ(padded[1], 3);
  auto back = unpad_handshake_payload(padded);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, payload);
  // Longer than the padded size: no padding.
  const Bytes big = pattern(300);
  EXPECT_EQ(pad_handshake_payload(big, 200).size(), 302u);
  EXPECT_EQ(*unpad_handshake_payload(pad_handshake_payload(big, 200)), big);
  EXPECT_EQ(pad_handshake_payload({}, 0).size(), 2u);
  // Refusals.
  EXPECT_EQ(code(unpad_handshake_payload(Bytes{}).error()), Errc::bad_frame);
  EXPECT_EQ(code(unpad_handshake_payload(Bytes{0}).error()), Errc::bad_frame);
  EXPECT_EQ(code(unpad_handshake_payload(Bytes{0, 4, 1, 2, 3}).error()), Errc::bad_frame);
  Bytes dirty = padded;
  dirty[150] = 1;
  EXPECT_EQ(code(unpad_handshake_payload(dirty).error()), Errc::bad_frame);
  EXPECT_TRUE(unpad_handshake_payload(Bytes{0, 0}).ok());
}

TEST(InnerRecord, RealHandshakeThenBothDirections) {
  crypto::DeterministicRng rng(11);
  const ShapingPolicy policy = ShapingPolicy::defaults();
  Channel ch = handshake(rng, policy.handshake_padding);
  // Both handshake messages are 248 bytes (not the bare 48).
  EXPECT_EQ(ch.message1_size, 248u);
  EXPECT_EQ(ch.message2_size, 248u);

  RecordWriter client_writer(std::move(ch.client_send), policy, ws::Role::client, rng);
  RecordWriter server_writer(std::move(ch.server_send), policy, ws::Role::server, rng);
  RecordReader server_reader(std::move(ch.server_receive), ws::Role::client);
  RecordReader client_reader(std::move(ch.client_receive), ws::Role::server);

  Bytes up_expected, down_expected, up_wire, down_wire;
  for (std::size_t i = 0; i < 20; ++i) {
    const Bytes up = pattern(i * 97 + 1, static_cast<std::uint8_t>(i));
    const Bytes down = pattern(i * 1531 + 5, static_cast<std::uint8_t>(i + 100));
    ASSERT_TRUE(client_writer.write_data(up, up_wire).ok());
    ASSERT_TRUE(server_writer.write_data(down, down_wire).ok());
    append(up_expected, up);
    append(down_expected, down);
  }
  server_reader.feed(up_wire);
  client_reader.feed(down_wire);
  Drained up = drain(server_reader);
  Drained down = drain(client_reader);
  EXPECT_FALSE(up.error);
  EXPECT_FALSE(down.error);
  EXPECT_EQ(up.data, up_expected);
  EXPECT_EQ(down.data, down_expected);
  EXPECT_EQ(server_reader.buffered(), 0u);
  EXPECT_EQ(up.data_records, client_writer.records_written());
}

TEST(InnerRecord, WireSizesAreBucketPlusTagPlusHeader) {
  const std::vector<std::uint32_t> buckets = {100, 1000, 5000, 65000};
  for (ws::Role role : {ws::Role::server, ws::Role::client}) {
    crypto::DeterministicRng rng(3);
    RecordWriter writer(fixed_cipher(), plain(buckets), role, rng);
    RecordReader reader(fixed_cipher(), role);
    struct Case {
      std::size_t data;
      std::size_t bucket;
    };
    for (Case c : {Case{1, 100}, Case{97, 100}, Case{98, 1000}, Case{997, 1000}, Case{998, 5000},
                   Case{4997, 5000}, Case{5000, 65000}, Case{64997, 65000}}) {
      Bytes out;
      ASSERT_TRUE(writer.write_data(pattern(c.data), out).ok());
      const std::size_t payload = c.bucket + noise::kTagSize;
      EXPECT_EQ(out.size(), payload + ws_header(payload, role)) << c.data;
      reader.feed(out);
      Drained d = drain(reader);
      EXPECT_FALSE(d.error);
      EXPECT_EQ(d.data, pattern(c.data));
    }
    // Longer than the largest bucket: records of the largest bucket, the last one bucketed.
    Bytes out;
    ASSERT_TRUE(writer.write_data(pattern(64997 + 50), out).ok());
    const std::size_t big = 65000 + noise::kTagSize;
    const std::size_t small = 100 + noise::kTagSize;
    EXPECT_EQ(out.size(), big + ws_header(big, role) + small + ws_header(small, role));
  }
}

TEST(InnerRecord, FirstBurstSizes) {
  const ShapingPolicy p = ShapingPolicy::defaults();
  for (ws::Role role : {ws::Role::server, ws::Role::client}) {
    crypto::DeterministicRng rng(5);
    RecordWriter writer(fixed_cipher(), p, role, rng);
    RecordReader reader(fixed_cipher(), role);
    const auto& burst = role == ws::Role::server ? p.first_burst_down : p.first_burst_up;
    Bytes wire;
    // A cover record does not use up the burst.
    Bytes cover;
    ASSERT_TRUE(writer.write_cover(cover).ok());
    EXPECT_EQ(cover.size(), p.padding.buckets.front() + noise::kTagSize + ws_header(300, role));
    append(wire, cover);
    for (std::size_t i = 0; i < burst.size() + 2; ++i) {
      Bytes out;
      ASSERT_TRUE(writer.write_data(pattern(10), out).ok());
      const std::size_t record = i < burst.size() ? burst[i] : p.padding.buckets.front();
      EXPECT_EQ(out.size(), record + noise::kTagSize + ws_header(record + noise::kTagSize, role)) << i;
      append(wire, out);
    }
    reader.feed(wire);
    Drained d = drain(reader);
    EXPECT_FALSE(d.error);
    EXPECT_EQ(d.covers, 1u);
    EXPECT_EQ(d.data_records, burst.size() + 2);
  }
}

TEST(InnerRecord, FirstBurstSplitsALargeFirstWrite) {
  const ShapingPolicy p = ShapingPolicy::defaults();
  crypto::DeterministicRng rng(6);
  RecordWriter writer(fixed_cipher(), p, ws::Role::server, rng);
  RecordReader reader(fixed_cipher(), ws::Role::server);
  const Bytes data = pattern(40'000);
  Bytes out;
  ASSERT_TRUE(writer.write_data(data, out).ok());
  // Walk the frames: the first ones have the burst sizes exactly.
  std::size_t pos = 0;
  std::vector<std::size_t> records;
  while (pos < out.size()) {
    auto h = ws::parse_frame_header(ByteView(out).subspan(pos), false, noise::kMaxMessage);
    ASSERT_TRUE(h.ok() && h->has_value());
    records.push_back(static_cast<std::size_t>((*h)->payload_size) - noise::kTagSize);
    pos += (*h)->header_size + static_cast<std::size_t>((*h)->payload_size);
  }
  ASSERT_GE(records.size(), p.first_burst_down.size() + 1);
  for (std::size_t i = 0; i < p.first_burst_down.size(); ++i) EXPECT_EQ(records[i], p.first_burst_down[i]);
  EXPECT_EQ(records[p.first_burst_down.size()], p.padding.buckets.back());
  reader.feed(out);
  EXPECT_EQ(drain(reader).data, data);
}

TEST(InnerRecord, UnshapedRecordsAreExact) {
  ShapingPolicy p = ShapingPolicy::defaults();
  p.enabled = false;
  crypto::DeterministicRng rng(7);
  RecordWriter writer(fixed_cipher(), p, ws::Role::server, rng);
  Bytes out;
  ASSERT_TRUE(writer.write_data(pattern(10), out).ok());
  EXPECT_EQ(out.size(), 2 + 3 + 10 + noise::kTagSize);
  out.clear();
  ASSERT_TRUE(writer.write_cover(out).ok());
  EXPECT_EQ(out.size(), 2 + 3 + noise::kTagSize);
}

TEST(InnerRecord, CoverRecordsAreSkippedByTheStream) {
  crypto::DeterministicRng rng(8);
  RecordWriter writer(fixed_cipher(), plain({100, 1000, 4000}), ws::Role::client, rng);
  RecordReader reader(fixed_cipher(), ws::Role::client);
  Bytes wire, expected;
  for (int i = 0; i < 5; ++i) {
    const Bytes d = pattern(static_cast<std::size_t>(50 + i * 400));
    ASSERT_TRUE(writer.write_data(d, wire).ok());
    append(expected, d);
    const std::size_t before = wire.size();
    ASSERT_TRUE(writer.write_cover(wire, static_cast<std::size_t>(i * 300)).ok());
    // The requested size is bucketed.
    const std::size_t record = i == 0 ? 100 : (i * 300 <= 1000 ? 1000 : 4000);
    EXPECT_EQ(wire.size() - before,
              record + noise::kTagSize + ws_header(record + noise::kTagSize, ws::Role::client));
  }
  reader.feed(wire);
  Drained d = drain(reader);
  EXPECT_FALSE(d.error);
  EXPECT_EQ(d.covers, 5u);
  EXPECT_EQ(d.data, expected);
}

TEST(InnerRecord, CloseThenRefusal) {
  crypto::DeterministicRng rng(9);
  RecordWriter writer(fixed_cipher(), plain({100}), ws::Role::server, rng);
  RecordReader reader(fixed_cipher(), ws::Role::server);
  Bytes wire;
  ASSERT_TRUE(writer.write_data(pattern(20), wire).ok());
  ASSERT_TRUE(writer.write_close(wire).ok());
  Bytes after;
  EXPECT_EQ(code(writer.write_data(pattern(5), after).error()), Errc::wrong_state);
  EXPECT_EQ(code(writer.write_cover(after).error()), Errc::wrong_state);
  EXPECT_EQ(code(writer.write_close(after).error()), Errc::wrong_state);
  EXPECT_TRUE(after.empty());
  // A record sent after close (by a writer that does not stop) is never opened.
  RecordWriter rogue(fixed_cipher(), plain({100}), ws::Role::server, rng);
  Bytes extra;
  ASSERT_TRUE(rogue.write_data(pattern(1), extra).ok());
  append(wire, extra);
  reader.feed(wire);
  Drained d = drain(reader);
  EXPECT_FALSE(d.error);
  EXPECT_EQ(d.closes, 1u);
  EXPECT_EQ(d.data, pattern(20));
  EXPECT_EQ(code(reader.next().error()), Errc::wrong_state);
}

TEST(InnerRecord, TamperedByteFailsToDecrypt) {
  crypto::DeterministicRng rng(10);
  RecordWriter writer(fixed_cipher(), plain({100}), ws::Role::server, rng);
  Bytes frame;
  ASSERT_TRUE(writer.write_data(pattern(30), frame).ok());
  ASSERT_EQ(frame.size(), 2 + 116u);
  for (std::size_t i = 2; i < frame.size(); ++i) {
    Bytes bad = frame;
    bad[i] ^= 0x01;
    RecordReader reader(fixed_cipher(), ws::Role::server);
    reader.feed(bad);
    auto r = reader.next();
    ASSERT_FALSE(r.ok()) << i;
    EXPECT_EQ(code(r.error()), Errc::decrypt_failed) << i;
    EXPECT_EQ(code(reader.next().error()), Errc::wrong_state);
  }
  // A record out of order (replayed or dropped) does not authenticate either.
  Bytes second;
  ASSERT_TRUE(writer.write_data(pattern(3), second).ok());
  RecordReader reader(fixed_cipher(), ws::Role::server);
  reader.feed(second);
  EXPECT_EQ(code(reader.next().error()), Errc::decrypt_failed);
}

// Frames records the writer never produces: plaintext sealed with the fixed key.
Bytes forge(ByteView record_plaintext, ws::Role role = ws::Role::server, ws::Opcode op = ws::Opcode::binary) {
  noise::CipherState c = fixed_cipher();
  auto sealed = c.encrypt_with_ad({}, record_plaintext);
  EXPECT_TRUE(sealed.ok());
  Bytes out;
  crypto::DeterministicRng rng(99);
  ws::append_frame(out, op, *sealed, role, rng);
  return out;
}

Errc read_error(const Bytes& wire, ws::Role peer = ws::Role::server,
                std::size_t max_frame = noise::kMaxMessage) {
  RecordReader reader(fixed_cipher(), peer, max_frame);
  reader.feed(wire);
  auto r = reader.next();
  if (r.ok()) return Errc::ok;
  const Errc e = code(r.error());
  EXPECT_EQ(code(reader.next().error()), Errc::wrong_state);  // refuses everything after an error
  return e;
}

TEST(InnerRecord, ReaderStrictness) {
  // Well formed: data, 2 bytes, zero padding.
  EXPECT_EQ(read_error(forge(Bytes{1, 0, 2, 0xaa, 0xbb, 0, 0, 0})), Errc::ok);
  // Non-zero padding, anywhere.
  EXPECT_EQ(read_error(forge(Bytes{1, 0, 2, 0xaa, 0xbb, 0, 0, 1})), Errc::bad_frame);
  EXPECT_EQ(read_error(forge(Bytes{1, 0, 2, 0xaa, 0xbb, 0x80, 0, 0})), Errc::bad_frame);
  // A length over the record.
  EXPECT_EQ(read_error(forge(Bytes{1, 0, 6, 0xaa, 0xbb, 0, 0, 0})), Errc::bad_frame);
  EXPECT_EQ(read_error(forge(Bytes{1, 0xff, 0xff, 0})), Errc::bad_frame);
  // Unknown types.
  EXPECT_EQ(read_error(forge(Bytes{0, 0, 0, 0})), Errc::bad_frame);
  EXPECT_EQ(read_error(forge(Bytes{4, 0, 0, 0})), Errc::bad_frame);
  EXPECT_EQ(read_error(forge(Bytes{0xff, 0, 0, 0})), Errc::bad_frame);
  // Cover and close records carry no data.
  EXPECT_EQ(read_error(forge(Bytes{2, 0, 0, 0})), Errc::ok);
  EXPECT_EQ(read_error(forge(Bytes{2, 0, 1, 7})), Errc::bad_frame);
  EXPECT_EQ(read_error(forge(Bytes{3, 0, 1, 7})), Errc::bad_frame);
  // Shorter than a record header (even though it authenticates).
  EXPECT_EQ(read_error(forge(Bytes{1, 0})), Errc::bad_frame);
  EXPECT_EQ(read_error(forge(Bytes{})), Errc::bad_frame);
  // A text frame, however well sealed its content.
  EXPECT_EQ(read_error(forge(Bytes{1, 0, 0, 0}, ws::Role::server, ws::Opcode::text)), Errc::bad_frame);
  // A frame over max_frame.
  EXPECT_EQ(read_error(forge(Bytes(200, 0)), ws::Role::server, 100), Errc::too_large);
  // A close frame with a 1-byte body.
  EXPECT_EQ(read_error(Bytes{0x88, 0x01, 0x00}), Errc::bad_frame);
}

TEST(InnerRecord, MaskingRoleMismatchIsRefused) {
  crypto::DeterministicRng rng(12);
  for (ws::Role writer_role : {ws::Role::client, ws::Role::server}) {
    RecordWriter writer(fixed_cipher(), plain({100}), writer_role, rng);
    Bytes wire;
    ASSERT_TRUE(writer.write_data(pattern(10), wire).ok());
    const ws::Role wrong = writer_role == ws::Role::client ? ws::Role::server : ws::Role::client;
    EXPECT_EQ(read_error(wire, wrong), Errc::bad_frame);
    EXPECT_EQ(read_error(wire, writer_role), Errc::ok);
  }
}

TEST(InnerRecord, FedOneByteAtATime) {
  for (ws::Role role : {ws::Role::client, ws::Role::server}) {
    crypto::DeterministicRng rng(13);
    RecordWriter writer(fixed_cipher(), ShapingPolicy::defaults(), role, rng);
    Bytes wire, expected;
    for (std::size_t n : {1u, 300u, 5000u, 20000u}) {
      const Bytes d = pattern(n, static_cast<std::uint8_t>(n));
      ASSERT_TRUE(writer.write_data(d, wire).ok());
      append(expected, d);
    }
    ASSERT_TRUE(writer.write_cover(wire).ok());
    writer.write_pong(as_bytes("pp"), wire);  // skipped by the reader
    crypto::DeterministicRng ping_rng(1);
    ws::append_frame(wire, ws::Opcode::ping, as_bytes("hi"), role, ping_rng);
    ASSERT_TRUE(writer.write_close(wire).ok());

    RecordReader reader(fixed_cipher(), role);
    Bytes got;
    std::size_t covers = 0, pings = 0, closes = 0;
    for (std::uint8_t byte : wire) {
      reader.feed(ByteView(&byte, 1));
      for (;;) {
        auto r = reader.next();
        ASSERT_TRUE(r.ok()) << r.error().message();
        if (!r->has_value()) break;
        switch ((*r)->kind) {
          case Event::Kind::data:
            append(got, (*r)->data);
            break;
          case Event::Kind::cover:
            ++covers;
            break;
          case Event::Kind::ws_ping:
            EXPECT_EQ(as_chars((*r)->data), "hi");
            ++pings;
            break;
          case Event::Kind::close:
            ++closes;
            break;
          case Event::Kind::ws_close:
            ADD_FAILURE();
            break;
        }
        if (closes > 0) break;
      }
    }
    EXPECT_EQ(got, expected);
    EXPECT_EQ(covers, 1u);
    EXPECT_EQ(pings, 1u);
    EXPECT_EQ(closes, 1u);
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(InnerRecord, OneMebibyteInOneWrite) {
  crypto::DeterministicRng rng(14);
  const ShapingPolicy p = ShapingPolicy::defaults();
  RecordWriter writer(fixed_cipher(), p, ws::Role::server, rng);
  RecordReader reader(fixed_cipher(), ws::Role::server);
  const Bytes data = pattern(1 << 20);
  Bytes wire;
  ASSERT_TRUE(writer.write_data(data, wire).ok());
  // Every frame fits a TLS record; the total is the data plus per-record overhead.
  const std::size_t room = p.padding.buckets.back() - kRecordHeaderSize;
  EXPECT_GE(writer.records_written(), (data.size() + room - 1) / room);
  EXPECT_LE(wire.size(),
            data.size() + writer.records_written() * (kRecordHeaderSize + noise::kTagSize + 4) + 20000);
  // Fed in TCP-sized pieces.
  Drained total;
  for (std::size_t pos = 0; pos < wire.size(); pos += 1448) {
    reader.feed(ByteView(wire).subspan(pos, std::min<std::size_t>(1448, wire.size() - pos)));
    Drained d = drain(reader);
    ASSERT_FALSE(d.error);
    append(total.data, d.data);
  }
  EXPECT_EQ(total.data, data);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(InnerRecord, ControlFrames) {
  crypto::DeterministicRng rng(15);
  RecordWriter writer(fixed_cipher(), plain({100}), ws::Role::client, rng);
  Bytes wire;
  ws::append_frame(wire, ws::Opcode::ping, as_bytes("abc"), ws::Role::client, rng);
  writer.write_ws_close(wire);
  RecordReader reader(fixed_cipher(), ws::Role::client);
  reader.feed(wire);
  auto e1 = reader.next();
  ASSERT_TRUE(e1.ok() && e1->has_value());
  EXPECT_EQ((*e1)->kind, Event::Kind::ws_ping);
  EXPECT_EQ(as_chars((*e1)->data), "abc");
  auto e2 = reader.next();
  ASSERT_TRUE(e2.ok() && e2->has_value());
  EXPECT_EQ((*e2)->kind, Event::Kind::ws_close);
  EXPECT_EQ(code(reader.next().error()), Errc::wrong_state);
  // A pong answers with the ping's payload.
  Bytes pong;
  writer.write_pong(as_bytes("abc"), pong);
  auto h = ws::parse_frame_header(pong, true, 125);
  ASSERT_TRUE(h.ok() && h->has_value());
  EXPECT_EQ((*h)->opcode, ws::Opcode::pong);
  EXPECT_EQ((*h)->payload_size, 3u);
}

TEST(InnerRecord, WriterDoesNotSealWithoutRoom) {
  // An empty write appends nothing and uses no nonce.
  crypto::DeterministicRng rng(16);
  RecordWriter writer(fixed_cipher(), plain({100}), ws::Role::server, rng);
  Bytes out;
  ASSERT_TRUE(writer.write_data({}, out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(writer.records_written(), 0u);
}

}  // namespace
}  // namespace postern::transport::inner
