#include "postern/server/errors.h"

#include <string>

namespace postern::server {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.server"; }
  std::string message(int code) const override {
    switch (static_cast<Errc>(code)) {
      case Errc::bad_address:
        return "address must be HOST:PORT";
      case Errc::io_error:
        return "data directory I/O failure";
      case Errc::bad_secret:
        return "server secret file is damaged";
      case Errc::tls_failure:
        return "TLS certificate or key failure";
    }
    return "unknown server error";
  }
};

}  // namespace

const std::error_category& server_category() {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), server_category()};
}

}  // namespace postern::server
