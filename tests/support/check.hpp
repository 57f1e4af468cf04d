#ifndef ATTEND_TESTS_SUPPORT_CHECK_HPP
#define ATTEND_TESTS_SUPPORT_CHECK_HPP

// GoogleTest checks shared by the tests: the element types, and every path against the naive
// reference (support/reference.hpp) with the tolerance of support/attend_test.hpp.

#include <gtest/gtest.h>

#include <string>

#include "support/attend_test.hpp"
#include "support/reference.hpp"

namespace attend_test {

/// Every element type attend supports: TYPED_TEST_SUITE(Suite, attend_test::AllTypes, attend_test::TypeNames).
using AllTypes = ::testing::Types<double, float, Eigen::bfloat16, Eigen::half>;

/// Names typed tests f64, f32, bf16, f16.
struct TypeNames {
  template <typename T>
  static std::string GetName(int) {
    return attend::type_name<T>();
  }
};

/// Checks one run against a reference with the tolerance of attend_test.hpp.
template <typename T>
void expect_close(const Result<T>& got, const Forward& ref, const Inputs& in, const std::string& what,
                  double keep_scale = 1.0) {
  const Tolerance tol = tolerance<T>(rounded<T>(in), max_abs_finite(ref.out), max_abs_finite(ref.lse), keep_scale);
  const Diff d = compare(got.out, ref.out);
  const Diff dl = compare(got.lse, ref.lse);
  EXPECT_LE(d.max_abs_err, tol.out) << what << ": out at " << where4(d.worst, in.Hq, in.Nq, in.Dv) << " is "
                                    << (got.out.empty() ? 0.0 : got.out[d.worst]) << ", reference "
                                    << (ref.out.empty() ? 0.0 : ref.out[d.worst]);
  EXPECT_LE(dl.max_abs_err, tol.lse) << what << ": lse at " << where4(dl.worst, in.Hq, in.Nq, 1) << " is "
                                     << (got.lse.empty() ? 0.0 : got.lse[dl.worst]) << ", reference "
                                     << (ref.lse.empty() ? 0.0 : ref.lse[dl.worst]);
}

/// Runs `in` as T on every path (with `spec`'s dropout, seed, offset) and checks each against the
/// naive reference in double on the T-rounded inputs with the same dropout.
template <typename T>
void expect_paths_match_reference(const Inputs& in, const std::string& what, RunSpec spec = {}) {
  const Forward ref = reference<T>(in, spec);
  const DropoutSpec drop = dropout_of(spec);
  const double keep_scale = drop.active() && drop.p < 1 ? drop.keep_scale() : 1.0;
  for (const attend::Path p : kAllPaths) {
    spec.route = forced(p);
    const std::string w = what + " type=" + attend::type_name<T>() + " path=" + attend::path_name(p);
    Result<T> got;
    try {
      got = run<T>(in, spec);
    } catch (const std::exception& e) {
      ADD_FAILURE() << w << ": threw " << e.what();
      continue;
    }
    EXPECT_EQ(got.dispatch.path, p) << w;
    expect_close(got, ref, in, w, keep_scale);
  }
}

/// The same for all four element types.
inline void expect_paths_match_reference_all_types(const Inputs& in, const std::string& what, const RunSpec& spec = {}) {
  expect_paths_match_reference<double>(in, what, spec);
  expect_paths_match_reference<float>(in, what, spec);
  expect_paths_match_reference<Eigen::bfloat16>(in, what, spec);
  expect_paths_match_reference<Eigen::half>(in, what, spec);
}

}  // namespace attend_test

#endif  // ATTEND_TESTS_SUPPORT_CHECK_HPP
