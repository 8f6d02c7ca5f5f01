// postern-server: command line, start-up and signal handling. Exceptions are allowed here (the
// program's edge: argument parsing, configuration, binding); nothing below the HTTP layer throws.
//
// Start-up order: configuration, data directory, database (migrated), proof-of-work secret, TLS
// certificate (self-signed on first start unless configured), the front's secrets (the Noise
// static key noise.key, the deployment secret front.secret, the replay filter
// front-replay.bin) and its camouflage site, listener; then "listening on HOST:PORT" on stdout
// and DIR/invite.txt (mode 0600: it carries the deployment secret). SIGTERM/SIGINT: stop accepting, finish requests in
// progress (bounded by http.shutdown_grace_ms), exit 0.
#include <sys/resource.h>

#include <cstdio>
#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "postern/account/password.h"
#include "postern/crypto/random.h"
#include "postern/server/admin_server.h"
#include "postern/server/api.h"
#include "postern/server/attachments.h"
#include "postern/server/config.h"
#include "postern/server/data_dir.h"
#include "postern/server/delivery_hub.h"
#include "postern/server/http_server.h"
#include "postern/server/tls_identity.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/net/front.h"
#include "postern/transport/noise.h"
#include "postern/transport/site.h"
#include "postern/store/sqlite_server_store.h"
#include "postern/store/wal_checkpointer.h"
#include "postern/util/clock.h"

namespace {

using namespace postern;
using namespace postern::server;

[[noreturn]] void die(const std::string& what, std::error_code ec = {}) {
  spdlog::critical("{}{}{}", what, ec ? ": " : "", ec ? ec.message() : "");
  std::exit(1);
}

int run(int argc, char** argv) {
  ServerConfig config;
  CLI::App app{"postern-server: the Postern messaging server"};
  std::string data_dir = config.data_dir;
  std::string listen;
  std::string admin_listen;
  std::string config_file;
  bool version = false;
  std::string log_level = "info";
  app.add_option("--data", data_dir, "data directory (created on first start)")->capture_default_str();
  app.add_option("--listen", listen, "HOST:PORT of the TLS listener (default 0.0.0.0:8443; port 0: any)");
  app.add_option("--admin-listen", admin_listen,
                 "HOST:PORT of the admin listener, HTTP /metrics and /healthz (default 127.0.0.1:9090)");
  app.add_option("--config", config_file, "TOML configuration file (see docs/protocol.md)");
  std::string site_dir;
  app.add_option("--site", site_dir,
                 "directory of the camouflage web site shown to everyone without the deployment secret "
                 "(default: the sample site shipped with Postern)");
  std::string cover_origin;
  app.add_option("--cover-origin", cover_origin,
                 "instead of --site: a real web site (http[s]://HOST[:PORT]) that everyone without the "
                 "deployment secret is proxied to, as by nginx's proxy_pass")
      ->excludes("--site");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::cout << "postern-server " << POSTERN_VERSION << std::endl;
    return 0;
  }

  auto logger = spdlog::stderr_color_mt("postern");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  if (!config_file.empty()) load_config(config_file, config);  // throws with a message
  config.data_dir = data_dir;
  if (!site_dir.empty()) {
    config.front.site_dir = site_dir;
    config.front.cover_origin.clear();
  }
  if (!cover_origin.empty()) {
    config.front.cover_origin = cover_origin;
    config.front.site_dir.clear();
  }
  if (!listen.empty()) {
    auto hp = parse_host_port(listen);
    if (!hp) die("--listen must be HOST:PORT");
    config.listen = *hp;
  }
  if (!admin_listen.empty()) {
    auto hp = parse_host_port(admin_listen);
    if (!hp) die("--admin-listen must be HOST:PORT");
    config.admin_listen = *hp;
  }
  if (auto probe = account::hash_password("Probe1", config.password); !probe) {
    die("password hashing limits rejected", probe.error());
  }

  // Every connection is a file descriptor: raise the soft limit to the hard one (the default soft
  // limit, 1024, is far below the connection cap), as nginx and Go servers do.
  if (rlimit nofile{}; ::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      (void)::setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < config.http.max_connections + 64) {
      spdlog::warn("open files limit {} is below http.max_connections {} (+64 for the database and files); "
                   "raise it (ulimit -n, LimitNOFILE=) or lower max_connections",
                   static_cast<std::uint64_t>(nofile.rlim_cur), config.http.max_connections);
    }
  }
  if (auto s = ensure_directory(config.data_dir); !s) die("creating " + config.data_dir, s.error());
  const std::string dir = config.data_dir + "/";
  auto store = store::SqliteServerStore::open(dir + "postern.db");
  if (!store) die("opening " + dir + "postern.db", store.error());
  // Checkpoints in the background, so that no commit (and no send waiting for it) pays for one.
  auto checkpointer = store::WalCheckpointer::start(dir + "postern.db", std::chrono::milliseconds(100));
  if (checkpointer) {
    if (auto s = (*store)->set_auto_checkpoint(0); !s) die("configuring the database", s.error());
  } else {
    spdlog::warn("background WAL checkpoints unavailable ({}); SQLite checkpoints in commits",
                 checkpointer.error().message());
  }
  crypto::SystemRng rng;
  auto secret = load_or_create_secret(dir + "pow.secret", rng);
  if (!secret) die("reading " + dir + "pow.secret", secret.error());

  const std::string host = advertised_host(config);
  std::string cert_file = config.cert_file;
  std::string key_file = config.key_file;
  if (cert_file.empty()) {
    cert_file = dir + "cert.pem";
    key_file = dir + "key.pem";
    if (auto s = ensure_self_signed_certificate(cert_file, key_file, host); !s) die("creating the certificate", s.error());
  }
  auto pin = certificate_pin(cert_file);
  if (!pin) die("reading " + cert_file, pin.error());
  auto tls = make_tls_context(cert_file, key_file);
  if (!tls) die("loading the certificate and key", tls.error());

  SystemClock clock;
  Api api(**store, config, secret->view(), clock, rng);
  // Attachments use a store connection of their own (one connection is not shared between threads).
  auto attachment_store = store::SqliteServerStore::open(dir + "postern.db");
  if (!attachment_store) die("opening " + dir + "postern.db", attachment_store.error());
  AttachmentService attachments(**attachment_store, config.attachments, dir + "attachments", api.metrics(), clock, rng);
  if (auto s = attachments.open_directory(); !s) die("creating " + dir + "attachments", s.error());
  api.set_upload_files_deleter([&attachments](const std::vector<std::string>& ids) { attachments.delete_files(ids); });
  boost::asio::io_context io(static_cast<int>(config.io_threads));
  boost::asio::thread_pool workers(config.worker_threads);
  DeliveryHub delivery(workers, api, config);
  // The front: camouflage site, first-request authentication, inner channel.
  std::optional<transport::site::Site> site;
  std::optional<transport::net::CoverOrigin> origin;
  std::unique_ptr<transport::ReplayFilter> replay;
  std::optional<transport::FrontAuthenticator> front_auth;
  std::optional<transport::noise::KeyPair> noise_key;
  std::shared_ptr<boost::asio::ssl::context> front_tls;
  FrontConfig front_config;
  std::string invite_extra;
  if (config.front.enabled) {
    auto noise_secret = load_or_create_secret(dir + "noise.key", rng);
    if (!noise_secret) die("reading " + dir + "noise.key", noise_secret.error());
    auto key_pair = transport::noise::KeyPair::from_private(noise_secret->view());
    if (!key_pair) die("the Noise key in " + dir + "noise.key", key_pair.error());
    noise_key.emplace(std::move(*key_pair));
    auto deployment_secret = load_or_create_secret(dir + "front.secret", rng);
    if (!deployment_secret) die("reading " + dir + "front.secret", deployment_secret.error());
    auto authenticator = transport::FrontAuthenticator::create(deployment_secret->view());
    if (!authenticator) die("the deployment secret in " + dir + "front.secret", authenticator.error());
    front_auth.emplace(std::move(*authenticator));
    auto filter = transport::ReplayFilter::open(dir + "front-replay.bin", config.front.token_window_s);
    if (!filter) die("opening " + dir + "front-replay.bin", filter.error());
    replay = std::move(*filter);
    transport::site::NginxLimits nginx;
    nginx.client_header_timeout = config.front.client_header_timeout;
    nginx.keepalive_timeout = config.front.keepalive_timeout;
    nginx.send_timeout = config.front.send_timeout;
    nginx.lingering_time = config.front.lingering_time;
    nginx.lingering_timeout = config.front.lingering_timeout;
    const std::string site_root =
        config.front.site_dir.empty() ? std::string(POSTERN_SHARE_DIR) + "/site" : config.front.site_dir;
    auto opened = transport::site::Site::open(site_root, nginx);
    if (!opened) die("the camouflage site " + site_root, opened.error());
    site.emplace(std::move(*opened));
    if (!config.front.cover_origin.empty()) {
      auto made = transport::net::make_cover_origin(config.front.cover_origin);
      if (!made) die("the cover origin (http[s]://HOST[:PORT] expected)", made.error());
      origin.emplace(std::move(*made));
      origin->limits.connect_timeout = config.front.origin_timeout;
      origin->limits.read_timeout = config.front.origin_timeout;
      origin->limits.send_timeout = config.front.origin_timeout;
      front_config.front.origin = &*origin;
    }
    auto ctx = transport::net::make_front_tls_context(cert_file, key_file);
    if (!ctx) die("loading the certificate and key", ctx.error());
    front_tls = std::move(*ctx);
    front_config.front.site = &*site;
    front_config.front.auth = &*front_auth;
    front_config.front.replay = replay.get();
    front_config.front.window_seconds = config.front.token_window_s;
    front_config.front.open_api = config.front.open_api;
    front_config.front.counters = &front_config.counters;
    front_config.inner.static_key = &*noise_key;
    front_config.inner.shaping = transport::inner::ShapingPolicy::defaults();
    front_config.inner.shaping.enabled = config.front.shaping;
    front_config.inner.shaping.cover_interval = config.front.cover_interval;
    invite_extra = "&key=" +
                   base64url(std::string_view(reinterpret_cast<const char*>(noise_key->public_key.data()),
                                              noise_key->public_key.size())) +
                   "&secret=" +
                   base64url(std::string_view(reinterpret_cast<const char*>(deployment_secret->view().data()),
                                              deployment_secret->view().size()));
  }
  HttpServer server(io, front_tls ? *front_tls : **tls, workers, api, config.http, &attachments, &delivery,
                    config.front.enabled ? &front_config : nullptr);
  auto bound = server.listen(config.listen);
  if (!bound) die("listening on " + format_host_port(config.listen.host, config.listen.port), bound.error());
  const auto started = std::chrono::steady_clock::now();
  const transport::net::FrontCounters* front_counters = config.front.enabled ? &front_config.counters : nullptr;
  AdminServer admin(io, [&api, &server, started, front_counters] {
    return render_server_metrics(api, server, started, front_counters);
  });
  auto admin_bound = admin.listen(config.admin_listen);
  if (!admin_bound) {
    const std::string at = format_host_port(config.admin_listen.host, config.admin_listen.port);
    // Only an address that was asked for is worth failing the start for; the default one may be
    // taken by another instance on the same host (tests, a second server).
    if (at != format_host_port(ServerConfig{}.admin_listen.host, ServerConfig{}.admin_listen.port)) {
      die("admin listening on " + at, admin_bound.error());
    }
    spdlog::warn("admin listener not started: {}: {}", at, admin_bound.error().message());
  }

  for (const auto& address : config.public_addresses) invite_extra += "&addr=" + address;
  std::string invite = "postern://" + format_host_port(host, bound->port) + "?pin=" + *pin + invite_extra + "\n";
  // The invite carries the deployment secret: readable by the operator only.
  const auto written = write_file_atomically(dir + "invite.txt", invite, 0600);
  crypto::wipe(invite.data(), invite.size());
  if (!written) die("writing invite.txt", written.error());

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::steady_timer drain(io);
  std::chrono::steady_clock::time_point deadline;
  // After a signal, polls until the last connection has gone (then run() returns because no work
  // is left) or the grace period is over (then the io_context is stopped).
  std::function<void()> wait_for_drain = [&] {
    if (server.active_connections() == 0) return;
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::warn("requests still in progress after the grace period; stopping anyway");
      io.stop();
      return;
    }
    drain.expires_after(std::chrono::milliseconds(20));
    drain.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) wait_for_drain();
    });
  };
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: stopping", signal);
    deadline = std::chrono::steady_clock::now() + config.http.shutdown_grace;
    server.shutdown();
    admin.shutdown();
    delivery.shutdown();
    wait_for_drain();
  });
  server.start();
  spdlog::info("postern-server {} data={} pin={}", POSTERN_VERSION, config.data_dir, *pin);
  std::printf("listening on %s\n", format_host_port(bound->host, bound->port).c_str());
  if (admin_bound) {
    admin.start();
    std::printf("admin listening on %s\n", format_host_port(admin_bound->host, admin_bound->port).c_str());
  }
  std::fflush(stdout);

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < config.io_threads; ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : threads) t.join();
  workers.join();
  api.stop();  // the last group commits, before the delivery hub they notify goes
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postern-server: %s\n", e.what());
    return 1;
  }
}
