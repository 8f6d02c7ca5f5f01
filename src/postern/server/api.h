// The HTTPS JSON API of postern-server, independent of the transport: the HTTP layer
// (http_server.h) turns a parsed request into an ApiRequest, runs Api::handle on a worker thread
// (Argon2id and SQLite block), and writes the ApiResponse back. Keeping Boost out of this file
// keeps it cheap to compile and lets tests and fuzz targets drive it without a socket.
//
// Every answer is JSON; every error is {"error": {"code": "...", "message": "..."}} (plus "fields"
// for invalid_fields). The endpoints and all their errors are listed in docs/protocol.md.
//
// Thread safety: handle() may run on several threads at once. The store (one SQLite connection)
// is used under store_mutex_, held only for the duration of one store call, never while hashing
// a password; the rate limiters and the proof of work are thread-safe on their own.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/account/proof_of_work.h"
#include "postern/account/rate_limit.h"
#include "postern/crypto/random.h"
#include "postern/server/config.h"
#include "postern/server/group_committer.h"
#include "postern/store/server_store.h"
#include "postern/util/clock.h"

namespace postern::server {

struct ApiRequest {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path and optional query
  std::string_view authorization;
  std::string_view body;
  std::string client_address;  // the peer's IP address, the key of per-address rate limits
};

struct ApiResponse {
  unsigned status = 200;
  std::string body;  // JSON, or empty (204)
  std::vector<std::pair<std::string, std::string>> headers;
};

// {"error": {"code": code, "message": message}} with the status.
ApiResponse error_response(unsigned status, std::string_view code, std::string_view message);

// Told of every envelope that became durable in a recipient device's queue (not of duplicates of
// a retried send). The WebSocket delivery layer registers one to push the envelope at once to the
// device if it is connected; until such a layer exists no observer is registered, and offline
// delivery through GET /v1/messages is the only path. Called on the thread of the send request,
// after the store commit and before the sender gets its answer; it must not block (hand the work
// to the transport's own executor) and must not throw.
class DeliveryNotifier {
 public:
  virtual ~DeliveryNotifier() = default;
  virtual void on_enqueued(std::int64_t account_id, std::uint32_t device_id, std::int64_t server_id) noexcept = 0;
};

class Api {
 public:
  // `pow_secret`: the server secret of the proof of work (kept in the data directory).
  Api(store::ServerStore& store, const ServerConfig& config, ByteView pow_secret, const Clock& clock,
      crypto::Rng& rng);
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  ApiResponse handle(const ApiRequest& request);

  // The route name for logs: the path with ids replaced ("/v1/devices/{id}"), or "other".
  static std::string_view route_name(std::string_view target);
  // Whether the request is a message send, whose body may be up to HttpLimits::message_body_bytes
  // (every other request's body is limited to HttpLimits::body_bytes).
  static bool is_message_send(std::string_view method, std::string_view target);

  // Registers an observer of durable enqueues (see DeliveryNotifier). Call before requests are
  // served (the list is read without a lock); the observer must outlive the Api.
  void add_delivery_notifier(DeliveryNotifier& notifier) { notifiers_.push_back(&notifier); }
  GroupCommitter::Stats group_commit_stats() const { return committer_->stats(); }

 private:
  class StoreUsedChallenges;

  ApiResponse post_challenge(const ApiRequest& request);
  ApiResponse post_account(const ApiRequest& request);
  ApiResponse post_session(const ApiRequest& request);
  ApiResponse delete_current_session(const ApiRequest& request);
  ApiResponse get_devices(const ApiRequest& request);
  ApiResponse delete_device(const ApiRequest& request, std::string_view id);
  ApiResponse put_keys(const ApiRequest& request);
  ApiResponse get_key_count(const ApiRequest& request);
  ApiResponse get_keys(const ApiRequest& request, std::string_view account_id);
  ApiResponse get_directory(const ApiRequest& request);
  ApiResponse put_password(const ApiRequest& request);
  ApiResponse delete_account(const ApiRequest& request);
  ApiResponse put_messages(const ApiRequest& request, std::string_view account_id);
  ApiResponse get_messages(const ApiRequest& request);
  ApiResponse delete_message(const ApiRequest& request, std::string_view server_id);
  ApiResponse post_message_acks(const ApiRequest& request);
  // Purges expired envelopes when the last purge is purge_interval_ms old (or `force`).
  void purge_expired(std::int64_t now_ms, bool force);
  // Checks the account's password for a request that changes the account (rate limited like a
  // login of that account); nullopt when it is right, else the error to answer.
  std::optional<ApiResponse> check_account_password(std::int64_t account_id, const std::string& password);

  // Runs f(store_) under the store lock.
  template <class F>
  auto with_store(F&& f) {
    std::lock_guard lock(store_mutex_);
    return std::forward<F>(f)(store_);
  }

  store::ServerStore& store_;
  std::mutex store_mutex_;
  const ServerConfig& config_;
  const Clock& clock_;
  crypto::Rng& rng_;
  account::ProofOfWork pow_;
  std::unique_ptr<StoreUsedChallenges> used_challenges_;
  account::RateLimiter challenges_per_address_;
  account::RateLimiter registrations_per_address_;
  account::RateLimiter logins_per_account_;
  account::RateLimiter logins_per_address_;
  account::RateLimiter directory_per_account_;
  account::RateLimiter key_fetch_per_account_;
  account::RateLimiter sends_per_account_;
  std::vector<DeliveryNotifier*> notifiers_;
  std::atomic<std::int64_t> last_purge_ms_{0};
  std::string dummy_hash_;  // verified when the e-mail is unknown, so both paths cost one Argon2id
  // Last member: destroyed first, so its thread stops while everything it uses still exists.
  std::unique_ptr<GroupCommitter> committer_;
};

}  // namespace postern::server
