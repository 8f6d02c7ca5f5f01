#include "postern/protocol/errors.h"

#include <string>

namespace postern::protocol {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.protocol"; }
  std::string message(int c) const override {
    switch (static_cast<Errc>(c)) {
      case Errc::duplicate_message:
        return "duplicate message: this message key was already used";
      case Errc::invalid_key:
        return "invalid key or signature";
      case Errc::invalid_key_id:
        return "unknown prekey or signed prekey id";
      case Errc::invalid_mac:
        return "message authentication failed";
      case Errc::invalid_message:
        return "invalid message: it cannot be decrypted with any session state";
      case Errc::invalid_version:
        return "unsupported version";
      case Errc::legacy_message:
        return "legacy message version (before v3) is not supported";
      case Errc::no_session:
        return "no session for this address";
      case Errc::untrusted_identity:
        return "untrusted identity key";
      case Errc::invalid_protobuf:
        return "malformed message encoding";
      case Errc::fingerprint_version_mismatch:
        return "safety number versions differ";
      case Errc::fingerprint_identity_mismatch:
        return "safety numbers are for different identities";
      case Errc::corrupt_record:
        return "stored record is corrupt";
      case Errc::store_failure:
        return "protocol store failure";
    }
    return "unknown protocol error";
  }
};

}  // namespace

const std::error_category& protocol_category() {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), protocol_category()};
}

}  // namespace postern::protocol
