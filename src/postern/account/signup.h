// The sign-up form's rules (issue 3), shared by the server, which enforces them, and the client,
// which shows the same messages before sending. Validation reports every failing field at once so
// that one round trip shows the user everything to fix. The messages are user-facing and listed in
// docs/accounts.md; two of them are fixed by the issue word for word.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "postern/util/clock.h"

namespace postern::account {

struct SignupForm {
  std::string email;
  std::string password;
  std::string birthdate;  // "YYYY-MM-DD"
  bool accepted_terms = false;
};

struct FieldError {
  std::string field;  // "email", "password", "birthdate" or "terms"
  std::string message;

  friend bool operator==(const FieldError&, const FieldError&) = default;
};

inline constexpr std::size_t kMaxEmailLength = 254;      // RFC 5321's path limit minus the brackets
inline constexpr std::size_t kMaxEmailLocalLength = 64;  // RFC 5321 4.5.3.1.1
inline constexpr std::size_t kMaxPasswordBytes = 1024;   // bounds the work a request can ask of Argon2id
inline constexpr std::size_t kMinPasswordCharacters = 6;
inline constexpr int kMinimumAge = 18;

namespace signup_message {
inline constexpr std::string_view kEmailRequired = "Enter your e-mail address";
inline constexpr std::string_view kEmailTooLong = "E-mail address must be at most 254 characters";
inline constexpr std::string_view kEmailNotAscii =
    "E-mail address must contain only ASCII characters (international addresses are not supported yet)";
inline constexpr std::string_view kEmailInvalid = "Enter a valid e-mail address, like name@example.com";
inline constexpr std::string_view kPasswordWeak =
    "Must be at least 6 characters, include an upper and lower case character and a number";
inline constexpr std::string_view kPasswordTooLong = "Password must be at most 1024 bytes";
inline constexpr std::string_view kBirthdateRequired = "Enter your date of birth";
inline constexpr std::string_view kBirthdateFormat = "Enter your date of birth as YYYY-MM-DD";
inline constexpr std::string_view kBirthdateInvalid = "Enter a real calendar date";
inline constexpr std::string_view kBirthdateFuture = "Date of birth cannot be in the future";
inline constexpr std::string_view kTooYoung = "You must be at least 18 years old";
inline constexpr std::string_view kTermsRequired = "You must accept the terms of service";
}  // namespace signup_message

// Trims ASCII white space and lower-cases ASCII letters of the whole address (local part
// included), so that uniqueness and directory lookups are case-insensitive. Every place that
// stores or looks up an address calls this first. Non-ASCII bytes are kept as they are.
std::string normalize_email(std::string_view email);

// The message for an e-mail address, or an empty view if it is acceptable. Normalises first.
std::string_view check_email(std::string_view email);

// The message for a password, or an empty view if it is acceptable.
std::string_view check_password(std::string_view password);

// The message for a date of birth "YYYY-MM-DD" given today's date from the clock (UTC), or an
// empty view if it is acceptable.
std::string_view check_birthdate(std::string_view birthdate, const Clock& clock);

// Every failing field of the form, in the order email, password, birthdate, terms; empty if the
// form is acceptable.
std::vector<FieldError> validate_signup(const SignupForm& form, const Clock& clock);

}  // namespace postern::account
