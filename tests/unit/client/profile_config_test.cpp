#include "postern/client/profile_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "store/temp_dir.h"

namespace postern::client {
namespace {

std::string apply(const std::string& text, MessengerConfig& config) {
  store::store_test::TempDir dir;
  std::ofstream(dir.file("config.toml")) << text;
  return apply_profile_config(dir.path(), config);
}

TEST(ProfileConfig, AbsentFileChangesNothing) {
  store::store_test::TempDir dir;
  MessengerConfig config;
  EXPECT_EQ(apply_profile_config(dir.path(), config), "");
  EXPECT_EQ(config.signed_pre_key_rotation_ms, 2LL * 24 * 3600 * 1000);
  EXPECT_EQ(config.identity_policy, IdentityChangePolicy::block_until_accepted);
}

TEST(ProfileConfig, AppliesKeys) {
  MessengerConfig config;
  EXPECT_EQ(apply("signed_prekey_rotation_hours = 12\nidentity_change = \"warn\"\n", config), "");
  EXPECT_EQ(config.signed_pre_key_rotation_ms, 12LL * 3600 * 1000);
  EXPECT_EQ(config.identity_policy, IdentityChangePolicy::warn_and_trust);
}

TEST(ProfileConfig, RefusesWithTheKeyNamed) {
  for (const char* bad : {"rotation = 1\n", "signed_prekey_rotation_hours = 0\n", "signed_prekey_rotation_hours = \"2\"\n",
                          "signed_prekey_rotation_hours = 721\n", "identity_change = \"maybe\"\n", "identity_change = 1\n",
                          "this is not toml = = =\n"}) {
    MessengerConfig config;
    const std::string problem = apply(bad, config);
    EXPECT_FALSE(problem.empty()) << bad;
    EXPECT_NE(problem.find("config.toml"), std::string::npos) << problem;
  }
}

}  // namespace
}  // namespace postern::client
