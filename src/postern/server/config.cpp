#include "postern/server/config.h"

#include <arpa/inet.h>

#include <array>

#include <charconv>
#include <set>
#include <stdexcept>

#include <toml++/toml.h>

#include "postern/server/errors.h"

namespace postern::server {

Result<HostPort> parse_host_port(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Errc::bad_address;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return Errc::bad_address;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return Errc::bad_address;  // v6 needs brackets
  }
  if (host.empty() || port.empty() || port.size() > 5) return Errc::bad_address;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || end != port.data() + port.size() || value > 65535) return Errc::bad_address;
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

std::string format_host_port(std::string_view host, std::uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out.append("[").append(host).append("]");
  } else {
    out.append(host);
  }
  return out + ":" + std::to_string(port);
}

std::string advertised_host(const ServerConfig& config) {
  if (!config.public_host.empty()) return config.public_host;
  const std::string& h = config.listen.host;
  if (h == "0.0.0.0" || h == "::" || h.empty()) return "localhost";
  return h;
}

namespace {

[[noreturn]] void fail(const std::string& key, const std::string& why) {
  throw std::runtime_error("config: " + key + ": " + why);
}

// Reads an integer in [lo, hi] if present.
template <class T>
void read_int(const toml::table& t, const std::string& prefix, const char* key, T& out, std::int64_t lo,
              std::int64_t hi) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return;
  const auto v = n->value<std::int64_t>();
  if (!v || *v < lo || *v > hi) {
    fail(prefix + key, "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  out = static_cast<T>(*v);
}

void read_ms(const toml::table& t, const std::string& prefix, const char* key, std::chrono::milliseconds& out) {
  std::int64_t v = out.count();
  read_int(t, prefix, key, v, 1, 24LL * 3600 * 1000);
  out = std::chrono::milliseconds(v);
}

void read_string(const toml::table& t, const std::string& prefix, const char* key, std::string& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return;
  const auto v = n->value<std::string>();
  if (!v) fail(prefix + key, "must be a string");
  out = *v;
}

void read_limit(const toml::table& t, const std::string& prefix, const char* key, account::RateLimit& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return;
  const toml::table* lt = n->as_table();
  if (lt == nullptr) fail(prefix + key, "must be a table { capacity = N, refill_per_second = R }");
  for (const auto& [k, v] : *lt) {
    if (k.str() != "capacity" && k.str() != "refill_per_second") fail(prefix + key, "unknown key " + std::string(k.str()));
  }
  if (const auto c = lt->get("capacity")) {
    const auto v = c->value<double>();
    if (!v || !(*v > 0)) fail(prefix + key + ".capacity", "must be a positive number");
    out.capacity = *v;
  }
  if (const auto r = lt->get("refill_per_second")) {
    const auto v = r->value<double>();
    if (!v || !(*v >= 0)) fail(prefix + key + ".refill_per_second", "must be a number >= 0");
    out.refill_per_second = *v;
  }
}

void reject_unknown(const toml::table& t, const std::string& prefix, std::initializer_list<std::string_view> known) {
  const std::set<std::string_view> names(known);
  for (const auto& [k, v] : t) {
    if (!names.contains(k.str())) fail(prefix + std::string(k.str()), "unknown key");
  }
}

const toml::table* section(const toml::table& root, const char* name) {
  const toml::node* n = root.get(name);
  if (n == nullptr) return nullptr;
  if (!n->is_table()) fail(name, "must be a table");
  return n->as_table();
}

}  // namespace

void load_config(const std::string& path, ServerConfig& config) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error("config: " + path + ": " + std::string(e.description()));
  }
  reject_unknown(root, "", {"server", "tls", "http", "pow", "password", "rate_limits", "messages",
                         "attachments", "devices", "front"});

  if (const auto* s = section(root, "server")) {
    reject_unknown(*s, "server.",
                   {"listen", "admin_listen", "public_host", "public_addresses", "worker_threads", "io_threads"});
    if (const auto* node = s->get("public_addresses")) {
      const auto* list = node->as_array();
      if (list == nullptr || list->size() > 8) fail("server.public_addresses", "must be a list of at most 8 IP addresses");
      config.public_addresses.clear();
      for (const auto& item : *list) {
        const auto text = item.value<std::string>();
        std::array<unsigned char, 16> raw{};
        if (!text || (inet_pton(AF_INET, text->c_str(), raw.data()) != 1 &&
                      inet_pton(AF_INET6, text->c_str(), raw.data()) != 1)) {
          fail("server.public_addresses", "each entry must be an IPv4 or IPv6 address");
        }
        config.public_addresses.push_back(*text);
      }
    }
    std::string listen;
    read_string(*s, "server.", "listen", listen);
    if (!listen.empty()) {
      auto hp = parse_host_port(listen);
      if (!hp) fail("server.listen", "must be HOST:PORT");
      config.listen = *hp;
    }
    std::string admin;
    read_string(*s, "server.", "admin_listen", admin);
    if (!admin.empty()) {
      auto hp = parse_host_port(admin);
      if (!hp) fail("server.admin_listen", "must be HOST:PORT");
      config.admin_listen = *hp;
    }
    read_string(*s, "server.", "public_host", config.public_host);
    read_int(*s, "server.", "worker_threads", config.worker_threads, 1, 256);
    read_int(*s, "server.", "io_threads", config.io_threads, 1, 256);
  }
  if (const auto* s = section(root, "tls")) {
    reject_unknown(*s, "tls.", {"cert", "key"});
    read_string(*s, "tls.", "cert", config.cert_file);
    read_string(*s, "tls.", "key", config.key_file);
    if (config.cert_file.empty() != config.key_file.empty()) fail("tls", "set both cert and key, or neither");
  }
  if (const auto* s = section(root, "http")) {
    reject_unknown(*s, "http.", {"max_header_bytes", "max_body_bytes", "handshake_timeout_ms", "read_timeout_ms",
                                 "idle_timeout_ms", "write_timeout_ms", "shutdown_grace_ms", "max_connections",
                                 "max_message_body_bytes"});
    read_int(*s, "http.", "max_header_bytes", config.http.header_bytes, 1024, 1024 * 1024);
    read_int(*s, "http.", "max_body_bytes", config.http.body_bytes, 1024, 16 * 1024 * 1024);
    read_int(*s, "http.", "max_message_body_bytes", config.http.message_body_bytes, 1024, 256LL * 1024 * 1024);
    read_ms(*s, "http.", "handshake_timeout_ms", config.http.handshake_timeout);
    read_ms(*s, "http.", "read_timeout_ms", config.http.read_timeout);
    read_ms(*s, "http.", "idle_timeout_ms", config.http.idle_timeout);
    read_ms(*s, "http.", "write_timeout_ms", config.http.write_timeout);
    read_ms(*s, "http.", "shutdown_grace_ms", config.http.shutdown_grace);
    read_int(*s, "http.", "max_connections", config.http.max_connections, 1, 10'000'000);
  }
  if (const auto* s = section(root, "pow")) {
    reject_unknown(*s, "pow.", {"difficulty", "ttl_ms"});
    read_int(*s, "pow.", "difficulty", config.pow_difficulty, 0, 64);
    read_int(*s, "pow.", "ttl_ms", config.pow_ttl_ms, 1, 7LL * 24 * 3600 * 1000);
  }
  if (const auto* s = section(root, "password")) {
    reject_unknown(*s, "password.", {"opslimit", "memlimit"});
    // libsodium's Argon2id bounds: opslimit >= 1, memlimit >= 8 KiB (hash_password checks the rest).
    read_int(*s, "password.", "opslimit", config.password.opslimit, 1, 1'000'000);
    read_int(*s, "password.", "memlimit", config.password.memlimit, 8192, 4LL * 1024 * 1024 * 1024);
  }
  if (const auto* s = section(root, "rate_limits")) {
    reject_unknown(*s, "rate_limits.", {"registration_per_address", "challenges_per_address", "login_per_account",
                                        "login_per_address", "directory_per_account", "key_fetch_per_account",
                                        "sends_per_account", "max_keys"});
    read_limit(*s, "rate_limits.", "registration_per_address", config.rate_limits.registration_per_address);
    read_limit(*s, "rate_limits.", "challenges_per_address", config.rate_limits.challenges_per_address);
    read_limit(*s, "rate_limits.", "login_per_account", config.rate_limits.login_per_account);
    read_limit(*s, "rate_limits.", "login_per_address", config.rate_limits.login_per_address);
    read_limit(*s, "rate_limits.", "directory_per_account", config.rate_limits.directory_per_account);
    read_limit(*s, "rate_limits.", "key_fetch_per_account", config.rate_limits.key_fetch_per_account);
    read_limit(*s, "rate_limits.", "sends_per_account", config.rate_limits.sends_per_account);
    read_int(*s, "rate_limits.", "max_keys", config.rate_limits.max_keys, 1, 100'000'000);
  }
  if (const auto* s = section(root, "messages")) {
    reject_unknown(*s, "messages.",
                   {"retention_ms", "purge_interval_ms", "max_round_envelopes", "max_fetch", "ws_outbox_frames",
                    "ws_fetch_page", "ws_max_frame_bytes", "ws_max_sends_in_flight", "ws_ping_interval_ms"});
    read_int(*s, "messages.", "retention_ms", config.messages.retention_ms, 1000, 3650LL * 24 * 3600 * 1000);
    read_int(*s, "messages.", "purge_interval_ms", config.messages.purge_interval_ms, 0, 24LL * 3600 * 1000);
    read_int(*s, "messages.", "max_round_envelopes", config.messages.max_round_envelopes, 1, 1'000'000);
    read_int(*s, "messages.", "max_fetch", config.messages.max_fetch, 1, 100'000);
    read_int(*s, "messages.", "ws_outbox_frames", config.messages.ws_outbox_frames, 1, 100'000);
    read_int(*s, "messages.", "ws_fetch_page", config.messages.ws_fetch_page, 1, 10'000);
    read_int(*s, "messages.", "ws_max_frame_bytes", config.messages.ws_max_frame_bytes, 1024, 64ULL * 1024 * 1024);
    read_int(*s, "messages.", "ws_max_sends_in_flight", config.messages.ws_max_sends_in_flight, 1, 100'000);
    read_int(*s, "messages.", "ws_ping_interval_ms", config.messages.ws_ping_interval_ms, 1000, 3600LL * 1000);
  }
  if (const auto* s = section(root, "attachments")) {
    reject_unknown(*s, "attachments.",
                   {"max_upload_bytes", "quota_bytes", "expiry_ms", "purge_interval_ms", "bytes_per_account"});
    read_int(*s, "attachments.", "max_upload_bytes", config.attachments.max_upload_bytes, 0, 1LL << 50);
    read_int(*s, "attachments.", "quota_bytes", config.attachments.quota_bytes, 0, 1LL << 55);
    read_int(*s, "attachments.", "expiry_ms", config.attachments.expiry_ms, 1000, 3650LL * 24 * 3600 * 1000);
    read_int(*s, "attachments.", "purge_interval_ms", config.attachments.purge_interval_ms, 0, 24LL * 3600 * 1000);
    read_limit(*s, "attachments.", "bytes_per_account", config.attachments.bytes_per_account);
  }
  if (const auto* s = section(root, "devices")) {
    reject_unknown(*s, "devices.", {"link_ttl_ms", "max_open_links", "purge_interval_ms", "links_per_account",
                                    "link_requests_per_address"});
    read_int(*s, "devices.", "link_ttl_ms", config.devices.link_ttl_ms, 1000, 24LL * 3600 * 1000);
    read_int(*s, "devices.", "max_open_links", config.devices.max_open_links, 1, 100);
    read_int(*s, "devices.", "purge_interval_ms", config.devices.purge_interval_ms, 0, 24LL * 3600 * 1000);
    read_limit(*s, "devices.", "links_per_account", config.devices.links_per_account);
    read_limit(*s, "devices.", "link_requests_per_address", config.devices.link_requests_per_address);
  }
  if (const auto* s = section(root, "front")) {
    reject_unknown(*s, "front.", {"enabled", "open_api", "site", "token_window_s", "client_header_timeout_ms",
                                  "keepalive_timeout_ms", "send_timeout_ms", "lingering_time_ms",
                                  "lingering_timeout_ms", "shaping", "cover_interval_ms", "cover_origin",
                                  "origin_timeout_ms"});
    auto read_bool = [&](const char* key, bool& out) {
      if (const auto* node = s->get(key)) {
        const auto v = node->value<bool>();
        if (!v) fail(std::string("front.") + key, "must be true or false");
        out = *v;
      }
    };
    read_bool("enabled", config.front.enabled);
    read_bool("open_api", config.front.open_api);
    read_bool("shaping", config.front.shaping);
    read_string(*s, "front.", "site", config.front.site_dir);
    read_string(*s, "front.", "cover_origin", config.front.cover_origin);
    read_ms(*s, "front.", "origin_timeout_ms", config.front.origin_timeout);
    if (!config.front.site_dir.empty() && !config.front.cover_origin.empty()) {
      fail("front.cover_origin", "excludes front.site: the camouflage is a directory or an origin, not both");
    }
    read_int(*s, "front.", "token_window_s", config.front.token_window_s, 10, 3600);
    read_ms(*s, "front.", "client_header_timeout_ms", config.front.client_header_timeout);
    read_ms(*s, "front.", "keepalive_timeout_ms", config.front.keepalive_timeout);
    read_ms(*s, "front.", "send_timeout_ms", config.front.send_timeout);
    read_ms(*s, "front.", "lingering_time_ms", config.front.lingering_time);
    read_ms(*s, "front.", "lingering_timeout_ms", config.front.lingering_timeout);
    std::int64_t cover_ms = config.front.cover_interval.count();
    read_int(*s, "front.", "cover_interval_ms", cover_ms, 0, 3600LL * 1000);
    config.front.cover_interval = std::chrono::milliseconds(cover_ms);
  }
}

}  // namespace postern::server
