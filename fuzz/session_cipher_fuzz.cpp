// Stateful decrypt: every input goes to Bob's SessionCipher as a SignalMessage (type 2) and as a
// PreKeySignalMessage (type 3), and to Bob's GroupCipher for Alice's sender key, against the fixed
// session of session_world.h. Errors are expected; what must hold:
//   - no crash, leak or UB (the sanitizers);
//   - a decrypt that fails leaves Bob's stored session, sender key and prekeys byte-for-byte as
//     they were (session_cipher.h and group_cipher.h promise it);
//   - afterwards a message Alice encrypts now, 1:1 and to the group, still decrypts at Bob.
// A decrypt can succeed only for a genuine message (the seeds from make_seeds.cpp include some);
// then Bob's state legitimately moved, so the probe is skipped for that input. Either way, every
// record is restored from the snapshot afterwards, so each input meets exactly the same state and
// a crash reproduces from its input alone.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "postern/protocol/group_cipher.h"
#include "session_world.h"

namespace {

using namespace postern;
using postern::fuzz::fail;
using postern::fuzz::SessionWorld;

struct BobView {
  Bytes session;
  Bytes sender_key;
  std::size_t pre_keys;
};

BobView bob_view(SessionWorld& w) {
  return BobView{w.bob.session_with(w.alice), w.bob.sender_key(w.group), w.bob.store.pre_key_count()};
}

bool same(const BobView& a, const BobView& b) {
  return a.session == b.session && a.sender_key == b.sender_key && a.pre_keys == b.pre_keys;
}

// Alice sends a fresh message on each channel; Bob must read both.
void probe(SessionWorld& w) {
  static constexpr std::string_view kText = "probe after a hostile input";
  auto c = w.alice.cipher_to(w.bob, w.rng).encrypt(as_bytes(kText));
  if (!c) fail("Alice cannot encrypt to Bob");
  auto p = w.bob.cipher_to(w.alice, w.rng).decrypt(c->type, c->serialized);
  if (!p || as_chars(*p) != kText) fail("a fresh 1:1 message from Alice no longer decrypts at Bob");
  auto g = protocol::GroupCipher(w.alice.store, w.group, w.rng).encrypt(as_bytes(kText));
  if (!g) fail("Alice cannot encrypt to the group");
  auto gp = protocol::GroupCipher(w.bob.store, w.group, w.rng).decrypt(*g);
  if (!gp || as_chars(*gp) != kText) fail("a fresh group message from Alice no longer decrypts at Bob");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static SessionWorld world;
  static protocol::SessionCipher bob_cipher = world.bob.cipher_to(world.alice, world.rng);
  static protocol::GroupCipher bob_group(world.bob.store, world.group, world.rng);

  const ByteView in(data, size);
  bool any_success = false;
  for (auto type : {protocol::CiphertextType::signal, protocol::CiphertextType::prekey}) {
    const BobView before = bob_view(world);
    auto r = bob_cipher.decrypt(type, in);
    if (r) {
      any_success = true;
    } else if (!same(before, bob_view(world))) {
      fail(type == protocol::CiphertextType::signal
               ? "a failed SignalMessage decrypt changed Bob's records"
               : "a failed PreKeySignalMessage decrypt changed Bob's records");
    }
  }
  {
    const BobView before = bob_view(world);
    auto r = bob_group.decrypt(in);
    if (r) {
      any_success = true;
    } else if (!same(before, bob_view(world))) {
      fail("a failed group decrypt changed Bob's records");
    }
  }
  if (!any_success) probe(world);
  world.restore();
  return 0;
}
