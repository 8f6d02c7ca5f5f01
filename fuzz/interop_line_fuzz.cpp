// The interop peer's line protocol (apps/postern-interop) on junk. Each input is a short script:
// its lines ('\n'-separated, at most kInteropMaxLines) go one by one to InteropPeer::handle, after an
// `init` of a fresh peer whose DeterministicRng has a fixed seed. A fresh peer per input keeps
// every input reproducible on its own (no state carried over from earlier inputs); several lines
// per input let the fuzzer reach commands that need earlier ones (bundle -> decrypt, skdm_process
// -> group_decrypt), and a single line is simply a one-line script.
//
// What must hold besides "no crash": each command gets exactly one answer line, `ok`, `ok ...` or
// `err <code> <text>` (only `quit` answers nothing), and the answer never contains a newline.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "interop_peer.h"
#include "interop_script.h"
#include "invariant.h"

namespace {

using postern::fuzz::fail;

using postern::fuzz::kInteropInitLine;
using postern::fuzz::kInteropMaxLines;
using postern::fuzz::kInteropPeerSeed;
// `fingerprint` accepts up to 1,000,000 iterations (two SHA-512 chains of that length, about a
// second): legitimate, but it would only make the fuzzer slow. Lines asking for more are skipped.
constexpr int kMaxFingerprintIterations = 10'000;

bool too_slow(std::string_view line) {
  constexpr std::string_view kCmd = "fingerprint ";
  if (line.substr(0, kCmd.size()) != kCmd) return false;
  line.remove_prefix(kCmd.size());
  int iterations = 0;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), iterations);
  (void)p;
  return ec == std::errc{} && iterations > kMaxFingerprintIterations;
}

bool well_formed(const std::string& answer) {
  if (answer.find('\n') != std::string::npos) return false;
  return answer == "ok" || answer.rfind("ok ", 0) == 0 || answer.rfind("err ", 0) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  postern::crypto::DeterministicRng rng(kInteropPeerSeed);
  postern::interop::InteropPeer peer(rng);
  bool quit = false;
  if (peer.handle(kInteropInitLine, quit).rfind("ok ", 0) != 0) fail("init of the interop peer failed");

  std::string_view script(reinterpret_cast<const char*>(data), size);
  for (std::size_t n = 0; n < kInteropMaxLines && !script.empty(); ++n) {
    const std::size_t end = script.find('\n');
    const std::string_view line = script.substr(0, end);
    script.remove_prefix(end == std::string_view::npos ? script.size() : end + 1);
    if (too_slow(line)) continue;
    const std::string answer = peer.handle(line, quit);
    if (quit) {
      if (!answer.empty()) fail("quit produced an answer");
      break;
    }
    if (!well_formed(answer)) fail("answer is not one `ok ...` / `err ...` line");
  }
  return 0;
}
