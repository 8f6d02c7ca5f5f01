// The nginx-alike site (src/postern/transport/site.h), byte for byte. The parser table below was
// checked against a real nginx 1.22.1 (tests/integration/site_compare.py machinery): each row is a
// request head and what nginx does with it (answers at once with an error, keeps waiting, or
// accepts it); the random probes are the IMC 2020 active-probe lengths from a fixed seed. The
// response tests serve a temporary directory with fixed file times and compare whole heads and
// bodies with what nginx sends for the same files.
#include "postern/transport/site.h"

#include <gtest/gtest.h>
#include <sys/time.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>

#include "../store/temp_dir.h"

namespace postern::transport::site {
namespace {

using namespace std::string_view_literals;
using store::store_test::TempDir;

constexpr ParseState kIncomplete = ParseState::incomplete;
constexpr ParseState kComplete = ParseState::complete;
constexpr ParseState kError = ParseState::error;

struct Row {
  std::string_view bytes;
  ParseState state;
  int status;
};

// Request heads and nginx 1.22.1's verdicts (0 = accepted or still waiting).
constexpr Row kRows[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\nHost: a\n\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\rHost: a\r\n\r\n"sv, kError, 400},
    {"GET / http/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/01.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1000.1\r\nHost: a\r\n\r\n"sv, kError, 505},
    {"GET / HTTP/999.1\r\nHost: a\r\n\r\n"sv, kError, 505},
    {"GET / HTTP/1.1000\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.999\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/3.0\r\nHost: a\r\n\r\n"sv, kError, 505},
    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTX/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1x\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /\r\n"sv, kComplete, 0},
    {"GET /\n"sv, kComplete, 0},
    {"GET / \r\n"sv, kComplete, 0},
    {"HEAD /\r\n"sv, kError, 400},
    {"POST /\r\n"sv, kError, 400},
    {"GET\r\n"sv, kError, 400},
    {"GET \r\n"sv, kError, 400},
    {"GET x HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET http://a/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http://a HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http://a:80/x.json HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET HTTP://a/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET ftp://a/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http://a/b/../../ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http://a_b/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http://[::1]/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http://a..b/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET http:/a/ HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /\t HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /%2 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /%2f HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /%2e%2e/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/%2e%2e/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /./ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET //index.html HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/.. HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/../.. HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /.. HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /... HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /index.html? HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /index.html?a=%zz HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /index.html#x HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /index.html%23x HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a%20b.txt HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a+b.txt HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /x.json HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /x.JSON HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub?x=1 HTTP/1.1\r\nHost: a:8080\r\n\r\n"sv, kComplete, 0},
    {"GET /sub HTTP/1.0\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/empty/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /index.html/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /index.html/x HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"get / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"G_T / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"G-T / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"G1T / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"DELETE /nope HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"POST /nope HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"POST /sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"POST /sub/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"POST /sub/empty/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"PUT /x.json HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 405},
    {"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"FOO / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"PATCH / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/2"sv, kError, 505},
    {"GET / HTTP/1.0000\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/10.0\r\n\r\n"sv, kError, 505},
    {"GET / HTTP/1.01\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\n\r\n"sv, kError, 400},
    {"GET /index.html%3fx HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub%2f HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub%2F HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /%25 HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /a/./b/.././../x.json HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/./. HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /x.json/. HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /x.json/.. HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /\\x.json HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX_Y: z\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nX-Y : z\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nX\x00: z\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: z\x00\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: z\x01\x7f\x80\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\n\x80: z\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\n X: z\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n{}: z\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nX/Y: z\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost:\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: .a\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: [::1]:8\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a:\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.0\r\nHost: a..b\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"sv, kError, 501},
    {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Mon, 01 Jan 2035 00:00:00 GMT\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\n"sv, kComplete, 0},
    {"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET http://a:80/sub HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET http://A.B. HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET http://a?x HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET http://[::1]:5/ HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET http://a:x/ HTTP/1.1\r\nHost: b\r\n\r\n"sv, kError, 400},
    {"GET HTTP://a/ HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET h2c://a/ HTTP/1.1\r\nHost: b\r\n\r\n"sv, kComplete, 0},
    {"GET /sub HTTP/1.1\r\nHost: B.Example.:8443\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 29 Nov 2026 19:52:13 GMT\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: W/\"6b0c826d-406\"\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: *\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nIf-Unmodified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=5000-\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=-5\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=x\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1,5-6\r\n\r\n"sv, kComplete, 0},
    {"HEAD / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET /nope HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\r\n"sv, kComplete, 0},
    {"GET /nope HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"sv, kComplete, 0},
    {"HEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a/\r\n"sv, kError, 400},
    {"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?q#f HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /favicon.ico HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"sv, kComplete, 0},
    {"GET http://hsub HTTP/1.1\r\nH]ost:\x80" "a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?#x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHos9_ a\r\n\r\n"sv, kError, 400},
    {"G\nT / H\rTP\x00/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"/GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnect12on: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET .ttp://h/sub4HTTP/1.1\r\nHost:2a\r\n\r\n"sv, kError, 400},
    {"GET http://h/sub HTTP/1.:1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / TTTP/11\r8Host: a\r\n\r\n"sv, kError, 400},
    {"GET http://hsub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/151\r\nHos%: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 505},
    {"GET /sb/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\n[\r\n"sv, kIncomplete, 0},
    {"GET /sub/a%2b.txt?x=1 HTTP/1.0\r\nHConnection: keepalive\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a%20b.txt?x=1 HTa/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive3\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.10\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GE:T /PHTTP/1.1\r\nHost: a\r\n\r2\n"sv, kError, 400},
    {"GET  HTTP/\x7f" "1.1\r\nH\x80st: a\r\n\r\n"sv, kError, 400},
    {"GET http:/h/sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTP/1.1\r\nHost: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnecton: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET. /ub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\x80\n\r\n"sv, kError, 400},
    {"GET / HTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTP[/1.0\r\n-Connection: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r:Host: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange: bytes=\r-1\r\n\r\n"sv, kError, 400},
    {"G-T / HTTP/1.1P\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"HEAD 7x.json HTTP/1.1\r\nHost: b:1\r\nRage: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET /suba%20b.txt?x=1 HTTP/1.0\r\nConnectio@n: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/31.1\r\nHost: a\r\n\r\n"sv, kError, 505},
    {"GET / HTTP/1.1\r\nHost a\r\n\r\n"sv, kError, 400},
    {"GET :/ HTTP/1.1\r\nHost: a3\n\r\n"sv, kError, 400},
    {"GT / HTTP/.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /\x80sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-aliva\r\n\r\n"sv, kComplete, 0},
    {"ET / HTTP/1.1\r\nHost: \r\n\r\n"sv, kError, 400},
    {"ET htp://h/sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\nHost: b:1\r\nRange: bytes=0\x7f-1\r\n\r\n"sv, kComplete, 0},
    {"GET htp://h/sub HTTP/1.1\r\nHost: \r\n\r\n"sv, kError, 400},
    {"TGE / HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET / HT TP/1.1\r\nHost:a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.jsn HTTP/1.1\r\nHost: b:1\r\nRange: byHes=0-1\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHo0st: b:P1\r\nRangZ: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b4.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.06\nConnection: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET / aHT_P/1.1\x80\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET http://h/sub HTT/1.1\r\nHot a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP\n1.1\r\nHost: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"HEAD /x.son HTTP/1\r.1\r\nHost: Hb:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost% a\r#\r\n"sv, kError, 400},
    {"GET http://h/sub HTTP/1.1\r\nHost: a\n\r\n"sv, kComplete, 0},
    {"HEAD /x.jsonHTTP/1.1\r\nHost: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET /sub/a% 20b.txt?x=1 HTTP/1.0\r\n\nConnection: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep6-alive\r\n\r\n"sv, kComplete, 0},
    {"GET /aub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\n"sv, kComplete, 0},
    {"GET http://h/sub HTTP/1.1\r\nHoHst: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\not: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange: Tbyte%=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET /3sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"HAD /x.json HTTP/1.1\r\nHost: b:1\r/\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\r\nHaost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-a\nlive\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/@a%20b.txt?x=1 HTTP/1.0\rConnection?: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET htp://h/sub HTTP/1.1\r\nHo@t: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTT/1.1\r\nHost: b:1\r]Range:bytes=0-1\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\rRangeT: bytes=0-1\r\n\r#\n"sv, kError, 400},
    {"EAD /xjsona HTTP/1.1\r\nHost: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GE http://h/sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET h_tt://h/sub HTTP/1.1\r\nHost: a\x7f\n\r\n"sv, kError, 400},
    {"GET http5://h/su\x80" "b HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET http://hasub HTT/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / #TTP/1.1\r\nHost: \r\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txtx=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HT[TP/1.1\r\nHost: b%1\r\nRang: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"H8EAD /x.json HTTP/1.1\r\nHot: b:1\r\nRange: byt@s=0-1\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20.txt?x=1 HTTP/1.0\r\nConnecton: keep-aliveT\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRang4e: bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r.\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: k/ep-alive\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHosta b:1\r\nRange: bytes=0-1\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnect\rion: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost:a\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange: byte]=01\r\n\r\n"sv, kComplete, 0},
    {"HEAD /\rx.json HTTP/1.1\r\nHost: b:1\r\nRange: bytes=0-1\r:\r"sv, kError, 400},
    {"GET / -TTP/1.1\rost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\r_"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRan\te: by\x7f" "es=0.1\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHostT]: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange: byts=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.\x7f\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.jsn HTTP/1.1\r\nHoHst: b:1 \nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange:bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET http://hsub H%TTP/.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection:keep-alive\r\n5\n"sv, kIncomplete, 0},
    {"HEAD /x.jso HTTP/1.1\r\nHoTt: b:1\r\nRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/\t.1\r.\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%209b.txt?=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET /su/a%20b.txt?x=1 H]TP/1.0\r\nConnectiTon: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET htt.://h/su HTTP/1.1\r\nHo9st: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/11\r\nHost: a\r\n\r\n"sv, kError, 505},
    {"GET / HT1TP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost:b:1\n.Range: bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1_1\r_\nHost:a\r\n\r\n"sv, kError, 400},
    {"GEThttp://h/sub HTTP/1.1\r\nHost:a 9a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/.1\r\nHost: b:1\r\nRange: b1ytes=0-1\r\n\r\n"sv, kError, 400},
    {"H EAD /x.json HTTP/1.1\r\nHost: b:1\r\nRa\nge: bytes=-1\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTP/1.0\r\nConnection: keep-alive\r\n\r4"sv, kError, 400},
    {"GET http://h/sub HTT/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\x80\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r.Range: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET htt\t://h/sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET http://h/\tub HTTP/1.1\r\nHost: #a\r\n\r\n"sv, kError, 400},
    {"GET a/ HTTP/1.1\r\nHo0st: a\r\n\r\n"sv, kError, 400},
    {"GET http://h/sub H?TP/1.1\r\nHost: \r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r3Connecion: keep-alive\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP1.1\r\nHost: b:1\r\nRangeH: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\rHConnection: keep-alive\r\n\r\n"sv, kError, 400},
    {"1T / HTTP/1.\r1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a%205b.txt?x=1 HTTP/1.?\x80" "0\r\nConnection: keep-alive\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nT\r\n"sv, kIncomplete, 0},
    {"GET http:7//h/subHTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20b.txt?x1 HTTP/1.0\r\nCon-necti7on: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GE/T / HTTP/1.1\r\nH[ost: a\r\n\r\n"sv, kError, 400},
    {"GET 33tp://h/sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET http:T//h/sub HT7T/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.1\nHost a\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: 4b:1\r\nRange: bytes=0-1\r\r\n"sv, kIncomplete, 0},
    {"GET /sub/a%20b.xt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\n"sv, kComplete, 0},
    {"7GET / HTTP/.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET http://h/sub HTTP/1.1\r\nHost: a\r\n\n"sv, kComplete, 0},
    {"HEAD /x.jon HTTP/1.1\r\nHost: b:1\r\nRane: bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET /sub/a%20b.txt?x=1 HTTP/1.0\r\nConnection: kee\x7f-alive\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\tRange: bytes=0-1\r\n\r\n"sv, kError, 400},
    {"GZET sub/a%20b.txt?x=1 HTTP/1.0\r\nCon3ection: keep-alive\r\n\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange: bytes=.0-1\r\n\r\n"sv, kComplete, 0},
    {"HEAD /x.json HTTP/1.1\r\nHost: b:1\r\nRange:#bytes=0-1\r\n\r\n"sv, kComplete, 0},
    {"GET / HTTP/1.\r\nHost: aT\n@\r\n"sv, kError, 400},
    {"HEAD /x.json HTTP/1.1\r5\nHost: b:1\r\nRange: b?ytes=0-1\r\n\r\n"sv, kError, 400},
    {"GE ttp://h/sub HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
    {"8GET http://h/sub HTTP/.1\r\nH\rst: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP/1.#1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a20b8.txt?x=1 HTTP/1.0\r\nConnect8on: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET http:-//h/sub \tH%TTP/1.1\r\nHost: a\r\n\r\n"sv, kError, 400},
    {"GET / HTTP.1.1\r\nHo\x80t: a\r\n\r\n"sv, kError, 400},
    {"GET /sub/a%20Pb.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"sv, kComplete, 0},
    {"GET http://31h/sb HTTP/1.1\r\nHost: a\r\n\r\n"sv, kComplete, 0},
};

ParseResult parse(std::string_view s, const NginxLimits& limits = {}) { return parse_request_head(as_bytes(s), limits); }

TEST(SiteParser, MatchesNginxOnTheRecordedHeads) {
  for (const auto& row : kRows) {
    const auto r = parse(row.bytes);
    EXPECT_EQ(r.state, row.state) << testing::PrintToString(std::string(row.bytes));
    EXPECT_EQ(r.error_status, row.status) << testing::PrintToString(std::string(row.bytes));
  }
}

TEST(SiteParser, IncompleteHeadsWaitAndTheirPrefixesToo) {
  const std::string full = "GET /a/b.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n";
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(parse(full.substr(0, n)).state, kIncomplete) << n;
  }
  const auto r = parse(full + "GET /next");
  ASSERT_EQ(r.state, kComplete);
  EXPECT_EQ(r.head.head_size, full.size());
  EXPECT_EQ(r.head.method, "GET");
  EXPECT_EQ(r.head.target, "/a/b.html?x=1");
  EXPECT_EQ(r.head.path, "/a/b.html");
  EXPECT_EQ(r.head.query, "x=1");
  EXPECT_EQ(r.head.version, 11u);
  EXPECT_EQ(r.head.host, "example.com");
  EXPECT_TRUE(r.head.keep_alive);
  ASSERT_EQ(r.head.headers.size(), 2u);
  EXPECT_EQ(r.head.headers[1].first, "User-Agent");
  EXPECT_EQ(r.head.header("user-agent"), "t");
}

TEST(SiteParser, ErrorsComeAtTheFirstBadByte) {
  // nginx answers as soon as a byte cannot start or continue a request: a prober sees the answer
  // without sending the rest.
  EXPECT_EQ(parse("g").error_status, 400);
  EXPECT_EQ(parse("\x16").error_status, 400);  // on a plain port; the TLS port hands it to TLS
  EXPECT_EQ(parse("GET /\x01").error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/2").error_status, 505);
  EXPECT_EQ(parse("GET / HTTP/10").error_status, 505);
  EXPECT_EQ(parse("GET / HTTP/1.1000").error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n").error_status, 400);  // before the blank line
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a/b\r\n").error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX Y").error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX: a\rb").error_status, 400);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n").head_complete);
  const auto no_host = parse("GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(no_host.error_status, 400);
  EXPECT_TRUE(no_host.head_complete);
}

TEST(SiteParser, PathsAreDecodedAndNormalisedAsNginxDoes) {
  struct P {
    std::string_view target;
    std::string_view path;  // empty = 400
  };
  constexpr P kPaths[] = {
      {"/", "/"}, {"//a//b", "/a/b"}, {"/a/./b", "/a/b"}, {"/a/../b", "/b"}, {"/a/..", "/"}, {"/a/.", "/a/"},
      {"/a/b/../../c/", "/c/"}, {"/%61%62", "/ab"}, {"/a%2fb", "/a/b"}, {"/a/%2e%2e/b", "/b"}, {"/a%20b", "/a b"},
      {"/a%3fb", "/a?b"}, {"/a%23b", "/a#b"}, {"/a%25", "/a%"}, {"/a#frag", "/a"}, {"/...", "/..."}, {"/.a", "/.a"},
      {"/..", ""}, {"/a/../..", ""}, {"/%2e%2e/", ""}, {"/%00", ""}, {"/%zz", ""}, {"/%2", ""}, {"/\x80", "/\x80"},
  };
  for (const auto& p : kPaths) {
    const auto r = parse("GET " + std::string(p.target) + " HTTP/1.0\r\n\r\n");
    if (p.path.empty()) {
      EXPECT_EQ(r.error_status, 400) << p.target;
    } else {
      ASSERT_EQ(r.state, kComplete) << p.target;
      EXPECT_EQ(r.head.path, p.path) << p.target;
    }
  }
  const auto abs = parse("GET http://Example.COM.:8080?q HTTP/1.1\r\nHost: other\r\n\r\n");
  ASSERT_EQ(abs.state, kComplete);
  EXPECT_EQ(abs.head.host, "example.com");  // the request line's host wins over Host
  EXPECT_EQ(abs.head.path, "/");
  EXPECT_EQ(abs.head.query, "q");
}

TEST(SiteParser, VersionsKeepAliveAndBodies) {
  auto r = parse("GET /\r\n");
  ASSERT_EQ(r.state, kComplete);
  EXPECT_EQ(r.head.version, 9u);
  EXPECT_FALSE(r.head.keep_alive);
  EXPECT_EQ(parse("HEAD /\r\n").error_status, 400);  // HTTP/0.9 knows only GET
  r = parse("GET / HTTP/1.0\r\n\r\n");
  EXPECT_FALSE(r.head.keep_alive);
  r = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_TRUE(r.head.keep_alive);
  r = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n");
  EXPECT_FALSE(r.head.keep_alive);
  r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
  ASSERT_TRUE(r.head.content_length);
  EXPECT_EQ(*r.head.content_length, 12u);
  r = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_TRUE(r.head.chunked);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n").error_status, 501);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n").error_status, 405);
  // Header names with '_' or other odd characters are ignored, not errors.
  r = parse("GET / HTTP/1.1\r\nHost: a\r\nHo_st: b\r\n{}: c\r\n\r\n");
  ASSERT_EQ(r.state, kComplete);
  EXPECT_EQ(r.head.headers.size(), 1u);
}

TEST(SiteParser, BufferLimitsGive414And494WhereNginxDoes) {
  // Checked against nginx: a request line must end within one 8k large buffer (counted from its
  // first byte); a header line likewise; at most 4 large buffers per head.
  const auto line = [](std::size_t n) { return "GET /" + std::string(n, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n"; };
  EXPECT_EQ(parse(line(8176)).state, kComplete);  // the line with its CRLF: exactly 8192 bytes
  EXPECT_EQ(parse(line(8177)).error_status, 414);
  EXPECT_EQ(parse("GET /" + std::string(9000, 'a')).error_status, 414);
  const auto header = [](std::size_t n) { return "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(n, 'a') + "\r\n\r\n"; };
  EXPECT_EQ(parse(header(8187)).state, kComplete);  // "X: ..." with its CRLF: 8192 bytes
  EXPECT_EQ(parse(header(8188)).error_status, 494);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 5; ++i) many += "X: " + std::string(7000, 'a') + "\r\n";
  EXPECT_EQ(parse(many + "\r\n").error_status, 494);
  std::string fits = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 3; ++i) fits += "X: " + std::string(7000, 'a') + "\r\n";
  EXPECT_EQ(parse(fits + "\r\n").state, kComplete);
}

TEST(SiteParser, ImcRandomProbesGetWhatNginxGives) {
  // IMC 2020's NR1/NR2 lengths, random bytes from a fixed seed. On the TLS port the first byte
  // decides: 0x16 or the high bit go to TLS (nginx closes such garbage without data), anything
  // else is parsed as HTTP; nginx answered 400 at once to every one of these (checked).
  std::mt19937 gen(20201027u);
  int http = 0;
  for (unsigned n : {7u, 8u, 9u, 11u, 12u, 13u, 15u, 16u, 17u, 21u, 22u, 23u, 32u, 33u, 34u, 40u, 41u, 42u, 48u, 49u, 50u, 221u}) {
    for (int k = 0; k < 4; ++k) {
      Bytes b(n);
      for (auto& x : b) x = static_cast<std::uint8_t>(gen() & 0xffu);
      const auto r = parse_request_head(b);
      EXPECT_EQ(r.state, kError) << n;
      EXPECT_EQ(r.error_status, 400) << n;
      if (!first_byte_is_tls(b[0])) ++http;
    }
  }
  EXPECT_EQ(http, 42);
  EXPECT_TRUE(first_byte_is_tls(0x16));
  EXPECT_TRUE(first_byte_is_tls(0x80));
  EXPECT_FALSE(first_byte_is_tls('G'));
  EXPECT_FALSE(first_byte_is_tls(0x17));
}

// ---------------------------------------------------------------------------------------------

const auto kNow = std::chrono::sys_days{std::chrono::year{2026} / 11 / 29} + std::chrono::hours(19) +
                  std::chrono::minutes(44) + std::chrono::seconds(49);
constexpr std::string_view kDate = "Date: Sun, 29 Nov 2026 19:44:49 GMT\r\n";
constexpr std::time_t kMtime = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT, hex 6553f100

std::string page(std::string_view status) {
  return "<html>\r\n<head><title>" + std::string(status) + "</title></head>\r\n<body>\r\n<center><h1>" +
         std::string(status) + "</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
}

class SiteResponse : public testing::Test {
 protected:
  void SetUp() override {
    write("index.html", "hello");
    write("style.css", "body{}\n");
    write("data.bin", "0123456789");
    std::filesystem::create_directories(dir_.path() + "/sub");
    std::filesystem::create_directories(dir_.path() + "/docs");
    write("docs/index.html", "docs");
    std::filesystem::create_symlink("/etc/hostname", dir_.path() + "/escape");
    auto s = Site::open(dir_.path());
    ASSERT_TRUE(s.ok());
    site_.emplace(std::move(s).value());
    site_->set_listener({"127.0.0.1", 8443, true});
  }
  void write(const std::string& name, const std::string& body) {
    std::ofstream(dir_.file(name)) << body;
    const timeval times[2] = {{kMtime, 0}, {kMtime, 0}};
    ASSERT_EQ(::utimes(dir_.file(name).c_str(), times), 0);
  }
  Response get(std::string_view request, bool plain = false, unsigned n = 1) {
    const auto r = parse(request);
    EXPECT_EQ(r.state, kComplete) << request;
    return site_->respond(r.head, plain, kNow, n);
  }

  TempDir dir_;
  std::optional<Site> site_;
};

TEST_F(SiteResponse, ServesAFileWithNginxsHead) {
  const auto r = get("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Content-Type: text/html\r\nContent-Length: 5\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
                        "Connection: keep-alive\r\nETag: \"6553f100-5\"\r\nAccept-Ranges: bytes\r\n\r\n");
  EXPECT_EQ(r.file, std::filesystem::canonical(dir_.path()) / "index.html");
  EXPECT_EQ(r.file_offset, 0u);
  EXPECT_EQ(r.file_length, 5u);
  EXPECT_EQ(r.after, After::keep_alive);
  EXPECT_EQ(get("GET /style.css HTTP/1.1\r\nHost: a\r\n\r\n").head.find("Content-Type: text/css\r\n") != std::string::npos, true);
  EXPECT_NE(get("GET /data.bin HTTP/1.1\r\nHost: a\r\n\r\n").head.find("Content-Type: application/octet-stream\r\n"),
            std::string::npos);
  const auto head = get("HEAD /docs/ HTTP/1.0\r\n\r\n");
  EXPECT_NE(head.head.find("Content-Length: 4\r\n"), std::string::npos);
  EXPECT_NE(head.head.find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(head.file.empty());
  EXPECT_EQ(head.after, After::close);
}

TEST_F(SiteResponse, ErrorPagesAndRedirects) {
  auto r = get("GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.head, "HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Content-Type: text/html\r\nContent-Length: 153\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(r.body, page("404 Not Found"));
  r = get("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.body, page("405 Not Allowed"));
  EXPECT_TRUE(r.discard_body);
  EXPECT_EQ(get("DELETE /nope HTTP/1.1\r\nHost: a\r\n\r\n").status, 405);
  EXPECT_EQ(get("POST /nope HTTP/1.1\r\nHost: a\r\n\r\n").status, 404);
  EXPECT_EQ(get("GET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n").body, page("403 Forbidden"));
  EXPECT_EQ(get("GET /escape HTTP/1.1\r\nHost: a\r\n\r\n").status, 404);  // a symlink out of the root
  EXPECT_EQ(get("GET /" + std::string(5000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n").status, 404);
  r = get("GET /sub?x=1 HTTP/1.1\r\nHost: Example.org:99\r\n\r\n");
  EXPECT_EQ(r.head, "HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Content-Type: text/html\r\nContent-Length: 169\r\nLocation: https://example.org:8443/sub/?x=1\r\n"
                        "Connection: keep-alive\r\n\r\n");
  EXPECT_EQ(r.body, page("301 Moved Permanently"));
  r = site_->respond(parse("GET /sub HTTP/1.0\r\n\r\n").head, false, kNow, 1, Listener{"10.0.0.1", 443, true});
  EXPECT_NE(r.head.find("Location: https://10.0.0.1/sub/\r\n"), std::string::npos);
  // Chrome and MSIE get nginx's msie_padding after error pages.
  r = get("GET /nope HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36\r\n\r\n");
  EXPECT_EQ(r.body.size(), 555u);
  EXPECT_NE(r.head.find("Content-Length: 555\r\n"), std::string::npos);
}

TEST_F(SiteResponse, PlainHttpOnTheTlsPort) {
  const auto r = get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true);
  EXPECT_EQ(r.head, "HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Content-Type: text/html\r\nContent-Length: 255\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body,
            "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n"
            "<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
            "<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n");
  EXPECT_EQ(r.after, After::close);
}

TEST_F(SiteResponse, ParseErrorsLingerAndHeadErrorsClose) {
  auto r = site_->error_response(parse("get / HTTP/1.1\r\n"), true, kNow);
  EXPECT_EQ(r.head, "HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Content-Type: text/html\r\nContent-Length: 157\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body, page("400 Bad Request"));
  EXPECT_EQ(r.after, After::lingering_close);
  r = site_->error_response(parse("GET / HTTP/1.1\r\n\r\n"), false, kNow);
  EXPECT_EQ(r.after, After::close);
  r = site_->error_response(parse("GET / HTTP/2.0\r\n"), false, kNow);
  EXPECT_EQ(r.status, 505);
  EXPECT_EQ(r.body, page("505 HTTP Version Not Supported"));
  r = site_->error_response(494, false, kNow);
  EXPECT_EQ(r.body,
            "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n"
            "<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n"
            "<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n");
  EXPECT_EQ(r.head.substr(0, 26), "HTTP/1.1 400 Bad Request\r\n");
  EXPECT_EQ(site_->error_response(414, false, kNow).body, page("414 Request-URI Too Large"));
  // An HTTP/0.9 request line gets the page without a head.
  r = site_->error_response(parse("HEAD /\r\n"), false, kNow);
  EXPECT_TRUE(r.head.empty());
  EXPECT_EQ(r.body, page("400 Bad Request"));
  EXPECT_EQ(site_->error_response(0, false, kNow).after, After::close);
}

TEST_F(SiteResponse, ConditionalRangeAndKeepAliveRules) {
  auto r = get("GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n");
  EXPECT_EQ(r.head, "HTTP/1.1 304 Not Modified\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: keep-alive\r\nETag: \"6553f100-5\"\r\n\r\n");
  EXPECT_TRUE(r.file.empty());
  EXPECT_EQ(get("GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Tue, 14 Nov 2023 22:13:21 GMT\r\n\r\n").status, 200);
  EXPECT_EQ(get("GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\", W/\"6553f100-5\"\r\n\r\n").status, 304);
  EXPECT_EQ(get("GET / HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\n\r\n").status, 412);
  r = get("GET /data.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=2-4\r\n\r\n");
  EXPECT_EQ(r.head, "HTTP/1.1 206 Partial Content\r\nServer: nginx/1.22.1\r\n" + std::string(kDate) +
                        "Content-Type: application/octet-stream\r\nContent-Length: 3\r\n"
                        "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: keep-alive\r\n"
                        "ETag: \"6553f100-a\"\r\nContent-Range: bytes 2-4/10\r\n\r\n");
  EXPECT_EQ(r.file_offset, 2u);
  EXPECT_EQ(r.file_length, 3u);
  r = get("GET /data.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=-3\r\n\r\n");
  EXPECT_EQ(r.file_offset, 7u);
  r = get("GET /data.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=20-\r\n\r\n");
  EXPECT_EQ(r.status, 416);
  EXPECT_NE(r.head.find("Connection: keep-alive\r\nContent-Range: bytes */10\r\n"), std::string::npos);
  EXPECT_EQ(r.body.size(), 197u);
  // Several ranges: multipart/byteranges with nginx's counter-numbered boundary.
  r = get("GET /data.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1,5-6\r\n\r\n");
  EXPECT_EQ(r.status, 206);
  const std::string part = "\r\n--00000000000000000001\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ";
  EXPECT_EQ(r.body, part + "0-1/10\r\n\r\n01" + part + "5-6/10\r\n\r\n56\r\n--00000000000000000001--\r\n");
  EXPECT_NE(r.head.find("Content-Type: multipart/byteranges; boundary=00000000000000000001\r\nContent-Length: " +
                        std::to_string(r.body.size()) + "\r\n"),
            std::string::npos);
  EXPECT_TRUE(r.file.empty());
  // keepalive_requests: the 1000th request on a connection is the last.
  EXPECT_EQ(get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, 999).after, After::keep_alive);
  EXPECT_EQ(get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, 1000).after, After::close);
  // Expect: 100-continue is answered before a served file (nginx discards the body there).
  r = get("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(r.head.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0), 0u);
  // HTTP/0.9: the body alone, then close.
  r = get("GET /\r\n");
  EXPECT_TRUE(r.head.empty());
  EXPECT_EQ(r.file_length, 5u);
  EXPECT_EQ(r.after, After::close);
}

TEST(SiteOpen, RefusesWhatIsNotADirectory) {
  EXPECT_FALSE(Site::open("/nonexistent/postern-site").ok());
  EXPECT_FALSE(Site::open("/etc/hostname").ok());
  EXPECT_EQ(http_date(std::chrono::system_clock::time_point{}), "Thu, 01 Jan 1970 00:00:00 GMT");
}

}  // namespace
}  // namespace postern::transport::site
