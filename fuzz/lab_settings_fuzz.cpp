// The censor's settings file (lab/profile.h settings_from_json) on hostile bytes: postern-censor
// reads it from disk. Checked beyond "no crash": settings that parse survive a round trip
// (to_json, then settings_from_json again, then to_json gives the same text), and their
// probabilities are in [0, 1].
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "invariant.h"
#include "postern/lab/profile.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto parsed = postern::lab::settings_from_json(text);
  if (!parsed) return 0;
  if (parsed->fet_probability < 0 || parsed->fet_probability > 1) postern::fuzz::fail("fet probability");
  if (parsed->sni_penalty_probability < 0 || parsed->sni_penalty_probability > 1) {
    postern::fuzz::fail("penalty probability");
  }
  const std::string once = postern::lab::to_json(*parsed);
  const auto again = postern::lab::settings_from_json(once);
  if (!again) postern::fuzz::fail("to_json output does not parse");
  if (postern::lab::to_json(*again) != once) postern::fuzz::fail("round trip changes the settings");
  return 0;
}
