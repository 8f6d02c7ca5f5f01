// `postern daemon` (docs/client-api.md). Three threads:
// - the calling thread owns every descriptor: a poll() loop over the listening socket, its clients
//   (or stdin/stdout) and a wake-up pipe. It cuts input into lines, queues them for the worker and
//   writes what the other threads left in the mailbox. Clients are non-blocking, so one that stops
//   reading only fills its own buffer (and is dropped past kMaxPendingOutput);
// - the worker parses each line and runs the calls one at a time, in arrival order (the Messenger
//   serialises its calls with one mutex anyway, so more workers would only wait on it);
// - the receiver keeps Messenger::receive running and turns each event into a notification for
//   every client. It reconnects with backoff (1 s doubling to 30 s); a device logged out or
//   removed elsewhere (close code 4001) stops the daemon with exit code 1.
// Nothing here logs a parameter, a password, a token or an address: only counts and states.
#include "daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "views.h"

#ifndef POSTERN_VERSION
#define POSTERN_VERSION "unknown"
#endif

namespace postern::cli {
namespace {

using nlohmann::json;
using namespace postern::client;
using namespace std::chrono_literals;

constexpr std::size_t kMaxClients = 16;
constexpr std::size_t kMaxLineBytes = 1U << 20;       // one request (or batch) per line
constexpr std::size_t kMaxPendingOutput = 64U << 20;  // a client this far behind is dropped
constexpr std::size_t kMaxQueuedPerClient = 32;       // lines queued for the worker before reading pauses
constexpr std::size_t kReadChunk = 64U << 10;
constexpr auto kBackoffFirst = 1s;
constexpr auto kBackoffMax = 30s;

// JSON-RPC 2.0 error codes. A Messenger failure is -32000 minus the CLI's exit code for it
// (-32001 refused, -32003 unreachable, -32004 local, -32005 security stop); -32000 itself is a
// limit of the daemon (too many clients, a line too long).
constexpr int kParseError = -32700;
constexpr int kInvalidRequest = -32600;
constexpr int kMethodNotFound = -32601;
constexpr int kInvalidParams = -32602;
constexpr int kInternalError = -32603;
constexpr int kDaemonLimit = -32000;

std::mutex g_log;

void log_line(const std::string& text) {
  std::lock_guard lock(g_log);
  std::cerr << "postern daemon: " << text << std::endl;
}

// Never throws on invalid UTF-8 (a peer's message text is not ours to trust).
std::string dump_line(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

json error_object(const json& id, int code, const std::string& message, const json& data = nullptr) {
  json err = {{"code", code}, {"message", message}};
  if (!data.is_null()) err["data"] = data;
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", err}};
}

struct RpcError {
  int code = kInternalError;
  std::string message;
  json data;
};

// A method's answer: a result, or an error.
struct Answer {
  Answer(json r) : result(std::move(r)) {}     // NOLINT: implicit on purpose
  Answer(RpcError e) : error(std::move(e)) {}  // NOLINT
  json result;
  std::optional<RpcError> error;
};

RpcError failure_error(const Failure& f) {
  json fields = json::array();
  for (const auto& field : f.fields) fields.push_back({{"field", field.field}, {"message", field.message}});
  const int exit_code = exit_code_for(f);
  json data = {
      {"message", f.message}, {"code", failure_code(f)}, {"fields", fields}, {"exit_code", exit_code}};
  if (f.http_status != 0) data["status"] = f.http_status;
  if (f.retry_after_s > 0) data["retry_after_s"] = f.retry_after_s;
  return RpcError{-32000 - exit_code, f.message, data};
}

// The named params of one call, checked as they are read: the first problem is kept and becomes
// a -32602 naming the param.
class Params {
 public:
  explicit Params(const json& p) : p_(p) {}

  bool ok() const { return !error_; }
  RpcError error() const { return RpcError{kInvalidParams, *error_, nullptr}; }

  // Refuses members the method does not take (a misspelt optional param would otherwise be
  // silently ignored).
  void only(std::initializer_list<const char*> names) {
    for (auto it = p_.begin(); it != p_.end(); ++it) {
      if (std::none_of(names.begin(), names.end(), [&](const char* n) { return it.key() == n; }))
        fail("unknown param '" + it.key() + "'");
    }
  }

  bool has(const char* name) const { return p_.contains(name); }

  std::optional<std::string> text(const char* name, bool required = true, bool allow_empty = false) {
    const json* v = find(name, required);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string() || (!allow_empty && v->get_ref<const std::string&>().empty())) {
      fail("param '" + std::string(name) + "' must be a " + (allow_empty ? "string" : "non-empty string"));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  std::optional<bool> boolean(const char* name, bool required = true) {
    const json* v = find(name, required);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) {
      fail("param '" + std::string(name) + "' must be true or false");
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::optional<std::int64_t> integer(const char* name, std::int64_t min, std::int64_t max,
                                      bool required = true) {
    const json* v = find(name, required);
    if (v == nullptr) return std::nullopt;
    bool in_range = false;
    std::int64_t n = 0;
    if (v->is_number_unsigned()) {
      const auto u = v->get<std::uint64_t>();
      in_range = u <= static_cast<std::uint64_t>(max);
      n = static_cast<std::int64_t>(u);
    } else if (v->is_number_integer()) {
      n = v->get<std::int64_t>();
      in_range = n >= min && n <= max;
    }
    if (!in_range || n < min) {
      fail("param '" + std::string(name) + "' must be an integer from " + std::to_string(min) + " to " +
           std::to_string(max));
      return std::nullopt;
    }
    return n;
  }

  std::optional<std::vector<std::string>> text_list(const char* name, bool allow_empty_list) {
    const json* v = find(name, true);
    if (v == nullptr) return std::nullopt;
    const bool strings = v->is_array() && std::all_of(v->begin(), v->end(), [](const json& x) {
                           return x.is_string() && !x.get_ref<const std::string&>().empty();
                         });
    if (!strings || (!allow_empty_list && v->empty())) {
      fail("param '" + std::string(name) + "' must be " + (allow_empty_list ? "an" : "a non-empty") +
           " array of non-empty strings");
      return std::nullopt;
    }
    return v->get<std::vector<std::string>>();
  }

  // A conversation: exactly one of "to" (an e-mail address) and "group" (a name or hex id).
  std::optional<Target> target() {
    if (has("to") == has("group")) {
      fail("give exactly one of the params 'to' and 'group'");
      return std::nullopt;
    }
    Target t;
    if (has("to")) {
      auto to = text("to");
      if (!to) return std::nullopt;
      t.email = *to;
    } else {
      auto group = text("group");
      if (!group) return std::nullopt;
      t.group = *group;
    }
    return t;
  }

 private:
  const json* find(const char* name, bool required) {
    auto it = p_.find(name);
    if (it == p_.end()) {
      if (required) fail("missing param '" + std::string(name) + "'");
      return nullptr;
    }
    return &*it;
  }
  void fail(std::string message) {
    if (!error_) error_ = std::move(message);
  }

  const json& p_;
  std::optional<std::string> error_;
};

class Daemon {
 public:
  Daemon(Messenger& m, const DaemonOptions& options) : m_(m), options_(options) {}
  ~Daemon() {
    for (int fd : wake_)
      if (fd >= 0) ::close(fd);
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int run();

 private:
  struct Client {
    std::uint64_t id = 0;
    int in_fd = -1;
    int out_fd = -1;
    bool is_socket = true;
    std::string in;           // bytes read, not yet a whole line
    std::string out;          // bytes waiting to be written
    bool closing = false;     // write what is queued, then close
    bool eof = false;         // the peer stopped sending: close once its calls are answered
    bool discarding = false;  // stdio: skipping the rest of a line that was too long
    bool dead = false;        // closed: remove
  };
  struct Job {
    std::uint64_t client = 0;
    std::string line;
  };
  struct Outgoing {
    std::uint64_t client = 0;  // 0: every client
    std::string text;
  };

  // ---- the I/O loop (calling thread) ----
  bool open_listener();
  void close_listener();
  void accept_clients();
  std::size_t live_clients() const;
  void reap_hung_up();
  void read_client(Client& c);
  void take_lines(Client& c);
  void reject_line(Client& c);
  void write_client(Client& c);
  void close_client(Client& c);
  void deliver_mail(const std::vector<Outgoing>& mail);
  void final_flush();
  bool stop_requested() const { return stop_.load() || (options_.stop != nullptr && options_.stop->load()); }

  // ---- cross-thread ----
  void post(std::uint64_t client, std::string text);
  void wake();
  void request_stop(int exit_code);

  // ---- the worker ----
  void worker_loop();
  std::optional<std::string> handle_line(const std::string& line);
  std::optional<json> handle_request(const json& request);
  Answer call(const std::string& method, Params& p);

  // ---- the receiver ----
  void receive_loop();
  void pause(std::chrono::milliseconds how_long);

  Messenger& m_;
  const DaemonOptions& options_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> receive_stop_{false};
  std::atomic<bool> logout_requested_{false};  // a logout through the daemon is not a removal
  std::atomic<bool> shutdown_after_reply_{false};
  std::atomic<int> exit_code_{0};

  int listen_fd_ = -1;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  int wake_[2] = {-1, -1};
  std::map<std::uint64_t, Client> clients_;
  std::uint64_t next_client_ = 1;

  // Shared by the three threads: the worker's queue, the count of lines queued per client, and
  // the mailbox of lines to write. One mutex, so a reply and its count change together.
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Job> jobs_;
  std::unordered_map<std::uint64_t, std::size_t> queued_;
  std::vector<Outgoing> mail_;
  bool worker_stop_ = false;
};

// ------------------------------------------------------------------ socket setup

bool Daemon::open_listener() {
  const std::string& path = options_.socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    log_line("the socket path must have 1 to " + std::to_string(sizeof addr.sun_path - 1) +
             " bytes: " + path);
    return false;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  const auto sa_len = static_cast<socklen_t>(sizeof addr);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      log_line(path + " exists and is not a socket; not replacing it");
      return false;
    }
    // A daemon that still answers keeps its socket; a file nobody listens on is stale.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      const bool live = ::connect(probe, sa, sa_len) == 0;
      ::close(probe);
      if (live) {
        log_line("another daemon is listening on " + path);
        return false;
      }
    }
    ::unlink(path.c_str());
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) {
    log_line(std::string("socket: ") + std::strerror(errno));
    return false;
  }
  // The file is created 0600 from the start (no window where others could connect); the threads
  // that might create files run only later, so the process-wide umask change is safe here.
  const mode_t old_mask = ::umask(0177);
  const int bound = ::bind(listen_fd_, sa, sa_len);
  const int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0 || ::listen(listen_fd_, static_cast<int>(kMaxClients)) != 0) {
    log_line("cannot listen on " + path + ": " + std::strerror(bound != 0 ? bind_errno : errno));
    ::close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  ::chmod(path.c_str(), 0600);
  if (::lstat(path.c_str(), &st) == 0) {
    socket_dev_ = st.st_dev;
    socket_ino_ = st.st_ino;
  }
  return true;
}

void Daemon::close_listener() {
  if (listen_fd_ < 0) return;
  ::close(listen_fd_);
  listen_fd_ = -1;
  // Only our own socket file: another daemon may have replaced it meanwhile.
  struct stat st {};
  if (::lstat(options_.socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_)
    ::unlink(options_.socket_path.c_str());
}

// ------------------------------------------------------------------ the I/O loop

int Daemon::run() {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    log_line(std::string("pipe: ") + std::strerror(errno));
    return 4;
  }
  if (options_.use_stdio) {
    Client c;
    c.id = next_client_++;
    c.in_fd = STDIN_FILENO;
    c.out_fd = STDOUT_FILENO;
    c.is_socket = false;
    clients_.emplace(c.id, std::move(c));
    log_line("serving JSON-RPC 2.0 on stdin/stdout");
  } else {
    if (!open_listener()) return 4;
    log_line("listening on " + options_.socket_path);
  }

  std::thread worker([this] { worker_loop(); });
  std::thread receiver([this] { receive_loop(); });

  std::vector<pollfd> fds;
  std::vector<std::uint64_t> owners;  // the client of each pollfd (0: the pipe or the listener)
  while (!stop_requested()) {
    fds.clear();
    owners.clear();
    fds.push_back({wake_[0], POLLIN, 0});
    owners.push_back(0);
    if (listen_fd_ >= 0) {
      fds.push_back({listen_fd_, POLLIN, 0});
      owners.push_back(0);
    }
    {
      std::lock_guard lock(mu_);
      for (auto& [id, c] : clients_) {
        const auto q = queued_.find(id);
        const bool reading = !c.eof && !c.closing && (q == queued_.end() || q->second < kMaxQueuedPerClient);
        const auto want_in = static_cast<short>(reading ? POLLIN : 0);
        const auto want_out = static_cast<short>(c.out.empty() ? 0 : POLLOUT);
        if (c.in_fd == c.out_fd) {
          fds.push_back({c.in_fd, static_cast<short>(want_in | want_out), 0});
          owners.push_back(id);
        } else {
          // stdin and stdout: only polled while wanted (a closed stdin would report POLLHUP forever).
          if (want_in != 0) {
            fds.push_back({c.in_fd, want_in, 0});
            owners.push_back(id);
          }
          if (want_out != 0) {
            fds.push_back({c.out_fd, want_out, 0});
            owners.push_back(id);
          }
        }
      }
    }
    const int ready = ::poll(fds.data(), fds.size(), 200);
    if (ready < 0 && errno != EINTR) {
      log_line(std::string("poll: ") + std::strerror(errno));
      request_stop(4);
      break;
    }
    if (ready > 0) {
      for (std::size_t i = 0; i < fds.size(); ++i) {
        const auto ev = fds[i].revents;
        if (ev == 0) continue;
        if (fds[i].fd == wake_[0]) {
          char buf[256];
          while (::read(wake_[0], buf, sizeof buf) > 0) {
          }
        } else if (fds[i].fd == listen_fd_ && owners[i] == 0) {
          accept_clients();
        } else if (auto it = clients_.find(owners[i]); it != clients_.end() && !it->second.dead) {
          Client& c = it->second;
          if (fds[i].fd == c.in_fd && (ev & (POLLIN | POLLHUP | POLLERR)) != 0 && !c.eof && !c.closing)
            read_client(c);
          if (!c.dead && fds[i].fd == c.out_fd && (ev & POLLOUT) != 0) write_client(c);
          // A socket hung up in both directions cannot take an answer; stdout that errs has no reader.
          const bool hung_up = (ev & (POLLERR | POLLHUP)) != 0 && (ev & POLLIN) == 0;
          if (!c.dead && hung_up && (c.is_socket ? c.eof : fds[i].fd == c.out_fd)) close_client(c);
        }
      }
    }
    // The mailbox and the per-client counts under one lock: a reply is either already in the
    // mail taken here, or its line still counts as queued.
    std::vector<Outgoing> mail;
    std::unordered_map<std::uint64_t, std::size_t> queued;
    {
      std::lock_guard lock(mu_);
      mail.swap(mail_);
      queued = queued_;
    }
    deliver_mail(mail);
    for (auto& [id, c] : clients_) {
      if (c.dead) continue;
      if (!c.out.empty()) write_client(c);
      if (c.dead) continue;
      const bool answered = queued.find(id) == queued.end();
      if ((c.closing || c.eof) && answered && c.out.empty()) {
        if (!c.is_socket) request_stop(0);  // the end of stdin ends the daemon
        close_client(c);
      }
    }
    std::erase_if(clients_, [](const auto& kv) { return kv.second.dead; });
  }

  // Stop: no new clients, no new calls; the call under way finishes and is answered.
  close_listener();
  receive_stop_.store(true);
  {
    std::lock_guard lock(mu_);
    worker_stop_ = true;
    jobs_.clear();
  }
  work_cv_.notify_all();
  worker.join();
  receiver.join();
  final_flush();
  for (auto& [id, c] : clients_)
    if (!c.dead) close_client(c);
  clients_.clear();
  const int code = exit_code_.load();
  log_line(code == 0 ? "stopped" : "stopped (exit code " + std::to_string(code) + ")");
  return code;
}

void Daemon::accept_clients() {
  while (true) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: no more; anything else: try again on the next round
    std::size_t live = live_clients();
    if (live >= kMaxClients) {
      reap_hung_up();  // a client that just left may not have been noticed yet
      live = live_clients();
    }
    if (live >= kMaxClients) {
      const std::string refusal = dump_line(error_object(
          nullptr, kDaemonLimit, "too many clients (at most " + std::to_string(kMaxClients) + ")"));
      (void)!::send(fd, refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      log_line("refused a client: " + std::to_string(live) + " connected");
      continue;
    }
    Client c;
    c.id = next_client_++;
    c.in_fd = c.out_fd = fd;
    clients_.emplace(c.id, std::move(c));
    log_line("client connected (" + std::to_string(live + 1) + " connected)");
  }
}

std::size_t Daemon::live_clients() const {
  std::size_t live = 0;
  for (const auto& [id, c] : clients_) live += c.dead ? 0 : 1;
  return live;
}

// Closes the socket clients whose peer has closed both directions (no answer can reach them).
void Daemon::reap_hung_up() {
  std::vector<pollfd> fds;
  for (const auto& [id, c] : clients_)
    if (!c.dead && c.is_socket) fds.push_back({c.in_fd, 0, 0});
  if (fds.empty() || ::poll(fds.data(), fds.size(), 0) <= 0) return;
  for (const auto& p : fds) {
    if ((p.revents & (POLLHUP | POLLERR)) == 0) continue;
    for (auto& [id, c] : clients_)
      if (!c.dead && c.in_fd == p.fd) close_client(c);
  }
}

void Daemon::read_client(Client& c) {
  char buf[kReadChunk];
  const ssize_t n = ::read(c.in_fd, buf, sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    close_client(c);
    return;
  }
  if (n == 0) {
    c.eof = true;  // answer what was asked, then close (stdio: then stop)
    if (!c.in.empty() && !c.discarding) {
      // A last line without its newline still counts.
      c.in.push_back('\n');
      take_lines(c);
    }
    c.in.clear();
    return;
  }
  c.in.append(buf, static_cast<std::size_t>(n));
  take_lines(c);
}

void Daemon::take_lines(Client& c) {
  std::size_t start = 0;
  while (!c.closing) {
    const std::size_t nl = c.in.find('\n', start);
    if (nl == std::string::npos) break;
    if (c.discarding) {
      c.discarding = false;
      start = nl + 1;
      continue;
    }
    std::string line = c.in.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > kMaxLineBytes) {
      reject_line(c);
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are ignored
    {
      std::lock_guard lock(mu_);
      ++queued_[c.id];
      jobs_.push_back(Job{c.id, std::move(line)});
    }
    work_cv_.notify_one();
  }
  c.in.erase(0, start);
  if (c.closing || c.discarding) {
    c.in.clear();
  } else if (c.in.size() > kMaxLineBytes) {
    c.in.clear();
    reject_line(c);
    if (!c.closing) c.discarding = true;  // stdio: skip to the end of this line
  }
}

// A line over the limit: an error; a socket client is then closed, stdin's rest of line skipped.
void Daemon::reject_line(Client& c) {
  c.out += dump_line(error_object(nullptr, kInvalidRequest,
                                  "request line longer than " + std::to_string(kMaxLineBytes) + " bytes"));
  if (c.is_socket) {
    c.closing = true;
    log_line("closing a client: request line over the limit");
  }
}

void Daemon::write_client(Client& c) {
  while (!c.out.empty()) {
    const ssize_t n = c.is_socket ? ::send(c.out_fd, c.out.data(), c.out.size(), MSG_NOSIGNAL)
                                  : ::write(c.out_fd, c.out.data(), c.out.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (!c.is_socket) request_stop(0);  // nobody reads stdout any more
      close_client(c);
      return;
    }
    c.out.erase(0, static_cast<std::size_t>(n));
  }
}

void Daemon::close_client(Client& c) {
  if (c.dead) return;
  c.dead = true;
  if (!c.is_socket) request_stop(0);  // stdin/stdout gone: nobody to serve
  if (c.is_socket) {
    ::close(c.in_fd);
    log_line("client disconnected (" + std::to_string(live_clients()) + " connected)");
  }
  c.in.clear();
  c.out.clear();
}

void Daemon::deliver_mail(const std::vector<Outgoing>& mail) {
  for (const auto& m : mail) {
    for (auto& [id, c] : clients_) {
      if (c.dead || (m.client != 0 && m.client != id)) continue;
      if (m.client == 0 && c.closing) continue;
      if (c.out.size() + m.text.size() > kMaxPendingOutput) {
        log_line("dropping a client that does not read its notifications");
        close_client(c);
        continue;
      }
      c.out += m.text;
    }
  }
}

// What is already queued (the shutdown reply, the last notifications) gets up to a second.
void Daemon::final_flush() {
  std::vector<Outgoing> mail;
  {
    std::lock_guard lock(mu_);
    mail.swap(mail_);
  }
  deliver_mail(mail);
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> fds;
    for (auto& [id, c] : clients_)
      if (!c.dead && !c.out.empty()) fds.push_back({c.out_fd, POLLOUT, 0});
    if (fds.empty()) return;
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) return;
    for (auto& [id, c] : clients_)
      if (!c.dead && !c.out.empty()) write_client(c);
  }
}

// ------------------------------------------------------------------ cross-thread

void Daemon::wake() {
  const char x = 1;
  (void)!::write(wake_[1], &x, 1);  // a full pipe already means "wake up"
}

void Daemon::post(std::uint64_t client, std::string text) {
  {
    std::lock_guard lock(mu_);
    mail_.push_back(Outgoing{client, std::move(text)});
  }
  wake();
}

void Daemon::request_stop(int exit_code) {
  if (exit_code != 0) exit_code_.store(exit_code);
  stop_.store(true);
  receive_stop_.store(true);
  wake();
}

// ------------------------------------------------------------------ the worker

void Daemon::worker_loop() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return worker_stop_ || !jobs_.empty(); });
      if (worker_stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    std::optional<std::string> reply;
    try {
      reply = handle_line(job.line);
    } catch (const std::exception&) {  // the program's edge: a bug must not take the daemon down
      reply = dump_line(error_object(nullptr, kInternalError, "internal error"));
    }
    {
      std::lock_guard lock(mu_);
      if (reply) mail_.push_back(Outgoing{job.client, std::move(*reply)});
      if (auto it = queued_.find(job.client); it != queued_.end() && --it->second == 0) queued_.erase(it);
    }
    wake();
    if (shutdown_after_reply_.load()) {
      log_line("shutdown requested");
      request_stop(0);
      return;
    }
  }
}

std::optional<std::string> Daemon::handle_line(const std::string& line) {
  const json message = json::parse(line, nullptr, false);
  if (message.is_discarded())
    return dump_line(error_object(nullptr, kParseError, "parse error: the line is not valid JSON"));
  if (message.is_array()) {
    if (message.empty())
      return dump_line(error_object(nullptr, kInvalidRequest, "invalid request: an empty batch"));
    json replies = json::array();
    for (const auto& request : message) {
      if (auto r = handle_request(request)) replies.push_back(std::move(*r));
      if (shutdown_after_reply_.load()) break;  // nothing runs after shutdown
    }
    if (replies.empty()) return std::nullopt;  // only notifications
    return dump_line(replies);
  }
  auto r = handle_request(message);
  if (!r) return std::nullopt;
  return dump_line(*r);
}

std::optional<json> Daemon::handle_request(const json& request) {
  if (!request.is_object()) return error_object(nullptr, kInvalidRequest, "invalid request: not an object");
  const auto id_it = request.find("id");
  const bool notification = id_it == request.end();
  json id = nullptr;
  if (!notification) {
    if (!id_it->is_string() && !id_it->is_number() && !id_it->is_null())
      return error_object(nullptr, kInvalidRequest,
                          "invalid request: 'id' must be a string, a number or null");
    id = *id_it;
  }
  const auto version = request.find("jsonrpc");
  if (version == request.end() || !version->is_string() || *version != "2.0")
    return error_object(id, kInvalidRequest, "invalid request: 'jsonrpc' must be \"2.0\"");
  const auto method = request.find("method");
  if (method == request.end() || !method->is_string())
    return error_object(id, kInvalidRequest, "invalid request: 'method' must be a string");
  static const json kNoParams = json::object();
  const json* params = &kNoParams;
  if (const auto p = request.find("params"); p != request.end()) {
    if (!p->is_object() && !p->is_array())
      return error_object(id, kInvalidRequest, "invalid request: 'params' must be an object or an array");
    if (p->is_array()) {
      if (notification) return std::nullopt;
      return error_object(id, kInvalidParams,
                          "invalid params: give them by name (an object), not by position");
    }
    params = &*p;
  }
  Params checked(*params);
  Answer answer = call(method->get<std::string>(), checked);
  if (notification) return std::nullopt;
  if (answer.error) return error_object(id, answer.error->code, answer.error->message, answer.error->data);
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(answer.result)}};
}

// One method. Each reads and checks its params first; nothing runs when one is wrong.
Answer Daemon::call(const std::string& method, Params& p) {
  auto done = [](const Outcome<Done>& r, json result = json::object()) -> Answer {
    if (!r.ok()) return failure_error(r.failure());
    return result;
  };
  auto account = [this]() -> json {
    return json{{"account_id", m_.account_id()}, {"device_id", m_.device_id()}, {"email", m_.email()}};
  };

  if (method == "version") {
    p.only({});
    if (!p.ok()) return p.error();
    json j = {{"name", "postern"}, {"version", POSTERN_VERSION}, {"logged_in", m_.logged_in()}};
    if (m_.logged_in()) j.update(account());
    if (const auto inv = m_.invite()) j["server"] = inv->host + ":" + std::to_string(inv->port);
    return j;
  }
  if (method == "register") {
    p.only({"email", "password", "birthdate", "accept_terms"});
    auto email = p.text("email");
    auto password = p.text("password");
    auto birthdate = p.text("birthdate");
    auto terms = p.boolean("accept_terms");
    if (!p.ok()) return p.error();
    const RegisterForm form{*email, *password, *birthdate, *terms};
    auto r = m_.register_account(form, [this](std::uint64_t) { return !stop_requested(); });
    if (!r.ok()) return failure_error(r.failure());
    logout_requested_.store(false);
    return account();
  }
  if (method == "login") {
    p.only({"email", "password"});
    auto email = p.text("email");
    auto password = p.text("password");
    if (!p.ok()) return p.error();
    auto r = m_.login(*email, *password);
    if (!r.ok()) return failure_error(r.failure());
    logout_requested_.store(false);
    return account();
  }
  if (method == "logout") {
    p.only({});
    if (!p.ok()) return p.error();
    logout_requested_.store(true);
    auto r = m_.logout();
    if (!r.ok()) logout_requested_.store(!m_.logged_in());
    return done(r);
  }
  if (method == "send") {
    p.only({"to", "group", "text", "file", "caption"});
    auto target = p.target();
    if (p.has("text") == p.has("file"))
      return RpcError{kInvalidParams, "give exactly one of the params 'text' and 'file'", nullptr};
    auto text = p.text("text", false);
    auto file = p.text("file", false);
    auto caption = p.text("caption", false, true);
    if (!p.ok()) return p.error();
    if (caption && !file) return RpcError{kInvalidParams, "param 'caption' goes with 'file'", nullptr};
    if (file && !std::filesystem::path(*file).is_absolute())
      return RpcError{kInvalidParams, "param 'file' must be an absolute path", nullptr};
    auto r = file ? m_.send_file(*target, *file, caption.value_or(""), {}) : m_.send_text(*target, *text);
    if (!r.ok()) return failure_error(r.failure());
    return message_json(*r);
  }
  if (method == "sendTyping") {
    p.only({"to", "group", "started"});
    auto target = p.target();
    auto started = p.boolean("started");
    if (!p.ok()) return p.error();
    return done(m_.send_typing(*target, *started));
  }
  if (method == "markRead") {
    p.only({"to", "group"});
    auto target = p.target();
    if (!p.ok()) return p.error();
    auto r = m_.mark_read(*target);
    if (!r.ok()) return failure_error(r.failure());
    return json{{"marked", *r}};
  }
  if (method == "history") {
    p.only({"to", "group", "limit"});
    auto target = p.target();
    auto limit = p.integer("limit", 1, 100000, false);
    if (!p.ok()) return p.error();
    auto r = m_.history(*target, static_cast<std::size_t>(limit.value_or(50)));
    if (!r.ok()) return failure_error(r.failure());
    json list = json::array();
    for (const auto& msg : *r) list.push_back(message_json(msg));
    return list;
  }
  if (method == "listContacts") {
    p.only({});
    if (!p.ok()) return p.error();
    auto r = m_.contacts();
    if (!r.ok()) return failure_error(r.failure());
    json list = json::array();
    for (const auto& c : *r) list.push_back(contact_json(c));
    return list;
  }
  if (method == "addContact") {
    p.only({"email"});
    auto email = p.text("email");
    if (!p.ok()) return p.error();
    auto r = m_.add_contact(*email);
    if (!r.ok()) return failure_error(r.failure());
    return contact_json(*r);
  }
  if (method == "listGroups") {
    p.only({});
    if (!p.ok()) return p.error();
    auto r = m_.groups();
    if (!r.ok()) return failure_error(r.failure());
    json list = json::array();
    for (const auto& g : *r) list.push_back(group_json(g));
    return list;
  }
  if (method == "createGroup") {
    p.only({"name", "members"});
    auto name = p.text("name");
    auto members = p.text_list("members", true);
    if (!p.ok()) return p.error();
    auto r = m_.create_group(*name, *members);
    if (!r.ok()) return failure_error(r.failure());
    return group_json(*r);
  }
  if (method == "addMembers" || method == "removeMembers") {
    p.only({"group", "members"});
    auto group = p.text("group");
    auto members = p.text_list("members", false);
    if (!p.ok()) return p.error();
    auto r = method == "addMembers" ? m_.add_members(*group, *members) : m_.remove_members(*group, *members);
    if (!r.ok()) return failure_error(r.failure());
    return group_json(*r);
  }
  if (method == "renameGroup") {
    p.only({"group", "name"});
    auto group = p.text("group");
    auto name = p.text("name");
    if (!p.ok()) return p.error();
    auto r = m_.rename_group(*group, *name);
    if (!r.ok()) return failure_error(r.failure());
    return group_json(*r);
  }
  if (method == "listDevices") {
    p.only({});
    if (!p.ok()) return p.error();
    auto r = m_.devices();
    if (!r.ok()) return failure_error(r.failure());
    json list = json::array();
    for (const auto& d : *r) list.push_back(device_json(d));
    return list;
  }
  if (method == "removeDevice") {
    p.only({"id"});
    auto device = p.integer("id", 1, std::numeric_limits<std::uint32_t>::max());
    if (!p.ok()) return p.error();
    return done(m_.remove_device(static_cast<std::uint32_t>(*device)), json{{"removed", *device}});
  }
  if (method == "verify") {
    p.only({"email"});
    auto email = p.text("email");
    if (!p.ok()) return p.error();
    auto r = m_.safety_number(*email);
    if (!r.ok()) return failure_error(r.failure());
    return json{
        {"email", *email}, {"safety_number", r->digits}, {"verified", r->verified}, {"changed", r->changed}};
  }
  if (method == "acceptIdentity") {
    p.only({"email"});
    auto email = p.text("email");
    if (!p.ok()) return p.error();
    return done(m_.accept_identity(*email));
  }
  if (method == "setVerified") {
    p.only({"email", "verified"});
    auto email = p.text("email");
    auto verified = p.boolean("verified");
    if (!p.ok()) return p.error();
    return done(m_.set_verified(*email, *verified), json{{"email", *email}, {"verified", *verified}});
  }
  if (method == "setTimer") {
    p.only({"to", "group", "seconds"});
    auto target = p.target();
    auto seconds = p.integer("seconds", 0, std::numeric_limits<std::uint32_t>::max());
    if (!p.ok()) return p.error();
    return done(m_.set_expire_timer(*target, static_cast<std::uint32_t>(*seconds)),
                json{{"expire_timer_s", *seconds}});
  }
  if (method == "shutdown") {
    p.only({});
    if (!p.ok()) return p.error();
    shutdown_after_reply_.store(true);
    return json::object();
  }
  return RpcError{kMethodNotFound, "method not found: " + method.substr(0, 64), nullptr};
}

// ------------------------------------------------------------------ the receiver

// Sleeps, but wakes within 100 ms of a stop.
void Daemon::pause(std::chrono::milliseconds how_long) {
  const auto until = std::chrono::steady_clock::now() + how_long;
  while (!receive_stop_.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(100ms);
}

// The Messenger reports close code 4001 (and a delivery socket refused for this device's token)
// only in the failure's sentence; see the report on the Messenger API.
bool device_removed(const Failure& f) {
  const bool closed_or_refused =
      f.code == make_error_code(Errc::connection_closed) || f.code == make_error_code(Errc::server_error);
  return f.code == make_error_code(Errc::device_removed) ||
         (closed_or_refused && f.message.find("logged out or removed") != std::string::npos);
}

void Daemon::receive_loop() {
  std::chrono::milliseconds backoff = kBackoffFirst;
  bool said_waiting = false;
  while (!receive_stop_.load()) {
    if (!m_.logged_in()) {
      if (!said_waiting) log_line("not signed in: waiting for register or login");
      said_waiting = true;
      pause(500ms);
      continue;
    }
    said_waiting = false;
    ReceiveOptions options;
    options.idle_timeout = std::chrono::milliseconds(-1);
    options.stop = &receive_stop_;
    options.send_delivery_receipts = true;
    const auto started = std::chrono::steady_clock::now();
    auto r = m_.receive(options, [this](const Event& e) {
      post(0, dump_line(json{{"jsonrpc", "2.0"}, {"method", "receive"}, {"params", event_json(e)}}));
    });
    if (receive_stop_.load()) break;
    if (std::chrono::steady_clock::now() - started > kBackoffMax)
      backoff = kBackoffFirst;  // it was up a while
    if (r.ok()) {
      log_line("the server closed the connection; reconnecting in " + std::to_string(backoff.count() / 1000) +
               " s");
    } else {
      const Failure& f = r.failure();
      if (logout_requested_.load() || !m_.logged_in())
        continue;  // logged out through the daemon: wait for a login
      if (device_removed(f)) {
        log_line("this device was logged out or removed from the account; stopping");
        request_stop(1);
        break;
      }
      log_line((exit_code_for(f) == 3 ? "connection lost (" : "receiving failed (") + f.message +
               "); reconnecting in " + std::to_string(backoff.count() / 1000) + " s");
    }
    pause(backoff);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kBackoffMax);
  }
}

}  // namespace

int run_daemon(Messenger& m, const DaemonOptions& options) {
  Daemon daemon(m, options);
  return daemon.run();
}

}  // namespace postern::cli
