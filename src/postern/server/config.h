// The configuration of postern-server: defaults, the TOML file (toml++) and HOST:PORT parsing.
// Loading happens once at start-up, so load_config may throw (std::runtime_error with a message
// naming the key); nothing on a request path reads configuration from disk.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

#include "postern/account/password.h"
#include "postern/account/rate_limit.h"
#include "postern/util/result.h"

namespace postern::server {

struct HostPort {
  std::string host;  // an IPv4/IPv6 literal or a name; IPv6 without brackets
  std::uint16_t port = 0;
};

// "HOST:PORT", "[v6]:PORT". Errors: Errc::bad_address.
Result<HostPort> parse_host_port(std::string_view text);
// The inverse, bracketing IPv6 literals.
std::string format_host_port(std::string_view host, std::uint16_t port);

struct RateLimits {
  account::RateLimit registration_per_address = account::recommended_limits::kRegistrationPerAddress;
  account::RateLimit challenges_per_address = account::recommended_limits::kChallengesPerAddress;
  account::RateLimit login_per_account = account::recommended_limits::kLoginPerAccount;
  account::RateLimit login_per_address = account::recommended_limits::kLoginPerAddress;
  // Authenticated look-ups, per account: GET /v1/directory and GET /v1/keys/{account_id} (each
  // key fetch consumes the other account's one-time prekeys, so it is bounded like a look-up).
  account::RateLimit directory_per_account = account::recommended_limits::kDirectoryLookupsPerAccount;
  account::RateLimit key_fetch_per_account = account::recommended_limits::kDirectoryLookupsPerAccount;
  std::size_t max_keys = account::recommended_limits::kMaxKeys;
  // Envelopes sent, per sending account: a PUT /v1/messages costs one token per envelope.
  // (Declared last so that existing aggregate initialisers keep their meaning.)
  account::RateLimit sends_per_account = account::recommended_limits::kSendsPerAccount;
};

struct HttpLimits {
  std::uint32_t header_bytes = 8 * 1024;
  std::uint64_t body_bytes = 64 * 1024;  // JSON bodies
  // PUT /v1/messages/{account_id} only: one envelope per recipient device, each up to 256 KiB of
  // ciphertext (about 342 KiB in base64), so this bounds the devices one send can reach.
  std::uint64_t message_body_bytes = 4 * 1024 * 1024;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds read_timeout{15'000};  // from the first header byte to the end of the body
  std::chrono::milliseconds idle_timeout{60'000};  // waiting for the next request on a kept-alive connection
  std::chrono::milliseconds write_timeout{15'000};
  std::chrono::milliseconds shutdown_grace{10'000};  // SIGTERM: longest wait for in-flight requests
  std::size_t max_connections = 10'000;
};

struct MessageLimits {
  std::int64_t retention_ms = 30LL * 24 * 3600 * 1000;  // an envelope not acknowledged by then is dropped
  std::int64_t purge_interval_ms = 60'000;             // least time between two purges of expired envelopes
  std::size_t max_round_envelopes = 4096;              // group commit: envelopes per transaction at most
  std::size_t max_fetch = 1000;                        // GET /v1/messages: the largest limit
  // WebSocket delivery ([messages] too).
  std::size_t ws_outbox_frames = 256;          // frames waiting to be written; more: the rest come from the store
  std::size_t ws_fetch_page = 256;             // envelopes per store read while draining a queue
  std::uint64_t ws_max_frame_bytes = 4 * 1024 * 1024;  // largest client frame (a send of many envelopes)
  std::size_t ws_max_sends_in_flight = 128;    // send requests of one connection not yet answered
  std::int64_t ws_ping_interval_ms = 30'000;   // WebSocket ping after this much silence; closed if no pong
};

// Attachments ([attachments]): resumable uploads of encrypted blobs (docs/protocol.md).
struct AttachmentLimits {
  std::int64_t max_upload_bytes = 2LL * 1024 * 1024 * 1024;     // Upload-Length at most (Tus-Max-Size)
  std::int64_t quota_bytes = 10LL * 1024 * 1024 * 1024;         // per account: declared lengths of its uploads
  std::int64_t expiry_ms = 30LL * 24 * 3600 * 1000;             // an upload is deleted this long after creation
  std::int64_t purge_interval_ms = 60'000;                      // least time between two purges of expired uploads
  // Per account, charged at creation with the declared length (at most the capacity).
  account::RateLimit bytes_per_account = account::recommended_limits::kAttachmentBytesPerAccount;
};

// Linked devices ([devices]): one-time links that add a device to an account (docs/protocol.md).
struct DeviceLinkLimits {
  std::int64_t link_ttl_ms = 10 * 60 * 1000;  // a link is usable this long after its creation
  std::size_t max_open_links = 5;             // live links (not expired, not picked up) per account
  std::int64_t purge_interval_ms = 60'000;    // least time between two purges of expired links
  // POST /v1/devices/links, per account: 10 at once, 1 a minute.
  account::RateLimit links_per_account{10, 1.0 / 60};
  // PUT /v1/devices/links/{id}/request (not authenticated), per client address: 30 at once, 10 a minute.
  account::RateLimit link_requests_per_address{30, 10.0 / 60};
};

// The camouflage front and the inner channel (docs/transport.md). The timeouts are nginx 1.22's
// defaults, which the front copies; tests shorten them (for nginx and us alike).
struct FrontOptions {
  // false: no front, the API straight over TLS as in issue 3 (a server behind its own TLS
  // terminator on a trusted network). Default on.
  bool enabled = true;
  // Also hand first requests for /v1/... over TLS to the API directly (tests, benchmarks). Such a
  // server answers probers of /v1/ paths differently from nginx: never in production.
  bool open_api = false;
  std::string site_dir;  // the camouflage site; empty: the sample site that ships with Postern
  // Instead of a site directory: a real web site the front proxies non-clients to, as nginx's
  // proxy_pass ("http[s]://HOST[:PORT]"; transport/cover_origin.h). Excludes site_dir.
  std::string cover_origin;
  std::chrono::milliseconds origin_timeout{60'000};  // proxy_connect/read/send_timeout: then 504
  std::int64_t token_window_s = 120;  // first-request tokens accepted within now +- this
  std::chrono::milliseconds client_header_timeout{60'000};
  std::chrono::milliseconds keepalive_timeout{75'000};
  std::chrono::milliseconds send_timeout{60'000};
  std::chrono::milliseconds lingering_time{30'000};
  std::chrono::milliseconds lingering_timeout{5'000};
  bool shaping = true;                                   // padding, first bursts, cover keep-alives
  std::chrono::milliseconds cover_interval{20'000};      // 0: no cover keep-alives
};

struct ServerConfig {
  std::string data_dir = "./postern-data";
  HostPort listen{"0.0.0.0", 8443};
  HostPort admin_listen{"127.0.0.1", 9090};
  // The host put into the invite link and the self-signed certificate's CN. Empty: the listen
  // host, or "localhost" when listening on a wildcard address.
  std::string public_host;
  // IP addresses of public_host written into the invite (addr=), so that clients need no DNS for
  // it (a forged answer cannot mislead them). Empty: none.
  std::vector<std::string> public_addresses;
  std::string cert_file;  // PEM; both empty: a self-signed pair in the data directory
  std::string key_file;
  unsigned pow_difficulty = 20;
  std::int64_t pow_ttl_ms = 10 * 60 * 1000;
  account::PasswordHashParams password{};
  RateLimits rate_limits{};
  HttpLimits http{};
  MessageLimits messages{};
  AttachmentLimits attachments{};
  unsigned worker_threads = 2;  // blocking work: Argon2id and the store
  unsigned io_threads = 2;
  DeviceLinkLimits devices{};
  FrontOptions front{};
};

// Applies the TOML file at `path` over `config` (keys absent from the file keep their value).
// Throws std::runtime_error on a parse error, an unknown key or a value out of range.
void load_config(const std::string& path, ServerConfig& config);

// The host for the invite link and the certificate (see ServerConfig::public_host).
std::string advertised_host(const ServerConfig& config);

}  // namespace postern::server
