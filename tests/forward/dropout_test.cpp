// Dropout on the attention weights: the same keep-mask on every path, tile and thread count (and the
// documented one: Philox4x32-10 keyed by the seed, counter (j/4, i, b*Hq + h, offset), keep iff the
// draw >= round(p * 2^32), as the naive reference draws it with its own Philox); its keep fraction and
// its unbiasedness within statistical bounds; p = 1 gives zeros; eval mode ignores it; (seed, offset)
// decide the bits.
//
// The keep-mask is read through the public API: with v = identity (Dv = Nk, v[j, d] = [j == d]) the
// output is out[i, j] = P[i, j] · keep[i, j] / (1 - p), so out[i, j] != 0 exactly where j is kept.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
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
using attend_test::kAllPaths;
using attend_test::RunSpec;

RunSpec training(double p, std::uint64_t seed, std::uint32_t offset, std::optional<Path> path = std::nullopt) {
  RunSpec s;
  if (path) s.route = attend_test::forced(*path);
  s.dropout = p;
  s.train = true;
  s.seed = seed;
  s.offset = offset;
  return s;
}

/// Inputs whose output is the (dropped, rescaled) attention matrix: v = identity, Dv = Nk.
/// q is scaled down so every weight is well above 0 in every type.
Inputs identity_inputs(Index B, Index Hq, Index Hkv, Index Nq, Index Nk, std::uint64_t seed) {
  Inputs in = attend_test::random_inputs(B, Hq, Hkv, Nq, Nk, 8, Nk, seed, 0.5);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < Hkv; ++h)
      for (Index j = 0; j < Nk; ++j)
        for (Index d = 0; d < Nk; ++d) in.v[static_cast<std::size_t>(((b * Hkv + h) * Nk + j) * Nk + d)] = j == d;
  return in;
}

/// The keep-mask (B, Hq, Nq, Nk) that a run of identity inputs reveals.
template <typename T>
std::vector<bool> observed_mask(const Inputs& in, const RunSpec& spec) {
  const auto r = attend_test::run<T>(in, spec);
  std::vector<bool> m(r.out.size());
  for (std::size_t e = 0; e < r.out.size(); ++e) m[e] = r.out[e] != 0.0;
  return m;
}

/// The documented keep-mask, as the naive reference draws it (its own Philox, checked against
/// Random123's known answers in support/reference_test.cpp).
std::vector<bool> documented_mask(Index B, Index Hq, Index Nq, Index Nk, double p, std::uint64_t seed,
                                  std::uint32_t offset) {
  const attend_test::DropoutSpec drop{p, seed, offset};
  std::vector<bool> m;
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < Hq; ++h)
      for (Index i = 0; i < Nq; ++i)
        for (Index j = 0; j < Nk; ++j) m.push_back(drop.keeps(Hq, b, h, i, j));
  return m;
}

std::size_t count_diff(const std::vector<bool>& a, const std::vector<bool>& b) {
  std::size_t n = a.size() == b.size() ? 0 : 1;
  for (std::size_t e = 0; e < a.size() && e < b.size(); ++e) n += a[e] != b[e];
  return n;
}

template <typename T>
class Dropout : public ::testing::Test {};
TYPED_TEST_SUITE(Dropout, attend_test::AllTypes, attend_test::TypeNames);

// With p = 0.3 in training, every path agrees with the naive reference (the same keep-mask applied to
// the same inputs) to the usual tolerance: impossible unless they drop the same elements.
TYPED_TEST(Dropout, EveryPathMatchesReferenceWithTheSameMask) {
  using T = TypeParam;
  Inputs in = attend_test::random_inputs(2, 4, 2, 130, 97, 16, 24, 201);
  attend_test::expect_paths_match_reference<T>(in, "dropout 0.3", training(0.3, 1234567, 17));
  in.causal = Causal::bottom_right;
  attend_test::expect_paths_match_reference<T>(in, "dropout 0.3 causal", training(0.3, 99, 3));
  // Few queries per kv head and 1100 keys: the flash path's split-KV decode kernel.
  Inputs dec = attend_test::random_inputs(1, 4, 2, 2, 1100, 16, 8, 209);
  attend_test::expect_paths_match_reference<T>(dec, "dropout 0.3 decode", training(0.3, 5, 6));
}

// The mask each path applies is exactly the documented Philox mask (ragged tiles: Nq 70, Nk 67).
TYPED_TEST(Dropout, EveryPathAppliesTheDocumentedMask) {
  using T = TypeParam;
  const Index B = 2, Hq = 2, Nq = 70, Nk = 67;
  const Inputs in = identity_inputs(B, Hq, 1, Nq, Nk, 202);
  const std::uint64_t seed = 0x0123456789abcdefull;  // both key words in use
  const auto want = documented_mask(B, Hq, Nq, Nk, 0.3, seed, 5);
  for (const Path p : kAllPaths) {
    EXPECT_EQ(count_diff(observed_mask<T>(in, training(0.3, seed, 5, p)), want), 0u) << attend::path_name(p);
  }
  // Decode shapes (2 query heads x 2 queries per kv head, 1000 keys in two splits).
  const Inputs dec = identity_inputs(1, 2, 1, 2, 1000, 210);
  const auto want_dec = documented_mask(1, 2, 2, 1000, 0.3, seed, 6);
  for (const Path p : kAllPaths) {
    EXPECT_EQ(count_diff(observed_mask<T>(dec, training(0.3, seed, 6, p)), want_dec), 0u)
        << "decode shape, " << attend::path_name(p);
  }
}

// p = 1 drops everything: out is exactly 0 on every path, and lse (which dropout does not change) is
// bitwise the eval one.
TYPED_TEST(Dropout, POneGivesZeros) {
  using T = TypeParam;
  const Inputs in = attend_test::random_inputs(1, 2, 2, 65, 70, 16, 16, 203);
  for (const Path p : kAllPaths) {
    const auto r = attend_test::run<T>(in, training(1.0, 5, 0, p));
    const auto e = attend_test::run<T>(in, attend_test::on(p));
    for (double o : r.out) ASSERT_EQ(o, 0.0) << attend::path_name(p);
    EXPECT_TRUE(attend_test::same_bits(r.raw_lse, e.raw_lse)) << attend::path_name(p);
  }
}

// Eval mode (the default, or eval()) ignores dropout: bitwise the p = 0 result, and the same bits on
// every call. Training with p = 0.3 leaves lse bitwise unchanged.
TYPED_TEST(Dropout, EvalIgnoresDropoutAndIsDeterministic) {
  using T = TypeParam;
  const Inputs in = attend_test::random_inputs(2, 2, 1, 66, 80, 16, 8, 204);
  for (const Path p : kAllPaths) {
    RunSpec eval = training(0.3, 77, 4, p);
    eval.train = false;
    const auto none = attend_test::run<T>(in, attend_test::on(p));
    const auto a = attend_test::run<T>(in, eval);
    const auto b = attend_test::run<T>(in, eval);
    EXPECT_TRUE(attend_test::same_bits(a.raw, none.raw)) << attend::path_name(p);
    EXPECT_TRUE(attend_test::same_bits(a.raw, b.raw)) << attend::path_name(p);
    const auto t = attend_test::run<T>(in, training(0.3, 77, 4, p));
    EXPECT_FALSE(attend_test::same_bits(t.raw, none.raw)) << attend::path_name(p) << ": training dropped nothing";
    EXPECT_TRUE(attend_test::same_bits(t.raw_lse, none.raw_lse)) << attend::path_name(p);
  }
  // A module's default mode is eval; eval() after train() switches dropout off again.
  attend::Attend<T> m = attend_test::make_attend<T>(attend_test::forced(Path::flash), 0.3, std::nullopt, 77);
  EXPECT_FALSE(m.training());
  m.train();
  EXPECT_TRUE(m.training());
  m.eval();
  EXPECT_FALSE(m.training());
}

// The same (seed, offset) gives the same bits; another offset, or another seed (low or high word),
// gives another mask, differing in about 2p(1-p) = 42% of the elements.
TYPED_TEST(Dropout, SeedAndOffsetDecideTheBits) {
  using T = TypeParam;
  const Inputs in = identity_inputs(1, 2, 2, 40, 64, 205);
  const std::size_t n = static_cast<std::size_t>(in.out_size());
  for (const Path p : kAllPaths) {
    const auto a = attend_test::run<T>(in, training(0.3, 11, 1, p));
    const auto b = attend_test::run<T>(in, training(0.3, 11, 1, p));
    EXPECT_TRUE(attend_test::same_bits(a.raw, b.raw)) << attend::path_name(p);
    const auto base = observed_mask<T>(in, training(0.3, 11, 1, p));
    for (const auto& [seed, offset] : {std::pair<std::uint64_t, std::uint32_t>{11, 2}, {12, 1}, {11 + (1ull << 32), 1}}) {
      const std::size_t d = count_diff(base, observed_mask<T>(in, training(0.3, seed, offset, p)));
      // 2p(1-p) n = 2150 of n = 5120; 5 sigma of a binomial is about 180.
      EXPECT_NEAR(static_cast<double>(d), 0.42 * static_cast<double>(n), 5 * std::sqrt(0.42 * 0.58 * double(n)))
          << attend::path_name(p) << " seed " << seed << " offset " << offset;
    }
  }
}

// Results are bitwise the same for 1, 2 and 3 threads and without a pool, on every path, in training
// (ragged query tiles, causal work imbalance, GQA).
TYPED_TEST(Dropout, ThreadCountDoesNotChangeTheBits) {
  using T = TypeParam;
  Inputs in = attend_test::random_inputs(2, 3, 1, 130, 100, 16, 8, 206);
  in.causal = Causal::bottom_right;
  const Inputs dec = attend_test::random_inputs(2, 4, 2, 1, 1600, 16, 8, 211);  // split-KV decode
  for (const Path p : kAllPaths) {
    const auto base = attend_test::run<T>(dec, training(0.3, 42, 9, p));
    for (int threads : {1, 2, 3}) {
      Eigen::ThreadPool pool(threads);
      Eigen::ThreadPoolDevice device(&pool, threads);
      RunSpec s = training(0.3, 42, 9, p);
      s.device = &device;
      const auto r = attend_test::run<T>(dec, s);
      EXPECT_TRUE(attend_test::same_bits(r.raw, base.raw)) << "decode " << attend::path_name(p) << " threads " << threads;
      EXPECT_TRUE(attend_test::same_bits(r.raw_lse, base.raw_lse)) << "decode " << attend::path_name(p);
    }
  }
  for (const Path p : kAllPaths) {
    const auto base = attend_test::run<T>(in, training(0.3, 42, 9, p));
    for (int threads : {1, 2, 3}) {
      Eigen::ThreadPool pool(threads);
      Eigen::ThreadPoolDevice device(&pool, threads);
      RunSpec s = training(0.3, 42, 9, p);
      s.device = &device;
      const auto r = attend_test::run<T>(in, s);
      EXPECT_TRUE(attend_test::same_bits(r.raw, base.raw)) << attend::path_name(p) << " threads " << threads;
      EXPECT_TRUE(attend_test::same_bits(r.raw_lse, base.raw_lse)) << attend::path_name(p) << " threads " << threads;
    }
  }
}

// The fraction of kept weights is 1 - p within 5 binomial standard deviations, for several p.
TEST(DropoutStatistics, KeepFractionWithinBinomialBound) {
  const Index B = 2, Hq = 2, Nq = 128, Nk = 256;
  const Inputs in = identity_inputs(B, Hq, Hq, Nq, Nk, 207);
  for (const double p : {0.1, 0.3, 0.5, 0.9}) {
    const auto m = observed_mask<float>(in, training(p, 31337, 0, Path::flash));
    double kept = 0;
    for (bool k : m) kept += k;
    const double n = static_cast<double>(m.size());
    EXPECT_NEAR(kept, n * (1 - p), 5 * std::sqrt(n * p * (1 - p))) << "p = " << p;
  }
}

// Dropout is unbiased: the average over 400 offsets of the training output equals the eval output,
// element by element within 5 standard errors. With weights P and values v, one output element is
// Σ_j P_j v_j m_j / (1 - p), m_j ~ Bernoulli(1 - p): its variance is p / (1 - p) · Σ_j P_j² v_j².
// (Without the 1/(1-p) rescaling the mean would be off by p·|out|, about 20 standard errors here.)
TEST(DropoutStatistics, MeanOverOffsetsIsTheEvalOutput) {
  const double p = 0.3;
  const int samples = 400;
  const Index Nq = 8, Nk = 64, D = 16, Dv = 16;
  Inputs in = attend_test::random_inputs(1, 1, 1, Nq, Nk, D, Dv, 208, 0.7);
  for (auto& x : in.v) x += 1.0;  // a mean far from 0, so a missing rescale shows
  const auto eval = attend_test::naive_forward(in);
  // The weights P, in double: the same q, k with v = identity.
  Inputs ident = in;
  ident.Dv = Nk;
  ident.v.assign(static_cast<std::size_t>(Nk * Nk), 0.0);
  for (Index j = 0; j < Nk; ++j) ident.v[static_cast<std::size_t>(j * Nk + j)] = 1.0;
  const auto P = attend_test::naive_forward(ident).out;

  for (const Path path : kAllPaths) {
    std::vector<double> mean(static_cast<std::size_t>(Nq * Dv), 0.0);
    for (int s = 0; s < samples; ++s) {
      const auto r = attend_test::run<float>(in, training(p, 2024, static_cast<std::uint32_t>(s), path));
      for (std::size_t e = 0; e < mean.size(); ++e) mean[e] += r.out[e] / samples;
    }
    double z2 = 0;
    for (Index i = 0; i < Nq; ++i)
      for (Index d = 0; d < Dv; ++d) {
        double var = 0;
        for (Index j = 0; j < Nk; ++j) {
          const double w = P[static_cast<std::size_t>(i * Nk + j)] * in.v[static_cast<std::size_t>(j * Dv + d)];
          var += w * w;
        }
        var *= p / (1 - p);
        const double se = std::sqrt(var / samples);
        const std::size_t e = static_cast<std::size_t>(i * Dv + d);
        const double z = (mean[e] - eval.out[e]) / se;
        z2 += z * z;
        EXPECT_LE(std::abs(z), 5.0) << attend::path_name(path) << " (i, d) = (" << i << ", " << d << ") mean "
                                    << mean[e] << " eval " << eval.out[e] << " standard error " << se;
      }
    // The standardized errors have mean square ~1 (chi-square with 128 degrees of freedom / 128:
    // 1 ± 0.125 at one sigma); 0.4..1.8 catches a variance that is wrong by a factor of 2.
    const double ms = z2 / static_cast<double>(Nq * Dv);
    EXPECT_GT(ms, 0.4) << attend::path_name(path);
    EXPECT_LT(ms, 1.8) << attend::path_name(path);
  }
}

}  // namespace
