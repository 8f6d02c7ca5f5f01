// fork/exec, the process table and the signal handlers (see process.h).
#include "postern/lab/runner/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "postern/lab/errors.h"

extern char** environ;

namespace postern::lab::runner {
namespace {

// The table is read by the signal handler: a fixed array of atomics (no allocation there).
constexpr std::size_t kMaxProcesses = 256;
std::array<std::atomic<pid_t>, kMaxProcesses> g_table{};
std::atomic<int> g_signals{0};

void remember(pid_t pid) {
  for (auto& slot : g_table) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void forget(pid_t pid) {
  for (auto& slot : g_table) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

extern "C" void on_signal(int) {
  const int n = g_signals.fetch_add(1) + 1;
  if (n >= 2) {
    for (auto& slot : g_table) {
      const pid_t pid = slot.load();
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  }
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Argv in_namespace(const std::string& ns, const Argv& argv) {
  if (ns.empty()) return argv;
  Argv out{"ip", "netns", "exec", ns};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin";  // ip, nginx and nft live there, and sudo may drop them from PATH
  std::stringstream ss(dirs);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

Result<Spawned> spawn(const std::string& name, const Argv& argv, const Env& env, const std::string& out_path,
                      const std::string& err_path) {
  if (argv.empty()) return Errc::bad_config;
  const auto program = find_program(argv[0]);
  if (!program) return Errc::tool_missing;
  // Everything the child needs is prepared before fork (no allocation after it).
  std::vector<std::string> args = argv;
  args[0] = *program;
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const auto eq = entry.find('=');
    const std::string key = entry.substr(0, eq);
    if (std::any_of(env.begin(), env.end(), [&](const auto& kv) { return kv.first == key; })) continue;
    envs.push_back(entry);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  auto c_args = c_strings(args);
  auto c_envs = c_strings(envs);
  const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out_fd < 0 || err_fd < 0 || null_fd < 0) {
    for (int fd : {out_fd, err_fd, null_fd})
      if (fd >= 0) ::close(fd);
    return Errc::io_error;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);  // a Ctrl-C on the terminal reaches the lab only; the lab stops its children
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    ::execve(c_args[0], c_args.data(), c_envs.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
  ::close(null_fd);
  if (pid < 0) return Errc::io_error;
  remember(pid);
  return Spawned{pid, name, out_path, err_path};
}

int run_interactive(const Argv& argv, const Env& env) {
  if (argv.empty()) return 127;
  const auto program = find_program(argv[0]);
  if (!program) return 127;
  std::vector<std::string> args = argv;
  args[0] = *program;
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) envs.emplace_back(*e);
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  auto c_args = c_strings(args);
  auto c_envs = c_strings(envs);
  struct sigaction ignore {}, old_int {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGINT, &ignore, &old_int);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::execve(c_args[0], c_args.data(), c_envs.data());
    ::_exit(127);
  }
  int status = 0;
  if (pid > 0) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  if (pid < 0) return 127;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

bool running(pid_t pid) {
  if (pid <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) return true;
  forget(pid);
  return false;
}

void stop(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != 0) {
    forget(pid);
    return;
  }
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) != 0) {
      forget(pid);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  forget(pid);
}

void stop_all(std::chrono::milliseconds grace) {
  std::vector<pid_t> pids;
  for (auto& slot : g_table) {
    const pid_t pid = slot.load();
    if (pid > 0) pids.push_back(pid);
  }
  // SIGTERM to all first, so that the grace periods overlap.
  for (pid_t pid : pids) ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    forget(pid);
  }
}

Result<Finished> run(const std::string& name, const Argv& argv, const Env& env, const std::string& scratch_dir,
                     std::chrono::milliseconds timeout, bool interruptible) {
  static std::atomic<unsigned> counter{0};
  // Output of short commands goes to scratch_dir/cmd/NAME-N.{out,err}.
  std::error_code ec;
  std::filesystem::create_directories(scratch_dir + "/cmd", ec);
  const std::string base = scratch_dir + "/cmd/" + name + "-" + std::to_string(counter.fetch_add(1));
  const std::string out_path = base + ".out";
  const std::string err_path = base + ".err";
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  POSTERN_TRY(auto child, spawn(name, argv, env, out_path, err_path));
  Finished f;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool done = false;
  while (!done) {
    const pid_t r = ::waitpid(child.pid, &status, WNOHANG);
    if (r == child.pid || r < 0) {
      done = true;
      forget(child.pid);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline || (interruptible && interrupted())) {
      f.timed_out = true;
      stop(child.pid);
      status = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done && WIFEXITED(status)) f.exit_code = WEXITSTATUS(status);
  f.out = read_file(out_path);
  f.err = read_file(err_path, 64 * 1024);
  return f;
}

namespace {
template <class Match>
Result<std::string> wait_for(const std::string& path, pid_t pid, std::chrono::milliseconds timeout, Match match) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line)) {
      if (match(line)) return line;
    }
    if (pid >= 0 && !running(pid)) return Errc::failed;
    if (std::chrono::steady_clock::now() >= deadline) return Errc::timeout;
    if (interrupted()) return Errc::failed;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}
}  // namespace

Result<std::string> wait_for_line(const std::string& path, const std::string& prefix, pid_t pid,
                                  std::chrono::milliseconds timeout) {
  return wait_for(path, pid, timeout, [&](const std::string& line) { return line.rfind(prefix, 0) == 0; });
}

Result<std::string> wait_for_text(const std::string& path, const std::string& text, pid_t pid,
                                  std::chrono::milliseconds timeout) {
  return wait_for(path, pid, timeout, [&](const std::string& line) { return line.find(text) != std::string::npos; });
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool interrupted() noexcept { return g_signals.load() > 0; }

bool sleep_for(std::chrono::milliseconds d) {
  const auto deadline = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < deadline) {
    if (interrupted()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(20),
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()) +
            std::chrono::milliseconds(1)));
  }
  return !interrupted();
}

std::string read_file(const std::string& path, std::size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::string out(limit, '\0');
  in.read(out.data(), static_cast<std::streamsize>(limit));
  out.resize(static_cast<std::size_t>(in.gcount()));
  return out;
}

Status write_file(const std::string& path, const std::string& text, unsigned mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return Errc::io_error;
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return Errc::io_error;
    }
    done += static_cast<std::size_t>(n);
  }
  ::fchmod(fd, static_cast<mode_t>(mode));
  ::close(fd);
  return {};
}

}  // namespace postern::lab::runner
