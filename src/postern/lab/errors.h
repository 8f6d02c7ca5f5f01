// Errors of the censor lab (registered as an error-code enum, as every layer does). Codes are
// stable: the lab's reports and postern-censor's exit messages carry them.
#pragma once

#include <system_error>

namespace postern::lab {

enum class Errc {
  ok = 0,
  bad_config = 1,         // a profile name, setting or JSON document that breaks the rules
  io_error = 2,           // a file, socket or pipe operation failed
  not_permitted = 3,      // the lab needs root (CAP_NET_ADMIN) for namespaces and firewall rules
  tool_missing = 4,       // a program the lab runs (ip, nft, nginx, tor, ...) is not installed
  timeout = 5,            // a step did not finish in its time
  failed = 6,             // a step of the lab failed (a process exited non-zero, a check did not hold)
  malformed_message = 7,  // bytes from the network (a user's DNS query) that do not parse
};

const std::error_category& lab_category();

inline std::error_code make_error_code(Errc e) { return {static_cast<int>(e), lab_category()}; }

}  // namespace postern::lab

template <>
struct std::is_error_code_enum<postern::lab::Errc> : std::true_type {};
