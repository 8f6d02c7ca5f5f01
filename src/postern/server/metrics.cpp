// Rendering of ServerMetrics in the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): for each metric a "# HELP" and a
// "# TYPE" line, then "name{labels} value". Values are read with relaxed loads, one by one: a
// scrape is a set of statistics, not a consistent snapshot.
#include "postern/server/metrics.h"

#include <dirent.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

namespace postern::server {

namespace {

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  // Integers (all counters, most gauges) print exactly; other values with enough digits.
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
    out += std::to_string(static_cast<long long>(v));
    return;
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_metric(std::string& out, std::string_view name, std::string_view help, bool counter, double value,
                   std::string_view labels = {}) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(counter ? " counter\n" : " gauge\n");
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ");
  append_number(out, value);
  out.append("\n");
}

double load(const std::atomic<std::uint64_t>& c) {
  return static_cast<double>(c.load(std::memory_order_relaxed));
}
double load(const std::atomic<std::int64_t>& g) {
  return static_cast<double>(g.load(std::memory_order_relaxed));
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string render_prometheus(const ServerMetrics& m, const std::vector<ExtraGauge>& extras) {
  std::string out;
  out.reserve(4096);
  // One metric family with a status-class label, as Prometheus prefers to four names.
  out.append("# HELP postern_http_requests_total HTTPS API requests answered, by status class.\n");
  out.append("# TYPE postern_http_requests_total counter\n");
  const std::pair<const char*, const ServerMetrics::Counter*> classes[] = {{"2xx", &m.http_requests_2xx},
                                                                           {"3xx", &m.http_requests_3xx},
                                                                           {"4xx", &m.http_requests_4xx},
                                                                           {"5xx", &m.http_requests_5xx}};
  for (const auto& [label, counter] : classes) {
    out.append("postern_http_requests_total{code=\"").append(label).append("\"} ");
    append_number(out, load(*counter));
    out.append("\n");
  }
  append_metric(out, "postern_tls_connections", "TLS connections open (HTTP and WebSocket).", false,
                load(m.tls_connections));
  append_metric(out, "postern_tls_handshake_failures_total", "TLS handshakes that failed.", true,
                load(m.tls_handshake_failures));
  append_metric(out, "postern_connections_refused_total",
                "Connections closed at once because of the connection cap.", true,
                load(m.connections_refused));
  append_metric(out, "postern_ws_connections", "Authenticated delivery WebSocket connections open.", false,
                load(m.ws_connections));
  append_metric(out, "postern_ws_connects_total", "Delivery WebSocket connections accepted (authenticated).",
                true, load(m.ws_connects));
  append_metric(out, "postern_ws_auth_failures_total",
                "WebSocket upgrades refused for a missing or bad token.", true, load(m.ws_auth_failures));
  append_metric(out, "postern_ws_replaced_total",
                "WebSocket connections taken over by a newer one of the same device.", true,
                load(m.ws_replaced));
  append_metric(out, "postern_messages_pushed_total",
                "Envelopes written to a WebSocket (live or from the queue).", true, load(m.messages_pushed));
  append_metric(out, "postern_messages_acked_total",
                "Envelope acknowledgements received (HTTP and WebSocket).", true, load(m.messages_acked));
  append_metric(out, "postern_messages_sent_ws_total", "Envelopes accepted through WebSocket send requests.",
                true, load(m.messages_sent_ws));
  append_metric(out, "postern_messages_sent_http_total", "Envelopes accepted through PUT /v1/messages.", true,
                load(m.messages_sent_http));
  append_metric(out, "postern_queue_drains_total", "Queue-empty signals sent on WebSockets.", true,
                load(m.queue_drains));
  append_metric(out, "postern_uploads_created_total", "Attachment uploads created.", true,
                load(m.uploads_created));
  append_metric(out, "postern_uploads_completed_total", "Attachment uploads completed.", true,
                load(m.uploads_completed));
  append_metric(out, "postern_upload_bytes_total", "Attachment bytes received and stored.", true,
                load(m.upload_bytes));
  append_metric(out, "postern_download_bytes_total", "Attachment bytes sent.", true, load(m.download_bytes));
  append_metric(out, "postern_uploads_expired_total", "Unfinished attachment uploads expired and deleted.",
                true, load(m.uploads_expired));
  for (const auto& e : extras) append_metric(out, e.name, e.help, e.counter, e.value, e.labels);
  return out;
}

std::int64_t process_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      long long kib = 0;
      if (std::sscanf(line.c_str() + 6, "%lld", &kib) == 1) return kib * 1024;
      return -1;
    }
  }
  return -1;
}

std::int64_t process_open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  std::int64_t n = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the descriptor of the directory being read
}

}  // namespace postern::server
