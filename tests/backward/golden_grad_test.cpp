// The golden runner for the backward pass: every case folder of a golden directory (the project's copy
// in tests/data/golden, or the folder named by $ATTEND_GOLDEN_DIR) that holds dout, dq, dk and dv runs
// forward (with lse) and backward on every path and every T, one line per (case, path, T):
//   golden_grad case=<name> path=<path> type=<T> dq_max_abs_err=<e> dk_max_abs_err=<e> dv_max_abs_err=<e> ref_max_abs=<m>
// where the errors are against the golden (PyTorch float64) gradients and ref_max_abs is the largest
// |value| among the three golden gradients. The verdict uses grad_tolerance (support/attend_test.hpp)
// as the forward runner (tests/forward/golden_test.cpp) uses tolerance: f64 and f32 are judged against
// the golden values; bf16 and f16 against the naive double backward (support/reference.hpp) on the
// same T-rounded q, k, v, mask and dout, since rounding the inputs to 8 or 11 bits is the input's
// error, not the kernel's. A case with dropout (the keys dropout, dropout_seed, dropout_offset) runs
// forward and backward in training mode with its p, seed and offset.
// A case folder without dout.npy (tests/data/format_cases) is still run backward, with a fixed random
// dout, and judged against the naive reference; it prints no golden_grad line (no golden values).
// The format is read, not the case list: support/golden.cpp is the one reader.
// Set ATTEND_GOLDEN_VERBOSE=1 to also print the judged errors beside their tolerances.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"
#include "support/golden.hpp"
#include "support/reference.hpp"

namespace {

using attend::Index;
using attend_test::GoldenCase;
using attend_test::Gradients;
using attend_test::Inputs;

template <typename T>
void run_case(const GoldenCase& c, const std::vector<double>& dout, bool golden) {
  constexpr bool k16 = !std::is_same_v<T, double> && !std::is_same_v<T, float>;
  const Inputs fed = attend_test::rounded<T>(c.in);
  const std::vector<double> dout_fed = attend_test::round_all<T>(dout);
  // The judge: the golden gradients, or the naive backward on what T sees. Its terms (the tolerance's
  // magnitudes) come from the naive backward on the same inputs in either case.
  const Gradients naive = attend_test::naive_backward(golden && !k16 ? c.in : fed, golden && !k16 ? dout : dout_fed,
                                                      c.dropout);
  Gradients judge = naive;
  if (golden && !k16) {
    judge.dq = c.dq;
    judge.dk = c.dk;
    judge.dv = c.dv;
  }
  const attend_test::GradTolerance tol = attend_test::grad_tolerances<T>(c.in, judge);
  const double ref_max_abs = golden ? std::max({attend_test::max_abs_finite(c.dq), attend_test::max_abs_finite(c.dk),
                                                attend_test::max_abs_finite(c.dv)})
                                    : 0.0;

  for (const attend::Path path : attend_test::kAllPaths) {
    const std::string what = "case=" + c.name + " path=" + attend::path_name(path) + " type=" + attend::type_name<T>();
    const attend_test::RunSpec spec = attend_test::golden_spec(c, path);
    // A head wider than the tiled kernels take cannot run on them: asking for that path alone is
    // documented to be an attend::Error, for the backward as for the forward.
    constexpr Index kMax = attend::Attend<T>::kMaxTiledHeadDim;
    if (path != attend::Path::math && (c.in.D > kMax || c.in.Dv > kMax)) {
      EXPECT_THROW(attend_test::run_grad<T>(c.in, dout, spec), attend::Error) << what;
      if (golden) {
        std::printf("golden_grad %s dq_max_abs_err=nan dk_max_abs_err=nan dv_max_abs_err=nan ref_max_abs=%.3e\n",
                    what.c_str(), ref_max_abs);
      }
      continue;
    }
    attend_test::GradResult<T> r;
    try {
      r = attend_test::run_grad<T>(c.in, dout, spec);
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": threw " << e.what();
      continue;
    }
    EXPECT_EQ(r.dispatch.path, path) << what << ": the forced path did not run";
    EXPECT_EQ(r.dispatch.kernel, attend_test::backward_kernel_of(path)) << what;
    if (golden) {
      const auto eq = attend_test::compare(r.dq, c.dq), ek = attend_test::compare(r.dk, c.dk),
                 ev = attend_test::compare(r.dv, c.dv);
      std::printf("golden_grad %s dq_max_abs_err=%.3e dk_max_abs_err=%.3e dv_max_abs_err=%.3e ref_max_abs=%.3e\n",
                  what.c_str(), eq.max_abs_err, ek.max_abs_err, ev.max_abs_err, ref_max_abs);
    }
    const struct {
      const char* name;
      const std::vector<double>& got;
      const std::vector<double>& want;
      double tol;
      Index H, N, X;
    } grads[] = {{"dq", r.dq, judge.dq, tol.dq, c.in.Hq, c.in.Nq, c.in.D},
                 {"dk", r.dk, judge.dk, tol.dk, c.in.Hkv, c.in.Nk, c.in.D},
                 {"dv", r.dv, judge.dv, tol.dv, c.in.Hkv, c.in.Nk, c.in.Dv}};
    for (const auto& g : grads) {
      const auto d = attend_test::compare(g.got, g.want);
      if (attend_test::golden_verbose()) {
        std::printf("  judged vs %s: %s %s %.3e / tol %.3e (%.4f)\n",
                    golden && !k16 ? "golden" : "double-on-rounded", what.c_str(), g.name, d.max_abs_err, g.tol,
                    g.tol > 0 ? d.max_abs_err / g.tol : 0.0);
      }
      EXPECT_LE(d.max_abs_err, g.tol) << what << ": " << g.name << " error at "
                                      << attend_test::where4(d.worst, g.H, g.N, g.X) << " got "
                                      << (g.got.size() > d.worst ? g.got[d.worst] : 0.0) << " want "
                                      << (g.want.size() > d.worst ? g.want[d.worst] : 0.0);
    }
  }
}

TEST(GoldenGrad, EveryCaseEveryPathEveryType) {
  attend_test::for_each_golden_case([](const GoldenCase& c) {
    const bool golden = !c.dout.empty();
    const std::vector<double> dout =
        golden ? c.dout : attend_test::randn(c.in.out_size(), std::hash<std::string>{}(c.name) % 100000 + 17);
    if (!golden) {
      std::printf("note: case=%s has no dout.npy; its backward is judged against the naive reference\n",
                  c.name.c_str());
    }
    run_case<double>(c, dout, golden);
    run_case<float>(c, dout, golden);
    run_case<Eigen::bfloat16>(c, dout, golden);
    run_case<Eigen::half>(c, dout, golden);
  });
  std::fflush(stdout);
}

}  // namespace
