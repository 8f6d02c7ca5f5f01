// postern-relay: a volunteer's relay in one command (docs/relay.md).
//
//   postern-relay --listen 0.0.0.0:443 --upstream INVITE --data DIR [--cert PEM --key PEM]
//                 [--site DIR | --cover-origin URL] [--public-host NAME]
//
// Start-up: the data directory (mode 0700) with the relay's own secret (relay.secret), its
// self-signed certificate unless --cert/--key are given, and its replay filter; the camouflage
// site; the listener. Then "listening on HOST:PORT" on stdout, the share link in
// DIR/relay-link.txt (0600: it carries the relay's secret), and the link as a QR code when stdout
// is a terminal. Everyone without the relay's secret sees the camouflage site, exactly as on the
// server. Client addresses are never logged (not even at debug level) unless --log-addresses.
// SIGTERM/SIGINT: stop accepting, close, exit 0.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "postern/client/invite.h"
#include "postern/client/qr.h"
#include "postern/crypto/random.h"
#include "postern/crypto/secret.h"
#include "postern/server/config.h"
#include "postern/server/data_dir.h"
#include "postern/server/tls_identity.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/net/front.h"
#include "postern/transport/net/relay.h"
#include "postern/transport/net/tls_client.h"
#include "postern/transport/site.h"

namespace {

using namespace postern;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

[[noreturn]] void die(const std::string& what, std::error_code ec = {}) {
  spdlog::critical("{}{}{}", what, ec ? ": " : "", ec ? ec.message() : "");
  std::exit(1);
}

std::string read_link_argument(const std::string& text) {
  if (text.starts_with("postern://")) return text;
  std::ifstream in(text);
  if (!in) return text;  // not a file: let the parser explain
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string b64url(ByteView bytes) {
  return server::base64url(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

struct Relay {
  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::ssl::context& front_tls;
  asio::ssl::context& upstream_tls;
  transport::net::FrontSettings front;
  transport::net::RelayUpstream upstream;
  transport::net::RelayOptions options;
  std::size_t max_connections;
  bool log_addresses;
  std::atomic<std::size_t> active{0};

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(io), asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) continue;
      if (active.load() >= max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        spdlog::warn("connection refused: {} connections open (the cap)", max_connections);
        continue;
      }
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (log_addresses) {
        spdlog::info("connection from {}", socket.remote_endpoint(ignored).address().to_string());
      }
      ++active;
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(std::move(socket)), [this](const std::exception_ptr&) { --active; });
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    transport::net::FrontResult r = co_await transport::net::run_front(std::move(socket), front_tls, front);
    if (r.kind != transport::net::FrontResult::Kind::tunnel) co_return;
    co_await transport::net::relay_tunnel(std::move(*r.tls), std::move(r.leftover), std::move(r.websocket_key),
                                          upstream, upstream_tls, options);
  }
};

int run(int argc, char** argv) {
  CLI::App app{"postern-relay: forwards Postern clients to their server behind a camouflage web site"};
  std::string listen = "0.0.0.0:443";
  std::string upstream_text;
  std::string data_dir = "./postern-relay-data";
  std::string cert_file, key_file, site_dir, public_host, log_level = "info";
  std::size_t max_connections = 4096;
  double rate_kib = 0, total_rate_kib = 0;
  std::int64_t window_s = 120;
  bool log_addresses = false, version = false;
  app.add_option("--listen", listen, "HOST:PORT of the TLS listener")->capture_default_str();
  app.add_option("--upstream", upstream_text, "the server's invite link (or a file holding it)")->required();
  app.add_option("--data", data_dir, "data directory (created on first start)")->capture_default_str();
  app.add_option("--cert", cert_file, "PEM certificate chain (default: self-signed, in the data directory)");
  app.add_option("--key", key_file, "PEM private key of --cert");
  app.add_option("--site", site_dir, "camouflage web site directory (default: the sample site shipped with Postern)");
  std::string cover_origin;
  std::int64_t origin_timeout_ms = 60'000;
  app.add_option("--cover-origin", cover_origin,
                 "instead of --site: a real web site (http[s]://HOST[:PORT]) that everyone without the relay's "
                 "secret is proxied to, as by nginx's proxy_pass")
      ->excludes("--site");
  app.add_option("--origin-timeout-ms", origin_timeout_ms, "nginx's proxy_connect/read/send_timeout")
      ->check(CLI::Range(1, 3'600'000));
  app.add_option("--public-host", public_host, "host name or address clients use (default: the --listen host)");
  app.add_option("--max-connections", max_connections, "connections open at once at most")->capture_default_str();
  app.add_option("--rate-kib", rate_kib, "KiB/s per connection, both directions together (0: unlimited)");
  app.add_option("--total-rate-kib", total_rate_kib, "KiB/s for the whole relay (0: unlimited)");
  app.add_flag("--log-addresses", log_addresses, "log client addresses (off by default)");
  // nginx's timeouts, which the front copies (defaults: nginx's); tests shorten them for nginx and
  // the relay alike.
  std::int64_t header_timeout_ms = 60'000, keepalive_timeout_ms = 75'000, lingering_timeout_ms = 5'000;
  app.add_option("--client-header-timeout-ms", header_timeout_ms, "nginx's client_header_timeout")
      ->check(CLI::Range(1, 3'600'000));
  app.add_option("--keepalive-timeout-ms", keepalive_timeout_ms, "nginx's keepalive_timeout")
      ->check(CLI::Range(1, 3'600'000));
  app.add_option("--lingering-timeout-ms", lingering_timeout_ms, "nginx's lingering_timeout")
      ->check(CLI::Range(1, 3'600'000));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::cout << "postern-relay " << POSTERN_VERSION << std::endl;
    return 0;
  }
  auto logger = spdlog::stderr_color_mt("postern-relay");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  if (cert_file.empty() != key_file.empty()) die("--cert and --key go together");

  const std::string upstream_link = read_link_argument(upstream_text);
  auto invite = client::parse_invite(upstream_link);
  if (!invite) die("--upstream: " + client::explain_invite_error(upstream_link));
  if (!invite->server_key || !invite->front_secret) {
    die("--upstream: the invite has no key= and secret= (a server without its camouflage front cannot have relays)");
  }
  auto listen_at = server::parse_host_port(listen);
  if (!listen_at) die("--listen must be HOST:PORT");
  if (public_host.empty()) {
    public_host = listen_at->host;
    if (public_host == "0.0.0.0" || public_host == "::") die("--public-host is needed when listening on all addresses");
  }

  if (auto s = server::ensure_directory(data_dir); !s) die("creating " + data_dir, s.error());
  const std::string dir = data_dir + "/";
  crypto::SystemRng rng;
  auto secret = server::load_or_create_secret(dir + "relay.secret", rng);
  if (!secret) die("reading " + dir + "relay.secret", secret.error());
  auto relay_auth = transport::FrontAuthenticator::create(secret->view());
  if (!relay_auth) die("the relay secret", relay_auth.error());
  auto upstream_auth = transport::FrontAuthenticator::create(ByteView(*invite->front_secret));
  if (!upstream_auth) die("the upstream invite's secret", upstream_auth.error());
  auto replay = transport::ReplayFilter::open(dir + "relay-replay.bin", window_s);
  if (!replay) die("opening " + dir + "relay-replay.bin", replay.error());
  if (cert_file.empty()) {
    cert_file = dir + "cert.pem";
    key_file = dir + "key.pem";
    if (auto s = server::ensure_self_signed_certificate(cert_file, key_file, public_host); !s) {
      die("creating the certificate", s.error());
    }
  }
  auto pin = server::certificate_pin(cert_file);
  if (!pin) die("reading " + cert_file, pin.error());
  auto front_tls = transport::net::make_front_tls_context(cert_file, key_file);
  if (!front_tls) die("loading the certificate and key", front_tls.error());
  auto upstream_tls = transport::net::make_client_tls_context();
  const std::string site_root = site_dir.empty() ? std::string(POSTERN_SHARE_DIR) + "/site" : site_dir;
  transport::site::NginxLimits nginx;
  nginx.client_header_timeout = std::chrono::milliseconds(header_timeout_ms);
  nginx.keepalive_timeout = std::chrono::milliseconds(keepalive_timeout_ms);
  nginx.lingering_timeout = std::chrono::milliseconds(lingering_timeout_ms);
  auto site = transport::site::Site::open(site_root, nginx);
  if (!site) die("the camouflage site " + site_root, site.error());
  std::optional<transport::net::CoverOrigin> origin;
  if (!cover_origin.empty()) {
    auto made = transport::net::make_cover_origin(cover_origin);
    if (!made) die("--cover-origin (http[s]://HOST[:PORT] expected)", made.error());
    origin.emplace(std::move(*made));
    origin->limits.connect_timeout = std::chrono::milliseconds(origin_timeout_ms);
    origin->limits.read_timeout = origin->limits.connect_timeout;
    origin->limits.send_timeout = origin->limits.connect_timeout;
  }

  // One io thread: forwarding is cheap next to TLS, and a single thread avoids the lock and
  // wake-up traffic of two threads sharing one io_context (bench: postern-relaybench).
  asio::io_context io(1);
  transport::net::RelayCounters counters;
  std::optional<transport::net::ByteRateLimiter> total_limit;
  if (total_rate_kib > 0) total_limit.emplace(static_cast<std::uint64_t>(total_rate_kib * 1024));
  Relay relay{io, tcp::acceptor(asio::make_strand(io)), **front_tls, *upstream_tls, {}, {}, {}, max_connections,
              log_addresses};
  relay.front.site = &*site;
  if (origin) relay.front.origin = &*origin;
  relay.front.auth = &*relay_auth;
  relay.front.replay = replay->get();
  relay.front.window_seconds = window_s;
  const bool v6 = invite->host.find(':') != std::string::npos;
  relay.upstream.dial_host = invite->host;
  relay.upstream.dial_port = invite->port;
  relay.upstream.tls_name = invite->host;
  relay.upstream.host_header = (v6 ? "[" + invite->host + "]" : invite->host) + ":" + std::to_string(invite->port);
  relay.upstream.pin = invite->pin;
  relay.upstream.auth = &*upstream_auth;
  relay.options.bytes_per_second_per_connection = static_cast<std::uint64_t>(rate_kib * 1024);
  relay.options.shared_limit = total_limit ? &*total_limit : nullptr;
  relay.options.counters = &counters;

  boost::system::error_code ec;
  const auto address = asio::ip::make_address(listen_at->host == "localhost" ? "127.0.0.1" : listen_at->host, ec);
  if (ec) die("--listen: not an IP address: " + listen_at->host);
  const tcp::endpoint endpoint(address, listen_at->port);
  relay.acceptor.open(endpoint.protocol(), ec);
  if (!ec) relay.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) relay.acceptor.bind(endpoint, ec);
  if (!ec) relay.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) die("listening on " + listen + ": " + ec.message());
  const auto bound = relay.acceptor.local_endpoint(ec);

  // The share link: this relay's address and certificate pin, its own secret, and the server's
  // Noise key (so a client's channel ends at the server, never here).
  std::string link = "postern://relay@" + server::format_host_port(public_host, bound.port()) + "?pin=" + *pin +
                     "&key=" + b64url(ByteView(*invite->server_key)) + "&secret=" + b64url(secret->view());
  if (auto s = server::write_file_atomically(dir + "relay-link.txt", link + "\n", 0600); !s) {
    die("writing relay-link.txt", s.error());
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& sec, int) {
    if (sec) return;
    spdlog::info("stopping");
    io.stop();
  });
  asio::co_spawn(relay.acceptor.get_executor(), relay.accept_loop(), asio::detached);
  spdlog::info("postern-relay {} data={} pin={}", POSTERN_VERSION, data_dir, *pin);
  std::printf("listening on %s\n", server::format_host_port(bound.address().to_string(), bound.port()).c_str());
  std::printf("share link written to %srelay-link.txt\n", dir.c_str());
  if (::isatty(STDOUT_FILENO) == 1) {
    if (auto lines = client::qr_terminal_lines(as_bytes(link))) {
      for (const auto& line : *lines) std::printf("%s\n", line.c_str());
    }
  }
  std::fflush(stdout);
  crypto::wipe(link.data(), link.size());

  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postern-relay: %s\n", e.what());
    return 1;
  }
}
