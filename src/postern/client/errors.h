// Errors of the client layer (registered as an error-code enum, as every layer does).
#pragma once

#include <system_error>

namespace postern::client {

enum class Errc {
  ok = 0,
  unreachable = 1,          // no TCP/TLS connection to the server (refused, timeout, DNS)
  pin_mismatch = 2,         // the server's certificate key does not match the invite's pin
  protocol_error = 3,       // the server answered something that does not parse
  timeout = 4,              // a request or a socket read took longer than allowed
  connection_closed = 5,    // the delivery socket was closed (see DeliverySocket::close_code)
  not_registered = 6,       // the profile has no account/device yet (run register or login)
  server_error = 7,         // the server answered an error status (the message carries its text)
  bad_invite = 8,           // an invite link that does not parse
  store_locked = 9,         // the profile's data key is wrong (passphrase) or the store is damaged
  corrupt_record = 10,      // a sealed field does not open (tampered or wrong key)
  bad_attachment = 11,      // an attachment's digest, MAC or padding does not verify
  file_error = 12,          // a local file could not be read or written
  unknown_contact = 13,     // no account with this e-mail / no such contact
  untrusted_identity = 14,  // a contact's identity key changed and has not been accepted
  bad_content = 15,         // a decrypted message whose content does not parse
  unknown_group = 16,
  not_allowed = 17,         // e.g. removing a member from a group one is not in
  invalid_argument = 18,
  too_large = 19,
  device_removed = 20,      // this device was logged out or removed (close 4001, token refused)
  replaced = 21,            // another connection of this device took over (close 4000)
  cancelled = 22,           // the call was stopped from another thread (CancelToken in server_link.h)
};

const std::error_category& client_category();

inline std::error_code make_error_code(Errc e) { return {static_cast<int>(e), client_category()}; }

}  // namespace postern::client

template <>
struct std::is_error_code_enum<postern::client::Errc> : std::true_type {};
