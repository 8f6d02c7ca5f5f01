#include "bench_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace postern::bench {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

void ServerProcess::start(const std::string& binary, const std::string& config_text) {
  char tmpl[] = "/tmp/postern-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir = tmpl;
  const std::string config = dir + "/server.toml";
  std::ofstream(config) << config_text;
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  const std::string data = dir + "/data";
  const std::string log = dir + "/stderr.log";
  pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the load generator
    dup2(out[1], 1);
    const int err = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (err >= 0) dup2(err, 2);
    close(out[0]);
    close(out[1]);
    execl(binary.c_str(), binary.c_str(), "--data", data.c_str(), "--listen", "127.0.0.1:0",
          "--admin-listen", "127.0.0.1:0", "--config", config.c_str(), "--log-level", "warn",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string buffer;
  const auto started = Clock::now();
  while ((port == 0 || admin_port == 0) && seconds_since(started) < 30) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char chunk[256];
    const ssize_t n = read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    std::istringstream lines(buffer);
    std::string line;
    while (std::getline(lines, line)) {
      const auto colon = line.rfind(':');
      if (colon == std::string::npos) continue;
      const auto value = static_cast<std::uint16_t>(std::atoi(line.c_str() + colon + 1));
      if (line.starts_with("listening on ")) port = value;
      if (line.starts_with("admin listening on ")) admin_port = value;
    }
  }
  close(out[0]);  // the server writes nothing more to stdout
  if (port == 0) {
    std::ifstream err(log);
    std::stringstream s;
    s << err.rdbuf();
    throw std::runtime_error("the server did not start: " + s.str());
  }
}


void ServerProcess::stop() {
  if (pid > 0) {
    int early = 0;
    if (waitpid(pid, &early, WNOHANG) == pid) {
      // It ended before we stopped it: show why.
      std::ifstream err(dir + "/stderr.log");
      std::stringstream s;
      s << err.rdbuf();
      std::fprintf(stderr, "postern-server ended early (status %d); its stderr:\n%s\n", early,
                   s.str().c_str());
      pid = -1;
    }
  }
  if (pid > 0) {
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; ++i) sleep_ms(20);
    if (waitpid(pid, &status, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    pid = -1;
  }
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    dir.clear();
  }
}


std::int64_t ServerProcess::rss() const {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::atoll(line.c_str() + 6) * 1024;
  }
  return -1;
}

double ServerProcess::cpu_seconds() const {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::atof(field.c_str());
    if (i == 15) break;
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string ServerProcess::invite() const {
  std::ifstream in(dir + "/data/invite.txt");
  std::string line;
  std::getline(in, line);
  return line;
}

std::string find_server(const std::string& given) {
  namespace fs = std::filesystem;
  if (!given.empty()) return given;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  // The bench sits in BUILD/bench; the server in BUILD/apps/postern-server.
  for (fs::path dir = self.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    const fs::path candidate = dir / "apps" / "postern-server" / "postern-server";
    if (fs::exists(candidate, ec)) return candidate.string();
  }
  throw std::runtime_error("postern-server not found next to this binary; give --server PATH");
}


}  // namespace postern::bench
