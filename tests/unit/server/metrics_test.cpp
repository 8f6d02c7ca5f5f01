// render_prometheus (metrics.h): the text exposition format 0.0.4 of ServerMetrics and extras.
#include "postern/server/metrics.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

namespace postern::server {
namespace {

// Every sample line's metric name (before '{' or ' ').
std::set<std::string> sample_names(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

TEST(Metrics, EverySampleHasHelpAndTypeFirst) {
  ServerMetrics m;
  const std::string text =
      render_prometheus(m, {{"postern_uptime_seconds", "Seconds since start.", false, 1.5, ""}});
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::istringstream in(text);
  std::string line;
  std::set<std::string> helped;
  std::set<std::string> typed;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.contains(name)) << name;
      const std::string type = line.substr(line.rfind(' ') + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge") << line;
      // Counters end in _total (Prometheus naming).
      if (type == "counter") {
        EXPECT_TRUE(name.ends_with("_total")) << name;
      }
      EXPECT_TRUE(typed.insert(name).second) << "TYPE twice: " << name;
    } else {
      const std::string name = line.substr(0, line.find_first_of("{ "));
      EXPECT_TRUE(typed.contains(name)) << "sample before its TYPE: " << line;
    }
  }
  EXPECT_TRUE(typed.contains("postern_uptime_seconds"));
}

TEST(Metrics, CountersAndGaugesShowTheirValues) {
  ServerMetrics m;
  m.count_http_status(200);
  m.count_http_status(204);
  m.count_http_status(404);
  m.count_http_status(503);
  bump(m.messages_pushed, 7);
  m.ws_connections.store(-2);  // a gauge may be negative
  const std::string text = render_prometheus(m, {});
  EXPECT_NE(text.find("postern_http_requests_total{code=\"2xx\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("postern_http_requests_total{code=\"3xx\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("postern_http_requests_total{code=\"4xx\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("postern_http_requests_total{code=\"5xx\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("\npostern_messages_pushed_total 7\n"), std::string::npos);
  EXPECT_NE(text.find("\npostern_ws_connections -2\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE postern_messages_pushed_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE postern_ws_connections gauge\n"), std::string::npos);
  const auto names = sample_names(text);
  for (const char* expected :
       {"postern_tls_connections", "postern_messages_acked_total", "postern_queue_drains_total",
        "postern_upload_bytes_total", "postern_uploads_expired_total"}) {
    EXPECT_TRUE(names.contains(expected)) << expected;
  }
}

TEST(Metrics, ExtrasWithLabelsAndFractions) {
  ServerMetrics m;
  const std::string text = render_prometheus(
      m, {{"postern_build_info", "Build.", false, 1, "version=\"" + escape_label_value("1.0\"x\\\n") + "\""},
          {"postern_group_commit_rounds_total", "Rounds.", true, 12, ""},
          {"postern_uptime_seconds", "Up.", false, 0.25, ""}});
  EXPECT_NE(text.find("postern_build_info{version=\"1.0\\\"x\\\\\\n\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(
      text.find("# TYPE postern_group_commit_rounds_total counter\npostern_group_commit_rounds_total 12\n"),
      std::string::npos);
  EXPECT_NE(text.find("postern_uptime_seconds 0.25\n"), std::string::npos);
}

TEST(Metrics, ProcessFiguresAreReadFromProc) {
  EXPECT_GT(process_resident_bytes(), 0);
  EXPECT_GE(process_open_fds(), 3);  // at least stdin, stdout, stderr
}

}  // namespace
}  // namespace postern::server
