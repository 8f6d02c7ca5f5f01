// postern_fuzz_seeds OUT_DIR: writes a seed corpus for every fuzz target into OUT_DIR/<target>/.
// Seeds are real protocol bytes, so the fuzzer starts from inputs that get past the parsers. The
// session_cipher_fuzz seeds come from the same deterministic SessionWorld the target builds, so
// they include genuine not-yet-delivered messages (one for the archived session) and a new X3DH;
// the interop scripts are checked here against a replica of the peer interop_line_fuzz starts
// from. Output is the same on every run, so running it before each session refreshes the same files.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "interop_peer.h"
#include "interop_script.h"
#include "postern/protocol/fingerprint.h"
#include "postern/protocol/group_cipher.h"
#include "postern/protocol/session_builder.h"
#include "postern/protocol/session_record.h"
#include "session_world.h"

namespace {

using namespace postern;
using postern::fuzz::fail;
namespace fs = std::filesystem;

class SeedWriter {
 public:
  explicit SeedWriter(fs::path root) : root_(std::move(root)) {}

  void add(const std::string& target, const std::string& name, ByteView bytes) {
    const fs::path dir = root_ / target;
    fs::create_directories(dir);
    std::ofstream out(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail("cannot write a seed file");
    ++count_;
  }
  void add(const std::string& target, const std::string& name, std::string_view text) {
    add(target, name, as_bytes(text));
  }
  int count() const { return count_; }

 private:
  fs::path root_;
  int count_ = 0;
};

Bytes type2(fuzz::FuzzParty& from, fuzz::FuzzParty& to, crypto::Rng& rng, std::string_view text) {
  auto c = from.cipher_to(to, rng).encrypt(as_bytes(text));
  if (!c || c->type != protocol::CiphertextType::signal) fail("expected a SignalMessage");
  return c->serialized;
}

Bytes group_message(fuzz::SessionWorld& w, std::string_view text) {
  auto g = protocol::GroupCipher(w.alice.store, w.group, w.rng).encrypt(as_bytes(text));
  if (!g) fail("group encrypt");
  return *g;
}

// Alice runs X3DH again with Bob's signed prekey (and his spare one-time prekey, if asked) and
// returns her first PreKeySignalMessage of that new session.
Bytes second_x3dh(fuzz::SessionWorld& w, bool with_one_time_key, std::string_view text) {
  auto spk_bytes = w.bob.store.load_signed_pre_key(fuzz::kBobSignedPreKeyId);
  auto pk_bytes = w.bob.store.load_pre_key(fuzz::kBobSparePreKeyId);
  if (!spk_bytes || !*spk_bytes || !pk_bytes || !*pk_bytes) fail("Bob's prekeys");
  auto spk = protocol::SignedPreKeyRecord::deserialize(**spk_bytes);
  auto pk = protocol::PreKeyRecord::deserialize(**pk_bytes);
  if (!spk || !pk) fail("Bob's prekey records");
  protocol::PreKeyBundle b;
  b.registration_id = *w.bob.store.local_registration_id();
  b.device_id = w.bob.device;
  b.signed_pre_key_id = spk->id;
  b.signed_pre_key = spk->key_pair.public_key;
  b.signed_pre_key_signature = spk->signature;
  b.identity_key = w.bob.store.identity_key_pair()->public_key;
  if (with_one_time_key) {
    b.pre_key_id = pk->id;
    b.pre_key = pk->key_pair.public_key;
  }
  if (!protocol::process_pre_key_bundle(w.alice.store.session_stores(), w.bob.address(), b, w.rng)) {
    fail("second X3DH");
  }
  auto c = w.alice.cipher_to(w.bob, w.rng).encrypt(as_bytes(text));
  if (!c || c->type != protocol::CiphertextType::prekey) fail("expected a PreKeySignalMessage");
  return c->serialized;
}

void session_seeds(SeedWriter& out) {
  fuzz::SessionWorld w;  // byte-identical to session_cipher_fuzz's world
  const fuzz::WorldTranscript t = w.transcript;
  const Bytes bob_session = w.bob.session_with(w.alice);
  const Bytes alice_sender_key = w.alice.sender_key(w.group);
  const Bytes bob_sender_key = w.bob.sender_key(w.group);

  // Genuine messages Bob has not seen yet (they decrypt at Bob), then old ones (duplicates).
  const Bytes a0 = type2(w.alice, w.bob, w.rng, "first after the handshake");
  const Bytes a1 = type2(w.alice, w.bob, w.rng, "second");
  const Bytes a2 = type2(w.alice, w.bob, w.rng, std::string(100, 'x'));
  const Bytes g1 = group_message(w, "group one");
  const Bytes g2 = group_message(w, "");
  const Bytes n1 = second_x3dh(w, true, "new session with one-time prekey");
  const Bytes n2 = second_x3dh(w, false, "new session, signed prekey only");
  const Bytes alice_session = w.alice.session_with(w.bob);  // now with archived states, pending prekey

  const std::string sc = "session_cipher_fuzz";
  out.add(sc, "prekey-delivered", t.alice_first_prekey_message);
  out.add(sc, "prekey-archived-session", t.archived_session_message);
  out.add(sc, "signal-from-bob", t.bob_reply);
  out.add(sc, "group-delivered", t.alice_first_group_message);
  out.add(sc, "signal-new-0", a0);
  out.add(sc, "signal-new-1", a1);
  out.add(sc, "signal-new-2", a2);
  out.add(sc, "group-new-1", g1);
  out.add(sc, "group-new-2", g2);
  out.add(sc, "prekey-new-session-otk", n1);
  out.add(sc, "prekey-new-session-spk", n2);

  const std::string sm = "signal_message_fuzz";
  out.add(sm, "bob-reply", t.bob_reply);
  out.add(sm, "alice-0", a0);
  out.add(sm, "alice-2", a2);
  if (auto pre = protocol::PreKeySignalMessage::parse(n1))
    out.add(sm, "inner-of-prekey", pre->message().serialized());

  const std::string pm = "prekey_signal_message_fuzz";
  out.add(pm, "first", t.alice_first_prekey_message);
  out.add(pm, "archived-session", t.archived_session_message);
  out.add(pm, "with-otk", n1);
  out.add(pm, "spk-only", n2);

  const std::string sk = "sender_key_message_fuzz";
  out.add(sk, "group-0", t.alice_first_group_message);
  out.add(sk, "group-1", g1);
  out.add(sk, "group-empty", g2);
  out.add(sk, "distribution", t.alice_distribution);

  const std::string sr = "session_record_fuzz";
  out.add(sr, "bob", bob_session);
  out.add(sr, "alice-archived", alice_session);
  out.add(sr, "bob-after", w.bob.session_with(w.alice));
  out.add(sr, "empty", protocol::SessionRecord{}.serialize());

  const std::string kr = "sender_key_record_fuzz";
  out.add(kr, "own-sender-key", alice_sender_key);
  out.add(kr, "their-sender-key", bob_sender_key);
  out.add(kr, "own-after", w.alice.sender_key(w.group));
  if (auto spk = w.bob.store.load_signed_pre_key(fuzz::kBobSignedPreKeyId); spk && *spk) {
    out.add(kr, "signed-prekey", **spk);
  }
  if (auto pk = w.bob.store.load_pre_key(fuzz::kBobSparePreKeyId); pk && *pk) out.add(kr, "prekey", **pk);

  // Scannable fingerprints as both sides compute them: [u16 BE length of ours][ours][theirs].
  const auto alice_key = w.alice.store.identity_key_pair()->public_key;
  const auto bob_key = w.bob.store.identity_key_pair()->public_key;
  for (int version : {0, 1}) {
    auto ours = protocol::create_fingerprint(2, version, "+14155550100", alice_key, "+14155550111", bob_key);
    auto theirs =
        protocol::create_fingerprint(2, version, "+14155550111", bob_key, "+14155550100", alice_key);
    if (!ours || !theirs) fail("create_fingerprint");
    Bytes seed{static_cast<std::uint8_t>(ours->scannable.size() >> 8),
               static_cast<std::uint8_t>(ours->scannable.size() & 0xff)};
    append(seed, ours->scannable);
    append(seed, theirs->scannable);
    out.add("fingerprint_fuzz", "match-v" + std::to_string(version), seed);
    Bytes swapped(seed.begin(), seed.begin() + 2);
    append(swapped, theirs->scannable);
    append(swapped, ours->scannable);
    out.add("fingerprint_fuzz", "swapped-v" + std::to_string(version), swapped);
  }
}

// A peer that answers lines; `expect_ok` aborts on anything but `ok...` (the seeds must be valid).
struct ScriptedPeer {
  crypto::DeterministicRng rng;
  interop::InteropPeer peer{rng};
  ScriptedPeer(std::uint64_t seed, std::string_view init) : rng(seed) { expect_ok(init); }
  ScriptedPeer(const ScriptedPeer&) = delete;  // the peer holds a reference to rng
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  std::vector<std::string> expect_ok(std::string_view line) {
    bool quit = false;
    const std::string answer = peer.handle(line, quit);
    if (answer.rfind("ok", 0) != 0) {
      std::fprintf(stderr, "line: %.*s\nanswer: %s\n", static_cast<int>(line.size()), line.data(),
                   answer.c_str());
      fail("a seed line was not accepted");
    }
    std::vector<std::string> fields;
    std::size_t i = 0;
    while (i <= answer.size()) {
      const std::size_t j = std::min(answer.find(' ', i), answer.size());
      fields.push_back(answer.substr(i, j - i));
      i = j + 1;
    }
    return fields;  // fields[0] == "ok"
  }
};

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

void interop_seeds(SeedWriter& out) {
  const std::string it = "interop_line_fuzz";
  ScriptedPeer bob(0xb0b, "init bob 1");
  const std::string bob_identity = bob.expect_ok("identity")[1];
  const std::string sig = bob.expect_ok("sign 68656c6c6f")[1];

  out.add(it, "identity", "identity");
  out.add(it, "bundle", "bundle 7 31");
  out.add(it, "bundle-no-otk", "bundle 7 -1");
  out.add(it, "sign", "sign 68656c6c6f");
  out.add(it, "verify", "verify " + bob_identity + " 68656c6c6f " + sig);
  out.add(it, "fingerprint-v0", "fingerprint 5200 0 alice bob " + bob_identity);
  out.add(it, "fingerprint-v1", "fingerprint 3 1 alice bob " + bob_identity);
  out.add(it, "quit", "quit");
  out.add(it, "bad-decrypt", "decrypt bob 1 2 33");

  // Our peer as responder: it publishes a bundle, bob answers with a PreKeySignalMessage.
  std::vector<std::string> responder;
  {
    ScriptedPeer replica(fuzz::kInteropPeerSeed, fuzz::kInteropInitLine);  // as interop_line_fuzz starts
    auto b = replica.expect_ok("bundle 7 31");  // ok reg device identity spk_id spk sig pk_id pk
    bob.expect_ok("process_bundle fuzz " + b[2] + " " + b[1] + " " + b[3] + " " + b[4] + " " + b[5] + " " +
                  b[6] + " " + b[7] + " " + b[8]);
    auto c = bob.expect_ok("encrypt fuzz 1 68656c6c6f20667a7a");
    auto skdm = bob.expect_ok("skdm_create room")[1];
    auto gm = bob.expect_ok("group_encrypt room 6869")[1];
    responder = {"bundle 7 31", "decrypt bob 1 " + c[1] + " " + c[2], "encrypt bob 1 6f6b",
                 "skdm_process room bob 1 " + skdm, "group_decrypt room bob 1 " + gm};
  }
  // Our peer as initiator: it processes bob's bundle and starts talking, then creates a group key.
  std::vector<std::string> initiator;
  {
    auto b = bob.expect_ok("bundle 9 -1");
    initiator = {"process_bundle bob 1 " + b[1] + " " + b[3] + " 9 " + b[5] + " " + b[6] + " -1 -",
                 "encrypt bob 1 6869", "encrypt bob 1 -", "skdm_create grp", "group_encrypt grp 6869"};
  }
  // Replay both scripts on fresh replicas: every line must be accepted, as it will be when fuzzing.
  for (const auto* script : {&responder, &initiator}) {
    ScriptedPeer replica(fuzz::kInteropPeerSeed, fuzz::kInteropInitLine);
    for (const auto& line : *script) replica.expect_ok(line);
  }
  out.add(it, "responder-script", join_lines(responder));
  out.add(it, "initiator-script", join_lines(initiator));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  SeedWriter out{fs::path(argv[1])};
  session_seeds(out);
  interop_seeds(out);
  std::printf("postern_fuzz_seeds: %d seeds in %s\n", out.count(), argv[1]);
  return 0;
}
