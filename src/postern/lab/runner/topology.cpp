// Building and tearing down the lab's namespaces (see topology.h).
#include "postern/lab/runner/topology.h"

#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "postern/lab/errors.h"

namespace postern::lab::runner {
namespace {

constexpr std::array<Node, 5> kNodes{Node::user, Node::censor, Node::server, Node::relay, Node::recipient};

struct Abroad {
  Node node;
  const char* port;  // the bridge port's name in the censor node
  std::vector<std::string> addresses;
};

std::vector<Abroad> abroad() {
  return {
      {Node::server, "vsrv", {addr::server, addr::whatsapp, addr::shadowsocks, addr::obfs4, addr::trojan,
                              addr::tor, addr::baseline, addr::resolver}},
      {Node::relay, "vrly", {addr::relay}},
      {Node::recipient, "vrcp", {addr::recipient}},
  };
}

}  // namespace

const char* node_name(Node n) {
  switch (n) {
    case Node::user: return "user";
    case Node::censor: return "censor";
    case Node::server: return "server";
    case Node::relay: return "relay";
    case Node::recipient: return "recipient";
  }
  return "?";
}

bool parse_node(const std::string& text, Node& out) {
  for (Node n : kNodes) {
    if (text == node_name(n)) {
      out = n;
      return true;
    }
  }
  return false;
}

const std::vector<std::pair<std::string, std::string>>& lab_names() {
  static const std::vector<std::pair<std::string, std::string>> names{
      {"postern.lab", addr::server},
      {"chat.whatsapp.lab", addr::whatsapp},
      {"relay.lab", addr::relay},
      {"cover.lab", addr::baseline},
  };
  return names;
}

std::vector<std::string> prober_addresses() {
  std::vector<std::string> out;
  for (int i = 201; i <= 208; ++i) out.push_back("10.20.0." + std::to_string(i));
  return out;
}

std::string Topology::make_prefix(unsigned pid) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "pl%04x", pid & 0xffffu);
  return buf;
}

std::string Topology::ns(Node n) const { return prefix_ + "-" + node_name(n); }

std::vector<Argv> Topology::setup_commands() const {
  std::vector<Argv> c;
  const std::string censor = ns(Node::censor);
  const std::string user = ns(Node::user);
  for (Node n : kNodes) c.push_back({"ip", "netns", "add", ns(n)});
  for (Node n : kNodes) c.push_back({"ip", "-n", ns(n), "link", "set", "lo", "up"});
  // user <-> censor
  c.push_back({"ip", "-n", censor, "link", "add", "cu0", "type", "veth", "peer", "name", "eth0", "netns", user});
  c.push_back({"ip", "-n", censor, "addr", "add", std::string(addr::censor_user_side) + "/24", "dev", "cu0"});
  c.push_back({"ip", "-n", censor, "link", "set", "cu0", "up"});
  c.push_back({"ip", "-n", user, "addr", "add", std::string(addr::user) + "/24", "dev", "eth0"});
  c.push_back({"ip", "-n", user, "link", "set", "eth0", "up"});
  c.push_back({"ip", "-n", user, "route", "add", "default", "via", addr::censor_user_side});
  // censor's bridge to the abroad nodes
  c.push_back({"ip", "-n", censor, "link", "add", "br0", "type", "bridge"});
  c.push_back({"ip", "-n", censor, "addr", "add", std::string(addr::censor_abroad_side) + "/24", "dev", "br0"});
  for (const auto& p : prober_addresses()) c.push_back({"ip", "-n", censor, "addr", "add", p + "/24", "dev", "br0"});
  c.push_back({"ip", "-n", censor, "link", "set", "br0", "up"});
  for (const auto& a : abroad()) {
    const std::string node = ns(a.node);
    c.push_back({"ip", "-n", censor, "link", "add", a.port, "type", "veth", "peer", "name", "eth0", "netns", node});
    c.push_back({"ip", "-n", censor, "link", "set", a.port, "master", "br0"});
    c.push_back({"ip", "-n", censor, "link", "set", a.port, "up"});
    for (const auto& address : a.addresses)
      c.push_back({"ip", "-n", node, "addr", "add", address + "/24", "dev", "eth0"});
    c.push_back({"ip", "-n", node, "link", "set", "eth0", "up"});
    c.push_back({"ip", "-n", node, "route", "add", "default", "via", addr::censor_abroad_side});
  }
  c.push_back({"ip", "netns", "exec", censor, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"});
  return c;
}

std::vector<Argv> Topology::teardown_commands() const {
  std::vector<Argv> c;
  for (Node n : kNodes) c.push_back({"ip", "netns", "delete", ns(n)});
  return c;
}

std::vector<Topology::EtcFile> Topology::etc_files(bool user_hosts) const {
  std::string hosts = "127.0.0.1 localhost\n";
  for (const auto& [name, address] : lab_names()) hosts += address + " " + name + "\n";
  std::vector<EtcFile> out;
  for (Node n : kNodes) {
    const std::string dir = "/etc/netns/" + ns(n);
    out.push_back({dir + "/resolv.conf", std::string("nameserver ") + addr::resolver + "\n"});
    const bool abroad_node = n == Node::server || n == Node::relay || n == Node::recipient;
    if (abroad_node || (n == Node::user && user_hosts)) out.push_back({dir + "/hosts", hosts});
  }
  return out;
}

Status Topology::up(const std::string& run_dir, bool user_hosts, std::string& why) {
  built_ = true;
  std::error_code ec;
  for (const auto& f : etc_files(user_hosts)) {
    std::filesystem::create_directories(std::filesystem::path(f.path).parent_path(), ec);
    if (ec || !write_file(f.path, f.text).ok()) {
      why = "cannot write " + f.path;
      return Errc::io_error;
    }
  }
  for (const auto& argv : setup_commands()) {
    auto r = run("ip", argv, {}, run_dir, std::chrono::seconds(10));
    if (!r.ok() || r->exit_code != 0) {
      why = "";
      for (const auto& a : argv) why += (why.empty() ? "" : " ") + a;
      why += ": " + (r.ok() ? r->err : r.error().message());
      while (!why.empty() && why.back() == '\n') why.pop_back();
      return r.ok() ? make_error_code(Errc::failed) : r.error();
    }
  }
  return {};
}

void Topology::down(const std::string& run_dir) {
  if (!built_) return;
  built_ = false;
  for (const auto& argv : teardown_commands()) {
    (void)run("ip", argv, {}, run_dir, std::chrono::seconds(10), false);
  }
  std::error_code ec;
  for (Node n : kNodes) std::filesystem::remove_all("/etc/netns/" + ns(n), ec);
}

}  // namespace postern::lab::runner
