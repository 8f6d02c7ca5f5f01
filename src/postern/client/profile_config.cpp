#include "postern/client/profile_config.h"

#include <set>
#include <toml++/toml.h>

namespace postern::client {

std::string apply_profile_config(const std::filesystem::path& profile_dir, MessengerConfig& config) {
  const auto path = profile_dir / "config.toml";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  toml::table root;
  try {
    root = toml::parse_file(path.string());
  } catch (const toml::parse_error& e) {
    return path.string() + ": " + std::string(e.description());
  }
  static const std::set<std::string> kKeys = {"signed_prekey_rotation_hours", "identity_change"};
  for (const auto& [key, value] : root) {
    if (!kKeys.contains(std::string(key.str()))) return path.string() + ": unknown key " + std::string(key.str());
  }
  if (const auto* n = root.get("signed_prekey_rotation_hours")) {
    const auto v = n->value<std::int64_t>();
    if (!n->is_integer() || !v || *v < 1 || *v > 720)
      return path.string() + ": signed_prekey_rotation_hours must be a whole number from 1 to 720";
    config.signed_pre_key_rotation_ms = *v * 3600 * 1000;
  }
  if (const auto* n = root.get("identity_change")) {
    const auto v = n->value<std::string>();
    if (!n->is_string() || !v || (*v != "block" && *v != "warn"))
      return path.string() + ": identity_change must be \"block\" or \"warn\"";
    config.identity_policy = *v == "warn" ? IdentityChangePolicy::warn_and_trust : IdentityChangePolicy::block_until_accepted;
  }
  return {};
}

}  // namespace postern::client
