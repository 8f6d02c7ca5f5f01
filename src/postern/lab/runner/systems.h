// The systems the lab compares (docs/censorship.md, "Systems"): Postern straight to its server,
// Postern with a relay, a WhatsApp-like service (a plain TLS API on a telling name), and Postern
// carried by the tools a user would otherwise pick: Shadowsocks, Trojan and Tor with an obfs4
// bridge (a private Tor network inside the lab). Each carries
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
  std::vector<std::string> names;      // the names alice's client asks DNS for (none: addresses only)
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

// ---- a private Tor network (Tor's TestingTorNetwork mode, docs/censorship.md "Systems") ----
// One directory authority and two relays on 10.20.0.16 (all exits), an obfs4 bridge on
// 10.20.0.14 that does not publish itself, and a Tor client in the user node that knows only the
// bridge. The texts are pure; Services runs them.
enum class TorRole { authority, relay, bridge, client };
struct TorNodeConfig {
  TorRole role = TorRole::relay;
  std::string nickname;       // 1-19 letters and digits
  std::string data_dir;
  std::string address;        // authority, relay, bridge: the address they listen on
  unsigned or_port = 0;       // authority, relay, bridge
  unsigned dir_port = 0;      // authority
  unsigned pt_port = 0;       // bridge: obfs4's listening port
  unsigned socks_port = 0;    // client: SOCKS on 127.0.0.1
  std::string dir_authority;  // the DirAuthority line every node shares (tor_dir_authority)
  std::string bridge;         // client: "obfs4 HOST:PORT FINGERPRINT cert=... iat-mode=N"
  std::string obfs4proxy;     // bridge, client: the obfs4proxy program
};
// A relay-like node (authority, relay, bridge) listening on ADDRESS:OR_PORT.
TorNodeConfig tor_node(TorRole role, const std::string& nickname, const std::string& data_dir,
                       const std::string& address, unsigned or_port, const std::string& dir_authority);
std::string torrc(const TorNodeConfig& c);
// "DirAuthority NICK orport=OR no-v2 v3ident=V3IDENT HOST:DIR FINGERPRINT".
std::string tor_dir_authority(const std::string& nickname, const std::string& address, unsigned or_port,
                              unsigned dir_port, const std::string& v3ident, const std::string& fingerprint);
// The v3 identity in an authority certificate (tor-gencert's output: the "fingerprint HEX" line).
std::optional<std::string> tor_certificate_fingerprint(const std::string& certificate);
// A relay's identity from its DataDirectory/fingerprint file ("NICK HEX").
std::optional<std::string> tor_fingerprint_file(const std::string& text);
// The transport arguments of the bridge's pt_state/obfs4_bridgeline.txt ("cert=... iat-mode=N"
// from its Bridge line); nothing when the file has no well-formed Bridge obfs4 line.
std::optional<std::string> obfs4_bridge_arguments(const std::string& bridgeline_file);

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
  // Before each profile: a system whose client keeps state between connections starts it afresh
  // (the Tor client, which would otherwise wait out its retry schedule for a bridge it found
  // blocked under the previous profile). Waits at most `wait` for it to be ready, and is quiet
  // when it is not: then the scenarios show what the censor does.
  void refresh(const SystemInfo& s, std::chrono::milliseconds wait);
  // After its scenarios: such a client stops, so that its background traffic (Tor fetches a
  // consensus every few seconds here) does not cross the censor while other systems are measured.
  void park(const SystemInfo& s);

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
  Status start_tor_network(std::string& why);
  Status start_tor_client(std::chrono::milliseconds wait, std::string& why);
  std::string random_password() const;

  const Topology& topo_;
  std::string run_;
  Binaries bins_;
  std::string share_;
  std::string invite_;     // Postern's server
  std::string wa_invite_;  // the WhatsApp-like server
  std::map<std::string, Account> alice_;
  std::string tor_dir_authority_;  // the private Tor network's DirAuthority line
  std::string tor_bridge_;         // its obfs4 bridge, as the client's Bridge line has it
  pid_t tor_client_ = -1;
  unsigned tor_client_starts_ = 0;
  Account bob_, bob_wa_;
};

}  // namespace postern::lab::runner
