// Which DNS-over-HTTPS server the client asks (see doh.h). Boost-free, for https_link.h.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::client::net {

struct DohConfig {
  std::string url;                     // "https://HOST[:PORT]/PATH"
  std::optional<std::string> ca_file;  // trust this CA (PEM) instead of the system's
};

bool valid_doh_url(std::string_view url);

}  // namespace postern::client::net
