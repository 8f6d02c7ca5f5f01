// The payload scenarios and what each cell records (see scenarios.h).
#include "postern/lab/runner/scenarios.h"

#include <openssl/evp.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "postern/lab/errors.h"

namespace postern::lab::runner {
namespace {

using steady = std::chrono::steady_clock;

std::uint32_t crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

void put32(Bytes& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

void chunk(Bytes& png, const char* type, const Bytes& data) {
  put32(png, static_cast<std::uint32_t>(data.size()));
  Bytes body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, crc32(body.data(), body.size()));
}

std::string events_since(const std::string& path, std::uintmax_t offset) {
  if (path.empty()) return {};
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::uintmax_t file_size(const std::string& path) {
  std::error_code ec;
  if (path.empty()) return 0;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

std::chrono::milliseconds left(steady::time_point deadline) {
  const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
  return d.count() > 0 ? d : std::chrono::milliseconds(0);
}

// Runs `postern receive` in the account's node (again when it ends) until `marker` shows in its
// output; `seen` is when it first did. The output file is polled, so the time is when the message
// was printed, not when the receive process ended.
bool receive_until(const Services& s, const Account& a, const std::string& marker, steady::time_point deadline,
                   steady::time_point& seen, std::string* output = nullptr) {
  while (left(deadline).count() > 0 && !interrupted()) {
    // --timeout 1: the client ends 1 s after the queue is drained (having acknowledged what it
    // printed); when the message is not there yet, the loop starts another one.
    auto p = s.client_spawn(a, {"receive", "--timeout", "1"});
    if (!p.ok()) return false;
    bool found = false;
    while (true) {
      if (read_file(p->out_path, 64 << 20).find(marker) != std::string::npos) {
        found = true;
        seen = steady::now();
        break;
      }
      if (!running(p->pid) || left(deadline).count() == 0 || interrupted()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (found) {
      // Let it acknowledge what it printed and end by itself (1 s after the queue drained), at most 10 s.
      const auto until = steady::now() + std::chrono::seconds(10);
      while (running(p->pid) && steady::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      stop(p->pid);
      if (output != nullptr) *output = read_file(p->out_path, 64u << 20);
      return true;
    }
    stop(p->pid);
    if (!sleep_for(std::chrono::milliseconds(200))) return false;
  }
  return false;
}

// The file bob's client saved for the attachment with this SHA-256 (from its JSON lines), hashed
// again here: the payload counts as delivered only when the bytes on bob's disk are the bytes sent.
bool saved_file_matches(const std::string& receive_output, const std::string& sha) {
  std::istringstream in(receive_output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(sha) == std::string::npos) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("path") || !j["path"].is_string()) continue;
    const std::string data = read_file(j["path"].get<std::string>(), 64u << 20);
    if (sha256_hex(ByteView(reinterpret_cast<const std::uint8_t*>(data.data()), data.size())) == sha) return true;
  }
  return false;
}

std::string unique_marker(const std::string& what) {
  static std::mt19937_64 rng{std::random_device{}()};
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return "lab-" + what + "-" + buf;
}

}  // namespace

std::vector<std::string> payloads(bool quick) {
  if (quick) return {"text", "reply", "picture"};
  return {"text", "reply", "picture", "video"};
}

Bytes make_png(std::uint32_t w, std::uint32_t h, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes raw;  // filter byte 0 + RGB per row
  raw.reserve(static_cast<std::size_t>(h) * (1 + 3 * static_cast<std::size_t>(w)));
  for (std::uint32_t y = 0; y < h; ++y) {
    raw.push_back(0);
    for (std::uint32_t x = 0; x < 3 * w; ++x) raw.push_back(static_cast<std::uint8_t>(rng()));
  }
  // zlib: header, stored blocks of at most 65535 bytes, Adler-32
  Bytes z{0x78, 0x01};
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<std::uint8_t>(n & 0xff));
    z.push_back(static_cast<std::uint8_t>(n >> 8));
    z.push_back(static_cast<std::uint8_t>(~n & 0xff));
    z.push_back(static_cast<std::uint8_t>((~n >> 8) & 0xff));
    z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos), raw.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < raw.size());
  std::uint32_t a = 1, b = 0;
  for (std::uint8_t c : raw) {
    a = (a + c) % 65521u;
    b = (b + a) % 65521u;
  }
  put32(z, (b << 16) | a);
  Bytes png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  put32(ihdr, w);
  put32(ihdr, h);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit, RGB, deflate, filter 0, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

std::string sha256_hex(ByteView data) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

Result<Media> make_media(const std::string& dir, bool quick) {
  Media m;
  std::random_device rd;
  const std::uint64_t seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  const Bytes png = make_png(590, 590, seed);  // 590*(1+3*590) bytes of pixels: about 1.04 MB
  m.picture = dir + "/picture.png";
  POSTERN_CHECK(write_file(m.picture, std::string(png.begin(), png.end())));
  m.picture_sha256 = sha256_hex(png);
  if (!quick) {
    std::mt19937_64 rng(seed + 1);
    Bytes video(20u * 1024 * 1024);
    for (auto& b : video) b = static_cast<std::uint8_t>(rng());
    m.video = dir + "/video.mp4";
    POSTERN_CHECK(write_file(m.video, std::string(video.begin(), video.end())));
    m.video_sha256 = sha256_hex(video);
  }
  return m;
}

std::vector<Argv> PathMeter::install_commands(const std::string& censor_ns) {
  const Argv nft{"ip", "netns", "exec", censor_ns, "nft"};
  auto cmd = [&](std::initializer_list<std::string> rest) {
    Argv a = nft;
    a.insert(a.end(), rest);
    return a;
  };
  std::vector<Argv> c;
  c.push_back(cmd({"add", "table", "ip", "postern_lab_meter"}));
  // Priority -400: before conntrack and any NAT the censor installs, so redirected flows count too.
  c.push_back(cmd({"add", "chain", "ip", "postern_lab_meter", "pre", "{ type filter hook prerouting priority -400 ; }"}));
  for (const char* a : {addr::server, addr::relay, addr::whatsapp, addr::shadowsocks, addr::obfs4, addr::trojan,
                        addr::recipient, addr::baseline, addr::resolver})
    c.push_back(cmd({"add", "rule", "ip", "postern_lab_meter", "pre", "iifname", "cu0", "ip", "daddr", a, "counter"}));
  return c;
}

Status PathMeter::install(const std::string& scratch) {
  for (const auto& argv : install_commands(ns_)) {
    auto r = run("nft", argv, {}, scratch, std::chrono::seconds(10));
    if (!r.ok() || r->exit_code != 0) return Errc::failed;
  }
  return {};
}

std::map<std::string, std::uint64_t> PathMeter::read(const std::string& scratch) const {
  auto r = run("nft", {"ip", "netns", "exec", ns_, "nft", "list", "table", "ip", "postern_lab_meter"}, {}, scratch,
               std::chrono::seconds(10));
  if (!r.ok() || r->exit_code != 0) return {};
  return parse(r->out);
}

std::map<std::string, std::uint64_t> PathMeter::parse(const std::string& listing) {
  std::map<std::string, std::uint64_t> out;
  std::istringstream in(listing);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string w, address;
    std::uint64_t bytes = 0;
    bool have_bytes = false;
    while (words >> w) {
      if (w == "daddr") words >> address;
      else if (w == "bytes") have_bytes = static_cast<bool>(words >> bytes);
    }
    if (!address.empty() && have_bytes) out[address] += bytes;
  }
  return out;
}

constexpr std::uint64_t kMinPathBytes = 1000;

std::string path_from(const std::map<std::string, std::uint64_t>& before,
                      const std::map<std::string, std::uint64_t>& after, const std::vector<std::string>& addresses) {
  std::string best;
  std::uint64_t most = 0;
  for (const auto& [address, bytes] : after) {
    // Only the system's own addresses: another system's client may talk in the background.
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) continue;
    const auto it = before.find(address);
    const std::uint64_t delta = bytes - (it == before.end() ? 0 : std::min(it->second, bytes));
    const std::string p = path_of_address(address);
    // A path carried at least a TLS handshake's worth; less is stray retransmissions of flows an
    // earlier step left behind (the meter counts before the censor's drops).
    if (!p.empty() && delta > most && delta >= kMinPathBytes) {
      most = delta;
      best = p;
    }
  }
  return best;
}

std::vector<std::string> flags_from_events(const std::string& jsonl, const std::vector<std::string>& addresses,
                                           const std::vector<std::string>& names) {
  std::vector<std::string> out;
  std::istringstream in(jsonl);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    const auto str = [&](const char* k) {
      const auto it = j.find(k);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string module = str("module"), action = str("action"), server = str("server"), client = str("client");
    if (module.empty() || action.empty() || action == "pass" || module == "flow") continue;
    const bool ours = std::find(addresses.begin(), addresses.end(), server) != addresses.end();
    // DNS events name what was asked ("name=chat.whatsapp.lab a=..."): alice's, for the system's names.
    bool alices_dns = false;
    if (module == "dns" && client == addr::user) {
      std::istringstream words(str("detail"));
      std::string w;
      while (words >> w)
        if (w.rfind("name=", 0) == 0 && std::find(names.begin(), names.end(), w.substr(5)) != names.end())
          alices_dns = true;
    }
    if (!ours && !alices_dns) continue;
    const std::string f = module + "/" + action;
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  return out;
}

std::uintmax_t events_offset(const std::string& events_path) { return file_size(events_path); }

std::vector<std::string> flags_after_steps(const std::string& events_path, std::uintmax_t offset,
                                           const SystemInfo& system, const std::vector<std::string>& seen) {
  std::vector<std::string> out;
  for (auto& f : flags_from_events(events_since(events_path, offset), system.addresses, system.names))
    if (std::find(seen.begin(), seen.end(), f) == seen.end()) out.push_back(std::move(f));
  return out;
}

std::uint16_t port_of_address(const std::string& address) {
  if (address == addr::shadowsocks) return 8388;
  if (address == addr::obfs4) return 9443;
  return 443;
}

std::vector<std::string> static_flags(const CensorSettings& settings, const SystemInfo& system) {
  std::vector<std::string> out;
  for (const auto& a : system.addresses) {
    const auto& known = settings.known.known_addresses;
    if (settings.on.ip_blocklist && std::find(known.begin(), known.end(), a) != known.end() &&
        std::find(out.begin(), out.end(), "ip-blocklist/drop") == out.end()) {
      out.emplace_back("ip-blocklist/drop");
    }
    const auto& ports = settings.allowed_ports;
    if (settings.on.port_allowlist && std::find(ports.begin(), ports.end(), port_of_address(a)) == ports.end() &&
        std::find(out.begin(), out.end(), "port-allowlist/drop") == out.end()) {
      out.emplace_back("port-allowlist/drop");
    }
  }
  return out;
}

std::vector<Cell> run_scenarios(const Services& s, const SystemInfo& system, const std::string& profile,
                                const Media& media, const PathMeter& meter, const ScenarioOptions& o) {
  std::vector<Cell> cells;
  const Account& alice = s.alice(system.name);
  const Account& bob = s.bob(system.name);
  for (const auto& payload : payloads(o.quick)) {
    Cell c{profile, system.name, payload};
    const auto events_at = file_size(o.events_path);
    const auto counters = meter.read(o.run_dir);
    const auto t0 = steady::now();
    const auto deadline = t0 + o.deadline;
    bool ok = false;
    steady::time_point seen = t0;
    // The receiver listens while the sender sends: the time to deliver runs from the send to the
    // receiver's client printing the message, whatever the sender's client does afterwards (a
    // client may deliver through its second path and still wait for the first one to give up).
    const Account& from = payload == "reply" ? bob : alice;
    const Account& to = payload == "reply" ? alice : bob;
    const bool file = payload == "picture" || payload == "video";
    const std::string& path = payload == "picture" ? media.picture : media.video;
    const std::string& sha = payload == "picture" ? media.picture_sha256 : media.video_sha256;
    const std::string marker = file ? sha : unique_marker(payload);
    std::string received;
    bool heard = false;
    std::thread listener([&] { heard = receive_until(s, to, marker, deadline, seen, &received); });
    const Argv what = file ? Argv{"send", "--to", to.email, "--file", path}
                           : Argv{"send", "--to", to.email, "--text", marker};
    auto r = s.client(from, what, left(deadline));
    listener.join();
    const bool sent = r.ok() && r->exit_code == 0;
    const std::string sender_trouble =
        !r.ok() || r->timed_out ? "still running at the deadline" : "exit code " + std::to_string(r->exit_code);
    if (!heard) {
      if (payload == "reply" && !sent) c.note = "bob's reply could not be sent (abroad: not the censor)";
      else if (!sent) c.note = r.ok() && r->timed_out ? "send timed out" : "send failed";
      else c.note = (payload == "reply" ? "alice" : "bob") + std::string(" did not receive it in time");
    } else if (file && !(ok = saved_file_matches(received, sha))) {
      c.note = "the file bob saved differs from the one sent";
    } else {
      ok = true;
      if (!sent) c.note = "delivered; the sender's client was " + sender_trouble;
    }
    c.status = ok ? Cell::Status::delivered : Cell::Status::blocked;
    if (ok) c.seconds = std::chrono::duration<double>(seen - t0).count();
    if (interrupted()) {
      c.status = Cell::Status::not_run;
      c.note = "interrupted";
    }
    c.path = path_from(counters, meter.read(o.run_dir), system.addresses);
    c.flagged = flags_from_events(events_since(o.events_path, events_at), system.addresses, system.names);
    if (c.status == Cell::Status::blocked && c.flagged.empty()) {
      // Nothing flagged during this step: a verdict from earlier in the system's turn (a block
      // that outlasts the connection it was made on, or one made while a client bootstrapped).
      c.flagged = flags_from_events(events_since(o.events_path, o.events_from), system.addresses, system.names);
      if (!c.flagged.empty()) c.note += (c.note.empty() ? "" : "; ") + std::string("flagged earlier in its turn");
    }
    cells.push_back(std::move(c));
    if (interrupted()) break;
  }
  return cells;
}

}  // namespace postern::lab::runner
