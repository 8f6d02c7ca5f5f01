// TUS 1.0.0 (core + creation, expiration, termination) and Range downloads over Beast. The
// decisions are AttachmentService's; this file parses headers, streams bodies in 256 KiB pieces
// between the socket and the service (file work on the worker pool), and writes the answers.
// Every answer carries Tus-Resumable, Server and Cache-Control: no-store; every error is the JSON
// error of docs/protocol.md. An answer given before the request's body was read closes the
// connection after a short lingering drain (as http_server.cpp does).
#include "postern/server/detail/attachment_http.h"

#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "postern/account/rate_limit.h"
#include "postern/server/attachments.h"

namespace postern::server::detail {

namespace {

using asio::awaitable;
using asio::use_awaitable;

constexpr std::string_view kPrefix = "/v1/attachments";
constexpr std::size_t kChunkBytes = 256 * 1024;

std::string_view view(beast::string_view s) {
  return std::string_view(s.data(), s.size());
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// An IMF-fixdate (RFC 9110 5.6.7), for Upload-Expires.
std::string http_date(std::int64_t ms) {
  const time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7], tm.tm_mday,
                kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

ApiResponse from_error(const AttachmentError& e) {
  ApiResponse r = error_response(e.status, e.code, e.message);
  if (e.status == 429 && e.retry_after_ms != account::kNeverMs) {
    r.headers.emplace_back("Retry-After",
                           std::to_string(std::max<std::int64_t>(1, (e.retry_after_ms + 999) / 1000)));
  }
  return r;
}

struct AuthResult {
  std::optional<store::TokenOwner> owner;
  bool failed = false;
};

// One request: its parsed header, and the answers it may get.
class Exchange {
 public:
  Exchange(AttachmentHttpContext& ctx, Stream& stream, beast::flat_buffer& buffer, HeaderParser& parser)
      : ctx_(ctx),
        stream_(stream),
        buffer_(buffer),
        parser_(parser),
        req_(parser.get()),
        version_(req_.version()),
        keep_alive_(req_.keep_alive()),
        head_(req_.method() == http::verb::head),
        body_read_(parser.is_done()) {}

  awaitable<bool> run() {
    const std::string_view target = view(req_.target());
    const std::string_view path = target.substr(0, target.find('?'));
    const bool collection = path == kPrefix;
    if (!collection &&
        !(path.size() > kPrefix.size() && path.starts_with(kPrefix) && path[kPrefix.size()] == '/')) {
      co_return co_await answer(error_response(404, "not_found", "no such upload"));
    }
    const std::string id(collection ? std::string_view() : path.substr(kPrefix.size() + 1));
    const http::verb method = req_.method();

    const auto auth = req_.find(http::field::authorization);
    const std::string authorization(auth == req_.end() ? std::string_view() : view(auth->value()));
    const AuthResult who = co_await run_on(ctx_.workers, [this, &authorization] {
      std::error_code failure;
      AuthResult r;
      r.owner = ctx_.api.authenticate_bearer(authorization, failure);
      r.failed = static_cast<bool>(failure);
      return r;
    });
    if (who.failed) co_return co_await answer(error_response(500, "internal_error", "internal server error"));
    if (!who.owner) {
      ApiResponse r = error_response(401, "unauthorized", "a valid bearer token is required");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      co_return co_await answer(std::move(r));
    }
    const std::int64_t account = who.owner->account_id;

    if (method == http::verb::options) {
      ApiResponse r;
      r.status = 204;
      r.headers = {{"Tus-Version", "1.0.0"},
                   {"Tus-Max-Size", std::to_string(ctx_.attachments.limits().max_upload_bytes)},
                   {"Tus-Extension", "creation,expiration,termination"}};
      co_return co_await answer(std::move(r));
    }
    if (method != http::verb::get) {
      const auto tus = req_.find("Tus-Resumable");
      if (tus == req_.end() || view(tus->value()) != "1.0.0") {
        ApiResponse r = error_response(412, "unsupported_tus_version", "Tus-Resumable: 1.0.0 is required");
        r.headers.emplace_back("Tus-Version", "1.0.0");
        co_return co_await answer(std::move(r));
      }
    }
    if (collection) {
      if (method == http::verb::post) co_return co_await create(account);
      co_return co_await not_allowed("OPTIONS, POST");
    }
    if (id.empty() || id.find('/') != std::string::npos) {
      co_return co_await answer(error_response(404, "not_found", "no such upload"));
    }
    switch (method) {
      case http::verb::head:
        co_return co_await head(account, id);
      case http::verb::patch:
        co_return co_await patch(account, id);
      case http::verb::get:
        co_return co_await get(id);
      case http::verb::delete_:
        co_return co_await remove(account, id);
      default:
        co_return co_await not_allowed("OPTIONS, HEAD, GET, PATCH, DELETE");
    }
  }

 private:
  awaitable<bool> not_allowed(const char* allow) {
    ApiResponse r = error_response(405, "method_not_allowed", "method not allowed on this resource");
    r.headers.emplace_back("Allow", allow);
    co_return co_await answer(std::move(r));
  }

  std::optional<std::string_view> field(std::string_view name) const {
    const auto it = req_.find(beast::string_view(name.data(), name.size()));
    if (it == req_.end()) return std::nullopt;
    return view(it->value());
  }

  awaitable<bool> create(std::int64_t account) {
    if (field("Upload-Defer-Length")) {
      co_return co_await answer(error_response(400, "bad_upload_length",
                                               "Upload-Defer-Length is not supported; send Upload-Length"));
    }
    const auto length_text = field("Upload-Length");
    if (!length_text)
      co_return co_await answer(error_response(400, "bad_upload_length", "Upload-Length is required"));
    const auto length = parse_decimal(*length_text);
    if (!length) {
      co_return co_await answer(
          error_response(400, "bad_upload_length", "Upload-Length must be a non-negative decimal integer"));
    }
    if (const auto meta = field("Upload-Metadata"); meta && !valid_upload_metadata(*meta)) {
      co_return co_await answer(error_response(
          400, "bad_upload_metadata", "Upload-Metadata must be comma-separated \"key base64value\" pairs"));
    }
    auto created = co_await run_on(
        ctx_.workers, [this, account, len = *length] { return ctx_.attachments.create(account, len); });
    if (!created) co_return co_await answer(from_error(created.error()));
    ApiResponse r;
    r.status = 201;
    r.headers = {{"Location", std::string(kPrefix) + "/" + created->id},
                 {"Upload-Expires", http_date(created->expires_ms)}};
    co_return co_await answer(std::move(r));
  }

  awaitable<bool> head(std::int64_t account, const std::string& id) {
    auto info =
        co_await run_on(ctx_.workers, [this, account, &id] { return ctx_.attachments.head(account, id); });
    if (!info) co_return co_await answer(from_error(info.error()));
    ApiResponse r;
    r.status = 200;
    r.headers = {{"Upload-Offset", std::to_string(info->offset)},
                 {"Upload-Length", std::to_string(info->length)},
                 {"Upload-Expires", http_date(info->expires_ms)}};
    co_return co_await answer(std::move(r));
  }

  awaitable<bool> remove(std::int64_t account, const std::string& id) {
    auto removed =
        co_await run_on(ctx_.workers, [this, account, &id] { return ctx_.attachments.remove(account, id); });
    if (!removed) co_return co_await answer(from_error(removed.error()));
    ApiResponse r;
    r.status = 204;
    co_return co_await answer(std::move(r));
  }

  awaitable<bool> patch(std::int64_t account, const std::string& id) {
    const auto type = field("Content-Type");
    if (!type || !iequals(*type, "application/offset+octet-stream")) {
      co_return co_await answer(error_response(415, "unsupported_media_type",
                                               "Content-Type must be application/offset+octet-stream"));
    }
    const auto offset_text = field("Upload-Offset");
    const auto offset = offset_text ? parse_decimal(*offset_text) : std::nullopt;
    if (!offset) {
      co_return co_await answer(
          error_response(400, "bad_upload_offset", "Upload-Offset must be a non-negative decimal integer"));
    }
    const auto content_length = parser_.content_length();
    if (parser_.chunked() || !content_length) {
      co_return co_await answer(error_response(411, "length_required", "a PATCH needs a Content-Length"));
    }
    const auto body_length = static_cast<std::int64_t>(*content_length);
    if (body_length < 0)
      co_return co_await answer(error_response(413, "too_large", "the body goes past Upload-Length"));
    auto begun = co_await run_on(ctx_.workers, [this, account, &id, off = *offset, body_length] {
      return ctx_.attachments.begin_patch(account, id, off, body_length);
    });
    if (!begun) co_return co_await answer(from_error(begun.error()));
    std::unique_ptr<AttachmentService::UploadWriter> writer = std::move(*begun);

    if (const auto expect = field("Expect"); expect && iequals(*expect, "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, version_};
      beast::get_lowest_layer(stream_).expires_after(ctx_.limits.write_timeout);
      auto [ec, n] = co_await http::async_write(stream_, cont, asio::as_tuple(use_awaitable));
      (void)n;
      if (ec) {
        co_await finish_on_worker(*writer);
        co_return false;
      }
    }

    // From here on parser_ and req_ are moved from: only the copies taken at construction remain.
    http::request_parser<http::buffer_body> body_parser(std::move(parser_));
    std::vector<std::uint8_t> chunk(kChunkBytes);
    std::size_t filled = 0;
    bool cut = false;
    bool store_failed = false;
    while (!body_parser.is_done()) {
      body_parser.get().body().data = chunk.data() + filled;
      body_parser.get().body().size = chunk.size() - filled;
      // An inactivity timeout: a 2 GiB body takes longer than read_timeout, each read must not.
      beast::get_lowest_layer(stream_).expires_after(ctx_.limits.read_timeout);
      auto [ec, n] =
          co_await http::async_read_some(stream_, buffer_, body_parser, asio::as_tuple(use_awaitable));
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      filled = chunk.size() - body_parser.get().body().size;
      if (ec) {
        cut = true;
      }
      if (filled > 0 && (cut || filled == chunk.size() || body_parser.is_done())) {
        const ByteView data(chunk.data(), filled);
        const Status written = co_await run_on(ctx_.workers, [&writer, data] { return writer->write(data); });
        filled = 0;
        if (!written) {
          store_failed = true;
          break;
        }
      }
      if (cut) break;
    }
    body_read_ = !cut && !store_failed;
    auto finished = co_await finish_on_worker(*writer);
    co_await run_on(ctx_.workers, [&writer] {
      writer.reset();
      return 0;
    });
    if (cut) {
      spdlog::debug("PATCH /v1/attachments/{{id}} cut; kept what arrived");
      co_return false;  // no one to answer
    }
    if (store_failed) {
      closing_ = true;  // the rest of the body is unread
      co_return co_await answer(error_response(500, "internal_error", "internal server error"));
    }
    if (!finished) co_return co_await answer(from_error(finished.error()));
    ApiResponse r;
    r.status = 204;
    r.headers = {{"Upload-Offset", std::to_string(finished->offset)},
                 {"Upload-Expires", http_date(finished->expires_ms)}};
    co_return co_await answer(std::move(r));
  }

  awaitable<Outcome<UploadInfo>> finish_on_worker(AttachmentService::UploadWriter& writer) {
    co_return co_await run_on(ctx_.workers, [&writer] { return writer.finish(); });
  }

  awaitable<bool> get(const std::string& id) {
    auto opened = co_await run_on(ctx_.workers, [this, &id] { return ctx_.attachments.open_download(id); });
    if (!opened) co_return co_await answer(from_error(opened.error()));
    std::unique_ptr<AttachmentService::Download> download = std::move(*opened);
    const std::int64_t length = download->length();

    RangeRequest range;
    if (const auto header = field("Range")) range = parse_range(*header, length);
    if (range.kind == RangeKind::unsatisfiable) {
      ApiResponse r = error_response(416, "range_not_satisfiable", "the range is outside the attachment");
      r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(length));
      co_return co_await answer(std::move(r));
    }
    std::int64_t first = 0;
    std::int64_t last = length - 1;
    http::response<http::buffer_body> res{http::status::ok, version_};
    if (range.kind == RangeKind::partial) {
      first = range.range.first;
      last = range.range.last;
      res.result(http::status::partial_content);
      res.set(http::field::content_range,
              "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" + std::to_string(length));
    }
    const bool keep_alive = keep_alive_ && body_read_;
    res.set(http::field::server, "postern/" POSTERN_VERSION);
    res.set(http::field::cache_control, "no-store");
    res.set("Tus-Resumable", "1.0.0");
    res.set(http::field::accept_ranges, "bytes");
    res.set(http::field::content_type, "application/octet-stream");
    res.content_length(static_cast<std::uint64_t>(last - first + 1));
    res.keep_alive(keep_alive);
    res.body().data = nullptr;
    res.body().size = 0;
    res.body().more = true;
    ctx_.metrics.count_http_status(res.result_int());

    http::response_serializer<http::buffer_body> serializer{res};
    beast::get_lowest_layer(stream_).expires_after(ctx_.limits.write_timeout);
    auto [hec, hn] = co_await http::async_write_header(stream_, serializer, asio::as_tuple(use_awaitable));
    (void)hn;
    if (hec) co_return false;

    std::vector<std::uint8_t> chunk(kChunkBytes);
    std::int64_t at = first;
    while (at <= last) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::int64_t>(last - at + 1, kChunkBytes));
      auto got = co_await run_on(ctx_.workers, [&download, &chunk, at, want] {
        return download->read(at, MutableByteView(chunk.data(), want));
      });
      if (!got || *got == 0) {
        spdlog::error("attachments: reading an upload file: {}",
                      got ? "unexpected end" : got.error().message());
        co_return false;  // the header promised a length we cannot deliver: close
      }
      res.body().data = chunk.data();
      res.body().size = *got;
      res.body().more = true;
      beast::get_lowest_layer(stream_).expires_after(ctx_.limits.write_timeout);
      auto [ec, n] = co_await http::async_write(stream_, serializer, asio::as_tuple(use_awaitable));
      (void)n;
      if (ec && ec != http::error::need_buffer) co_return false;
      at += static_cast<std::int64_t>(*got);
      bump(ctx_.metrics.download_bytes, *got);
    }
    res.body().data = nullptr;
    res.body().size = 0;
    res.body().more = false;
    beast::get_lowest_layer(stream_).expires_after(ctx_.limits.write_timeout);
    auto [ec, n] = co_await http::async_write(stream_, serializer, asio::as_tuple(use_awaitable));
    (void)n;
    if (ec) co_return false;
    if (!body_read_) co_await drain();  // a GET with a body: not read, not kept
    co_return keep_alive;
  }

  // Writes a complete (non-streamed) answer; closes after it when the body was left unread.
  awaitable<bool> answer(ApiResponse r) {
    const bool unread_body = !body_read_;
    const bool keep_alive = keep_alive_ && !unread_body && !closing_;
    const bool head = head_;
    http::response<http::string_body> res{static_cast<http::status>(r.status), version_};
    res.set(http::field::server, "postern/" POSTERN_VERSION);
    res.set(http::field::cache_control, "no-store");
    res.set("Tus-Resumable", "1.0.0");
    for (const auto& [name, value] : r.headers) res.set(name, value);
    if (!head && !r.body.empty()) {
      res.set(http::field::content_type, "application/json");
      res.body() = std::move(r.body);
      res.content_length(res.body().size());
    } else if (!head && r.status != 204) {
      res.content_length(0);
    }
    res.keep_alive(keep_alive);
    ctx_.metrics.count_http_status(r.status);
    beast::get_lowest_layer(stream_).expires_after(ctx_.limits.write_timeout);
    auto [ec, n] = co_await http::async_write(stream_, res, asio::as_tuple(use_awaitable));
    (void)n;
    if (ec) co_return false;
    if (unread_body || closing_) co_await drain();
    co_return keep_alive;
  }

  // After answering a request whose body we did not read, reads and discards what the client is
  // still sending, for a bounded time and amount, so that it sees the answer rather than a reset.
  awaitable<void> drain() {
    constexpr std::size_t kMaxDrainBytes = 1024 * 1024;
    std::array<char, 16 * 1024> scratch;
    std::size_t drained = 0;
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(1));
    while (drained < kMaxDrainBytes) {
      auto [ec, n] = co_await stream_.async_read_some(asio::buffer(scratch), asio::as_tuple(use_awaitable));
      if (ec) break;
      drained += n;
    }
  }

  AttachmentHttpContext& ctx_;
  Stream& stream_;
  beast::flat_buffer& buffer_;
  HeaderParser& parser_;
  const http::request<http::empty_body>& req_;  // valid until a PATCH moves the parser
  const unsigned version_;
  const bool keep_alive_;
  const bool head_;
  bool body_read_;  // false while a body is left unread (then the connection closes after the answer)
  bool closing_ = false;
};

}  // namespace

asio::awaitable<bool> serve_attachment_request(AttachmentHttpContext& ctx, Stream& stream,
                                               beast::flat_buffer& buffer, HeaderParser& parser,
                                               const std::string& client_address) {
  (void)client_address;  // the limits of attachments are per account
  Exchange exchange(ctx, stream, buffer, parser);
  co_return co_await exchange.run();
}

}  // namespace postern::server::detail
