// Several paths to one server behind one ServerLink (docs/paths.md).
//
// A path is a ServerLink to the same server by another way: direct (the invite's address), or
// through a relay the user added (`postern relays add`), each optionally through a proxy. The
// MultiPathLink keeps them in order and:
// - starts on the path that worked last (and, across runs, on `MultiPathOptions::preferred`);
// - backs off from a path that failed (2 s, doubling, capped at 5 min) and tries it only after the
//   others, or when every path is backing off;
// - races: it starts the first candidate's connection and, when that has not connected within
//   `race_delay` (1 s), also starts the next one, and so on; the first that connects is used and
//   the others are dropped (a losing delivery socket is closed; a losing HTTP connection waits
//   unused in its path's pool until it expires), and those still connecting are cancelled
//   (CancelToken, server_link.h): their connections are closed at once, and, as they did not
//   fail, their paths are not marked. Nothing outlives the link: its destructor cancels the
//   attempts still running and joins their threads (no detached thread, no wait for a timeout);
// - moves on to the next path when a request fails in transport (the connection could not be
//   made, or no answer came: Errc::unreachable, timeout or pin_mismatch), and when the delivery
//   socket dies without a close code from the server (a black-holed path: HttpsLink's keep-alive
//   pings notice it within HttpsLinkOptions::delivery_idle_timeout). The delivery socket it hands
//   out reopens itself through the next path then; the server redelivers what was not
//   acknowledged, and the messenger recognises envelopes it already stored by their server ids.
//
// Requests are retried on another path only when they can be repeated: a request whose body is
// streamed from a body_source is not (the caller resumes it, as TUS uploads do). Messages are safe
// to repeat: the server stores a retried envelope once (same client_id).
//
// This header includes no Boost.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "postern/client/invite.h"
#include "postern/client/net/https_link.h"
#include "postern/client/server_link.h"

namespace postern::client::net {

// Reads socks5://[user:pass@]HOST:PORT or http://[user:pass@]HOST:PORT (user and password may be
// %-encoded; an IPv6 address in brackets; a trailing "/" allowed, nothing else after the port).
// Errc::invalid_argument; explain_proxy_url_error() says what is wrong, without echoing the
// password.
Result<ProxyConfig> parse_proxy_url(std::string_view text);
std::string explain_proxy_url_error(std::string_view text);

struct MultiPathOptions {
  // Start the next path's connection when the current candidate has not connected by then.
  std::chrono::milliseconds race_delay{1'000};
  // Backoff after a failure: first wait, doubled per further failure, at most this much.
  std::chrono::milliseconds backoff_initial{2'000};
  std::chrono::milliseconds backoff_max{300'000};
  // The key (Path::key) of the path that worked last in an earlier run: tried first.
  std::optional<std::string> preferred;
  // Called (from any thread) when a path worked after another had been used or had failed, with
  // its key; the CLI stores it so that the next run starts there.
  std::function<void(const std::string& key)> on_switch;
};

class MultiPathLink final : public ServerLink {
 public:
  struct Path {
    std::string key;                   // "direct HOST:PORT" or "relay HOST:PORT" (no secrets)
    std::shared_ptr<ServerLink> link;  // the path
    // Opens a connection (HttpsLink::prepare), stopped by the token when another path has won;
    // may be empty.
    std::function<Status(CancelToken& cancel)> probe;
  };

  MultiPathLink(std::vector<Path> paths, MultiPathOptions options = {});
  ~MultiPathLink() override;
  MultiPathLink(const MultiPathLink&) = delete;
  MultiPathLink& operator=(const MultiPathLink&) = delete;

  // request.cancel, when set, also stops the race of the paths' probes.
  Result<HttpResponse> send(const HttpRequest& request) override;
  Result<std::unique_ptr<DeliverySocket>> open_delivery(std::string_view bearer) override;
  Result<std::unique_ptr<DeliverySocket>> open_delivery_cancellable(std::string_view bearer,
                                                                    CancelToken& cancel) override;
  // "relay 203.0.113.5:443 (2 paths)": the path in use (or to be tried first).
  std::string describe() const override;

  // The key of the path in use (or to be tried first).
  std::string current_key() const;
  // The keys of all paths in the order the next connection tries them: the current path unless it
  // is backing off, the others in list order, then those backing off (for diagnostics and tests).
  std::vector<std::string> candidate_keys() const;

  struct Shared;  // path_link.cpp

 private:
  std::shared_ptr<Shared> shared_;
};

// The paths of a profile: direct to `server` first, then each relay, all with `options` (proxy,
// timeouts). Relays must be relay links (Invite::relay) naming the server's key.
std::unique_ptr<MultiPathLink> make_multi_path_link(const Invite& server, const std::vector<Invite>& relays,
                                                    const HttpsLinkOptions& options,
                                                    MultiPathOptions multi = {});

// "HOST:PORT" of an invite, an IPv6 address in brackets (how relays are named on the CLI).
std::string host_port(const Invite& invite);

}  // namespace postern::client::net
