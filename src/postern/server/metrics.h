// Counters and gauges of postern-server, exported in the Prometheus text format on the admin
// listener (admin_server.h). Plain atomics, incremented where things happen (relaxed order: they
// are statistics, not synchronisation); rendering reads them without stopping anything.
//
// Naming follows Prometheus conventions: counters end in _total, sizes are in bytes.
// Never put user data (e-mail addresses, tokens, ids) in a metric or a label.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace postern::server {

struct ServerMetrics {
  using Counter = std::atomic<std::uint64_t>;
  using Gauge = std::atomic<std::int64_t>;

  // HTTPS API (one count per answered request, by status class).
  Counter http_requests_2xx{0};
  Counter http_requests_3xx{0};
  Counter http_requests_4xx{0};
  Counter http_requests_5xx{0};
  Gauge tls_connections{0};  // TLS connections open (HTTP and WebSocket)
  Counter tls_handshake_failures{0};
  Counter connections_refused{0};  // over the connection cap

  // WebSocket delivery.
  Gauge ws_connections{0};  // authenticated WebSocket connections open
  Counter ws_connects{0};   // WebSocket connections accepted (authenticated)
  Counter ws_auth_failures{0};
  Counter ws_replaced{0};              // a newer connection of the same device took over
  Counter messages_pushed{0};          // envelopes written to a WebSocket (live or drained)
  Counter messages_acked{0};           // acknowledgements received (HTTP and WebSocket)
  Counter messages_sent_ws{0};         // envelopes accepted through WebSocket send requests
  Counter messages_sent_http{0};       // envelopes accepted through PUT /v1/messages
  Counter queue_drains{0};             // "queue empty" signals sent

  // Attachments (TUS).
  Counter uploads_created{0};
  Counter uploads_completed{0};
  Counter upload_bytes{0};    // bytes received in PATCH bodies and stored
  Counter download_bytes{0};  // bytes sent in GET bodies
  Counter uploads_expired{0};

  void count_http_status(unsigned status) {
    if (status < 300) {
      http_requests_2xx.fetch_add(1, std::memory_order_relaxed);
    } else if (status < 400) {
      http_requests_3xx.fetch_add(1, std::memory_order_relaxed);
    } else if (status < 500) {
      http_requests_4xx.fetch_add(1, std::memory_order_relaxed);
    } else {
      http_requests_5xx.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
  c.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace postern::server

// ---- Prometheus text exposition (format 0.0.4), metrics.cpp ----
#include <string_view>
#include <vector>

namespace postern::server {

// A value that does not live in ServerMetrics (connections of the listener, group commit
// statistics, process figures), computed by the caller when /metrics is asked for.
struct ExtraGauge {
  std::string name;    // a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
  std::string help;    // one line
  bool counter = false;  // "# TYPE ... counter" instead of gauge
  double value = 0;
  std::string labels;  // already formatted, e.g. `version="0.1.0"`, or empty
};

// Every ServerMetrics member (postern_ prefix) then the extras, each with # HELP and # TYPE.
std::string render_prometheus(const ServerMetrics& metrics, const std::vector<ExtraGauge>& extras);
// A Prometheus label value with \, " and newline escaped.
std::string escape_label_value(std::string_view value);

// Of this process, from /proc/self (Linux); -1 when unavailable.
std::int64_t process_resident_bytes();
std::int64_t process_open_fds();

}  // namespace postern::server
