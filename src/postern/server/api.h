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
#include <condition_variable>
#include <functional>
#include <span>
#include <thread>
#include <unordered_map>
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
#include "postern/server/metrics.h"
#include "postern/account/signup.h"
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
// a retried send), and of devices that lost their right to connect. The WebSocket delivery layer
// registers one to push the envelope at once to the device if it is connected (offline devices
// get it from the queue when they connect). on_enqueued runs on the group committer's thread, in
// commit order, after the commit and before the sender gets its answer; on_device_removed runs on
// the thread of the request that removed the device, logged it out or deleted the account. Both
// must not block (hand the work to the transport's own executor) and must not throw.
class DeliveryNotifier {
 public:
  virtual ~DeliveryNotifier() = default;
  virtual void on_enqueued(const store::Envelope& envelope, std::int64_t server_id) noexcept = 0;
  // device_id 0: every device of the account.
  virtual void on_device_removed(std::int64_t account_id, std::uint32_t device_id) noexcept = 0;
};

// One envelope of a send, as the client gave it (before the server adds sender and expiry).
struct OutgoingEnvelope {
  std::uint32_t device_id = 0;
  std::uint32_t registration_id = 0;  // 0: not checked
  std::int32_t type = 0;
  Bytes content;
  Bytes client_id;
  std::int64_t timestamp_ms = 0;
};

// The result of a send, whatever the transport: status 200 with one result per envelope (in the
// request's order), or the HTTP status and error code of the failure with its details.
struct SendOutcome {
  unsigned status = 200;
  std::string code;  // error code ("device_mismatch", ...), empty on success
  std::string message;
  std::vector<std::uint32_t> devices;     // on success: the device of each result
  std::vector<store::Enqueued> results;   // on success
  std::vector<std::uint32_t> missing;     // 409
  std::vector<std::uint32_t> extra;       // 409
  std::vector<std::uint32_t> stale;       // 410
  std::vector<account::FieldError> field_errors;  // 400 invalid_fields
  std::int64_t retry_after_ms = 0;        // 429
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

  // The owner of a bearer token ("Bearer <token>"), or nullopt when it is missing or unknown;
  // `failure` is set when the store failed (then nullopt too). Blocks on the store.
  std::optional<store::TokenOwner> authenticate_bearer(std::string_view authorization, std::error_code& failure);

  // Sends one envelope per recipient device, as PUT /v1/messages/{recipient} does (the same
  // checks, limits and errors). Validation, the rate limit and the device check run on the
  // calling thread (they block on the store); on success the envelopes go to the group commit and
  // `done` runs on the committer thread once they are durable; on a failure `done` runs at once,
  // on the calling thread. `done` must not block.
  void send_async(const store::TokenOwner& sender, std::int64_t recipient, std::vector<OutgoingEnvelope> envelopes,
                  std::function<void(SendOutcome)> done);
  // send_async when it needs nothing from the store (the recipient's devices are cached): then it
  // does not block and may run on a network thread. Returns false, having done nothing, when it
  // would have to read the store (the caller then runs send_async on a worker).
  bool try_send_without_blocking(const store::TokenOwner& sender, std::int64_t recipient,
                                 std::vector<OutgoingEnvelope>& envelopes, std::function<void(SendOutcome)>& done);
  // Up to `limit` queued envelopes of the device after `after_id` (in order). Blocks.
  Result<std::vector<store::StoredEnvelope>> fetch_queued(const store::TokenOwner& device, std::int64_t after_id,
                                                          std::size_t limit);
  // Acknowledges envelopes of the device without waiting: a writer thread deletes the
  // acknowledgements of all connections together, one transaction per round. Ids of other
  // devices' envelopes are ignored. A crash before that write only means the envelope is
  // delivered again (clients drop repeats by server id).
  void ack_async(const store::TokenOwner& device, std::span<const std::int64_t> server_ids);

  ServerMetrics& metrics() { return metrics_; }
  // Finishes the group commits and acknowledgements in progress and stops their threads, so no
  // notifier is called after it returns. Call once the transports have stopped and before the
  // notifiers are destroyed; nothing may be sent afterwards. The destructor calls it too.
  void stop();
  // Told the upload ids whose records went with a deleted account, to delete their files.
  void set_upload_files_deleter(std::function<void(const std::vector<std::string>&)> f) {
    upload_files_deleter_ = std::move(f);
  }

  // The route name for logs: the path with ids replaced ("/v1/devices/{id}"), or "other".
  static std::string_view route_name(std::string_view target);
  // Whether the request is a message send, whose body may be up to HttpLimits::message_body_bytes
  // (every other request's body is limited to HttpLimits::body_bytes).
  static bool is_message_send(std::string_view method, std::string_view target);

  // Registers an observer of durable enqueues (see DeliveryNotifier). Call before requests are
  // served (the list is read without a lock); the observer must outlive the Api.
  void add_delivery_notifier(DeliveryNotifier& notifier) { notifiers_.push_back(&notifier); }
  GroupCommitter::Stats group_commit_stats() const { return committer_ ? committer_->stats() : GroupCommitter::Stats{}; }

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
  // Linked devices (docs/protocol.md): /v1/devices/links and /v1/devices/links/{id}[/...].
  ApiResponse route_device_link(const ApiRequest& request, std::string_view rest);
  ApiResponse post_device_link(const ApiRequest& request);
  ApiResponse get_device_link(const ApiRequest& request, std::string_view link_id);
  ApiResponse put_device_link_request(const ApiRequest& request, std::string_view link_id);
  ApiResponse post_device_link_approval(const ApiRequest& request, std::string_view link_id);
  ApiResponse get_device_link_provision(const ApiRequest& request, std::string_view link_id);
  ApiResponse delete_device_link(const ApiRequest& request, std::string_view link_id);
  // Purges expired device links when the last purge is [devices] purge_interval_ms old.
  void purge_expired_links(std::int64_t now_ms);
  // Validation, rate limit and device check of a send; nullopt when it may go to the committer.
  // `known_devices`: the recipient's device list when the caller already has it (then the store
  // is not read, so the check never blocks).
  std::optional<SendOutcome> check_send(const store::TokenOwner& sender, std::int64_t recipient,
                                        const std::vector<OutgoingEnvelope>& envelopes,
                                        const std::vector<store::Device>* known_devices = nullptr);
  void send_checked(const store::TokenOwner& sender, std::int64_t recipient, std::vector<OutgoingEnvelope> envelopes,
                    std::function<void(SendOutcome)> done, const std::vector<store::Device>* known_devices);
  void submit_checked(const store::TokenOwner& sender, std::int64_t recipient, std::vector<OutgoingEnvelope> envelopes,
                      std::function<void(SendOutcome)> done);
  void notify_device_removed(std::int64_t account_id, std::uint32_t device_id);
  // The device lists of recipient accounts (id and registration id only), so that a send does not
  // read them from the store each time. Filled and invalidated only under the store lock, in the
  // same critical section as the store change, so the cache never keeps a list older than the
  // store's. (Several server nodes will need an invalidation message: docs/storage.md.)
  static constexpr std::size_t kMaxCachedAccounts = 100'000;
  std::optional<std::vector<store::Device>> cached_devices(std::int64_t account_id);
  void remember_devices(std::int64_t account_id, const std::vector<store::Device>& devices);
  void forget_devices(std::int64_t account_id);
  void ack_writer_loop();
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
  account::RateLimiter links_per_account_;
  account::RateLimiter link_requests_per_address_;
  std::vector<DeliveryNotifier*> notifiers_;
  std::atomic<std::int64_t> last_purge_ms_{0};
  std::atomic<std::int64_t> last_link_purge_ms_{0};
  ServerMetrics metrics_;
  std::mutex device_cache_mutex_;
  std::unordered_map<std::int64_t, std::vector<store::Device>> device_cache_;
  std::function<void(const std::vector<std::string>&)> upload_files_deleter_;
  // Acknowledgements waiting for the ack writer thread.
  std::mutex ack_mutex_;
  std::condition_variable ack_cv_;
  std::vector<store::AckRef> pending_acks_;
  bool ack_stopping_ = false;
  std::thread ack_writer_;
  std::string dummy_hash_;  // verified when the e-mail is unknown, so both paths cost one Argon2id
  // Last member: destroyed first, so its thread stops while everything it uses still exists.
  std::unique_ptr<GroupCommitter> committer_;
};

}  // namespace postern::server
