// See doctor.h. Every step runs as a coroutine on a private io_context with its own timeout, on
// a fresh connection where a step needs one, so that one step's failure cannot hide another's.
#include "postern/client/net/doctor.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include "postern/client/net/doh.h"
#include "postern/crypto/random.h"
#include "postern/transport/dns_message.h"
#include "postern/transport/errors.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/net/inner_stream.h"
#include "postern/transport/net/tls_client.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/upgrade.h"

namespace postern::client::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using asio::ip::tcp;
using asio::ip::udp;
using error_code = boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::string host_header(const Invite& invite) {
  const bool v6 = invite.host.find(':') != std::string::npos;
  return (v6 ? "[" + invite.host + "]" : invite.host) + ":" + std::to_string(invite.port);
}

// What a failed socket operation looked like, in the words the verdicts use.
std::string describe(const error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  if (ec == asio::error::connection_refused) return "refused";
  if (ec == asio::error::connection_reset) return "reset";
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return "closed";
  if (ec == asio::error::network_unreachable || ec == asio::error::host_unreachable) return "unreachable";
  return ec.message();
}

// Addresses in ranges a real server abroad is never in: a DNS answer pointing there (while
// another resolver disagrees) is the classic sign of injection.
bool is_bogon(const std::string& text) {
  error_code ec;
  const auto a = asio::ip::make_address(text, ec);
  if (ec) return false;
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return b[0] == 0 || b[0] == 10 || (b[0] == 100 && (b[1] & 0xC0) == 64) || (b[0] == 169 && b[1] == 254) ||
           (b[0] == 172 && (b[1] & 0xF0) == 16) || (b[0] == 192 && b[1] == 168) || b[0] >= 224;
  }
  return a.is_unspecified() || a.to_v6().is_link_local() || (a.to_v6().to_bytes()[0] & 0xFE) == 0xFC;
}

// One A query over UDP to `server` (HOST:PORT).
awaitable<Result<std::vector<std::string>>> resolve_udp(const std::string& server, const std::string& name,
                                                        std::chrono::milliseconds timeout) {
  const auto colon = server.rfind(':');
  if (colon == std::string::npos) co_return transport::Errc::bad_config;
  error_code ec;
  const auto address = asio::ip::make_address(server.substr(0, colon), ec);
  if (ec) co_return transport::Errc::bad_config;
  const int port = std::atoi(server.c_str() + colon + 1);
  if (port <= 0 || port > 65535) co_return transport::Errc::bad_config;
  crypto::SystemRng rng;
  std::array<std::uint8_t, 2> id_bytes{};
  rng.fill(id_bytes);
  const auto id = static_cast<std::uint16_t>(id_bytes[0] << 8 | id_bytes[1]);
  auto query = transport::dns::build_query(id, name, transport::dns::kTypeA);
  if (!query) co_return query.error();
  auto ex = co_await asio::this_coro::executor;
  udp::socket socket(ex, address.is_v4() ? udp::v4() : udp::v6());
  const udp::endpoint to(address, static_cast<std::uint16_t>(port));
  asio::steady_timer guard(ex);
  guard.expires_after(timeout);
  guard.async_wait([&socket](const error_code& wait_ec) {
    if (!wait_ec) {
      error_code ignored;
      socket.cancel(ignored);
    }
  });
  auto [sec, sent] = co_await socket.async_send_to(asio::buffer(*query), to, kTuple);
  (void)sent;
  if (sec) co_return transport::Errc::unreachable;
  std::vector<std::uint8_t> answer(transport::dns::kMaxMessage);
  for (;;) {
    udp::endpoint from;
    auto [rec, n] = co_await socket.async_receive_from(asio::buffer(answer), from, kTuple);
    if (rec) co_return transport::Errc::timeout;
    if (from != to) continue;
    // The first answer that parses wins: that is what an injector relies on.
    auto parsed = transport::dns::parse_response(ByteView(answer.data(), n), id, name, transport::dns::kTypeA);
    if (!parsed) continue;
    guard.cancel();
    co_return parsed->addresses;
  }
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out.empty() ? "(none)" : out;
}

// A TCP connection and, on it, our client's TLS handshake with the pin check.
struct Connected {
  std::optional<transport::net::TlsStream> tls;
  error_code tcp_error, tls_error;
  bool pin_ok = false;
  std::int64_t tcp_ms = -1, tls_ms = -1;
  std::string tls_version;
};

awaitable<Connected> connect(const tcp::endpoint& endpoint, const Invite& path, asio::ssl::context& ctx,
                             std::chrono::milliseconds timeout) {
  Connected out;
  auto ex = co_await asio::this_coro::executor;
  beast::tcp_stream socket(ex);
  socket.expires_after(timeout);
  auto start = Clock::now();
  auto [cec] = co_await socket.async_connect(endpoint, kTuple);
  if (cec) {
    out.tcp_error = cec;
    co_return out;
  }
  out.tcp_ms = ms_since(start);
  transport::net::TlsStream tls(socket.release_socket(), ctx, asio::ssl::stream_base::client);
  (void)transport::net::set_server_name(tls.native_handle(), path.host);
  beast::get_lowest_layer(tls).expires_after(timeout);
  start = Clock::now();
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) {
    out.tls_error = hec;
    co_return out;
  }
  out.tls_ms = ms_since(start);
  out.tls_version = SSL_get_version(tls.native_handle());
  out.pin_ok = transport::net::peer_key_matches(tls.native_handle(), path.pin);
  beast::get_lowest_layer(tls).expires_never();
  out.tls.emplace(std::move(tls));
  co_return out;
}

// Reads one HTTP response (head and a Content-Length body) from a stream.
template <class Stream>
awaitable<std::optional<std::pair<transport::upgrade::ResponseHead, std::string>>> read_response(Stream& s) {
  Bytes in;
  std::array<std::uint8_t, 4096> chunk{};
  for (;;) {
    auto head = transport::upgrade::parse_response_head(in);
    if (!head) co_return std::nullopt;
    if (*head) {
      const std::string_view text = as_chars(in);
      std::size_t length = 0;
      const auto at = text.find("Content-Length: ");
      if (at != std::string_view::npos && at < (*head)->head_size) length = std::strtoul(text.data() + at + 16, nullptr, 10);
      while (in.size() < (*head)->head_size + length) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
        if (ec) break;
        in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      }
      const std::size_t end = std::min(in.size(), (*head)->head_size + length);
      co_return std::pair{**head, std::string(in.begin() + static_cast<std::ptrdiff_t>((*head)->head_size),
                                              in.begin() + static_cast<std::ptrdiff_t>(end))};
    }
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
    if (ec) co_return std::nullopt;
    in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

void add(DoctorPath& p, std::string name, std::string outcome, std::string detail, std::int64_t ms = -1) {
  p.steps.push_back(DoctorStep{std::move(name), std::move(outcome), std::move(detail), ms});
}

awaitable<DoctorPath> check_path(const Invite& path, std::string label, const DoctorOptions& options) {
  DoctorPath p;
  p.label = std::move(label);
  p.host = path.host;
  p.port = path.port;
  const auto timeout = options.step_timeout;
  auto ctx = transport::net::make_client_tls_context();

  // 1. Names.
  std::vector<tcp::endpoint> endpoints;
  bool forged = false;
  if (transport::net::is_ip_literal(path.host)) {
    endpoints.emplace_back(asio::ip::make_address(path.host), path.port);
    add(p, "dns", "ok", "the link gives the address " + path.host + " (no DNS query)");
  } else {
    std::string detail;
    if (options.dns_server) {
      auto udp_answer = co_await resolve_udp(*options.dns_server, path.host, timeout);
      if (udp_answer) p.system_addresses = *udp_answer;
      detail = "resolver " + *options.dns_server + ": " +
               (udp_answer ? join(p.system_addresses) : udp_answer.error().message());
    } else {
      auto [ec, found] = co_await resolve_system(path.host, path.port, timeout);
      for (const auto& e : found) p.system_addresses.push_back(e.address().to_string());
      detail = "system resolver: " + (ec ? describe(ec) : join(p.system_addresses));
    }
    if (options.doh_url) {
      // A named value, not a temporary in the co_await expression (GCC 12 destroys those twice).
      const DohConfig doh_config{*options.doh_url, options.doh_ca_file};
      auto doh = co_await resolve_doh(doh_config, path.host, timeout);
      if (doh) p.doh_addresses = *doh;
      detail += "; DNS-over-HTTPS: " + (doh ? join(p.doh_addresses) : doh.error().message());
    }
    if (!p.system_addresses.empty() && !p.doh_addresses.empty()) {
      const std::set<std::string> a(p.system_addresses.begin(), p.system_addresses.end());
      const bool overlap = std::any_of(p.doh_addresses.begin(), p.doh_addresses.end(),
                                       [&a](const std::string& x) { return a.count(x) != 0; });
      const bool bogus = std::any_of(p.system_addresses.begin(), p.system_addresses.end(), is_bogon) &&
                         std::none_of(p.doh_addresses.begin(), p.doh_addresses.end(), is_bogon);
      forged = !overlap || bogus;
    }
    // The addresses to go on with: DNS-over-HTTPS when the plain answer looks forged.
    const auto& use = (forged || p.system_addresses.empty()) ? p.doh_addresses : p.system_addresses;
    for (const auto& text : use) {
      error_code ec;
      const auto a = asio::ip::make_address(text, ec);
      if (!ec) endpoints.emplace_back(a, path.port);
    }
    if (forged) {
      add(p, "dns", "failed", "DNS answer looks forged: " + detail);
    } else if (endpoints.empty()) {
      add(p, "dns", "failed", "no address: " + detail);
      p.verdict = "the name does not resolve: " + detail;
      co_return p;
    } else {
      add(p, "dns", "ok", detail);
    }
  }

  // 2.-3. TCP and TLS (the pin).
  auto conn = co_await connect(endpoints.front(), path, *ctx, timeout);
  const std::string where = endpoints.front().address().to_string() + ":" + std::to_string(path.port);
  if (conn.tcp_error) {
    add(p, "tcp", "failed", "connecting to " + where + ": " + describe(conn.tcp_error));
    const std::string how = describe(conn.tcp_error);
    p.verdict = how == "refused" ? "connection refused at " + where + ": the server is down or the port is closed"
                : how == "timed out" ? "no answer to the TCP connection to " + where +
                                           ": the address or the port is blocked (or the host is down)"
                                     : "cannot connect to " + where + ": " + how;
    if (forged) p.verdict = "DNS answer looks forged; and " + p.verdict;
    co_return p;
  }
  add(p, "tcp", "ok", "connected to " + where, conn.tcp_ms);
  if (conn.tls_error) {
    const std::string how = describe(conn.tls_error);
    add(p, "tls", "failed", "TLS handshake: " + how);
    p.verdict = how == "reset"       ? "connection reset after the ClientHello: server-name filtering likely"
                : how == "timed out" ? "the ClientHello got no answer: TLS or server-name filtering likely"
                : how == "closed"    ? "connection closed after the ClientHello: filtering likely"
                                     : "the TLS handshake failed: " + how;
    co_return p;
  }
  if (!conn.pin_ok) {
    add(p, "tls", "failed", conn.tls_version + ", but the certificate's key is not the one in the link");
    p.verdict = "the certificate is not the server's: the connection is intercepted (or the link is outdated)";
    co_return p;
  }
  add(p, "tls", "ok", conn.tls_version + ", certificate key matches the link", conn.tls_ms);

  // 4. The camouflage site on that connection.
  {
    const std::string get = "GET / HTTP/1.1\r\nHost: " + host_header(path) + "\r\nConnection: close\r\n\r\n";
    beast::get_lowest_layer(*conn.tls).expires_after(timeout);
    auto [wec, wn] = co_await asio::async_write(*conn.tls, asio::buffer(get), kTuple);
    (void)wn;
    // (No co_await inside ?: — GCC 12 destroys such temporaries twice.)
    std::optional<std::pair<transport::upgrade::ResponseHead, std::string>> response;
    if (!wec) response = co_await read_response(*conn.tls);
    if (response) {
      add(p, "site", "ok", "the web site answers " + std::to_string(response->first.status));
    } else {
      add(p, "site", "failed", "no answer to GET /");
    }
  }

  // 5.-6. The inner channel and an echo through it.
  if (!path.server_key || !path.front_secret) {
    add(p, "inner", "skipped", "the link has no key= and secret= (a server without the front)");
    p.verdict = "reachable; the link has no inner-channel key";
    p.works = true;
    co_return p;
  }
  auto auth = transport::FrontAuthenticator::create(ByteView(*path.front_secret));
  if (!auth) co_return p;
  auto second = co_await connect(endpoints.front(), path, *ctx, timeout);
  if (!second.tls || !second.pin_ok) {
    add(p, "inner", "failed", "a second connection failed");
    p.verdict = "the connection is unstable: the first worked, a second did not";
    co_return p;
  }
  transport::net::InnerClientOptions io;
  io.host_header = host_header(path);
  io.auth = &*auth;
  io.server_key = *path.server_key;
  io.timeout = timeout;
  transport::net::InnerClientReport report;
  auto start = Clock::now();
  auto inner = co_await transport::net::connect_inner(std::move(*second.tls), io, &report);
  if (!inner) {
    std::string detail = inner.error().message();
    if (inner.error() == transport::Errc::bad_token) {
      detail = "the front answered " + std::to_string(report.http_status) + " instead of opening the channel";
      if (report.server_date) {
        const auto skew = *report.server_date - std::chrono::duration_cast<std::chrono::seconds>(
                                                    std::chrono::system_clock::now().time_since_epoch())
                                                    .count();
        detail += " (the server's clock differs from ours by " + std::to_string(skew) + " s)";
      }
      p.verdict = "the server did not accept the link's secret: the link is outdated, or the clocks differ by "
                  "more than two minutes";
    } else if (inner.error() == transport::Errc::handshake_failed) {
      p.verdict = "the inner channel failed: the server's key is not the one in the link";
    } else {
      p.verdict = "the inner channel failed: " + detail;
    }
    add(p, "inner", "failed", detail);
    co_return p;
  }
  add(p, "inner", "ok", "front token accepted, Noise handshake with the server's key done", ms_since(start));
  const std::string ping = "GET /v1/ping HTTP/1.1\r\nHost: " + host_header(path) + "\r\n\r\n";
  start = Clock::now();
  beast::get_lowest_layer(*inner).expires_after(timeout);
  auto [wec, wn] = co_await asio::async_write(*inner, asio::buffer(ping), kTuple);
  (void)wn;
  std::optional<std::pair<transport::upgrade::ResponseHead, std::string>> pong;
  if (!wec) pong = co_await read_response(*inner);
  const std::int64_t rtt = ms_since(start);
  if (!pong || pong->first.status != 200) {
    add(p, "echo", "failed", pong ? "the server answered " + std::to_string(pong->first.status) : "no answer");
    p.verdict = "the inner channel opened but requests get no answer";
    co_return p;
  }
  std::string clock_note;
  const auto j = nlohmann::json::parse(pong->second, nullptr, false);
  if (j.is_object() && j.contains("time_ms") && j["time_ms"].is_number_integer()) {
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    clock_note = "; clocks differ by " + std::to_string((j["time_ms"].get<std::int64_t>() - now_ms) / 1000) + " s";
  }
  add(p, "echo", "ok", "GET /v1/ping answered through the inner channel" + clock_note, rtt);
  p.works = true;
  p.verdict = forged ? "works with DNS-over-HTTPS (the plain DNS answer looks forged)" : "works";
  co_return p;
}

}  // namespace

DoctorReport run_doctor(const Invite& invite, const std::vector<Invite>& relays, const DoctorOptions& options) {
  DoctorReport report;
  asio::io_context io;
  std::vector<std::pair<const Invite*, std::string>> paths;
  paths.emplace_back(&invite, invite.relay ? "relay " + host_header(invite) : "direct");
  for (const auto& r : relays) paths.emplace_back(&r, "relay " + host_header(r));
  for (const auto& [path, label] : paths) {
    std::optional<DoctorPath> result;
    asio::co_spawn(io, check_path(*path, label, options), [&result](std::exception_ptr e, DoctorPath p) {
      if (!e) result = std::move(p);
    });
    io.restart();
    io.run();
    if (!result) {
      result.emplace();
      result->label = label;
      result->verdict = "the check itself failed";
    }
    report.paths.push_back(std::move(*result));
  }
  const DoctorPath& first = report.paths.front();
  const auto working = std::find_if(report.paths.begin(), report.paths.end(), [](const DoctorPath& p) { return p.works; });
  if (first.works) {
    report.verdict = first.label + " path " + first.verdict;
  } else if (working != report.paths.end()) {
    const bool blocked = first.verdict.find("blocked") != std::string::npos ||
                         first.verdict.find("no answer to the TCP") != std::string::npos;
    report.verdict = (blocked ? std::string("server address blocked") : first.label + ": " + first.verdict) + "; " +
                     working->label + " works";
  } else {
    report.verdict = "no path works; " + first.label + ": " + first.verdict;
  }
  return report;
}

}  // namespace postern::client::net
