// A postern-server child process for the benchmarks (postern-loadbench, postern-clientbench):
// started on loopback with ephemeral ports and a given config, stopped by its PID, its
// directory removed. Never outlives the benchmark (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace postern::bench {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t);
void sleep_ms(int ms);

struct ServerProcess {
  pid_t pid = -1;
  std::string dir;
  std::uint16_t port = 0;
  std::uint16_t admin_port = 0;

  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  // Throws std::runtime_error when the server does not start (with its stderr).
  void start(const std::string& binary, const std::string& config_text);
  void stop();
  // VmRSS of the server in bytes, -1 if unreadable.
  std::int64_t rss() const;
  // User + system CPU seconds of the server.
  double cpu_seconds() const;
  // The invite link the server wrote into its data directory.
  std::string invite() const;
};

// The server binary: `given`, else BUILD/apps/postern-server/postern-server above this binary.
std::string find_server(const std::string& given);

}  // namespace postern::bench
