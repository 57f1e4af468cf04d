#ifndef ATTEND_TESTS_SUPPORT_CHECK_HPP
#define ATTEND_TESTS_SUPPORT_CHECK_HPP

// GoogleTest checks shared by the tests: the element types, and every path against the naive
// reference (support/reference.hpp) with the tolerance of support/attend_test.hpp.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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

// ---- Gradients ----

/// Whether $ATTEND_GRAD_VERBOSE is set (not "0"): the gradient checks then print each error beside its
/// tolerance.
inline bool grad_verbose() {
  const char* env = std::getenv("ATTEND_GRAD_VERBOSE");
  return env != nullptr && *env != '\0' && std::string(env) != "0";
}

/// The tolerance of each gradient of a T computation of `in` against `ref` (grad_tolerance in
/// attend_test.hpp), with the number of terms each element sums: Nk for dq, the Nq · Hq / Hkv query
/// rows that read a kv head for dk and dv, and the (b, h, i, j) one mask element stands for in dmask;
/// and, for dq, dk and dmask, the error inherited through D_i = rowsum(dout ∘ out).
struct GradTolerance {
  double dq = 0, dk = 0, dv = 0, dmask = 0;
};

template <typename T>
GradTolerance grad_tolerances(const Inputs& in, const Gradients& ref) {
  const Inputs fed = rounded<T>(in);
  const Index rows_per_kv = in.Nq * (in.Hkv > 0 ? in.Hq / in.Hkv : 1);
  const Index mask_n = in.mask_size() > 0 ? in.B * in.Hq * in.Nq * in.Nk / in.mask_size() : 1;
  GradTolerance t;
  t.dq = grad_tolerance<T>(fed, max_abs_finite(ref.dq), ref.terms.dq, in.Nk, ref.rowsum_terms.dq,
                          ref.rowsum_values.dq);
  t.dk = grad_tolerance<T>(fed, max_abs_finite(ref.dk), ref.terms.dk, rows_per_kv, ref.rowsum_terms.dk,
                          ref.rowsum_values.dk);
  t.dv = grad_tolerance<T>(fed, max_abs_finite(ref.dv), ref.terms.dv, rows_per_kv);
  t.dmask = grad_tolerance<T>(fed, max_abs_finite(ref.dmask), ref.terms.dmask, mask_n, ref.rowsum_terms.dmask,
                             ref.rowsum_values.dmask);
  return t;
}

/// Checks one backward run's dq, dk, dv (and dmask where both have it) against reference gradients
/// with the tolerance above; NaN and Inf must be where the reference has them (compare()).
template <typename T>
void expect_grads_close(const GradResult<T>& got, const Gradients& ref, const Inputs& in, const std::string& what) {
  const GradTolerance tol = grad_tolerances<T>(in, ref);
  const struct {
    const char* name;
    const std::vector<double>& got;
    const std::vector<double>& ref;
    double tol;
    Index H, N, X;  // for where4
  } grads[] = {{"dq", got.dq, ref.dq, tol.dq, in.Hq, in.Nq, in.D},
               {"dk", got.dk, ref.dk, tol.dk, in.Hkv, in.Nk, in.D},
               {"dv", got.dv, ref.dv, tol.dv, in.Hkv, in.Nk, in.Dv},
               {"dmask", got.dmask, ref.dmask, tol.dmask, 1, 1, std::max<Index>(1, in.mask_size())}};
  for (const auto& g : grads) {
    if (g.got.empty() && g.ref.empty()) continue;
    if (std::string(g.name) == "dmask" && (g.got.empty() || g.ref.empty())) continue;  // not asked for
    const Diff d = compare(g.got, g.ref);
    if (grad_verbose()) {
      std::printf("  grad %s %s: %.3e / tol %.3e (%.4f)\n", what.c_str(), g.name, d.max_abs_err, g.tol,
                  g.tol > 0 ? d.max_abs_err / g.tol : 0.0);
    }
    EXPECT_LE(d.max_abs_err, g.tol) << what << ": " << g.name << " at " << where4(d.worst, g.H, g.N, g.X) << " is "
                                    << (g.got.empty() ? 0.0 : g.got[d.worst]) << ", reference "
                                    << (g.ref.size() > d.worst ? g.ref[d.worst] : 0.0);
  }
}

/// The kernel a backward path runs (Dispatch::kernel of a backward call).
inline attend::Kernel backward_kernel_of(attend::Path p) {
  switch (p) {
    case attend::Path::flash: return attend::Kernel::key_splits;
    case attend::Path::mem_efficient: return attend::Kernel::query_chunks;
    default: return attend::Kernel::contraction;
  }
}

/// Runs the backward of `in` with `dout` as T on every path (with `spec`'s dropout, seed, offset and
/// device; dmask too if asked) and checks each against the naive backward in double on the T-rounded
/// inputs with the same dropout.
template <typename T>
void expect_grad_paths_match_reference(const Inputs& in, const std::vector<double>& dout, const std::string& what,
                                       RunSpec spec = {}, bool want_dmask = false) {
  const Gradients ref = grad_reference<T>(in, dout, spec);
  for (const attend::Path p : kAllPaths) {
    spec.route = forced(p);
    const std::string w = what + " type=" + attend::type_name<T>() + " path=" + attend::path_name(p);
    GradResult<T> got;
    try {
      got = run_grad<T>(in, dout, spec, want_dmask);
    } catch (const std::exception& e) {
      ADD_FAILURE() << w << ": threw " << e.what();
      continue;
    }
    EXPECT_EQ(got.dispatch.path, p) << w;
    EXPECT_EQ(got.dispatch.kernel, backward_kernel_of(p)) << w;
    expect_grads_close(got, ref, in, w);
  }
}

/// The same for all four element types.
inline void expect_grad_paths_match_reference_all_types(const Inputs& in, const std::vector<double>& dout,
                                                        const std::string& what, const RunSpec& spec = {},
                                                        bool want_dmask = false) {
  expect_grad_paths_match_reference<double>(in, dout, what, spec, want_dmask);
  expect_grad_paths_match_reference<float>(in, dout, what, spec, want_dmask);
  expect_grad_paths_match_reference<Eigen::bfloat16>(in, dout, what, spec, want_dmask);
  expect_grad_paths_match_reference<Eigen::half>(in, dout, what, spec, want_dmask);
}

}  // namespace attend_test

#endif  // ATTEND_TESTS_SUPPORT_CHECK_HPP
