// The backward against central differences of the library's own forward pass, in double, on every
// path: each element of q, k, v and of an additive mask is moved both ways, L = Σ out ∘ dout is
// evaluated by Attend<double> on the same path (the same dropout seed and offset: the same keep-mask),
// and (L(x + h) - L(x - h)) / 2h must match the backward's gradient of that element. This checks the
// backward against the forward it differentiates, independently of the naive reference: masks of
// each kind and rank, both causal alignments, GQA and MQA, dropout with a fixed seed and offset,
// Dv != D, a negative scale, rows that see no key, and dmask.
//
// Tolerance. With u = eps(double) and the step h = cbrt(u) · max(1, |x|) (about 6e-6: the step that
// balances the two errors of a central difference), the difference's error is
//   rounding:   two forward passes each carry an absolute error of order u · A, A = Σ |out ∘ dout| (the
//               size of L's terms; the forward's own bound, tolerance() in support/attend_test.hpp, is
//               a small multiple of u per element), divided by 2h: ~ u^(2/3) · A;
//   truncation: h² / 6 · |∂³L/∂x³|, and for O(1) logits the third derivative of L is of the size of L's
//               terms too (each derivative of softmax brings a factor |∂s/∂x| ≤ |scale| · max |q|, |k|,
//               and of an additive mask 1): ~ u^(2/3) · A.
// So  tol = 64 · u^(2/3) · (1 + A + |fd|), about 2.4e-9 · (1 + A + |fd|): 64 covers the constants
// (the forward's C = 4 twice, the derivatives' factors up to 2-3 for these inputs). Measured
// (ATTEND_GRAD_VERBOSE=1): the largest |grad - fd| is under 1% of it. A wrong factor (a missing scale,
// the dropout's 1/(1 - p), a GQA or broadcast sum, a sign, a mask element off by one) moves a gradient
// by a sizeable fraction of itself, of order 1e-2 to 1 here: millions of times the tolerance.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <ostream>
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

struct FdCase {
  const char* name;
  std::function<Inputs()> make;
  attend_test::DropoutSpec dropout;  // p = 0: none
};

void PrintTo(const FdCase& c, std::ostream* os) { *os << c.name; }

const FdCase kCases[] = {
    // GQA, an additive (Nq, Nk) mask with -inf entries (broadcast over B and heads), bottom_right.
    {"GqaAdditiveRank2BottomRight",
     [] {
       Inputs in = attend_test::random_inputs(1, 4, 2, 5, 7, 3, 4, 7101);
       in.causal = Causal::bottom_right;
       attend_test::set_additive_mask(in, {5, 7}, [](Index, Index, Index i, Index j) {
         return (i + 2 * j) % 5 == 0 ? -attend_test::kInf : 0.5 * std::sin(1.0 + i + 3.0 * j);
       });
       return in;
     },
     {}},
    // A bool key-padding mask (B, 1, 1, Nk) that empties batch 1 (rows that see no key: zero
    // gradients, which the differences confirm), top_left with Nq > Nk, Dv != D.
    {"BoolKeyPaddingTopLeftTall",
     [] {
       Inputs in = attend_test::random_inputs(2, 2, 1, 7, 4, 3, 5, 7102);
       in.causal = Causal::top_left;
       attend_test::set_keep_mask(in, {2, 1, 1, 4}, [](Index b, Index, Index, Index j) { return b == 0 && j != 2; });
       return in;
     },
     {}},
    // A bool mask of rank 3 (Hq, Nq, Nk) with a fully masked row, bottom_right with Nq > Nk (rows
    // without keys), MQA.
    {"BoolRank3BottomRightTallMqa",
     [] {
       Inputs in = attend_test::random_inputs(1, 3, 1, 6, 4, 2, 3, 7103);
       in.causal = Causal::bottom_right;
       attend_test::set_keep_mask(in, {3, 6, 4}, [](Index, Index h, Index i, Index j) {
         return !(h == 2 && i == 4) && (h + i + j) % 4 != 1;
       });
       return in;
     },
     {}},
    // A full-rank additive mask (dmask written directly), top_left, a negative custom scale, dropout.
    {"AdditiveFullRankDropoutNegativeScale",
     [] {
       Inputs in = attend_test::random_inputs(1, 2, 1, 6, 5, 4, 3, 7104);
       in.causal = Causal::top_left;
       in.scale = -0.7;
       attend_test::set_additive_mask(in, {1, 2, 6, 5},
                                      [](Index, Index h, Index i, Index j) { return 0.3 * std::cos(h + i * j + 0.5); });
       return in;
     },
     {0.3, 77, 2}},
    // A rank-1 additive mask (one bias per key: dmask sums over B, heads and queries), MQA, dropout
    // with a seed above 2^32, Nq < Nk, Dv > D.
    {"AdditiveRank1DropoutMqa",
     [] {
       Inputs in = attend_test::random_inputs(2, 2, 1, 3, 8, 2, 5, 7105);
       attend_test::set_additive_mask(in, {8}, [](Index, Index, Index, Index j) { return 0.2 * j - 0.5; });
       return in;
     },
     {0.25, (std::uint64_t{1} << 32) + 5, 1}},
    // An (Hq, 1, Nk) additive mask (dmask sums over B and queries), bottom_right with Nq < Nk.
    {"AdditiveRank3BroadcastQueriesBottomRightWide",
     [] {
       Inputs in = attend_test::random_inputs(2, 2, 2, 3, 6, 3, 2, 7106);
       in.causal = Causal::bottom_right;
       attend_test::set_additive_mask(in, {2, 1, 6}, [](Index, Index h, Index, Index j) { return 0.4 * h - 0.1 * j; });
       return in;
     },
     {}},
    // A (B, 1, Nq, 1) additive mask (dmask sums over heads and keys, so the flash backward does not
    // split the keys) with a -inf row, GQA.
    {"AdditiveOneBiasPerQueryGqa",
     [] {
       Inputs in = attend_test::random_inputs(2, 4, 2, 4, 5, 2, 2, 7107);
       attend_test::set_additive_mask(in, {2, 1, 4, 1}, [](Index b, Index, Index i, Index) {
         return b == 1 && i == 2 ? -attend_test::kInf : 0.3 * i - 0.2 * b;
       });
       return in;
     },
     {}},
    // No mask, top_left with Nq < Nk (keys nobody sees: their gradients are 0), Dv != D.
    {"NoMaskTopLeftWide",
     [] {
       Inputs in = attend_test::random_inputs(1, 1, 1, 4, 9, 5, 2, 7108);
       in.causal = Causal::top_left;
       return in;
     },
     {}},
};

double loss(const Inputs& in, const std::vector<double>& dout, const RunSpec& spec, double* terms = nullptr) {
  const attend_test::Result<double> r = attend_test::run<double>(in, spec);
  double l = 0, a = 0;
  for (std::size_t e = 0; e < r.out.size(); ++e) {
    l += r.out[e] * dout[e];
    a += std::abs(r.out[e] * dout[e]);
  }
  if (terms != nullptr) *terms = a;
  return l;
}

class FiniteDifferences : public ::testing::TestWithParam<std::tuple<FdCase, Path>> {};

TEST_P(FiniteDifferences, GradientsMatchTheForward) {
  const FdCase& fc = std::get<0>(GetParam());
  const Path path = std::get<1>(GetParam());
  const Inputs in = fc.make();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 7199);
  RunSpec spec = attend_test::on(path);
  if (fc.dropout.active()) {
    spec.dropout = fc.dropout.p;
    spec.train = true;
    spec.seed = fc.dropout.seed;
    spec.offset = fc.dropout.offset;
  }
  const bool additive = in.mask == attend_test::MaskKind::additive;
  const attend_test::GradResult<double> g = attend_test::run_grad<double>(in, dout, spec, additive);
  ASSERT_EQ(g.dispatch.path, path);
  double A = 0;
  (void)loss(in, dout, spec, &A);
  const double u = attend_test::eps<double>();
  const double u23 = std::cbrt(u) * std::cbrt(u);

  auto check = [&](const char* what, std::vector<double> Inputs::*member, const std::vector<double>& grad) {
    const std::vector<double>& x = in.*member;
    ASSERT_EQ(grad.size(), x.size()) << what;
    int nonzero = 0;
    double worst = 0;  // the largest |grad - fd| / tol
    for (std::size_t e = 0; e < x.size(); ++e) {
      if (!std::isfinite(x[e])) {  // a -inf mask entry: no derivative, and its dS is 0
        EXPECT_EQ(grad[e], 0.0) << what << "[" << e << "] at a -inf mask entry";
        continue;
      }
      const double h = std::cbrt(u) * std::max(1.0, std::abs(x[e]));
      Inputs plus = in, minus = in;
      (plus.*member)[e] += h;
      (minus.*member)[e] -= h;
      const double fd = (loss(plus, dout, spec) - loss(minus, dout, spec)) / (2 * h);
      const double tol = 64 * u23 * (1.0 + A + std::abs(fd));
      EXPECT_NEAR(grad[e], fd, tol) << what << "[" << e << "]";
      nonzero += grad[e] != 0.0;
      worst = std::max(worst, std::abs(grad[e] - fd) / tol);
    }
    if (attend_test::grad_verbose()) {
      std::printf("  fd case=%s path=%s %s: max |grad - fd| / tol = %.3f\n", fc.name, attend::path_name(path), what,
                  worst);
    }
    EXPECT_GT(nonzero, 0) << what << ": premise, some gradient is not 0";
  };
  check("dq", &Inputs::q, g.dq);
  check("dk", &Inputs::k, g.dk);
  check("dv", &Inputs::v, g.dv);
  if (additive) check("dmask", &Inputs::mask_add, g.dmask);

  if (fc.dropout.active()) {  // premise: the dropout drops something here
    RunSpec eval = spec;
    eval.train = false;
    EXPECT_NE(attend_test::run<double>(in, spec).out, attend_test::run<double>(in, eval).out);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, FiniteDifferences,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(Path::flash, Path::mem_efficient, Path::math)),
                         [](const ::testing::TestParamInfo<std::tuple<FdCase, Path>>& i) {
                           return std::string(std::get<0>(i.param).name) + "_" + attend::path_name(std::get<1>(i.param));
                         });

}  // namespace
