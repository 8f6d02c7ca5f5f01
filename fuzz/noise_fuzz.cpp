// The Noise layer on hostile bytes: a Noise_NK_25519_ChaChaPoly_BLAKE2b responder (the server
// side of Postern's inner channel) and CipherState::decrypt_with_ad. Invariants: nothing aborts;
// a failed decrypt leaves the nonce where it was and a successful one advances it by one; an
// honest initiator's message is accepted and any alteration of it is refused; a failed read
// leaves a state that refuses everything after.
//
// Input: byte 0 chooses the mode, byte 1 a parameter; the rest is split into messages, each
// prefixed by a 2-byte little-endian length (a short tail is the last message).
//   mode 0: the messages go to the responder: the first to read_message, and if it is accepted
//           (it cannot be without the server's key, but the code must say so), the rest to the
//           transport's receive CipherState;
//   mode 1: an honest initiator sends message 1 with the first message as payload, altered at
//           byte (parameter - 1) when the parameter is not 0; then the handshake completes and
//           the remaining messages go through the transport both ways, and raw to the receiver;
//   mode 2: a keyed CipherState at nonce = parameter decrypts every message (ad = the previous
//           message), through both the allocating and the in-place API.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "invariant.h"
#include "postern/transport/noise.h"

namespace {

using postern::Bytes;
using postern::ByteView;
using postern::MutableByteView;
using postern::fuzz::fail;
using namespace postern::transport::noise;

constexpr const char* kProtocol = "Noise_NK_25519_ChaChaPoly_BLAKE2b";

KeyPair fixed_key(std::uint8_t fill) {
  Bytes priv(kDhSize);
  for (std::size_t i = 0; i < priv.size(); ++i) priv[i] = static_cast<std::uint8_t>(fill + 3 * i);
  auto kp = KeyPair::from_private(priv);
  if (!kp.ok()) fail("fixed key refused");
  return std::move(kp).value();
}

const KeyPair& server_static() {
  static const KeyPair kp = fixed_key(0x11);
  return kp;
}
const KeyPair& client_ephemeral() {
  static const KeyPair kp = fixed_key(0x42);
  return kp;
}

std::vector<ByteView> split_messages(ByteView data) {
  std::vector<ByteView> out;
  while (!data.empty()) {
    if (data.size() < 2) {
      out.push_back(data);
      break;
    }
    const std::size_t len = std::min(std::size_t{data[0]} | (std::size_t{data[1]} << 8), data.size() - 2);
    out.push_back(data.subspan(2, len));
    data = data.subspan(2 + len);
  }
  return out;
}

HandshakeState start(bool initiator, postern::crypto::Rng& rng) {
  HandshakeOptions o;
  o.protocol_name = kProtocol;
  o.initiator = initiator;
  o.prologue = {'p', 'o', 's', 't', 'e', 'r', 'n'};
  if (initiator) {
    o.remote_static = server_static().public_key;
    o.local_ephemeral = &client_ephemeral();
  } else {
    o.local_static = &server_static();
  }
  auto hs = HandshakeState::start(o, rng);
  if (!hs.ok()) fail("start failed");
  return std::move(hs).value();
}

// Decrypts one hostile message and checks the nonce rule.
void decrypt_checked(CipherState& cs, ByteView ad, ByteView message) {
  const std::uint64_t before = cs.nonce();
  auto r = cs.decrypt_with_ad(ad, message);
  if (r.ok() != (cs.nonce() == before + 1) && !(r.ok() && !cs.has_key())) {
    fail("the nonce moved on a failed decrypt, or did not on a good one");
  }
  if (r.ok() && cs.has_key() && r->size() + kTagSize != message.size()) fail("wrong plaintext size");
}

void mode_responder(const std::vector<ByteView>& messages) {
  if (messages.empty()) return;
  postern::crypto::DeterministicRng rng(1);
  HandshakeState res = start(false, rng);
  auto payload = res.read_message(messages[0]);
  if (!payload.ok()) {
    if (res.my_turn() || res.write_message({}).ok() || res.split().ok()) fail("a failed state went on");
    return;
  }
  auto reply = res.write_message(*payload);
  if (!reply.ok()) return;  // a payload too large to echo
  auto pair = res.split();
  if (!pair.ok()) fail("split after the last message failed");
  for (std::size_t i = 1; i < messages.size(); ++i) decrypt_checked(pair->receive, {}, messages[i]);
}

void mode_honest(std::uint8_t param, const std::vector<ByteView>& messages) {
  postern::crypto::DeterministicRng rng(2);
  HandshakeState ini = start(true, rng);
  HandshakeState res = start(false, rng);
  // Message 1 is e (32 bytes) and the payload under a tag: cut the payload so it fits.
  ByteView first = messages.empty() ? ByteView() : messages[0];
  first = first.first(std::min(first.size(), kMaxMessage - kDhSize - kTagSize));
  auto m1 = ini.write_message(first);
  if (!m1.ok()) fail("message 1 refused");
  Bytes sent = *m1;
  const bool altered = param != 0 && static_cast<std::size_t>(param - 1) < sent.size();
  if (altered) sent[param - 1u] ^= 0x01;
  auto p1 = res.read_message(sent);
  if (altered) {
    if (p1.ok()) fail("an altered message 1 was accepted");
    return;
  }
  if (!p1.ok() || !std::equal(p1->begin(), p1->end(), first.begin(), first.end())) fail("message 1 lost");
  auto m2 = res.write_message(*p1);
  if (!m2.ok()) fail("message 2 refused");
  auto p2 = ini.read_message(*m2);
  if (!p2.ok() || *p2 != *p1) fail("message 2 lost");
  auto ip = ini.split();
  auto rp = res.split();
  if (!ip.ok() || !rp.ok()) fail("split failed");
  if (ip->handshake_hash != rp->handshake_hash) fail("the handshake hashes differ");
  for (std::size_t i = 1; i < messages.size(); ++i) {
    if (messages[i].size() > kMaxMessage - kTagSize) {
      if (ip->send.encrypt_with_ad(first, messages[i]).ok()) fail("an oversized message was encrypted");
      continue;
    }
    auto c = ip->send.encrypt_with_ad(first, messages[i]);
    if (!c.ok()) fail("transport encrypt failed");
    auto d = rp->receive.decrypt_with_ad(first, *c);
    if (!d.ok() || !std::equal(d->begin(), d->end(), messages[i].begin(), messages[i].end()))
      fail("transport round trip failed");
    decrypt_checked(rp->receive, first, messages[i]);
    auto back = rp->send.encrypt_with_ad({}, messages[i]);
    if (!back.ok() || !ip->receive.decrypt_with_ad({}, *back).ok()) fail("reverse round trip failed");
  }
}

void mode_cipher(std::uint8_t param, const std::vector<ByteView>& messages) {
  CipherState cs;
  postern::crypto::SecretArray<kKeySize> key;
  for (std::size_t i = 0; i < kKeySize; ++i) key[i] = static_cast<std::uint8_t>(0xA5 ^ i);
  cs.initialize_key(key);
  cs.set_nonce(param == 0xff ? ~std::uint64_t{0} : param);
  ByteView ad;
  for (ByteView m : messages) {
    decrypt_checked(cs, ad, m);
    if (m.size() >= kTagSize) {
      Bytes buf(m.begin(), m.end());
      const std::uint64_t before = cs.nonce();
      auto st = cs.decrypt_with_ad(ad, buf, MutableByteView(buf).first(buf.size() - kTagSize));
      if (!st.ok() && cs.nonce() != before) fail("the in-place nonce moved on a failed decrypt");
    }
    ad = m;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0];
  const std::uint8_t param = data[1];
  const std::vector<ByteView> messages = split_messages(ByteView(data + 2, size - 2));
  switch (mode % 3) {
    case 0:
      mode_responder(messages);
      break;
    case 1:
      mode_honest(param, messages);
      break;
    default:
      mode_cipher(param, messages);
      break;
  }
  return 0;
}
