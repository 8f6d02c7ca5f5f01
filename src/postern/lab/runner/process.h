// Processes of the lab (docs/censorship.md, "The lab"): every program the lab runs (ip, nft,
// the servers, the clients, the censor) is started here with fork/exec, optionally inside a
// network namespace through `ip netns exec NS argv...`, with its stdout and stderr going to
// files in the run directory. Each started process is remembered in a table so that teardown
// (and the SIGINT/SIGTERM handlers) can stop every one of them by its PID and nothing else.
//
// Waiting is by polling (waitpid WNOHANG, reading the output file) with a deadline, and every
// wait gives up early when an interrupt was requested (interrupted()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "postern/util/result.h"

namespace postern::lab::runner {

using Argv = std::vector<std::string>;
using Env = std::vector<std::pair<std::string, std::string>>;  // added to (or replacing in) ours

// argv prefixed with `ip netns exec NS` (unchanged when ns is empty).
Argv in_namespace(const std::string& ns, const Argv& argv);

struct Spawned {
  pid_t pid = -1;
  std::string name;      // for the log
  std::string out_path;  // stdout
  std::string err_path;  // stderr
};

struct Finished {
  int exit_code = -1;   // -1: killed by a signal, or timed out
  bool timed_out = false;
  std::string out;      // stdout (at most 1 MiB kept)
  std::string err;      // stderr (at most 64 KiB kept)
};

// Starts argv (argv[0] searched in PATH) in its own process group, stdin from /dev/null,
// stdout/stderr appended to the given files. The process is added to the table.
Result<Spawned> spawn(const std::string& name, const Argv& argv, const Env& env, const std::string& out_path,
                      const std::string& err_path);

// Runs argv to its end, at most `timeout` (then SIGTERM, SIGKILL after 3 s). Output goes through
// files under `scratch_dir`/cmd (kept there, named after `name`).
// `interruptible` false: an interrupt does not cut it short (teardown commands).
Result<Finished> run(const std::string& name, const Argv& argv, const Env& env, const std::string& scratch_dir,
                     std::chrono::milliseconds timeout, bool interruptible = true);

// Waits until the file holds a line starting with `prefix` and returns that line (without the
// newline); timeout, or the process exited first (pid >= 0): error.
Result<std::string> wait_for_line(const std::string& path, const std::string& prefix, pid_t pid,
                                  std::chrono::milliseconds timeout);
// The same for a line that contains `text` anywhere (log lines that start with a time stamp).
Result<std::string> wait_for_text(const std::string& path, const std::string& text, pid_t pid,
                                  std::chrono::milliseconds timeout);

// Runs argv in the foreground with our stdin/stdout/stderr (the `shell` command), SIGINT ignored
// by the lab meanwhile; returns its exit status.
int run_interactive(const Argv& argv, const Env& env);

// Whether the process (one of ours) still runs; reaps it when it ended.
bool running(pid_t pid);

// SIGTERM, then SIGKILL after `grace`; reaps it and drops it from the table.
void stop(pid_t pid, std::chrono::milliseconds grace = std::chrono::seconds(3));
// Stops every process in the table (newest first).
void stop_all(std::chrono::milliseconds grace = std::chrono::seconds(3));

// SIGINT/SIGTERM: the first asks the lab to stop (interrupted() becomes true, waits give up);
// the second sends SIGKILL to every process in the table at once.
void install_signal_handlers();
bool interrupted() noexcept;

// Sleeps in small steps; false when interrupted.
bool sleep_for(std::chrono::milliseconds d);

// The file's content (at most `limit` bytes), empty when it cannot be read.
std::string read_file(const std::string& path, std::size_t limit = 1 << 20);
Status write_file(const std::string& path, const std::string& text, unsigned mode = 0644);

// The program's full path when it is found in PATH (or is an executable path), else nothing.
std::optional<std::string> find_program(const std::string& name);

}  // namespace postern::lab::runner
