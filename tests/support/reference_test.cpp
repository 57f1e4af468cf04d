// The oracle's own tests: the naive double reference (support/reference.hpp) against the golden
// cases (PyTorch's float64 out, lse, dq, dk, dv; NumPy's for the dropout cases), its gradients
// against central finite differences (dmask too, which the golden cases lack), its Philox against
// Random123's known answers, and the rules the golden cases do not reach (hidden NaN and Inf).
// Set ATTEND_GOLDEN_VERBOSE=1 to print each case's errors as fractions of their tolerances.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/golden.hpp"
#include "support/reference.hpp"

namespace {

using attend::Causal;
using attend::Index;
using attend_test::DropoutSpec;
using attend_test::Gradients;
using attend_test::Inputs;
using attend_test::MaskKind;

std::vector<attend_test::GoldenCase> golden_cases() {
  std::vector<attend_test::GoldenCase> cases;
  attend_test::for_each_golden_case([&cases](const attend_test::GoldenCase& c) { cases.push_back(c); });
  return cases;
}

// Random123 1.09, examples/kat_vectors, "philox4x32 10" lines.
TEST(ReferencePhilox, MatchesRandom123KnownAnswers) {
  using Block = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;
  EXPECT_EQ(attend_test::philox4x32_10(Block{0u, 0u, 0u, 0u}, Key{0u, 0u}),
            (Block{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(attend_test::philox4x32_10(Block{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                                       Key{0xffffffffu, 0xffffffffu}),
            (Block{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(attend_test::philox4x32_10(Block{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                                       Key{0xa4093822u, 0x299f31d0u}),
            (Block{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

// The keep fraction of a large draw is 1 - p within 5 binomial standard deviations, and p = 1 keeps
// nothing.
TEST(ReferencePhilox, KeepFractionIsOneMinusP) {
  const DropoutSpec d{0.3, 0x0123456789abcdefull, 7};
  double kept = 0, n = 0;
  for (Index h = 0; h < 4; ++h)
    for (Index i = 0; i < 50; ++i)
      for (Index j = 0; j < 100; ++j, ++n) kept += d.keeps(4, 1, h, i, j);
  EXPECT_NEAR(kept, 0.7 * n, 5 * std::sqrt(n * 0.3 * 0.7));
  const DropoutSpec all{1.0, 5, 0};
  for (Index j = 0; j < 64; ++j) EXPECT_FALSE(all.keeps(1, 0, 0, 0, j));
}

// out and lse of every golden case (the dropout cases with their documented keep-mask), within the
// tolerance a double computation gets, and the -inf rows of lse exactly.
TEST(ReferenceGolden, ForwardMatchesEveryCase) {
  const auto cases = golden_cases();
  ASSERT_GE(cases.size(), 20u) << "premise: the golden cases are there";
  int with_dropout = 0;
  for (const auto& c : cases) {
    const attend_test::Forward f = attend_test::naive_forward(c.in, c.dropout);
    with_dropout += c.dropout.active();
    const double ks = c.dropout.active() ? c.dropout.keep_scale() : 1.0;
    const auto tol = attend_test::tolerance<double>(c.in, attend_test::max_abs_finite(c.out),
                                                    attend_test::max_abs_finite(c.lse), ks);
    const auto d = attend_test::compare(f.out, c.out), dl = attend_test::compare(f.lse, c.lse);
    if (attend_test::golden_verbose()) {
      std::printf("reference case=%s out %.3e / tol %.3e (%.4f)  lse %.3e / tol %.3e (%.4f)\n", c.name.c_str(),
                  d.max_abs_err, tol.out, d.max_abs_err / tol.out, dl.max_abs_err, tol.lse, dl.max_abs_err / tol.lse);
    }
    EXPECT_LE(d.max_abs_err, tol.out) << c.name << ": out at " << attend_test::where4(d.worst, c.in.Hq, c.in.Nq, c.in.Dv);
    EXPECT_LE(dl.max_abs_err, tol.lse) << c.name << ": lse at " << attend_test::where4(dl.worst, c.in.Hq, c.in.Nq, 1);
  }
  EXPECT_GE(with_dropout, 2) << "premise: the dropout cases are there";
}

// dq, dk and dv of every golden case, within the gradient tolerance of attend_test.hpp.
TEST(ReferenceGolden, GradientsMatchEveryCase) {
  int checked = 0;
  for (const auto& c : golden_cases()) {
    ASSERT_FALSE(c.dout.empty()) << c.name << ": no dout.npy";
    const Gradients g = attend_test::naive_backward(c.in, c.dout, c.dropout);
    const Index rows_per_kv = c.in.Nq * (c.in.Hq / c.in.Hkv);
    const struct {
      const char* name;
      const std::vector<double>& got;
      const std::vector<double>& want;
      double terms;
      Index n;
    } grads[] = {{"dq", g.dq, c.dq, g.terms.dq, c.in.Nk},
                 {"dk", g.dk, c.dk, g.terms.dk, rows_per_kv},
                 {"dv", g.dv, c.dv, g.terms.dv, rows_per_kv}};
    for (const auto& x : grads) {
      const double tol = attend_test::grad_tolerance<double>(c.in, attend_test::max_abs_finite(x.want), x.terms, x.n);
      const auto d = attend_test::compare(x.got, x.want);
      if (attend_test::golden_verbose()) {
        std::printf("reference case=%s %s %.3e / tol %.3e (%.4f)\n", c.name.c_str(), x.name, d.max_abs_err, tol,
                    d.max_abs_err / tol);
      }
      EXPECT_LE(d.max_abs_err, tol) << c.name << ": " << x.name << "[" << d.worst << "] is " << x.got[d.worst]
                                    << ", golden " << x.want[d.worst];
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

// ---- Gradients by central differences of L = Σ out ∘ dout, for every input element ----
//
// With a step h = 1e-5 · max(1, |x|), the central difference's truncation error (h² |L'''| / 6) and
// rounding error (~ u |L| / h) are both about 1e-10 here; 1e-6 · (1 + |grad|) leaves four orders of
// magnitude for them, while a wrong term (a missing scale, dropout factor, GQA sum or broadcast sum,
// a sign) is off by the size of the gradient itself.

struct FdCase {
  const char* name;
  std::function<Inputs()> make;
  DropoutSpec dropout;
};

void PrintTo(const FdCase& c, std::ostream* os) { *os << c.name; }

const FdCase kFdCases[] = {
    // GQA, an additive (Nq, Nk) mask broadcast over B and H with -inf entries, bottom_right causal.
    {"GqaAdditiveBroadcastBottomRight",
     [] {
       Inputs in = attend_test::random_inputs(2, 4, 2, 5, 7, 3, 4, 901);
       in.causal = Causal::bottom_right;
       attend_test::set_additive_mask(in, {5, 7}, [](Index, Index, Index i, Index j) {
         return (i + 2 * j) % 5 == 0 ? -attend_test::kInf : 0.5 * std::sin(1.0 + i + 3.0 * j);
       });
       return in;
     },
     {}},
    // A full-rank additive mask, top_left, a negative custom scale, dropout.
    {"AdditiveFullRankDropoutNegativeScale",
     [] {
       Inputs in = attend_test::random_inputs(1, 2, 1, 6, 5, 4, 3, 902);
       in.causal = Causal::top_left;
       in.scale = -0.7;
       attend_test::set_additive_mask(in, {1, 2, 6, 5},
                                      [](Index, Index h, Index i, Index j) { return 0.3 * std::cos(h + i * j + 0.5); });
       return in;
     },
     {0.3, 77, 2}},
    // A rank-1 additive mask (one bias per key, summed over every (b, h, i)), dropout, Nq < Nk.
    {"AdditiveRank1Dropout",
     [] {
       Inputs in = attend_test::random_inputs(2, 2, 2, 3, 8, 2, 5, 903);
       attend_test::set_additive_mask(in, {8}, [](Index, Index, Index, Index j) { return 0.2 * j - 0.5; });
       return in;
     },
     {0.25, (1ull << 32) + 5, 1}},
    // Rows that see no key (bottom_right with Nq > Nk, and a key-padding bool mask that empties a
    // batch): zero gradients, which the differences confirm.
    {"BoolMaskAndRowsWithoutKeys",
     [] {
       Inputs in = attend_test::random_inputs(2, 2, 1, 7, 4, 3, 3, 904);
       in.causal = Causal::bottom_right;
       attend_test::set_keep_mask(in, {2, 1, 1, 4}, [](Index b, Index, Index, Index j) { return b == 0 && j != 1; });
       return in;
     },
     {0.2, 9, 0}},
};

double loss(const Inputs& in, const std::vector<double>& dout, const DropoutSpec& drop) {
  const attend_test::Forward f = attend_test::naive_forward(in, drop);
  double l = 0;
  for (std::size_t e = 0; e < f.out.size(); ++e) l += f.out[e] * dout[e];
  return l;
}

class ReferenceFiniteDifferences : public ::testing::TestWithParam<FdCase> {};

TEST_P(ReferenceFiniteDifferences, GradientsMatch) {
  const FdCase& fc = GetParam();
  const Inputs in = fc.make();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 905);
  const Gradients g = attend_test::naive_backward(in, dout, fc.dropout);

  // Perturbs element e of the vector `member` selects, both ways, and compares with `grad`.
  auto check = [&](const char* what, std::vector<double> Inputs::*member, const std::vector<double>& grad) {
    const std::vector<double>& x = in.*member;
    ASSERT_EQ(grad.size(), x.size()) << what;
    int nonzero = 0;
    double worst = 0;  // the largest |grad - fd| / (1 + |fd|)
    for (std::size_t e = 0; e < x.size(); ++e) {
      if (!std::isfinite(x[e])) {  // a -inf mask entry: no derivative; its dS is 0
        EXPECT_EQ(grad[e], 0.0) << what << "[" << e << "] at a -inf mask entry";
        continue;
      }
      const double h = 1e-5 * std::max(1.0, std::abs(x[e]));
      Inputs plus = in, minus = in;
      (plus.*member)[e] += h;
      (minus.*member)[e] -= h;
      const double fd = (loss(plus, dout, fc.dropout) - loss(minus, dout, fc.dropout)) / (2 * h);
      EXPECT_NEAR(grad[e], fd, 1e-6 * (1.0 + std::abs(fd))) << what << "[" << e << "]";
      nonzero += grad[e] != 0.0;
      worst = std::max(worst, std::abs(grad[e] - fd) / (1.0 + std::abs(fd)));
    }
    if (attend_test::golden_verbose()) std::printf("reference fd case=%s %s: max |grad - fd| / (1 + |fd|) = %.2e\n", fc.name, what, worst);
    EXPECT_GT(nonzero, 0) << what << ": premise, some gradient is not 0";
  };
  check("dq", &Inputs::q, g.dq);
  check("dk", &Inputs::k, g.dk);
  check("dv", &Inputs::v, g.dv);
  if (in.mask == MaskKind::additive) check("dmask", &Inputs::mask_add, g.dmask);

  if (fc.dropout.active()) {  // premise: the dropout drops something here
    EXPECT_NE(attend_test::naive_forward(in, fc.dropout).out, attend_test::naive_forward(in).out);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ReferenceFiniteDifferences, ::testing::ValuesIn(kFdCases),
                         [](const ::testing::TestParamInfo<FdCase>& i) { return std::string(i.param.name); });

// Rows that see no key have zero gradients exactly (BoolMaskAndRowsWithoutKeys: batch 1 sees no key,
// and bottom_right hides every key from queries 0..2).
TEST(ReferenceRules, RowsWithoutKeysHaveZeroGradients) {
  const Inputs in = kFdCases[3].make();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 906);
  const Gradients g = attend_test::naive_backward(in, dout);
  const attend_test::Forward f = attend_test::naive_forward(in);
  int dead = 0;
  for (Index b = 0; b < in.B; ++b)
    for (Index h = 0; h < in.Hq; ++h)
      for (Index i = 0; i < in.Nq; ++i) {
        const std::size_t row = static_cast<std::size_t>((b * in.Hq + h) * in.Nq + i);
        if (f.lse[row] != -attend_test::kInf) continue;
        ++dead;
        for (Index d = 0; d < in.D; ++d) EXPECT_EQ(g.dq[row * static_cast<std::size_t>(in.D) + d], 0.0);
        for (Index d = 0; d < in.Dv; ++d) EXPECT_EQ(f.out[row * static_cast<std::size_t>(in.Dv) + d], 0.0);
      }
  EXPECT_EQ(dead, 2 * 7 + 2 * 3);  // batch 1: every row; batch 0: rows 0..2 (Nq - Nk = 3)
  for (Index j = 0; j < in.Nk; ++j)
    for (Index d = 0; d < in.D; ++d) EXPECT_EQ(g.dk[static_cast<std::size_t>((1 * in.Nk + j) * in.D + d)], 0.0);
}

// The rules no golden case reaches: a key hidden by a bool mask or causality stays hidden even if it
// is NaN; an additive -inf does not hide it; a value behind a zero weight contributes nothing, even
// Inf; a NaN row stays NaN when every key is dropped.
TEST(ReferenceRules, HiddenNonFiniteInputs) {
  Inputs in = attend_test::random_inputs(1, 1, 1, 4, 4, 2, 2, 907);
  in.causal = Causal::top_left;
  in.k[3 * 2 + 0] = attend_test::kNaN;  // key 3: seen by query 3 only
  in.v[2 * 2 + 1] = attend_test::kInf;  // value 2, column 1: seen by queries 2 and 3
  attend_test::Forward f = attend_test::naive_forward(in);
  for (Index i = 0; i < 3; ++i) {
    EXPECT_TRUE(std::isfinite(f.lse[static_cast<std::size_t>(i)])) << "query " << i;
    EXPECT_TRUE(std::isfinite(f.out[static_cast<std::size_t>(i * 2)])) << "query " << i;
    EXPECT_EQ(std::isinf(f.out[static_cast<std::size_t>(i * 2 + 1)]), i == 2) << "query " << i;
  }
  EXPECT_TRUE(std::isnan(f.lse[3]));
  EXPECT_TRUE(std::isnan(f.out[6]) && std::isnan(f.out[7]));

  in.causal = Causal::none;  // the same hiding by an additive -inf: NaN + -inf is NaN
  attend_test::set_additive_mask(in, {4, 4}, [](Index, Index, Index i, Index j) { return j > i ? -attend_test::kInf : 0.0; });
  f = attend_test::naive_forward(in);
  for (Index i = 0; i < 4; ++i) EXPECT_TRUE(std::isnan(f.lse[static_cast<std::size_t>(i)])) << "query " << i;

  Inputs one = attend_test::random_inputs(1, 1, 1, 1, 1, 4, 4, 908);
  one.q[0] = attend_test::kNaN;
  f = attend_test::naive_forward(one, DropoutSpec{1.0, 1, 1});
  EXPECT_TRUE(std::isnan(f.out[0])) << "0 · NaN is NaN";
}

}  // namespace
