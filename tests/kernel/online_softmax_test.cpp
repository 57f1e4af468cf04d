// The online softmax (attend::detail::OnlineSoftmax) on its own: scores fed a block of keys at a time
// must give the one-pass max, sum and lse, stay finite where a naive exp overflows, keep a row with no
// visible key at sum 0 / lse -inf with a finite rescale, and propagate NaN to its own query only.
// And exp_or_zero: exactly 0 for -inf and very negative arguments.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <attend/attend.hpp>
#include <attend/detail/kernel/online_softmax.hpp>

#include "support/check.hpp"

namespace {

using attend::Index;
using attend::detail::exp_or_zero;
using attend::detail::TileTraits;
using attend::detail::OnlineSoftmax;

template <typename Acc>
constexpr int kCols = TileTraits::kBlockQ;  // the query tile the kernels use

template <typename Acc>
constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();

/// Packet-aligned storage, as the kernels' scratch is (update() uses aligned packet loads).
template <typename Acc>
using AlignedVec = std::vector<Acc, Eigen::aligned_allocator<Acc>>;

/// Scores of kCols queries against n keys, transposed as the kernels keep them: s[j * kCols + i].
template <typename Acc>
struct Scores {
  Index n;
  AlignedVec<Acc> s;
  explicit Scores(Index keys) : n(keys), s(static_cast<std::size_t>(keys * kCols<Acc>)) {}
  Acc& at(Index j, int i) { return s[static_cast<std::size_t>(j * kCols<Acc> + i)]; }
  Acc at(Index j, int i) const { return s[static_cast<std::size_t>(j * kCols<Acc> + i)]; }
};

/// Feeds `sc` to a fresh OnlineSoftmax in blocks of the given sizes (cycled), and keeps the
/// accumulator a kernel would: acc_i = rescale_i * acc_i + Σ_j p_ij x_j for per-key values x_j.
template <typename Acc>
struct Fed {
  OnlineSoftmax<Acc, kCols<Acc>> sm;
  std::vector<Acc> acc = std::vector<Acc>(kCols<Acc>, Acc(0));
  AlignedVec<Acc> probs;  // the exp(s - max) values update() wrote, per block, in place
};

template <typename Acc>
Fed<Acc> feed(Scores<Acc> sc, const std::vector<Index>& blocks, const std::vector<Acc>& x) {
  Fed<Acc> f;
  f.sm.reset();
  Index j0 = 0;
  for (std::size_t b = 0; j0 < sc.n; ++b) {
    const Index rows = std::min(blocks[b % blocks.size()], sc.n - j0);
    Acc* blk = sc.s.data() + j0 * kCols<Acc>;
    f.sm.update(blk, rows);
    for (int i = 0; i < kCols<Acc>; ++i) {
      Acc add = 0;
      for (Index j = 0; j < rows; ++j) add += blk[j * kCols<Acc> + i] * x[static_cast<std::size_t>(j0 + j)];
      f.acc[static_cast<std::size_t>(i)] = f.sm.rescale[i] * f.acc[static_cast<std::size_t>(i)] + add;
    }
    j0 += rows;
  }
  f.probs = sc.s;
  return f;
}

/// Stable log-sum-exp and softmax-weighted mean of query i's scores, in long double.
template <typename Acc>
void exact(const Scores<Acc>& sc, int i, const std::vector<Acc>& x, long double& lse, long double& mean) {
  long double m = -std::numeric_limits<long double>::infinity();
  for (Index j = 0; j < sc.n; ++j) m = std::max<long double>(m, sc.at(j, i));
  long double l = 0, a = 0;
  for (Index j = 0; j < sc.n; ++j) {
    const long double p = std::exp(static_cast<long double>(sc.at(j, i)) - m);
    l += p;
    a += p * x[static_cast<std::size_t>(j)];
  }
  lse = m + std::log(l);
  mean = a / l;
}

template <typename Acc>
Scores<Acc> random_scores(Index n, Acc lo, Acc hi, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(static_cast<double>(lo), static_cast<double>(hi));
  Scores<Acc> sc(n);
  for (auto& e : sc.s) e = static_cast<Acc>(u(g));
  return sc;
}

template <typename Acc>
std::vector<Acc> random_values(Index n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd;
  std::vector<Acc> x(static_cast<std::size_t>(n));
  for (auto& e : x) e = static_cast<Acc>(nd(g));
  return x;
}

// In double: feeding 200 keys in blocks of 1, 7, 64, 128 (ragged, crossing the 64-key tile) gives
// the one-pass max exactly, and its sum, lse and rescaled accumulator to rounding.
TEST(OnlineSoftmax, BlockedEqualsOnePassInDouble) {
  const Index n = 200;
  const auto sc = random_scores<double>(n, -12.0, 9.0, 1);
  const auto x = random_values<double>(n, 2);
  const auto one = feed(sc, {n}, x);
  const std::vector<std::vector<Index>> splits = {{1}, {7}, {64}, {128, 72}, {1, 7, 64, 128}, {63, 1, 65}};
  const double e = std::numeric_limits<double>::epsilon();
  for (const auto& split : splits) {
    const auto f = feed(sc, split, x);
    for (int i = 0; i < kCols<double>; ++i) {
      SCOPED_TRACE("query " + std::to_string(i) + ", first block " + std::to_string(split[0]));
      EXPECT_EQ(f.sm.row_max[i], one.sm.row_max[i]);
      // Sums of n positive terms <= 1 each: relative error <= n·eps per evaluation order.
      EXPECT_NEAR(f.sm.row_sum[i], one.sm.row_sum[i], 2.0 * n * e * one.sm.row_sum[i]);
      EXPECT_NEAR(f.sm.lse(i), one.sm.lse(i), 4.0 * n * e * std::max(1.0, std::abs(one.sm.lse(i))));
      long double lse, mean;
      exact(sc, i, x, lse, mean);
      EXPECT_NEAR(f.sm.lse(i), static_cast<double>(lse), 4.0 * n * e * std::max(1.0L, std::abs(lse)));
      EXPECT_NEAR(f.acc[static_cast<std::size_t>(i)] * f.sm.inv_sum(i, 1.0), static_cast<double>(mean), 8.0 * n * e);
    }
  }
}

// Logits in [90, 100]: exp(100) overflows float, so a softmax that did not subtract the running max
// would return inf/NaN. The online one must match the exact lse and weights to float rounding.
TEST(OnlineSoftmax, LogitsNearHundredDoNotOverflowFloat) {
  ASSERT_TRUE(std::isinf(std::exp(100.0f))) << "premise: a naive float exp overflows here";
  const Index n = 150;
  const auto sc = random_scores<float>(n, 90.0f, 100.0f, 3);
  const auto x = random_values<float>(n, 4);
  const auto f = feed(sc, {64, 13, 64}, x);
  const double e = std::numeric_limits<float>::epsilon();
  for (int i = 0; i < kCols<float>; ++i) {
    long double lse, mean;
    exact(sc, i, x, lse, mean);
    ASSERT_TRUE(std::isfinite(f.sm.row_sum[i])) << "query " << i;
    EXPECT_GE(f.sm.row_sum[i], 1.0f) << "the max term contributes exp(0) = 1";
    // lse = max + log(sum): rounding of |lse| plus the relative error of an n-term sum.
    EXPECT_NEAR(f.sm.lse(i), static_cast<double>(lse), 4.0 * e * (static_cast<double>(lse) + n))
        << "query " << i;
    EXPECT_NEAR(f.acc[static_cast<std::size_t>(i)] * f.sm.inv_sum(i, 1.0f), static_cast<double>(mean),
                8.0 * n * e * 3.0)
        << "query " << i;
  }
}

template <typename Acc>
class OnlineSoftmaxTyped : public ::testing::Test {};
using AccTypes = ::testing::Types<double, float>;
TYPED_TEST_SUITE(OnlineSoftmaxTyped, AccTypes, attend_test::TypeNames);

// A query with every key at -inf (fully masked) keeps max -inf, sum 0, lse -inf, a finite rescale
// and exactly-zero probabilities; when keys become visible later it ends like a one-pass softmax
// over the visible keys alone.
TYPED_TEST(OnlineSoftmaxTyped, RowWithNoVisibleKey) {
  using Acc = TypeParam;
  const Index n = 130;
  auto sc = random_scores<Acc>(n, Acc(-5), Acc(5), 5);
  const auto x = random_values<Acc>(n, 6);
  const int dead = 3, late = 10;  // `dead` never sees a key; `late` sees keys from 70 on only
  for (Index j = 0; j < n; ++j) sc.at(j, dead) = kNegInf<Acc>;
  for (Index j = 0; j < 70; ++j) sc.at(j, late) = kNegInf<Acc>;

  OnlineSoftmax<Acc, kCols<Acc>> sm;
  sm.reset();
  auto s = sc;
  for (Index j0 = 0; j0 < n; j0 += 64) {
    const Index rows = std::min<Index>(64, n - j0);
    sm.update(s.s.data() + j0 * kCols<Acc>, rows);
    EXPECT_TRUE(std::isfinite(sm.rescale[dead])) << "block at " << j0;
    EXPECT_TRUE(std::isfinite(sm.rescale[late])) << "block at " << j0;
    EXPECT_EQ(sm.row_max[dead], kNegInf<Acc>);
    EXPECT_EQ(sm.row_sum[dead], Acc(0));
    for (Index j = j0; j < j0 + rows; ++j) EXPECT_EQ(s.at(j, dead), Acc(0)) << "probability of key " << j;
  }
  EXPECT_EQ(sm.lse(dead), kNegInf<Acc>);
  EXPECT_EQ(sm.inv_sum(dead, Acc(1)), Acc(0));

  // `late` equals a one-pass softmax over keys 70..129.
  Scores<Acc> tail(n - 70);
  for (Index j = 70; j < n; ++j)
    for (int i = 0; i < kCols<Acc>; ++i) tail.at(j - 70, i) = sc.at(j, i);
  std::vector<Acc> xt(x.begin() + 70, x.end());
  const auto one = feed(tail, {n}, xt);
  const double e = std::numeric_limits<Acc>::epsilon();
  EXPECT_EQ(sm.row_max[late], one.sm.row_max[late]);
  EXPECT_NEAR(sm.lse(late), one.sm.lse(late), 4.0 * n * e * std::max<double>(1, std::abs(one.sm.lse(late))));
}

// A NaN score makes its own query's sum, lse and output NaN, through later blocks too, and leaves every
// other query bitwise as it would be without the NaN.
TYPED_TEST(OnlineSoftmaxTyped, NaNPropagatesToItsQueryOnly) {
  using Acc = TypeParam;
  const Index n = 140;
  const auto clean = random_scores<Acc>(n, Acc(-4), Acc(4), 7);
  const auto x = random_values<Acc>(n, 8);
  auto dirty = clean;
  const int bad = 17;
  dirty.at(66, bad) = std::numeric_limits<Acc>::quiet_NaN();  // second block of 64
  const auto a = feed(clean, {64}, x);
  const auto b = feed(dirty, {64}, x);
  // (row_max itself may skip the NaN: a plain max is allowed, as the NaN reaches the sum via its exp.)
  EXPECT_TRUE(std::isnan(b.sm.row_sum[bad]));
  EXPECT_TRUE(std::isnan(b.sm.lse(bad)));
  EXPECT_TRUE(std::isnan(b.acc[bad] * b.sm.inv_sum(bad, Acc(1))));
  for (int i = 0; i < kCols<Acc>; ++i) {
    if (i == bad) continue;
    EXPECT_EQ(a.sm.row_max[i], b.sm.row_max[i]) << "query " << i;
    EXPECT_EQ(a.sm.row_sum[i], b.sm.row_sum[i]) << "query " << i;
    EXPECT_EQ(a.acc[static_cast<std::size_t>(i)], b.acc[static_cast<std::size_t>(i)]) << "query " << i;
  }
  // NaN in the first key of the first block, as well.
  auto first = clean;
  first.at(0, 0) = std::numeric_limits<Acc>::quiet_NaN();
  const auto c = feed(first, {64}, x);
  EXPECT_TRUE(std::isnan(c.sm.lse(0)));
  EXPECT_FALSE(std::isnan(c.sm.lse(1)));
}

/// exp_or_zero over one packet's lanes of `in`.
template <typename Acc>
std::vector<Acc> packet_exp(const std::vector<Acc>& in) {
  using Packet = attend::detail::PacketOf<Acc>;
  constexpr int L = attend::detail::kLanesOf<Acc>;
  std::vector<Acc> out;
  for (std::size_t at = 0; at < in.size(); at += L) {
    alignas(64) Acc buf[L];
    for (int l = 0; l < L; ++l) buf[l] = at + l < in.size() ? in[at + l] : Acc(0);
    alignas(64) Acc res[L];
    Eigen::internal::pstore(res, exp_or_zero(Eigen::internal::pload<Packet>(buf)));
    for (int l = 0; l < L && at + l < in.size(); ++l) out.push_back(res[l]);
  }
  return out;
}

TYPED_TEST(OnlineSoftmaxTyped, ExpOrZeroIsExactlyZeroForMinusInfAndVeryNegative) {
  using Acc = TypeParam;
  const Acc lowest = std::numeric_limits<Acc>::lowest();
  // Far below the smallest normal's argument (float -87.3, double -708.4) and below its smallest
  // subnormal's (-103.3, -744.4): an exp that leaves a denormal here would still bias a masked sum.
  const Acc big = std::is_same_v<Acc, float> ? Acc(-200) : Acc(-1500);
  const std::vector<Acc> zeros = {kNegInf<Acc>, lowest, Acc(-1e30), Acc(-1000), big, big - Acc(0.5)};
  const auto got = packet_exp(zeros);
  for (std::size_t i = 0; i < zeros.size(); ++i) {
    EXPECT_EQ(got[i], Acc(0)) << "exp_or_zero(" << zeros[i] << ")";
    EXPECT_FALSE(std::signbit(got[i])) << "exp_or_zero(" << zeros[i] << ") is -0";
  }
}

TYPED_TEST(OnlineSoftmaxTyped, ExpOrZeroIsExpElsewhereAndKeepsNaN) {
  using Acc = TypeParam;
  std::vector<Acc> xs = {Acc(0), Acc(1), Acc(-1), Acc(-20.5), Acc(30), Acc(-60), Acc(0.125)};
  for (int t = -80; t <= 80; t += 3) xs.push_back(Acc(t) + Acc(0.37));
  const auto got = packet_exp(xs);
  EXPECT_EQ(got[0], Acc(1));
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double want = std::exp(static_cast<double>(xs[i]));
    EXPECT_NEAR(got[i], want, 4 * std::numeric_limits<Acc>::epsilon() * want) << "exp(" << xs[i] << ")";
  }
  const auto nan = packet_exp<Acc>({std::numeric_limits<Acc>::quiet_NaN(), Acc(0)});
  EXPECT_TRUE(std::isnan(nan[0]));
  EXPECT_EQ(nan[1], Acc(1));
}

}  // namespace
