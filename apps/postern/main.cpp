// postern: the Postern client on the command line (docs/client.md).
//   postern [--profile DIR] [--json] COMMAND ...
// Every command prints what it did on stdout (one JSON object per line with --json) and
// plain-word errors on stderr. Exit codes: 0 done, 1 refused (the server or a rule said no),
// 2 usage, 3 the server could not be reached, 4 a local problem (profile, file),
// 5 a security stop (key pin mismatch, changed safety number, altered attachment).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "postern/client/messenger.h"
#include "postern/client/net/https_link.h"
#include "postern/client/net/path_link.h"
#include "postern/client/profile_config.h"
#include "postern/client/qr.h"
#include "postern/crypto/random.h"
#include "postern/util/clock.h"
#include "daemon.h"
#include "doctor_cli.h"
#include "terminal.h"
#include "views.h"

namespace {

using nlohmann::json;
using namespace postern::cli;
using namespace postern;
using namespace postern::client;

std::atomic<bool> g_stop{false};
std::mutex g_out;

void on_signal(int) { g_stop.store(true); }

struct Globals {
  std::string profile;
  bool json_output = false;
  std::string passphrase_file;
  std::string device_name;
  std::string proxy;  // --proxy / POSTERN_PROXY, for this run only
  std::string doh;     // --doh / POSTERN_DOH: resolve the server's name through DNS-over-HTTPS
  std::string doh_ca;  // --doh-ca: the CA to trust for it
};

// The paths to the server (docs/paths.md): the proxy of this run, the relays stored in the
// profile's sealed settings, and the path that worked last. The link factory reads it when the
// messenger first needs the network (after the command line and the profile were read).
constexpr std::string_view kRelaysSetting = "paths.relays";        // relay links, one a line (they hold secrets)
constexpr std::string_view kPreferredSetting = "paths.preferred";  // "relay HOST:PORT" / "direct HOST:PORT"

struct PathConfig {
  std::mutex mutex;
  std::optional<net::ProxyConfig> proxy;
  std::optional<net::DohConfig> doh;
  std::vector<Invite> relays;
  std::optional<std::string> preferred;
  std::optional<std::string> switched_to;  // a path that worked after another: stored at exit
};

std::vector<Invite> parse_relay_lines(const std::string& text) {
  std::vector<Invite> relays;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto parsed = parse_invite(line);
    if (parsed.ok() && parsed->relay) relays.push_back(*parsed);
  }
  return relays;
}

std::string relay_lines(const std::vector<Invite>& relays) {
  std::string text;
  for (const auto& r : relays) text += r.to_string() + "\n";
  return text;
}

std::string default_profile() {
  if (const char* env = std::getenv("POSTERN_PROFILE"); env != nullptr && *env != '\0') return env;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/postern";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return std::string(home) + "/.local/share/postern";
  return ".postern";
}

int report(const Globals& g, const Failure& f) {
  std::lock_guard lock(g_out);
  std::cerr << "postern: " << f.message << "\n";
  for (const auto& field : f.fields) std::cerr << "  " << field.field << ": " << field.message << "\n";
  if (f.retry_after_s > 0) std::cerr << "  try again in " << f.retry_after_s << " s\n";
  if (g.json_output) {
    json fields = json::array();
    for (const auto& field : f.fields) fields.push_back({{"field", field.field}, {"message", field.message}});
    json err = {{"message", f.message}, {"code", f.server_code.empty() ? f.code.message() : f.server_code}, {"fields", fields}};
    if (f.http_status != 0) err["status"] = f.http_status;
    err["cause"] = std::string(f.code.category().name()) + ":" + std::to_string(f.code.value());
    if (f.retry_after_s > 0) err["retry_after_s"] = f.retry_after_s;
    std::cout << json{{"ok", false}, {"error", err}}.dump() << std::endl;
  }
  return exit_code_for(f);
}

void print_json(const json& j) {
  std::lock_guard lock(g_out);
  std::cout << j.dump() << std::endl;
}

void print_line(const std::string& s) {
  std::lock_guard lock(g_out);
  std::cout << s << std::endl;
}

void print_event(const Globals& g, const Event& e) {
  if (g.json_output) {
    print_json(event_json(e));
  } else {
    print_line(event_text(e));
  }
}

std::unique_ptr<Messenger> open_messenger(const Globals& g, crypto::Rng& rng, const Clock& clock, Failure& failure,
                                          std::shared_ptr<PathConfig> paths) {
  MessengerConfig config;
  config.profile_dir = g.profile;
  // One HttpsLink when the profile has no relays; else a MultiPathLink over direct + relays
  // (path_link.h), which also reopens a delivery socket whose path died. Both honour --proxy.
  config.link_factory = [paths](const Invite& invite) -> Result<std::unique_ptr<ServerLink>> {
    std::lock_guard lock(paths->mutex);
    net::HttpsLinkOptions options;
    options.proxy = paths->proxy;
    options.doh = paths->doh;
    std::vector<Invite> relays;
    for (const auto& r : paths->relays)
      if (invite.server_key && r.server_key == invite.server_key && r.to_string() != invite.to_string()) relays.push_back(r);
    if (relays.empty()) return std::unique_ptr<ServerLink>(std::make_unique<net::HttpsLink>(invite, options));
    net::MultiPathOptions multi;
    multi.preferred = paths->preferred;
    multi.on_switch = [weak = std::weak_ptr<PathConfig>(paths)](const std::string& key) {
      if (auto p = weak.lock()) {
        std::lock_guard inner(p->mutex);
        p->switched_to = key;
      }
    };
    return std::unique_ptr<ServerLink>(net::make_multi_path_link(invite, relays, options, std::move(multi)));
  };
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  config.device_name = g.device_name.empty() ? std::string(host) : g.device_name;
  if (!g.passphrase_file.empty()) {
    std::ifstream in(g.passphrase_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      failure = Failure::from(make_error_code(Errc::file_error), "cannot read the passphrase file " + g.passphrase_file);
      return nullptr;
    }
    config.store.passphrase = line;
  } else if (const char* env = std::getenv("POSTERN_PASSPHRASE"); env != nullptr && *env != '\0') {
    config.store.passphrase = env;
  }
  if (const std::string problem = apply_profile_config(g.profile, config); !problem.empty()) {
    failure = Failure::from(make_error_code(Errc::invalid_argument), problem);
    return nullptr;
  }
  // The environment overrides the profile's file for the identity policy (tests, one-off runs).
  if (const char* policy = std::getenv("POSTERN_IDENTITY_POLICY"); policy != nullptr && std::string(policy) == "warn")
    config.identity_policy = IdentityChangePolicy::warn_and_trust;
  auto opened = Messenger::open(std::move(config), rng, clock);
  if (!opened.ok()) {
    failure = opened.failure();
    return nullptr;
  }
  return std::move(opened).value();
}

std::string read_password(const std::string& given, const std::string& prompt) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("POSTERN_PASSWORD"); env != nullptr && *env != '\0') return env;
  return cli::read_secret(prompt).value_or("");
}

Target make_target(const std::string& to, const std::string& group) { return Target{to, group}; }

int run_chat(const Globals& g, Messenger& m, const Target& target) {
  std::atomic<bool> stop{false};
  std::thread receiver([&] {
    ReceiveOptions options;
    options.idle_timeout = std::chrono::milliseconds(-1);
    options.stop = &stop;
    options.mark_read = true;
    while (!stop.load()) {
      auto r = m.receive(options, [&](const Event& e) { print_event(g, e); });
      if (!r.ok()) {
        report(g, r.failure());
        if (exit_code_for(r.failure()) != 3) break;
        std::this_thread::sleep_for(std::chrono::seconds(2));
      }
    }
  });
  auto history = m.history(target, 20);
  if (history.ok())
    for (const auto& msg : *history) print_event(g, Event{Event::Kind::message, msg, 0, {}, {}, {}, false, {}, {}, 0, {}});
  (void)m.mark_read(target);
  if (!g.json_output) print_line("-- chatting with " + (target.is_group() ? target.group : target.email) + "; /quit to leave --");
  int code = 0;
  cli::RawMode raw;
  std::string line;
  bool typing = false;
  auto last_key = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    if (raw.active()) {
      char c = 0;
      const auto n = ::read(STDIN_FILENO, &c, 1);
      const auto now = std::chrono::steady_clock::now();
      if (n <= 0) {
        if (typing && now - last_key > std::chrono::seconds(3)) {
          (void)m.send_typing(target, false);
          typing = false;
        }
        continue;
      }
      last_key = now;
      if (c == 4) break;  // Ctrl-D
      if (c == 127 || c == 8) {
        if (!line.empty()) {
          line.pop_back();
          std::fputs("\b \b", stdout);
          std::fflush(stdout);
        }
        continue;
      }
      if (c != '\n' && c != '\r') {
        line += c;
        std::fputc(c, stdout);
        std::fflush(stdout);
        if (!typing) {
          (void)m.send_typing(target, true);
          typing = true;
        }
        continue;
      }
      std::fputc('\n', stdout);
    } else if (!std::getline(std::cin, line)) {
      break;
    }
    if (line == "/quit") break;
    if (!line.empty()) {
      auto sent = m.send_text(target, line);
      if (!sent.ok()) {
        code = report(g, sent.failure());
      } else if (g.json_output) {
        json j = message_json(*sent);
        j["event"] = "sent";
        print_json(j);
      }
    }
    typing = false;
    line.clear();
  }
  stop.store(true);
  receiver.join();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  CLI::App app{"Postern: end-to-end encrypted messages, pictures, video and files"};
  app.require_subcommand(1);
  Globals g;
  g.profile = default_profile();
  app.add_option("--profile", g.profile, "profile directory (keys, history, files)");
  app.add_flag("--json", g.json_output, "print one JSON object per line");
  app.add_option("--passphrase-file", g.passphrase_file, "encrypt the profile under the passphrase in this file (default: a key file in the profile; also POSTERN_PASSPHRASE)");
  app.add_option("--device-name", g.device_name, "this device's name at login (default: the host name)");
  app.add_option("--proxy", g.proxy, "connect through this proxy for this run: socks5://[USER:PASS@]HOST:PORT or http://[USER:PASS@]HOST:PORT (docs/paths.md)")
      ->envname("POSTERN_PROXY");
  app.add_option("--doh", g.doh, "resolve the server's name through this DNS-over-HTTPS server, e.g. https://dns.example/dns-query (docs/paths.md)")
      ->envname("POSTERN_DOH");
  app.add_option("--doh-ca", g.doh_ca, "trust this CA certificate (PEM) for the --doh server");

  std::string relay_arg;
  auto* relays_cmd = app.add_subcommand("relays", "other paths to the server: relays (docs/paths.md)");
  relays_cmd->require_subcommand(1);
  auto* relays_add = relays_cmd->add_subcommand("add", "add a relay's share link (postern://relay@...)");
  relays_add->add_option("LINK", relay_arg, "the link, or a file holding it")->required();
  auto* relays_list = relays_cmd->add_subcommand("list", "list the relays (HOST:PORT; never their secrets)");
  auto* relays_remove = relays_cmd->add_subcommand("remove", "remove a relay");
  relays_remove->add_option("HOST:PORT", relay_arg)->required();

  app::DoctorArgs doctor_args;
  auto* doctor_cmd = app.add_subcommand("doctor", "check every path to the server and say what is blocked (docs/doctor.md)");
  app::add_doctor_options(*doctor_cmd, doctor_args);

  std::string invite_arg;
  auto* join = app.add_subcommand("join", "store the server from an invite link (or a file holding one)");
  join->add_option("INVITE", invite_arg)->required();

  std::string email, password, birthdate;
  bool accept_terms = false;
  auto* reg = app.add_subcommand("register", "create an account; this profile becomes its first device");
  reg->add_option("--email", email)->required();
  reg->add_option("--password", password, "at least 6 characters with an upper-case letter, a lower-case letter and a number (or POSTERN_PASSWORD, or a prompt)");
  reg->add_option("--birthdate", birthdate, "YYYY-MM-DD; you must be at least 18")->required();
  reg->add_flag("--accept-terms", accept_terms, "accept the terms of service");

  auto* login = app.add_subcommand("login", "sign this profile in to an existing account (a new device)");
  login->add_option("--email", email)->required();
  login->add_option("--password", password);
  auto* logout = app.add_subcommand("logout", "end this device's session");

  std::string to, group, text, file, caption;
  auto* send = app.add_subcommand("send", "send a message, a picture, a video or a file");
  auto* to_opt = send->add_option("--to", to, "the recipient's e-mail address");
  auto* group_opt = send->add_option("--group", group, "a group's name or id");
  to_opt->excludes(group_opt);
  auto* text_opt = send->add_option("--text", text);
  auto* file_opt = send->add_option("--file", file);
  text_opt->excludes(file_opt);
  send->add_option("--caption", caption);

  double timeout_s = 5;
  bool mark_read = false;
  auto* receive = app.add_subcommand("receive", "receive and print what arrived, then acknowledge it");
  receive->add_option("--timeout", timeout_s, "seconds to wait for more after the queue is drained (negative: forever)");
  receive->add_flag("--mark-read", mark_read, "count printed messages as read (read receipts, timers start)");

  std::string peer;
  auto* chat = app.add_subcommand("chat", "interactive conversation");
  chat->add_option("EMAIL", peer);
  chat->add_option("--group", group);
  std::size_t limit = 50;
  auto* history = app.add_subcommand("history", "show a conversation (marks it read)");
  history->add_option("EMAIL", peer);
  history->add_option("--group", group);
  history->add_option("--limit", limit);

  auto* contacts = app.add_subcommand("contacts", "contacts");
  contacts->require_subcommand(1);
  auto* contacts_add = contacts->add_subcommand("add", "add a contact by e-mail");
  contacts_add->add_option("EMAIL", peer)->required();
  auto* contacts_list = contacts->add_subcommand("list", "list contacts");

  std::string group_name, new_name;
  std::vector<std::string> members;
  auto* groups = app.add_subcommand("groups", "groups");
  groups->require_subcommand(1);
  auto* groups_create = groups->add_subcommand("create", "create a group");
  groups_create->add_option("NAME", group_name)->required();
  groups_create->add_option("--members", members, "e-mail addresses")->delimiter(',');
  auto* groups_add = groups->add_subcommand("add", "add members");
  groups_add->add_option("GROUP", group_name)->required();
  groups_add->add_option("EMAILS", members)->required();
  auto* groups_remove = groups->add_subcommand("remove", "remove members (they cannot read anything sent afterwards)");
  groups_remove->add_option("GROUP", group_name)->required();
  groups_remove->add_option("EMAILS", members)->required();
  auto* groups_rename = groups->add_subcommand("rename", "rename a group");
  groups_rename->add_option("GROUP", group_name)->required();
  groups_rename->add_option("NEW_NAME", new_name)->required();
  auto* groups_list = groups->add_subcommand("list", "list groups");

  std::uint32_t device_id = 0;
  auto* devices = app.add_subcommand("devices", "this account's devices");
  devices->require_subcommand(1);
  auto* devices_list = devices->add_subcommand("list", "list devices");
  std::string link_code;
  bool approve_yes = false;
  double link_wait_s = 600;
  auto* devices_link = devices->add_subcommand(
      "link", "without CODE: show a one-time link code and QR for a new device, then approve it; with CODE (on the new device, a new --profile): join the account");
  devices_link->add_option("CODE", link_code);
  devices_link->add_flag("--yes", approve_yes, "approve the new device without asking");
  devices_link->add_option("--timeout", link_wait_s, "seconds to wait for the other device");
  auto* devices_remove = devices->add_subcommand("remove", "remove a device (it stops receiving)");
  devices_remove->add_option("ID", device_id)->required();

  bool accept = false, mark_verified = false, unverify = false;
  auto* verify = app.add_subcommand("verify", "show the safety number with a contact, as digits and a QR code");
  verify->add_option("EMAIL", peer)->required();
  verify->add_flag("--accept", accept, "accept the contact's changed key");
  verify->add_flag("--mark-verified", mark_verified, "mark the contact verified (after comparing the numbers)");
  verify->add_flag("--unverify", unverify, "clear the verified mark");

  std::uint32_t seconds = 0;
  auto* timer = app.add_subcommand("timer", "disappearing messages: set a conversation's timer (0 turns it off)");
  timer->add_option("--to", to);
  timer->add_option("--group", group);
  timer->add_option("SECONDS", seconds)->required();

  DaemonOptions daemon_options;
  auto* daemon_cmd = app.add_subcommand("daemon", "stay connected and serve JSON-RPC 2.0 to other programs (docs/client-api.md)");
  auto* socket_opt = daemon_cmd->add_option("--socket", daemon_options.socket_path, "the Unix socket (default: PROFILE/postern.sock)");
  daemon_cmd->add_flag("--stdio", daemon_options.use_stdio, "serve on stdin/stdout instead of the socket")->excludes(socket_opt);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  auto paths = std::make_shared<PathConfig>();
  if (!g.proxy.empty()) {
    auto proxy = net::parse_proxy_url(g.proxy);
    if (!proxy.ok()) {
      std::cerr << "postern: --proxy: " << net::explain_proxy_url_error(g.proxy) << "\n";
      return 2;
    }
    paths->proxy = *proxy;
  }
  if (!g.doh.empty()) {
    if (!net::valid_doh_url(g.doh)) {
      std::cerr << "postern: --doh: the URL must be https://HOST[:PORT]/PATH\n";
      return 2;
    }
    paths->doh = net::DohConfig{g.doh, g.doh_ca.empty() ? std::nullopt : std::optional<std::string>(g.doh_ca)};
  }

  crypto::SystemRng rng;
  SystemClock clock;
  Failure failure;
  auto m = open_messenger(g, rng, clock, failure, paths);
  if (!m) return report(g, failure);
  {
    auto stored = m->store().setting_text(kRelaysSetting);
    auto preferred = m->store().setting_text(kPreferredSetting);
    std::lock_guard lock(paths->mutex);
    if (stored.ok() && *stored) paths->relays = parse_relay_lines(**stored);
    if (preferred.ok() && *preferred) paths->preferred = **preferred;
  }
  // The path that worked last is remembered for the next run (sealed, like the relays).
  struct RememberPath {
    Messenger& m;
    std::shared_ptr<PathConfig> paths;
    ~RememberPath() {
      std::optional<std::string> key;
      {
        std::lock_guard lock(paths->mutex);
        key = paths->switched_to;
      }
      if (key) (void)m.store().set_setting_text(kPreferredSetting, *key);
    }
  } remember{*m, paths};

  auto done = [&](const json& j, const std::string& human) {
    if (g.json_output) {
      json out = j;
      out["ok"] = true;
      print_json(out);
    } else if (!human.empty()) {
      print_line(human);
    }
    return 0;
  };

  if (relays_add->parsed() || relays_list->parsed() || relays_remove->parsed()) {
    std::vector<Invite> relays;
    {
      std::lock_guard lock(paths->mutex);
      relays = paths->relays;
    }
    if (relays_list->parsed()) {
      for (const auto& r : relays) {
        if (g.json_output) {
          print_json({{"relay", net::host_port(r)}, {"host", r.host}, {"port", r.port}});
        } else {
          print_line(net::host_port(r));
        }
      }
      return 0;
    }
    auto store_relays = [&](const std::vector<Invite>& list) -> int {
      auto s = list.empty() ? m->store().delete_setting(kRelaysSetting) : m->store().set_setting_text(kRelaysSetting, relay_lines(list));
      if (!s.ok()) return report(g, Failure::from(s.error(), "cannot store the relays in the profile"));
      return 0;
    };
    if (relays_remove->parsed()) {
      const auto before = relays.size();
      std::erase_if(relays, [&](const Invite& r) { return net::host_port(r) == relay_arg; });
      if (relays.size() == before)
        return report(g, Failure::from(make_error_code(Errc::invalid_argument), "no relay " + relay_arg + " (see `postern relays list`)"));
      if (int code = store_relays(relays); code != 0) return code;
      return done({{"removed", relay_arg}}, "removed relay " + relay_arg);
    }
    std::string link = relay_arg;
    std::error_code fec;
    if (!link.starts_with("postern://") && std::filesystem::is_regular_file(link, fec)) {
      std::ifstream in(link);
      std::getline(in, link);
    }
    auto parsed = parse_invite(link);
    if (!parsed.ok())
      return report(g, Failure::from(make_error_code(Errc::bad_invite), "invalid relay link: " + explain_invite_error(link)));
    if (!parsed->relay)
      return report(g, Failure::from(make_error_code(Errc::bad_invite),
                                     "this is a server invite, not a relay link (postern://relay@HOST:PORT?...)"));
    const auto server = m->invite();
    if (!server) return report(g, Failure::from(make_error_code(Errc::not_registered), "no server yet: run `postern join INVITE` first"));
    if (!server->server_key)
      return report(g, Failure::from(make_error_code(Errc::not_allowed),
                                     "the joined invite has no key=: relays need a server with the inner channel"));
    if (parsed->server_key != server->server_key)
      return report(g, Failure::from(make_error_code(Errc::not_allowed), "this relay leads to another server (its key= is not your server's key)"));
    const std::string name = net::host_port(*parsed);
    std::erase_if(relays, [&](const Invite& r) { return net::host_port(r) == name; });  // a new link for the same relay replaces the old
    relays.push_back(*parsed);
    if (int code = store_relays(relays); code != 0) return code;
    return done({{"relay", name}, {"relays", relays.size()}}, "added relay " + name);
  }
  if (doctor_cmd->parsed()) {
    const auto server = m->invite();
    if (!server) return report(g, Failure::from(make_error_code(Errc::not_registered), "no server yet: run `postern join INVITE` first"));
    std::vector<Invite> relays;
    {
      std::lock_guard lock(paths->mutex);
      for (const auto& r : paths->relays)
        if (server->server_key && r.server_key == server->server_key && r.to_string() != server->to_string()) relays.push_back(r);
    }
    return app::run_doctor_command(*server, relays, doctor_args, g.json_output);
  }
  if (join->parsed()) {
    std::string link = invite_arg;
    std::error_code ec;
    if (!invite_arg.starts_with("postern://") && std::filesystem::is_regular_file(invite_arg, ec)) {
      std::ifstream in(invite_arg);
      std::getline(in, link);
    }
    auto r = m->join(link);
    if (!r.ok()) return report(g, r.failure());
    const auto inv = m->invite();
    return done({{"server", inv->host + ":" + std::to_string(inv->port)}}, "joined " + inv->host + ":" + std::to_string(inv->port));
  }
  if (reg->parsed()) {
    if (password.empty()) password = read_password("", "password: ");
    RegisterForm form{email, password, birthdate, accept_terms};
    const bool tty = cli::stderr_is_terminal();
    auto r = m->register_account(form, [&](std::uint64_t tried) {
      if (tty) std::fprintf(stderr, "\rsolving the anti-bot challenge: %llu hashes", static_cast<unsigned long long>(tried));
      return !g_stop.load();
    });
    if (tty) std::fprintf(stderr, "\r%60s\r", "");
    if (!r.ok()) return report(g, r.failure());
    return done({{"account_id", m->account_id()}, {"device_id", m->device_id()}, {"email", m->email()}},
                "registered " + m->email() + " (account " + std::to_string(m->account_id()) + "); this is device " +
                    std::to_string(m->device_id()));
  }
  if (login->parsed()) {
    password = read_password(password, "password: ");
    auto r = m->login(email, password);
    if (!r.ok()) return report(g, r.failure());
    return done({{"account_id", m->account_id()}, {"device_id", m->device_id()}, {"email", m->email()}},
                "signed in as " + m->email() + "; this is device " + std::to_string(m->device_id()));
  }
  if (logout->parsed()) {
    auto r = m->logout();
    if (!r.ok()) return report(g, r.failure());
    return done(json::object(), "signed out");
  }
  if (send->parsed()) {
    if (to.empty() == group.empty()) return report(g, Failure::from(make_error_code(Errc::invalid_argument), "give --to EMAIL or --group NAME"));
    if (text.empty() == file.empty()) return report(g, Failure::from(make_error_code(Errc::invalid_argument), "give --text TEXT or --file PATH"));
    const Target target = make_target(to, group);
    Outcome<MessageView> r = Failure{};
    if (!file.empty()) {
      cli::ProgressBar bar("upload " + std::filesystem::path(file).filename().string());
      r = m->send_file(target, file, caption, [&](std::uint64_t d, std::uint64_t t) { bar.update(d, t); });
      bar.finish();
    } else {
      r = m->send_text(target, text);
    }
    if (!r.ok()) return report(g, r.failure());
    return done(message_json(*r), message_text(*r));
  }
  if (receive->parsed()) {
    ReceiveOptions options;
    options.idle_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
    options.stop = &g_stop;
    options.mark_read = mark_read;
    // Fault injection for the crash-safety test (docs/client.md): die like a power cut right
    // after the first envelope is stored, before it is shown or acknowledged.
    if (const char* fault = std::getenv("POSTERN_FAULT_INJECTION"); fault != nullptr && std::string(fault) == "kill-after-commit")
      options.after_commit = [] { ::raise(SIGKILL); };
    auto r = m->receive(options, [&](const Event& e) { print_event(g, e); });
    if (!r.ok()) return report(g, r.failure());
    return 0;
  }
  if (chat->parsed()) {
    if (peer.empty() == group.empty()) return report(g, Failure::from(make_error_code(Errc::invalid_argument), "give EMAIL or --group NAME"));
    return run_chat(g, *m, make_target(peer, group));
  }
  if (history->parsed()) {
    if (peer.empty() == group.empty()) return report(g, Failure::from(make_error_code(Errc::invalid_argument), "give EMAIL or --group NAME"));
    const Target target = make_target(peer, group);
    auto r = m->history(target, limit);
    if (!r.ok()) return report(g, r.failure());
    for (const auto& msg : *r) {
      if (g.json_output) {
        print_json(message_json(msg));
      } else {
        print_line(message_text(msg));
      }
    }
    (void)m->mark_read(target);
    return 0;
  }
  if (contacts_add->parsed()) {
    auto r = m->add_contact(peer);
    if (!r.ok()) return report(g, r.failure());
    return done({{"email", r->email}, {"account_id", r->account_id}}, "added " + r->email);
  }
  if (contacts_list->parsed()) {
    auto r = m->contacts();
    if (!r.ok()) return report(g, r.failure());
    for (const auto& c : *r) {
      if (g.json_output) {
        print_json(json{{"email", c.email}, {"account_id", c.account_id}, {"verified", c.verified}, {"identity_changed", c.identity_blocked}});
      } else {
        print_line(c.email + (c.verified ? "  (verified)" : "") + (c.identity_blocked ? "  (safety number changed)" : ""));
      }
    }
    return 0;
  }
  if (groups_create->parsed() || groups_add->parsed() || groups_remove->parsed() || groups_rename->parsed()) {
    Outcome<GroupView> r = Failure{};
    if (groups_create->parsed()) r = m->create_group(group_name, members);
    if (groups_add->parsed()) r = m->add_members(group_name, members);
    if (groups_remove->parsed()) r = m->remove_members(group_name, members);
    if (groups_rename->parsed()) r = m->rename_group(group_name, new_name);
    if (!r.ok()) return report(g, r.failure());
    return done(group_json(*r), group_text(*r));
  }
  if (groups_list->parsed()) {
    auto r = m->groups();
    if (!r.ok()) return report(g, r.failure());
    for (const auto& v : *r) {
      if (g.json_output) {
        print_json(group_json(v));
      } else {
        print_line(group_text(v));
      }
    }
    return 0;
  }
  if (devices_list->parsed()) {
    auto r = m->devices();
    if (!r.ok()) return report(g, r.failure());
    for (const auto& d : *r) {
      if (g.json_output) {
        print_json(json{{"id", d.id}, {"name", d.name}, {"created_ms", d.created_ms}, {"last_seen_ms", d.last_seen_ms}, {"current", d.current}});
      } else {
        print_line(std::to_string(d.id) + "  " + d.name + (d.current ? "  (this device)" : "") + "  last seen " + clock_text(d.last_seen_ms));
      }
    }
    return 0;
  }
  if (devices_link->parsed()) {
    const auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(link_wait_s * 1000));
    if (!link_code.empty()) {
      std::string code = link_code;
      std::error_code ec;
      if (!code.starts_with("postern://") && std::filesystem::is_regular_file(code, ec)) {
        std::ifstream in(code);
        std::getline(in, code);
      }
      if (!g.json_output) print_line("waiting for your other device to approve this one...");
      auto r = m->accept_link(code, g.device_name.empty() ? "linked device" : g.device_name, wait, &g_stop);
      if (!r.ok()) return report(g, r.failure());
      return done({{"account_id", m->account_id()}, {"device_id", m->device_id()}, {"email", m->email()}},
                  "this profile is now device " + std::to_string(m->device_id()) + " of " + m->email());
    }
    auto offer = m->offer_link();
    if (!offer.ok()) return report(g, offer.failure());
    if (g.json_output) {
      print_json({{"event", "link_offer"}, {"code", offer->code}, {"expires_ms", offer->expires_ms}});
    } else {
      print_line("On the new device run:\n  postern --profile NEW_PROFILE devices link '" + offer->code + "'\nor scan:");
      auto qr = qr_terminal_lines(ByteView(reinterpret_cast<const std::uint8_t*>(offer->code.data()), offer->code.size()));
      if (qr.ok())
        for (const auto& l : *qr) print_line(l);
    }
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::optional<LinkRequest> request;
    while (!request) {
      if (g_stop.load() || std::chrono::steady_clock::now() >= deadline)
        return report(g, Failure::from(make_error_code(Errc::timeout), "no device answered the link in time"));
      auto polled = m->poll_link(*offer);
      if (!polled.ok()) return report(g, polled.failure());
      request = *polled;
      if (!request) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    if (!approve_yes) {
      if (!cli::stdin_is_terminal())
        return report(g, Failure::from(make_error_code(Errc::not_allowed), "a device asked to join; approve with --yes or on a terminal"));
      std::fprintf(stderr, "Add the device \"%s\" to your account? It will read all new messages. [y/N] ", request->device_name.c_str());
      std::string answer;
      if (!std::getline(std::cin, answer) || (answer != "y" && answer != "Y" && answer != "yes"))
        return report(g, Failure::from(make_error_code(Errc::not_allowed), "not approved"));
    }
    auto approved = m->approve_link(*offer, *request);
    if (!approved.ok()) return report(g, approved.failure());
    return done({{"device_id", *approved}, {"name", request->device_name}},
                "added device " + std::to_string(*approved) + " (" + request->device_name + ")");
  }
  if (devices_remove->parsed()) {
    auto r = m->remove_device(device_id);
    if (!r.ok()) return report(g, r.failure());
    return done({{"removed", device_id}}, "removed device " + std::to_string(device_id));
  }
  if (verify->parsed()) {
    if (accept) {
      auto r = m->accept_identity(peer);
      if (!r.ok()) return report(g, r.failure());
    }
    if (mark_verified || unverify) {
      auto r = m->set_verified(peer, mark_verified);
      if (!r.ok()) return report(g, r.failure());
    }
    auto r = m->safety_number(peer);
    if (!r.ok()) return report(g, r.failure());
    if (g.json_output) {
      print_json({{"ok", true}, {"email", peer}, {"safety_number", r->digits}, {"verified", r->verified}, {"changed", r->changed}});
      return 0;
    }
    std::string grouped;
    for (std::size_t i = 0; i < r->digits.size(); i += 5) grouped += r->digits.substr(i, 5) + (i % 20 == 15 ? "\n" : " ");
    print_line("Safety number with " + peer + (r->verified ? " (verified)" : "") + ":\n" + grouped);
    if (r->changed)
      print_line("This safety number CHANGED. Compare it with " + peer + " in person or on a call, then run: postern verify " + peer +
                 " --accept");
    auto qr = qr_terminal_lines(r->scannable);
    if (qr.ok())
      for (const auto& l : *qr) print_line(l);
    return 0;
  }
  if (timer->parsed()) {
    if (to.empty() == group.empty()) return report(g, Failure::from(make_error_code(Errc::invalid_argument), "give --to EMAIL or --group NAME"));
    auto r = m->set_expire_timer(make_target(to, group), seconds);
    if (!r.ok()) return report(g, r.failure());
    return done({{"expire_timer_s", seconds}},
                seconds ? "messages now disappear " + std::to_string(seconds) + " s after they are read" : "disappearing messages off");
  }
  if (daemon_cmd->parsed()) {
    if (daemon_options.socket_path.empty()) daemon_options.socket_path = (std::filesystem::path(g.profile) / "postern.sock").string();
    daemon_options.stop = &g_stop;
    return run_daemon(*m, daemon_options);
  }
  return 2;
}
