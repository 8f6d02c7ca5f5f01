// The systems' configuration texts (Postern, nginx, Shadowsocks, Trojan, the private Tor network)
// and the scenario helpers (PNG, counters, events).
#include "postern/lab/runner/systems.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "postern/lab/runner/scenarios.h"

namespace postern::lab::runner {
namespace {

TEST(LabSystems, ListAndQuickSet) {
  std::vector<std::string> quick;
  for (const auto& s : systems())
    if (s.quick) quick.push_back(s.name);
  EXPECT_EQ(quick, (std::vector<std::string>{"postern-direct", "postern-relay", "whatsapp-like", "shadowsocks"}));
  ASSERT_NE(find_system("tor-obfs4"), nullptr);
  EXPECT_EQ(find_system("tor-obfs4")->addresses, std::vector<std::string>{"10.20.0.14"});  // the bridge alone
  EXPECT_EQ(find_system("obfs4"), nullptr);
  EXPECT_EQ(find_system("nope"), nullptr);
  EXPECT_EQ(path_of_address("10.20.0.11"), "relay");
  EXPECT_EQ(path_of_address("10.20.0.13"), "proxy");
  EXPECT_EQ(path_of_address("10.20.0.12"), "direct");
  EXPECT_EQ(path_of_address("10.20.0.30"), "");
}

TEST(LabSystems, ServerToml) {
  const std::string t = server_toml({"postern.lab", {"10.20.0.10"}, true});
  EXPECT_NE(t.find("[server]\npublic_host = \"postern.lab\"\npublic_addresses = [\"10.20.0.10\"]\n"), std::string::npos) << t;
  EXPECT_NE(t.find("[pow]\ndifficulty = 8\n[password]\nopslimit = 1\nmemlimit = 8192\n"), std::string::npos);
  EXPECT_EQ(t.find("[front]"), std::string::npos);
  const std::string wa = server_toml({"chat.whatsapp.lab", {}, false});
  EXPECT_EQ(wa.find("public_addresses"), std::string::npos);
  EXPECT_NE(wa.find("[front]\nenabled = false\n"), std::string::npos);
}

TEST(LabSystems, ProxyConfigs) {
  auto ss = nlohmann::json::parse(ss_server_json("pw1"));
  EXPECT_EQ(ss["server"], "10.20.0.13");
  EXPECT_EQ(ss["server_port"], 8388);
  EXPECT_EQ(ss["method"], "chacha20-ietf-poly1305");
  EXPECT_EQ(ss["password"], "pw1");
  auto local = nlohmann::json::parse(ss_local_json("pw1"));
  EXPECT_EQ(local["local_address"], "127.0.0.1");
  EXPECT_EQ(local["local_port"], 1080);
  auto ts = nlohmann::json::parse(trojan_server_json("pw2", "/c.pem", "/k.pem"));
  EXPECT_EQ(ts["run_type"], "server");
  EXPECT_EQ(ts["local_addr"], "10.20.0.15");
  EXPECT_EQ(ts["remote_addr"], "10.20.0.30");  // the fallback: the baseline nginx
  EXPECT_EQ(ts["password"], nlohmann::json({"pw2"}));
  EXPECT_EQ(ts["ssl"]["cert"], "/c.pem");
  auto tc = nlohmann::json::parse(trojan_client_json("pw2", "/c.pem"));
  EXPECT_EQ(tc["local_port"], 1081);
  EXPECT_EQ(tc["ssl"]["sni"], "cover.lab");
  EXPECT_EQ(tc["ssl"]["verify"], true);
  const std::string ng = nginx_conf("/r", "/site", "/c.pem", "/k.pem");
  EXPECT_NE(ng.find("listen 10.20.0.30:443 ssl;"), std::string::npos);
  EXPECT_NE(ng.find("listen 10.20.0.30:80;"), std::string::npos);
  EXPECT_NE(ng.find("root /site;"), std::string::npos);
  EXPECT_NE(ng.find("daemon off;"), std::string::npos);
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(LabSystems, TorrcForEachRole) {
  const std::string da = tor_dir_authority("auth", "10.20.0.16", 5001, 7001, std::string(40, 'A'), std::string(40, 'B'));
  EXPECT_EQ(da, "DirAuthority auth orport=5001 no-v2 v3ident=" + std::string(40, 'A') + " 10.20.0.16:7001 " +
                    std::string(40, 'B'));

  auto a = tor_node(TorRole::authority, "auth", "/r/tor/auth", "10.20.0.16", 5001, da);
  a.dir_port = 7001;
  const std::string at = torrc(a);
  for (const char* l : {"TestingTorNetwork 1", "DataDirectory /r/tor/auth", "Nickname auth", "AssumeReachable 1",
                        "ORPort 10.20.0.16:5001", "DirPort 10.20.0.16:7001", "AuthoritativeDirectory 1",
                        "V3AuthoritativeDirectory 1", "V3AuthVotingInterval 10", "TestingDirAuthVoteExit *",
                        "TestingDirAuthVoteGuard *", "ExitRelay 1", "ExitPolicy accept *:*", "SocksPort 0",
                        "Log notice stdout", "RunAsDaemon 0"})
    EXPECT_TRUE(has_line(at, l)) << l << "\n" << at;
  EXPECT_TRUE(has_line(at, da));

  const auto r = tor_node(TorRole::relay, "relay1", "/r/tor/relay1", "10.20.0.16", 5002, da);
  const std::string rt = torrc(r);
  EXPECT_TRUE(has_line(rt, "ORPort 10.20.0.16:5002"));
  EXPECT_TRUE(has_line(rt, "ExitPolicy accept *:*"));
  EXPECT_FALSE(has_line(rt, "AuthoritativeDirectory 1"));
  EXPECT_EQ(rt.find("DirPort"), std::string::npos);

  auto b = tor_node(TorRole::bridge, "bridge", "/r/tor/bridge", "10.20.0.14", 9001, da);
  b.pt_port = 9443;
  b.obfs4proxy = "/usr/bin/obfs4proxy";
  const std::string bt = torrc(b);
  for (const char* l : {"BridgeRelay 1", "PublishServerDescriptor 0", "ExitPolicy reject *:*",
                        "ServerTransportPlugin obfs4 exec /usr/bin/obfs4proxy",
                        "ServerTransportListenAddr obfs4 10.20.0.14:9443", "ExtORPort auto", "ORPort 10.20.0.14:9001"})
    EXPECT_TRUE(has_line(bt, l)) << l << "\n" << bt;
  EXPECT_EQ(bt.find("ExitRelay 1"), std::string::npos);

  TorNodeConfig c;
  c.role = TorRole::client;
  c.data_dir = "/r/tor/client";
  c.socks_port = 9050;
  c.bridge = "obfs4 10.20.0.14:9443 " + std::string(40, 'C') + " cert=xyz iat-mode=0";
  c.obfs4proxy = "/usr/bin/obfs4proxy";
  c.dir_authority = da;
  const std::string ct = torrc(c);
  for (const char* l : {"SocksPort 127.0.0.1:9050", "UseBridges 1", "ClientTransportPlugin obfs4 exec /usr/bin/obfs4proxy",
                        "TestingTorNetwork 1"})
    EXPECT_TRUE(has_line(ct, l)) << l << "\n" << ct;
  EXPECT_TRUE(has_line(ct, "Bridge " + c.bridge));
  EXPECT_EQ(ct.find("ORPort"), std::string::npos);  // a client relays nothing
  EXPECT_EQ(ct.find("Nickname"), std::string::npos);
}

TEST(LabSystems, TorKeyFiles) {
  const std::string hex = "7BE7EC30F5C04B8E01AC0AFDC284BF51DA4A0A8C";
  EXPECT_EQ(tor_certificate_fingerprint("dir-key-certificate-version 3\ndir-address 10.20.0.16:7001\nfingerprint " +
                                        hex + "\ndir-key-published 2026-11-30 02:00:00\n"),
            hex);
  EXPECT_EQ(tor_certificate_fingerprint("fingerprint 7be7ec30f5c04b8e01ac0afdc284bf51da4a0a8c\n"), hex);
  EXPECT_FALSE(tor_certificate_fingerprint("fingerprint XYZ\n").has_value());
  EXPECT_FALSE(tor_certificate_fingerprint("").has_value());
  EXPECT_EQ(tor_fingerprint_file("Unnamed " + hex + "\n"), hex);
  EXPECT_FALSE(tor_fingerprint_file("Unnamed").has_value());
  EXPECT_FALSE(tor_fingerprint_file("Unnamed " + hex + " extra").has_value());
  EXPECT_FALSE(tor_fingerprint_file("Unnamed C1A1 1C69").has_value());

  const std::string cert(70, 'a');
  const std::string file = "# obfs4 torrc client bridge line\n#\n# This file is an automatically generated bridge line.\n"
                           "\nBridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=" +
                           cert + "+/9 iat-mode=0\n";
  EXPECT_EQ(obfs4_bridge_arguments(file), "cert=" + cert + "+/9 iat-mode=0");
  EXPECT_FALSE(obfs4_bridge_arguments("# nothing here\n").has_value());
  EXPECT_FALSE(obfs4_bridge_arguments("Bridge obfs4 a b cert=" + cert + "\n").has_value());             // no iat-mode
  EXPECT_FALSE(obfs4_bridge_arguments("Bridge obfs4 a b cert=a=b iat-mode=0\n").has_value());           // not base64
  EXPECT_FALSE(obfs4_bridge_arguments("Bridge obfs4 a b cert=" + cert + " iat-mode=7\n").has_value());  // no such mode
  EXPECT_FALSE(obfs4_bridge_arguments("Bridge meek a b cert=" + cert + " iat-mode=0\n").has_value());
}

TEST(LabSystems, InviteWithEndpoint) {
  EXPECT_EQ(invite_with_endpoint("postern://postern.lab:443?pin=sha256/x&key=k&addr=10.20.0.10&secret=s", "10.20.0.14", 9443),
            "postern://10.20.0.14:9443?pin=sha256/x&key=k&secret=s");
  EXPECT_EQ(invite_with_endpoint("postern://relay@h:1?pin=p", "h2", 2), "postern://relay@h2:2?pin=p");
  EXPECT_EQ(invite_with_endpoint("not a link", "h", 1), "not a link");
}

TEST(LabScenarios, PngIsWellFormed) {
  const Bytes png = make_png(4, 3, 7);
  ASSERT_GT(png.size(), 8u + 25u + 12u);
  EXPECT_EQ(Bytes(png.begin(), png.begin() + 8), (Bytes{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}));
  EXPECT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  EXPECT_EQ(png[19], 4);  // width 4
  EXPECT_EQ(png[23], 3);  // height 3
  // IHDR's CRC, computed by hand for 4x3 RGB 8-bit: the chunk must match zlib's crc32
  EXPECT_EQ(std::string(png.end() - 8, png.end() - 4), "IEND");
  EXPECT_EQ(Bytes(png.end() - 4, png.end()), (Bytes{0xae, 0x42, 0x60, 0x82}));  // IEND's well-known CRC
  EXPECT_EQ(make_png(4, 3, 7), png);
  EXPECT_NE(make_png(4, 3, 8), png);
  const Bytes big = make_png(590, 590, 1);
  EXPECT_GT(big.size(), 1'000'000u);
  EXPECT_LT(big.size(), 1'100'000u);
  const std::string abc = "abc";
  EXPECT_EQ(sha256_hex(ByteView(reinterpret_cast<const std::uint8_t*>(abc.data()), abc.size())),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(LabScenarios, CountersAndPath) {
  const std::string listing =
      "table ip postern_lab_meter {\n\tchain pre {\n\t\ttype filter hook prerouting priority -400; policy accept;\n"
      "\t\tiifname \"cu0\" ip daddr 10.20.0.10 counter packets 10 bytes 5000\n"
      "\t\tiifname \"cu0\" ip daddr 10.20.0.11 counter packets 20 bytes 90000\n\t}\n}\n";
  const auto m = PathMeter::parse(listing);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("10.20.0.10"), 5000u);
  const std::vector<std::string> both{"10.20.0.10", "10.20.0.11"};
  EXPECT_EQ(path_from({{"10.20.0.10", 1000}, {"10.20.0.11", 89000}}, m, both), "direct");
  EXPECT_EQ(path_from({{"10.20.0.10", 0}, {"10.20.0.11", 0}}, m, both), "relay");
  EXPECT_EQ(path_from(m, m, both), "");
  // Stray retransmissions (under 1000 bytes) are not a path.
  EXPECT_EQ(path_from({{"10.20.0.10", 4500}, {"10.20.0.11", 90000}}, m, both), "");
  EXPECT_EQ(path_from({{"10.20.0.10", 4000}, {"10.20.0.11", 90000}}, m, both), "direct");
  // Another system's address (a background client) is not this system's path.
  EXPECT_EQ(path_from({{"10.20.0.10", 4000}, {"10.20.0.11", 0}}, m, {"10.20.0.10"}), "direct");
  EXPECT_EQ(path_from({{"10.20.0.10", 5000}, {"10.20.0.11", 0}}, m, {"10.20.0.10"}), "");
  const auto cmds = PathMeter::install_commands("pl00aa-censor");
  EXPECT_EQ(cmds[0], (Argv{"ip", "netns", "exec", "pl00aa-censor", "nft", "add", "table", "ip", "postern_lab_meter"}));
}

TEST(LabScenarios, FlagsAfterTheLastStep) {
  const std::string path = ::testing::TempDir() + "/postern-lab-events-after.jsonl";
  {
    std::ofstream f(path);
    f << "{\"module\":\"probe\",\"action\":\"queue\",\"client\":\"\",\"server\":\"10.20.0.13\"}\n"
         "{\"module\":\"probe\",\"action\":\"probe-differs\",\"client\":\"\",\"server\":\"10.20.0.13\"}\n"
         "{\"module\":\"probe\",\"action\":\"probe-same\",\"client\":\"\",\"server\":\"10.20.0.10\"}\n";
  }
  const SystemInfo* ss = find_system("shadowsocks");
  ASSERT_NE(ss, nullptr);
  EXPECT_EQ(events_offset(path), 223u);
  EXPECT_EQ(flags_after_steps(path, 0, *ss, {"probe/queue"}), std::vector<std::string>{"probe/probe-differs"});
  EXPECT_TRUE(flags_after_steps(path, 0, *ss, {"probe/queue", "probe/probe-differs"}).empty());
  EXPECT_EQ(flags_after_steps(path, 70, *ss, {}), std::vector<std::string>{"probe/probe-differs"});  // from line 2
  EXPECT_TRUE(flags_after_steps(path + ".missing", 0, *ss, {}).empty());
  std::remove(path.c_str());
}

TEST(LabScenarios, FlagsFromEvents) {
  const std::string events =
      "{\"t\":1.0,\"module\":\"fet\",\"action\":\"blackhole\",\"client\":\"10.10.1.2\",\"server\":\"10.20.0.13\",\"port\":8388}\n"
      "not json\n"
      "{\"t\":1.5,\"module\":\"probe\",\"action\":\"probe-differs\",\"client\":\"10.20.0.201\",\"server\":\"10.20.0.13\"}\n"
      "{\"t\":1.6,\"module\":\"fet\",\"action\":\"blackhole\",\"client\":\"10.10.1.2\",\"server\":\"10.20.0.13\"}\n"
      "{\"t\":2.0,\"module\":\"sni\",\"action\":\"rst\",\"client\":\"10.10.1.2\",\"server\":\"10.20.0.12\"}\n"
      "{\"t\":2.1,\"module\":\"dns\",\"action\":\"forged\",\"client\":\"10.10.1.2\",\"server\":\"10.20.0.53\","
      "\"detail\":\"name=chat.whatsapp.lab a=10.66.0.1\"}\n"
      "{\"t\":2.2,\"module\":\"flow\",\"action\":\"pass\",\"client\":\"10.10.1.2\",\"server\":\"10.20.0.13\"}\n";
  // alice's DNS query is the WhatsApp-like system's (its name), not shadowsocks'.
  EXPECT_EQ(flags_from_events(events, {"10.20.0.13"}),
            (std::vector<std::string>{"fet/blackhole", "probe/probe-differs"}));
  EXPECT_EQ(flags_from_events(events, {"10.20.0.12"}, {"chat.whatsapp.lab"}),
            (std::vector<std::string>{"sni/rst", "dns/forged"}));
  EXPECT_EQ(flags_from_events(events, {"10.20.0.12"}, {"whatsapp.lab"}), (std::vector<std::string>{"sni/rst"}));
  EXPECT_TRUE(flags_from_events("", {"10.20.0.12"}).empty());
  EXPECT_EQ(payloads(true), (std::vector<std::string>{"text", "reply", "picture"}));
  EXPECT_EQ(payloads(false).back(), "video");
}

}  // namespace
}  // namespace postern::lab::runner
