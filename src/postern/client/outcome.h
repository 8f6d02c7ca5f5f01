// Outcome<T>: a value or a Failure that people can read. The client's public operations return
// it (rather than Result<T>) because a refusal must reach the user with the server's words: the
// field errors of a sign-up form, "rate limited, retry in 30 s", "no account with this address".
#pragma once

#include <cstdint>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "postern/client/errors.h"
#include "postern/util/result.h"

namespace postern::client {

struct FieldProblem {
  std::string field;    // "email", "password", "birthdate", "terms", ...
  std::string message;  // the server's (or the local check's) sentence
};

struct Failure {
  std::error_code code;            // the category of failure (client::Errc, or a lower layer's)
  std::string message;             // one sentence for people
  unsigned http_status = 0;        // when the server refused: its status
  std::string server_code;         // and its stable error code ("invalid_fields", "email_taken")
  std::vector<FieldProblem> fields;
  std::int64_t retry_after_s = 0;  // 429

  static Failure from(std::error_code ec) { return Failure{ec, ec.message(), 0, {}, {}, 0}; }
  static Failure from(std::error_code ec, std::string msg) { return Failure{ec, std::move(msg), 0, {}, {}, 0}; }
};

template <class T>
class [[nodiscard]] Outcome {
 public:
  Outcome(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Outcome(Failure failure) : v_(std::in_place_index<1>, std::move(failure)) {}  // NOLINT
  Outcome(std::error_code ec) : v_(std::in_place_index<1>, Failure::from(ec)) {}  // NOLINT
  Outcome(Errc ec) : Outcome(make_error_code(ec)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Failure& failure() const { return std::get<1>(v_); }

 private:
  std::variant<T, Failure> v_;
};

struct Done {};  // Outcome<Done>: success without a value

// Converts a Result's error into a Failure (for POSTERN_OUTCOME_TRY).
template <class T>
Failure failure_of(const Result<T>& r) {
  return Failure::from(r.error());
}

}  // namespace postern::client

// POSTERN_OUTCOME_TRY(decl, expr): expr is a Result<T> or an Outcome<T>; on failure returns it.
#define POSTERN_OUTCOME_TRY(decl, expr) POSTERN_OUTCOME_TRY_IMPL_(POSTERN_CONCAT_(postern_otry_, __LINE__), decl, expr)
#define POSTERN_OUTCOME_TRY_IMPL_(tmp, decl, expr)                           \
  auto tmp = (expr);                                                         \
  if (!tmp.ok()) return ::postern::client::detail_outcome::fail_of(tmp);      \
  decl = std::move(tmp).value()
#define POSTERN_OUTCOME_CHECK(expr)                                                    \
  do {                                                                                 \
    auto postern_ocheck_ = (expr);                                                     \
    if (!postern_ocheck_.ok()) return ::postern::client::detail_outcome::fail_of(postern_ocheck_); \
  } while (false)

namespace postern::client::detail_outcome {
template <class T>
Failure fail_of(const Result<T>& r) {
  return Failure::from(r.error());
}
inline Failure fail_of(const Status& s) { return Failure::from(s.error()); }
template <class T>
Failure fail_of(const Outcome<T>& o) {
  return o.failure();
}
}  // namespace postern::client::detail_outcome
