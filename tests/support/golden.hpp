#ifndef ATTEND_TESTS_SUPPORT_GOLDEN_HPP
#define ATTEND_TESTS_SUPPORT_GOLDEN_HPP

// The golden case format (tests/data/golden/README.md): one folder per case, holding case.txt and
// NumPy .npy files. The format is read, not a case list: any folder holding a case.txt is a case;
// unknown keys are ignored; the mask may be bool or additive of any rank 1-4.

#include <string>
#include <vector>

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

/// The case folders (those holding a case.txt) under `root`, sorted.
std::vector<std::string> golden_case_dirs(const std::string& root);

/// Loads one case folder; throws std::runtime_error on anything malformed.
GoldenCase load_golden_case(const std::string& dir);

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
