#include "postern/account/signup.h"

#include <chrono>
#include <cstdint>

namespace postern::account {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// RFC 5322 atext: the characters of a dot-atom besides the dots.
bool is_atext(char c) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return is_alpha(c) || is_digit(c) || kSpecials.find(c) != std::string_view::npos;
}

// A dot-atom: atext runs separated by single dots, none at either end. Quoted local parts are
// refused: they are legal but almost never real, and they complicate every later consumer.
bool is_dot_atom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(c)) {
      return false;
    }
    prev = c;
  }
  return true;
}

// A host name of LDH labels (RFC 5321 "Domain"): at least two labels, each 1..63 letters, digits
// and inner hyphens, the last not all digits (which would make it look like an IPv4 address).
// Address literals ("[192.0.2.1]") are refused: a user-facing service has no use for them.
bool is_domain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t labels = 0;
  bool last_all_digits = false;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = s.find('.', start);
    const std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    bool all_digits = true;
    for (char c : label) {
      if (!(is_alpha(c) || is_digit(c) || c == '-')) return false;
      if (!is_digit(c)) all_digits = false;
    }
    ++labels;
    last_all_digits = all_digits;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return labels >= 2 && !last_all_digits;
}

bool parse_fixed_digits(std::string_view s, int& out) {
  int v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

std::chrono::sys_days today_utc(const Clock& clock) {
  return std::chrono::floor<std::chrono::days>(
      std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(clock.now_ms())));
}

// The day someone born on `birth` turns `years` old. A Feb 29 birthday falls on Mar 1 in years
// that are not leap years (the rule of, among others, English and Hong Kong law and most
// identity checks): on Feb 28 they have not yet completed the full number of years.
std::chrono::sys_days anniversary(std::chrono::year_month_day birth, int years) {
  const std::chrono::year_month_day later = birth + std::chrono::years(years);
  if (later.ok()) return later;
  return std::chrono::sys_days(
      std::chrono::year_month_day(later.year(), std::chrono::March, std::chrono::day(1)));
}

}  // namespace

std::string normalize_email(std::string_view email) {
  while (!email.empty() && is_space(email.front())) email.remove_prefix(1);
  while (!email.empty() && is_space(email.back())) email.remove_suffix(1);
  std::string out(email);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view check_email(std::string_view raw) {
  const std::string email = normalize_email(raw);
  if (email.empty()) return signup_message::kEmailRequired;
  if (email.size() > kMaxEmailLength) return signup_message::kEmailTooLong;
  for (char c : email) {
    if (static_cast<unsigned char>(c) >= 0x80) return signup_message::kEmailNotAscii;
  }
  const std::size_t at = email.find('@');
  if (at == std::string::npos || email.find('@', at + 1) != std::string::npos) {
    return signup_message::kEmailInvalid;
  }
  const std::string_view local = std::string_view(email).substr(0, at);
  const std::string_view domain = std::string_view(email).substr(at + 1);
  if (local.size() > kMaxEmailLocalLength || !is_dot_atom(local) || !is_domain(domain)) {
    return signup_message::kEmailInvalid;
  }
  return {};
}

std::string_view check_password(std::string_view password) {
  if (password.size() > kMaxPasswordBytes) return signup_message::kPasswordTooLong;
  // Length counts characters, not bytes: UTF-8 continuation bytes are not counted, so a password
  // of six accented letters is six characters. The classes are ASCII: a non-ASCII letter counts
  // toward the length but not as the required upper- or lower-case letter.
  std::size_t characters = 0;
  bool upper = false, lower = false, digit = false;
  for (char c : password) {
    const auto u = static_cast<unsigned char>(c);
    if ((u & 0xC0) != 0x80) ++characters;
    upper = upper || (c >= 'A' && c <= 'Z');
    lower = lower || (c >= 'a' && c <= 'z');
    digit = digit || is_digit(c);
  }
  if (characters < kMinPasswordCharacters || !upper || !lower || !digit) {
    return signup_message::kPasswordWeak;
  }
  return {};
}

std::string_view check_birthdate(std::string_view birthdate, const Clock& clock) {
  using namespace std::chrono;
  if (birthdate.empty()) return signup_message::kBirthdateRequired;
  int y = 0, m = 0, d = 0;
  if (birthdate.size() != 10 || birthdate[4] != '-' || birthdate[7] != '-' ||
      !parse_fixed_digits(birthdate.substr(0, 4), y) || !parse_fixed_digits(birthdate.substr(5, 2), m) ||
      !parse_fixed_digits(birthdate.substr(8, 2), d)) {
    return signup_message::kBirthdateFormat;
  }
  // Year 0000 does not exist in the calendar people write their birthdays in.
  const year_month_day birth{year(y), month(static_cast<unsigned>(m)), day(static_cast<unsigned>(d))};
  if (y == 0 || !birth.ok()) return signup_message::kBirthdateInvalid;
  const sys_days today = today_utc(clock);
  if (sys_days(birth) > today) return signup_message::kBirthdateFuture;
  if (anniversary(birth, kMinimumAge) > today) return signup_message::kTooYoung;
  return {};
}

std::vector<FieldError> validate_signup(const SignupForm& form, const Clock& clock) {
  std::vector<FieldError> errors;
  auto add = [&](std::string_view field, std::string_view message) {
    if (!message.empty()) errors.push_back({std::string(field), std::string(message)});
  };
  add("email", check_email(form.email));
  add("password", check_password(form.password));
  add("birthdate", check_birthdate(form.birthdate, clock));
  if (!form.accepted_terms) add("terms", signup_message::kTermsRequired);
  return errors;
}

}  // namespace postern::account
