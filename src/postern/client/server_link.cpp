#include "postern/client/server_link.h"

#include <cctype>
#include <utility>

namespace postern::client {

void CancelToken::cancel() {
  std::lock_guard lock(mutex_);
  if (cancelled_) return;
  cancelled_ = true;
  if (stop_) stop_();
}

bool CancelToken::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

CancelToken::Hook CancelToken::on_cancel(std::function<void()> stop) {
  std::lock_guard lock(mutex_);
  if (cancelled_) {
    stop();
  } else {
    stop_ = std::move(stop);
  }
  return Hook(this);
}

CancelToken::Hook& CancelToken::Hook::operator=(Hook&& other) noexcept {
  if (this != &other) {
    Hook old(std::move(*this));
    token_ = std::exchange(other.token_, nullptr);
  }
  return *this;
}

CancelToken::Hook::~Hook() {
  if (!token_) return;
  std::lock_guard lock(token_->mutex_);
  token_->stop_ = nullptr;
}

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
