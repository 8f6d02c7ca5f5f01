// An Api (postern-server's request handling) over a real SqliteServerStore in a fresh directory
// under /tmp, with a deterministic Rng, a manual clock, proofs of work of difficulty 0, the
// cheapest Argon2id and no rate limits: the world of the fuzz targets that drive the server.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "invariant.h"
#include "postern/crypto/random.h"
#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/store/sqlite_server_store.h"
#include "postern/util/bytes.h"
#include "postern/util/clock.h"

namespace postern::fuzz {

struct ApiFixture {
  ApiFixture(std::uint64_t seed, const std::string& name) : rng(seed), clock(1'800'000'000'000) {
    std::string pattern = "/tmp/postern-" + name + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) fail("mkdtemp");
    dir = pattern;
    auto opened = store::SqliteServerStore::open(dir + "/postern.db");
    if (!opened) fail("opening the store");
    db = std::move(*opened);
    config.pow_difficulty = 0;
    config.password.opslimit = 1;
    config.password.memlimit = 8192;
    const account::RateLimit plenty{1e9, 1e9};
    config.rate_limits = {plenty, plenty, plenty, plenty, plenty, plenty, 1000, plenty};
    std::array<std::uint8_t, 32> secret{};
    secret.fill(static_cast<std::uint8_t>(seed));
    api = std::make_unique<server::Api>(*db, config, ByteView(secret.data(), secret.size()), clock, rng);
  }
  ~ApiFixture() {
    api.reset();
    db.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  ApiFixture(const ApiFixture&) = delete;
  ApiFixture& operator=(const ApiFixture&) = delete;

  crypto::DeterministicRng rng;
  ManualClock clock;
  std::string dir;
  std::unique_ptr<store::SqliteServerStore> db;
  server::ServerConfig config;
  std::unique_ptr<server::Api> api;
};

}  // namespace postern::fuzz
