// The lab's reports: cell texts, the Markdown tables, the JSON document and the heat map input.
#include "postern/lab/runner/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace postern::lab::runner {
namespace {

RunInfo info() { return {"box, Linux", "2026-01-01T00:00:00Z", "postern-lab run --quick", {"open", "fet"},
                         {"postern-direct", "shadowsocks"}, {"text", "picture"}, {}}; }

std::vector<Cell> cells() {
  std::vector<Cell> c;
  Cell a{"open", "postern-direct", "text"};
  a.status = Cell::Status::delivered;
  a.seconds = 1.234;
  a.path = "direct";
  c.push_back(a);
  Cell b{"fet", "shadowsocks", "text"};
  b.status = Cell::Status::blocked;
  b.flagged = {"fet/blackhole", "probe/probe-differs", "fet/residual"};
  b.note = "bob did not receive it in time";
  c.push_back(b);
  Cell n{"fet", "postern-direct", "picture"};
  n.status = Cell::Status::not_run;
  n.note = "ss-server missing (Debian package shadowsocks-libev)";
  c.push_back(n);
  return c;
}

TEST(LabReport, CellTexts) {
  const auto c = cells();
  EXPECT_EQ(cell_text(c[0]), "ok 1.2 s");
  EXPECT_EQ(cell_text(c[1]), "BLOCKED (fet, probe)");
  EXPECT_EQ(cell_text(c[2]), "not run: ss-server missing (Debian package shadowsocks-libev)");
  Cell plain{"x", "y", "z"};
  plain.status = Cell::Status::blocked;
  EXPECT_EQ(cell_text(plain), "BLOCKED");
}

TEST(LabReport, MarkdownHasOneTablePerPayload) {
  const std::string md = results_markdown(info(), cells());
  EXPECT_NE(md.find("## text\n\n| profile | postern-direct | shadowsocks |\n|---|---|---|\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| open | ok 1.2 s | - |"), std::string::npos) << md;
  EXPECT_NE(md.find("| fet | - | BLOCKED (fet, probe) |"), std::string::npos) << md;
  EXPECT_NE(md.find("## picture"), std::string::npos);
  EXPECT_NE(md.find("| fet | not run: ss-server missing (Debian package shadowsocks-libev) | - |"), std::string::npos);
  EXPECT_NE(md.find("- fet / shadowsocks: fet/blackhole, probe/probe-differs, fet/residual"), std::string::npos) << md;
}

TEST(LabReport, VerdictsAfterTheLastStep) {
  auto i = info();
  i.after_steps = {{"fet", "shadowsocks", {"probe/queue"}}, {"open", "postern-direct", {"probe/probe-same"}}};
  const std::string md = results_markdown(i, cells());
  EXPECT_NE(md.find("- open / postern-direct: after its last step: probe/probe-same (path: direct)\n"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("- fet / shadowsocks: fet/blackhole, probe/probe-differs, fet/residual; after its last step: "
                    "probe/queue\n"),
            std::string::npos)
      << md;
  const auto j = nlohmann::json::parse(results_json(i, cells()));
  ASSERT_EQ(j["after_steps"].size(), 2u);
  EXPECT_EQ(j["after_steps"][0]["system"], "shadowsocks");
  EXPECT_EQ(j["after_steps"][0]["flags"], nlohmann::json({"probe/queue"}));
  EXPECT_TRUE(nlohmann::json::parse(results_json(info(), cells()))["after_steps"].empty());
}

TEST(LabReport, MarkdownEscapesPipes) {
  auto c = cells();
  c[2].note = "a|b";
  const std::string md = results_markdown(info(), c);
  EXPECT_NE(md.find("not run: a\\|b"), std::string::npos);
}

TEST(LabReport, JsonCarriesEveryCell) {
  const auto j = nlohmann::json::parse(results_json(info(), cells()));
  EXPECT_EQ(j["machine"], "box, Linux");
  EXPECT_EQ(j["command"], "postern-lab run --quick");
  EXPECT_EQ(j["profiles"], nlohmann::json({"open", "fet"}));
  EXPECT_EQ(j["systems"], nlohmann::json({"postern-direct", "shadowsocks"}));
  ASSERT_EQ(j["cells"].size(), 3u);
  EXPECT_EQ(j["cells"][0]["delivered"], true);
  EXPECT_DOUBLE_EQ(j["cells"][0]["seconds"].get<double>(), 1.234);
  EXPECT_EQ(j["cells"][0]["path"], "direct");
  EXPECT_EQ(j["cells"][1]["delivered"], false);
  EXPECT_TRUE(j["cells"][1]["seconds"].is_null());
  EXPECT_EQ(j["cells"][1]["flagged"].size(), 3u);
  EXPECT_EQ(j["cells"][2]["status"], "not-run");
}

TEST(LabReport, HeatmapShares) {
  const std::string d = heatmap_data(info(), cells());
  // x=system, y=profile
  EXPECT_NE(d.find("0 0 1.000 \"1/1\"\n"), std::string::npos) << d;   // open, postern-direct
  EXPECT_NE(d.find("1 0 -1 \"-\"\n"), std::string::npos) << d;        // open, shadowsocks: nothing
  EXPECT_NE(d.find("0 1 -1 \"-\"\n"), std::string::npos) << d;        // fet, postern-direct: not run only
  EXPECT_NE(d.find("1 1 0.000 \"0/1\"\n"), std::string::npos) << d;   // fet, shadowsocks: blocked
  const std::string gp = heatmap_script(info(), "/tmp/x.dat", "/tmp/x.png");
  EXPECT_NE(gp.find("set output \"/tmp/x.png\""), std::string::npos);
  EXPECT_NE(gp.find("(\"postern-direct\" 0, \"shadowsocks\" 1)"), std::string::npos) << gp;
  EXPECT_NE(gp.find("plot \"/tmp/x.dat\""), std::string::npos);
}

}  // namespace
}  // namespace postern::lab::runner

namespace postern::lab::runner {
namespace {

TEST(LabExpectations, ReadsTheTableUnderItsHeading) {
  const std::string doc =
      "# x\n\n## Where Postern gets through\n\nSome words.\n\n| profile | system | payloads |\n| --- | --- | --- |\n"
      "| open | postern-direct | text, reply, picture |\n| fet | postern-relay | text |\n\n## Later\n"
      "| gfw | postern-direct | text |\n";
  std::string problem;
  const auto e = parse_expectations(doc, problem);
  EXPECT_TRUE(problem.empty()) << problem;
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].profile, "open");
  EXPECT_EQ(e[0].system, "postern-direct");
  EXPECT_EQ(e[2].payload, "picture");
  EXPECT_EQ(e[3].profile, "fet");

  parse_expectations("# nothing\n", problem);
  EXPECT_FALSE(problem.empty());
  problem.clear();
  parse_expectations("## Where Postern gets through\n\nno table\n", problem);
  EXPECT_FALSE(problem.empty());
}

TEST(LabExpectations, ReportsBlockedExpectedCellsOnly) {
  std::string problem;
  const auto e = parse_expectations(
      "## Where Postern gets through\n| open | postern-direct | text, picture |\n| gfw | postern-relay | text |\n",
      problem);
  Cell delivered{"open", "postern-direct", "text"};
  delivered.status = Cell::Status::delivered;
  delivered.seconds = 0.2;
  Cell blocked{"open", "postern-direct", "picture"};
  blocked.status = Cell::Status::blocked;
  blocked.note = "send failed";
  Cell unrelated{"fet", "shadowsocks", "text"};
  unrelated.status = Cell::Status::blocked;
  const auto misses = unmet_expectations(e, {delivered, blocked, unrelated});
  ASSERT_EQ(misses.size(), 1u);
  EXPECT_NE(misses[0].find("open / postern-direct / picture"), std::string::npos);
  EXPECT_NE(misses[0].find("send failed"), std::string::npos);
}

}  // namespace
}  // namespace postern::lab::runner
