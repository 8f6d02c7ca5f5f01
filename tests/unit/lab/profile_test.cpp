#include "postern/lab/profile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "postern/lab/errors.h"

namespace postern::lab {
namespace {

LabKnowledge knowledge() {
  LabKnowledge k;
  k.known_addresses = {"10.200.1.2", "10.200.1.3"};
  k.known_names = {"chat.example", "Messenger.Example."};
  k.forged_pool = {"198.51.100.1", "198.51.100.2"};
  k.ja3_deny = {"0123456789ABCDEF0123456789abcdef"};
  k.ja4_deny = {"t13d1516h2_8daaf6152771_e5627efa2ab1"};
  return k;
}

int modules_on(const Modules& m) {
  const bool all[] = {m.ip_blocklist, m.port_allowlist, m.udp_blackhole, m.dns_injection, m.sni_filter,
                      m.fet,          m.active_probing, m.tls_fingerprint, m.tls_in_tls,  m.volume};
  return static_cast<int>(std::count(std::begin(all), std::end(all), true));
}

// The field-by-field comparison a round trip must pass (to_json of both is compared as well).
void expect_same(const CensorSettings& a, const CensorSettings& b) {
  EXPECT_EQ(a.profile, b.profile);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(modules_on(a.on), modules_on(b.on));
  EXPECT_EQ(a.on.ip_blocklist, b.on.ip_blocklist);
  EXPECT_EQ(a.on.port_allowlist, b.on.port_allowlist);
  EXPECT_EQ(a.on.udp_blackhole, b.on.udp_blackhole);
  EXPECT_EQ(a.on.dns_injection, b.on.dns_injection);
  EXPECT_EQ(a.on.sni_filter, b.on.sni_filter);
  EXPECT_EQ(a.on.fet, b.on.fet);
  EXPECT_EQ(a.on.active_probing, b.on.active_probing);
  EXPECT_EQ(a.on.tls_fingerprint, b.on.tls_fingerprint);
  EXPECT_EQ(a.on.tls_in_tls, b.on.tls_in_tls);
  EXPECT_EQ(a.on.volume, b.on.volume);
  EXPECT_EQ(a.known.known_addresses, b.known.known_addresses);
  EXPECT_EQ(a.known.known_names, b.known.known_names);
  EXPECT_EQ(a.known.forged_pool, b.known.forged_pool);
  EXPECT_EQ(a.known.ja3_deny, b.known.ja3_deny);
  EXPECT_EQ(a.known.ja4_deny, b.known.ja4_deny);
  EXPECT_EQ(a.known.ja4_allow, b.known.ja4_allow);
  EXPECT_EQ(a.allowed_ports, b.allowed_ports);
  EXPECT_EQ(a.rst_count, b.rst_count);
  EXPECT_EQ(a.sni_penalty, b.sni_penalty);
  EXPECT_EQ(a.sni_penalty_probability, b.sni_penalty_probability);
  EXPECT_EQ(a.fet_probability, b.fet_probability);
  EXPECT_EQ(a.fet_residual, b.fet_residual);
  EXPECT_EQ(a.probe_delay, b.probe_delay);
  EXPECT_EQ(a.probe_window, b.probe_window);
  EXPECT_EQ(a.probe_every_new_server, b.probe_every_new_server);
  EXPECT_EQ(a.volume_bytes, b.volume_bytes);
  EXPECT_EQ(a.volume_max_clients, b.volume_max_clients);
  EXPECT_EQ(a.address_block, b.address_block);
  EXPECT_EQ(a.tls_in_tls.bursts, b.tls_in_tls.bursts);
  EXPECT_EQ(a.tls_in_tls.hello_min, b.tls_in_tls.hello_min);
  EXPECT_EQ(a.tls_in_tls.hello_max, b.tls_in_tls.hello_max);
  EXPECT_EQ(a.tls_in_tls.server_min, b.tls_in_tls.server_min);
  EXPECT_EQ(a.tls_in_tls.server_max, b.tls_in_tls.server_max);
  EXPECT_EQ(a.tls_in_tls.finished_min, b.tls_in_tls.finished_min);
  EXPECT_EQ(a.tls_in_tls.finished_max, b.tls_in_tls.finished_max);
  EXPECT_EQ(to_json(a), to_json(b));
}

TEST(LabProfileTest, ProfilesInOrderWithTechniqueLines) {
  const std::vector<std::string> expected = {"open",           "ip-blocklist",    "port-allowlist", "udp-blackhole",
                                             "dns-injection",  "sni-filter",      "fet",            "active-probing",
                                             "tls-fingerprint", "tls-in-tls",     "volume",         "gfw"};
  std::vector<std::string> names;
  for (const auto& p : profiles()) {
    names.push_back(p.name);
    EXPECT_FALSE(p.technique.empty()) << p.name;
    EXPECT_EQ(p.technique.find('\n'), std::string::npos) << p.name;
  }
  EXPECT_EQ(names, expected);
  EXPECT_EQ(quick_profiles(), (std::vector<std::string>{"open", "sni-filter", "fet", "active-probing", "gfw"}));
  for (const auto& q : quick_profiles()) {
    EXPECT_NE(std::find(names.begin(), names.end(), q), names.end()) << q;
  }
  // The gfw line says the probe delay is capped.
  EXPECT_NE(profiles().back().technique.find("caps"), std::string::npos);
}

TEST(LabProfileTest, EveryProfileBuildsAndRoundTrips) {
  for (const auto& p : profiles()) {
    SCOPED_TRACE(p.name);
    auto s = make_profile(p.name, knowledge(), 42);
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(s->profile, p.name);
    EXPECT_EQ(s->seed, 42u);
    // Names are kept lower case without the trailing dot, JA3 hashes lower case.
    EXPECT_EQ(s->known.known_names, (std::vector<std::string>{"chat.example", "messenger.example"}));
    EXPECT_EQ(s->known.ja3_deny, (std::vector<std::string>{"0123456789abcdef0123456789abcdef"}));
    const std::string text = to_json(*s);
    auto back = settings_from_json(text);
    ASSERT_TRUE(back.ok()) << back.error().message() << "\n" << text;
    expect_same(*s, *back);
  }
}

TEST(LabProfileTest, SingleTechniqueProfilesSwitchOnlyTheirModuleWithProbabilityOne) {
  const LabKnowledge k = knowledge();
  auto open = make_profile("open", k);
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(modules_on(open->on), 0);
  struct Case {
    const char* name;
    bool Modules::*module;
  };
  const Case cases[] = {
      {"ip-blocklist", &Modules::ip_blocklist},   {"port-allowlist", &Modules::port_allowlist},
      {"udp-blackhole", &Modules::udp_blackhole}, {"dns-injection", &Modules::dns_injection},
      {"sni-filter", &Modules::sni_filter},       {"fet", &Modules::fet},
      {"active-probing", &Modules::active_probing}, {"tls-fingerprint", &Modules::tls_fingerprint},
      {"tls-in-tls", &Modules::tls_in_tls},       {"volume", &Modules::volume},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto s = make_profile(c.name, k);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(modules_on(s->on), 1);
    EXPECT_TRUE(s->on.*(c.module));
    EXPECT_EQ(s->fet_probability, 1.0);
    EXPECT_EQ(s->sni_penalty_probability, 1.0);
  }
}

TEST(LabProfileTest, GfwHasTheReportedFigures) {
  auto s = make_profile("gfw", knowledge(), 7);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(modules_on(s->on), 10);
  EXPECT_DOUBLE_EQ(s->fet_probability, 0.26);
  EXPECT_DOUBLE_EQ(s->sni_penalty_probability, 0.6);
  EXPECT_EQ(s->rst_count, 3u);
  EXPECT_EQ(s->sni_penalty, std::chrono::seconds(90));
  EXPECT_EQ(s->fet_residual, std::chrono::seconds(180));
  EXPECT_TRUE(s->probe_every_new_server);
  EXPECT_EQ(s->probe_delay, std::chrono::seconds(1));
  EXPECT_EQ(s->volume_bytes, 16ull * 1024 * 1024);
  EXPECT_EQ(s->volume_max_clients, 2u);
  EXPECT_EQ(s->allowed_ports, (std::vector<std::uint16_t>{53, 80, 443}));
}

TEST(LabProfileTest, UnknownProfileRefused) {
  for (const char* name : {"", "GFW", "gfw2", "sni", "open "}) {
    auto s = make_profile(name, knowledge());
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.error(), Errc::bad_config);
    EXPECT_STREQ(s.error().category().name(), "postern.lab");
  }
}

TEST(LabProfileTest, KnowledgeMustHoldIpv4LiteralsAndNames) {
  for (const char* bad : {"10.0.0.256", "01.2.3.4", "1.2.3", "1.2.3.4.5", "::1", "host.example", "1.2.3.4 ", ""}) {
    LabKnowledge k = knowledge();
    k.known_addresses.push_back(bad);
    EXPECT_EQ(make_profile("open", k).error(), Errc::bad_config) << '"' << bad << '"';
    k = knowledge();
    k.forged_pool.push_back(bad);
    EXPECT_EQ(make_profile("open", k).error(), Errc::bad_config) << '"' << bad << '"';
  }
  for (const char* ok : {"0.0.0.0", "255.255.255.255", "10.200.0.1"}) {
    LabKnowledge k = knowledge();
    k.known_addresses.push_back(ok);
    EXPECT_TRUE(make_profile("open", k).ok()) << ok;
  }
  LabKnowledge k = knowledge();
  k.known_names.push_back("bad name");
  EXPECT_EQ(make_profile("open", k).error(), Errc::bad_config);
  k = knowledge();
  k.ja3_deny.push_back("not-a-hash");
  EXPECT_EQ(make_profile("open", k).error(), Errc::bad_config);
}

TEST(LabProfileTest, MissingKeysKeepTheDefaults) {
  auto s = settings_from_json(R"({"profile":"custom","modules":{"fet":true},"fet_probability":0.5})");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->profile, "custom");
  EXPECT_EQ(modules_on(s->on), 1);
  EXPECT_TRUE(s->on.fet);
  EXPECT_DOUBLE_EQ(s->fet_probability, 0.5);
  const CensorSettings defaults;
  EXPECT_EQ(s->fet_residual, defaults.fet_residual);
  EXPECT_EQ(s->allowed_ports, defaults.allowed_ports);
  // Probabilities may be written as integers.
  auto one = settings_from_json(R"({"fet_probability":1,"sni_penalty_probability":0})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->fet_probability, 1.0);
  EXPECT_EQ(one->sni_penalty_probability, 0.0);
}

TEST(LabProfileTest, BadJsonRefused) {
  const char* bad[] = {
      "",
      "not json",
      "[]",
      "42",
      R"({"profile":"gfw")",                          // truncated
      R"({"unknown":1})",                             // unknown key
      R"({"modules":{"fet":true,"quic":true}})",      // unknown module
      R"({"modules":{"fet":1}})",                     // not a boolean
      R"({"modules":[]})",
      R"({"known":{"addresses":["10.0.0.1"],"extra":[]}})",
      R"({"known":{"addresses":["10.0.0.300"]}})",    // not an IPv4 literal
      R"({"known":{"forged_pool":["example.com"]}})",
      R"({"known":{"addresses":[1]}})",
      R"({"known":{"names":["a b"]}})",
      R"({"known":{"ja3_deny":["abc"]}})",
      R"({"fet_probability":1.5})",                   // probabilities in [0, 1]
      R"({"fet_probability":-0.1})",
      R"({"sni_penalty_probability":"0.5"})",
      R"({"allowed_ports":[0]})",                     // ports 1..65535
      R"({"allowed_ports":[65536]})",
      R"({"allowed_ports":[443.5]})",
      R"({"allowed_ports":443})",
      R"({"sni_penalty_s":-1})",                      // durations >= 0
      R"({"fet_residual_s":-180})",
      R"({"probe_delay_ms":-5})",
      R"({"address_block_s":1.5})",
      R"({"address_block_s":100000000000})",          // over the limit (a year)
      R"({"rst_count":-3})",
      R"({"rst_count":1000})",
      R"({"volume_bytes":-1})",
      R"({"seed":-1})",
      R"({"probe_every_new_server":"yes"})",
      R"({"profile":7})",
      R"({"tls_in_tls":{"bursts":0}})",
      R"({"tls_in_tls":{"hello_min":800,"hello_max":700}})",
      R"({"tls_in_tls":{"window":3}})",
      R"({"fet_probability":1e400})",
  };
  for (const char* text : bad) {
    auto s = settings_from_json(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.error(), Errc::bad_config) << text;
  }
}

TEST(LabProfileTest, ErrorsAreRegistered) {
  const std::error_code e = Errc::tool_missing;
  EXPECT_STREQ(e.category().name(), "postern.lab");
  EXPECT_EQ(e.value(), 4);
  for (Errc c : {Errc::ok, Errc::bad_config, Errc::io_error, Errc::not_permitted, Errc::tool_missing, Errc::timeout,
                 Errc::failed, Errc::malformed_message}) {
    EXPECT_NE(make_error_code(c).message(), "unknown lab error");
  }
  EXPECT_EQ(make_error_code(static_cast<Errc>(99)).message(), "unknown lab error");
  EXPECT_FALSE(make_error_code(Errc::ok));
}

}  // namespace
}  // namespace postern::lab
