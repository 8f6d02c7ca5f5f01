// The lab's namespaces as argv lists (no root needed to check them).
#include "postern/lab/runner/topology.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace postern::lab::runner {
namespace {

bool has(const std::vector<Argv>& cmds, const Argv& want) {
  return std::find(cmds.begin(), cmds.end(), want) != cmds.end();
}

TEST(LabTopology, PrefixIsShort) {
  EXPECT_EQ(Topology::make_prefix(0x1234), "pl1234");
  EXPECT_EQ(Topology::make_prefix(0x12abcd), "plabcd");
  Topology t(Topology::make_prefix(0xffff));
  EXPECT_EQ(t.ns(Node::recipient), "plffff-recipient");
}

TEST(LabTopology, SetupCommands) {
  Topology t("pl00aa");
  const auto c = t.setup_commands();
  EXPECT_EQ(c.front(), (Argv{"ip", "netns", "add", "pl00aa-user"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-censor", "link", "add", "cu0", "type", "veth", "peer", "name", "eth0",
                      "netns", "pl00aa-user"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-censor", "addr", "add", "10.10.1.1/24", "dev", "cu0"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-user", "route", "add", "default", "via", "10.10.1.1"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-censor", "addr", "add", "10.20.0.1/24", "dev", "br0"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-censor", "addr", "add", "10.20.0.201/24", "dev", "br0"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-censor", "addr", "add", "10.20.0.208/24", "dev", "br0"}));
  EXPECT_FALSE(has(c, {"ip", "-n", "pl00aa-censor", "addr", "add", "10.20.0.209/24", "dev", "br0"}));
  for (const char* a : {"10.20.0.10/24", "10.20.0.12/24", "10.20.0.13/24", "10.20.0.14/24", "10.20.0.15/24", "10.20.0.16/24",
                        "10.20.0.30/24", "10.20.0.53/24"})
    EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-server", "addr", "add", a, "dev", "eth0"})) << a;
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-relay", "addr", "add", "10.20.0.11/24", "dev", "eth0"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-recipient", "addr", "add", "10.20.0.20/24", "dev", "eth0"}));
  EXPECT_TRUE(has(c, {"ip", "-n", "pl00aa-recipient", "route", "add", "default", "via", "10.20.0.1"}));
  EXPECT_EQ(c.back(), (Argv{"ip", "netns", "exec", "pl00aa-censor", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}));
  // every interface name fits IFNAMSIZ (15 characters)
  for (const auto& cmd : c) {
    for (std::size_t i = 0; i + 1 < cmd.size(); ++i) {
      if (cmd[i] == "dev" || cmd[i] == "name" || (cmd[i] == "add" && i >= 3 && cmd[i - 1] == "link")) {
        EXPECT_LE(cmd[i + 1].size(), 15u) << cmd[i + 1];
      }
    }
  }
}

TEST(LabTopology, TeardownAndEtc) {
  Topology t("pl00aa");
  const auto d = t.teardown_commands();
  ASSERT_EQ(d.size(), 5u);
  EXPECT_EQ(d[1], (Argv{"ip", "netns", "delete", "pl00aa-censor"}));
  const auto files = t.etc_files(false);
  bool user_resolv = false, user_hosts = false, server_hosts = false;
  for (const auto& f : files) {
    if (f.path == "/etc/netns/pl00aa-user/resolv.conf") user_resolv = f.text == "nameserver 10.20.0.53\n";
    if (f.path == "/etc/netns/pl00aa-user/hosts") user_hosts = true;
    if (f.path == "/etc/netns/pl00aa-server/hosts")
      server_hosts = f.text.find("10.20.0.12 chat.whatsapp.lab\n") != std::string::npos;
  }
  EXPECT_TRUE(user_resolv);
  EXPECT_FALSE(user_hosts);  // the user resolves through the censor
  EXPECT_TRUE(server_hosts);
  bool hosts_now = false;
  for (const auto& f : t.etc_files(true)) hosts_now |= f.path == "/etc/netns/pl00aa-user/hosts";
  EXPECT_TRUE(hosts_now);
}

TEST(LabTopology, Nodes) {
  Node n{};
  EXPECT_TRUE(parse_node("relay", n));
  EXPECT_EQ(n, Node::relay);
  EXPECT_FALSE(parse_node("router", n));
  EXPECT_EQ(in_namespace("ns1", {"ss", "-ltn"}), (Argv{"ip", "netns", "exec", "ns1", "ss", "-ltn"}));
  EXPECT_EQ(in_namespace("", {"ss"}), (Argv{"ss"}));
}

}  // namespace
}  // namespace postern::lab::runner
