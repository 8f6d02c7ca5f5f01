// postern-clientbench: the client end to end on loopback against a real postern-server process
// (docs/benchmarks.md, "Client"):
//   a. message latency, sender's send() call to the recipient's receive event, p50 and p99
//      (two profiles in this process, each with its own TLS link; the recipient is connected);
//   b. attachment encrypt+upload throughput (send --file of a random file, MB/s) against the raw
//      AES-256-CBC + HMAC-SHA256 speed of this machine measured in the same run with OpenSSL
//      (target: at least 70 %);
//   c. a group of N members (default 256): creation, first message (sender-key distribution),
//      a later message, removal of one member; one sampled member checks that it decrypts.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench_server.h"
#include "postern/client/attachment_cipher.h"
#include "postern/client/messenger.h"
#include "postern/client/net/https_link.h"
#include "postern/crypto/random.h"
#include "postern/util/clock.h"

namespace {

using namespace postern;
using namespace postern::client;
using postern::bench::Clock;
using postern::bench::seconds_since;

constexpr const char* kPassword = "Bench1pass";

std::string server_config() {
  std::string text =
      "[server]\nio_threads = 2\nworker_threads = 2\n[pow]\ndifficulty = 8\n[password]\nopslimit = 1\nmemlimit = 8192\n"
      "[rate_limits]\n";
  for (const char* key : {"registration_per_address", "challenges_per_address", "login_per_account", "login_per_address",
                          "sends_per_account", "directory_per_account", "key_fetch_per_account"})
    text += std::string(key) + " = { capacity = 1000000000, refill_per_second = 1000000000 }\n";
  text += "[attachments]\nbytes_per_account = { capacity = 100000000000, refill_per_second = 100000000000 }\n";
  return text;
}

template <class T>
T must(Outcome<T> o, const char* what) {
  if (!o.ok()) throw std::runtime_error(std::string(what) + ": " + o.failure().message);
  return std::move(o).value();
}

struct Profile {
  std::unique_ptr<Messenger> m;
};

std::unique_ptr<Messenger> make_profile(const std::string& root, const std::string& name, const std::string& invite,
                                        crypto::Rng& rng, const postern::Clock& clock) {
  MessengerConfig config;
  config.profile_dir = root + "/" + name;
  config.device_name = name;
  config.link_factory = [](const Invite& i) -> Result<std::unique_ptr<ServerLink>> {
    return std::unique_ptr<ServerLink>(std::make_unique<net::HttpsLink>(i));
  };
  auto m = must(Messenger::open(std::move(config), rng, clock), "open profile");
  must(m->join(invite), "join");
  must(m->register_account(RegisterForm{name + "@bench.example", kPassword, "1990-01-01", true}, {}), "register");
  return m;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Raw AES-256-CBC + HMAC-SHA256 over `bytes` in 1 MiB pieces, OpenSSL only: MB/s.
double raw_crypto_mbps(std::size_t bytes) {
  std::vector<unsigned char> in(1 << 20, 0x5a), out((1 << 20) + 32);
  unsigned char key[32] = {1}, iv[16] = {2}, mac_key[32] = {3};
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, key, iv);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* mctx = EVP_MAC_CTX_new(mac);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", const_cast<char*>("SHA256"), 0), OSSL_PARAM_construct_end()};
  EVP_MAC_init(mctx, mac_key, sizeof mac_key, params);
  const auto start = Clock::now();
  for (std::size_t done = 0; done < bytes; done += in.size()) {
    int n = 0;
    EVP_EncryptUpdate(ctx, out.data(), &n, in.data(), static_cast<int>(in.size()));
    EVP_MAC_update(mctx, out.data(), static_cast<std::size_t>(n));
  }
  unsigned char tag[32];
  std::size_t tag_len = 0;
  EVP_MAC_final(mctx, tag, &tag_len, sizeof tag);
  const double s = seconds_since(start);
  EVP_MAC_CTX_free(mctx);
  EVP_MAC_free(mac);
  EVP_CIPHER_CTX_free(ctx);
  return static_cast<double>(bytes) / 1e6 / s;
}

struct Options {
  bool quick = false;
  std::string server;
  std::size_t messages = 300;
  std::size_t file_mb = 256;
  std::size_t group = 256;
};

int run(const Options& o) {
  postern::bench::ServerProcess server;
  server.start(postern::bench::find_server(o.server), server_config());
  const std::string invite = server.invite();
  char tmpl[] = "/tmp/postern-clientbench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
  const std::string root = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{root};
  crypto::SystemRng rng;
  SystemClock clock;

  std::printf("postern-clientbench: client end to end on loopback, postern-server pid %d\n\n", server.pid);
  auto alice = make_profile(root, "alice", invite, rng, clock);
  auto bob = make_profile(root, "bob", invite, rng, clock);

  // ---- a. latency ----
  std::mutex mu;
  std::map<std::string, Clock::time_point> arrived;
  std::atomic<bool> stop{false};
  std::thread receiver([&] {
    ReceiveOptions options;
    options.idle_timeout = std::chrono::milliseconds(-1);
    options.stop = &stop;
    auto r = bob->receive(options, [&](const Event& e) {
      if (e.kind != Event::Kind::message) return;
      std::lock_guard lock(mu);
      arrived[e.message.text] = Clock::now();
    });
    if (!r.ok()) std::fprintf(stderr, "receive: %s\n", r.failure().message.c_str());
  });
  must(alice->send_text(Target{"bob@bench.example", ""}, "warm-up"), "send");  // sessions, contacts
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::vector<double> latencies;
  for (std::size_t i = 0; i < o.messages; ++i) {
    const std::string text = "message " + std::to_string(i);
    const auto sent = Clock::now();
    must(alice->send_text(Target{"bob@bench.example", ""}, text), "send");
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mu);
        const auto it = arrived.find(text);
        if (it != arrived.end()) {
          latencies.push_back(std::chrono::duration<double, std::milli>(it->second - sent).count());
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  stop = true;
  receiver.join();
  std::printf("a. message latency, send() to the recipient's event (%zu messages, one at a time)\n", o.messages);
  std::printf("   delivered %zu of %zu   p50 %.2f ms   p99 %.2f ms   max %.2f ms\n\n", latencies.size(), o.messages,
              percentile(latencies, 0.5), percentile(latencies, 0.99), percentile(latencies, 1.0));

  // ---- b. attachment throughput ----
  const std::size_t bytes = o.file_mb * 1000 * 1000;
  const std::string file = root + "/payload.bin";
  {
    std::ofstream out(file, std::ios::binary);
    std::vector<std::uint8_t> chunk(1 << 20);
    for (std::size_t done = 0; done < bytes; done += chunk.size()) {
      rng.fill(chunk);
      out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(std::min(chunk.size(), bytes - done)));
    }
  }
  const double raw = raw_crypto_mbps(bytes);
  // The client's own part alone: read the file, encrypt, MAC and digest it (no network).
  double reader_mbps = 0;
  {
    auto secrets = AttachmentSecrets::generate(rng);
    auto reader = EncryptedFileReader::open(file, secrets);
    if (!reader.ok()) throw std::runtime_error("open reader");
    std::vector<std::uint8_t> piece(256 * 1024);
    const auto r0 = Clock::now();
    while (true) {
      auto n = reader->read(piece);
      if (!n.ok() || *n == 0) break;
    }
    reader_mbps = static_cast<double>(bytes) / 1e6 / seconds_since(r0);
  }
  const auto t0 = Clock::now();
  must(alice->send_file(Target{"bob@bench.example", ""}, file, "", {}), "send file");
  const double upload_s = seconds_since(t0);
  const double upload = static_cast<double>(bytes) / 1e6 / upload_s;
  std::printf("b. attachment encrypt+upload, %zu MB random file (sniff, encrypt, TLS, server fdatasync)\n", o.file_mb);
  std::printf("   raw AES-256-CBC + HMAC-SHA256 (OpenSSL, this machine): %.0f MB/s\n", raw);
  std::printf("   the client's file encryption alone (read, AES-CBC, HMAC, SHA-256 digest): %.0f MB/s\n", reader_mbps);
  std::printf("   postern send --file: %.0f MB/s (%.2f s)   ratio %.2f   target >= 0.70: %s\n\n", upload, upload_s, upload / raw,
              upload / raw >= 0.70 ? "met" : "MISSED");

  // ---- c. group ----
  std::printf("c. group of %zu members\n", o.group);
  std::vector<std::string> members;
  std::unique_ptr<Messenger> sample;
  const auto setup = Clock::now();
  for (std::size_t i = 0; i + 1 < o.group; ++i) {
    const std::string name = "member" + std::to_string(i);
    auto m = make_profile(root, name, invite, rng, clock);
    if (i == 0) sample = std::move(m);
    members.push_back(name + "@bench.example");
  }
  std::printf("   setup: %zu accounts registered with keys in %.1f s\n", o.group - 1, seconds_since(setup));
  auto t = Clock::now();
  auto group = must(alice->create_group("bench", members), "create group");
  const double create_s = seconds_since(t);
  t = Clock::now();
  must(alice->send_text(Target{"", group.id}, "first"), "group send");
  const double first_s = seconds_since(t);
  t = Clock::now();
  must(alice->send_text(Target{"", group.id}, "second"), "group send");
  const double second_s = seconds_since(t);
  t = Clock::now();
  must(alice->remove_members(group.id, {members.back()}), "remove");
  const double remove_s = seconds_since(t);
  t = Clock::now();
  must(alice->send_text(Target{"", group.id}, "after removal"), "group send");
  const double after_s = seconds_since(t);
  std::vector<std::string> got;
  ReceiveOptions once;
  once.idle_timeout = std::chrono::milliseconds(0);
  must(sample->receive(once, [&](const Event& e) {
         if (e.kind == Event::Kind::message) got.push_back(e.message.text);
       }),
       "member receive");
  const bool ok = got == std::vector<std::string>{"first", "second", "after removal"};
  std::printf("   create (update to %zu members, sessions from bundles): %.2f s\n", o.group - 1, create_s);
  std::printf("   first message (sender key to each member, then one ciphertext): %.2f s\n", first_s);
  std::printf("   later message (one encryption, %zu sends): %.3f s  = %.2f ms per member\n", o.group - 1, second_s,
              second_s * 1000 / static_cast<double>(o.group - 1));
  std::printf("   remove one member (update + key rotation): %.2f s; next message (new key to %zu members): %.2f s\n", remove_s,
              o.group - 2, after_s);
  std::printf("   a sampled member decrypted all three: %s\n", ok ? "yes" : "NO");
  return ok && latencies.size() == o.messages ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"postern-clientbench: the client end to end against postern-server on loopback"};
  Options o;
  app.add_flag("--quick", o.quick, "small sizes (CI smoke run)");
  app.add_option("--server", o.server, "postern-server binary (default: next to this build)");
  app.add_option("--messages", o.messages, "latency samples");
  app.add_option("--file-mb", o.file_mb, "attachment size in MB");
  app.add_option("--group", o.group, "group members (including the sender)");
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    o.messages = 30;
    o.file_mb = 16;
    o.group = 256;  // the group size, also in the CI smoke run (about 10 s)
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postern-clientbench: %s\n", e.what());
    return 1;
  }
}
