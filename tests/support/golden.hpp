#ifndef ATTEND_TESTS_SUPPORT_GOLDEN_HPP
#define ATTEND_TESTS_SUPPORT_GOLDEN_HPP

// The golden case format (tests/data/golden/README.md): one folder per case, holding case.txt and
// NumPy .npy files. The format is read, not a case list: any folder holding a case.txt is a case;
// unknown keys are ignored; the mask may be bool or additive of any rank 1-4.

#include <exception>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/attend_test.hpp"
#include "support/reference.hpp"

namespace attend_test {

struct GoldenCase {
  std::string name;
  Inputs in;
  DropoutSpec dropout;              // from the keys dropout, dropout_seed, dropout_offset; p = 0 if absent
  std::vector<double> out, lse;
  std::vector<double> dout, dq, dk, dv;  // empty where the case has no dout.npy
};

/// The folder the golden runners read: $ATTEND_GOLDEN_DIR if set, else the project's tests/data/golden.
std::string golden_root();

/// Whether $ATTEND_GOLDEN_VERBOSE (set, and not "0") asks for a line per case and check.
bool golden_verbose();

/// The case folders (those holding a case.txt) under `root`, sorted.
std::vector<std::string> golden_case_dirs(const std::string& root);

/// Loads one case folder; throws std::runtime_error on anything malformed.
GoldenCase load_golden_case(const std::string& dir);

/// Calls f(case) for every case under golden_root(), in folder-name order. A folder that does not
/// load is a failure that names it, and the other cases still run; a missing root, or one without
/// a case, fails the test (a runner that checks nothing must not pass).
template <class F>
void for_each_golden_case(F&& f) {
  const std::string root = golden_root();
  const std::vector<std::string> dirs = golden_case_dirs(root);
  ASSERT_FALSE(dirs.empty()) << "no golden case folder (holding case.txt) in " << root
                              << (std::filesystem::is_directory(root) ? "" : ": not a directory");
  for (const std::string& dir : dirs) {
    GoldenCase c;
    try {
      c = load_golden_case(dir);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot load golden case " << dir << ": " << e.what();
      continue;
    }
    f(std::as_const(c));
  }
}

/// The RunSpec of a case on path `p`: in training with the case's dropout, if it has one.
inline RunSpec golden_spec(const GoldenCase& c, attend::Path p) {
  RunSpec s = on(p);
  if (c.dropout.active()) {
    s.dropout = c.dropout.p;
    s.train = true;
    s.seed = c.dropout.seed;
    s.offset = c.dropout.offset;
  }
  return s;
}

}  // namespace attend_test

#endif  // ATTEND_TESTS_SUPPORT_GOLDEN_HPP
