// NaN and Inf in the backward, as docs/semantics.md ("Gradients") states the rules, on every path and
// type:
//   - a zero weight contributes nothing: where P_ij is exactly 0 (a key hidden by causality or a bool
//     mask), dS_ij is exactly 0 whatever dP and D hold, and no term with a zero weight turns an Inf or
//     NaN in dout, k or q (or v, through dP) into NaN;
//   - NaN in a row that is seen propagates: a NaN in q row i makes dq row i and the dk and dv rows of
//     the keys it sees NaN.
// Each test runs a clean call and the same call with one poisoned element and compares: what the
// poison cannot reach keeps the clean run's values exactly (a zero weight contributes nothing: not a
// rounding of it), what it reaches is NaN (or non-finite).
// Shape: B 1, Hq 2, Hkv 1 (both query heads read the kv head), Nq = Nk = 130 (tiles of 64, 64, 2; the
// flash backward splits the keys three ways), D 16, Dv 12, causal top_left: query i sees keys j <= i.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::Causal;
using attend::Index;
using attend::Path;
using attend_test::Inputs;

constexpr Index kHq = 2, kN = 130, kD = 16, kDv = 12;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Inputs clean_inputs() {
  Inputs in = attend_test::random_inputs(1, kHq, 1, kN, kN, kD, kDv, 9101);
  in.causal = Causal::top_left;
  return in;
}

std::size_t qi(Index h, Index i, Index d) { return static_cast<std::size_t>((h * kN + i) * kD + d); }
std::size_t ki(Index j, Index d) { return static_cast<std::size_t>(j * kD + d); }
std::size_t vi(Index j, Index d) { return static_cast<std::size_t>(j * kDv + d); }

/// Whether an element kept the clean run's value exactly (== : a signed zero may differ).
bool same(double dirty, double clean) { return dirty == clean; }

template <typename T>
class GradNonFinite : public ::testing::Test {};
TYPED_TEST_SUITE(GradNonFinite, attend_test::AllTypes, attend_test::TypeNames);

// NaN (and then Inf) in dout row i0 of head 1: dq row i0 of head 1 is non-finite, and so are dk and
// dv of the keys it sees (j <= i0). The keys it does not see get zero weight from it: their dk and dv
// keep the clean values exactly, as does dq of every other row.
TYPED_TEST(GradNonFinite, PoisonedDoutReachesOnlyTheKeysItsRowSees) {
  using T = TypeParam;
  const Inputs in = clean_inputs();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 9102);
  const Index h0 = 1, i0 = 70;
  for (const double poison : {kNaN, kInf}) {
    std::vector<double> dirty_dout = dout;
    dirty_dout[static_cast<std::size_t>((h0 * kN + i0) * kDv + 5)] = poison;
    for (const Path p : attend_test::kAllPaths) {
      const std::string w = std::string(attend::path_name(p)) + (std::isnan(poison) ? " NaN" : " Inf");
      const auto clean = attend_test::run_grad<T>(in, dout, attend_test::on(p));
      const auto dirty = attend_test::run_grad<T>(in, dirty_dout, attend_test::on(p));
      for (Index h = 0; h < kHq; ++h)
        for (Index i = 0; i < kN; ++i)
          for (Index d = 0; d < kD; ++d) {
            const double g = dirty.dq[qi(h, i, d)];
            if (h == h0 && i == i0) {
              ASSERT_FALSE(std::isfinite(g)) << w << " dq row " << i0 << " d " << d;
            } else {
              ASSERT_TRUE(same(g, clean.dq[qi(h, i, d)])) << w << " dq h " << h << " i " << i << " d " << d << ": " << g;
            }
          }
      for (Index j = 0; j < kN; ++j) {
        for (Index d = 0; d < kD; ++d) {
          const double g = dirty.dk[ki(j, d)];
          if (j <= i0) {
            ASSERT_FALSE(std::isfinite(g)) << w << " dk of seen key " << j;
          } else {
            ASSERT_TRUE(same(g, clean.dk[ki(j, d)])) << w << " dk of unseen key " << j << " d " << d << ": " << g;
          }
        }
        for (Index d = 0; d < kDv; ++d) {
          const double g = dirty.dv[vi(j, d)];
          if (j <= i0 && d == 5) {  // dv_j = Σ_i Z_ij dout_i: only the poisoned column
            ASSERT_FALSE(std::isfinite(g)) << w << " dv of seen key " << j;
          } else {
            ASSERT_TRUE(same(g, clean.dv[vi(j, d)])) << w << " dv key " << j << " d " << d << ": " << g;
          }
        }
      }
    }
  }
}

// NaN in k row j0 (and then Inf): queries i < j0 do not see it (top_left), so their P_ij0 is 0: their
// dq rows keep the clean values exactly, though dq sums dS_ij · k_j over every key j of the tiles.
// Queries i >= j0 see it: with NaN their dq rows are NaN. (An Inf gives some of them a score of -inf,
// a zero weight, and others +inf: no rule to check there.)
TYPED_TEST(GradNonFinite, PoisonedKeyReachesOnlyTheRowsThatSeeIt) {
  using T = TypeParam;
  const Inputs in = clean_inputs();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 9103);
  const Index j0 = 100;
  for (const double poison : {kNaN, kInf}) {
    Inputs dirty_in = in;
    dirty_in.k[ki(j0, 3)] = poison;
    for (const Path p : attend_test::kAllPaths) {
      const std::string w = std::string(attend::path_name(p)) + (std::isnan(poison) ? " NaN" : " Inf");
      const auto clean = attend_test::run_grad<T>(in, dout, attend_test::on(p));
      const auto dirty = attend_test::run_grad<T>(dirty_in, dout, attend_test::on(p));
      for (Index h = 0; h < kHq; ++h)
        for (Index i = 0; i < kN; ++i) {
          const double g = dirty.dq[qi(h, i, 0)];
          if (i >= j0) {
            if (std::isnan(poison)) {
              ASSERT_TRUE(std::isnan(g)) << w << " dq of a row that sees the key, h " << h << " i " << i;
            }
          } else {
            for (Index d = 0; d < kD; ++d) {
              ASSERT_TRUE(same(dirty.dq[qi(h, i, d)], clean.dq[qi(h, i, d)]))
                  << w << " dq h " << h << " i " << i << " d " << d << ": " << dirty.dq[qi(h, i, d)];
            }
          }
        }
    }
  }
}

// Inf (and then NaN) in v row j0, column 2: dP_ij0 = dout_i · v_j0 is non-finite for every query, but
// where P_ij0 = 0 (queries i < j0) dS_ij0 is exactly 0: their dq rows keep the clean values exactly.
TYPED_TEST(GradNonFinite, PoisonedValueReachesOnlyTheRowsThatSeeIt) {
  using T = TypeParam;
  const Inputs in = clean_inputs();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 9104);
  const Index j0 = 66;
  for (const double poison : {kInf, kNaN}) {
    Inputs dirty_in = in;
    dirty_in.v[vi(j0, 2)] = poison;
    for (const Path p : attend_test::kAllPaths) {
      const std::string w = std::string(attend::path_name(p)) + (std::isnan(poison) ? " NaN" : " Inf");
      const auto clean = attend_test::run_grad<T>(in, dout, attend_test::on(p));
      const auto dirty = attend_test::run_grad<T>(dirty_in, dout, attend_test::on(p));
      int reached = 0;
      for (Index h = 0; h < kHq; ++h)
        for (Index i = 0; i < kN; ++i) {
          if (i >= j0) {
            reached += !std::isfinite(dirty.dq[qi(h, i, 0)]);
            continue;
          }
          for (Index d = 0; d < kD; ++d) {
            ASSERT_TRUE(same(dirty.dq[qi(h, i, d)], clean.dq[qi(h, i, d)]))
                << w << " dq h " << h << " i " << i << " d " << d << ": " << dirty.dq[qi(h, i, d)];
          }
        }
      EXPECT_GT(reached, 0) << w << ": premise, the poison reaches the rows that see the key";
    }
  }
}

// NaN in q row i0 of head 1: dq row i0 is NaN, and so are the dk and dv rows of the keys it sees
// (j <= i0); dq of every other row keeps the clean values exactly (dq_i sums over row i's own scores).
// The keys hidden from row i0 (j > i0) are not checked: the documentation does not say, and the paths
// differ there (a NaN row's lse is NaN, so exp(-inf - lse) is NaN, not 0: math makes every hidden key's
// dk and dv NaN, as the reference and PyTorch do; flash and mem_efficient only those within the row's
// last visible key tile).
TYPED_TEST(GradNonFinite, NanQueryRowReachesItsRowAndTheKeysItSees) {
  using T = TypeParam;
  const Inputs in = clean_inputs();
  const std::vector<double> dout = attend_test::randn(in.out_size(), 9105);
  const Index h0 = 1, i0 = 40;
  Inputs dirty_in = in;
  dirty_in.q[qi(h0, i0, 7)] = kNaN;
  for (const Path p : attend_test::kAllPaths) {
    const std::string w = attend::path_name(p);
    const auto clean = attend_test::run_grad<T>(in, dout, attend_test::on(p));
    const auto dirty = attend_test::run_grad<T>(dirty_in, dout, attend_test::on(p));
    for (Index h = 0; h < kHq; ++h)
      for (Index i = 0; i < kN; ++i)
        for (Index d = 0; d < kD; ++d) {
          const double g = dirty.dq[qi(h, i, d)];
          if (h == h0 && i == i0) {
            ASSERT_TRUE(std::isnan(g)) << w << " dq row " << i0 << " d " << d << ": " << g;
          } else {
            ASSERT_TRUE(same(g, clean.dq[qi(h, i, d)])) << w << " dq h " << h << " i " << i << " d " << d << ": " << g;
          }
        }
    for (Index j = 0; j <= i0; ++j) {
      for (Index d = 0; d < kD; ++d) ASSERT_TRUE(std::isnan(dirty.dk[ki(j, d)])) << w << " dk of seen key " << j;
      for (Index d = 0; d < kDv; ++d) ASSERT_TRUE(std::isnan(dirty.dv[vi(j, d)])) << w << " dv of seen key " << j;
    }
  }
}

}  // namespace
