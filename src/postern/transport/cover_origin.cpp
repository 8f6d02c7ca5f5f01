// See cover_origin.h. Every rule here was checked against nginx 1.22.1 with proxy_pass
// (tests/integration/probe_test.py compares the two on the same origin).
#include "postern/transport/cover_origin.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include "postern/transport/ascii.h"
#include "postern/transport/errors.h"

namespace postern::transport::cover {

namespace {

using ascii::iequals;
using ascii::istarts_with;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// RFC 9110 tchar: what a header name may hold.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
  static constexpr std::string_view kOthers = "!#$%&'*+-.^_`|~";
  return kOthers.find(c) != std::string_view::npos;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

std::optional<std::uint64_t> parse_decimal(std::string_view v) {
  if (v.empty() || v.size() > 19) return std::nullopt;
  std::uint64_t out = 0;
  for (const char c : v) {
    if (!is_digit(c)) return std::nullopt;
    out = out * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return out;
}

// Visitor headers nginx's proxy module does not pass on (it sets its own or drops them).
bool dropped_request_header(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kDropped = {
      "host", "connection", "keep-alive", "te", "upgrade", "expect", "content-length", "transfer-encoding"};
  return std::any_of(kDropped.begin(), kDropped.end(), [&](std::string_view d) { return iequals(name, d); });
}

// Origin headers nginx does not pass back as they are (proxy_hide_header's defaults, hop-by-hop
// headers, and those it writes in its own places).
bool dropped_response_header(std::string_view name) {
  static constexpr std::array<std::string_view, 9> kDropped = {"server", "date", "x-pad", "connection", "keep-alive",
                                                               "transfer-encoding", "content-type", "content-length",
                                                               "location"};
  if (istarts_with(name, "x-accel-")) return true;
  return std::any_of(kDropped.begin(), kDropped.end(), [&](std::string_view d) { return iequals(name, d); });
}

// The request target nginx passes on: the visitor's, or for an absolute-form target its path.
std::string_view origin_target(const site::RequestHead& visitor) {
  const std::string_view t = visitor.target;
  if (t.empty()) return "/";
  if (t.front() == '/') return t;
  const auto scheme_end = t.find("://");
  if (scheme_end == std::string_view::npos) return t;
  const auto path = t.find('/', scheme_end + 3);
  if (path == std::string_view::npos) return "/";
  return t.substr(path);
}

}  // namespace

Result<OriginUrl> parse_origin_url(std::string_view url) {
  OriginUrl out;
  if (istarts_with(url, "http://")) {
    url.remove_prefix(7);
  } else if (istarts_with(url, "https://")) {
    url.remove_prefix(8);
    out.tls = true;
    out.port = 443;
  } else {
    return Errc::bad_config;
  }
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.empty() || url.find_first_of("/?#@ \t") != std::string_view::npos) return Errc::bad_config;
  const std::string_view written = url;
  std::string_view port_text;
  if (url.front() == '[') {
    const auto close = url.find(']');
    if (close == std::string_view::npos || close < 3) return Errc::bad_config;
    out.host = std::string(url.substr(1, close - 1));
    for (const char c : out.host) {
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return Errc::bad_config;
    }
    url.remove_prefix(close + 1);
    if (!url.empty()) {
      if (url.front() != ':') return Errc::bad_config;
      port_text = url.substr(1);
      if (port_text.empty()) return Errc::bad_config;
    }
  } else {
    const auto colon = url.find(':');
    out.host = std::string(url.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = url.substr(colon + 1);
      if (port_text.empty()) return Errc::bad_config;
    }
    if (out.host.empty() || out.host.size() > 253) return Errc::bad_config;
    for (const char c : out.host) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '-')) {
        return Errc::bad_config;
      }
    }
  }
  const std::uint16_t default_port = out.port;
  if (!port_text.empty()) {
    const auto port = parse_decimal(port_text);
    if (!port || *port == 0 || *port > 65535) return Errc::bad_config;
    out.port = static_cast<std::uint16_t>(*port);
  }
  const std::string bracketed = out.host.find(':') != std::string::npos ? "[" + out.host + "]" : out.host;
  out.host_header = out.port == default_port ? bracketed : bracketed + ":" + std::to_string(out.port);
  out.redirect_from = std::string(out.tls ? "https://" : "http://") + std::string(written) + "/";
  return out;
}

std::string origin_request_head(const site::RequestHead& visitor, const OriginUrl& origin,
                                std::optional<std::uint64_t> body_length) {
  std::string out = visitor.method;
  out += ' ';
  out += origin_target(visitor);
  out += " HTTP/1.0\r\nHost: ";
  out += origin.host_header;
  out += "\r\nConnection: close\r\n";
  if (body_length) out += "Content-Length: " + std::to_string(*body_length) + "\r\n";
  for (const auto& [name, value] : visitor.headers) {
    if (dropped_request_header(name)) continue;
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

OriginResponse parse_origin_response(ByteView buffered, std::size_t max_head) {
  OriginResponse r;
  const std::string_view all(reinterpret_cast<const char*>(buffered.data()), buffered.size());
  static constexpr std::string_view kHttp = "HTTP/";
  // Not HTTP from the first differing byte on (nginx's HTTP/0.9 upstream support).
  if (all.substr(0, std::min(all.size(), kHttp.size())) != kHttp.substr(0, std::min(all.size(), kHttp.size()))) {
    r.state = OriginResponse::State::http09;
    return r;
  }
  std::size_t at = 0;
  auto next_line = [&](std::string_view& line) -> bool {
    const auto lf = all.find('\n', at);
    if (lf == std::string_view::npos) return false;
    line = all.substr(at, lf - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    at = lf + 1;
    return true;
  };
  std::string_view line;
  if (!next_line(line)) {
    r.state = all.size() >= max_head ? OriginResponse::State::error : OriginResponse::State::incomplete;
    return r;
  }
  // "HTTP/" 1*DIGIT "." 1*DIGIT SP+ 3DIGIT [SP reason]; anything else: not HTTP.
  {
    std::size_t i = kHttp.size();
    auto digits = [&]() {
      const std::size_t from = i;
      while (i < line.size() && is_digit(line[i])) ++i;
      return i > from && i - from <= 3;
    };
    bool ok = digits() && i < line.size() && line[i] == '.';
    if (ok) {
      ++i;
      ok = digits();
    }
    if (ok) {
      const std::size_t spaces = i;
      while (i < line.size() && line[i] == ' ') ++i;
      ok = i > spaces && i + 3 <= line.size() && is_digit(line[i]) && is_digit(line[i + 1]) && is_digit(line[i + 2]) &&
           (i + 3 == line.size() || line[i + 3] == ' ');
    }
    if (!ok) {
      r.state = OriginResponse::State::http09;
      return r;
    }
    r.status = (line[i] - '0') * 100 + (line[i + 1] - '0') * 10 + (line[i + 2] - '0');
    r.status_line = std::string(line.substr(i));
    if (r.status < 100) {
      r.state = OriginResponse::State::error;
      return r;
    }
  }
  for (;;) {
    if (!next_line(line)) {
      r.state = all.size() >= max_head ? OriginResponse::State::error : OriginResponse::State::incomplete;
      return r;
    }
    if (at > max_head) {
      r.state = OriginResponse::State::error;
      return r;
    }
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      r.state = OriginResponse::State::error;
      return r;
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (!std::all_of(name.begin(), name.end(), is_tchar) ||
        std::any_of(value.begin(), value.end(), [](char c) { return c == '\0' || c == '\r'; })) {
      r.state = OriginResponse::State::error;
      return r;
    }
    if (iequals(name, "content-length")) {
      const auto length = parse_decimal(value);
      if (!length || r.content_length) {
        r.state = OriginResponse::State::error;
        return r;
      }
      r.content_length = length;
    } else if (iequals(name, "transfer-encoding")) {
      if (!iequals(value, "chunked") || r.chunked) {
        r.state = OriginResponse::State::error;
        return r;
      }
      r.chunked = true;
    }
    r.headers.emplace_back(std::string(name), std::string(value));
  }
  if (r.chunked && r.content_length) {
    r.state = OriginResponse::State::error;
    return r;
  }
  r.head_size = at;
  r.state = OriginResponse::State::complete;
  return r;
}

VisitorHead visitor_head(const OriginResponse& response, const site::RequestHead& visitor, const OriginUrl& origin,
                         const site::Listener& listener, bool keep_alive, std::chrono::system_clock::time_point now) {
  VisitorHead out;
  out.keep_alive = keep_alive && visitor.version != 9;
  if (response.state == OriginResponse::State::http09) {
    out.origin_body = Framing::until_close;
    out.visitor_body = Framing::until_close;
    return out;
  }
  const int status = response.status;
  const bool no_body_status = status < 200 || status == 204 || status == 304;
  const bool header_only = visitor.method == "HEAD" || no_body_status;
  if (!header_only) {
    if (response.content_length) {
      out.origin_body = Framing::length;
      out.length = *response.content_length;
    } else if (response.chunked) {
      out.origin_body = Framing::chunked;
    } else {
      out.origin_body = Framing::until_close;
    }
  }

  std::optional<std::string_view> content_type;
  std::optional<std::string> location;
  for (const auto& [name, value] : response.headers) {
    if (!content_type && iequals(name, "content-type")) content_type = value;
    if (!location && iequals(name, "location")) {
      // proxy_redirect default: a URL under the origin's own becomes a path here.
      location = value;
      if (istarts_with(value, origin.redirect_from)) location = "/" + value.substr(origin.redirect_from.size());
    }
  }

  std::string h;
  if (visitor.version != 9) {
    h = "HTTP/1.1 " + response.status_line + "\r\nServer: nginx/1.22.1\r\nDate: " + site::http_date(now) + "\r\n";
    if (content_type) h += "Content-Type: " + std::string(*content_type) + "\r\n";
    if (response.content_length) {
      h += "Content-Length: " + std::to_string(*response.content_length) + "\r\n";
      if (!header_only) out.visitor_body = Framing::length;
    }
    if (location) {
      std::string value = *location;
      if (!value.empty() && value.front() == '/') {
        // nginx's absolute_redirect: scheme, the request's host (else the local address) and
        // the port unless it is the scheme's default.
        std::string host = visitor.host.empty() ? listener.local_address : visitor.host;
        std::string absolute = (listener.tls ? "https://" : "http://") + host;
        if (listener.port != (listener.tls ? 443 : 80)) absolute += ":" + std::to_string(listener.port);
        value = absolute + value;
      }
      h += "Location: " + value + "\r\n";
    }
    if (!response.content_length && !header_only) {
      if (visitor.version >= 11) {
        h += "Transfer-Encoding: chunked\r\n";
        out.visitor_body = Framing::chunked;
      } else {
        out.keep_alive = false;
        out.visitor_body = Framing::until_close;
      }
    }
    h += out.keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    for (const auto& [name, value] : response.headers) {
      if (dropped_response_header(name)) continue;
      h += name + ": " + value + "\r\n";
    }
    h += "\r\n";
  } else if (!header_only) {
    out.visitor_body = Framing::until_close;
  }
  out.head = std::move(h);
  return out;
}

std::string chunk(ByteView data) {
  std::array<char, 20> hex{};
  const auto [end, ec] = std::to_chars(hex.data(), hex.data() + hex.size(), data.size(), 16);
  (void)ec;
  std::string out(hex.data(), end);
  out += "\r\n";
  out.append(reinterpret_cast<const char*>(data.data()), data.size());
  out += "\r\n";
  return out;
}

ChunkedDecoder::Status ChunkedDecoder::feed(ByteView in, std::size_t& consumed, Bytes& out) {
  consumed = 0;
  while (consumed < in.size()) {
    const char c = static_cast<char>(in[consumed]);
    switch (s_) {
      case S::size: {
        int v = -1;
        if (is_digit(c)) v = c - '0';
        if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        if (v >= 0) {
          if (++digits_ > 15) {
            s_ = S::error;
            return Status::error;
          }
          left_ = left_ * 16 + static_cast<std::uint64_t>(v);
        } else if (digits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
          s_ = S::ext;
          line_ = 0;
        } else if (digits_ > 0 && c == '\r') {
          s_ = S::size_lf;
        } else if (digits_ > 0 && c == '\n') {
          s_ = left_ == 0 ? S::trailer_start : S::data;
        } else {
          s_ = S::error;
          return Status::error;
        }
        ++consumed;
        break;
      }
      case S::ext:
        if (c == '\n') {
          s_ = left_ == 0 ? S::trailer_start : S::data;
        } else if (++line_ > max_line_) {
          s_ = S::error;
          return Status::error;
        }
        ++consumed;
        break;
      case S::size_lf:
        if (c != '\n') {
          s_ = S::error;
          return Status::error;
        }
        s_ = left_ == 0 ? S::trailer_start : S::data;
        ++consumed;
        break;
      case S::data: {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in.size() - consumed));
        out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(consumed),
                   in.begin() + static_cast<std::ptrdiff_t>(consumed + n));
        consumed += n;
        left_ -= n;
        total_ += n;
        if (left_ == 0) s_ = S::data_cr;
        break;
      }
      case S::data_cr:
        if (c == '\r') {
          s_ = S::data_lf;
        } else if (c == '\n') {
          s_ = S::size;
          digits_ = 0;
        } else {
          s_ = S::error;
          return Status::error;
        }
        ++consumed;
        break;
      case S::data_lf:
        if (c != '\n') {
          s_ = S::error;
          return Status::error;
        }
        s_ = S::size;
        digits_ = 0;
        ++consumed;
        break;
      case S::trailer_start:
        if (c == '\r') {
          s_ = S::final_lf;
        } else if (c == '\n') {
          ++consumed;
          s_ = S::done;
          return Status::done;
        } else {
          s_ = S::trailer;
          line_ = 1;
        }
        ++consumed;
        break;
      case S::trailer:
        if (c == '\n') {
          s_ = S::trailer_start;
        } else if (++line_ > max_line_) {
          s_ = S::error;
          return Status::error;
        }
        ++consumed;
        break;
      case S::final_lf:
        if (c != '\n') {
          s_ = S::error;
          return Status::error;
        }
        ++consumed;
        s_ = S::done;
        return Status::done;
      case S::done:
        return Status::done;
      case S::error:
        return Status::error;
    }
  }
  if (s_ == S::done) return Status::done;
  if (s_ == S::error) return Status::error;
  return Status::more;
}

}  // namespace postern::transport::cover
