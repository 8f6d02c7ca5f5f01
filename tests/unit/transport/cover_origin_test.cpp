// The cover origin's sans-I/O rules (src/postern/transport/cover_origin.h). The expected heads
// are what nginx 1.22.1 with `proxy_pass` sent for the same origin answers (recorded on this
// machine against a scripted origin; tests/integration/probe_test.py compares the whole thing
// with a live nginx).
#include "postern/transport/cover_origin.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>

#include "postern/transport/errors.h"

namespace postern::transport::cover {
namespace {

ByteView bytes(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

const auto kNow = std::chrono::system_clock::time_point{} + std::chrono::seconds(1'796'000'000);  // 2026-11-30 00:53:20 UTC

site::RequestHead visitor(std::string method = "GET", unsigned version = 11) {
  site::RequestHead h;
  h.method = std::move(method);
  h.version = version;
  h.target = "/page?x=1";
  h.path = "/page";
  h.query = "x=1";
  h.host = "cover.example";
  h.headers = {{"Host", "cover.example"}, {"User-Agent", "t"},     {"Connection", "keep-alive"},
               {"Keep-Alive", "3"},       {"TE", "trailers"},      {"Upgrade", "h2c"},
               {"Expect", "x"},           {"X-Forwarded-For", "1.2.3.4"}, {"Accept", "*/*"}};
  return h;
}

site::Listener listener() {
  site::Listener l;
  l.local_address = "127.0.0.1";
  l.port = 443;
  l.tls = true;
  return l;
}

OriginUrl origin() { return parse_origin_url("http://127.0.0.1:18081").value(); }

std::string without_date(std::string head) {
  const auto at = head.find("\r\nDate: ");
  if (at == std::string::npos) return head;
  const auto end = head.find("\r\n", at + 2);
  return head.erase(at, end - at);
}

TEST(CoverOriginUrl, AcceptsHostsPortsAndSchemes) {
  auto u = parse_origin_url("http://127.0.0.1:18081");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 18081);
  EXPECT_EQ(u->host_header, "127.0.0.1:18081");
  EXPECT_EQ(u->redirect_from, "http://127.0.0.1:18081/");

  u = parse_origin_url("HTTPS://www.Example.org/");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->host_header, "www.Example.org");

  u = parse_origin_url("http://[::1]:8080");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->host_header, "[::1]:8080");

  u = parse_origin_url("http://example.org:80");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host_header, "example.org");
}

TEST(CoverOriginUrl, RefusesEverythingElse) {
  for (const char* bad : {"", "example.org", "ftp://example.org", "http://", "http://example.org/path",
                          "http://user@example.org", "http://example.org:0", "http://example.org:65536",
                          "http://example.org:", "http://exa mple.org", "http://[::1", "http://[xyz]:80",
                          "http://example.org?q", "http://example.org#f", "http://example.org:80x"}) {
    auto u = parse_origin_url(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_EQ(u.error(), Errc::bad_config) << bad;
  }
}

TEST(CoverOriginRequest, IsNginxProxyPassDefault) {
  EXPECT_EQ(origin_request_head(visitor(), origin(), std::nullopt),
            "GET /page?x=1 HTTP/1.0\r\nHost: 127.0.0.1:18081\r\nConnection: close\r\nUser-Agent: t\r\n"
            "X-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\n\r\n");
  site::RequestHead post = visitor("POST");
  post.headers.emplace_back("Content-Length", "5");
  post.headers.emplace_back("Transfer-Encoding", "chunked");
  EXPECT_EQ(origin_request_head(post, origin(), 5),
            "POST /page?x=1 HTTP/1.0\r\nHost: 127.0.0.1:18081\r\nConnection: close\r\nContent-Length: 5\r\n"
            "User-Agent: t\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\n\r\n");
  site::RequestHead absolute = visitor();
  absolute.target = "http://cover.example/a/b?c";
  absolute.headers.clear();
  EXPECT_EQ(origin_request_head(absolute, origin(), std::nullopt),
            "GET /a/b?c HTTP/1.0\r\nHost: 127.0.0.1:18081\r\nConnection: close\r\n\r\n");
  absolute.target = "http://cover.example";
  EXPECT_EQ(origin_request_head(absolute, origin(), std::nullopt).substr(0, 20), "GET / HTTP/1.0\r\nHost");
}

TEST(CoverOriginResponse, ParsesAHeadAndItsFraming) {
  const std::string_view answer =
      "HTTP/1.1 200 Fine\r\nServer: Apache/2.4\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Foo: bar\r\n"
      "Content-Type: text/plain\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nETag: \"abc\"\r\n"
      "Content-Length: 12\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=b\r\n"
      "Accept-Ranges: bytes\r\nX-Accel-Buffering: no\r\nX-Pad: 1\r\n\r\nhello world\n";
  const auto r = parse_origin_response(bytes(answer));
  ASSERT_EQ(r.state, OriginResponse::State::complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.status_line, "200 Fine");
  EXPECT_EQ(r.content_length, 12u);
  EXPECT_FALSE(r.chunked);
  EXPECT_EQ(r.head_size, answer.size() - 12);

  // Every prefix of the head is incomplete.
  for (std::size_t n = 0; n < r.head_size; ++n) {
    EXPECT_EQ(parse_origin_response(bytes(answer.substr(0, n))).state, OriginResponse::State::incomplete) << n;
  }

  const auto v = visitor_head(r, visitor(), origin(), listener(), true, kNow);
  EXPECT_EQ(v.head,
            "HTTP/1.1 200 Fine\r\nServer: nginx/1.22.1\r\nDate: Mon, 30 Nov 2026 00:53:20 GMT\r\n"
            "Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\nX-Foo: bar\r\n"
            "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nETag: \"abc\"\r\nSet-Cookie: a=b\r\n"
            "Accept-Ranges: bytes\r\n\r\n");
  EXPECT_EQ(v.origin_body, Framing::length);
  EXPECT_EQ(v.visitor_body, Framing::length);
  EXPECT_EQ(v.length, 12u);
  EXPECT_TRUE(v.keep_alive);

  // HEAD: the same head, no body.
  const auto head_only = visitor_head(r, visitor("HEAD"), origin(), listener(), true, kNow);
  EXPECT_EQ(head_only.head, v.head);
  EXPECT_EQ(head_only.origin_body, Framing::none);
  EXPECT_EQ(head_only.visitor_body, Framing::none);
}

TEST(CoverOriginResponse, BodiesWithoutALength) {
  const auto close_delimited =
      parse_origin_response(bytes("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nX-A: 1\r\n\r\nbody"));
  ASSERT_EQ(close_delimited.state, OriginResponse::State::complete);
  auto v = visitor_head(close_delimited, visitor(), origin(), listener(), true, kNow);
  EXPECT_EQ(without_date(v.head),
            "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
            "Connection: keep-alive\r\nX-A: 1\r\n\r\n");
  EXPECT_EQ(v.origin_body, Framing::until_close);
  EXPECT_EQ(v.visitor_body, Framing::chunked);
  // To an HTTP/1.0 visitor: up to the close.
  v = visitor_head(close_delimited, visitor("GET", 10), origin(), listener(), true, kNow);
  EXPECT_EQ(without_date(v.head),
            "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\nConnection: close\r\nX-A: 1\r\n\r\n");
  EXPECT_EQ(v.visitor_body, Framing::until_close);
  EXPECT_FALSE(v.keep_alive);

  const auto chunked =
      parse_origin_response(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/html\r\n\r\n"));
  ASSERT_EQ(chunked.state, OriginResponse::State::complete);
  EXPECT_TRUE(chunked.chunked);
  v = visitor_head(chunked, visitor(), origin(), listener(), true, kNow);
  EXPECT_EQ(v.origin_body, Framing::chunked);
  EXPECT_EQ(v.visitor_body, Framing::chunked);
  EXPECT_NE(v.head.find("Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"), std::string::npos);

  const auto not_modified = parse_origin_response(bytes("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"));
  v = visitor_head(not_modified, visitor(), origin(), listener(), true, kNow);
  EXPECT_EQ(without_date(v.head),
            "HTTP/1.1 304 Not Modified\r\nServer: nginx/1.22.1\r\nConnection: keep-alive\r\nETag: \"x\"\r\n\r\n");
  EXPECT_EQ(v.origin_body, Framing::none);
}

TEST(CoverOriginResponse, RedirectsPointHere) {
  const auto own = parse_origin_response(
      bytes("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:18081/x\r\nContent-Length: 0\r\n\r\n"));
  auto v = visitor_head(own, visitor(), origin(), listener(), true, kNow);
  EXPECT_EQ(without_date(v.head),
            "HTTP/1.1 302 Found\r\nServer: nginx/1.22.1\r\nContent-Length: 0\r\nLocation: https://cover.example/x\r\n"
            "Connection: keep-alive\r\n\r\n");
  site::Listener other = listener();
  other.port = 8443;
  site::RequestHead no_host = visitor();
  no_host.host.clear();
  const auto relative = parse_origin_response(bytes("HTTP/1.1 301 Moved\r\nLocation: /y/\r\n\r\n"));
  v = visitor_head(relative, no_host, origin(), other, true, kNow);
  EXPECT_NE(v.head.find("\r\nLocation: https://127.0.0.1:8443/y/\r\n"), std::string::npos);
  const auto elsewhere = parse_origin_response(bytes("HTTP/1.1 302 Found\r\nLocation: https://other.example/\r\n\r\n"));
  v = visitor_head(elsewhere, visitor(), origin(), listener(), true, kNow);
  EXPECT_NE(v.head.find("\r\nLocation: https://other.example/\r\n"), std::string::npos);
}

TEST(CoverOriginResponse, NotHttpIsPassedThroughRaw) {
  for (std::string_view raw : {"garbage\r\n\r\n", "HTTP/x 200\r\n\r\n", "HTTP/1.1 20\r\n\r\n", "H\x01", "HTTP/1.1 200OK\r\n"}) {
    const auto r = parse_origin_response(bytes(raw));
    ASSERT_EQ(r.state, OriginResponse::State::http09) << raw;
    const auto v = visitor_head(r, visitor(), origin(), listener(), true, kNow);
    EXPECT_TRUE(v.head.empty());
    EXPECT_EQ(v.origin_body, Framing::until_close);
    EXPECT_TRUE(v.keep_alive);
  }
  EXPECT_EQ(parse_origin_response(bytes("HTT")).state, OriginResponse::State::incomplete);
}

TEST(CoverOriginResponse, BrokenHeadsAreBadGateway) {
  for (std::string_view bad : {
           "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
           "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
           "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
           "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
           "HTTP/1.1 099 Low\r\n\r\n",
       }) {
    EXPECT_EQ(parse_origin_response(bytes(bad)).state, OriginResponse::State::error) << bad;
  }
  // Over proxy_buffer_size, complete or not.
  const std::string big = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(5000, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_origin_response(bytes(big)).state, OriginResponse::State::error);
  EXPECT_EQ(parse_origin_response(bytes(std::string_view(big).substr(0, 4200))).state, OriginResponse::State::error);
}

TEST(CoverOriginChunked, EncodesAsNginx) {
  EXPECT_EQ(chunk(bytes("hello")), "5\r\nhello\r\n");
  EXPECT_EQ(chunk(bytes(std::string(26, 'a'))).substr(0, 4), "1a\r\n");
  EXPECT_EQ(chunk({}), "0\r\n\r\n");
}

TEST(CoverOriginChunked, DecodesWholeAndInPieces) {
  const std::string_view body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (std::size_t step = 1; step <= body.size(); ++step) {
    ChunkedDecoder d;
    Bytes out;
    std::size_t at = 0;
    auto status = ChunkedDecoder::Status::more;
    while (status == ChunkedDecoder::Status::more && at < body.size()) {
      std::size_t used = 0;
      status = d.feed(bytes(body.substr(at, std::min(step, body.size() - at))), used, out);
      at += used;
    }
    ASSERT_EQ(status, ChunkedDecoder::Status::done) << step;
    EXPECT_EQ(std::string(out.begin(), out.end()), "hello world") << step;
    EXPECT_EQ(body.substr(at), "NEXT") << step;
    EXPECT_EQ(d.body_size(), 11u);
  }
  // Bare LFs, as nginx accepts them.
  ChunkedDecoder lf;
  Bytes out;
  std::size_t used = 0;
  EXPECT_EQ(lf.feed(bytes("3\nabc\n0\n\n"), used, out), ChunkedDecoder::Status::done);
  EXPECT_EQ(used, 9u);
}

TEST(CoverOriginChunked, RefusesBrokenBodies) {
  for (std::string_view bad : {"x\r\n", "\r\n", "5\r\nhelloX", "1234567890abcdef0\r\n", "5\rX"}) {
    ChunkedDecoder d;
    Bytes out;
    std::size_t used = 0;
    EXPECT_EQ(d.feed(bytes(bad), used, out), ChunkedDecoder::Status::error) << bad;
  }
  ChunkedDecoder limited(8);
  Bytes out;
  std::size_t used = 0;
  EXPECT_EQ(limited.feed(bytes("1;" + std::string(20, 'e') + "\r\n"), used, out), ChunkedDecoder::Status::error);
}

}  // namespace
}  // namespace postern::transport::cover
