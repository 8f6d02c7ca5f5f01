// Error codes of the protocol layer. The numbers are libsignal-protocol-c's (negated there), so
// that an interop peer can report the same codes and logs of both can be read side by side.
#pragma once

#include <system_error>

namespace postern::protocol {

enum class Errc {
  duplicate_message = 1001,   // a message key already used (replay or duplicate delivery)
  invalid_key = 1002,         // a malformed key or a bundle whose signed-prekey signature fails
  invalid_key_id = 1003,      // a prekey or signed prekey id we do not hold
  invalid_mac = 1004,         // a MAC that does not verify
  invalid_message = 1005,     // a message that cannot be decrypted or is malformed
  invalid_version = 1006,     // an unknown message or record version
  legacy_message = 1007,      // a message of a version before 3
  no_session = 1008,          // no session (or sender key) for that address
  untrusted_identity = 1010,  // the peer's identity key is not the one we trust
  invalid_protobuf = 1100,    // wire bytes that do not parse
  fingerprint_version_mismatch = 1200,
  fingerprint_identity_mismatch = 1201,
  corrupt_record = 1300,  // a stored record that does not parse or violates an invariant
  store_failure = 1400,   // a store implementation failed (database error)
};

std::error_code make_error_code(Errc e);
const std::error_category& protocol_category();

}  // namespace postern::protocol

template <>
struct std::is_error_code_enum<postern::protocol::Errc> : std::true_type {};
