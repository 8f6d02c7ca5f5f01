// The nginx-alike camouflage site (site.h). Our own code, written from nginx 1.22.1's observable
// behaviour (tests/integration/site_compare.py captures it) and its documented defaults:
// - parse_request_head re-parses the whole buffered head on every call (heads are small, and a
//   restartable parser keeps no state between reads). It walks the bytes with nginx's acceptance
//   rules and decides at the same byte as nginx: an invalid byte is an error at once even when the
//   line is unfinished, because a prober can time the answer. It also replays nginx's buffer
//   growth (one client_header_buffer, then up to N large buffers that each must hold the line
//   being parsed) to find where nginx gives up with 414 or 494.
// - Site::respond follows the static, index and range modules of a default `location /`: the
//   file-system outcome picks the status, and the head is written with nginx's header order.
// - Nothing here throws on outside input: file-system calls use error codes or POSIX calls.
#include "postern/transport/site.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <limits>
#include <system_error>

#include "postern/transport/ascii.h"
#include "postern/transport/errors.h"

namespace postern::transport::site {
namespace {

constexpr std::string_view kServer = "nginx/1.22.1";
// Longest decoded path we map to the file system; longer is "not found" (nginx: ENAMETOOLONG).
constexpr std::size_t kMaxPathBytes = 4096;
// Largest multipart/byteranges answer we build in memory; beyond it the whole file is sent (200).
constexpr std::uint64_t kMaxMultipartBytes = 1 << 20;
constexpr char kPadding[] = "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";

using ascii::icontains;
using ascii::iequals;
using ascii::lower;

bool is_alpha(std::uint8_t c) {
  const std::uint8_t l = c | 0x20;
  return l >= 'a' && l <= 'z';
}
bool is_digit(std::uint8_t c) { return c >= '0' && c <= '9'; }
bool is_ctl(std::uint8_t c) { return c < 0x20 || c == 0x7f; }

int hex_value(std::uint8_t c) {
  if (is_digit(c)) return c - '0';
  const std::uint8_t l = c | 0x20;
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Host names (nginx's validation of the request-line host and of Host).

// The server name nginx keeps: lower case, without ":port" and a trailing dot. nullopt = invalid
// (400): "..", a '/' or '\0' or a control/space byte, or nothing left.
std::optional<std::string> validate_host(std::string_view h) {
  std::size_t dot_pos = h.size();
  std::size_t host_len = h.size();
  enum { usual, literal, rest } state = usual;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const auto c = static_cast<std::uint8_t>(h[i]);
    switch (c) {
      case '.':
        if (i > 0 && dot_pos == i - 1) return std::nullopt;
        dot_pos = i;
        break;
      case ':':
        if (state == usual) {
          host_len = i;
          state = rest;
        }
        break;
      case '[':
        if (i == 0) state = literal;
        break;
      case ']':
        if (state == literal) {
          host_len = i + 1;
          state = rest;
        }
        break;
      default:
        if (c == '/' || c <= 0x20 || c == 0x7f) return std::nullopt;
        break;
    }
  }
  if (host_len > 0 && dot_pos == host_len - 1) --host_len;
  if (host_len == 0) return std::nullopt;
  std::string out(h.substr(0, host_len));
  for (auto& c : out) c = lower(c);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The target's path: %XX decoding, "." and ".." segments, merged slashes.

// Decoded '/' and '.' act like the literal characters (so "%2e%2e" climbs, "%2f" separates);
// any other decoded byte is literal, and "%00" or a bad escape is an error. A literal '#' ends
// the path. nullopt = 400 (including ".." above the root).
std::optional<std::string> normalise_path(std::string_view raw) {
  struct Token {
    char c;
    bool structural;
  };
  std::vector<Token> tokens;
  tokens.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '#') break;
    if (c == '%') {
      if (i + 2 >= raw.size()) return std::nullopt;
      const int hi = hex_value(static_cast<std::uint8_t>(raw[i + 1]));
      const int lo = hex_value(static_cast<std::uint8_t>(raw[i + 2]));
      if (hi < 0 || lo < 0) return std::nullopt;
      const char d = static_cast<char>(hi * 16 + lo);
      if (d == '\0') return std::nullopt;
      tokens.push_back({d, d == '/' || d == '.'});
      i += 2;
      continue;
    }
    tokens.push_back({c, true});
  }
  std::vector<std::string> segments;
  std::string current;
  bool current_special = true;  // all of `current` is structural dots (or empty)
  bool trailing_slash = false;
  auto finish_segment = [&]() -> bool {
    if (current.empty()) return true;  // merged slash
    if (current_special && current == ".") {
      trailing_slash = true;
    } else if (current_special && current == "..") {
      if (segments.empty()) return false;
      segments.pop_back();
      trailing_slash = true;
    } else {
      segments.push_back(current);
      trailing_slash = false;
    }
    current.clear();
    current_special = true;
    return true;
  };
  for (const auto& t : tokens) {
    if (t.c == '/' && t.structural) {
      if (!finish_segment()) return std::nullopt;
      trailing_slash = true;
      continue;
    }
    current.push_back(t.c);
    if (!(t.c == '.' && t.structural)) current_special = false;
  }
  if (!current.empty()) {
    trailing_slash = false;
    if (!finish_segment()) return std::nullopt;
  }
  std::string out;
  for (const auto& s : segments) {
    out.push_back('/');
    out += s;
  }
  if (out.empty() || trailing_slash) out.push_back('/');
  return out;
}

// ---------------------------------------------------------------------------------------------
// The request-head parser.

enum class Fail { none, bad_request, bad_version, uri_too_long, header_too_large };

int status_of(Fail f) {
  switch (f) {
    case Fail::bad_request: return 400;
    case Fail::bad_version: return 505;
    case Fail::uri_too_long: return 414;
    case Fail::header_too_large: return 494;
    case Fail::none: break;
  }
  return 0;
}

// nginx's buffers for one request head: the first client_header_buffer, then large buffers, each
// filled from the start of the line being parsed when the previous one ran full.
struct Buffers {
  std::size_t start = 0;
  std::size_t capacity = 0;
  std::size_t large_used = 0;
};

class Parser {
 public:
  Parser(ByteView in, const NginxLimits& limits) : in_(in), limits_(limits) {
    buf_.capacity = std::max<std::size_t>(limits.client_header_buffer, 1);
  }

  ParseResult run() {
    ParseResult r;
    const Fail line = request_line(r.head);
    if (line != Fail::none) return fail(r, line);
    if (!done_) return r;  // incomplete
    if (r.head.version == 9) {
      r.head.keep_alive = false;
      r.head.head_size = pos_;
      if (r.head.method != "GET") return fail(r, Fail::bad_request);
      if (!finish_target(r.head)) return fail(r, Fail::bad_request);
      r.state = ParseState::complete;
      return r;
    }
    if (!finish_target(r.head)) return fail(r, Fail::bad_request);
    done_ = false;
    const Fail headers = header_lines(r.head);
    if (headers != Fail::none) return fail(r, headers);
    if (!done_) return r;
    r.head.head_size = pos_;
    return finish_head(r);
  }

 private:
  static ParseResult& fail(ParseResult& r, Fail f) {
    r.state = ParseState::error;
    r.error_status = status_of(f);
    return r;
  }

  // The next byte, or nullopt when nginx would wait (all buffered bytes used) or give up (its
  // buffers are full: `overflow_` is set and the caller reports 414 or 494). `mid_line`: the
  // line from `line_start` must move into the next large buffer, and must fit in it.
  std::optional<std::uint8_t> next(bool mid_line, std::size_t line_start) {
    if (pos_ == buf_.start + buf_.capacity) {
      if (mid_line && pos_ - line_start >= limits_.large_header_buffer) {
        overflow_ = true;
        return std::nullopt;
      }
      if (buf_.large_used >= limits_.large_header_buffers || limits_.large_header_buffer == 0) {
        overflow_ = true;
        return std::nullopt;
      }
      ++buf_.large_used;
      buf_.start = mid_line ? line_start : pos_;
      buf_.capacity = limits_.large_header_buffer;
      if (pos_ >= buf_.start + buf_.capacity) {
        overflow_ = true;
        return std::nullopt;
      }
    }
    if (pos_ >= in_.size()) return std::nullopt;
    return in_[pos_++];
  }

  Fail request_line(RequestHead& h);
  bool finish_target(RequestHead& h);
  Fail header_lines(RequestHead& h);
  Fail header_line_done(RequestHead& h, std::string name, std::string value, bool valid_name);
  ParseResult finish_head(ParseResult& r);

  ByteView in_;
  const NginxLimits& limits_;
  Buffers buf_;
  std::size_t pos_ = 0;
  bool overflow_ = false;
  bool done_ = false;
  // Target pieces (offsets into in_).
  std::size_t target_start_ = 0, target_end_ = 0;
  std::size_t path_start_ = 0, path_end_ = 0;  // path_start_ == path_end_: empty path ("/")
  std::size_t args_start_ = 0, args_end_ = 0;
  bool has_args_ = false;
  std::size_t host_start_ = 0, host_end_ = 0;
  bool has_host_ = false;
  // Per-request header state.
  bool seen_host_header_ = false;
  bool seen_cl_ = false, seen_te_ = false;
  std::vector<std::string> seen_unique_;
  std::string connection_, content_length_, transfer_encoding_;
};

Fail Parser::request_line(RequestHead& h) {
  enum class S {
    start, method, before_target, scheme, scheme_slash, scheme_slash2, host_start, host, host_literal,
    host_end, port, path, args, after_target, h1, ht, htt, http, first_major, major, first_minor, minor, after_version,
    almost_done
  };
  S s = S::start;
  std::size_t line_start = 0;
  unsigned major = 0, minor = 0;
  bool args_or_fragment = false;  // inside "?args" or "#fragment": '?' and '#' are plain there
  std::string method;
  bool version09 = false;
  for (;;) {
    const bool mid = s != S::start;
    const auto next_byte = next(mid, line_start);
    if (!next_byte) return overflow_ ? Fail::uri_too_long : Fail::none;
    const std::uint8_t c = *next_byte;
    const std::size_t at = pos_ - 1;
    switch (s) {
      case S::start:
        if (c == '\r' || c == '\n') break;
        if (!((c >= 'A' && c <= 'Z') || c == '_' || c == '-')) return Fail::bad_request;
        line_start = at;
        method.push_back(static_cast<char>(c));
        s = S::method;
        break;
      case S::method:
        if (c == ' ') {
          h.method = method;  // nginx knows the method (e.g. HEAD: no error body) from here
          s = S::before_target;
          break;
        }
        if (!((c >= 'A' && c <= 'Z') || c == '_' || c == '-')) return Fail::bad_request;
        method.push_back(static_cast<char>(c));
        break;
      case S::before_target:
        if (c == ' ') break;
        target_start_ = at;
        if (c == '/') {
          path_start_ = at;
          s = S::path;
          break;
        }
        if (is_alpha(c)) {
          s = S::scheme;
          break;
        }
        return Fail::bad_request;
      case S::scheme:
        if (is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.') break;
        if (c == ':') {
          s = S::scheme_slash;
          break;
        }
        return Fail::bad_request;
      case S::scheme_slash:
        if (c != '/') return Fail::bad_request;
        s = S::scheme_slash2;
        break;
      case S::scheme_slash2:
        if (c != '/') return Fail::bad_request;
        s = S::host_start;
        host_start_ = pos_;
        has_host_ = true;
        break;
      case S::host_start:
        if (c == '[') {
          s = S::host_literal;
          break;
        }
        s = S::host;
        [[fallthrough]];
      case S::host:
        if (is_alpha(c) || is_digit(c) || c == '.' || c == '-') break;
        host_end_ = at;
        if (c == ':') {
          s = S::port;
          break;
        }
        s = S::host_end;
        [[fallthrough]];
      case S::host_end:
      case S::port:
        // After the host (and the port's digits): the path, the query, or the end of the target.
        if (s == S::port && is_digit(c)) break;
        if (s == S::host_end && c == ':') {
          s = S::port;
          break;
        }
        if (c == '/') {
          path_start_ = at;
          s = S::path;
          break;
        }
        if (c == '?') {
          path_start_ = path_end_ = at;
          args_start_ = at + 1;
          has_args_ = true;
          args_or_fragment = true;
          s = S::args;
          break;
        }
        if (c == ' ') {
          path_start_ = path_end_ = target_end_ = at;
          s = S::after_target;
          break;
        }
        return Fail::bad_request;
      case S::host_literal:
        if (is_alpha(c) || is_digit(c)) break;
        if (c == ']') {
          host_end_ = pos_;
          s = S::host_end;
          break;
        }
        switch (c) {
          case ':': case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'':
          case '(': case ')': case '*': case '+': case ',': case ';': case '=':
            break;
          default:
            return Fail::bad_request;
        }
        break;
      case S::path:
      case S::args:
        if (c == ' ') {
          if (s == S::path) path_end_ = at;
          if (s == S::args && has_args_ && args_end_ == 0) args_end_ = at;
          target_end_ = at;
          s = S::after_target;
          break;
        }
        if (c == '\r' || c == '\n') {
          if (s == S::path) path_end_ = at;
          if (s == S::args && has_args_ && args_end_ == 0) args_end_ = at;
          target_end_ = at;
          version09 = true;  // nginx takes it as HTTP/0.9 once the LF is in
          if (c == '\n') {
            h.version = 9;
            done_ = true;
            return Fail::none;
          }
          s = S::almost_done;
          break;
        }
        if (c == '\0' || is_ctl(c)) return Fail::bad_request;
        if (!args_or_fragment && c == '?') {
          path_end_ = at;
          args_start_ = at + 1;
          has_args_ = true;
          args_or_fragment = true;
          s = S::args;
          break;
        }
        if (c == '#') {
          if (s == S::path && !args_or_fragment) path_end_ = at;
          if (s == S::args && args_end_ == 0) args_end_ = at;
          args_or_fragment = true;
          s = S::args;
        }
        break;
      case S::after_target:
        if (c == ' ') break;
        if (c == '\r' || c == '\n') {
          version09 = true;
          if (c == '\n') {
            h.version = 9;
            done_ = true;
            return Fail::none;
          }
          s = S::almost_done;
          break;
        }
        if (c != 'H') return Fail::bad_request;
        s = S::h1;
        break;
      case S::h1:
        if (c != 'T') return Fail::bad_request;
        s = S::ht;
        break;
      case S::ht:
        if (c != 'T') return Fail::bad_request;
        s = S::htt;
        break;
      case S::htt:
        if (c != 'P') return Fail::bad_request;
        s = S::http;
        break;
      case S::http:
        if (c != '/') return Fail::bad_request;
        s = S::first_major;
        break;
      case S::first_major:
        if (c < '1' || c > '9') return Fail::bad_request;
        major = c - '0';
        if (major > 1) return Fail::bad_version;
        s = S::major;
        break;
      case S::major:
        if (c == '.') {
          s = S::first_minor;
          break;
        }
        if (!is_digit(c)) return Fail::bad_request;
        if (major > 99) return Fail::bad_request;
        major = major * 10 + (c - '0');
        if (major > 1) return Fail::bad_version;
        break;
      case S::first_minor:
        if (!is_digit(c)) return Fail::bad_request;
        minor = c - '0';
        s = S::minor;
        break;
      case S::minor:
        if (c == '\r') {
          s = S::almost_done;
          break;
        }
        if (c == '\n') {
          done_ = true;
          break;
        }
        if (c == ' ') {
          s = S::after_version;
          break;
        }
        if (!is_digit(c)) return Fail::bad_request;
        if (minor > 99) return Fail::bad_request;
        minor = minor * 10 + (c - '0');
        break;
      case S::after_version:
        if (c == ' ') break;
        if (c == '\r') {
          s = S::almost_done;
          break;
        }
        if (c == '\n') {
          done_ = true;
          break;
        }
        return Fail::bad_request;
      case S::almost_done:
        if (c != '\n') return Fail::bad_request;
        if (version09) h.version = 9;
        done_ = true;
        break;
    }
    if (done_) break;
  }
  if (!version09) h.version = (major * 1000 + minor) > 1000 ? 11 : 10;
  return Fail::none;
}

// Decodes and normalises the path, validates a request-line host. false = 400.
bool Parser::finish_target(RequestHead& h) {
  const auto chars = as_chars(in_);
  if (target_end_ < target_start_) target_end_ = target_start_;
  h.target = std::string(chars.substr(target_start_, target_end_ - target_start_));
  const std::string_view raw_path =
      path_end_ > path_start_ ? chars.substr(path_start_, path_end_ - path_start_) : std::string_view{};
  if (raw_path.empty()) {
    h.path = "/";
  } else {
    auto p = normalise_path(raw_path);
    if (!p) return false;
    h.path = std::move(*p);
  }
  if (has_args_) {
    std::size_t end = args_end_ != 0 ? args_end_ : target_end_;
    if (end < args_start_) end = args_start_;
    h.query = std::string(chars.substr(args_start_, end - args_start_));
  }
  if (has_host_) {
    auto host = validate_host(chars.substr(host_start_, host_end_ > host_start_ ? host_end_ - host_start_ : 0));
    if (!host) return false;
    h.host = std::move(*host);
  }
  return true;
}

Fail Parser::header_lines(RequestHead& h) {
  enum class S { start, name, before_value, value, after_value, almost_done, head_almost_done };
  S s = S::start;
  std::size_t line_start = pos_;
  std::string name, value;
  std::size_t value_trim = 0;  // value length without trailing spaces
  bool valid_name = true;
  for (;;) {
    const bool mid = s != S::start;
    const auto next_byte = next(mid, line_start);
    if (!next_byte) return overflow_ ? Fail::header_too_large : Fail::none;
    const std::uint8_t c = *next_byte;
    switch (s) {
      case S::start:
        line_start = pos_ - 1;
        name.clear();
        value.clear();
        value_trim = 0;
        valid_name = true;
        if (c == '\r') {
          s = S::head_almost_done;
          break;
        }
        if (c == '\n') {
          done_ = true;
          return Fail::none;
        }
        if (c <= 0x20 || c == 0x7f || c == ':') return Fail::bad_request;
        if (!(is_alpha(c) || is_digit(c) || c == '-')) valid_name = false;
        name.push_back(static_cast<char>(c));
        s = S::name;
        break;
      case S::name:
        if (c == ':') {
          s = S::before_value;
          break;
        }
        if (c == '\r' || c == '\n') {
          if (c == '\r') {
            s = S::almost_done;
            break;
          }
          if (auto f = header_line_done(h, name, value, valid_name); f != Fail::none) return f;
          s = S::start;
          break;
        }
        if (c <= 0x20 || c == 0x7f) return Fail::bad_request;
        if (!(is_alpha(c) || is_digit(c) || c == '-')) valid_name = false;
        name.push_back(static_cast<char>(c));
        break;
      case S::before_value:
        if (c == ' ') break;
        [[fallthrough]];
      case S::value:
      case S::after_value:
        if (c == '\r') {
          value.resize(value_trim);
          s = S::almost_done;
          break;
        }
        if (c == '\n') {
          value.resize(value_trim);
          if (auto f = header_line_done(h, name, value, valid_name); f != Fail::none) return f;
          s = S::start;
          break;
        }
        if (c == '\0') return Fail::bad_request;
        value.push_back(static_cast<char>(c));
        if (c != ' ') value_trim = value.size();
        s = c == ' ' ? S::after_value : S::value;
        break;
      case S::almost_done:
        if (c == '\r') break;
        if (c != '\n') return Fail::bad_request;
        if (auto f = header_line_done(h, name, value, valid_name); f != Fail::none) return f;
        s = S::start;
        break;
      case S::head_almost_done:
        if (c != '\n') return Fail::bad_request;
        done_ = true;
        return Fail::none;
    }
  }
}

// One complete header line: nginx's per-header handlers run at once, so a duplicate Host or an
// invalid Host is answered before the head ends.
Fail Parser::header_line_done(RequestHead& h, std::string name, std::string value, bool valid_name) {
  if (!valid_name) return Fail::none;  // ignore_invalid_headers: skipped entirely
  static constexpr std::array<std::string_view, 11> kUnique = {
      "host", "if-modified-since", "if-unmodified-since", "if-match", "if-none-match", "content-length",
      "content-range", "if-range", "transfer-encoding", "expect", "authorization"};
  for (const auto u : kUnique) {
    if (!iequals(name, u)) continue;
    for (const auto& seen : seen_unique_) {
      if (seen == u) return Fail::bad_request;
    }
    seen_unique_.emplace_back(u);
  }
  if (iequals(name, "host")) {
    auto host = validate_host(value);
    if (!host) return Fail::bad_request;
    seen_host_header_ = true;
    if (h.host.empty()) h.host = std::move(*host);
  } else if (iequals(name, "connection")) {
    if (connection_.empty()) connection_ = value;
  } else if (iequals(name, "content-length")) {
    seen_cl_ = true;
    content_length_ = value;
  } else if (iequals(name, "transfer-encoding")) {
    seen_te_ = true;
    transfer_encoding_ = value;
  }
  h.headers.emplace_back(std::move(name), std::move(value));
  return Fail::none;
}

// The checks nginx makes once the whole head is in (ngx_http_process_request_header's order).
ParseResult Parser::finish_head(ParseResult& r) {
  RequestHead& h = r.head;
  auto head_fail = [&](int status) -> ParseResult {
    r.state = ParseState::error;
    r.error_status = status;
    r.head_complete = true;
    return r;
  };
  if (!seen_host_header_ && h.version == 11) return head_fail(400);
  if (seen_cl_) {
    if (content_length_.empty()) return head_fail(400);
    std::uint64_t n = 0;
    constexpr std::uint64_t kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    for (const char c : content_length_) {
      if (c < '0' || c > '9') return head_fail(400);
      const auto d = static_cast<std::uint64_t>(c - '0');
      if (n > (kMax - d) / 10) return head_fail(400);
      n = n * 10 + d;
    }
    h.content_length = n;
  }
  if (seen_te_) {
    if (h.version < 11) return head_fail(400);
    if (!iequals(transfer_encoding_, "chunked")) return head_fail(501);
    if (h.content_length) return head_fail(400);
    h.chunked = true;
  }
  // Connection: "close" anywhere wins over "keep-alive" anywhere (case-insensitive substrings).
  if (icontains(connection_, "close")) {
    h.keep_alive = false;
  } else if (icontains(connection_, "keep-alive")) {
    h.keep_alive = true;
  } else {
    h.keep_alive = h.version > 10;
  }
  if (h.method == "TRACE") return head_fail(405);
  r.state = ParseState::complete;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Responses.

std::string_view reason(int status) {
  switch (status) {
    case 200: return "200 OK";
    case 206: return "206 Partial Content";
    case 301: return "301 Moved Permanently";
    case 304: return "304 Not Modified";
    case 400: return "400 Bad Request";
    case 403: return "403 Forbidden";
    case 404: return "404 Not Found";
    case 405: return "405 Not Allowed";
    case 412: return "412 Precondition Failed";
    case 413: return "413 Request Entity Too Large";
    case 414: return "414 Request-URI Too Large";
    case 416: return "416 Requested Range Not Satisfiable";
    case 494: return "400 Bad Request";
    case 497: return "400 Bad Request";
    case 500: return "500 Internal Server Error";
    case 501: return "501 Not Implemented";
    case 502: return "502 Bad Gateway";
    case 504: return "504 Gateway Time-out";
    case 505: return "505 HTTP Version Not Supported";
    default: return "500 Internal Server Error";
  }
}

// nginx's built-in error page for `status` (494 and 497 carry a second line).
std::string error_page(int status, bool padding) {
  std::string title(reason(status));
  std::string extra;
  if (status == 494) {
    title = "400 Request Header Or Cookie Too Large";
    extra = "<center>Request Header Or Cookie Too Large</center>\r\n";
  } else if (status == 497) {
    title = "400 The plain HTTP request was sent to HTTPS port";
    extra = "<center>The plain HTTP request was sent to HTTPS port</center>\r\n";
  }
  std::string page = "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" +
                     std::string(reason(status)) + "</h1></center>\r\n" + extra + "<hr><center>" +
                     std::string(kServer) + "</center>\r\n</body>\r\n</html>\r\n";
  if (padding && status >= 400) {
    for (int i = 0; i < 6; ++i) page += kPadding;
  }
  return page;
}

// nginx's msie_padding applies to MSIE (not Opera) and Chrome user agents (Gecko/ first).
bool wants_padding(const RequestHead& h) {
  const auto ua = h.header("User-Agent");
  if (!ua) return false;
  const std::string_view v = *ua;
  bool msie = false;
  if (const auto at = v.find("MSIE "); at != std::string_view::npos && at + 7 < v.size()) msie = true;
  if (v.find("Opera") != std::string_view::npos) msie = false;
  bool chrome = false;
  if (v.find("Gecko/") == std::string_view::npos && v.find("Chrome/") != std::string_view::npos) chrome = true;
  return (msie || chrome) && h.version >= 10;
}

bool is_msie6(const RequestHead& h) {
  const auto ua = h.header("User-Agent");
  if (!ua) return false;
  const std::string_view v = *ua;
  if (v.find("Opera") != std::string_view::npos) return false;
  const auto at = v.find("MSIE ");
  if (at == std::string_view::npos || at + 7 >= v.size()) return false;
  if (v[at + 6] != '.') return false;
  if (v[at + 5] == '4' || v[at + 5] == '5') return true;
  if (v[at + 5] == '6') return v.find("SV1", at + 8) == std::string_view::npos;
  return false;
}

struct HeadFields {
  int status = 200;
  std::string content_type;
  std::optional<std::uint64_t> content_length;
  std::optional<std::string> last_modified;
  std::optional<std::string> location;
  bool keep_alive = true;
  std::vector<std::pair<std::string, std::string>> extra;  // after Connection, in order
};

// The head in ngx_http_header_filter's order.
std::string write_head(const HeadFields& f, std::chrono::system_clock::time_point now) {
  std::string out = "HTTP/1.1 ";
  out += reason(f.status);
  out += "\r\nServer: ";
  out += kServer;
  out += "\r\nDate: " + http_date(now) + "\r\n";
  if (!f.content_type.empty()) out += "Content-Type: " + f.content_type + "\r\n";
  if (f.content_length) out += "Content-Length: " + std::to_string(*f.content_length) + "\r\n";
  if (f.last_modified) out += "Last-Modified: " + *f.last_modified + "\r\n";
  if (f.location) out += "Location: " + *f.location + "\r\n";
  out += f.keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : f.extra) out += k + ": " + v + "\r\n";
  out += "\r\n";
  return out;
}

constexpr std::pair<std::string_view, std::string_view> kMimeTypes[] = {
    // nginx's default mime.types (Debian 12's /etc/nginx/mime.types), by extension.
    {"3gp", "video/3gpp"},
    {"3gpp", "video/3gpp"},
    {"7z", "application/x-7z-compressed"},
    {"ai", "application/postscript"},
    {"asf", "video/x-ms-asf"},
    {"asx", "video/x-ms-asf"},
    {"atom", "application/atom+xml"},
    {"avi", "video/x-msvideo"},
    {"avif", "image/avif"},
    {"bin", "application/octet-stream"},
    {"bmp", "image/x-ms-bmp"},
    {"cco", "application/x-cocoa"},
    {"crt", "application/x-x509-ca-cert"},
    {"css", "text/css"},
    {"deb", "application/octet-stream"},
    {"der", "application/x-x509-ca-cert"},
    {"dll", "application/octet-stream"},
    {"dmg", "application/octet-stream"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"ear", "application/java-archive"},
    {"eot", "application/vnd.ms-fontobject"},
    {"eps", "application/postscript"},
    {"exe", "application/octet-stream"},
    {"flv", "video/x-flv"},
    {"gif", "image/gif"},
    {"hqx", "application/mac-binhex40"},
    {"htc", "text/x-component"},
    {"htm", "text/html"},
    {"html", "text/html"},
    {"ico", "image/x-icon"},
    {"img", "application/octet-stream"},
    {"iso", "application/octet-stream"},
    {"jad", "text/vnd.sun.j2me.app-descriptor"},
    {"jar", "application/java-archive"},
    {"jardiff", "application/x-java-archive-diff"},
    {"jng", "image/x-jng"},
    {"jnlp", "application/x-java-jnlp-file"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "application/javascript"},
    {"json", "application/json"},
    {"kar", "audio/midi"},
    {"kml", "application/vnd.google-earth.kml+xml"},
    {"kmz", "application/vnd.google-earth.kmz"},
    {"m3u8", "application/vnd.apple.mpegurl"},
    {"m4a", "audio/x-m4a"},
    {"m4v", "video/x-m4v"},
    {"mid", "audio/midi"},
    {"midi", "audio/midi"},
    {"mml", "text/mathml"},
    {"mng", "video/x-mng"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"mpg", "video/mpeg"},
    {"msi", "application/octet-stream"},
    {"msm", "application/octet-stream"},
    {"msp", "application/octet-stream"},
    {"odg", "application/vnd.oasis.opendocument.graphics"},
    {"odp", "application/vnd.oasis.opendocument.presentation"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ogg", "audio/ogg"},
    {"pdb", "application/x-pilot"},
    {"pdf", "application/pdf"},
    {"pem", "application/x-x509-ca-cert"},
    {"pl", "application/x-perl"},
    {"pm", "application/x-perl"},
    {"png", "image/png"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"prc", "application/x-pilot"},
    {"ps", "application/postscript"},
    {"ra", "audio/x-realaudio"},
    {"rar", "application/x-rar-compressed"},
    {"rpm", "application/x-redhat-package-manager"},
    {"rss", "application/rss+xml"},
    {"rtf", "application/rtf"},
    {"run", "application/x-makeself"},
    {"sea", "application/x-sea"},
    {"shtml", "text/html"},
    {"sit", "application/x-stuffit"},
    {"svg", "image/svg+xml"},
    {"svgz", "image/svg+xml"},
    {"swf", "application/x-shockwave-flash"},
    {"tcl", "application/x-tcl"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"tk", "application/x-tcl"},
    {"ts", "video/mp2t"},
    {"txt", "text/plain"},
    {"war", "application/java-archive"},
    {"wasm", "application/wasm"},
    {"wbmp", "image/vnd.wap.wbmp"},
    {"webm", "video/webm"},
    {"webp", "image/webp"},
    {"wml", "text/vnd.wap.wml"},
    {"wmlc", "application/vnd.wap.wmlc"},
    {"wmv", "video/x-ms-wmv"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"xml", "text/xml"},
    {"xpi", "application/x-xpinstall"},
    {"xspf", "application/xspf+xml"},
    {"zip", "application/zip"},
};

std::string_view mime_type(std::string_view path) {
  const auto slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos) return "application/octet-stream";
  std::string ext(name.substr(dot + 1));
  for (auto& c : ext) c = lower(c);
  for (const auto& [e, t] : kMimeTypes) {
    if (e == ext) return t;
  }
  return "application/octet-stream";
}

// Parses the three HTTP date forms nginx's ngx_parse_http_time accepts (RFC 1123, RFC 850 and
// asctime); nullopt = unparseable.
std::optional<std::int64_t> parse_http_date(std::string_view v) {
  static constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int day = 0, month = -1, year = 0, hh = 0, mm = 0, ss = 0;
  char mon[4] = {};
  char wd[16] = {};
  std::string s(v);
  if (std::sscanf(s.c_str(), "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d GMT", wd, &day, mon, &year, &hh, &mm, &ss) == 7 ||
      std::sscanf(s.c_str(), "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d GMT", wd, &day, mon, &year, &hh, &mm, &ss) == 7) {
    if (year < 100) year += year < 70 ? 2000 : 1900;
  } else if (std::sscanf(s.c_str(), "%15[A-Za-z] %3s %2d %2d:%2d:%2d %4d", wd, mon, &day, &hh, &mm, &ss, &year) == 7) {
  } else {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (kMonths[i] == std::string_view(mon)) month = static_cast<int>(i);
  }
  if (month < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 59 || year < 1970) return std::nullopt;
  // Days from the civil date (proleptic Gregorian), our own arithmetic.
  const int m = month + 1;
  const int y = year - (m <= 2 ? 1 : 0);
  const int era = y / 400;
  const int yoe = y - era * 400;
  const int mp = (m + 9) % 12;
  const int doy = (153 * mp + 2) / 5 + day - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = static_cast<std::int64_t>(era) * 146097 + doe - 719468;
  return days * 86400 + hh * 3600 + mm * 60 + ss;
}

// nginx's entity-tag list match (If-Match strong, If-None-Match weak: a "W/" prefix is skipped).
bool etag_matches(std::string_view list, std::string_view etag, bool weak) {
  if (list == "*") return true;
  std::size_t i = 0;
  while (i < list.size()) {
    if (weak && list.size() - i > 2 && list[i] == 'W' && list[i + 1] == '/') i += 2;
    if (etag.size() <= list.size() - i && list.substr(i, etag.size()) == etag) {
      std::size_t j = i + etag.size();
      while (j < list.size() && (list[j] == ' ' || list[j] == '\t')) ++j;
      if (j == list.size() || list[j] == ',') return true;
    }
    while (i < list.size() && list[i] != ',') ++i;
    while (i < list.size() && (list[i] == ' ' || list[i] == '\t' || list[i] == ',')) ++i;
  }
  return false;
}

struct Range {
  std::uint64_t start = 0, end = 0;  // [start, end)
};
enum class RangeOutcome { whole, partial, unsatisfiable };

// nginx's byte-range parsing (ngx_http_range_filter's rules): a bad or unsatisfiable set is 416,
// ranges that add up to more than the file (or "bytes=0-" of an empty one) get the whole file.
RangeOutcome parse_range(std::string_view value, std::uint64_t size, std::vector<Range>& ranges) {
  if (value.size() < 7 || !iequals(value.substr(0, 6), "bytes=")) return RangeOutcome::whole;
  std::string v(value.substr(6));
  v.push_back('\0');
  std::size_t p = 0;
  ranges.clear();
  std::uint64_t total = 0;
  constexpr std::uint64_t kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  auto number = [&](std::uint64_t& n) -> bool {
    n = 0;
    while (v[p] >= '0' && v[p] <= '9') {
      const auto d = static_cast<std::uint64_t>(v[p] - '0');
      if (n > (kMax - d) / 10) return false;
      n = n * 10 + d;
      ++p;
    }
    return true;
  };
  for (;;) {
    std::uint64_t start = 0, end = 0;
    bool suffix = false;
    bool open_end = false;
    while (v[p] == ' ') ++p;
    if (v[p] != '-') {
      if (v[p] < '0' || v[p] > '9') return RangeOutcome::unsatisfiable;
      if (!number(start)) return RangeOutcome::unsatisfiable;
      while (v[p] == ' ') ++p;
      if (v[p++] != '-') return RangeOutcome::unsatisfiable;
      while (v[p] == ' ') ++p;
      if (v[p] == ',' || v[p] == '\0') {
        end = size;
        open_end = true;
      }
    } else {
      suffix = true;
      ++p;
    }
    if (!open_end) {
      if (v[p] < '0' || v[p] > '9') return RangeOutcome::unsatisfiable;
      if (!number(end)) return RangeOutcome::unsatisfiable;
      while (v[p] == ' ') ++p;
      if (v[p] != ',' && v[p] != '\0') return RangeOutcome::unsatisfiable;
      if (suffix) {
        start = end < size ? size - end : 0;
        end = size == 0 ? 0 : size - 1;
      }
      end = end >= size ? size : end + 1;
    }
    if (start < end) {
      ranges.push_back({start, end});
      total += end - start;
    } else if (start == 0) {
      return RangeOutcome::whole;
    }
    if (v[p++] != ',') break;
  }
  if (ranges.empty()) return RangeOutcome::unsatisfiable;
  if (total > size) return RangeOutcome::whole;
  return RangeOutcome::partial;
}

struct FileInfo {
  bool exists = false;
  bool is_dir = false;
  bool is_file = false;
  bool denied = false;  // EACCES: 403
  std::uint64_t size = 0;
  std::int64_t mtime = 0;
};

// stat() of root + path, refusing whatever resolves outside the root (symlinks included) and
// over-long paths (both "not found").
FileInfo look_up(const std::filesystem::path& root, const std::string& path, std::filesystem::path& full) {
  FileInfo info;
  if (path.size() > kMaxPathBytes || path.find('\0') != std::string::npos) return info;
  full = root;
  full += path;
  struct stat st {};
  if (::stat(full.c_str(), &st) != 0) {
    info.denied = errno == EACCES;
    return info;
  }
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(full, ec);
  if (ec) return info;
  const std::string c = canonical.native();
  const std::string& r = root.native();
  if (c != r && (c.size() <= r.size() || c.compare(0, r.size(), r) != 0 || c[r.size()] != '/')) return info;
  info.exists = true;
  info.is_dir = S_ISDIR(st.st_mode);
  info.is_file = S_ISREG(st.st_mode);
  info.size = static_cast<std::uint64_t>(st.st_size);
  info.mtime = static_cast<std::int64_t>(st.st_mtime);
  if (info.is_file && ::access(full.c_str(), R_OK) != 0) info.denied = true;
  return info;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

bool first_byte_is_tls(std::uint8_t first) noexcept { return first == 0x16 || (first & 0x80) != 0; }

std::optional<std::string_view> RequestHead::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

ParseResult parse_request_head(ByteView buffered, const NginxLimits& limits) {
  Parser parser(buffered, limits);
  return parser.run();
}

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  static constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[static_cast<std::size_t>(tm.tm_wday % 7)].data(),
                tm.tm_mday, kMonths[static_cast<std::size_t>(tm.tm_mon % 12)].data(), tm.tm_year + 1900, tm.tm_hour,
                tm.tm_min, tm.tm_sec);
  return buf;
}

Result<Site> Site::open(const std::filesystem::path& root, NginxLimits limits) {
  std::error_code ec;
  auto canonical = std::filesystem::canonical(root, ec);
  if (ec || !std::filesystem::is_directory(canonical, ec) || ec) return Errc::bad_config;
  if (::access(canonical.c_str(), R_OK | X_OK) != 0) return Errc::bad_config;
  if (limits.large_header_buffer == 0 || limits.client_header_buffer == 0) return Errc::bad_config;
  return Site(std::move(canonical), limits);
}

Response Site::respond(const RequestHead& head, bool plain_http_on_tls_port, std::chrono::system_clock::time_point now,
                       unsigned requests_on_connection) const {
  return respond(head, plain_http_on_tls_port, now, requests_on_connection, listener_);
}

bool Site::keep_alive_allowed(const RequestHead& head, unsigned requests_on_connection) const {
  bool keep_alive = head.keep_alive && head.version != 9;
  if (requests_on_connection >= limits_.keepalive_requests) keep_alive = false;
  if (head.method == "POST" && is_msie6(head)) keep_alive = false;
  return keep_alive;
}

Response Site::status_page(int status, const RequestHead& head, bool keep_alive,
                           std::chrono::system_clock::time_point now) const {
  Response r;
  r.status = status;
  r.discard_body = (head.content_length && *head.content_length > 0) || head.chunked;
  const bool http09 = head.version == 9;
  std::string body = error_page(status, !http09 && wants_padding(head));
  keep_alive = keep_alive && !http09;
  if (!http09) {
    HeadFields f;
    f.status = status;
    f.content_type = "text/html";
    f.content_length = body.size();
    f.keep_alive = keep_alive;
    r.head = write_head(f, now);
  }
  if (head.method != "HEAD" || http09) r.body = std::move(body);
  r.after = keep_alive ? After::keep_alive : (r.discard_body ? After::lingering_close : After::close);
  return r;
}

Response Site::respond(const RequestHead& head, bool plain_http_on_tls_port, std::chrono::system_clock::time_point now,
                       unsigned requests_on_connection, const Listener& listener) const {
  const bool http09 = head.version == 9;
  const bool has_body = (head.content_length && *head.content_length > 0) || head.chunked;
  const bool keep_alive = keep_alive_allowed(head, requests_on_connection);
  const bool header_only = head.method == "HEAD";

  Response r;
  r.discard_body = has_body;
  auto finish = [&](HeadFields f, std::string body) -> Response {
    r.status = f.status;
    if (!http09) r.head = write_head(f, now);
    if (!header_only) r.body = std::move(body);
    r.after = f.keep_alive ? After::keep_alive : (r.discard_body ? After::lingering_close : After::close);
    return r;
  };
  auto page = [&](int status, bool ka) -> Response {
    HeadFields f;
    f.status = status;
    std::string body = error_page(status, wants_padding(head));
    f.content_type = "text/html";
    f.content_length = body.size();
    f.keep_alive = ka;
    return finish(std::move(f), std::move(body));
  };

  // nginx looks at the missing TLS only once the head is complete and valid.
  if (plain_http_on_tls_port) return page(497, false);

  const bool get_head_post = head.method == "GET" || head.method == "HEAD" || head.method == "POST";
  if (!get_head_post) return page(405, keep_alive);

  std::string uri = head.path.empty() ? "/" : head.path;
  std::filesystem::path full;
  FileInfo info;
  if (uri.back() == '/') {
    // The index module: uri + "index.html" if it is there, else 403 (directory) or 404.
    const std::string index_uri = uri + "index.html";
    info = look_up(root_, index_uri, full);
    if (info.exists && !info.is_dir) {
      uri = index_uri;
    } else if (info.denied) {
      return page(403, keep_alive);
    } else {
      std::filesystem::path dir;
      const FileInfo d = look_up(root_, uri, dir);
      if (d.exists && d.is_dir) return page(403, keep_alive);
      return page(d.denied ? 403 : 404, keep_alive);
    }
  } else {
    info = look_up(root_, uri, full);
    if (info.denied) return page(403, keep_alive);
    if (!info.exists) return page(404, keep_alive);
    if (info.is_dir) {
      HeadFields f;
      f.status = 301;
      std::string body = error_page(301, false);
      f.content_type = "text/html";
      f.content_length = body.size();
      std::string host = head.host;
      if (host.empty()) host = listener.local_address;
      std::string location = (listener.tls ? "https://" : "http://") + host;
      const std::uint16_t default_port = listener.tls ? 443 : 80;
      if (listener.port != default_port) location += ":" + std::to_string(listener.port);
      location += uri + "/";
      if (!head.query.empty()) location += "?" + head.query;
      f.location = std::move(location);
      f.keep_alive = keep_alive;
      return finish(std::move(f), std::move(body));
    }
  }
  if (!info.is_file) return page(404, keep_alive);
  if (head.method == "POST") return page(405, keep_alive);

  // From here nginx discards the body first; that answers "Expect: 100-continue".
  std::string interim;
  if (head.version >= 11) {
    if (const auto expect = head.header("Expect"); expect && iequals(*expect, "100-continue")) {
      interim = "HTTP/1.1 100 Continue\r\n\r\n";
    }
  }
  auto with_interim = [&](Response out) {
    out.head = interim + out.head;
    return out;
  };

  const std::string etag = "\"" + hex(static_cast<std::uint64_t>(info.mtime)) + "-" + hex(info.size) + "\"";
  const std::string last_modified = http_date(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(info.mtime)));

  // The not-modified filter: 412 for failed If-Unmodified-Since / If-Match (the connection is
  // then closed although the head says keep-alive, as nginx does), 304 on an exact date or a
  // matching entity tag.
  if (const auto ius = head.header("If-Unmodified-Since")) {
    const auto t = parse_http_date(*ius);
    if (!t || info.mtime > *t) {
      Response out = page(412, keep_alive);
      out.after = out.discard_body ? After::lingering_close : After::close;
      return with_interim(std::move(out));
    }
  }
  if (const auto im = head.header("If-Match"); im && !etag_matches(*im, etag, false)) {
    Response out = page(412, keep_alive);
    out.after = out.discard_body ? After::lingering_close : After::close;
    return with_interim(std::move(out));
  }
  const auto ims = head.header("If-Modified-Since");
  const auto inm = head.header("If-None-Match");
  if (ims || inm) {
    bool modified = false;
    if (ims) {
      const auto t = parse_http_date(*ims);
      if (!t || *t != info.mtime) modified = true;
    }
    if (!modified && inm && !etag_matches(*inm, etag, true)) modified = true;
    if (!modified) {
      HeadFields f;
      f.status = 304;
      f.last_modified = last_modified;
      f.keep_alive = keep_alive;
      f.extra.emplace_back("ETag", etag);
      return with_interim(finish(std::move(f), {}));
    }
  }

  HeadFields f;
  f.status = 200;
  f.content_type = std::string(mime_type(uri));
  f.content_length = info.size;
  f.last_modified = last_modified;
  f.keep_alive = keep_alive;
  f.extra.emplace_back("ETag", etag);
  std::uint64_t offset = 0, length = info.size;
  if (const auto range = head.header("Range"); range && !http09) {
    bool use = true;
    if (const auto if_range = head.header("If-Range")) {
      const std::string_view ir = *if_range;
      if (ir.size() >= 2 && ir.back() == '"') {
        use = ir == etag;
      } else {
        const auto t = parse_http_date(ir);
        use = t && *t == info.mtime;
      }
    }
    std::vector<Range> ranges;
    const RangeOutcome outcome = use ? parse_range(*range, info.size, ranges) : RangeOutcome::whole;
    if (outcome == RangeOutcome::unsatisfiable) {
      HeadFields u;
      u.status = 416;
      std::string body = error_page(416, wants_padding(head));
      u.content_type = "text/html";
      u.content_length = body.size();
      u.keep_alive = keep_alive;
      u.extra.emplace_back("Content-Range", "bytes */" + std::to_string(info.size));
      return with_interim(finish(std::move(u), std::move(body)));
    }
    if (outcome == RangeOutcome::partial && ranges.size() > 1) {
      // multipart/byteranges, built in memory: small files only (we cap the total read).
      std::string body;
      const std::uint64_t boundary_n = multipart_boundary_->fetch_add(1) + 1;
      char boundary[32];
      std::snprintf(boundary, sizeof boundary, "%020llu", static_cast<unsigned long long>(boundary_n));
      const std::string type(mime_type(uri));
      std::uint64_t wanted = 0;
      for (const auto& rg : ranges) wanted += rg.end - rg.start;
      if (wanted <= kMaxMultipartBytes) {
        std::FILE* file = header_only ? nullptr : std::fopen(full.c_str(), "rb");
        bool ok = header_only || file != nullptr;
        std::uint64_t length_total = 0;
        for (const auto& rg : ranges) {
          std::string part = "\r\n--" + std::string(boundary) + "\r\nContent-Type: " + type +
                             "\r\nContent-Range: bytes " + std::to_string(rg.start) + "-" + std::to_string(rg.end - 1) +
                             "/" + std::to_string(info.size) + "\r\n\r\n";
          length_total += part.size() + (rg.end - rg.start);
          if (!header_only) {
            body += part;
            if (ok) {
              std::string chunk(static_cast<std::size_t>(rg.end - rg.start), '\0');
              ok = ::fseeko(file, static_cast<off_t>(rg.start), SEEK_SET) == 0 &&
                   std::fread(chunk.data(), 1, chunk.size(), file) == chunk.size();
              body += chunk;
            }
          }
        }
        const std::string tail = "\r\n--" + std::string(boundary) + "--\r\n";
        length_total += tail.size();
        body += tail;
        if (file != nullptr) std::fclose(file);
        if (ok) {
          f.status = 206;
          f.content_type = "multipart/byteranges; boundary=" + std::string(boundary);
          f.content_length = length_total;
          return with_interim(finish(std::move(f), std::move(body)));
        }
        return with_interim(page(500, false));
      }
    } else if (outcome == RangeOutcome::partial) {
      const Range rg = ranges.front();
      f.status = 206;
      offset = rg.start;
      length = rg.end - rg.start;
      f.content_length = length;
      f.extra.emplace_back("Content-Range", "bytes " + std::to_string(rg.start) + "-" + std::to_string(rg.end - 1) +
                                                "/" + std::to_string(info.size));
    }
  }
  if (f.status == 200) f.extra.emplace_back("Accept-Ranges", "bytes");
  Response out = finish(std::move(f), {});
  if (!header_only && length > 0) {
    out.file = full;
    out.file_offset = offset;
    out.file_length = length;
  }
  return with_interim(std::move(out));
}

Response Site::error_response(int error_status, bool plain_http_on_tls_port,
                              std::chrono::system_clock::time_point now) const {
  ParseResult failed;
  failed.state = ParseState::error;
  failed.error_status = error_status;
  failed.head_complete = error_status == 501 || error_status == 405;
  return error_response(failed, plain_http_on_tls_port, now);
}

Response Site::error_response(const ParseResult& failed, bool plain_http_on_tls_port,
                              std::chrono::system_clock::time_point now) const {
  // A head that fails to parse gets the ordinary page even on the TLS port: nginx checks for the
  // missing TLS only after a complete, valid head.
  (void)plain_http_on_tls_port;
  Response r;
  r.status = failed.error_status;
  if (failed.error_status == 0) {
    r.after = After::close;
    return r;
  }
  const RequestHead& h = failed.head;
  const bool http09 = h.version == 9;
  std::string body = error_page(failed.error_status, !http09 && wants_padding(h));
  if (!http09) {
    HeadFields f;
    f.status = failed.error_status;
    f.content_type = "text/html";
    f.content_length = body.size();
    f.keep_alive = false;
    r.head = write_head(f, now);
  }
  if (h.method != "HEAD" || http09) r.body = std::move(body);
  if (failed.head_complete) {
    r.discard_body = (h.content_length && *h.content_length > 0) || h.chunked;
    r.after = r.discard_body ? After::lingering_close : After::close;
  } else {
    r.after = After::lingering_close;
  }
  return r;
}

}  // namespace postern::transport::site
