#include "postern/lab/errors.h"

#include <string>

namespace postern::lab {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.lab"; }
  std::string message(int code) const override {
    switch (static_cast<Errc>(code)) {
      case Errc::ok: return "ok";
      case Errc::bad_config: return "invalid lab setting";
      case Errc::io_error: return "input/output error";
      case Errc::not_permitted: return "not permitted (the lab needs root or CAP_NET_ADMIN)";
      case Errc::tool_missing: return "a program the lab needs is not installed";
      case Errc::timeout: return "timed out";
      case Errc::failed: return "a step of the lab failed";
      case Errc::malformed_message: return "malformed message (bytes from the network that do not parse)";
    }
    return "unknown lab error";
  }
};

}  // namespace

const std::error_category& lab_category() {
  static const Category category;
  return category;
}

}  // namespace postern::lab
