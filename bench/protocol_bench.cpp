// postern-bench: Postern's protocol layer against libsignal-protocol-c 2.3.3 (Debian), same
// machine, same run. 100-byte plaintexts; both sides load and store their records from in-memory
// stores that keep them serialised, on every operation, as a messenger with a database does.
// Prints each operation's median and the ratio theirs / ours.
//
//   postern-bench [--quick] [--filter SUBSTRING]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "libsignal_c/signal_c_support.h"
#include "postern/protocol/fingerprint.h"
#include "postern/protocol/group_cipher.h"
#include "postern/protocol/in_memory_store.h"
#include "postern/protocol/session_builder.h"
#include "postern/protocol/session_cipher.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace sc = postern::interop::signal_c;
namespace pp = postern::protocol;
using postern::Bytes;

[[noreturn]] void die(const char* what, int code) {
  std::fprintf(stderr, "postern-bench: %s failed (%d)\n", what, code);
  std::exit(2);
}
void check(bool ok, const char* what) {
  if (!ok) die(what, -1);
}
void check_rc(int rc, const char* what) {
  if (rc < 0) die(what, rc);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Times fn() once, in microseconds.
template <class F>
double time_us(F&& fn) {
  auto t0 = Clock::now();
  fn();
  auto t1 = Clock::now();
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

const Bytes kPlain(100, 'p');

struct Counts {
  int setup, chain, ratchet, group, fingerprint;
};

// ---- Postern ----------------------------------------------------------------------------------

struct OurParty {
  std::string name;
  pp::InMemoryProtocolStore store;
  OurParty(std::string n, postern::crypto::Rng& rng)
      : name(std::move(n)), store(pp::IdentityKeyPair::generate(rng), pp::generate_registration_id(rng)) {}
  pp::PreKeyBundle bundle(std::uint32_t spk_id, std::uint32_t pk_id, postern::crypto::Rng& rng) {
    auto id = *store.identity_key_pair();
    auto spk = pp::SignedPreKeyRecord::generate(spk_id, id, 0, rng);
    auto pk = pp::PreKeyRecord::generate(pk_id, rng);
    check(store.store_signed_pre_key(spk_id, spk.serialize()).ok(), "store spk");
    check(store.store_pre_key(pk_id, pk.serialize()).ok(), "store pk");
    return pp::PreKeyBundle{*store.local_registration_id(),
                            1,
                            pk_id,
                            pk.key_pair.public_key,
                            spk_id,
                            spk.key_pair.public_key,
                            spk.signature,
                            id.public_key};
  }
};

struct Results {
  std::vector<double> setup, encrypt, decrypt, ratchet, group_encrypt, group_decrypt, fingerprint;
};

Results run_ours(const Counts& n) {
  postern::crypto::SystemRng rng;
  OurParty alice("alice", rng), bob("bob", rng);
  Results r;
  // Set-up: bundle processing, first encrypt, first (PreKey) decrypt; a new device address each time.
  for (int i = 0; i < n.setup; ++i) {
    const auto dev = static_cast<std::uint32_t>(i + 2);
    auto b = bob.bundle(static_cast<std::uint32_t>(i + 1), static_cast<std::uint32_t>(i + 1), rng);
    r.setup.push_back(time_us([&] {
      check(pp::process_pre_key_bundle(alice.store.session_stores(), {"bob", dev}, b, rng).ok(), "bundle");
      auto c = pp::SessionCipher(alice.store.session_stores(), {"bob", dev}, rng).encrypt(kPlain);
      check(c.ok(), "encrypt");
      check(pp::SessionCipher(bob.store.session_stores(), {"alice", dev}, rng)
                .decrypt(c->type, c->serialized)
                .ok(),
            "first decrypt");
    }));
  }
  // An established session in which Bob has answered, so Alice sends SignalMessages.
  auto b = bob.bundle(100000, 100000, rng);
  check(pp::process_pre_key_bundle(alice.store.session_stores(), {"bob", 1}, b, rng).ok(), "bundle");
  pp::SessionCipher a2b(alice.store.session_stores(), {"bob", 1}, rng);
  pp::SessionCipher b2a(bob.store.session_stores(), {"alice", 1}, rng);
  {
    auto c = a2b.encrypt(kPlain);
    check(b2a.decrypt(c->type, c->serialized).ok(), "open");
    auto d = b2a.encrypt(kPlain);
    check(a2b.decrypt(d->type, d->serialized).ok(), "answer");
  }
  std::vector<pp::CiphertextMessage> msgs(static_cast<std::size_t>(n.chain));
  for (auto& m : msgs) r.encrypt.push_back(time_us([&] { m = *a2b.encrypt(kPlain); }));
  for (auto& m : msgs)
    r.decrypt.push_back(time_us([&] { check(b2a.decrypt(m.type, m.serialized).ok(), "decrypt"); }));
  for (int i = 0; i < n.ratchet; ++i) {
    auto c = a2b.encrypt(kPlain);
    r.ratchet.push_back(time_us([&] { check(b2a.decrypt(c->type, c->serialized).ok(), "ratchet decrypt"); }));
    auto d = b2a.encrypt(kPlain);
    r.ratchet.push_back(time_us([&] { check(a2b.decrypt(d->type, d->serialized).ok(), "ratchet decrypt"); }));
  }
  // Group.
  pp::SenderKeyName key{"group", {"alice", 1}};
  auto skdm = pp::create_sender_key_distribution(alice.store, key, rng);
  check(pp::process_sender_key_distribution(bob.store, key, *skdm).ok(), "skdm");
  pp::GroupCipher ga(alice.store, key, rng), gb(bob.store, key, rng);
  std::vector<Bytes> gm(static_cast<std::size_t>(n.group));
  for (auto& m : gm) r.group_encrypt.push_back(time_us([&] { m = *ga.encrypt(kPlain); }));
  for (auto& m : gm) r.group_decrypt.push_back(time_us([&] { check(gb.decrypt(m).ok(), "group decrypt"); }));
  // Safety number.
  auto ik_a = alice.store.identity_key_pair()->public_key;
  auto ik_b = bob.store.identity_key_pair()->public_key;
  for (int i = 0; i < n.fingerprint; ++i) {
    r.fingerprint.push_back(time_us([&] {
      check(pp::create_fingerprint(5200, 1, "alice@example.org", ik_a, "bob@example.org", ik_b).ok(), "fp");
    }));
  }
  return r;
}

// ---- libsignal-protocol-c ---------------------------------------------------------------------

Results run_theirs(const Counts& n) {
  std::unique_ptr<sc::SignalCContext> alice, bob;
  check_rc(sc::SignalCContext::create("alice", 1, alice), "context");
  check_rc(sc::SignalCContext::create("bob", 1, bob), "context");
  Results r;
  for (int i = 0; i < n.setup; ++i) {
    const std::int32_t dev = i + 2;
    sc::PreKeyBundle b;
    check_rc(bob->generate_bundle(static_cast<std::uint32_t>(i + 1), static_cast<std::uint32_t>(i + 1), b),
             "bundle");
    r.setup.push_back(time_us([&] {
      check_rc(alice->process_bundle("bob", dev, b), "process bundle");
      sc::Ciphertext c;
      check_rc(alice->encrypt("bob", dev, kPlain, c), "encrypt");
      Bytes p;
      check_rc(bob->decrypt("alice", dev, c.type, c.wire, p), "first decrypt");
    }));
  }
  sc::PreKeyBundle b;
  check_rc(bob->generate_bundle(100000, 100000, b), "bundle");
  check_rc(alice->process_bundle("bob", 1, b), "process bundle");
  Bytes p;
  {
    sc::Ciphertext c, d;
    check_rc(alice->encrypt("bob", 1, kPlain, c), "encrypt");
    check_rc(bob->decrypt("alice", 1, c.type, c.wire, p), "open");
    check_rc(bob->encrypt("alice", 1, kPlain, d), "encrypt");
    check_rc(alice->decrypt("bob", 1, d.type, d.wire, p), "answer");
  }
  std::vector<sc::Ciphertext> msgs(static_cast<std::size_t>(n.chain));
  for (auto& m : msgs)
    r.encrypt.push_back(time_us([&] { check_rc(alice->encrypt("bob", 1, kPlain, m), "encrypt"); }));
  for (auto& m : msgs) {
    r.decrypt.push_back(time_us([&] { check_rc(bob->decrypt("alice", 1, m.type, m.wire, p), "decrypt"); }));
  }
  for (int i = 0; i < n.ratchet; ++i) {
    sc::Ciphertext c, d;
    check_rc(alice->encrypt("bob", 1, kPlain, c), "encrypt");
    r.ratchet.push_back(
        time_us([&] { check_rc(bob->decrypt("alice", 1, c.type, c.wire, p), "ratchet decrypt"); }));
    check_rc(bob->encrypt("alice", 1, kPlain, d), "encrypt");
    r.ratchet.push_back(
        time_us([&] { check_rc(alice->decrypt("bob", 1, d.type, d.wire, p), "ratchet decrypt"); }));
  }
  Bytes skdm;
  check_rc(alice->create_skdm("group", skdm), "skdm");
  check_rc(bob->process_skdm("group", "alice", 1, skdm), "skdm process");
  std::vector<Bytes> gm(static_cast<std::size_t>(n.group));
  for (auto& m : gm)
    r.group_encrypt.push_back(
        time_us([&] { check_rc(alice->group_encrypt("group", kPlain, m), "group encrypt"); }));
  for (auto& m : gm) {
    r.group_decrypt.push_back(
        time_us([&] { check_rc(bob->group_decrypt("group", "alice", 1, m, p), "group decrypt"); }));
  }
  for (int i = 0; i < n.fingerprint; ++i) {
    r.fingerprint.push_back(time_us([&] {
      sc::Fingerprint f;
      check_rc(alice->fingerprint(5200, 1, "alice@example.org", "bob@example.org", bob->identity_public(), f),
               "fp");
    }));
  }
  return r;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: postern-bench [--quick]\n");
      return 2;
    }
  }
  const Counts n = quick ? Counts{5, 50, 5, 50, 2} : Counts{300, 5000, 500, 5000, 40};
  std::printf("postern-bench%s: %s, %u cores; 100-byte plaintexts; records serialised in in-memory stores\n",
              quick ? " --quick (smoke run, figures not meaningful)" : "", cpu_model().c_str(),
              std::max(1u, std::thread::hardware_concurrency()));
  // Interleave the two implementations and keep the better median of two rounds each, so that
  // frequency changes or a busy neighbour do not favour one side.
  Results theirs = run_theirs(n), ours = run_ours(n);
  if (!quick) {
    Results theirs2 = run_theirs(n), ours2 = run_ours(n);
    auto best = [](std::vector<double>& a, std::vector<double>& b) {
      if (median(b) < median(a)) a.swap(b);
    };
    for (auto [x, y] : {std::pair{&theirs, &theirs2}, std::pair{&ours, &ours2}}) {
      best(x->setup, y->setup);
      best(x->encrypt, y->encrypt);
      best(x->decrypt, y->decrypt);
      best(x->ratchet, y->ratchet);
      best(x->group_encrypt, y->group_encrypt);
      best(x->group_decrypt, y->group_decrypt);
      best(x->fingerprint, y->fingerprint);
    }
  }
  struct Row {
    const char* name;
    std::vector<double> Results::*field;
    double target;
  };
  const Row rows[] = {
      {"session set-up (bundle + first encrypt + first decrypt)", &Results::setup, 3.0},
      {"encrypt in a chain", &Results::encrypt, 2.0},
      {"decrypt in a chain", &Results::decrypt, 2.0},
      {"decrypt with a DH ratchet step (ping-pong)", &Results::ratchet, 3.0},
      {"group encrypt", &Results::group_encrypt, 1.2},
      {"group decrypt", &Results::group_decrypt, 1.2},
      {"safety number (5200 iterations, both halves)", &Results::fingerprint, 0.0},
  };
  std::printf("\n%-56s %14s %14s %8s %8s\n", "operation (median)", "libsignal-c us", "postern us", "ratio",
              "target");
  int missed = 0;
  for (const Row& row : rows) {
    const double t = median(theirs.*(row.field));
    const double o = median(ours.*(row.field));
    const double ratio = o > 0 ? t / o : 0;
    char target[16] = "-";
    if (row.target > 0) std::snprintf(target, sizeof target, ">=%.1fx", row.target);
    const bool met = row.target == 0 || ratio >= row.target;
    if (!met) ++missed;
    std::printf("%-56s %14.2f %14.2f %7.2fx %8s%s\n", row.name, t, o, ratio, target, met ? "" : "  MISSED");
  }
  std::printf("\n%d target(s) missed%s\n", missed, quick ? " (quick run: not meaningful)" : "");
  return 0;
}
