// Tests for postern/transport/noise.h: the cacophony known-answer vectors for every supported
// protocol name (message by message, the handshake hash, and transport messages after Split()),
// then behaviour: wrong keys, tampering, out-of-turn calls, size limits, nonces, rekey,
// low-order keys, and garbage fed to every pattern's read_message.
//
// The vectors are read from POSTERN_VECTORS_DIR (../shared/reference/vectors); unlike the
// Wycheproof tests, a missing file fails here: the Noise code has no other known-answer check.
#include "postern/transport/noise.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "crypto/test_vectors.h"
#include "postern/crypto/random.h"
#include "postern/transport/errors.h"

namespace postern::transport::noise {
namespace {

using test::unhex;

const std::array<std::string, 12> kPatterns = {"NN", "NK", "NX", "KN", "KK", "KX",
                                               "XN", "XK", "XX", "IN", "IK", "IX"};
const std::array<std::string, 2> kHashes = {"SHA256", "BLAKE2b"};

std::string protocol(const std::string& pattern, const std::string& hash) {
  return "Noise_" + pattern + "_25519_ChaChaPoly_" + hash;
}

bool supported(const std::string& name) {
  for (const auto& p : kPatterns) {
    for (const auto& h : kHashes) {
      if (name == protocol(p, h)) return true;
    }
  }
  return false;
}

std::size_t message_count(const std::string& pattern) {
  return pattern[0] == 'X' ? 3 : 2;  // XN, XK, XX send the initiator's static in a third message
}

Bytes field(const nlohmann::json& v, const char* key) {
  return unhex(v.at(key).get<std::string>());
}

KeyPair key_pair(const nlohmann::json& v, const char* key) {
  auto kp = KeyPair::from_private(field(v, key));
  EXPECT_TRUE(kp.ok()) << key;
  return kp.ok() ? std::move(kp).value() : KeyPair{};
}

PublicKey public_key(const nlohmann::json& v, const char* key) {
  PublicKey pk{};
  const Bytes b = field(v, key);
  EXPECT_EQ(b.size(), pk.size()) << key;
  std::copy_n(b.begin(), std::min(b.size(), pk.size()), pk.begin());
  return pk;
}

HandshakeState must_start(const HandshakeOptions& options, crypto::Rng& rng) {
  auto r = HandshakeState::start(options, rng);
  if (!r.ok()) {
    ADD_FAILURE() << options.protocol_name << ": start failed: " << r.error().message();
    std::abort();  // the caller cannot go on without a state
  }
  return std::move(r).value();
}

// One cacophony vector: both sides with the vector's fixed keys, every message checked.
void run_vector(const nlohmann::json& v) {
  const std::string name = v.at("protocol_name").get<std::string>();
  KeyPair init_s, init_e, resp_s, resp_e;
  HandshakeOptions io;
  io.protocol_name = name;
  io.initiator = true;
  io.prologue = field(v, "init_prologue");
  if (v.contains("init_static")) {
    init_s = key_pair(v, "init_static");
    io.local_static = &init_s;
  }
  init_e = key_pair(v, "init_ephemeral");
  io.local_ephemeral = &init_e;
  if (v.contains("init_remote_static")) io.remote_static = public_key(v, "init_remote_static");

  HandshakeOptions ro;
  ro.protocol_name = name;
  ro.initiator = false;
  ro.prologue = field(v, "resp_prologue");
  if (v.contains("resp_static")) {
    resp_s = key_pair(v, "resp_static");
    ro.local_static = &resp_s;
  }
  resp_e = key_pair(v, "resp_ephemeral");
  ro.local_ephemeral = &resp_e;
  if (v.contains("resp_remote_static")) ro.remote_static = public_key(v, "resp_remote_static");

  crypto::DeterministicRng rng(1);  // unused: every key is fixed
  HandshakeState ini = must_start(io, rng);
  HandshakeState res = must_start(ro, rng);

  const auto& messages = v.at("messages");
  std::size_t i = 0;
  for (; i < messages.size() && !(ini.is_finished() && res.is_finished()); ++i) {
    SCOPED_TRACE("handshake message " + std::to_string(i));
    HandshakeState& writer = i % 2 == 0 ? ini : res;
    HandshakeState& reader = i % 2 == 0 ? res : ini;
    ASSERT_TRUE(writer.my_turn());
    ASSERT_FALSE(reader.my_turn());
    const Bytes payload = field(messages[i], "payload");
    auto ct = writer.write_message(payload);
    ASSERT_TRUE(ct.ok()) << ct.error().message();
    EXPECT_EQ(to_hex(*ct), messages[i].at("ciphertext").get<std::string>());
    auto pt = reader.read_message(*ct);
    ASSERT_TRUE(pt.ok()) << pt.error().message();
    EXPECT_EQ(to_hex(*pt), to_hex(payload));
  }
  ASSERT_TRUE(ini.is_finished());
  ASSERT_TRUE(res.is_finished());
  const std::string hh = v.at("handshake_hash").get<std::string>();
  EXPECT_EQ(to_hex(ini.handshake_hash()), hh);
  EXPECT_EQ(to_hex(res.handshake_hash()), hh);
  if (ro.local_static != nullptr) {
    ASSERT_TRUE(ini.remote_static().has_value());
    EXPECT_EQ(*ini.remote_static(), resp_s.public_key);
  }
  if (io.local_static != nullptr) {
    ASSERT_TRUE(res.remote_static().has_value());
    EXPECT_EQ(*res.remote_static(), init_s.public_key);
  }

  auto ip = ini.split();
  auto rp = res.split();
  ASSERT_TRUE(ip.ok());
  ASSERT_TRUE(rp.ok());
  EXPECT_EQ(to_hex(ip->handshake_hash), hh);
  std::size_t transport = 0;
  for (; i < messages.size(); ++i) {
    SCOPED_TRACE("transport message " + std::to_string(i));
    CipherState& send = i % 2 == 0 ? ip->send : rp->send;
    CipherState& receive = i % 2 == 0 ? rp->receive : ip->receive;
    const Bytes payload = field(messages[i], "payload");
    auto ct = send.encrypt_with_ad({}, payload);
    ASSERT_TRUE(ct.ok());
    EXPECT_EQ(to_hex(*ct), messages[i].at("ciphertext").get<std::string>());
    auto pt = receive.decrypt_with_ad({}, *ct);
    ASSERT_TRUE(pt.ok()) << pt.error().message();
    EXPECT_EQ(*pt, payload);
    ++transport;
  }
  EXPECT_GT(transport, 0u) << "the vector has no transport messages";
}

TEST(NoiseCacophony, SupportedVectorsMatch) {
  const auto path = std::filesystem::path(POSTERN_VECTORS_DIR) / "noise-cacophony.json";
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "cannot read " << path << " (the Noise known-answer test needs it)";
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << path << " is not JSON";
  ASSERT_TRUE(doc.contains("vectors"));

  std::map<std::string, int> run;
  crypto::DeterministicRng rng(7);
  for (const auto& v : doc.at("vectors")) {
    const std::string name = v.at("protocol_name").get<std::string>();
    if (!supported(name) || v.contains("init_psks") || v.contains("resp_psks")) {
      // Whatever we skip must be something start() refuses, not something it would get wrong.
      if (!supported(name)) {
        HandshakeOptions o;
        o.protocol_name = name;
        auto r = HandshakeState::start(o, rng);
        ASSERT_FALSE(r.ok()) << name;
        EXPECT_EQ(r.error(), make_error_code(Errc::unsupported_protocol)) << name;
      }
      continue;
    }
    SCOPED_TRACE(name);
    run_vector(v);
    ++run[name];
  }
  int total = 0;
  for (const auto& p : kPatterns) {
    for (const auto& h : kHashes) {
      const std::string name = protocol(p, h);
      EXPECT_GT(run[name], 0) << "no vector for " << name;
      total += run[name];
    }
  }
  std::cout << "[ noise    ] " << total << " cacophony vectors checked over " << run.size()
            << " protocol names\n";
}

// ---- behaviour ---------------------------------------------------------------------------

struct Parties {
  KeyPair init_static;
  KeyPair resp_static;
  std::optional<HandshakeState> ini;
  std::optional<HandshakeState> res;
};

// Both sides of `pattern` with fresh keys; each side knows the peer's static key when the
// pattern pre-shares it.
std::unique_ptr<Parties> make_parties(const std::string& pattern, const std::string& hash, crypto::Rng& rng) {
  auto p = std::make_unique<Parties>();
  p->init_static = KeyPair::generate(rng);
  p->resp_static = KeyPair::generate(rng);
  HandshakeOptions io;
  io.protocol_name = protocol(pattern, hash);
  io.initiator = true;
  io.prologue = {'p', 'r'};
  io.local_static = &p->init_static;
  if (pattern[1] == 'K') io.remote_static = p->resp_static.public_key;
  HandshakeOptions ro = io;
  ro.initiator = false;
  ro.local_static = &p->resp_static;
  ro.remote_static.reset();
  if (pattern[0] == 'K') ro.remote_static = p->init_static.public_key;
  p->ini.emplace(must_start(io, rng));
  p->res.emplace(must_start(ro, rng));
  return p;
}

// Runs the handshake to its end; returns the messages sent.
std::vector<Bytes> complete(Parties& p) {
  std::vector<Bytes> sent;
  for (std::size_t i = 0; !(p.ini->is_finished() && p.res->is_finished()); ++i) {
    HandshakeState& writer = i % 2 == 0 ? *p.ini : *p.res;
    HandshakeState& reader = i % 2 == 0 ? *p.res : *p.ini;
    const Bytes payload = {static_cast<std::uint8_t>(i), 'x'};
    auto m = writer.write_message(payload);
    EXPECT_TRUE(m.ok()) << m.error().message();
    if (!m.ok()) break;
    auto pt = reader.read_message(*m);
    EXPECT_TRUE(pt.ok()) << pt.error().message();
    if (!pt.ok()) break;
    EXPECT_EQ(*pt, payload);
    sent.push_back(*m);
  }
  return sent;
}

TEST(NoiseHandshake, EveryPatternRoundTrips) {
  crypto::DeterministicRng rng(11);
  for (const auto& pattern : kPatterns) {
    for (const auto& hash : kHashes) {
      SCOPED_TRACE(protocol(pattern, hash));
      auto p = make_parties(pattern, hash, rng);
      const auto sent = complete(*p);
      EXPECT_EQ(sent.size(), message_count(pattern));
      ASSERT_TRUE(p->ini->is_finished() && p->res->is_finished());
      EXPECT_EQ(p->ini->handshake_hash(), p->res->handshake_hash());
      EXPECT_EQ(p->ini->handshake_hash().size(), hash == "SHA256" ? 32u : 64u);
      // The initiator knows the responder's static unless the pattern has none (xN); the
      // responder knows the initiator's unless it is anonymous (Nx).
      if (pattern[1] != 'N') {
        ASSERT_TRUE(p->ini->remote_static().has_value());
        EXPECT_EQ(*p->ini->remote_static(), p->resp_static.public_key);
      } else {
        EXPECT_FALSE(p->ini->remote_static().has_value());
      }
      if (pattern[0] != 'N') {
        ASSERT_TRUE(p->res->remote_static().has_value());
        EXPECT_EQ(*p->res->remote_static(), p->init_static.public_key);
      } else {
        EXPECT_FALSE(p->res->remote_static().has_value());
      }
      auto ip = p->ini->split();
      auto rp = p->res->split();
      ASSERT_TRUE(ip.ok() && rp.ok());
      const Bytes hello = {'h', 'e', 'l', 'l', 'o'};
      for (int round = 0; round < 3; ++round) {
        auto c1 = ip->send.encrypt_with_ad({}, hello);
        ASSERT_TRUE(c1.ok());
        auto p1 = rp->receive.decrypt_with_ad({}, *c1);
        ASSERT_TRUE(p1.ok());
        EXPECT_EQ(*p1, hello);
        auto c2 = rp->send.encrypt_with_ad(hello, hello);
        ASSERT_TRUE(c2.ok());
        auto p2 = ip->receive.decrypt_with_ad(hello, *c2);
        ASSERT_TRUE(p2.ok());
        EXPECT_EQ(*p2, hello);
      }
    }
  }
}

TEST(NoiseHandshake, StartRefusesUnsupportedNamesAndMissingKeys) {
  crypto::DeterministicRng rng(12);
  for (const char* name :
       {"Noise_NN_25519_ChaChaPoly_BLAKE2s", "Noise_NN_448_ChaChaPoly_SHA256", "Noise_NN_25519_AESGCM_SHA256",
        "Noise_NNpsk0_25519_ChaChaPoly_SHA256", "Noise_N_25519_ChaChaPoly_SHA256",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256", "Noise_NN_25519_ChaChaPoly_SHA256x", "", "Noise_",
        "noise_NN_25519_ChaChaPoly_SHA256"}) {
    HandshakeOptions o;
    o.protocol_name = name;
    auto r = HandshakeState::start(o, rng);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error(), make_error_code(Errc::unsupported_protocol)) << name;
  }
  const KeyPair kp = KeyPair::generate(rng);
  HandshakeOptions o;
  o.protocol_name = "Noise_NK_25519_ChaChaPoly_BLAKE2b";
  o.initiator = true;  // needs the server's static key
  auto r = HandshakeState::start(o, rng);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), make_error_code(Errc::bad_key));
  o.initiator = false;  // needs its own static key
  r = HandshakeState::start(o, rng);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), make_error_code(Errc::bad_key));
  o.protocol_name = "Noise_XN_25519_ChaChaPoly_SHA256";
  o.initiator = true;  // sends its static key in message 3
  r = HandshakeState::start(o, rng);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), make_error_code(Errc::bad_key));
  o.local_static = &kp;
  EXPECT_TRUE(HandshakeState::start(o, rng).ok());

  EXPECT_EQ(KeyPair::from_private(Bytes(31, 1)).error(), make_error_code(Errc::bad_key));
  EXPECT_EQ(KeyPair::from_private(Bytes(33, 1)).error(), make_error_code(Errc::bad_key));
  auto again = KeyPair::from_private(kp.private_key.view());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key, kp.public_key);
}

TEST(NoiseHandshake, NkWithAWrongServerKeyFailsAtTheResponder) {
  crypto::DeterministicRng rng(13);
  for (const auto& hash : kHashes) {
    auto p = make_parties("NK", hash, rng);
    const KeyPair other = KeyPair::generate(rng);
    HandshakeOptions io;
    io.protocol_name = protocol("NK", hash);
    io.prologue = {'p', 'r'};
    io.remote_static = other.public_key;  // not the responder's
    HandshakeState ini = must_start(io, rng);
    auto m1 = ini.write_message(Bytes{'h', 'i'});
    ASSERT_TRUE(m1.ok());
    auto r = p->res->read_message(*m1);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), make_error_code(Errc::handshake_failed));
    // The failed state is dead.
    EXPECT_FALSE(p->res->my_turn());
    EXPECT_EQ(p->res->write_message({}).error(), make_error_code(Errc::wrong_state));
    EXPECT_EQ(p->res->split().error(), make_error_code(Errc::wrong_state));
  }
}

TEST(NoiseHandshake, AMismatchedPrologueFails) {
  crypto::DeterministicRng rng(14);
  auto p = make_parties("NN", "SHA256", rng);
  HandshakeOptions ro;
  ro.protocol_name = protocol("NN", "SHA256");
  ro.initiator = false;
  ro.prologue = {'p', 'X'};
  HandshakeState res = must_start(ro, rng);
  auto m1 = p->ini->write_message({});
  ASSERT_TRUE(m1.ok());
  ASSERT_TRUE(res.read_message(*m1).ok());  // message 1 of NN carries no tag
  auto m2 = res.write_message({});
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(p->ini->read_message(*m2).error(), make_error_code(Errc::handshake_failed));
}

TEST(NoiseHandshake, AnyAlteredOrTruncatedAuthenticatedMessageFails) {
  // XX: messages 2 and 3 are authenticated throughout (the e of message 2 is hashed before the
  // tags that follow it). Every single-bit flip and every truncation must be refused.
  for (const auto& hash : kHashes) {
    crypto::DeterministicRng seed_rng(15);
    auto honest = make_parties("XX", hash, seed_rng);
    const auto sent = complete(*honest);
    ASSERT_EQ(sent.size(), 3u);
    for (std::size_t which = 1; which < 3; ++which) {
      SCOPED_TRACE(hash + " message " + std::to_string(which + 1));
      const Bytes& msg = sent[which];
      auto replay_to = [&](const Bytes& altered) {
        crypto::DeterministicRng rng(15);
        auto p = make_parties("XX", hash, rng);
        for (std::size_t i = 0; i < which; ++i) {
          HandshakeState& writer = i % 2 == 0 ? *p->ini : *p->res;
          HandshakeState& reader = i % 2 == 0 ? *p->res : *p->ini;
          auto m = writer.write_message(Bytes{static_cast<std::uint8_t>(i), 'x'});
          EXPECT_TRUE(m.ok() && reader.read_message(*m).ok());
        }
        HandshakeState& writer = which % 2 == 0 ? *p->ini : *p->res;
        HandshakeState& reader = which % 2 == 0 ? *p->res : *p->ini;
        auto m = writer.write_message(Bytes{static_cast<std::uint8_t>(which), 'x'});
        EXPECT_TRUE(m.ok());
        EXPECT_EQ(*m, msg);  // the replay is deterministic
        return reader.read_message(altered);
      };
      for (std::size_t byte = 0; byte < msg.size(); byte += 7) {
        Bytes altered = msg;
        altered[byte] ^= static_cast<std::uint8_t>(1u << (byte % 8));
        auto r = replay_to(altered);
        ASSERT_FALSE(r.ok()) << "byte " << byte;
        EXPECT_EQ(r.error(), make_error_code(Errc::handshake_failed)) << "byte " << byte;
      }
      for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{31}, std::size_t{32},
                              std::size_t{48}, msg.size() - 17, msg.size() - 1}) {
        auto r = replay_to(Bytes(msg.begin(), msg.begin() + static_cast<std::ptrdiff_t>(len)));
        ASSERT_FALSE(r.ok()) << "length " << len;
        EXPECT_EQ(r.error(), make_error_code(Errc::handshake_failed)) << "length " << len;
      }
      Bytes longer = msg;
      longer.push_back(0);
      EXPECT_EQ(replay_to(longer).error(), make_error_code(Errc::handshake_failed));
    }
  }
}

TEST(NoiseHandshake, OutOfTurnCallsAreWrongState) {
  crypto::DeterministicRng rng(16);
  auto p = make_parties("XX", "BLAKE2b", rng);
  const auto wrong = make_error_code(Errc::wrong_state);
  EXPECT_TRUE(p->ini->is_initiator());
  EXPECT_FALSE(p->res->is_initiator());
  EXPECT_TRUE(p->ini->my_turn());
  EXPECT_FALSE(p->res->my_turn());
  EXPECT_EQ(p->ini->read_message(Bytes(64, 1)).error(), wrong);
  EXPECT_EQ(p->res->write_message({}).error(), wrong);
  // A refused out-of-turn call changes nothing: the handshake still completes.
  const auto sent = complete(*p);
  EXPECT_EQ(sent.size(), 3u);
  EXPECT_EQ(p->ini->write_message({}).error(), wrong);
  EXPECT_EQ(p->res->write_message({}).error(), wrong);
  EXPECT_EQ(p->ini->read_message(sent[2]).error(), wrong);
  EXPECT_EQ(p->res->read_message(sent[2]).error(), wrong);
  EXPECT_TRUE(p->ini->split().ok());
  EXPECT_EQ(p->ini->split().error(), wrong);  // once only: the chaining key is gone
}

TEST(NoiseHandshake, SplitBeforeTheEndIsWrongState) {
  crypto::DeterministicRng rng(17);
  auto p = make_parties("IK", "SHA256", rng);
  const auto wrong = make_error_code(Errc::wrong_state);
  EXPECT_EQ(p->ini->split().error(), wrong);
  EXPECT_EQ(p->res->split().error(), wrong);
  auto m1 = p->ini->write_message({});
  ASSERT_TRUE(m1.ok());
  ASSERT_TRUE(p->res->read_message(*m1).ok());
  EXPECT_EQ(p->ini->split().error(), wrong);
  EXPECT_EQ(p->res->split().error(), wrong);
  auto m2 = p->res->write_message({});
  ASSERT_TRUE(m2.ok());
  EXPECT_TRUE(p->res->is_finished());
  EXPECT_EQ(p->ini->split().error(), wrong);
  ASSERT_TRUE(p->ini->read_message(*m2).ok());
  EXPECT_TRUE(p->ini->split().ok());
  EXPECT_TRUE(p->res->split().ok());
}

TEST(NoiseHandshake, MessagesOverTheLimitAreTooLarge) {
  crypto::DeterministicRng rng(18);
  auto p = make_parties("NN", "BLAKE2b", rng);
  const auto too_large = make_error_code(Errc::too_large);
  EXPECT_EQ(p->ini->write_message(Bytes(kMaxMessage, 0)).error(), too_large);
  EXPECT_EQ(p->ini->write_message(Bytes(kMaxMessage - kDhSize + 1, 0)).error(), too_large);
  // A refused write changes nothing; the largest message that fits is exactly the limit.
  auto m1 = p->ini->write_message(Bytes(kMaxMessage - kDhSize, 0));
  ASSERT_TRUE(m1.ok());
  EXPECT_EQ(m1->size(), kMaxMessage);
  EXPECT_EQ(p->res->read_message(Bytes(kMaxMessage + 1, 0)).error(), too_large);

  auto q = make_parties("NN", "BLAKE2b", rng);
  auto m = q->ini->write_message({});
  ASSERT_TRUE(m.ok() && q->res->read_message(*m).ok());
  // Message 2 is e, ee, then an encrypted payload: 32 + payload + 16.
  EXPECT_EQ(q->res->write_message(Bytes(kMaxMessage - kDhSize - kTagSize + 1, 0)).error(), too_large);
  auto m2 = q->res->write_message(Bytes(kMaxMessage - kDhSize - kTagSize, 0));
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(m2->size(), kMaxMessage);
  ASSERT_TRUE(q->ini->read_message(*m2).ok());

  auto ip = q->ini->split();
  auto rp = q->res->split();
  ASSERT_TRUE(ip.ok() && rp.ok());
  EXPECT_EQ(ip->send.encrypt_with_ad({}, Bytes(kMaxMessage - kTagSize + 1, 0)).error(), too_large);
  EXPECT_EQ(ip->send.nonce(), 0u);
  auto big = ip->send.encrypt_with_ad({}, Bytes(kMaxMessage - kTagSize, 0));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->size(), kMaxMessage);
  EXPECT_TRUE(rp->receive.decrypt_with_ad({}, *big).ok());
  EXPECT_EQ(rp->receive.decrypt_with_ad({}, Bytes(kMaxMessage + 1, 0)).error(), too_large);
}

struct Transport {
  TransportPair ini;
  TransportPair res;
};

Transport transport(const std::string& pattern, std::uint64_t seed) {
  crypto::DeterministicRng rng(seed);
  auto p = make_parties(pattern, "BLAKE2b", rng);
  complete(*p);
  auto ip = p->ini->split();
  auto rp = p->res->split();
  EXPECT_TRUE(ip.ok() && rp.ok());
  return {std::move(ip).value(), std::move(rp).value()};
}

TEST(NoiseTransport, AFlippedBitFailsAndTheNonceStays) {
  auto t = transport("NK", 19);
  const Bytes ad = {'a', 'd'};
  const Bytes msg = {'s', 'e', 'c', 'r', 'e', 't'};
  auto c = t.ini.send.encrypt_with_ad(ad, msg);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(t.ini.send.nonce(), 1u);
  for (std::size_t bit = 0; bit < c->size() * 8; ++bit) {
    Bytes altered = *c;
    altered[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    auto r = t.res.receive.decrypt_with_ad(ad, altered);
    ASSERT_FALSE(r.ok()) << "bit " << bit;
    EXPECT_EQ(r.error(), make_error_code(Errc::decrypt_failed));
    EXPECT_EQ(t.res.receive.nonce(), 0u);
  }
  EXPECT_EQ(t.res.receive.decrypt_with_ad(Bytes{'a', 'D'}, *c).error(),
            make_error_code(Errc::decrypt_failed));
  EXPECT_EQ(t.res.receive.decrypt_with_ad(ad, ByteView(*c).first(kTagSize - 1)).error(),
            make_error_code(Errc::decrypt_failed));
  EXPECT_EQ(t.res.receive.nonce(), 0u);
  auto ok = t.res.receive.decrypt_with_ad(ad, *c);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, msg);
  EXPECT_EQ(t.res.receive.nonce(), 1u);
  // A replay is refused (the nonce has moved on).
  EXPECT_EQ(t.res.receive.decrypt_with_ad(ad, *c).error(), make_error_code(Errc::decrypt_failed));
}

TEST(NoiseTransport, InPlaceAndEmptyMessages) {
  auto t = transport("XK", 20);
  Bytes buf = {'i', 'n', ' ', 'p', 'l', 'a', 'c', 'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::size_t n = buf.size() - kTagSize;
  const Bytes plain(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
  ASSERT_TRUE(t.ini.send.encrypt_with_ad({}, ByteView(buf).first(n), MutableByteView(buf)).ok());
  EXPECT_NE(Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)), plain);
  ASSERT_TRUE(t.res.receive.decrypt_with_ad({}, buf, MutableByteView(buf).first(n)).ok());
  EXPECT_EQ(Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)), plain);
  // Wrong output sizes are refused without touching the nonce.
  Bytes small(3);
  EXPECT_FALSE(t.ini.send.encrypt_with_ad({}, plain, MutableByteView(small)).ok());
  EXPECT_EQ(t.ini.send.nonce(), 1u);

  auto e = t.res.send.encrypt_with_ad({}, {});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), kTagSize);
  auto d = t.ini.receive.decrypt_with_ad({}, *e);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->empty());
}

TEST(NoiseTransport, WithoutAKeyBytesPassThrough) {
  CipherState cs;
  EXPECT_FALSE(cs.has_key());
  const Bytes msg = {1, 2, 3};
  auto c = cs.encrypt_with_ad({}, msg);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, msg);
  auto d = cs.decrypt_with_ad({}, msg);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, msg);
  EXPECT_EQ(cs.nonce(), 0u);
  cs.rekey();  // no key: nothing to do
  EXPECT_FALSE(cs.has_key());
}

TEST(NoiseTransport, TheLastNonceIsReserved) {
  auto t = transport("NN", 21);
  const std::uint64_t last = std::numeric_limits<std::uint64_t>::max();
  t.ini.send.set_nonce(last - 1);
  t.res.receive.set_nonce(last - 1);
  auto c = t.ini.send.encrypt_with_ad({}, Bytes{1});
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(t.res.receive.decrypt_with_ad({}, *c).ok());
  EXPECT_EQ(t.ini.send.nonce(), last);
  EXPECT_EQ(t.ini.send.encrypt_with_ad({}, Bytes{1}).error(), make_error_code(Errc::wrong_state));
  EXPECT_EQ(t.res.receive.decrypt_with_ad({}, *c).error(), make_error_code(Errc::wrong_state));
}

TEST(NoiseTransport, RekeyIsDeterministicAndBothSidesAgree) {
  auto t = transport("KK", 22);
  const Bytes msg = {'r', 'e', 'k', 'e', 'y'};
  ASSERT_TRUE(t.res.receive.decrypt_with_ad({}, *t.ini.send.encrypt_with_ad({}, msg)).ok());

  CipherState before = t.ini.send;  // same key and nonce
  CipherState twin = t.ini.send;
  t.ini.send.rekey();
  twin.rekey();
  t.res.receive.rekey();
  EXPECT_EQ(t.ini.send.nonce(), 1u);  // rekey leaves the nonce alone
  auto old_c = before.encrypt_with_ad({}, msg);
  auto new_c = t.ini.send.encrypt_with_ad({}, msg);
  auto twin_c = twin.encrypt_with_ad({}, msg);
  ASSERT_TRUE(old_c.ok() && new_c.ok() && twin_c.ok());
  EXPECT_NE(*old_c, *new_c);   // the key changed
  EXPECT_EQ(*new_c, *twin_c);  // deterministically
  auto d = t.res.receive.decrypt_with_ad({}, *new_c);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, msg);
  // A side that did not rekey cannot read the new key's messages.
  auto t2 = transport("KK", 22);  // same seed: the same keys as before any rekey
  t2.res.receive.set_nonce(1);
  EXPECT_EQ(t2.res.receive.decrypt_with_ad({}, *new_c).error(), make_error_code(Errc::decrypt_failed));
  EXPECT_TRUE(t2.res.receive.decrypt_with_ad({}, *old_c).ok());
}

TEST(NoiseHandshake, LowOrderKeysAreRefused) {
  // Small-order points (u = 0, 1, the two of order 8, p - 1): every DH with them is all-zero
  // once X25519 has cleared the cofactor.
  const std::vector<std::string> low = {
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  };
  const auto bad_key = make_error_code(Errc::bad_key);
  crypto::DeterministicRng rng(23);
  for (const auto& hex : low) {
    SCOPED_TRACE(hex);
    PublicKey point{};
    const Bytes b = unhex(hex);
    std::copy(b.begin(), b.end(), point.begin());

    // The responder gets a low-order e in message 1 (NN: no DH yet), then refuses to write ee.
    auto p = make_parties("NN", "SHA256", rng);
    Bytes m1(point.begin(), point.end());
    ASSERT_TRUE(p->res->read_message(m1).ok());
    EXPECT_EQ(p->res->write_message({}).error(), bad_key);

    // The initiator gets a low-order e in message 2 and refuses it while reading.
    auto q = make_parties("NN", "SHA256", rng);
    ASSERT_TRUE(q->ini->write_message({}).ok());
    Bytes m2(point.begin(), point.end());
    m2.resize(m2.size() + kTagSize);
    EXPECT_EQ(q->ini->read_message(m2).error(), bad_key);

    // An NK client given a low-order server key refuses to write es.
    HandshakeOptions io;
    io.protocol_name = "Noise_NK_25519_ChaChaPoly_BLAKE2b";
    io.remote_static = point;
    HandshakeState ini = must_start(io, rng);
    EXPECT_EQ(ini.write_message({}).error(), bad_key);
    EXPECT_FALSE(ini.my_turn());

    // An NK server reading a low-order client e refuses at es.
    auto s = make_parties("NK", "BLAKE2b", rng);
    Bytes m(point.begin(), point.end());
    m.resize(m.size() + kTagSize);
    EXPECT_EQ(s->res->read_message(m).error(), bad_key);
  }
}

TEST(NoiseHandshake, GarbageNeverCrashesAnyPattern) {
  crypto::DeterministicRng rng(24);
  std::size_t reads = 0;
  for (const auto& pattern : kPatterns) {
    for (const auto& hash : kHashes) {
      SCOPED_TRACE(protocol(pattern, hash));
      const std::size_t count = message_count(pattern);
      for (std::size_t target = 0; target < count; ++target) {
        // Message 1 is only authenticated when it carries a DH token (NK, KK, IK's es).
        const bool authenticated = target > 0 || pattern[1] == 'K';
        for (int trial = 0; trial < 30; ++trial) {
          auto p = make_parties(pattern, hash, rng);
          bool ready = true;
          for (std::size_t i = 0; i < target && ready; ++i) {
            HandshakeState& writer = i % 2 == 0 ? *p->ini : *p->res;
            HandshakeState& reader = i % 2 == 0 ? *p->res : *p->ini;
            auto m = writer.write_message({});
            ready = m.ok() && reader.read_message(*m).ok();
          }
          ASSERT_TRUE(ready);
          HandshakeState& reader = target % 2 == 0 ? *p->res : *p->ini;
          Bytes garbage(trial < 15 ? static_cast<std::size_t>(trial * 7) : rng.uniform(400));
          rng.fill(garbage);
          auto r = reader.read_message(garbage);
          ++reads;
          if (authenticated) {
            EXPECT_FALSE(r.ok()) << "garbage of " << garbage.size() << " bytes accepted";
          }
          if (!r.ok()) {
            // A dead state stays dead and still never crashes.
            EXPECT_FALSE(reader.read_message(garbage).ok());
            EXPECT_FALSE(reader.write_message({}).ok());
          }
        }
      }
    }
  }
  EXPECT_GT(reads, 0u);
}

}  // namespace
}  // namespace postern::transport::noise
