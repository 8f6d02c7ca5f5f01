// The censor's packet filter (docs/censorship.md): iptables rules in the censor's namespace.
// Everything lives in chains of our own (POSTERN-LAB in the raw and nat tables, plus
// POSTERN-LAB-PORTS for the port allow-list) hooked from PREROUTING for packets arriving on the
// user's interface, so that removing the hooks and the chains removes every rule we added and
// nothing else.
//   raw: drops before NAT (so a dropped SYN is a connect timeout for the client): the IP
//        blocklist, the port allow-list, the UDP black hole, and the run-time drops the Censor
//        asks for (a 3-tuple, an address).
//   nat: TCP -> REDIRECT to the middlebox's port, UDP/53 -> REDIRECT to the DNS injector's port.
// The rule lists are plain argv vectors (unit-tested without running anything); run_command runs
// one with fork/exec, no shell.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "postern/lab/censor.h"
#include "postern/lab/profile.h"
#include "postern/util/result.h"

namespace postern::lab::net {

using Argv = std::vector<std::string>;

struct FirewallConfig {
  std::string user_if;              // the interface towards the in-country users
  std::uint16_t listen_port = 15001;  // the middlebox
  std::uint16_t dns_port = 15053;     // the DNS injector
  std::string chain = "POSTERN-LAB";  // POSTERN-LAB-PORTS is derived from it
};

// The commands that install the standing rules for `s`, in order (argv[0] is "iptables").
std::vector<Argv> install_commands(const FirewallConfig& c, const CensorSettings& s);
// The commands that remove every hook and chain install_commands made (and the run-time rules in
// them); each may fail harmlessly when its rule or chain is not there.
std::vector<Argv> remove_commands(const FirewallConfig& c);
// A run-time rule of the Censor (drop_flow: -s client -d server -p tcp --dport port; drop_address:
// -d server), to add and to delete again. Errc::bad_config when an address is not an IPv4 literal.
Result<Argv> add_command(const FirewallConfig& c, const FirewallAction& a);
Result<Argv> delete_command(const FirewallConfig& c, const FirewallAction& a);

// Where a program is: /usr/sbin, /sbin, /usr/bin, /bin, then $PATH. nullopt when absent.
std::optional<std::string> find_program(const std::string& name);

struct CommandOutcome {
  int exit_code = 0;    // the exit status, or 128 + signal
  std::string output;   // stdout and stderr together (first 64 KiB)
};
// Runs argv (argv[0] looked up with find_program) with fork/exec and waits. Errc::tool_missing
// when the program is not found, Errc::io_error when fork/pipe fails.
Result<CommandOutcome> run_command(const Argv& argv);

// The run-time half of the firewall, as CensorRuntime uses it: from its own firewall thread, one
// call at a time (the unit tests give a fake that records the calls and their order).
class RuntimeRules {
 public:
  virtual ~RuntimeRules() = default;
  virtual Status add(const FirewallAction& a) = 0;
  virtual Status remove(const FirewallAction& a) = 0;
  // Why the last failed add or remove failed, for the log.
  virtual const std::string& last_error() const noexcept = 0;
};

// The rules of one censor process. Not thread-safe: install and remove_all run before and after
// the CensorRuntime's firewall thread uses add and remove (CensorRuntime::stop joins it).
class Firewall final : public RuntimeRules {
 public:
  explicit Firewall(FirewallConfig c) : config_(std::move(c)) {}
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;
  ~Firewall() override { remove_all(); }

  // Clears leftovers of an earlier run, then installs. On failure removes what it added;
  // Errc::failed (an iptables command exited non-zero, see last_error()) or run_command's errors.
  Status install(const CensorSettings& s);
  Status add(const FirewallAction& a) override;
  Status remove(const FirewallAction& a) override;
  // Removes every hook, chain and rule after an install; idempotent.
  void remove_all();
  const std::string& last_error() const noexcept override { return last_error_; }

 private:
  Status run(const Argv& argv);
  void clear();
  FirewallConfig config_;
  bool installed_ = false;
  std::string last_error_;
};

}  // namespace postern::lab::net
