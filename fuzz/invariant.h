// How a fuzz target reports a broken invariant that is not a sanitizer finding (a round trip that
// fails, a state changed by a failed decrypt): print why, then abort, which libFuzzer records as a
// crash with the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace postern::fuzz {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "postern fuzz invariant broken: %s\n", what);
  std::abort();
}

}  // namespace postern::fuzz
