// Delivery over WebSocket (GET /v1/websocket): the connected devices of this server and the
// pushing of envelopes to them. docs/protocol.md ("Delivery WebSocket") describes the frames.
//
// One connection per device: a newer connection of the same device replaces the older (closed
// with code 4000), as Signal does, so a client that moves to another network path takes its
// deliveries with it. On connect the device's queue is sent in order from the store, then a
// QueueEmpty frame; after that, envelopes are pushed as soon as they are durable
// (DeliveryNotifier::on_enqueued, on the group committer's thread, in commit order). Each
// connection keeps the highest server id it has sent, so the hand-over from "sending from the
// store" to "pushing live" neither skips nor repeats an envelope; a connection whose outgoing
// queue is full (a slow reader) stops taking live pushes and reads from the store again once it
// has caught up. Nothing is lost either way: an envelope leaves the store only when the device
// acknowledges it.
//
// Concurrency: each connection lives on its own strand; the registry of connections is guarded
// by a mutex that is never held across a co_await or while calling out. Blocking work (store
// reads, the checks of a send) runs on the worker pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/message.hpp>

#include "postern/server/api.h"
#include "postern/server/config.h"
#include "postern/server/detail/http_types.h"

namespace postern::server {

class DeliveryHub final : public DeliveryNotifier {
 public:
  // Registers itself with the Api as a delivery observer.
  DeliveryHub(boost::asio::thread_pool& workers, Api& api, const ServerConfig& config);
  ~DeliveryHub() override;
  DeliveryHub(const DeliveryHub&) = delete;
  DeliveryHub& operator=(const DeliveryHub&) = delete;

  // Authenticates the upgrade request (Authorization: Bearer), accepts the WebSocket and serves
  // it until it closes. Answers 401 (no upgrade) to a missing or unknown token and 503 while
  // shutting down. Runs on the connection's strand (the HTTP session's coroutine).
  boost::asio::awaitable<void> serve(detail::Stream stream, detail::beast::flat_buffer buffer,
                                     detail::http::request<detail::http::empty_body> upgrade,
                                     std::string client_address);

  // Closes every connection with 1001 (going away) and refuses new ones. Any thread.
  void shutdown();

  void on_enqueued(const store::Envelope& envelope, std::int64_t server_id) noexcept override;
  void on_device_removed(std::int64_t account_id, std::uint32_t device_id) noexcept override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace postern::server
