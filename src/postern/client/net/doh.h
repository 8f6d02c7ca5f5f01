// DNS-over-HTTPS (RFC 8484) for the client: a name resolved through an HTTPS server the censor
// cannot forge answers of (an injector on the path forges plain UDP answers, facts item 1). One A
// query per call, POSTed as application/dns-message with EDNS padding to 128 bytes (RFC 8467).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "postern/client/net/doh_config.h"
#include "postern/util/result.h"

namespace postern::client::net {

// The A records of `name`. Arguments are taken by value: the coroutine outlives the caller's
// temporaries. Errors: transport::Errc::bad_config (URL, CA file), unreachable (the
// DoH server), bad_dns_message (its answer).
boost::asio::awaitable<Result<std::vector<std::string>>> resolve_doh(DohConfig config, std::string name,
                                                                     std::chrono::milliseconds timeout);

// The system resolver's IPv4 answers for host:port (A records, as the DoH query asks), given up
// after `timeout` (the error is then operation_aborted). Shared by the DoH client and doctor.
boost::asio::awaitable<std::pair<boost::system::error_code, std::vector<boost::asio::ip::tcp::endpoint>>>
resolve_system(std::string host, std::uint16_t port, std::chrono::milliseconds timeout);

}  // namespace postern::client::net
