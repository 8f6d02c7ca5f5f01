// The HTTP side of attachments (TUS 1.0 uploads, Range downloads): streams request and response
// bodies between the TLS stream and the files of AttachmentService, never holding a whole body in
// memory. Called by the HTTP session (http_server.cpp) for every request whose path starts with
// /v1/attachments, after the header has been read. Private to src/postern/server.
#pragma once

#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/server/detail/http_types.h"
#include "postern/server/metrics.h"

namespace postern::server {
class AttachmentService;
}

namespace postern::server::detail {

struct AttachmentHttpContext {
  Api& api;                        // authenticate_bearer
  AttachmentService& attachments;  // the Boost-free service (attachments.h)
  asio::thread_pool& workers;      // blocking work (store, fsync)
  const HttpLimits& limits;
  ServerMetrics& metrics;
};

// Serves the request whose header is in `parser`; its body, if any, is still unread (in `buffer`
// and the stream). Writes the complete response. Returns whether the connection can be kept
// alive for another request (false after an error that leaves the body unread, or when the
// client asked to close).
asio::awaitable<bool> serve_attachment_request(AttachmentHttpContext& ctx, Stream& stream, beast::flat_buffer& buffer,
                                               HeaderParser& parser, const std::string& client_address);

}  // namespace postern::server::detail
