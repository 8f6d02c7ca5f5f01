// Terminal helpers of the postern program: progress bars on stderr (only when it is a terminal),
// password prompts without echo, and raw key reading for `postern chat`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace postern::cli {

bool stderr_is_terminal();
bool stdin_is_terminal();

// "\r[#########           ]  45%  12.3 MB / 27.0 MB  label", redrawn at most 10 times a second.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  void update(std::uint64_t done, std::uint64_t total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Reads a line from the terminal without echo (passwords). std::nullopt at end of input.
std::optional<std::string> read_secret(const std::string& prompt);

// Raw mode for the interactive chat: keys arrive one by one, echoed by the caller.
class RawMode {
 public:
  RawMode();
  ~RawMode();
  bool active() const { return active_; }

 private:
  bool active_ = false;
};

}  // namespace postern::cli
