// Binding a listening socket, shared by the TLS listener and the admin listener. Private to
// src/postern/server.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include "postern/server/config.h"
#include "postern/util/result.h"

namespace postern::server::detail {

// Opens, binds (SO_REUSEADDR) and listens on `at` (a numeric IP, or "localhost"); returns the
// bound address with the real port when `at.port` is 0. Errors: Errc::bad_address, or the
// system's error.
Result<HostPort> open_listener(boost::asio::ip::tcp::acceptor& acceptor, const HostPort& at);

}  // namespace postern::server::detail
