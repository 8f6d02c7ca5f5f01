// The front: what runs on every connection to a Postern server's or relay's TLS port before
// anything of Postern is revealed (docs/transport.md, docs/threat-model.md).
//
// It behaves as stock nginx 1.22 serving the camouflage site does (transport/site.h has the
// what, this file the when): it peeks at the first byte and either reads plain HTTP (answered
// 400 "plain HTTP request sent to HTTPS port") or runs the TLS handshake with the operator's
// certificate; then it reads request heads with nginx's limits and timeouts and answers them
// from the site, with nginx's keep-alive and close behaviour. Only a first request on a TLS
// connection that is a WebSocket upgrade carrying a valid, fresh, unused front token
// (transport/front_auth.h) leaves the front: the caller gets the TLS stream and runs the inner
// channel (the server) or forwards it upstream (a relay). A token that fails in any way
// (altered, expired, replayed) is just a request for a path the site does not have.
//
// With `open_api` (tests, benchmarks, a server behind its own trusted TLS terminator), a first
// request whose path starts with /v1/ is also handed over, with its bytes unconsumed, to the
// plain HTTPS API of issue 3.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "postern/transport/cover_origin.h"
#include "postern/transport/front_auth.h"
#include "postern/transport/net/tls_stream.h"
#include "postern/transport/site.h"
#include "postern/util/bytes.h"

namespace postern::transport::net {

struct FrontCounters {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  std::atomic<std::uint64_t> plain_http{0};
  std::atomic<std::uint64_t> site_requests{0};
  std::atomic<std::uint64_t> tunnels{0};
  std::atomic<std::uint64_t> tokens_refused{0};   // looked like a tunnel request, token invalid or expired
  std::atomic<std::uint64_t> tokens_replayed{0};  // valid token seen before
  std::atomic<std::uint64_t> open_api{0};
};

// The site as a reverse proxy to a real web site (`--cover-origin URL`; transport/cover_origin.h).
struct CoverOrigin {
  cover::OriginUrl url;
  cover::ProxyLimits limits;
  // https origins: the system's trusted CAs, the origin's name checked against its certificate
  // and sent as SNI (nginx would need proxy_ssl_verify and proxy_ssl_server_name for that).
  std::shared_ptr<boost::asio::ssl::context> tls;
};
// Errc::bad_config for a URL parse_origin_url refuses or a TLS context that cannot be built.
Result<CoverOrigin> make_cover_origin(std::string_view url);

struct FrontSettings {
  const site::Site* site = nullptr;              // required (its limits and error pages serve a cover origin too)
  const CoverOrigin* origin = nullptr;           // set: requests go to the cover origin instead of the site's files
  const FrontAuthenticator* auth = nullptr;      // null: no tunnels (a pure web site)
  ReplayFilter* replay = nullptr;                // required with auth
  std::int64_t window_seconds = 120;             // token timestamps accepted within now +- this
  bool open_api = false;
  FrontCounters* counters = nullptr;             // optional
};

struct FrontResult {
  enum class Kind : std::uint8_t { done, tunnel, open_api };
  Kind kind = Kind::done;
  std::optional<TlsStream> tls;  // tunnel, open_api
  // tunnel: the bytes after the upgrade request's head; open_api: everything read so far, the
  // first request's head included.
  Bytes leftover;
  std::string websocket_key;  // tunnel: the request's Sec-WebSocket-Key
};

// Runs the front on an accepted connection until it is closed (Kind::done) or handed over.
boost::asio::awaitable<FrontResult> run_front(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& tls,
                                              const FrontSettings& settings);

// A TLS server context configured as Debian's nginx 1.22 with OpenSSL 3 is by default
// (protocols TLS 1.2 and 1.3 as the system's OpenSSL policy allows, ciphers "HIGH:!aNULL:!MD5",
// the client's cipher order, session tickets, ALPN "http/1.1" when offered), with this PEM
// certificate chain and key. Errc::bad_config when they do not load or do not match.
Result<std::shared_ptr<boost::asio::ssl::context>> make_front_tls_context(const std::string& cert_file,
                                                                          const std::string& key_file);

}  // namespace postern::transport::net
