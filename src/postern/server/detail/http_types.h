// Types and helpers shared by the Boost.Beast parts of the server (http_server.cpp,
// ws_session.cpp, attachment_http.cpp). Private to src/postern/server.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "postern/transport/net/any_stream.h"
#include "postern/transport/net/tls_stream.h"

namespace postern::server::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// Our own TLS stream over OpenSSL (transport/net/tls_stream.h), not beast::ssl_stream: Asio's SSL stream
// keeps four 17 KiB buffers per connection, about 68 KiB for every idle WebSocket.
using TlsStream = transport::net::TlsStream;
// Every session runs over AnyStream: TLS straight to the client, or the inner channel.
using Stream = transport::net::AnyStream;
// A request whose header has been read and whose body (if any) has not: the session reads the
// header with this parser, then hands it (converted to the body type it needs) to the handler.
using HeaderParser = http::request_parser<http::empty_body>;

// Runs f() on the worker pool and resumes the awaiting coroutine on its own executor (its
// strand) with the result. The work guard keeps the io_context running meanwhile.
template <class F>
auto run_on(asio::thread_pool& pool, F f) {
  using R = std::invoke_result_t<F&>;
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(R)>(
      [&pool](auto handler, F fn) {
        auto ex = asio::get_associated_executor(handler);
        auto work = asio::make_work_guard(ex);
        asio::post(pool, [handler = std::move(handler), fn = std::move(fn), work = std::move(work)]() mutable {
          R result = fn();
          auto target = work.get_executor();
          asio::post(target, [handler = std::move(handler), result = std::move(result)]() mutable {
            std::move(handler)(std::move(result));
          });
        });
      },
      asio::use_awaitable, std::move(f));
}

}  // namespace postern::server::detail
