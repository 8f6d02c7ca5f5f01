// The systems the lab compares (docs/censorship.md, "Systems"): Postern straight to its server,
// Postern with a relay, a WhatsApp-like service (a plain TLS API on a telling name), and Postern
// carried by the tools a user would otherwise pick: Shadowsocks, Trojan and obfs4. Each carries
// the same payloads (Postern messages from alice in the user node to bob abroad); a system is
// only how alice's client reaches the server.
//
// This file holds the descriptions, the configuration texts (pure, unit-tested) and `Services`,
// which starts the servers abroad and the proxies in the user node and registers the accounts.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "postern/lab/runner/process.h"
#include "postern/lab/runner/topology.h"
#include "postern/util/result.h"

namespace postern::lab::runner {

struct Tool {
  std::string program;  // as searched in PATH
  std::string package;  // the Debian package that provides it
};

struct SystemInfo {
  std::string name;
  std::string description;
  std::vector<Tool> tools;             // beyond the lab's own programs
  bool quick = false;                  // part of --quick
  std::vector<std::string> addresses;  // the abroad addresses alice's bytes go to
};

const std::vector<SystemInfo>& systems();
const SystemInfo* find_system(const std::string& name);
// The tools every run needs (ip, nft, nginx, openssl, gnuplot).
const std::vector<Tool>& base_tools();

// Where alice's bytes went, from the address that carried them: "direct", "relay", "proxy".
std::string path_of_address(const std::string& address);

// ---- configuration texts ----
struct ServerConfig {
  std::string public_host;
  std::vector<std::string> public_addresses;  // -> addr= in the invite
  bool front = true;                          // false: the API straight over TLS
};
std::string server_toml(const ServerConfig& c);
std::string nginx_conf(const std::string& run_dir, const std::string& site_dir, const std::string& cert,
                       const std::string& key);
std::string ss_server_json(const std::string& password);
std::string ss_local_json(const std::string& password);
std::string trojan_server_json(const std::string& password, const std::string& cert, const std::string& key);
std::string trojan_client_json(const std::string& password, const std::string& ca_cert);

// ---- pluggable transports (Tor's PT specification, version 1) ----
// "SMETHOD obfs4 10.20.0.14:9443 ARGS:cert=AAA,iat-mode=0" -> {cert: AAA, iat-mode: 0} (the
// ARGS list is comma-separated with '\' escapes); nothing when the line is not an SMETHOD line.
std::optional<std::vector<std::pair<std::string, std::string>>> smethod_args(const std::string& line);
// "CMETHOD obfs4 socks5 127.0.0.1:40123" -> "127.0.0.1:40123".
std::optional<std::string> cmethod_address(const std::string& line);
// The SOCKS5 user name that carries PT arguments: "k=v;k=v" with ';', '=' and '\' in keys or
// values escaped by '\'.
std::string pt_socks_username(const std::vector<std::pair<std::string, std::string>>& args);
// RFC 3986 percent-encoding of everything but unreserved characters.
std::string percent_encode(const std::string& s);
// The --proxy URL for Postern's client: socks5://<args>:<NUL>@HOST:PORT, percent-encoded (the PT
// spec: arguments that fit in the user name leave the password a single NUL byte). Nothing when
// the user name passes 255 bytes (then it would have to be split, which Postern cannot express).
std::optional<std::string> pt_proxy_url(const std::vector<std::pair<std::string, std::string>>& args,
                                        const std::string& socks_address);

// An invite link with another HOST:PORT and without addr= parameters.
std::string invite_with_endpoint(const std::string& invite, const std::string& host, unsigned port);

// ---- the services ----
struct Binaries {
  std::string postern, server, relay, censor;  // empty: not found
};
Binaries find_binaries(const std::string& dir);

struct Account {
  std::string name;         // for the log
  Node node = Node::user;
  std::string profile_dir;
  std::string email;
  std::string proxy;        // --proxy URL, empty for none
};

class Services {
 public:
  Services(const Topology& topo, std::string run_dir, Binaries bins, std::string share_dir)
      : topo_(topo), run_(std::move(run_dir)), bins_(std::move(bins)), share_(std::move(share_dir)) {}

  // The baseline nginx (10.20.0.30:80 and :443, a self-signed certificate for cover.lab).
  Status start_baseline(std::string& why);
  // The lab resolver (postern-censor resolver) on 10.20.0.53:53.
  Status start_resolver(std::string& why);
  // Postern's server and bob; called before any system.
  Status start_postern(std::string& why);
  // What the system needs besides Postern's server, and alice's registration through it. A
  // missing tool: Errc::tool_missing with `why` = "<tool> missing".
  Status prepare(const SystemInfo& s, std::string& why);

  const Account& alice(const std::string& system) const { return alice_.at(system); }
  const Account& bob(const std::string& system) const;
  bool prepared(const std::string& system) const { return alice_.count(system) != 0; }

  // `postern --profile DIR --json [--proxy URL] args...` in the account's node.
  Result<Finished> client(const Account& a, const Argv& args, std::chrono::milliseconds timeout) const;
  // The same, started in the background (output in the run directory's client-logs).
  Result<Spawned> client_spawn(const Account& a, const Argv& args) const;

 private:
  Result<std::string> start_server(const std::string& name, const std::string& listen, const ServerConfig& c,
                                   std::string& why);
  Status register_account(Account& a, const std::string& invite, std::string& why);
  Status make_cert(const std::string& name, const std::string& cn, std::string& cert, std::string& key,
                   std::string& why);
  Result<Spawned> start(const std::string& name, Node node, const Argv& argv, const Env& env = {});
  std::string random_password() const;

  const Topology& topo_;
  std::string run_;
  Binaries bins_;
  std::string share_;
  std::string invite_;     // Postern's server
  std::string wa_invite_;  // the WhatsApp-like server
  std::map<std::string, Account> alice_;
  Account bob_, bob_wa_;
};

}  // namespace postern::lab::runner
