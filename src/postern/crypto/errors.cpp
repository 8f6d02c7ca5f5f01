#include "postern/crypto/errors.h"

#include <string>

namespace postern::crypto {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.crypto"; }
  std::string message(int c) const override {
    switch (static_cast<Errc>(c)) {
      case Errc::bad_key_length:
        return "key has the wrong length";
      case Errc::bad_key_type:
        return "public key has an unknown type byte";
      case Errc::weak_key:
        return "key agreement produced a weak (all-zero) secret";
      case Errc::bad_length:
        return "input has an invalid length";
      case Errc::bad_padding:
        return "decryption failed: bad padding";
      case Errc::backend_failure:
        return "cryptographic backend failure";
    }
    return "unknown crypto error";
  }
};

}  // namespace

const std::error_category& crypto_category() {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), crypto_category()};
}

}  // namespace postern::crypto
