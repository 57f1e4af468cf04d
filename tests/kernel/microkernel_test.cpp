// The register-blocked products (detail/kernel/microkernel.hpp) with FMA policies against a scalar
// chain of multiply-adds in the same order, bit for bit: every row tail (MR = 6 leaves 1 to 5 rows),
// k not a multiple of the lane forms' 4 steps, several column blocks, every Store mode (overwrite,
// add, rescale_add, scaled), and B rows at an odd offset for gemm_rows. Each with FmaOps as the target
// has it and with LaneOps, FmaOps with the multiply-add by lane forced on (the generic form of
// madd_lane where the target has no such instruction), so the micro-kernel's lane forms (ARead) are
// checked on every target, and A with both strides above 1 (the broadcast form, whatever the policy).
// Last, the property the flash path relies on: O from gemm_rows is O^T from gemm_panel, transposed,
// bit for bit.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include <Eigen/Core>

#include <attend/detail/kernel/microkernel.hpp>

#include "support/check.hpp"

namespace {

using attend::Index;
using attend::detail::FmaOps;
using attend::detail::RegisterBlocking;
using attend::detail::Store;
using attend::detail::TileTraits;
constexpr Index Br = TileTraits::kBlockQ;

/// FmaOps with A read by lanes wherever its strides allow (ARead::k_lanes, row_lanes), on any target.
template <typename Acc>
struct LaneOps : FmaOps<Acc> {
  static constexpr bool kLaneFma = true;
};

template <typename Acc>
struct Aligned {
  explicit Aligned(std::size_t n) : data(n + 64 / sizeof(Acc)) {}
  Acc* get() {
    auto p = reinterpret_cast<std::uintptr_t>(data.data());
    return reinterpret_cast<Acc*>((p + 63) / 64 * 64);
  }
  std::vector<Acc> data;
};

template <typename Acc>
void fill(Acc* x, std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Acc>(u(rng));
}

// x * y + z as the kernels' pmadd rounds it: fused where the target has FMA instructions, a multiply
// and an add elsewhere (SSE2), so the comparison below is exact on every target.
template <typename Acc>
Acc madd(Acc x, Acc y, Acc z) {
  using Packet = attend::detail::PacketOf<Acc>;
  using namespace Eigen::internal;
  return pfirst(pmadd(pset1<Packet>(x), pset1<Packet>(y), pset1<Packet>(z)));
}

// C(r, c) as the kernels compute it: acc = madd(A(r, k), B(k, c), acc) for k = 0..kc-1 from 0, then
// acc (overwrite), old + acc (add), madd(old, factor, acc) (rescale_add) or acc · scale (scaled).
template <typename Acc>
Acc expected(Index kc, const Acc* a, Index a_rs, Index a_cs, const Acc* b, Index ldb, Index r, Index c, Acc old,
             Store store, Acc factor, Acc scale) {
  Acc acc = 0;
  for (Index k = 0; k < kc; ++k) acc = madd(a[r * a_rs + k * a_cs], b[k * ldb + c], acc);
  switch (store) {
    case Store::overwrite: return acc;
    case Store::add: return old + acc;
    case Store::rescale_add: return madd(old, factor, acc);
    case Store::scaled: return acc * scale;
  }
  return acc;
}

constexpr Store kStores[] = {Store::overwrite, Store::add, Store::rescale_add, Store::scaled};

// gemm_panel / gemm_rows with the Store mode given at run time.
template <typename Ops, typename... Args>
void panel(Store store, Args... args) {
  switch (store) {
    case Store::overwrite: attend::detail::gemm_panel<Ops, Store::overwrite>(args...); return;
    case Store::add: attend::detail::gemm_panel<Ops, Store::add>(args...); return;
    case Store::rescale_add: attend::detail::gemm_panel<Ops, Store::rescale_add>(args...); return;
    case Store::scaled: attend::detail::gemm_panel<Ops, Store::scaled>(args...); return;
  }
}
template <typename Ops, typename... Args>
void rows(Store store, Args... args) {
  switch (store) {
    case Store::overwrite: attend::detail::gemm_rows<Ops, Store::overwrite>(args...); return;
    case Store::add: attend::detail::gemm_rows<Ops, Store::add>(args...); return;
    case Store::rescale_add: attend::detail::gemm_rows<Ops, Store::rescale_add>(args...); return;
    case Store::scaled: ADD_FAILURE() << "gemm_rows has no scaled form"; return;
  }
}

// A(r, k) at a[r · a_rs + k · a_cs]: K's rows read in place (a_cs = 1: ARead::k_lanes where the
// policy has lanes), or with a_cs = 2 every other column, so that no stride is 1 (ARead::broadcast).
template <typename Ops>
void check_panel(Index m, Index kc, Store store, std::mt19937& rng, Index a_cs = 1) {
  using Acc = typename Ops::Scalar;
  const Index a_rs = a_cs * kc + 3;  // A is read in place through strides: rows padded, as K's rows may be
  std::vector<Acc> a(static_cast<std::size_t>(m * a_rs));
  Aligned<Acc> b(static_cast<std::size_t>(kc * Br)), c(static_cast<std::size_t>(m * Br)),
      scale(static_cast<std::size_t>(Br));
  fill(a.data(), a.size(), rng);
  fill(b.get(), static_cast<std::size_t>(kc * Br), rng);
  fill(c.get(), static_cast<std::size_t>(m * Br), rng);
  fill(scale.get(), static_cast<std::size_t>(Br), rng);
  const std::vector<Acc> old(c.get(), c.get() + m * Br);
  const Acc s = Acc(0.75);
  panel<Ops>(store, m, kc, attend::detail::Strided<Acc>{a.data(), a_rs, a_cs}, static_cast<const Acc*>(b.get()),
             c.get(), static_cast<const Acc*>(scale.get()), s);
  for (Index r = 0; r < m; ++r) {
    for (Index col = 0; col < Br; ++col) {
      const Acc want = expected<Acc>(kc, a.data(), a_rs, a_cs, b.get(), Br, r, col, old[r * Br + col], store,
                                     scale.get()[col], s);
      ASSERT_EQ(c.get()[r * Br + col], want)
          << "m " << m << " kc " << kc << " a_cs " << a_cs << " at (" << r << ", " << col << ")";
    }
  }
}

template <typename Ops>
void check_rows(Index m, Index n, Index kc, Store store, std::mt19937& rng) {
  using Acc = typename Ops::Scalar;
  // A read as P from P^T (a_rs = 1, a_cs = Br), as the flash path does; B rows one element off
  // alignment, with a padded stride; C rows of n.
  const Index ldb = n + 5;
  Aligned<Acc> a(static_cast<std::size_t>(kc * Br)), b(static_cast<std::size_t>(kc * ldb + 1)),
      c(static_cast<std::size_t>(m * n)), scale(static_cast<std::size_t>(m));
  fill(a.get(), static_cast<std::size_t>(kc * Br), rng);
  fill(b.get(), static_cast<std::size_t>(kc * ldb + 1), rng);
  fill(c.get(), static_cast<std::size_t>(m * n), rng);
  fill(scale.get(), static_cast<std::size_t>(m), rng);
  const Acc* bb = b.get() + 1;
  const std::vector<Acc> old(c.get(), c.get() + m * n);
  rows<Ops>(store, m, n, kc, attend::detail::Strided<Acc>{a.get(), 1, Br}, bb, ldb, c.get(), n,
            static_cast<const Acc*>(scale.get()));
  for (Index r = 0; r < m; ++r) {
    for (Index col = 0; col < n; ++col) {
      const Acc want = expected<Acc>(kc, a.get(), 1, Br, bb, ldb, r, col, old[r * n + col], store, scale.get()[r],
                                     Acc(1));
      ASSERT_EQ(c.get()[r * n + col], want) << "m " << m << " n " << n << " kc " << kc << " at (" << r << ", " << col << ")";
    }
  }
}

template <typename Acc>
class Microkernel : public ::testing::Test {};
using AccTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Microkernel, AccTypes, attend_test::TypeNames);

TYPED_TEST(Microkernel, PanelMatchesMultiplyAddChainsAtEveryRowTail) {
  using Acc = TypeParam;
  std::mt19937 rng(11);
  for (Index m : {1, 2, 3, 4, 5, 6, 7, 11, 13, 62, 64})
    for (Index kc : {1, 3, 4, 7, 9, 64})
      for (Store store : kStores) {
        check_panel<FmaOps<Acc>>(m, kc, store, rng);
        check_panel<LaneOps<Acc>>(m, kc, store, rng);
        check_panel<LaneOps<Acc>>(m, kc, store, rng, 2);
      }
}

TYPED_TEST(Microkernel, RowsMatchMultiplyAddChainsAtEveryRowTailAndColumnBlock) {
  using Acc = TypeParam;
  constexpr Index cols = RegisterBlocking<FmaOps<Acc>>::kColsPerBlock;
  std::mt19937 rng(12);
  for (Index m : {1, 2, 3, 4, 5, 6, 7, 11, 13, 62, 64})
    for (Index n : {cols, 2 * cols, 3 * cols})
      for (Index kc : {1, 3, 7, 62})
        for (Store store : {Store::overwrite, Store::add, Store::rescale_add}) {
          check_rows<FmaOps<Acc>>(m, n, kc, store, rng);
          check_rows<LaneOps<Acc>>(m, n, kc, store, rng);
        }
}

TYPED_TEST(Microkernel, RowsFitOnlyWholeColumnBlocks) {
  using Ops = FmaOps<TypeParam>;
  constexpr Index cols = RegisterBlocking<Ops>::kColsPerBlock;
  EXPECT_TRUE(attend::detail::rows_fit<Ops>(cols));
  EXPECT_TRUE(attend::detail::rows_fit<Ops>(4 * cols));
  EXPECT_FALSE(attend::detail::rows_fit<Ops>(0));
  EXPECT_FALSE(attend::detail::rows_fit<Ops>(cols + cols / 2));
  EXPECT_FALSE(attend::detail::rows_fit<Ops>(cols - 1));
}

// The step hook runs hook_calls(full blocks, kc) times: spread_over divides the prefetches by it.
template <typename Ops>
void check_hook_calls() {
  using Acc = typename Ops::Scalar;
  using Blocking = RegisterBlocking<Ops>;
  constexpr Index MR = Blocking::kRegM;
  constexpr Index cols = Blocking::kColsPerBlock;
  std::mt19937 rng(14);
  for (Index m : {Index(1), MR - 1, MR, MR + 1, Index(62), Index(64)}) {
    for (Index kc : {Index(1), Index(4), Index(7), Index(8), Index(9), Index(12), Index(62), Index(64)}) {
      // B is kc x Br for gemm_panel and kc x 2 cols for gemm_rows: 2 cols < Br where packets are
      // narrower than AVX-512's (NEON, AVX2 doubles).
      const Index ldb_max = std::max(Br, 2 * cols);
      Aligned<Acc> a(static_cast<std::size_t>(m * kc + kc * Br)), b(static_cast<std::size_t>(kc * ldb_max)),
          c(static_cast<std::size_t>(m * ldb_max));
      fill(a.get(), static_cast<std::size_t>(m * kc + kc * Br), rng);
      fill(b.get(), static_cast<std::size_t>(kc * ldb_max), rng);
      Index calls = 0;
      const auto count = [&calls] { ++calls; };
      attend::detail::gemm_panel<Ops, Store::overwrite>(m, kc, {a.get(), kc, 1}, b.get(), c.get(), nullptr, Acc(1),
                                                        count);
      EXPECT_EQ(calls, attend::detail::hook_calls(m / MR * Blocking::kColBlocks, kc))
          << "gemm_panel m " << m << " kc " << kc;
      calls = 0;
      attend::detail::gemm_rows<Ops, Store::overwrite>(m, 2 * cols, kc, {a.get(), 1, Br}, b.get(), 2 * cols, c.get(),
                                                       2 * cols, nullptr, count);
      EXPECT_EQ(calls, attend::detail::hook_calls(2 * (m / MR), kc)) << "gemm_rows m " << m << " kc " << kc;
    }
  }
}

// Also with the lane forms, which run their hook test once per 4 steps of k.
TYPED_TEST(Microkernel, StepHookRunsAsOftenAsHookCallsSays) {
  check_hook_calls<FmaOps<TypeParam>>();
  check_hook_calls<LaneOps<TypeParam>>();
}

// O = α ∘ O + P · V (gemm_rows) and O^T = α ∘ O^T + V^T · P^T (gemm_panel), over two key tiles as
// the flash loop runs them, hold the same bits: the flash path takes either, by Dv.
TYPED_TEST(Microkernel, RowsAndPanelGiveTheSameValueProduct) {
  using Acc = TypeParam;
  using Ops = FmaOps<Acc>;
  const Index Dv = RegisterBlocking<Ops>::kColsPerBlock * 2, nk = 37, nq = 61;
  std::mt19937 rng(13);
  Aligned<Acc> pt(static_cast<std::size_t>(nk * Br)), v(static_cast<std::size_t>(nk * Dv)),
      alpha(static_cast<std::size_t>(Br)), o(static_cast<std::size_t>(Br * Dv)), ot(static_cast<std::size_t>(Dv * Br));
  fill(alpha.get(), static_cast<std::size_t>(Br), rng);
  for (int tile = 0; tile < 2; ++tile) {
    fill(pt.get(), static_cast<std::size_t>(nk * Br), rng);
    fill(v.get(), static_cast<std::size_t>(nk * Dv), rng);
    if (tile == 0) {
      attend::detail::gemm_rows<Ops, Store::overwrite>(nq, Dv, nk, {pt.get(), 1, Br}, v.get(), Dv, o.get(), Dv);
      attend::detail::gemm_panel<Ops, Store::overwrite>(Dv, nk, {v.get(), 1, Dv}, pt.get(), ot.get());
    } else {
      attend::detail::gemm_rows<Ops, Store::rescale_add>(nq, Dv, nk, {pt.get(), 1, Br}, v.get(), Dv, o.get(), Dv,
                                                         alpha.get());
      attend::detail::gemm_panel<Ops, Store::rescale_add>(Dv, nk, {v.get(), 1, Dv}, pt.get(), ot.get(), alpha.get());
    }
  }
  for (Index i = 0; i < nq; ++i)
    for (Index e = 0; e < Dv; ++e) ASSERT_EQ(o.get()[i * Dv + e], ot.get()[e * Br + i]) << "(" << i << ", " << e << ")";
}

}  // namespace
