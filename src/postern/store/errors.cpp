#include "postern/store/errors.h"

#include <string>

namespace postern::store {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.store"; }
  std::string message(int c) const override {
    switch (static_cast<Errc>(c)) {
      case Errc::sqlite_error:
        return "database error";
      case Errc::constraint:
        return "database constraint violated";
      case Errc::not_found:
        return "not found";
      case Errc::busy:
        return "database is busy";
      case Errc::corrupt:
        return "database file is not a database or is corrupt";
      case Errc::too_large:
        return "value or batch too large";
      case Errc::invalid_argument:
        return "invalid argument";
      case Errc::email_taken:
        return "e-mail address already registered";
      case Errc::schema_too_new:
        return "database schema is newer than this program; upgrade Postern";
      case Errc::io_error:
        return "database file could not be opened, read or written";
    }
    return "unknown store error";
  }
};

}  // namespace

const std::error_category& store_category() {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), store_category()};
}

}  // namespace postern::store
