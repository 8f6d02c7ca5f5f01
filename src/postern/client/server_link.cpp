#include "postern/client/server_link.h"

#include <cctype>

namespace postern::client {

std::optional<std::string_view> HttpResponse::header(std::string_view name) const {
  for (const auto& h : headers) {
    if (h.name.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(h.name[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    if (same) return std::string_view(h.value);
  }
  return std::nullopt;
}

}  // namespace postern::client
