// Tests for postern/util/result.h: Result<T>, Status, and the POSTERN_TRY / POSTERN_CHECK macros.
#include "postern/util/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace postern_result_test {

// A layer-style error enum of the tests' own, registered the way each layer registers its Errc.
enum class TestErrc { first = 1, second, third };

class TestCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "postern.test"; }
  std::string message(int c) const override { return "test error " + std::to_string(c); }
};

std::error_code make_error_code(TestErrc e) {
  static const TestCategory category;
  return {static_cast<int>(e), category};
}

}  // namespace postern_result_test

template <>
struct std::is_error_code_enum<postern_result_test::TestErrc> : std::true_type {};

namespace postern_result_test {
namespace {

using postern::Result;
using postern::Status;

TEST(UtilResult, HoldsAValue) {
  Result<int> r = 42;
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
  EXPECT_FALSE(r.error());
  EXPECT_EQ(r.error(), std::error_code{});
}

TEST(UtilResult, HoldsAnErrorFromAnEnum) {
  Result<int> r = TestErrc::second;
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error(), TestErrc::second);
  EXPECT_NE(r.error(), TestErrc::first);
  EXPECT_EQ(r.error().value(), 2);
  EXPECT_STREQ(r.error().category().name(), "postern.test");
  EXPECT_EQ(r.error().message(), "test error 2");
}

TEST(UtilResult, HoldsAnErrorFromAnErrorCode) {
  const std::error_code ec = make_error_code(TestErrc::third);
  Result<std::string> r = ec;
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ec);
  // Errors of another category with the same number are different errors.
  Result<std::string> other = std::make_error_code(std::errc::invalid_argument);
  EXPECT_NE(other.error(), r.error());
}

TEST(UtilResult, ValueAccessorsReachTheStoredObject) {
  Result<std::string> r = std::string("hello");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 5u);
  r->append(" world");
  EXPECT_EQ(*r, "hello world");
  const Result<std::string>& cr = r;
  EXPECT_EQ(cr.value(), "hello world");
  EXPECT_EQ(cr->front(), 'h');
}

TEST(UtilResult, RvalueValueMovesOut) {
  Result<std::vector<int>> r = std::vector<int>{1, 2, 3};
  std::vector<int> taken = std::move(r).value();
  EXPECT_EQ(taken, (std::vector<int>{1, 2, 3}));

  Result<std::unique_ptr<int>> p = std::make_unique<int>(7);
  ASSERT_TRUE(p.ok());
  std::unique_ptr<int> owned = *std::move(p);
  ASSERT_NE(owned, nullptr);
  EXPECT_EQ(*owned, 7);
}

TEST(UtilResult, StatusDefaultsToOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(static_cast<bool>(s));
  EXPECT_FALSE(s.error());
  Status braces = {};
  EXPECT_TRUE(braces.ok());
}

TEST(UtilResult, StatusHoldsAnError) {
  Status s = TestErrc::first;
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(static_cast<bool>(s));
  EXPECT_EQ(s.error(), TestErrc::first);
  Status t = make_error_code(TestErrc::third);
  EXPECT_EQ(t.error(), TestErrc::third);
}

// ---- POSTERN_TRY / POSTERN_CHECK ----

Result<int> parse_positive(int x) {
  if (x <= 0) return TestErrc::first;
  return x;
}

Status require_even(int x) {
  if (x % 2 != 0) return TestErrc::second;
  return {};
}

// Two TRYs in one function (the macro must make distinct temporaries) and a CHECK.
Result<int> sum_of_even_positives(int a, int b, int& steps) {
  POSTERN_TRY(int x, parse_positive(a));
  ++steps;
  POSTERN_TRY(const int y, parse_positive(b));
  ++steps;
  POSTERN_CHECK(require_even(x + y));
  ++steps;
  return x + y;
}

TEST(UtilResult, TryAndCheckPassValuesThrough) {
  int steps = 0;
  auto r = sum_of_even_positives(3, 5, steps);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, 8);
  EXPECT_EQ(steps, 3);
}

TEST(UtilResult, TryReturnsTheFirstErrorAndStopsThere) {
  int steps = 0;
  auto r = sum_of_even_positives(-1, 5, steps);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), TestErrc::first);
  EXPECT_EQ(steps, 0);

  steps = 0;
  auto r2 = sum_of_even_positives(2, 0, steps);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error(), TestErrc::first);
  EXPECT_EQ(steps, 1);
}

TEST(UtilResult, CheckReturnsTheStatusError) {
  int steps = 0;
  auto r = sum_of_even_positives(2, 5, steps);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), TestErrc::second);
  EXPECT_EQ(steps, 2);
}

// TRY of a Result<T> inside a function returning Status, and of a move-only value.
Status consume(int x, std::unique_ptr<int>& out) {
  POSTERN_TRY(auto value, parse_positive(x));
  POSTERN_TRY(out, Result<std::unique_ptr<int>>(std::make_unique<int>(value * 10)));
  return {};
}

TEST(UtilResult, TryWorksInStatusFunctionsAndWithMoveOnlyValues) {
  std::unique_ptr<int> out;
  Status ok = consume(4, out);
  ASSERT_TRUE(ok.ok());
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(*out, 40);

  std::unique_ptr<int> untouched;
  Status bad = consume(0, untouched);
  EXPECT_EQ(bad.error(), TestErrc::first);
  EXPECT_EQ(untouched, nullptr);
}

// The CHECKed expression is evaluated exactly once.
Status check_counting(int& calls, bool fail) {
  POSTERN_CHECK([&]() -> Status {
    ++calls;
    if (fail) return TestErrc::third;
    return {};
  }());
  return {};
}

TEST(UtilResult, CheckEvaluatesItsExpressionOnce) {
  int calls = 0;
  EXPECT_TRUE(check_counting(calls, false).ok());
  EXPECT_EQ(calls, 1);
  Status s = check_counting(calls, true);
  EXPECT_EQ(s.error(), TestErrc::third);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace postern_result_test
