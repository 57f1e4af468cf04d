#ifndef ATTEND_DETAIL_MICROKERNEL_HPP
#define ATTEND_DETAIL_MICROKERNEL_HPP

// The one register-blocked product both attention GEMMs use, in two forms:
//   gemm_panel:  C (m x Br) = [col_scale ∘] C + A (m x kc) · B (kc x Br)
//     B and C are packed row-major panels with Br = KernelTraits::kBlockQ columns, the query index
//     running along the lanes.
//       S^T = K · Q^T:             A = K tile (keys x D, row stride = k's),  B = Q^T (D x Br)
//       O^T = α ∘ O^T + V^T · P^T: A = V^T (Dv x keys, read from V's rows), B = P^T (keys x Br)
//   gemm_rows:   C (m x n)  = [row_scale ∘] C + A (m x kc) · B (kc x n)
//     B is read in place (rows of any stride and alignment), C has one row per query.
//       O = α ∘ O + P · V:         A = P (queries x keys, read from P^T),    B = V tile (keys x Dv)
//     O comes out with a query per row, as the output is laid out: its epilogue needs no transpose.
// In both, A is read through element strides, one broadcast per row and step of k, so it is never
// packed. Each C element is the same chain of FMAs over k in both forms (the product's operands are
// swapped, which an FMA does not see), so O and O^T hold the same bits.

#include <type_traits>  // std::integral_constant

#include <Eigen/Core>

#include "attend/detail/kernel_traits.hpp"

namespace attend {
namespace detail {

/// What gemm_panel and gemm_rows do inside their register blocks by default: nothing.
struct NoHook {
  EIGEN_ALWAYS_INLINE void operator()() const {}
};

/// A hook runs inside each full register block once every kHookSteps steps of k. The flash path
/// hands out the next tile's prefetches there: at N = 62 from DRAM, one thread, a tile took 12.9-13.1
/// us with them handed out after each block (about 38 lines at once) and 11.5-11.9 us at every 8
/// steps (5 lines); 4 and 16 steps measured the same as 8.
constexpr Index kHookSteps = 8;
static_assert(kHookSteps >= 2 && (kHookSteps & (kHookSteps - 1)) == 0, "the hook interval must be a power of two");

/// How many times a product runs its hook: kc / kHookSteps times in each of its `full_blocks` full
/// register blocks (tail blocks run none).
constexpr Index hook_calls(Index full_blocks, Index kc) { return full_blocks * (kc / kHookSteps); }

/// Where the accumulating form of micro_block takes the factor for the old C: one per column (a
/// packet: O^T's rescale, one per query) or one per row (a broadcast: O's, one per query).
enum class ScaleBy { column, row };

/// One MR x NR-packet block: acc[r][n] = Σ_k A(r, k) · B(k, n-th packet); then C = acc (+ C, scaled).
/// Every loop bound is a compile-time constant, so the accumulators live in registers. With
/// ScaleBy::column, B is a packed, aligned panel and `scale` points at the block's first column;
/// with ScaleBy::row, B may have any alignment and `scale` points at the block's first row.
/// `step()` runs after every kHookSteps-th step of k.
template <int MR, int NR, ScaleBy kScale = ScaleBy::column, typename Acc, typename Hook = NoHook>
EIGEN_ALWAYS_INLINE void micro_block(Index kc, const Acc* a, Index a_rs, Index a_cs, const Acc* b, Index ldb, Acc* c,
                                     Index ldc, const Acc* scale, bool accumulate, const Hook& step = {}) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr int L = KernelTraits<Acc>::kLanes;
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  using Eigen::internal::ploadu;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  using Eigen::internal::pstore;

  Packet acc[MR][NR];
  ATTEND_UNROLL
  for (int r = 0; r < MR; ++r)
    ATTEND_UNROLL
    for (int n = 0; n < NR; ++n) acc[r][n] = pset1<Packet>(Acc(0));

  for (Index k = 0; k < kc; ++k) {
    Packet bk[NR];
    ATTEND_UNROLL
    for (int n = 0; n < NR; ++n) {
      if constexpr (kScale == ScaleBy::column) {
        bk[n] = pload<Packet>(b + k * ldb + n * L);
      } else {
        bk[n] = ploadu<Packet>(b + k * ldb + n * L);
      }
    }
    const Acc* ak = a + k * a_cs;
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r) {
      const Packet ar = pset1<Packet>(ak[r * a_rs]);
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) acc[r][n] = pmadd(ar, bk[n], acc[r][n]);
    }
    if ((k & (kHookSteps - 1)) == kHookSteps - 1) step();
  }

  // The three ways of writing C, each a branch-free loop that the compiler unrolls completely, so
  // the accumulators stay in registers. With the tests inside one loop, GCC 12 kept the loop rolled
  // and acc[][] on the stack: zeroed there, spilled after the k loop and read back, about 100
  // instructions per block of 1500 FMAs.
  if (!accumulate) {
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) pstore(c + r * ldc + n * L, acc[r][n]);
  } else if (scale == nullptr) {
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) pstore(c + r * ldc + n * L, padd(pload<Packet>(c + r * ldc + n * L), acc[r][n]));
  } else {
    // One explicit FMA, not a multiply and an add that the compiler may or may not contract: the
    // careful re-run (zero_weights.hpp) goes through another instantiation of this code and must
    // round exactly as the fast path did.
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r) {
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) {
        Acc* cp = c + r * ldc + n * L;
        const Packet factor = kScale == ScaleBy::column ? pload<Packet>(scale + n * L) : pset1<Packet>(scale[r]);
        pstore(cp, pmadd(pload<Packet>(cp), factor, acc[r][n]));
      }
    }
  }
}

/// Calls f(std::integral_constant<int, R>{}, r0) over rows [0, m): R = MR for each whole block of MR
/// rows, then once with R = m mod MR for the rows left. The register-blocked kernels take R as a
/// template argument, so a ragged edge runs a narrower block of the same kind, never scalar code, and
/// at most MR - 1 narrower shapes are instantiated.
template <int MR, typename F>
EIGEN_ALWAYS_INLINE void for_register_rows(Index m, F&& f) {
  static_assert(MR >= 1 && MR <= 6, "for_register_rows: 1 to 6 rows per block");
  Index r0 = 0;
  for (; r0 + MR <= m; r0 += MR) f(std::integral_constant<int, MR>{}, r0);
  switch (m - r0) {
    case 1: if constexpr (MR > 1) f(std::integral_constant<int, 1>{}, r0); break;
    case 2: if constexpr (MR > 2) f(std::integral_constant<int, 2>{}, r0); break;
    case 3: if constexpr (MR > 3) f(std::integral_constant<int, 3>{}, r0); break;
    case 4: if constexpr (MR > 4) f(std::integral_constant<int, 4>{}, r0); break;
    case 5: if constexpr (MR > 5) f(std::integral_constant<int, 5>{}, r0); break;
    default: break;
  }
}

/// C (m x Br) = [col_scale ∘] C + A (m x kc) · B (kc x Br), with C and B of leading dimension Br.
/// `accumulate = false` overwrites C (col_scale is then ignored). Rows past a multiple of MR go
/// through a narrower block of the same kind, so no row is computed twice or with scalar code.
/// `step()` runs inside each full register block (see kHookSteps; the flash path hands out
/// prefetches there).
template <typename Acc, typename Hook = NoHook>
void gemm_panel(Index m, Index kc, const Acc* a, Index a_rs, Index a_cs, const Acc* b, Acc* c, const Acc* col_scale,
                bool accumulate, Hook step = {}) {
  using Traits = KernelTraits<Acc>;
  constexpr int MR = Traits::kRegM;
  constexpr int NR = Traits::kRegNUsed;
  constexpr int kCols = NR * Traits::kLanes;
  constexpr Index ld = Traits::kBlockQ;
  for (int nb = 0; nb < Traits::kColBlocks; ++nb) {
    const Acc* bn = b + nb * kCols;
    Acc* cn = c + nb * kCols;
    const Acc* sn = col_scale == nullptr ? nullptr : col_scale + nb * kCols;
    for_register_rows<MR>(m, [&](auto rows, Index r0) ATTEND_INLINE_LAMBDA {
      constexpr int R = decltype(rows)::value;
      const Acc* ar = a + r0 * a_rs;
      if constexpr (R == MR) {
        micro_block<R, NR>(kc, ar, a_rs, a_cs, bn, ld, cn + r0 * ld, ld, sn, accumulate, step);
      } else {
        micro_block<R, NR>(kc, ar, a_rs, a_cs, bn, ld, cn + r0 * ld, ld, sn, accumulate);
      }
    });
  }
}

/// Whether gemm_rows takes n columns: whole micro-kernel column blocks (64 floats with AVX-512, 32
/// with AVX2), so that every B load and C store is a full packet.
template <typename Acc>
constexpr bool rows_fit(Index n) {
  return n > 0 && n % KernelTraits<Acc>::kColsPerBlock == 0;
}

/// C (m x n) = [row_scale ∘] C + A (m x kc) · B (kc x n), B with leading dimension ldb (any
/// alignment), C with ldc (packet-aligned rows). n must satisfy rows_fit. `accumulate = false`
/// overwrites C (row_scale is then ignored). Rows past a multiple of MR go through a narrower block,
/// as in gemm_panel, and so does `step()`.
template <typename Acc, typename Hook = NoHook>
void gemm_rows(Index m, Index n, Index kc, const Acc* a, Index a_rs, Index a_cs, const Acc* b, Index ldb, Acc* c,
               Index ldc, const Acc* row_scale, bool accumulate, Hook step = {}) {
  using Traits = KernelTraits<Acc>;
  constexpr int MR = Traits::kRegM;
  constexpr int NR = Traits::kRegN;
  constexpr Index kCols = Traits::kColsPerBlock;
  constexpr ScaleBy kRow = ScaleBy::row;
  for (Index n0 = 0; n0 < n; n0 += kCols) {
    for_register_rows<MR>(m, [&](auto rows, Index r0) ATTEND_INLINE_LAMBDA {
      constexpr int R = decltype(rows)::value;
      const Acc* ar = a + r0 * a_rs;
      Acc* cr = c + r0 * ldc + n0;
      const Acc* sr = row_scale == nullptr ? nullptr : row_scale + r0;
      if constexpr (R == MR) {
        micro_block<R, NR, kRow>(kc, ar, a_rs, a_cs, b + n0, ldb, cr, ldc, sr, accumulate, step);
      } else {
        micro_block<R, NR, kRow>(kc, ar, a_rs, a_cs, b + n0, ldb, cr, ldc, sr, accumulate);
      }
    });
  }
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_MICROKERNEL_HPP
