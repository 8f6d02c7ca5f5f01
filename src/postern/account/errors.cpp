#include "postern/account/errors.h"

#include <string>

namespace postern::account {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.account"; }
  std::string message(int c) const override {
    switch (static_cast<Errc>(c)) {
      case Errc::malformed:
        return "malformed challenge token";
      case Errc::bad_signature:
        return "challenge token signature does not verify";
      case Errc::expired:
        return "challenge has expired";
      case Errc::insufficient_work:
        return "proof of work is insufficient";
      case Errc::reused:
        return "challenge has already been used";
      case Errc::cancelled:
        return "proof of work cancelled";
      case Errc::unsolvable:
        return "challenge difficulty cannot be solved";
      case Errc::password_too_long:
        return "password is too long";
      case Errc::bad_parameters:
        return "password hashing parameters out of range";
      case Errc::backend_failure:
        return "password hashing backend failure";
      case Errc::store_failure:
        return "used-challenge store failure";
    }
    return "unknown account error";
  }
};

}  // namespace

const std::error_category& account_category() {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), account_category()};
}

}  // namespace postern::account
