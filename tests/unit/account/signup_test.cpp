// Tests for postern/account/signup.h: each rule of the sign-up form alone, several at once, the
// exact messages fixed by issue 3, and the edges (length limits, leap years, the 18th birthday).
#include "postern/account/signup.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace postern::account {
namespace {

namespace msg = signup_message;

// Milliseconds since the epoch at 00:00:00 UTC of the date, plus an offset within the day.
std::int64_t utc_ms(int y, unsigned m, unsigned d, std::int64_t ms_into_day = 0) {
  using namespace std::chrono;
  const sys_days day = year_month_day{year(y), month(m), std::chrono::day(d)};
  return duration_cast<milliseconds>(day.time_since_epoch()).count() + ms_into_day;
}

SignupForm good_form() {
  return SignupForm{"alice@example.com", "Secret1", "1990-05-17", true};
}

class AccountSignup : public ::testing::Test {
 protected:
  ManualClock clock_{utc_ms(2026, 11, 29, 12 * 3600 * 1000)};
};

TEST_F(AccountSignup, GoodFormHasNoErrors) {
  EXPECT_TRUE(validate_signup(good_form(), clock_).empty());
}

TEST_F(AccountSignup, FixedMessagesAreExactlyTheIssueText) {
  EXPECT_EQ(msg::kPasswordWeak,
            "Must be at least 6 characters, include an upper and lower case character and a number");
  EXPECT_EQ(msg::kTooYoung, "You must be at least 18 years old");
}

TEST_F(AccountSignup, ReportsEveryFailingFieldAtOnceInOrder) {
  const SignupForm form{"not-an-address", "short", "2015-01-01", false};
  const auto errors = validate_signup(form, clock_);
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0], (FieldError{"email", std::string(msg::kEmailInvalid)}));
  EXPECT_EQ(errors[1], (FieldError{"password", std::string(msg::kPasswordWeak)}));
  EXPECT_EQ(errors[2], (FieldError{"birthdate", std::string(msg::kTooYoung)}));
  EXPECT_EQ(errors[3], (FieldError{"terms", std::string(msg::kTermsRequired)}));
}

TEST_F(AccountSignup, EachRuleAlone) {
  auto only = [&](SignupForm f) {
    const auto errors = validate_signup(f, clock_);
    EXPECT_EQ(errors.size(), 1u);
    return errors.empty() ? FieldError{} : errors[0];
  };
  SignupForm f = good_form();
  f.email = "bad@";
  EXPECT_EQ(only(f).field, "email");
  f = good_form();
  f.password = "alllowercase1";
  EXPECT_EQ(only(f), (FieldError{"password", std::string(msg::kPasswordWeak)}));
  f = good_form();
  f.birthdate = "2010-01-01";
  EXPECT_EQ(only(f), (FieldError{"birthdate", std::string(msg::kTooYoung)}));
  f = good_form();
  f.accepted_terms = false;
  EXPECT_EQ(only(f), (FieldError{"terms", std::string(msg::kTermsRequired)}));
}

TEST_F(AccountSignup, DefaultFormFailsEveryField) {
  const auto errors = validate_signup(SignupForm{}, clock_);
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].message, msg::kEmailRequired);
  EXPECT_EQ(errors[1].message, msg::kPasswordWeak);
  EXPECT_EQ(errors[2].message, msg::kBirthdateRequired);
  EXPECT_EQ(errors[3].field, "terms");
}

// ---- e-mail ----

TEST(AccountEmail, NormalizeTrimsAndLowerCasesEverything) {
  EXPECT_EQ(normalize_email("  Alice.Smith@Example.COM \t\r\n"), "alice.smith@example.com");
  EXPECT_EQ(normalize_email("BOB@X.ORG"), normalize_email("bob@x.org"));
  EXPECT_EQ(normalize_email(""), "");
  EXPECT_EQ(normalize_email("   "), "");
  // Non-ASCII bytes are left alone (validation refuses them).
  EXPECT_EQ(normalize_email("J\xC3\xB6RG@X.DE"), "j\xC3\xB6rg@x.de");
}

TEST(AccountEmail, AcceptsPracticalAddresses) {
  for (const char* ok :
       {"a@b.co", "alice@example.com", "first.last@sub.example.co.uk", "user+tag@example.org",
        "o'brien@example.ie", "x_y-z@my-domain.io", "!#$%&'*+-/=?^_`{|}~@example.com", "1234@123.example",
        "a@xn--bcher-kva.example", "  Alice@Example.com  ", "a@b.c1"}) {
    EXPECT_EQ(check_email(ok), "") << ok;
  }
}

TEST(AccountEmail, RefusesBadSyntax) {
  for (const char* bad : {"plainaddress",
                          "@example.com",
                          "alice@",
                          "alice@@example.com",
                          "a@b@example.com",
                          ".alice@example.com",
                          "alice.@example.com",
                          "al..ice@example.com",
                          "alice@localhost",
                          "alice@example",
                          "alice@.example.com",
                          "alice@example..com",
                          "alice@example.com.",
                          "alice@-example.com",
                          "alice@example-.com",
                          "alice@exa_mple.com",
                          "alice@192.168.0.1",
                          "alice@[192.168.0.1]",
                          "\"alice\"@example.com",
                          "al ice@example.com",
                          "alice@exa mple.com",
                          "alice(comment)@example.com",
                          "alice@example.123",
                          "alice@example.com\n@x.com",
                          "a,b@example.com",
                          "a\\b@example.com",
                          "alice@example.c-"}) {
    EXPECT_EQ(check_email(bad), msg::kEmailInvalid) << bad;
  }
}

TEST(AccountEmail, RefusesNonAscii) {
  EXPECT_EQ(check_email("j\xC3\xB6rg@example.de"), msg::kEmailNotAscii);
  EXPECT_EQ(check_email("jorg@b\xC3\xBC"
                        "cher.example"),
            msg::kEmailNotAscii);
  EXPECT_EQ(check_email(std::string("alice@example.com\x80")), msg::kEmailNotAscii);
}

TEST(AccountEmail, RefusesEmptyAndBlank) {
  EXPECT_EQ(check_email(""), msg::kEmailRequired);
  EXPECT_EQ(check_email(" \t "), msg::kEmailRequired);
}

TEST(AccountEmail, LengthLimits) {
  // 254 characters in total, labels of up to 63, local part of up to 64.
  const std::string local64(64, 'a');
  const std::string label63(63, 'b');
  std::string at_limit = local64 + "@" + label63 + "." + label63 + "." + std::string(57, 'c') + ".com";
  ASSERT_EQ(at_limit.size(), 254u);
  EXPECT_EQ(check_email(at_limit), "");
  EXPECT_EQ(check_email(at_limit + "m"), msg::kEmailTooLong);
  // Trimmed white space does not count.
  EXPECT_EQ(check_email("  " + at_limit + "  "), "");

  EXPECT_EQ(check_email(std::string(65, 'a') + "@example.com"), msg::kEmailInvalid);
  EXPECT_EQ(check_email("a@" + std::string(64, 'b') + ".com"), msg::kEmailInvalid);
  EXPECT_EQ(check_email("a@" + label63 + ".com"), "");
  EXPECT_EQ(check_email(std::string(10000, 'a')), msg::kEmailTooLong);
}

// ---- password ----

TEST(AccountPassword, RuleNeedsEveryClassAndSixCharacters) {
  EXPECT_EQ(check_password("Abcde1"), "");
  EXPECT_EQ(check_password("Zz9 !?~"), "");
  for (const char* weak : {"", "Abcd1", "abcdef1", "ABCDEF1", "Abcdefg", "123456", "ABC123", "abc123"}) {
    EXPECT_EQ(check_password(weak), msg::kPasswordWeak) << weak;
  }
}

TEST(AccountPassword, CountsCharactersNotBytes) {
  // "Aa1" plus three two-byte letters: six characters, nine bytes.
  EXPECT_EQ(check_password("Aa1\xC3\xA9\xC3\xA9\xC3\xA9"), "");
  // "Aa1" plus one two-byte letter: four characters, five bytes.
  EXPECT_EQ(check_password("Aa1\xC3\xA9"
                           "b"),
            msg::kPasswordWeak);
  // Non-ASCII upper case does not stand in for an ASCII one.
  EXPECT_EQ(check_password("\xC3\x89"
                           "abcde1"),
            msg::kPasswordWeak);
}

TEST(AccountPassword, ByteLimit) {
  std::string p = "Aa1" + std::string(kMaxPasswordBytes - 3, 'x');
  ASSERT_EQ(p.size(), 1024u);
  EXPECT_EQ(check_password(p), "");
  p.push_back('x');
  EXPECT_EQ(check_password(p), msg::kPasswordTooLong);
  // Over the limit is reported alone even if the other rules also fail.
  EXPECT_EQ(check_password(std::string(5000, 'a')), msg::kPasswordTooLong);
}

// ---- date of birth ----

TEST_F(AccountSignup, BirthdateFormat) {
  for (const char* bad : {"1990-5-17", "17-05-1990", "1990/05/17", "19900517", "1990-05-17 ", " 1990-05-17",
                          "1990-05-1x", "+990-05-17", "1990-05-17T00:00", "abcd-ef-gh", "1990--5-17"}) {
    EXPECT_EQ(check_birthdate(bad, clock_), msg::kBirthdateFormat) << bad;
  }
  EXPECT_EQ(check_birthdate("", clock_), msg::kBirthdateRequired);
}

TEST_F(AccountSignup, BirthdateMustBeACalendarDate) {
  for (const char* bad : {"1990-02-30", "1990-13-01", "1990-00-10", "1990-01-00", "1990-04-31", "1900-02-29",
                          "2001-02-29", "0000-01-01", "1990-01-32"}) {
    EXPECT_EQ(check_birthdate(bad, clock_), msg::kBirthdateInvalid) << bad;
  }
  // Leap years: divisible by 4, except centuries not divisible by 400.
  EXPECT_EQ(check_birthdate("2000-02-29", clock_), "");
  EXPECT_EQ(check_birthdate("1996-02-29", clock_), "");
  EXPECT_EQ(check_birthdate("1990-12-31", clock_), "");
  EXPECT_EQ(check_birthdate("0001-01-01", clock_), "");
}

TEST_F(AccountSignup, BirthdateInTheFuture) {
  EXPECT_EQ(check_birthdate("2026-11-30", clock_), msg::kBirthdateFuture);
  EXPECT_EQ(check_birthdate("9999-12-31", clock_), msg::kBirthdateFuture);
  // Born today: not in the future, but zero years old.
  EXPECT_EQ(check_birthdate("2026-11-29", clock_), msg::kTooYoung);
}

TEST(AccountSignupAge, EighteenthBirthdayIsTheFirstDayAllowed) {
  ManualClock clock(utc_ms(2026, 11, 29));
  EXPECT_EQ(check_birthdate("2008-11-29", clock), "");
  EXPECT_EQ(check_birthdate("2008-11-30", clock), msg::kTooYoung);
  EXPECT_EQ(check_birthdate("2008-11-28", clock), "");
  // The last millisecond of the day before: still 17.
  clock.set_ms(utc_ms(2026, 11, 29) - 1);
  EXPECT_EQ(check_birthdate("2008-11-29", clock), msg::kTooYoung);
}

TEST(AccountSignupAge, TodayIsTakenInUtc) {
  // 23:59:59.999 UTC on 2026-11-28 is already the 29th east of UTC, but the rule uses UTC.
  ManualClock clock(utc_ms(2026, 11, 28, 24 * 3600 * 1000 - 1));
  EXPECT_EQ(check_birthdate("2008-11-29", clock), msg::kTooYoung);
  EXPECT_EQ(check_birthdate("2026-11-29", clock), msg::kBirthdateFuture);
  clock.advance_ms(1);
  EXPECT_EQ(check_birthdate("2008-11-29", clock), "");
}

TEST(AccountSignupAge, LeapDayBirthdayTurnsEighteenOnMarchFirst) {
  // Born 2008-02-29; 2026 is not a leap year.
  ManualClock clock(utc_ms(2026, 2, 28, 12 * 3600 * 1000));
  EXPECT_EQ(check_birthdate("2008-02-29", clock), msg::kTooYoung);
  clock.set_ms(utc_ms(2026, 3, 1));
  EXPECT_EQ(check_birthdate("2008-02-29", clock), "");
  // Born 2004-02-29, 18 in the non-leap year 2022.
  clock.set_ms(utc_ms(2022, 2, 28));
  EXPECT_EQ(check_birthdate("2004-02-29", clock), msg::kTooYoung);
  clock.set_ms(utc_ms(2022, 3, 1));
  EXPECT_EQ(check_birthdate("2004-02-29", clock), "");
}

TEST(AccountSignupAge, AnniversaryInALeapYearNeedsNoShift) {
  // Born 2002-02-28: 18 on 2020-02-28, the day before the leap day.
  ManualClock clock(utc_ms(2020, 2, 28));
  EXPECT_EQ(check_birthdate("2002-02-28", clock), "");
  EXPECT_EQ(check_birthdate("2002-03-01", clock), msg::kTooYoung);
  // Born 2002-03-01: 18 on 2020-03-01, the day after the leap day.
  clock.set_ms(utc_ms(2020, 2, 29));
  EXPECT_EQ(check_birthdate("2002-03-01", clock), msg::kTooYoung);
  clock.set_ms(utc_ms(2020, 3, 1));
  EXPECT_EQ(check_birthdate("2002-03-01", clock), "");
}

TEST(AccountSignupAge, ClockBeforeTheEpoch) {
  // The clock may report times before 1970 (tests, odd systems); floor, not truncation, is used.
  ManualClock clock(utc_ms(1969, 12, 31, 1));
  EXPECT_EQ(check_birthdate("1951-12-31", clock), "");
  EXPECT_EQ(check_birthdate("1952-01-01", clock), msg::kTooYoung);
  EXPECT_EQ(check_birthdate("1970-01-01", clock), msg::kBirthdateFuture);
}

}  // namespace
}  // namespace postern::account
