// One exception type for every user-facing failure. The CLI prints what() as a single line and
// exits non-zero, so messages must name the file (or option) and the problem in one sentence.
#pragma once
#include <stdexcept>
#include <string>

namespace vs {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// check(cond, msg): throw vs::Error(msg) when cond is false. Used for input validation, never
// for internal invariants (those are asserts).
inline void check(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace vs
