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
       {addr::server}},
      {"postern-relay",
       "the same client with a volunteer relay (10.20.0.11:443) added: it tries the direct path first and "
       "falls back to the relay by itself when the direct path fails",
       {},
       true,
       {addr::server, addr::relay}},
      {"whatsapp-like",
       "a second Postern server with the front switched off (plain TLS API, no camouflage, no relays) on "
       "10.20.0.12:443 under the telling name chat.whatsapp.lab (in DNS and the SNI), as a big messenger is",
       {},
       true,
       {addr::whatsapp}},
      {"shadowsocks",
       "Postern's client through shadowsocks-libev (AEAD chacha20-ietf-poly1305, ss-server on 10.20.0.13:8388, "
       "ss-local as SOCKS5 on the user's 127.0.0.1:1080)",
       {{"ss-server", "shadowsocks-libev"}, {"ss-local", "shadowsocks-libev"}},
       true,
       {addr::shadowsocks}},
      {"trojan",
       "Postern's client through trojan (server on 10.20.0.15:443 with a self-signed certificate for cover.lab, "
       "falling back to the baseline nginx for anyone without the password; client as SOCKS5 on 127.0.0.1:1081)",
       {{"trojan", "trojan"}},
       false,
       {addr::trojan}},
      {"obfs4",
       "Postern's client through obfs4proxy run as Tor's pluggable transport but without the Tor network: the "
       "client PT in the user node, the server PT (bridge) on 10.20.0.14:9443 forwarding to Postern's server. "
       "The censor sees the same obfs4 bytes between user and bridge as with Tor; the Tor circuits beyond the "
       "bridge are not built",
       {{"obfs4proxy", "obfs4proxy"}},
       false,
       {addr::obfs4}},
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

std::optional<std::vector<std::pair<std::string, std::string>>> smethod_args(const std::string& line) {
  std::istringstream in(line);
  std::string keyword, transport, address, rest;
  if (!(in >> keyword >> transport >> address) || keyword != "SMETHOD") return std::nullopt;
  std::vector<std::pair<std::string, std::string>> out;
  std::string option;
  while (in >> option) {
    if (option.rfind("ARGS:", 0) != 0) continue;
    const std::string list = option.substr(5);
    std::string key, value, *cur = &key;
    bool escaped = false;
    for (char c : list) {
      if (escaped) {
        *cur += c;
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '=' && cur == &key) {
        cur = &value;
      } else if (c == ',') {
        if (!key.empty()) out.emplace_back(key, value);
        key.clear();
        value.clear();
        cur = &key;
      } else {
        *cur += c;
      }
    }
    if (escaped) return std::nullopt;
    if (!key.empty()) out.emplace_back(key, value);
  }
  return out;
}

std::optional<std::string> cmethod_address(const std::string& line) {
  std::istringstream in(line);
  std::string keyword, transport, proto, address;
  if (!(in >> keyword >> transport >> proto >> address) || keyword != "CMETHOD" || proto != "socks5")
    return std::nullopt;
  return address;
}

std::string pt_socks_username(const std::vector<std::pair<std::string, std::string>>& args) {
  auto esc = [](const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == ';' || c == '=' || c == '\\') out += '\\';
      out += c;
    }
    return out;
  };
  std::string out;
  for (std::size_t i = 0; i < args.size(); ++i) out += (i ? ";" : "") + esc(args[i].first) + "=" + esc(args[i].second);
  return out;
}

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::optional<std::string> pt_proxy_url(const std::vector<std::pair<std::string, std::string>>& args,
                                        const std::string& socks_address) {
  const std::string user = pt_socks_username(args);
  if (user.empty() || user.size() > 255) return std::nullopt;
  return "socks5://" + percent_encode(user) + ":%00@" + socks_address;
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
  } else if (s.name == "obfs4") {
    std::error_code ec;
    std::filesystem::create_directories(run_ + "/obfs4-server", ec);
    std::filesystem::create_directories(run_ + "/obfs4-client", ec);
    const std::string bind = std::string(addr::obfs4) + ":" + std::to_string(kObfs4Port);
    auto srv = start("obfs4-server", Node::server, {"obfs4proxy"},
                     {{"TOR_PT_MANAGED_TRANSPORT_VER", "1"},
                      {"TOR_PT_STATE_LOCATION", run_ + "/obfs4-server"},
                      {"TOR_PT_SERVER_TRANSPORTS", "obfs4"},
                      {"TOR_PT_SERVER_BINDADDR", "obfs4-" + bind},
                      {"TOR_PT_ORPORT", std::string(addr::server) + ":443"}});
    if (!srv.ok()) return srv.error();
    auto sline = wait_for_line(srv->out_path, "SMETHOD obfs4 ", srv->pid, std::chrono::seconds(15));
    if (!sline.ok()) {
      why = "the obfs4 server PT did not start: " + tail_of(srv->out_path) + " " + tail_of(srv->err_path);
      return sline.error();
    }
    const auto args = smethod_args(*sline);
    auto cli = start("obfs4-client", Node::user, {"obfs4proxy"},
                     {{"TOR_PT_MANAGED_TRANSPORT_VER", "1"},
                      {"TOR_PT_STATE_LOCATION", run_ + "/obfs4-client"},
                      {"TOR_PT_CLIENT_TRANSPORTS", "obfs4"}});
    if (!cli.ok()) return cli.error();
    auto cline = wait_for_line(cli->out_path, "CMETHOD obfs4 ", cli->pid, std::chrono::seconds(15));
    if (!cline.ok()) {
      why = "the obfs4 client PT did not start: " + tail_of(cli->out_path) + " " + tail_of(cli->err_path);
      return cline.error();
    }
    const auto socks = cmethod_address(*cline);
    if (!args || !socks) {
      why = "cannot read the obfs4 PT lines";
      return Errc::failed;
    }
    const auto url = pt_proxy_url(*args, *socks);
    if (!url) {
      why = "the obfs4 arguments do not fit a SOCKS5 user name";
      return Errc::failed;
    }
    alice.proxy = *url;
    invite = invite_with_endpoint(invite_, addr::obfs4, kObfs4Port);
  } else {
    why = "unknown system " + s.name;
    return Errc::bad_config;
  }
  POSTERN_CHECK(register_account(alice, invite, why));
  alice_[s.name] = alice;
  return {};
}

}  // namespace postern::lab::runner
