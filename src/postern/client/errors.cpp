#include "postern/client/errors.h"

#include <string>

namespace postern::client {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.client"; }
  std::string message(int code) const override {
    switch (static_cast<Errc>(code)) {
      case Errc::ok: return "ok";
      case Errc::unreachable: return "cannot reach the server";
      case Errc::pin_mismatch: return "the server's key does not match the invite (possible interception)";
      case Errc::protocol_error: return "the server's answer does not parse";
      case Errc::timeout: return "the server did not answer in time";
      case Errc::connection_closed: return "the connection to the server was closed";
      case Errc::not_registered: return "this profile is not signed in (run register or login)";
      case Errc::server_error: return "the server refused the request";
      case Errc::bad_invite: return "the invite link is not valid";
      case Errc::store_locked: return "the profile's data cannot be opened (wrong passphrase or key file)";
      case Errc::corrupt_record: return "a stored record is damaged or was altered";
      case Errc::bad_attachment: return "the attachment failed verification (altered or damaged)";
      case Errc::file_error: return "a local file could not be read or written";
      case Errc::unknown_contact: return "no such contact";
      case Errc::untrusted_identity: return "the contact's safety number changed and has not been accepted";
      case Errc::bad_content: return "a received message does not parse";
      case Errc::unknown_group: return "no such group";
      case Errc::not_allowed: return "not allowed";
      case Errc::invalid_argument: return "invalid argument";
      case Errc::too_large: return "too large";
      case Errc::device_removed: return "this device was logged out or removed from the account";
      case Errc::replaced: return "another connection of this device took over";
      case Errc::cancelled: return "the request was cancelled";
    }
    return "unknown client error";
  }
};

}  // namespace

const std::error_category& client_category() {
  static const Category category;
  return category;
}

}  // namespace postern::client
