// The profile's settings file, PROFILE/config.toml (optional; docs/client.md lists the keys):
//   signed_prekey_rotation_hours = 48   # 1 .. 720
//   identity_change = "block"          # "block" (default) or "warn"
// Unknown keys and out-of-range values are refused with a message naming the key.
#pragma once

#include <filesystem>
#include <string>

#include "postern/client/messenger.h"

namespace postern::client {

// Applies PROFILE/config.toml to `config` (nothing when the file does not exist). Returns an empty
// string on success, else a sentence for the user.
std::string apply_profile_config(const std::filesystem::path& profile_dir, MessengerConfig& config);

}  // namespace postern::client
