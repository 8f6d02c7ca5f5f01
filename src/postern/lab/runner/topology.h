// The lab's small internet (docs/censorship.md, "The lab"): five network namespaces,
//
//   user 10.10.1.2 --veth-- [cu0 10.10.1.1  censor  br0 10.20.0.1] --bridge-- server, relay, recipient
//
// The censor routes between the in-country user and the abroad nodes (ip_forward on), so every
// byte the user sends abroad crosses it; postern-censor intercepts on cu0. The abroad nodes share
// one bridge and talk to each other without the censor (the abroad internet is not censored).
// Names are "<p>-<node>" with <p> = "pl" + 4 hex digits of the PID, short enough that no
// interface name passes 15 characters (the veths are created directly inside the namespaces, so
// two labs never collide in the root namespace).
//
// The commands are plain argv vectors (unit-tested without root); up() and down() run them.
#pragma once

#include <string>
#include <vector>

#include "postern/lab/runner/process.h"
#include "postern/util/result.h"

namespace postern::lab::runner {

namespace addr {
inline constexpr const char* user = "10.10.1.2";
inline constexpr const char* censor_user_side = "10.10.1.1";
inline constexpr const char* censor_abroad_side = "10.20.0.1";
inline constexpr const char* server = "10.20.0.10";      // Postern's server
inline constexpr const char* relay = "10.20.0.11";       // a Postern relay
inline constexpr const char* whatsapp = "10.20.0.12";    // the WhatsApp-like service
inline constexpr const char* shadowsocks = "10.20.0.13";
inline constexpr const char* obfs4 = "10.20.0.14";       // the obfs4 bridge
inline constexpr const char* trojan = "10.20.0.15";
inline constexpr const char* tor = "10.20.0.16";         // the private Tor network's relays
inline constexpr const char* recipient = "10.20.0.20";
inline constexpr const char* baseline = "10.20.0.30";    // stock nginx, the censor's baseline
inline constexpr const char* resolver = "10.20.0.53";
}  // namespace addr

enum class Node { user, censor, server, relay, recipient };
const char* node_name(Node n);
// Parses "user", "censor", ... ; false for anything else.
bool parse_node(const std::string& text, Node& out);

// The lab names the resolver answers (name, address).
const std::vector<std::pair<std::string, std::string>>& lab_names();
// The prober addresses on br0 (10.20.0.201 - .208).
std::vector<std::string> prober_addresses();

class Topology {
 public:
  // prefix: "pl" + 4 hex digits (make_prefix()).
  explicit Topology(std::string prefix) : prefix_(std::move(prefix)) {}
  static std::string make_prefix(unsigned pid);

  const std::string& prefix() const { return prefix_; }
  std::string ns(Node n) const;  // "<p>-user", ...

  // Every command that builds the lab, in order.
  std::vector<Argv> setup_commands() const;
  // Teardown: the namespaces (deleting one deletes its veths); errors are ignored.
  std::vector<Argv> teardown_commands() const;
  // /etc/netns/<ns>/ files: resolv.conf for every node, hosts with the lab names for the abroad
  // nodes (the abroad internet resolves without the censor) and, when `user_hosts`, for the user
  // too (only when there is no lab resolver: --no-censor without postern-censor).
  struct EtcFile {
    std::string path, text;
  };
  std::vector<EtcFile> etc_files(bool user_hosts) const;

  // Runs the setup (scratch output in run_dir); on failure `why` names the failing command.
  Status up(const std::string& run_dir, bool user_hosts, std::string& why);
  // Runs the teardown and removes /etc/netns/<p>-*; safe to call twice.
  void down(const std::string& run_dir);

 private:
  std::string prefix_;
  bool built_ = false;
};

}  // namespace postern::lab::runner
