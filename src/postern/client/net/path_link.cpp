// MultiPathLink: see path_link.h. No Boost here: the paths are ServerLinks with blocking calls,
// raced on short-lived threads that touch only their path and their race's own state. Each attempt
// has its own CancelToken: the race cancels the attempts still running once it is decided, and the
// link cancels whatever still runs before it joins the threads.
#include "postern/client/net/path_link.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "postern/client/errors.h"
#include "postern/crypto/secret.h"

namespace postern::client::net {

// ------------------------------------------------------------------ proxy URLs

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding of a user name or password; false on a broken escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

// Empty on success, else what is wrong (never the password).
std::string parse_proxy(std::string_view text, ProxyConfig& out) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() &&
         (text.back() == ' ' || text.back() == '\t' || text.back() == '\n' || text.back() == '\r'))
    text.remove_suffix(1);
  if (text.empty()) return "the proxy URL is empty";
  if (text.size() > 1024) return "the proxy URL is longer than 1024 characters";
  ProxyConfig proxy;
  if (text.starts_with("socks5://")) {
    proxy.kind = ProxyConfig::Kind::socks5;
    text.remove_prefix(9);
  } else if (text.starts_with("socks5h://")) {  // curl's name for "let the proxy resolve": what we always do
    proxy.kind = ProxyConfig::Kind::socks5;
    text.remove_prefix(10);
  } else if (text.starts_with("http://")) {
    proxy.kind = ProxyConfig::Kind::http_connect;
    text.remove_prefix(7);
  } else if (text.starts_with("https://")) {
    return "a TLS connection to the proxy itself (https://) is not supported; use http:// or socks5://";
  } else {
    return "a proxy URL starts with socks5:// or http://";
  }
  if (!text.empty() && text.back() == '/') text.remove_suffix(1);
  if (text.find_first_of("/?#") != std::string_view::npos) return "the proxy URL must end after HOST:PORT";
  // The last '@' ends the credentials (a password may contain '@' only %-encoded, but be lenient).
  if (const auto at = text.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = text.substr(0, at);
    text.remove_prefix(at + 1);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) return "proxy credentials are written user:password@";
    transport::ProxyCredentials credentials;
    if (!percent_decode(userinfo.substr(0, colon), credentials.username) ||
        !percent_decode(userinfo.substr(colon + 1), credentials.password)) {
      crypto::wipe(credentials.password.data(), credentials.password.size());
      return "the proxy user name or password has a broken %-escape";
    }
    if (credentials.username.empty() || credentials.username.size() > 255) {
      crypto::wipe(credentials.password.data(), credentials.password.size());
      return "the proxy user name must be 1 to 255 bytes";
    }
    if (credentials.password.empty() || credentials.password.size() > 255) {
      crypto::wipe(credentials.password.data(), credentials.password.size());
      return "the proxy password must be 1 to 255 bytes";
    }
    proxy.credentials = std::move(credentials);
  }
  std::string_view host;
  std::string_view port_text;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return "an IPv6 proxy address is written [ADDRESS]:PORT";
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    if (host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      return "the proxy's IPv6 address is malformed";
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return "the proxy URL needs a :PORT after the host";
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return "an IPv6 proxy address is written [ADDRESS]:PORT";
  }
  if (host.empty() || host.size() > 253) return "the proxy host is empty or too long";
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == ':' || c == '_';
    if (!ok) return "the proxy host has a character that is not allowed";
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535)
    return "the proxy port must be a number from 1 to 65535";
  proxy.host = std::string(host);
  proxy.port = static_cast<std::uint16_t>(port);
  out = std::move(proxy);
  return {};
}

std::string bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

Result<ProxyConfig> parse_proxy_url(std::string_view text) {
  ProxyConfig proxy;
  if (!parse_proxy(text, proxy).empty()) return Errc::invalid_argument;
  return proxy;
}

std::string explain_proxy_url_error(std::string_view text) {
  ProxyConfig proxy;
  std::string problem = parse_proxy(text, proxy);
  if (proxy.credentials) crypto::wipe(proxy.credentials->password.data(), proxy.credentials->password.size());
  return problem;
}

std::string host_port(const Invite& invite) {
  return bracketed(invite.host) + ":" + std::to_string(invite.port);
}

// ------------------------------------------------------------------ the paths

namespace {

using Clock = std::chrono::steady_clock;

// A failure that says "this path does not work now", not "the server said no".
bool path_error(std::error_code ec) {
  return ec == make_error_code(Errc::unreachable) || ec == make_error_code(Errc::timeout) ||
         ec == make_error_code(Errc::pin_mismatch);
}

// One race: results of the paths started so far, in start order.
template <class T>
struct Race {
  std::mutex mutex;
  std::condition_variable cv;
  struct Entry {
    std::size_t path = 0;
    std::shared_ptr<CancelToken> cancel;  // stops this attempt once the race is decided
    bool done = false;
    std::optional<Result<T>> result;
  };
  std::vector<Entry> entries;
  bool decided = false;  // a winner was taken: later successes are dropped by their racer
  bool aborted = false;  // the caller cancelled the race

  // Marks the race decided and hands back the tokens of the attempts still running, to be
  // cancelled without the lock (a token's stop function may take locks of its own).
  std::vector<std::shared_ptr<CancelToken>> decide() {
    decided = true;
    std::vector<std::shared_ptr<CancelToken>> running;
    for (const auto& e : entries)
      if (!e.done) running.push_back(e.cancel);
    return running;
  }
};

void cancel_all(const std::vector<std::shared_ptr<CancelToken>>& tokens) {
  for (const auto& token : tokens) token->cancel();
}

}  // namespace

struct MultiPathLink::Shared {
  struct State {
    int failures = 0;
    Clock::time_point retry_at{};
    bool worked = false;  // succeeded in this process and not failed since
  };
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
    std::shared_ptr<CancelToken> cancel;
  };

  Shared(std::vector<Path> paths_in, MultiPathOptions options_in)
      : paths(std::move(paths_in)), options(std::move(options_in)), state(paths.size()) {
    if (options.preferred) {
      for (std::size_t i = 0; i < paths.size(); ++i)
        if (paths[i].key == *options.preferred) current = i;
    }
  }

  ~Shared() {
    std::lock_guard lock(workers_mutex);
    // What still runs belongs to races already decided (a race's caller holds the link or its
    // delivery socket): nobody wants its answer, so it is stopped rather than waited for. An
    // attempt on a link that ignores tokens is waited for (bounded by its own timeouts).
    for (auto& w : workers)
      if (!w.done->load()) w.cancel->cancel();
    for (auto& w : workers)
      if (w.thread.joinable()) w.thread.join();
  }

  const std::vector<Path> paths;
  const MultiPathOptions options;
  mutable std::mutex mutex;
  std::vector<State> state;  // under mutex
  std::size_t current = 0;   // under mutex: the path that worked last (or is preferred)
  std::mutex workers_mutex;
  std::vector<Worker> workers;

  // Runs fn on a worker thread; `cancel` is what stops it (cancelled when the link goes).
  void spawn(std::function<void()> fn, std::shared_ptr<CancelToken> cancel) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(workers_mutex);
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    workers.push_back(Worker{std::thread([fn = std::move(fn), done] {
                               fn();
                               done->store(true);
                             }),
                             done, std::move(cancel)});
  }

  bool backing_off(std::size_t i, Clock::time_point now) const {
    return state[i].failures > 0 && now < state[i].retry_at;
  }

  // The order to try: the current path unless it is backing off, the others in list order, then
  // the paths backing off, soonest retry first. `skip` are left out.
  std::vector<std::size_t> candidates(const std::vector<std::size_t>& skip = {}) const {
    std::lock_guard lock(mutex);
    const auto now = Clock::now();
    auto skipped = [&](std::size_t i) { return std::find(skip.begin(), skip.end(), i) != skip.end(); };
    std::vector<std::size_t> order;
    std::vector<std::size_t> later;
    if (!skipped(current) && !backing_off(current, now)) order.push_back(current);
    for (std::size_t i = 0; i < paths.size(); ++i) {
      if (i == current && !order.empty()) continue;
      if (skipped(i)) continue;
      (backing_off(i, now) ? later : order).push_back(i);
    }
    std::sort(later.begin(), later.end(),
              [this](std::size_t a, std::size_t b) { return state[a].retry_at < state[b].retry_at; });
    order.insert(order.end(), later.begin(), later.end());
    return order;
  }

  void mark_failed(std::size_t i) {
    std::lock_guard lock(mutex);
    auto& s = state[i];
    s.worked = false;
    s.failures = std::min(s.failures + 1, 30);
    auto wait = options.backoff_initial;
    for (int k = 1; k < s.failures && wait < options.backoff_max; ++k) wait *= 2;
    s.retry_at = Clock::now() + std::min(wait, options.backoff_max);
  }

  void mark_ok(std::size_t i) {
    bool switched = false;
    {
      std::lock_guard lock(mutex);
      state[i] = State{};
      state[i].worked = true;
      switched = current != i;
      current = i;
    }
    if (switched && options.on_switch) options.on_switch(paths[i].key);
  }

  bool usable_now(std::size_t i) const {
    std::lock_guard lock(mutex);
    return state[i].worked && !backing_off(i, Clock::now());
  }

  // One attempt of a race: op(path, its token).
  template <class T>
  using Attempt = std::function<Result<T>(std::size_t path, CancelToken& cancel)>;

  // Runs op on the candidates, starting the next one when the last started has not finished
  // within race_delay (or has failed). The first success wins and the attempts still running are
  // cancelled; a success that comes later all the same is handed to `drop`. Failures before the
  // decision mark their path (a cancelled attempt's error comes after it, and is not looked at).
  // Returns the winner's path and value, or the error of the last failure (pin_mismatch if any
  // path had it), or Errc::cancelled when `outer` (may be null) was cancelled first.
  template <class T>
  Result<std::pair<std::size_t, T>> race(const std::vector<std::size_t>& order, const Attempt<T>& op,
                                         const std::function<void(T&)>& drop, CancelToken* outer) {
    if (order.empty()) return Errc::unreachable;
    if (outer && outer->cancelled()) return Errc::cancelled;
    auto r = std::make_shared<Race<T>>();
    // Declared before the lock below, so destroyed after it is released: a cancel in progress
    // (which takes r->mutex) can finish while the hook waits for it.
    CancelToken::Hook abort_hook;
    if (outer) {
      abort_hook = outer->on_cancel([r] {
        std::lock_guard lock(r->mutex);
        r->aborted = true;
        r->cv.notify_all();
      });
    }
    std::size_t next = 0;
    auto start = [&](std::size_t path) {
      std::size_t slot = 0;
      auto token = std::make_shared<CancelToken>();
      {
        std::lock_guard lock(r->mutex);
        slot = r->entries.size();
        r->entries.push_back({path, token, false, std::nullopt});
      }
      spawn([r, slot, path, op, drop, token] {
        Result<T> result = op(path, *token);
        std::unique_lock lock(r->mutex);
        if (r->decided && result) {
          lock.unlock();
          drop(*result);  // a loser that connected after all: dropped
          lock.lock();
          r->entries[slot].done = true;
          r->cv.notify_all();
          return;
        }
        r->entries[slot].result.emplace(std::move(result));
        r->entries[slot].done = true;
        r->cv.notify_all();
      }, token);
    };
    start(order[next++]);
    auto last_start = Clock::now();
    std::error_code last_error = make_error_code(Errc::unreachable);
    bool pin_failed = false;
    std::vector<bool> reported;
    std::unique_lock lock(r->mutex);
    for (;;) {
      if (r->aborted) {
        const auto stopping = r->decide();
        lock.unlock();
        cancel_all(stopping);
        return Errc::cancelled;
      }
      // Failures so far: mark them (once) and look for a winner.
      std::size_t running = 0;
      for (std::size_t k = 0; k < r->entries.size(); ++k) {
        auto& e = r->entries[k];
        if (reported.size() <= k) reported.push_back(false);
        if (!e.done) {
          ++running;
          continue;
        }
        if (!e.result || reported[k]) continue;
        if (*e.result) {
          T value = std::move(**e.result);
          const std::size_t path = e.path;
          const auto losers = r->decide();
          lock.unlock();
          cancel_all(losers);
          mark_ok(path);
          return std::pair<std::size_t, T>(path, std::move(value));
        }
        reported[k] = true;
        last_error = e.result->error();
        if (last_error == make_error_code(Errc::pin_mismatch)) pin_failed = true;
        const std::size_t path = e.path;
        if (path_error(last_error)) {
          lock.unlock();
          mark_failed(path);
          lock.lock();
        }
      }
      if (running == 0 && next >= order.size()) {
        r->decided = true;
        if (pin_failed) return Errc::pin_mismatch;
        return last_error;
      }
      if (next < order.size() && (running == 0 || Clock::now() - last_start >= options.race_delay)) {
        lock.unlock();
        start(order[next++]);
        last_start = Clock::now();
        lock.lock();
        continue;
      }
      auto ready = [&] {
        if (r->aborted) return true;
        for (std::size_t k = 0; k < r->entries.size(); ++k)
          if (r->entries[k].done && (k >= reported.size() || !reported[k])) return true;
        return false;
      };
      if (next < order.size()) {
        r->cv.wait_until(lock, last_start + options.race_delay, ready);
      } else {
        r->cv.wait(lock, ready);
      }
    }
  }

  // A delivery socket through the first path that opens one (`skip` left out); `outer` (may be
  // null) stops the race.
  Result<std::pair<std::size_t, std::unique_ptr<DeliverySocket>>> open(
      const std::shared_ptr<std::string>& bearer, const std::vector<std::size_t>& skip, CancelToken* outer) {
    Attempt<std::unique_ptr<DeliverySocket>> op = [links = link_list(), bearer](std::size_t i,
                                                                                CancelToken& cancel) {
      return links[i]->open_delivery_cancellable(*bearer, cancel);
    };
    std::function<void(std::unique_ptr<DeliverySocket>&)> drop = [](std::unique_ptr<DeliverySocket>& s) {
      if (s) s->close();
      s.reset();
    };
    return race<std::unique_ptr<DeliverySocket>>(candidates(skip), op, drop, outer);
  }

  std::vector<std::shared_ptr<ServerLink>> link_list() const {
    std::vector<std::shared_ptr<ServerLink>> links;
    for (const auto& p : paths) links.push_back(p.link);
    return links;
  }
};

namespace {

// The delivery socket of a MultiPathLink: a path's socket that, when it dies without a close
// code from the server (the path failed), reopens itself through the next path. What the server
// had sent but not seen acknowledged comes again on the new socket; the messenger stores each
// envelope once (processed_envelopes) and acknowledges again.
class MultiPathDeliverySocket final : public DeliverySocket {
 public:
  MultiPathDeliverySocket(std::shared_ptr<MultiPathLink::Shared> shared, std::shared_ptr<std::string> bearer,
                          std::size_t path, std::unique_ptr<DeliverySocket> socket)
      : shared_(std::move(shared)), bearer_(std::move(bearer)), path_(path), socket_(std::move(socket)) {}
  ~MultiPathDeliverySocket() override { close(); }
  MultiPathDeliverySocket(const MultiPathDeliverySocket&) = delete;
  MultiPathDeliverySocket& operator=(const MultiPathDeliverySocket&) = delete;

  Status send(ByteView frame) override {
    auto socket = current();
    if (!socket) return Errc::connection_closed;
    auto sent = socket->send(frame);
    if (sent || socket->close_code()) return sent;
    if (!reopen(socket)) return sent;
    socket = current();
    return socket ? socket->send(frame) : Status{Errc::connection_closed};
  }

  Result<std::optional<Bytes>> receive(std::chrono::milliseconds timeout) override {
    auto socket = current();
    if (!socket) return Errc::connection_closed;
    auto got = socket->receive(timeout);
    if (got || socket->close_code() || closed_.load()) return got;
    if (!reopen(socket)) return got;
    return std::optional<Bytes>{};  // nothing yet; the next receive reads the new socket
  }

  std::optional<std::uint16_t> close_code() const override {
    auto socket = current();
    return socket ? socket->close_code() : std::nullopt;
  }

  void close() override {
    if (closed_.exchange(true)) return;
    closing_.cancel();  // a reopen in progress on another thread stops racing
    auto socket = current();
    if (socket) socket->close();
  }

 private:
  std::shared_ptr<DeliverySocket> current() const {
    std::lock_guard lock(mutex_);
    return socket_;
  }

  // The path of `failed` died: open through the others (then the rest, backing off). True when
  // there is a new socket (also when another thread made it meanwhile).
  bool reopen(const std::shared_ptr<DeliverySocket>& failed) {
    std::lock_guard reopening(reopen_mutex_);
    {
      std::lock_guard lock(mutex_);
      if (socket_ != failed) return socket_ != nullptr;
    }
    if (closed_.load()) return false;
    shared_->mark_failed(path_);
    failed->close();
    auto opened = shared_->open(bearer_, {path_}, &closing_);
    if (!opened && opened.error() != make_error_code(Errc::cancelled)) {
      opened = shared_->open(bearer_, {}, &closing_);  // the failed path too, as a last resort
    }
    if (!opened) return false;
    auto socket = std::shared_ptr<DeliverySocket>(std::move(opened->second));
    {
      std::lock_guard lock(mutex_);
      path_ = opened->first;
      socket_ = socket;
    }
    if (closed_.load()) socket->close();  // closed while it opened: close() saw the old socket
    return true;
  }

  std::shared_ptr<MultiPathLink::Shared> shared_;
  std::shared_ptr<std::string> bearer_;  // wiped when the last holder lets go
  std::size_t path_;
  mutable std::mutex mutex_;
  std::mutex reopen_mutex_;
  std::shared_ptr<DeliverySocket> socket_;
  std::atomic<bool> closed_{false};
  CancelToken closing_;  // cancelled by close(): stops a reopen's race
};

std::shared_ptr<std::string> wiped_copy(std::string_view text) {
  return std::shared_ptr<std::string>(new std::string(text), [](std::string* s) {
    crypto::wipe(s->data(), s->size());
    delete s;
  });
}

}  // namespace

MultiPathLink::MultiPathLink(std::vector<Path> paths, MultiPathOptions options)
    : shared_(std::make_shared<Shared>(std::move(paths), std::move(options))) {}

MultiPathLink::~MultiPathLink() = default;

Result<HttpResponse> MultiPathLink::send(const HttpRequest& request) {
  if (shared_->paths.empty()) return Errc::unreachable;
  std::vector<std::size_t> tried;
  std::error_code last = make_error_code(Errc::unreachable);
  bool pin_failed = false;
  while (tried.size() < shared_->paths.size()) {
    auto order = shared_->candidates(tried);
    if (order.empty()) break;
    std::size_t path = order.front();
    if (!shared_->usable_now(path)) {
      // Not known to work now: race connections (kept idle for this request) to find one.
      Shared::Attempt<bool> probe = [paths = shared_->paths](std::size_t i,
                                                             CancelToken& cancel) -> Result<bool> {
        if (!paths[i].probe) return true;
        auto ok = paths[i].probe(cancel);
        if (!ok) return ok.error();
        return true;
      };
      std::function<void(bool&)> drop = [](bool&) {};
      auto won = shared_->race<bool>(order, probe, drop, request.cancel.get());
      if (!won) {
        if (won.error() == make_error_code(Errc::pin_mismatch)) pin_failed = true;
        last = won.error();
        break;
      }
      path = won->first;
    }
    auto result = shared_->paths[path].link->send(request);
    if (result) {
      shared_->mark_ok(path);
      return result;
    }
    if (!path_error(result.error())) return result;
    if (result.error() == make_error_code(Errc::pin_mismatch)) pin_failed = true;
    shared_->mark_failed(path);
    tried.push_back(path);
    last = result.error();
    if (request.body_source) break;  // a streamed body cannot be sent again from here
  }
  if (pin_failed) return Errc::pin_mismatch;
  return last;
}

Result<std::unique_ptr<DeliverySocket>> MultiPathLink::open_delivery(std::string_view bearer) {
  CancelToken never;
  return open_delivery_cancellable(bearer, never);
}

Result<std::unique_ptr<DeliverySocket>> MultiPathLink::open_delivery_cancellable(std::string_view bearer,
                                                                                 CancelToken& cancel) {
  auto secret = wiped_copy(bearer);
  auto opened = shared_->open(secret, {}, &cancel);
  if (!opened) return opened.error();
  return std::unique_ptr<DeliverySocket>(
      std::make_unique<MultiPathDeliverySocket>(shared_, secret, opened->first, std::move(opened->second)));
}

std::string MultiPathLink::current_key() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->paths.empty() ? std::string("no path") : shared_->paths[shared_->current].key;
}

std::vector<std::string> MultiPathLink::candidate_keys() const {
  std::vector<std::string> keys;
  for (const std::size_t i : shared_->candidates()) keys.push_back(shared_->paths[i].key);
  return keys;
}

std::string MultiPathLink::describe() const {
  std::string text = current_key();
  {
    std::lock_guard lock(shared_->mutex);
    if (!shared_->paths.empty()) text = shared_->paths[shared_->current].link->describe();
  }
  return text + " (" + std::to_string(shared_->paths.size()) + " paths)";
}

std::unique_ptr<MultiPathLink> make_multi_path_link(const Invite& server, const std::vector<Invite>& relays,
                                                    const HttpsLinkOptions& options, MultiPathOptions multi) {
  std::vector<MultiPathLink::Path> paths;
  auto add = [&](const Invite& invite) {
    auto link = std::make_shared<HttpsLink>(invite, options);
    MultiPathLink::Path path;
    path.key = std::string(invite.relay ? "relay " : "direct ") + host_port(invite);
    path.probe = [weak = std::weak_ptr<HttpsLink>(link)](CancelToken& cancel) -> Status {
      auto l = weak.lock();
      if (!l) return Errc::unreachable;
      return l->prepare(&cancel);
    };
    path.link = std::move(link);
    paths.push_back(std::move(path));
  };
  add(server);
  for (const auto& relay : relays) add(relay);
  return std::make_unique<MultiPathLink>(std::move(paths), std::move(multi));
}

}  // namespace postern::client::net
