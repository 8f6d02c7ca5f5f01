// The censor's iptables rule lists: the argv vectors install/remove and the run-time actions
// would run, per settings (nothing is run here).
#include "postern/lab/net/firewall.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "postern/lab/errors.h"

namespace postern::lab::net {
namespace {

const FirewallConfig kConfig{"veth-user", 15001, 15053, "POSTERN-LAB"};

Argv ipt(std::vector<std::string> rest) {
  Argv v{"iptables", "-w"};
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

bool contains(const std::vector<Argv>& cmds, const Argv& a) { return std::find(cmds.begin(), cmds.end(), a) != cmds.end(); }

std::size_t index_of(const std::vector<Argv>& cmds, const Argv& a) {
  return static_cast<std::size_t>(std::find(cmds.begin(), cmds.end(), a) - cmds.begin());
}

TEST(LabFirewall, OpenProfileOnlyRedirects) {
  CensorSettings s;
  const auto cmds = install_commands(kConfig, s);
  const std::vector<Argv> expected{
      ipt({"-t", "raw", "-N", "POSTERN-LAB"}),
      ipt({"-t", "raw", "-A", "PREROUTING", "-i", "veth-user", "-j", "POSTERN-LAB"}),
      ipt({"-t", "nat", "-N", "POSTERN-LAB"}),
      ipt({"-t", "nat", "-A", "POSTERN-LAB", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"}),
      ipt({"-t", "nat", "-A", "POSTERN-LAB", "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", "15053"}),
      ipt({"-t", "nat", "-A", "PREROUTING", "-i", "veth-user", "-j", "POSTERN-LAB"}),
  };
  EXPECT_EQ(cmds, expected);
}

TEST(LabFirewall, IpBlocklistDropsEachKnownAddressInRaw) {
  CensorSettings s;
  s.on.ip_blocklist = true;
  s.known.known_addresses = {"10.20.0.30", "10.20.0.31"};
  const auto cmds = install_commands(kConfig, s);
  for (const auto& a : s.known.known_addresses) {
    const Argv rule = ipt({"-t", "raw", "-A", "POSTERN-LAB", "-d", a, "-j", "DROP"});
    ASSERT_TRUE(contains(cmds, rule)) << a;
    // The chain's rules are in place before the hook sends packets through it.
    EXPECT_LT(index_of(cmds, rule), index_of(cmds, ipt({"-t", "raw", "-A", "PREROUTING", "-i", "veth-user", "-j", "POSTERN-LAB"})));
  }
  // Without the module the addresses are not dropped.
  s.on.ip_blocklist = false;
  EXPECT_FALSE(contains(install_commands(kConfig, s), ipt({"-t", "raw", "-A", "POSTERN-LAB", "-d", "10.20.0.30", "-j", "DROP"})));
}

TEST(LabFirewall, PortAllowlistReturnsAllowedPortsAndDropsTheRest) {
  CensorSettings s;
  s.on.port_allowlist = true;
  s.allowed_ports = {53, 443};
  const auto cmds = install_commands(kConfig, s);
  for (const char* proto : {"tcp", "udp"}) {
    for (const char* port : {"53", "443"}) {
      EXPECT_TRUE(contains(cmds, ipt({"-t", "raw", "-A", "POSTERN-LAB-PORTS", "-p", proto, "--dport", port, "-j", "RETURN"})));
    }
    EXPECT_FALSE(contains(cmds, ipt({"-t", "raw", "-A", "POSTERN-LAB-PORTS", "-p", proto, "--dport", "80", "-j", "RETURN"})));
    EXPECT_TRUE(contains(cmds, ipt({"-t", "raw", "-A", "POSTERN-LAB", "-p", proto, "-j", "POSTERN-LAB-PORTS"})));
  }
  const Argv drop = ipt({"-t", "raw", "-A", "POSTERN-LAB-PORTS", "-j", "DROP"});
  ASSERT_TRUE(contains(cmds, drop));
  // The DROP comes after every RETURN.
  EXPECT_GT(index_of(cmds, drop),
            index_of(cmds, ipt({"-t", "raw", "-A", "POSTERN-LAB-PORTS", "-p", "udp", "--dport", "443", "-j", "RETURN"})));
}

TEST(LabFirewall, UdpBlackholeSparesDns) {
  CensorSettings s;
  s.on.udp_blackhole = true;
  const auto cmds = install_commands(kConfig, s);
  EXPECT_TRUE(contains(cmds, ipt({"-t", "raw", "-A", "POSTERN-LAB", "-p", "udp", "!", "--dport", "53", "-j", "DROP"})));
}

TEST(LabFirewall, RemoveUnhooksFlushesAndDeletesEveryChain) {
  const auto cmds = remove_commands(kConfig);
  for (const char* table : {"raw", "nat"}) {
    const auto unhook = index_of(cmds, ipt({"-t", table, "-D", "PREROUTING", "-i", "veth-user", "-j", "POSTERN-LAB"}));
    const auto flush = index_of(cmds, ipt({"-t", table, "-F", "POSTERN-LAB"}));
    const auto del = index_of(cmds, ipt({"-t", table, "-X", "POSTERN-LAB"}));
    ASSERT_LT(del, cmds.size()) << table;
    EXPECT_LT(unhook, flush);
    EXPECT_LT(flush, del);
  }
  EXPECT_TRUE(contains(cmds, ipt({"-t", "raw", "-X", "POSTERN-LAB-PORTS"})));
}

TEST(LabFirewall, RunTimeActions) {
  FirewallAction flow;
  flow.kind = FirewallAction::Kind::drop_flow;
  flow.key = {"10.10.0.2", "10.20.0.40", 8443};
  auto add = add_command(kConfig, flow);
  ASSERT_TRUE(add.ok());
  EXPECT_EQ(*add, ipt({"-t", "raw", "-I", "POSTERN-LAB", "-s", "10.10.0.2", "-d", "10.20.0.40", "-p", "tcp", "--dport",
                       "8443", "-j", "DROP"}));
  auto del = delete_command(kConfig, flow);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(*del, ipt({"-t", "raw", "-D", "POSTERN-LAB", "-s", "10.10.0.2", "-d", "10.20.0.40", "-p", "tcp", "--dport",
                       "8443", "-j", "DROP"}));

  FirewallAction addr;
  addr.kind = FirewallAction::Kind::drop_address;
  addr.key.server = "10.20.0.40";
  auto add2 = add_command(kConfig, addr);
  ASSERT_TRUE(add2.ok());
  EXPECT_EQ(*add2, ipt({"-t", "raw", "-I", "POSTERN-LAB", "-d", "10.20.0.40", "-j", "DROP"}));
}

TEST(LabFirewall, RefusesWhatIsNotAnAddress) {
  FirewallAction a;
  a.kind = FirewallAction::Kind::drop_address;
  a.key.server = "10.20.0.40; reboot";
  auto r = add_command(kConfig, a);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Errc::bad_config);
  a.kind = FirewallAction::Kind::drop_flow;
  a.key = {"example", "10.20.0.40", 443};
  EXPECT_FALSE(add_command(kConfig, a).ok());
  a.key = {"10.10.0.2", "10.20.0.40", 0};
  EXPECT_FALSE(add_command(kConfig, a).ok());
}

TEST(LabFirewall, RunCommandCapturesOutputAndStatus) {
  auto ok = run_command({"sh", "-c", "echo hello; exit 3"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->exit_code, 3);
  EXPECT_EQ(ok->output, "hello\n");
  auto missing = run_command({"postern-no-such-program-xyz"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), Errc::tool_missing);
}

}  // namespace
}  // namespace postern::lab::net
