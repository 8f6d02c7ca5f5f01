// See firewall.h. The chains are ours alone: install hooks them into PREROUTING, remove_all
// unhooks, flushes and deletes them, so a crashed run is cleaned up by the next install.
#include "postern/lab/net/firewall.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "postern/lab/errors.h"

namespace postern::lab::net {

namespace {

constexpr std::size_t kMaxOutput = 64 * 1024;

std::string ports_chain(const FirewallConfig& c) { return c.chain + "-PORTS"; }

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

Argv ipt(std::initializer_list<std::string> table_and_rest) {
  Argv v{"iptables", "-w"};
  v.insert(v.end(), table_and_rest.begin(), table_and_rest.end());
  return v;
}

// The match of a run-time rule (without the command and the chain).
Result<Argv> action_match(const FirewallAction& a) {
  if (!is_ipv4(a.key.server)) return Errc::bad_config;
  if (a.kind == FirewallAction::Kind::drop_address) return Argv{"-d", a.key.server, "-j", "DROP"};
  if (!is_ipv4(a.key.client) || a.key.port == 0) return Errc::bad_config;
  return Argv{"-s", a.key.client, "-d", a.key.server, "-p", "tcp", "--dport", std::to_string(a.key.port), "-j", "DROP"};
}

Result<Argv> action_command(const FirewallConfig& c, const FirewallAction& a, const char* op) {
  POSTERN_TRY(Argv match, action_match(a));
  Argv v = ipt({"-t", "raw", op, c.chain});
  v.insert(v.end(), match.begin(), match.end());
  return v;
}

}  // namespace

std::vector<Argv> install_commands(const FirewallConfig& c, const CensorSettings& s) {
  const std::string& ch = c.chain;
  const std::string& dev = c.user_if;
  std::vector<Argv> out;
  // raw: the drops, before connection tracking and NAT.
  out.push_back(ipt({"-t", "raw", "-N", ch}));
  if (s.on.ip_blocklist) {
    for (const auto& addr : s.known.known_addresses) out.push_back(ipt({"-t", "raw", "-A", ch, "-d", addr, "-j", "DROP"}));
  }
  if (s.on.udp_blackhole) {
    out.push_back(ipt({"-t", "raw", "-A", ch, "-p", "udp", "!", "--dport", "53", "-j", "DROP"}));
  }
  if (s.on.port_allowlist) {
    // A sub-chain: RETURN for each allowed port, DROP for the rest (multiport takes 15 at most).
    const std::string pc = ports_chain(c);
    out.push_back(ipt({"-t", "raw", "-N", pc}));
    for (const char* proto : {"tcp", "udp"}) {
      for (auto port : s.allowed_ports) {
        out.push_back(ipt({"-t", "raw", "-A", pc, "-p", proto, "--dport", std::to_string(port), "-j", "RETURN"}));
      }
    }
    out.push_back(ipt({"-t", "raw", "-A", pc, "-j", "DROP"}));
    out.push_back(ipt({"-t", "raw", "-A", ch, "-p", "tcp", "-j", pc}));
    out.push_back(ipt({"-t", "raw", "-A", ch, "-p", "udp", "-j", pc}));
  }
  out.push_back(ipt({"-t", "raw", "-A", "PREROUTING", "-i", dev, "-j", ch}));
  // nat: everything TCP to the middlebox, DNS to the injector.
  out.push_back(ipt({"-t", "nat", "-N", ch}));
  out.push_back(ipt({"-t", "nat", "-A", ch, "-p", "tcp", "-j", "REDIRECT", "--to-ports", std::to_string(c.listen_port)}));
  out.push_back(ipt({"-t", "nat", "-A", ch, "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports",
                     std::to_string(c.dns_port)}));
  out.push_back(ipt({"-t", "nat", "-A", "PREROUTING", "-i", dev, "-j", ch}));
  return out;
}

std::vector<Argv> remove_commands(const FirewallConfig& c) {
  const std::string& ch = c.chain;
  const std::string pc = ports_chain(c);
  return {
      ipt({"-t", "nat", "-D", "PREROUTING", "-i", c.user_if, "-j", ch}),
      ipt({"-t", "nat", "-F", ch}),
      ipt({"-t", "nat", "-X", ch}),
      ipt({"-t", "raw", "-D", "PREROUTING", "-i", c.user_if, "-j", ch}),
      ipt({"-t", "raw", "-F", ch}),
      ipt({"-t", "raw", "-X", ch}),
      ipt({"-t", "raw", "-F", pc}),
      ipt({"-t", "raw", "-X", pc}),
  };
}

Result<Argv> add_command(const FirewallConfig& c, const FirewallAction& a) { return action_command(c, a, "-I"); }
Result<Argv> delete_command(const FirewallConfig& c, const FirewallAction& a) { return action_command(c, a, "-D"); }

std::optional<std::string> find_program(const std::string& name) {
  auto executable = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) return executable(name) ? std::optional(name) : std::nullopt;
  std::string dirs = "/usr/sbin:/sbin:/usr/bin:/bin";
  if (const char* path = std::getenv("PATH"); path != nullptr) dirs += ":" + std::string(path);
  std::string_view rest = dirs;
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = std::string(dir) + "/" + name;
    if (executable(candidate)) return candidate;
  }
  return std::nullopt;
}

Result<CommandOutcome> run_command(const Argv& argv) {
  if (argv.empty()) return Errc::bad_config;
  const auto program = find_program(argv[0]);
  if (!program) return Errc::tool_missing;
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));  // execv does not write them
  args.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Errc::io_error;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Errc::io_error;
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::execv(program->c_str(), args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  CommandOutcome out;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fds[0], buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.output.size() < kMaxOutput) {
      out.output.append(buf.data(), std::min(static_cast<std::size_t>(n), kMaxOutput - out.output.size()));
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Errc::io_error;
  }
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return out;
}

Status Firewall::run(const Argv& argv) {
  POSTERN_TRY(CommandOutcome r, run_command(argv));
  if (r.exit_code != 0) {
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
    while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r')) r.output.pop_back();
    last_error_ = line + ": exit " + std::to_string(r.exit_code) + ": " + r.output;
    return Errc::failed;
  }
  return {};
}

Status Firewall::install(const CensorSettings& s) {
  clear();  // leftovers of a run that did not clean up
  installed_ = true;
  for (const auto& cmd : install_commands(config_, s)) {
    if (auto st = run(cmd); !st) {
      const std::string why = last_error_;
      remove_all();
      last_error_ = why;
      return st;
    }
  }
  return {};
}

Status Firewall::add(const FirewallAction& a) {
  POSTERN_TRY(Argv cmd, add_command(config_, a));
  return run(cmd);
}

Status Firewall::remove(const FirewallAction& a) {
  POSTERN_TRY(Argv cmd, delete_command(config_, a));
  return run(cmd);
}

void Firewall::remove_all() {
  if (!installed_) return;
  clear();
}

void Firewall::clear() {
  for (const auto& cmd : remove_commands(config_)) {
    (void)run_command(cmd);  // a missing rule or chain is what we want
  }
  installed_ = false;
}

}  // namespace postern::lab::net
