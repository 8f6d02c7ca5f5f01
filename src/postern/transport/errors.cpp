#include "postern/transport/errors.h"

#include <string>

namespace postern::transport {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.transport"; }
  std::string message(int code) const override {
    switch (static_cast<Errc>(code)) {
      case Errc::ok: return "ok";
      case Errc::unsupported_protocol: return "unsupported Noise protocol";
      case Errc::bad_key: return "bad key";
      case Errc::handshake_failed: return "the inner-channel handshake failed (wrong server key?)";
      case Errc::wrong_state: return "operation out of order";
      case Errc::decrypt_failed: return "a message failed authentication";
      case Errc::too_large: return "over the size limit";
      case Errc::bad_frame: return "malformed frame";
      case Errc::bad_token: return "the first request's authenticator is not valid";
      case Errc::proxy_refused: return "the proxy refused the connection";
      case Errc::bad_dns_message: return "malformed DNS message";
      case Errc::bad_request: return "malformed HTTP request";
      case Errc::io_error: return "input/output error";
      case Errc::bad_config: return "invalid transport setting";
      case Errc::unreachable: return "cannot connect";
      case Errc::timeout: return "timed out";
    }
    return "unknown transport error";
  }
};

}  // namespace

const std::error_category& transport_category() {
  static const Category category;
  return category;
}

}  // namespace postern::transport
