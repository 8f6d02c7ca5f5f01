// The systems compared and the services they need (see systems.h).
#include "postern/lab/runner/systems.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "postern/lab/errors.h"

namespace postern::lab::runner {
namespace {

constexpr const char* kPassword = "Lab-Secret1";  // the accounts' password (meets Postern's rules)
constexpr const char* kSsMethod = "chacha20-ietf-poly1305";
constexpr unsigned kSsPort = 8388;
constexpr unsigned kSsLocalPort = 1080;
constexpr unsigned kTrojanLocalPort = 1081;
constexpr unsigned kObfs4Port = 9443;
constexpr unsigned kTorSocksPort = 9050;
constexpr unsigned kTorBridgeOrPort = 9001;
constexpr unsigned kTorAuthorityOrPort = 5001;  // the relays take the next ports
constexpr unsigned kTorAuthorityDirPort = 7001;
constexpr int kTorRelays = 2;                    // besides the authority

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

const std::vector<SystemInfo>& systems() {
  static const std::vector<SystemInfo> list{
      {"postern-direct",
       "Postern's client straight to its server (10.20.0.10:443): TLS 1.3 behind an nginx-like front, the "
       "inner channel opened only with the invite's secret; the invite carries the address (addr=), so no DNS",
       {},
       true,
       {addr::server},
       {}},
      {"postern-relay",
       "the same client with a volunteer relay (10.20.0.11:443) added: it tries the direct path first and "
       "falls back to the relay by itself when the direct path fails",
       {},
       true,
       {addr::server, addr::relay},
       {}},
      {"whatsapp-like",
       "a second Postern server with the front switched off (plain TLS API, no camouflage, no relays) on "
       "10.20.0.12:443 under the telling name chat.whatsapp.lab (in DNS and the SNI), as a big messenger is",
       {},
       true,
       {addr::whatsapp},
       {"chat.whatsapp.lab"}},
      {"shadowsocks",
       "Postern's client through shadowsocks-libev (AEAD chacha20-ietf-poly1305, ss-server on 10.20.0.13:8388, "
       "ss-local as SOCKS5 on the user's 127.0.0.1:1080)",
       {{"ss-server", "shadowsocks-libev"}, {"ss-local", "shadowsocks-libev"}},
       true,
       {addr::shadowsocks},
       {}},
      {"trojan",
       "Postern's client through trojan (server on 10.20.0.15:443 with a self-signed certificate for cover.lab, "
       "falling back to the baseline nginx for anyone without the password; client as SOCKS5 on 127.0.0.1:1081)",
       {{"trojan", "trojan"}},
       false,
       {addr::trojan},
       {}},
      {"tor-obfs4",
       "Postern's client through Tor with an obfs4 bridge: a private Tor network abroad (one directory "
       "authority and two exit relays on 10.20.0.16, TestingTorNetwork), an unpublished obfs4 bridge on "
       "10.20.0.14:9443, and a Tor client in the user node that knows only the bridge (SOCKS on 127.0.0.1:9050); "
       "the exit connects to Postern's server",
       {{"tor", "tor"}, {"tor-gencert", "tor"}, {"obfs4proxy", "obfs4proxy"}},
       false,
       {addr::obfs4},
       {}},
  };
  return list;
}

const SystemInfo* find_system(const std::string& name) {
  for (const auto& s : systems())
    if (s.name == name) return &s;
  return nullptr;
}

const std::vector<Tool>& base_tools() {
  static const std::vector<Tool> tools{{"ip", "iproute2"},   {"ss", "iproute2"},       {"nft", "nftables"},
                                       {"nginx", "nginx"},   {"openssl", "openssl"},   {"gnuplot", "gnuplot-nox"}};
  return tools;
}

std::string path_of_address(const std::string& a) {
  if (a == addr::server || a == addr::whatsapp) return "direct";
  if (a == addr::relay) return "relay";
  if (a == addr::shadowsocks || a == addr::trojan || a == addr::obfs4) return "proxy";
  return "";
}

std::string server_toml(const ServerConfig& c) {
  std::string t = "# postern-lab: a test-grade server (cheap proof of work and password hashing)\n";
  t += "[server]\npublic_host = " + toml_string(c.public_host) + "\n";
  if (!c.public_addresses.empty()) {
    t += "public_addresses = [";
    for (std::size_t i = 0; i < c.public_addresses.size(); ++i) t += (i ? ", " : "") + toml_string(c.public_addresses[i]);
    t += "]\n";
  }
  t += "[pow]\ndifficulty = 8\n[password]\nopslimit = 1\nmemlimit = 8192\n";
  t += "[rate_limits]\n";
  for (const char* k : {"registration_per_address", "challenges_per_address", "login_per_account", "login_per_address",
                        "directory_per_account", "key_fetch_per_account"})
    t += std::string(k) + " = { capacity = 1000, refill_per_second = 100 }\n";
  t += "sends_per_account = { capacity = 100000, refill_per_second = 10000 }\n";
  if (!c.front) t += "[front]\nenabled = false\n";
  return t;
}

std::string nginx_conf(const std::string& run_dir, const std::string& site_dir, const std::string& cert,
                       const std::string& key) {
  const std::string d = run_dir + "/nginx";
  std::string t;
  t += "# postern-lab: the censor's baseline, a stock nginx serving the sample site\n";
  t += "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n";
  t += "pid " + d + "/nginx.pid;\nerror_log " + d + "/error.log;\n";
  t += "events { worker_connections 512; }\n";
  t += "http {\n";
  if (std::filesystem::exists("/etc/nginx/mime.types")) t += "  include /etc/nginx/mime.types;\n";
  t += "  default_type application/octet-stream;\n";
  t += "  access_log " + d + "/access.log;\n";
  for (const char* k : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    t += std::string("  ") + k + "_temp_path " + d + "/" + k + ";\n";
  t += "  server {\n";
  t += std::string("    listen ") + addr::baseline + ":80;\n";
  t += std::string("    listen ") + addr::baseline + ":443 ssl;\n";
  t += "    server_name cover.lab;\n";
  t += "    ssl_certificate " + cert + ";\n    ssl_certificate_key " + key + ";\n";
  t += "    root " + site_dir + ";\n    index index.html;\n";
  t += "  }\n}\n";
  return t;
}

std::string ss_server_json(const std::string& password) {
  nlohmann::ordered_json j{{"server", addr::shadowsocks}, {"server_port", kSsPort}, {"password", password},
                           {"method", kSsMethod},         {"timeout", 300},         {"mode", "tcp_only"}};
  return j.dump(2) + "\n";
}

std::string ss_local_json(const std::string& password) {
  nlohmann::ordered_json j{{"server", addr::shadowsocks}, {"server_port", kSsPort},  {"local_address", "127.0.0.1"},
                           {"local_port", kSsLocalPort},  {"password", password},    {"method", kSsMethod},
                           {"timeout", 300},              {"mode", "tcp_only"}};
  return j.dump(2) + "\n";
}

std::string trojan_server_json(const std::string& password, const std::string& cert, const std::string& key) {
  nlohmann::ordered_json j;
  j["run_type"] = "server";
  j["local_addr"] = addr::trojan;
  j["local_port"] = 443;
  j["remote_addr"] = addr::baseline;  // everyone without the password sees the baseline web site
  j["remote_port"] = 80;
  j["password"] = {password};
  j["log_level"] = 1;
  j["ssl"] = {{"cert", cert}, {"key", key}, {"key_password", ""}, {"prefer_server_cipher", true},
              {"alpn", {"http/1.1"}}, {"reuse_session", true}, {"session_ticket", false}, {"session_timeout", 600},
              {"plain_http_response", ""}, {"curves", ""}, {"dhparam", ""}};
  j["tcp"] = {{"prefer_ipv4", true}, {"no_delay", true}, {"keep_alive", true}, {"reuse_port", false},
              {"fast_open", false}, {"fast_open_qlen", 20}};
  return j.dump(2) + "\n";
}

std::string trojan_client_json(const std::string& password, const std::string& ca_cert) {
  nlohmann::ordered_json j;
  j["run_type"] = "client";
  j["local_addr"] = "127.0.0.1";
  j["local_port"] = kTrojanLocalPort;
  j["remote_addr"] = addr::trojan;
  j["remote_port"] = 443;
  j["password"] = {password};
  j["log_level"] = 1;
  // The server's self-signed certificate is the trust anchor, checked against the name cover.lab.
  j["ssl"] = {{"verify", true}, {"verify_hostname", true}, {"cert", ca_cert}, {"sni", "cover.lab"},
              {"alpn", {"h2", "http/1.1"}}, {"reuse_session", true}, {"session_ticket", false}, {"curves", ""}};
  j["tcp"] = {{"no_delay", true}, {"keep_alive", true}, {"reuse_port", false}, {"fast_open", false},
              {"fast_open_qlen", 20}};
  return j.dump(2) + "\n";
}

namespace {

bool is_hex40(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string upper(std::string s) {
  for (auto& c : s)
    if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

}  // namespace

std::string tor_dir_authority(const std::string& nickname, const std::string& address, unsigned or_port,
                              unsigned dir_port, const std::string& v3ident, const std::string& fingerprint) {
  return "DirAuthority " + nickname + " orport=" + std::to_string(or_port) + " no-v2 v3ident=" + v3ident + " " +
         address + ":" + std::to_string(dir_port) + " " + fingerprint;
}

TorNodeConfig tor_node(TorRole role, const std::string& nickname, const std::string& data_dir,
                       const std::string& address, unsigned or_port, const std::string& dir_authority) {
  TorNodeConfig c;
  c.role = role;
  c.nickname = nickname;
  c.data_dir = data_dir;
  c.address = address;
  c.or_port = or_port;
  c.dir_authority = dir_authority;
  return c;
}

std::string torrc(const TorNodeConfig& c) {
  std::string t = "# postern-lab: a node of the lab's private Tor network\n";
  // TestingTorNetwork: private addresses allowed, fast downloads. The voting below makes the
  // first consensus in about 20 s; every relay's flags are voted in at once (no reachability
  // tests, no bandwidth or uptime thresholds), as chutney's minimal networks do.
  t += "TestingTorNetwork 1\n";
  t += "DataDirectory " + c.data_dir + "\n";
  t += "RunAsDaemon 0\nLog notice stdout\nSafeLogging 1\nShutdownWaitLength 0\n";
  t += c.dir_authority + "\n";
  if (c.role != TorRole::client) {
    t += "Nickname " + c.nickname + "\n";
    t += "AssumeReachable 1\n";
    t += "Address " + c.address + "\n";
    t += "ORPort " + c.address + ":" + std::to_string(c.or_port) + "\n";
    t += "SocksPort 0\n";
  }
  switch (c.role) {
    case TorRole::authority:
      t += "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nContactInfo lab@postern.lab\n";
      t += "DirPort " + c.address + ":" + std::to_string(c.dir_port) + "\n";
      t += "TestingV3AuthInitialVotingInterval 10\nTestingV3AuthInitialVoteDelay 2\nTestingV3AuthInitialDistDelay 2\n";
      t += "V3AuthVotingInterval 10\nV3AuthVoteDelay 2\nV3AuthDistDelay 2\n";
      t += "TestingDirAuthVoteExit *\nTestingDirAuthVoteGuard *\nTestingDirAuthVoteHSDir *\n";
      t += "TestingMinExitFlagThreshold 0\n";
      [[fallthrough]];
    case TorRole::relay:
      // Every relay is an exit. The policy must accept all addresses: the summaries clients
      // choose exits by leave private ranges out, so "accept 10.20.0.0/24:*" would read as
      // "no exit" to them. The lab's namespaces have no route out of the lab.
      t += "ExitRelay 1\nExitPolicy accept *:*\n";
      break;
    case TorRole::bridge:
      // Not published anywhere: the user's client knows it from its Bridge line, as with a
      // bridge from bridges.torproject.org or a friend.
      t += "BridgeRelay 1\nPublishServerDescriptor 0\nExitPolicy reject *:*\n";
      t += "ServerTransportPlugin obfs4 exec " + c.obfs4proxy + "\n";
      t += "ServerTransportListenAddr obfs4 " + c.address + ":" + std::to_string(c.pt_port) + "\n";
      t += "ExtORPort auto\n";
      break;
    case TorRole::client:
      t += "SocksPort 127.0.0.1:" + std::to_string(c.socks_port) + "\n";
      t += "UseBridges 1\nBridge " + c.bridge + "\n";
      t += "ClientTransportPlugin obfs4 exec " + c.obfs4proxy + "\n";
      break;
  }
  return t;
}

std::optional<std::string> tor_certificate_fingerprint(const std::string& certificate) {
  std::istringstream in(certificate);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("fingerprint ", 0) != 0) continue;
    const std::string hex = trim(line.substr(12));
    if (is_hex40(hex)) return upper(hex);
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> tor_fingerprint_file(const std::string& text) {
  std::istringstream in(text);
  std::string nickname, hex, extra;
  if (!(in >> nickname >> hex) || (in >> extra) || !is_hex40(hex)) return std::nullopt;
  return upper(hex);
}

std::optional<std::string> obfs4_bridge_arguments(const std::string& bridgeline_file) {
  std::istringstream in(bridgeline_file);
  std::string line;
  std::optional<std::string> found;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string bridge, transport, address, fingerprint, word;
    if (!(words >> bridge >> transport >> address >> fingerprint) || bridge != "Bridge" || transport != "obfs4")
      continue;
    std::string cert, iat;
    while (words >> word) {
      if (word.rfind("cert=", 0) == 0) cert = word.substr(5);
      else if (word.rfind("iat-mode=", 0) == 0) iat = word.substr(9);
    }
    // cert: the bridge's node ID and public key, base64 without padding (70 characters).
    const bool cert_ok = !cert.empty() && cert.size() <= 128 &&
                         cert.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") ==
                             std::string::npos;
    const bool iat_ok = iat == "0" || iat == "1" || iat == "2";
    if (!cert_ok || !iat_ok) return std::nullopt;
    found = "cert=" + cert + " iat-mode=" + iat;
  }
  return found;
}

std::string invite_with_endpoint(const std::string& invite, const std::string& host, unsigned port) {
  const std::string scheme = "postern://";
  if (invite.rfind(scheme, 0) != 0) return invite;
  const auto q = invite.find('?');
  std::string authority = invite.substr(scheme.size(), q == std::string::npos ? std::string::npos : q - scheme.size());
  std::string prefix;
  if (const auto at = authority.find('@'); at != std::string::npos) prefix = authority.substr(0, at + 1);
  std::string out = scheme + prefix + host + ":" + std::to_string(port);
  if (q == std::string::npos) return out;
  std::istringstream params(invite.substr(q + 1));
  std::string p, kept;
  while (std::getline(params, p, '&')) {
    if (p.rfind("addr=", 0) == 0 || p.empty()) continue;
    kept += (kept.empty() ? "" : "&") + p;
  }
  return kept.empty() ? out : out + "?" + kept;
}

Binaries find_binaries(const std::string& dir) {
  auto pick = [&](const std::string& name) -> std::string {
    for (const std::string& c : {dir + "/apps/" + name + "/" + name, dir + "/" + name}) {
      if (::access(c.c_str(), X_OK) == 0) return c;
    }
    return {};
  };
  return {pick("postern"), pick("postern-server"), pick("postern-relay"), pick("postern-censor")};
}

// ---- Services ----

namespace {

// Polls `ss -Hltn` in the namespace until HOST:PORT listens (some programs print nothing).
Status wait_listening(const std::string& ns, const std::string& host_port, pid_t pid, const std::string& scratch,
                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto r = run("ss", in_namespace(ns, {"ss", "-Hltn"}), {}, scratch, std::chrono::seconds(5));
    if (r.ok() && r->out.find(" " + host_port + " ") != std::string::npos) return {};
    if (pid >= 0 && !running(pid)) return Errc::failed;
    if (std::chrono::steady_clock::now() >= deadline) return Errc::timeout;
    if (!sleep_for(std::chrono::milliseconds(100))) return Errc::failed;
  }
}

std::string tail_of(const std::string& path) {
  std::string s = read_file(path);
  if (s.size() > 400) s = s.substr(s.size() - 400);
  return trim(s);
}

}  // namespace

Result<Spawned> Services::start(const std::string& name, Node node, const Argv& argv, const Env& env) {
  return spawn(name, in_namespace(topo_.ns(node), argv), env, run_ + "/" + name + ".out", run_ + "/" + name + ".err");
}

std::string Services::random_password() const {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char b[12] = {};
  in.read(reinterpret_cast<char*>(b), sizeof b);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

Status Services::make_cert(const std::string& name, const std::string& cn, std::string& cert, std::string& key,
                           std::string& why) {
  cert = run_ + "/" + name + "-cert.pem";
  key = run_ + "/" + name + "-key.pem";
  auto r = run("openssl",
               {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + cn, "-addext",
                "subjectAltName=DNS:" + cn},
               {}, run_, std::chrono::seconds(20));
  if (!r.ok() || r->exit_code != 0) {
    why = "openssl could not make a certificate for " + cn;
    return Errc::failed;
  }
  return {};
}

Status Services::start_baseline(std::string& why) {
  std::error_code ec;
  for (const char* d : {"", "/client_body", "/proxy", "/fastcgi", "/uwsgi", "/scgi"})
    std::filesystem::create_directories(run_ + "/nginx" + d, ec);
  std::string cert, key;
  POSTERN_CHECK(make_cert("cover", "cover.lab", cert, key, why));
  const std::string conf = run_ + "/nginx/nginx.conf";
  POSTERN_CHECK(write_file(conf, nginx_conf(run_, share_ + "/site", cert, key)));
  auto p = start("nginx", Node::server, {"nginx", "-c", conf, "-e", run_ + "/nginx/error.log"});
  if (!p.ok()) {
    why = "cannot start nginx";
    return p.error();
  }
  auto w = wait_listening(topo_.ns(Node::server), std::string(addr::baseline) + ":443", p->pid, run_,
                          std::chrono::seconds(10));
  if (!w.ok()) why = "nginx did not start: " + tail_of(run_ + "/nginx/error.log") + tail_of(p->err_path);
  return w;
}

Status Services::start_resolver(std::string& why) {
  if (bins_.censor.empty()) {
    why = "postern-censor not built";
    return Errc::tool_missing;
  }
  Argv argv{bins_.censor, "resolver", "--listen", std::string(addr::resolver) + ":53"};
  for (const auto& [name, address] : lab_names()) {
    argv.push_back("--record");
    argv.push_back(name + "=" + address);
  }
  auto p = start("resolver", Node::server, argv);
  if (!p.ok()) {
    why = "cannot start the resolver";
    return p.error();
  }
  auto line = wait_for_line(p->out_path, "resolver ready", p->pid, std::chrono::seconds(10));
  if (!line.ok()) {
    why = "the lab resolver did not start: " + tail_of(p->err_path);
    return line.error();
  }
  return {};
}

Result<std::string> Services::start_server(const std::string& name, const std::string& listen, const ServerConfig& c,
                                           std::string& why) {
  const std::string dir = run_ + "/" + name;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  POSTERN_CHECK(write_file(dir + "/server.toml", server_toml(c)));
  auto p = start(name, Node::server,
                 {bins_.server, "--data", dir + "/data", "--listen", listen, "--admin-listen", "127.0.0.1:0",
                  "--config", dir + "/server.toml"});
  if (!p.ok()) {
    why = "cannot start " + name;
    return p.error();
  }
  auto line = wait_for_line(p->out_path, "listening on", p->pid, std::chrono::seconds(30));
  if (!line.ok()) {
    why = name + " did not start: " + tail_of(p->err_path);
    return line.error();
  }
  std::string invite = trim(read_file(dir + "/data/invite.txt"));
  if (invite.empty()) {
    why = name + " wrote no invite";
    return Errc::failed;
  }
  return invite;
}

namespace {
Argv client_argv(const std::string& postern, const Account& a, const Argv& args) {
  Argv argv{postern, "--profile", a.profile_dir, "--json"};
  if (!a.proxy.empty()) {
    argv.push_back("--proxy");
    argv.push_back(a.proxy);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}
}  // namespace

Result<Finished> Services::client(const Account& a, const Argv& args, std::chrono::milliseconds timeout) const {
  return run("postern-" + a.name, in_namespace(topo_.ns(a.node), client_argv(bins_.postern, a, args)), {},
             run_ + "/client-logs", timeout);
}

Result<Spawned> Services::client_spawn(const Account& a, const Argv& args) const {
  static unsigned counter = 0;
  const std::string base = run_ + "/client-logs/" + a.name + "-bg-" + std::to_string(counter++);
  return spawn("postern-" + a.name, in_namespace(topo_.ns(a.node), client_argv(bins_.postern, a, args)), {},
               base + ".out", base + ".err");
}

Status Services::register_account(Account& a, const std::string& invite, std::string& why) {
  std::error_code ec;
  std::filesystem::create_directories(run_ + "/client-logs", ec);
  auto j = client(a, {"join", invite}, std::chrono::seconds(60));
  if (!j.ok() || j->exit_code != 0) {
    why = a.name + ": join failed: " + (j.ok() ? trim(j->err) : j.error().message());
    return Errc::failed;
  }
  auto r = client(a, {"register", "--email", a.email, "--password", kPassword, "--birthdate", "1990-01-01",
                      "--accept-terms"},
                  std::chrono::seconds(120));
  if (!r.ok() || r->exit_code != 0) {
    why = a.name + ": register failed: " + (r.ok() ? trim(r->err) : r.error().message());
    return Errc::failed;
  }
  return {};
}

const Account& Services::bob(const std::string& system) const { return system == "whatsapp-like" ? bob_wa_ : bob_; }

Status Services::start_postern(std::string& why) {
  if (bins_.server.empty() || bins_.postern.empty()) {
    why = "postern-server or postern not built (build the targets postern-server and postern)";
    return Errc::tool_missing;
  }
  POSTERN_TRY(invite_, start_server("server-postern", std::string(addr::server) + ":443",
                                    ServerConfig{"postern.lab", {addr::server}, true}, why));
  POSTERN_CHECK(write_file(run_ + "/invite.txt", invite_ + "\n", 0600));
  bob_ = Account{"bob", Node::recipient, run_ + "/profiles/bob", "bob@postern.lab", ""};
  return register_account(bob_, invite_, why);
}

Status Services::start_tor_network(std::string& why) {
  const std::string dir = run_ + "/tor";
  const std::string auth = dir + "/auth";
  std::error_code ec;
  std::filesystem::create_directories(auth + "/keys", ec);
  // The authority's v3 keys (tor-gencert; an empty passphrase from /dev/null) and its relay
  // identity (tor --list-fingerprint writes the keys and the fingerprint file, then exits).
  const std::string dir_address = std::string(addr::tor) + ":" + std::to_string(kTorAuthorityDirPort);
  auto g = run("tor-gencert",
               {"tor-gencert", "--create-identity-key", "-m", "12", "-a", dir_address, "-i",
                auth + "/keys/authority_identity_key", "-s", auth + "/keys/authority_signing_key", "-c",
                auth + "/keys/authority_certificate", "--passphrase-fd", "0"},
               {}, run_, std::chrono::seconds(60));
  if (!g.ok() || g->exit_code != 0) {
    why = "tor-gencert failed: " + (g.ok() ? trim(g->err) : g.error().message());
    return Errc::failed;
  }
  auto f = run("tor-fingerprint",
               {"tor", "--list-fingerprint", "--quiet", "--orport", "1", "--dirserver",
                "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff", "--datadirectory", auth},
               {}, run_, std::chrono::seconds(60));
  const auto v3ident = tor_certificate_fingerprint(read_file(auth + "/keys/authority_certificate"));
  const auto identity = tor_fingerprint_file(read_file(auth + "/fingerprint"));
  if (!f.ok() || f->exit_code != 0 || !v3ident || !identity) {
    why = "cannot make the Tor authority's keys: " + (f.ok() ? trim(f->err) : f.error().message());
    return Errc::failed;
  }
  tor_dir_authority_ = tor_dir_authority("auth", addr::tor, kTorAuthorityOrPort, kTorAuthorityDirPort, *v3ident,
                                         *identity);
  const std::string obfs4proxy = find_program("obfs4proxy").value_or("obfs4proxy");
  auto start_node = [&](TorNodeConfig c) -> Status {
    std::filesystem::create_directories(c.data_dir, ec);
    const std::string file = c.data_dir + "/torrc";
    POSTERN_CHECK(write_file(file, torrc(c)));
    auto p = start("tor-" + c.nickname, Node::server, {"tor", "-f", file});
    if (!p.ok()) {
      why = "cannot start tor (" + c.nickname + ")";
      return p.error();
    }
    return {};
  };
  auto a = tor_node(TorRole::authority, "auth", auth, addr::tor, kTorAuthorityOrPort, tor_dir_authority_);
  a.dir_port = kTorAuthorityDirPort;
  POSTERN_CHECK(start_node(a));
  for (int i = 1; i <= kTorRelays; ++i) {
    const std::string nickname = "relay" + std::to_string(i);
    const auto r = tor_node(TorRole::relay, nickname, dir + "/" + nickname, addr::tor,
                            kTorAuthorityOrPort + static_cast<unsigned>(i), tor_dir_authority_);
    POSTERN_CHECK(start_node(r));
  }
  auto b = tor_node(TorRole::bridge, "bridge", dir + "/bridge", addr::obfs4, kTorBridgeOrPort, tor_dir_authority_);
  b.pt_port = kObfs4Port;
  b.obfs4proxy = obfs4proxy;
  POSTERN_CHECK(start_node(b));
  // The bridge is ready when it has a consensus and has built its own circuits (its log says
  // "Bootstrapped 100%"); by then obfs4proxy has written the bridge line.
  auto ready = wait_for_text(run_ + "/tor-bridge.out", "Bootstrapped 100%", -1, std::chrono::seconds(120));
  const auto fp = tor_fingerprint_file(read_file(b.data_dir + "/fingerprint"));
  const auto args = obfs4_bridge_arguments(read_file(b.data_dir + "/pt_state/obfs4_bridgeline.txt"));
  if (!ready.ok() || !fp || !args) {
    why = "the Tor network did not come up within 120 s: " + tail_of(run_ + "/tor-bridge.out");
    return Errc::timeout;
  }
  tor_bridge_ = "obfs4 " + std::string(addr::obfs4) + ":" + std::to_string(kObfs4Port) + " " + *fp + " " + *args;
  return {};
}

Status Services::start_tor_client(std::chrono::milliseconds wait, std::string& why) {
  if (tor_client_ >= 0) stop(tor_client_);
  tor_client_ = -1;
  TorNodeConfig c;
  c.role = TorRole::client;
  c.data_dir = run_ + "/tor/client";  // kept between starts: the cached consensus makes a restart quick
  c.socks_port = kTorSocksPort;
  c.dir_authority = tor_dir_authority_;
  c.bridge = tor_bridge_;
  c.obfs4proxy = find_program("obfs4proxy").value_or("obfs4proxy");
  std::error_code ec;
  std::filesystem::create_directories(c.data_dir, ec);
  POSTERN_CHECK(write_file(c.data_dir + "/torrc", torrc(c)));
  const std::string name = "tor-client-" + std::to_string(tor_client_starts_++);
  auto p = start(name, Node::user, {"tor", "-f", c.data_dir + "/torrc"});
  if (!p.ok()) {
    why = "cannot start the Tor client";
    return p.error();
  }
  tor_client_ = p->pid;
  auto ready = wait_for_text(p->out_path, "Bootstrapped 100%", p->pid, wait);
  if (!ready.ok()) {
    why = "the Tor client did not bootstrap through the bridge: " + tail_of(p->out_path);
    return ready.error();
  }
  return {};
}

void Services::park(const SystemInfo& s) {
  if (s.name != "tor-obfs4" || tor_client_ < 0) return;
  stop(tor_client_);
  tor_client_ = -1;
}

void Services::refresh(const SystemInfo& s, std::chrono::milliseconds wait) {
  if (s.name != "tor-obfs4" || !prepared(s.name)) return;
  std::string why;
  (void)start_tor_client(wait, why);  // not ready: the scenarios record what the censor does
}

Status Services::prepare(const SystemInfo& s, std::string& why) {
  for (const auto& t : s.tools) {
    if (!find_program(t.program)) {
      why = t.program + " missing (Debian package " + t.package + ")";
      return Errc::tool_missing;
    }
  }
  const std::string ns_server = topo_.ns(Node::server);
  const std::string ns_user = topo_.ns(Node::user);
  Account alice{"alice-" + s.name, Node::user, run_ + "/profiles/alice-" + s.name, "alice-" + s.name + "@postern.lab",
                ""};
  std::string invite = invite_;
  if (s.name == "postern-direct") {
    // nothing beyond the server
  } else if (s.name == "postern-relay") {
    if (bins_.relay.empty()) {
      why = "postern-relay not built";
      return Errc::tool_missing;
    }
    const std::string data = run_ + "/relay/data";
    std::error_code ec;
    std::filesystem::create_directories(run_ + "/relay", ec);
    auto p = start("relay", Node::relay,
                   {bins_.relay, "--listen", std::string(addr::relay) + ":443", "--public-host", addr::relay,
                    "--upstream", run_ + "/invite.txt", "--data", data});
    if (!p.ok()) return p.error();
    auto line = wait_for_line(p->out_path, "listening on", p->pid, std::chrono::seconds(30));
    if (!line.ok()) {
      why = "postern-relay did not start: " + tail_of(p->err_path);
      return line.error();
    }
    POSTERN_CHECK(register_account(alice, invite, why));
    auto r = client(alice, {"relays", "add", data + "/relay-link.txt"}, std::chrono::seconds(30));
    if (!r.ok() || r->exit_code != 0) {
      why = "relays add failed: " + (r.ok() ? trim(r->err) : r.error().message());
      return Errc::failed;
    }
    alice_[s.name] = alice;
    return {};
  } else if (s.name == "whatsapp-like") {
    // No addr=: the client asks DNS for chat.whatsapp.lab, as a big messenger's app does.
    POSTERN_TRY(wa_invite_, start_server("server-whatsapp", std::string(addr::whatsapp) + ":443",
                                         ServerConfig{"chat.whatsapp.lab", {}, false}, why));
    invite = wa_invite_;
    alice.email = "alice@whatsapp.lab";
    bob_wa_ = Account{"bob-whatsapp", Node::recipient, run_ + "/profiles/bob-whatsapp", "bob@whatsapp.lab", ""};
    POSTERN_CHECK(register_account(bob_wa_, wa_invite_, why));
  } else if (s.name == "shadowsocks") {
    const std::string pw = random_password();
    POSTERN_CHECK(write_file(run_ + "/ss-server.json", ss_server_json(pw), 0600));
    POSTERN_CHECK(write_file(run_ + "/ss-local.json", ss_local_json(pw), 0600));
    auto srv = start("ss-server", Node::server, {"ss-server", "-c", run_ + "/ss-server.json"});
    if (!srv.ok()) return srv.error();
    auto w = wait_listening(ns_server, std::string(addr::shadowsocks) + ":" + std::to_string(kSsPort), srv->pid, run_,
                            std::chrono::seconds(10));
    if (!w.ok()) {
      why = "ss-server did not start: " + tail_of(srv->err_path);
      return w;
    }
    auto loc = start("ss-local", Node::user, {"ss-local", "-c", run_ + "/ss-local.json"});
    if (!loc.ok()) return loc.error();
    w = wait_listening(ns_user, "127.0.0.1:" + std::to_string(kSsLocalPort), loc->pid, run_, std::chrono::seconds(10));
    if (!w.ok()) {
      why = "ss-local did not start: " + tail_of(loc->err_path);
      return w;
    }
    alice.proxy = "socks5://127.0.0.1:" + std::to_string(kSsLocalPort);
  } else if (s.name == "trojan") {
    std::string cert, key;
    POSTERN_CHECK(make_cert("trojan", "cover.lab", cert, key, why));
    const std::string pw = random_password();
    POSTERN_CHECK(write_file(run_ + "/trojan-server.json", trojan_server_json(pw, cert, key), 0600));
    POSTERN_CHECK(write_file(run_ + "/trojan-client.json", trojan_client_json(pw, cert), 0600));
    auto srv = start("trojan-server", Node::server, {"trojan", "-c", run_ + "/trojan-server.json"});
    if (!srv.ok()) return srv.error();
    auto w = wait_listening(ns_server, std::string(addr::trojan) + ":443", srv->pid, run_, std::chrono::seconds(10));
    if (!w.ok()) {
      why = "trojan server did not start: " + tail_of(srv->err_path);
      return w;
    }
    auto cli = start("trojan-client", Node::user, {"trojan", "-c", run_ + "/trojan-client.json"});
    if (!cli.ok()) return cli.error();
    w = wait_listening(ns_user, "127.0.0.1:" + std::to_string(kTrojanLocalPort), cli->pid, run_,
                       std::chrono::seconds(10));
    if (!w.ok()) {
      why = "trojan client did not start: " + tail_of(cli->err_path);
      return w;
    }
    alice.proxy = "socks5://127.0.0.1:" + std::to_string(kTrojanLocalPort);
  } else if (s.name == "tor-obfs4") {
    POSTERN_CHECK(start_tor_network(why));
    POSTERN_CHECK(start_tor_client(std::chrono::seconds(90), why));
    alice.proxy = "socks5://127.0.0.1:" + std::to_string(kTorSocksPort);
    // The exit connects to the server's address: no name to resolve abroad.
    invite = invite_with_endpoint(invite_, addr::server, 443);
  } else {
    why = "unknown system " + s.name;
    return Errc::bad_config;
  }
  POSTERN_CHECK(register_account(alice, invite, why));
  alice_[s.name] = alice;
  park(s);
  return {};
}

}  // namespace postern::lab::runner
