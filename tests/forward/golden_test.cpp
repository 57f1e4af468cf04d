// The golden runner: every case folder of a golden directory (the project's copy in
// tests/data/golden, or the folder named by $ATTEND_GOLDEN_DIR) through every path and every T,
// one line per (case, path, T):
//   golden case=<name> path=<path> type=<T> max_abs_err=<e> ref_max_abs=<m> lse_max_abs_err=<e>
// where both errors are against the golden (PyTorch float64) out and lse. The verdict uses the
// tolerance of support/attend_test.hpp: f64 and f32 are judged against the golden values; bf16 and
// f16 against the naive double reference (support/reference.hpp) on the same T-rounded inputs
// (rounding q and k to 8 or 11 bits moves logits in the hundreds by whole units, which is the input's
// error, not the kernel's). That reference is itself checked against the golden values, gradients
// included, by support/reference_test.cpp. A case with dropout (the keys dropout, dropout_seed,
// dropout_offset) runs in training mode with its seed and offset.
// Every type must reproduce the -inf pattern of lse exactly (rows that see no key).
// Set ATTEND_GOLDEN_VERBOSE=1 to also print the judged errors beside their tolerances.

#include <gtest/gtest.h>

#include <cstdio>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "support/attend_test.hpp"
#include "support/golden.hpp"
#include "support/reference.hpp"

namespace {

using attend::Index;
using attend_test::GoldenCase;
using attend_test::Inputs;

/// Positions where exactly one of a, b is -inf.
std::size_t neg_inf_mismatches(const std::vector<double>& a, const std::vector<double>& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const bool ai = std::isinf(a[i]) && a[i] < 0, bi = std::isinf(b[i]) && b[i] < 0;
    n += ai != bi ? 1 : 0;
  }
  return n + (a.size() != b.size() ? 1 : 0);
}

template <typename T>
void run_case(const GoldenCase& c) {
  constexpr bool k16 = !std::is_same_v<T, double> && !std::is_same_v<T, float>;
  const Inputs fed = attend_test::rounded<T>(c.in);
  // The judge: the golden values themselves, or for 16-bit the naive reference on `fed`.
  std::vector<double> judge_out = c.out, judge_lse = c.lse;
  if constexpr (k16) {
    const attend_test::Forward ref = attend_test::naive_forward(fed, c.dropout);
    judge_out = ref.out;
    judge_lse = ref.lse;
  }
  const double keep_scale = c.dropout.active() && c.dropout.p < 1 ? c.dropout.keep_scale() : 1.0;
  const attend_test::Tolerance tol = attend_test::tolerance<T>(
      fed, attend_test::max_abs_finite(judge_out), attend_test::max_abs_finite(judge_lse), keep_scale);

  for (const attend::Path path : attend_test::kAllPaths) {
    const std::string what = "case=" + c.name + " path=" + attend::path_name(path) + " type=" + attend::type_name<T>();
    const attend_test::RunSpec spec = attend_test::golden_spec(c, path);
    // A head wider than the tiled kernels take cannot run on them: asking for that path alone is
    // documented to be an attend::Error. Check that, and still print the case's line (errors nan).
    constexpr Index kMax = attend::Attend<T>::kMaxTiledHeadDim;
    if (path != attend::Path::math && (c.in.D > kMax || c.in.Dv > kMax)) {
      EXPECT_THROW(attend_test::run<T>(c.in, spec), attend::Error) << what;
      std::printf("golden %s max_abs_err=nan ref_max_abs=%.3e lse_max_abs_err=nan\n", what.c_str(),
                  attend_test::max_abs_finite(c.out));
      continue;
    }
    attend_test::Result<T> r;
    try {
      r = attend_test::run<T>(c.in, spec);
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": threw " << e.what();
      continue;
    }
    const auto g = attend_test::compare(r.out, c.out);
    const auto gl = attend_test::compare(r.lse, c.lse);
    std::printf("golden %s max_abs_err=%.3e ref_max_abs=%.3e lse_max_abs_err=%.3e\n", what.c_str(), g.max_abs_err,
                attend_test::max_abs_finite(c.out), gl.max_abs_err);

    const auto j = k16 ? attend_test::compare(r.out, judge_out) : g;
    const auto jl = k16 ? attend_test::compare(r.lse, judge_lse) : gl;
    if (attend_test::golden_verbose()) {
      std::printf("  judged vs %s: out %.3e / tol %.3e (%.3f)  lse %.3e / tol %.3e (%.3f)\n",
                  k16 ? "double-on-rounded" : "golden", j.max_abs_err, tol.out, j.max_abs_err / tol.out,
                  jl.max_abs_err, tol.lse, jl.max_abs_err / tol.lse);
    }
    EXPECT_EQ(r.dispatch.path, path) << what << ": the forced path did not run";
    EXPECT_LE(j.max_abs_err, tol.out) << what << ": out error at "
                                      << attend_test::where4(j.worst, c.in.Hq, c.in.Nq, c.in.Dv) << " got "
                                      << r.out[j.worst] << " want " << judge_out[j.worst];
    EXPECT_LE(jl.max_abs_err, tol.lse) << what << ": lse error at "
                                       << attend_test::where4(jl.worst, c.in.Hq, c.in.Nq, 1) << " got "
                                       << r.lse[jl.worst] << " want " << judge_lse[jl.worst];
    // Rows that see no key: lse exactly -inf where the judge has it, and only there. (For 16-bit the
    // judge's dead rows are the golden ones unless rounding the inputs to T makes an additive mask
    // entry -inf, e.g. -1e9 in f16: then the T computation rightly sees a dead row too.)
    EXPECT_EQ(neg_inf_mismatches(r.lse, judge_lse), 0u) << what << ": lse's -inf rows differ from the "
                                                        << (k16 ? "reference's" : "golden ones");
  }
}

TEST(Golden, EveryCaseEveryPathEveryType) {
  attend_test::for_each_golden_case([](const GoldenCase& c) {
    run_case<double>(c);
    run_case<float>(c);
    run_case<Eigen::bfloat16>(c);
    run_case<Eigen::half>(c);
  });
  std::fflush(stdout);
}

}  // namespace
