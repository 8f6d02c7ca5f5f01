// See doh.h. The request goes on a fresh TLS connection verified against the system's CAs (or
// the given one), with the DoH server's name checked: the answer must not be forgeable on path.
#include "postern/client/net/doh.h"

#include <array>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <openssl/ssl.h>

#include "postern/transport/dns_message.h"
#include "postern/transport/errors.h"
#include "postern/transport/net/tls_client.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/upgrade.h"

namespace postern::client::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using asio::ip::tcp;
using error_code = boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct Url {
  std::string host;
  std::uint16_t port = 443;
  std::string path = "/";
};

std::optional<Url> parse_https_url(std::string_view text) {
  if (!text.starts_with("https://")) return std::nullopt;
  text.remove_prefix(8);
  Url url;
  const auto slash = text.find('/');
  std::string_view authority = text.substr(0, slash);
  if (slash != std::string_view::npos) url.path = std::string(text.substr(slash));
  const auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    int port = 0;
    for (char c : authority.substr(colon + 1)) {
      if (c < '0' || c > '9') return std::nullopt;
      port = port * 10 + (c - '0');
      if (port > 65535) return std::nullopt;
    }
    if (port == 0) return std::nullopt;
    url.port = static_cast<std::uint16_t>(port);
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return std::nullopt;
  url.host = std::string(authority);
  return url;
}

// An HTTPS request on a fresh connection (for DNS-over-HTTPS): returns the body of a 200.
awaitable<Result<Bytes>> https_post(const Url& url, const std::string& content_type, const Bytes& body,
                                    asio::ssl::context& ctx, std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  auto [rec, endpoints] = co_await resolve_system(url.host, url.port, timeout);
  if (rec || endpoints.empty()) co_return transport::Errc::unreachable;
  beast::tcp_stream socket(ex);
  socket.expires_after(timeout);
  auto [cec, ep] = co_await socket.async_connect(endpoints, kTuple);
  (void)ep;
  if (cec) co_return transport::Errc::unreachable;
  transport::net::TlsStream tls(socket.release_socket(), ctx, asio::ssl::stream_base::client);
  if (!transport::net::set_server_name(tls.native_handle(), url.host)) co_return transport::Errc::unreachable;
  SSL_set1_host(tls.native_handle(), url.host.c_str());
  beast::get_lowest_layer(tls).expires_after(timeout);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) co_return transport::Errc::unreachable;
  std::string request = "POST " + url.path + " HTTP/1.1\r\nHost: " + url.host + "\r\nContent-Type: " + content_type +
                        "\r\nAccept: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\nConnection: close\r\n\r\n";
  request.append(body.begin(), body.end());
  auto [wec, wn] = co_await asio::async_write(tls, asio::buffer(request), kTuple);
  (void)wn;
  if (wec) co_return transport::Errc::unreachable;
  Bytes in;
  std::array<std::uint8_t, 4096> chunk{};
  for (;;) {
    auto [ec, n] = co_await tls.async_read_some(asio::buffer(chunk), kTuple);
    in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
    if (ec || in.size() > 70'000) break;
  }
  auto head = transport::upgrade::parse_response_head(in);
  if (!head || !*head || (*head)->status != 200) co_return transport::Errc::bad_dns_message;
  co_return Bytes(in.begin() + static_cast<std::ptrdiff_t>((*head)->head_size), in.end());
}

}  // namespace

bool valid_doh_url(std::string_view url) { return parse_https_url(url).has_value(); }

awaitable<Result<std::vector<std::string>>> resolve_doh(DohConfig config, std::string name,
                                                        std::chrono::milliseconds timeout) {
  const auto url = parse_https_url(config.url);
  if (!url) co_return transport::Errc::bad_config;
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  if (config.ca_file) {
    if (SSL_CTX_load_verify_locations(ctx->native_handle(), config.ca_file->c_str(), nullptr) != 1) {
      co_return transport::Errc::bad_config;
    }
  } else {
    SSL_CTX_set_default_verify_paths(ctx->native_handle());
  }
  SSL_CTX_set_verify(ctx->native_handle(), SSL_VERIFY_PEER, nullptr);
  // RFC 8484: id 0; EDNS padding to 128-byte blocks (RFC 8467) hides the name's length.
  auto query = transport::dns::build_query(0, name, transport::dns::kTypeA, 128);
  if (!query) co_return query.error();
  auto body = co_await https_post(*url, "application/dns-message", *query, *ctx, timeout);
  if (!body) co_return body.error();
  auto parsed = transport::dns::parse_response(*body, 0, name, transport::dns::kTypeA);
  if (!parsed) co_return parsed.error();
  co_return parsed->addresses;
}


awaitable<std::pair<error_code, std::vector<tcp::endpoint>>> resolve_system(std::string host, std::uint16_t port,
                                                                              std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  asio::steady_timer guard(ex);
  guard.expires_after(timeout);
  guard.async_wait([&resolver](const error_code& ec) {
    if (!ec) resolver.cancel();
  });
  auto [ec, results] = co_await resolver.async_resolve(host, std::to_string(port), kTuple);
  guard.cancel();
  std::vector<tcp::endpoint> out;
  if (!ec) {
    for (const auto& r : results) {
      if (r.endpoint().address().is_v4()) out.push_back(r.endpoint());  // A records, as the others
    }
  }
  co_return std::pair{ec, out};
}

}  // namespace postern::client::net
