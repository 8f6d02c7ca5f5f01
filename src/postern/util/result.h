// Errors as values. Every fallible operation in the crypto and protocol layers (and every path
// that handles bytes from the network) returns Result<T> or Status. Each layer defines its own
// `enum class Errc` registered with std::error_code (the pattern Boost.Asio uses), so errors keep
// stable numeric codes and messages across layers without exceptions.
#pragma once

#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace postern {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}     // NOLINT: implicit by design
  Result(std::error_code error) : v_(std::in_place_index<1>, error) {}  // NOLINT
  template <class E>
  requires std::is_error_code_enum_v<E> Result(E e)
      : v_(std::in_place_index<1>, make_error_code(e)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  std::error_code error() const noexcept { return ok() ? std::error_code{} : std::get<1>(v_); }

 private:
  std::variant<T, std::error_code> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(std::error_code error) : error_(error) {}  // NOLINT
  template <class E>
  requires std::is_error_code_enum_v<E> Result(E e) : error_(make_error_code(e)) {}  // NOLINT

  bool ok() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return ok(); }
  std::error_code error() const noexcept { return error_; }

 private:
  std::error_code error_;
};

using Status = Result<void>;

}  // namespace postern

#define POSTERN_CONCAT_INNER_(a, b) a##b
#define POSTERN_CONCAT_(a, b) POSTERN_CONCAT_INNER_(a, b)

// POSTERN_TRY(auto x, expr): evaluates expr (a Result); on error returns the error from the
// enclosing function, otherwise declares x with the value.
#define POSTERN_TRY(decl, expr) POSTERN_TRY_IMPL_(POSTERN_CONCAT_(postern_try_, __LINE__), decl, expr)
#define POSTERN_TRY_IMPL_(tmp, decl, expr) \
  auto tmp = (expr);                       \
  if (!tmp.ok()) return tmp.error();       \
  decl = std::move(tmp).value()

// POSTERN_CHECK(expr): evaluates a Status-like expression and returns its error, if any.
#define POSTERN_CHECK(expr)                                                \
  do {                                                                     \
    auto postern_check_status_ = (expr);                                   \
    if (!postern_check_status_.ok()) return postern_check_status_.error(); \
  } while (0)
