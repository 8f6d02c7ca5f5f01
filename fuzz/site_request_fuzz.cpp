// parse_request_head and the site's answers on hostile bytes. The first input byte picks the
// buffer limits (nginx's defaults, or tiny buffers so that the 414/494 paths are reached by short
// inputs); the rest is the request head. A complete head is answered by a Site serving a small
// directory made once in /tmp (an index, a file, a directory without an index, a symlink out of
// the root), so the file-system paths are fuzzed too. Checked beyond "no crash": a complete head
// fits the input and has a normalised path without "." or ".." segments, errors carry one of
// nginx's statuses, and every answer that has a head starts with "HTTP/1.1 ".
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "invariant.h"
#include "postern/transport/site.h"

namespace {

using postern::transport::site::NginxLimits;
using postern::transport::site::ParseState;
using postern::transport::site::Site;

std::string g_root;

void remove_root() {
  std::error_code ignored;
  std::filesystem::remove_all(g_root, ignored);
}

const Site& site() {
  static const Site s = [] {
    std::string pattern = "/tmp/postern-site-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) postern::fuzz::fail("mkdtemp");
    g_root = pattern;
    std::atexit(remove_root);
    std::error_code ec;
    std::filesystem::create_directories(g_root + "/sub/deeper", ec);
    std::ofstream(g_root + "/index.html") << "<html>hello</html>\n";
    std::ofstream(g_root + "/style.css") << "body{}\n";
    std::filesystem::create_symlink("/etc", g_root + "/out", ec);
    auto opened = Site::open(g_root);
    if (!opened) postern::fuzz::fail("Site::open");
    return std::move(opened).value();
  }();
  return s;
}

bool valid_path(const std::string& p) {
  if (p.empty() || p.front() != '/') return false;
  if (p.find("//") != std::string::npos) return false;
  std::size_t i = 0;
  while (i < p.size()) {
    const std::size_t next = p.find('/', i + 1);
    const std::string seg = p.substr(i + 1, (next == std::string::npos ? p.size() : next) - i - 1);
    if (seg == "." || seg == "..") return false;
    if (next == std::string::npos) break;
    i = next;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  NginxLimits limits;
  if (data[0] & 1) {
    limits.client_header_buffer = 16;
    limits.large_header_buffer = 64;
    limits.large_header_buffers = 2;
  }
  const postern::ByteView in(data + 1, size - 1);
  const auto now = std::chrono::system_clock::time_point{} + std::chrono::seconds(1'800'000'000);
  const auto r = postern::transport::site::parse_request_head(in, limits);
  const bool plain = (data[0] & 2) != 0;
  switch (r.state) {
    case ParseState::incomplete:
      break;
    case ParseState::error: {
      switch (r.error_status) {
        case 400: case 405: case 414: case 494: case 501: case 505: break;
        default: postern::fuzz::fail("unexpected error status");
      }
      const auto resp = site().error_response(r, plain, now);
      if (!resp.head.empty() && resp.head.rfind("HTTP/1.1 ", 0) != 0) postern::fuzz::fail("bad error head");
      (void)site().error_response(r.error_status, plain, now);
      break;
    }
    case ParseState::complete: {
      if (r.head.head_size == 0 || r.head.head_size > in.size()) postern::fuzz::fail("head_size");
      if (!valid_path(r.head.path)) postern::fuzz::fail("path not normalised");
      const auto resp = site().respond(r.head, plain, now, 1 + (data[0] >> 4));
      if (!resp.head.empty() && resp.head.rfind("HTTP/1.1 ", 0) != 0) postern::fuzz::fail("bad head");
      if (!resp.file.empty()) {
        const std::string f = resp.file.native();
        if (f.rfind(g_root + "/", 0) != 0) postern::fuzz::fail("file outside the root");
      }
      break;
    }
  }
  return 0;
}
