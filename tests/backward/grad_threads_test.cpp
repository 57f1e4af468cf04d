// Threads never change the backward's bits: dq, dk, dv and dmask are bitwise the same with 1, 2, 3
// and 7 threads as without a pool, run after run, on every path and type, with dropout in training,
// on shapes whose flash backward splits the keys of a (b, kv head) (fewer than GradTraits::kMinItems
// pairs: the splits add their shares of dq in a fixed order) and on one whose dmask sums over the keys
// (no split: one item owns each sum). And the paths agree with each other within the gradient
// tolerance. Built and run under ThreadSanitizer by .ci/sanitize.sh (ctest label "threads").

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"
#include "support/reference.hpp"

namespace {

using attend::Causal;
using attend::Index;
using attend::Path;
using attend_test::Inputs;
using attend_test::RunSpec;

struct Case {
  const char* name;
  Inputs in;
};

/// (B 1, Hq 4, Hkv 2, Nq 130, Nk 200, D 16, Dv 8), bottom_right: a (B, 1, Nq, Nk) additive mask sums
/// dmask over the heads of both kv heads, so the call is one item, split over its 4 key tiles.
/// (B 2, Hq 2, Hkv 1, Nq 70, Nk 67, D 8, Dv 8): an (Hq, Nq, 1) mask sums dmask over the keys: no split.
std::vector<Case> cases() {
  std::vector<Case> c;
  Inputs split = attend_test::random_inputs(1, 4, 2, 130, 200, 16, 8, 8101);
  split.causal = Causal::bottom_right;
  attend_test::set_additive_mask(split, {1, 1, 130, 200}, [](Index b, Index h, Index i, Index j) {
    const double u = attend_test::unit_hash(81, b, h, i, j);
    return u < 0.1 ? -attend_test::kInf : 2.0 * u;
  });
  c.push_back({"split_keys", split});
  Inputs over_keys = attend_test::random_inputs(2, 2, 1, 70, 67, 8, 8, 8102);
  attend_test::set_additive_mask(over_keys, {2, 70, 1}, [](Index, Index h, Index i, Index) { return 0.1 * i - h; });
  c.push_back({"dmask_over_keys", over_keys});
  return c;
}

RunSpec training(Path p) {
  RunSpec s = attend_test::on(p);
  s.dropout = 0.2;
  s.train = true;
  s.seed = 0x5eed5eed12345ULL;
  s.offset = 7;
  return s;
}

template <typename T>
void expect_same_bits(const attend_test::GradResult<T>& a, const attend_test::GradResult<T>& b, const std::string& w) {
  EXPECT_EQ(attend_test::first_diff(a.raw_dq, b.raw_dq), -1) << w << ": dq";
  EXPECT_EQ(attend_test::first_diff(a.raw_dk, b.raw_dk), -1) << w << ": dk";
  EXPECT_EQ(attend_test::first_diff(a.raw_dv, b.raw_dv), -1) << w << ": dv";
  EXPECT_EQ(attend_test::first_diff(a.raw_dmask, b.raw_dmask), -1) << w << ": dmask";
}

template <typename T>
class GradThreads : public ::testing::Test {};
TYPED_TEST_SUITE(GradThreads, attend_test::AllTypes, attend_test::TypeNames);

TYPED_TEST(GradThreads, SameBitsForAnyThreadCountAndRun) {
  using T = TypeParam;
  for (const Case& c : cases()) {
    const std::vector<double> dout = attend_test::randn(c.in.out_size(), 8103);
    for (const Path p : attend_test::kAllPaths) {
      const std::string w = std::string(c.name) + " path=" + attend::path_name(p);
      const RunSpec spec = training(p);
      const auto base = attend_test::run_grad<T>(c.in, dout, spec, true);
      ASSERT_FALSE(base.raw_dmask.empty()) << w;
      expect_same_bits(base, attend_test::run_grad<T>(c.in, dout, spec, true), w + " second run");
      for (int threads : {1, 2, 3, 7}) {
        Eigen::ThreadPool pool(threads);
        const Eigen::ThreadPoolDevice device(&pool, threads);
        RunSpec s = spec;
        s.device = &device;
        expect_same_bits(base, attend_test::run_grad<T>(c.in, dout, s, true), w + " threads=" + std::to_string(threads));
      }
    }
  }
}

// flash and mem_efficient against math: within twice the gradient tolerance (each is within one
// tolerance of the reference, tests/backward/gradients_test.cpp), with dropout (the same keep-mask).
TYPED_TEST(GradThreads, PathsAgreeWithinTolerance) {
  using T = TypeParam;
  for (const Case& c : cases()) {
    const std::vector<double> dout = attend_test::randn(c.in.out_size(), 8104);
    const attend_test::Gradients ref = attend_test::grad_reference<T>(c.in, dout, training(Path::math));
    const attend_test::GradTolerance tol = attend_test::grad_tolerances<T>(c.in, ref);
    const auto math = attend_test::run_grad<T>(c.in, dout, training(Path::math), true);
    for (const Path p : {Path::flash, Path::mem_efficient}) {
      const std::string w = std::string(c.name) + " path=" + attend::path_name(p) + " vs math";
      const auto r = attend_test::run_grad<T>(c.in, dout, training(p), true);
      EXPECT_LE(attend_test::compare(r.dq, math.dq).max_abs_err, 2 * tol.dq) << w << ": dq";
      EXPECT_LE(attend_test::compare(r.dk, math.dk).max_abs_err, 2 * tol.dk) << w << ": dk";
      EXPECT_LE(attend_test::compare(r.dv, math.dv).max_abs_err, 2 * tol.dv) << w << ": dv";
      EXPECT_LE(attend_test::compare(r.dmask, math.dmask).max_abs_err, 2 * tol.dmask) << w << ": dmask";
    }
  }
}

}  // namespace
