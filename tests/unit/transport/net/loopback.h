// What the transport's Asio tests share: a throw-away TLS identity (a self-signed certificate
// for "localhost" and an optional one-page site in a temporary directory) and a runner that
// drives coroutines on one io_context until they are all done, with a time limit.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "postern/server/tls_identity.h"

namespace postern::transport::net::test {

struct TempIdentity {
  std::string dir, cert, key, site;
  // `name` prefixes the directory; a non-empty `index_html` becomes site/index.html.
  explicit TempIdentity(std::string_view name, std::string_view index_html = {}) {
    std::string tmpl = "/tmp/" + std::string(name) + ".XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    site = dir + "/site";
    auto st = postern::server::ensure_self_signed_certificate(cert, key, "localhost");
    if (!st.ok()) throw std::runtime_error("ensure_self_signed_certificate failed");
    if (!index_html.empty()) {
      std::filesystem::create_directory(site);
      std::ofstream(site + "/index.html", std::ios::binary) << index_html;
    }
  }
  ~TempIdentity() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  TempIdentity(const TempIdentity&) = delete;
  TempIdentity& operator=(const TempIdentity&) = delete;
};

// Runs the spawned coroutines to completion; the first exception fails the test.
class Runner {
 public:
  boost::asio::io_context io;
  // f: a callable returning awaitable<void>; co_spawn keeps it (and a lambda's captures) alive.
  template <class F>
  void spawn(F f) {
    ++live_;
    boost::asio::co_spawn(io, std::move(f), [this](std::exception_ptr e) {
      --live_;
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::fprintf(stderr, "coroutine failed: %s\n", x.what());
        }
        if (!error_) error_ = e;
      }
    });
  }
  void run(std::chrono::milliseconds limit = std::chrono::milliseconds(8000)) {
    boost::asio::steady_timer guard(io, limit);
    guard.async_wait([this](boost::system::error_code ec) {
      if (!ec) timed_out_ = true;
    });
    while (live_ > 0 && !timed_out_ && !error_) {
      if (io.run_one() == 0) break;
    }
    guard.cancel();
    io.restart();
    io.poll();
    ASSERT_FALSE(timed_out_) << "test coroutines did not finish in time";
    if (error_) std::rethrow_exception(error_);
    ASSERT_EQ(live_, 0);
  }

 private:
  int live_ = 0;
  bool timed_out_ = false;
  std::exception_ptr error_;
};

}  // namespace postern::transport::net::test
