#ifndef ATTEND_DETAIL_MICROKERNEL_HPP
#define ATTEND_DETAIL_MICROKERNEL_HPP

// The one register-blocked product both attention GEMMs use:
//   C (m x Br)  =  [col_scale ∘] C  +  A (m x kc) · B (kc x Br)
// A is read through element strides (a row of K or V in place, no packing), B and C are packed
// row-major panels with Br = KernelTraits::kBlockQ columns, the query index running along the lanes.
//   S^T = K · Q^T:        A = K tile (keys x D, row stride = k's),  B = Q^T (D x Br)
//   O^T = α ∘ O^T + V^T · P^T: A = V^T (Dv x keys, read from V's rows), B = P^T (keys x Br)

#include <Eigen/Core>

#include "attend/detail/kernel_traits.hpp"

namespace attend {
namespace detail {

/// One MR x NR-packet block: acc[r][n] = Σ_k A(r, k) · B(k, n-th packet); then C = acc (+ C, scaled).
/// Every loop bound is a compile-time constant, so the accumulators live in registers.
template <int MR, int NR, typename Acc>
EIGEN_ALWAYS_INLINE void micro_block(Index kc, const Acc* a, Index a_rs, Index a_cs, const Acc* b, Index ldb, Acc* c,
                                     Index ldc, const Acc* col_scale, bool accumulate) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr int L = KernelTraits<Acc>::kLanes;
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  using Eigen::internal::pstore;

  Packet acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int n = 0; n < NR; ++n) acc[r][n] = pset1<Packet>(Acc(0));

  for (Index k = 0; k < kc; ++k) {
    Packet bk[NR];
    for (int n = 0; n < NR; ++n) bk[n] = pload<Packet>(b + k * ldb + n * L);
    const Acc* ak = a + k * a_cs;
    for (int r = 0; r < MR; ++r) {
      const Packet ar = pset1<Packet>(ak[r * a_rs]);
      for (int n = 0; n < NR; ++n) acc[r][n] = pmadd(ar, bk[n], acc[r][n]);
    }
  }

  for (int r = 0; r < MR; ++r) {
    for (int n = 0; n < NR; ++n) {
      Acc* cp = c + r * ldc + n * L;
      Packet res = acc[r][n];
      if (accumulate) {
        // One explicit FMA, not a multiply and an add that the compiler may or may not contract:
        // the careful re-run (zero_weights.hpp) goes through another instantiation of this code
        // and must round exactly as the fast path did.
        const Packet old = pload<Packet>(cp);
        res = col_scale != nullptr ? pmadd(old, pload<Packet>(col_scale + n * L), res) : padd(old, res);
      }
      pstore(cp, res);
    }
  }
}

/// What gemm_panel does between register blocks by default: nothing.
struct NoHook {
  EIGEN_ALWAYS_INLINE void operator()() const {}
};

/// C (m x Br) = [col_scale ∘] C + A (m x kc) · B (kc x Br), with C and B of leading dimension Br.
/// `accumulate = false` overwrites C (col_scale is then ignored). Rows past a multiple of MR go
/// through a narrower block of the same kind, so no row is computed twice or with scalar code.
/// `between()` runs after each register block (the flash path hands out prefetches there).
template <typename Acc, typename Hook = NoHook>
void gemm_panel(Index m, Index kc, const Acc* a, Index a_rs, Index a_cs, const Acc* b, Acc* c, const Acc* col_scale,
                bool accumulate, Hook between = {}) {
  using Traits = KernelTraits<Acc>;
  constexpr int MR = Traits::kRegM;
  constexpr int NR = Traits::kRegNUsed;
  constexpr int kCols = NR * Traits::kLanes;
  constexpr Index ld = Traits::kBlockQ;
  for (int nb = 0; nb < Traits::kColBlocks; ++nb) {
    const Acc* bn = b + nb * kCols;
    Acc* cn = c + nb * kCols;
    const Acc* sn = col_scale == nullptr ? nullptr : col_scale + nb * kCols;
    Index r0 = 0;
    for (; r0 + MR <= m; r0 += MR) {
      micro_block<MR, NR>(kc, a + r0 * a_rs, a_rs, a_cs, bn, ld, cn + r0 * ld, ld, sn, accumulate);
      between();
    }
    const Index rest = m - r0;
    const Acc* ar = a + r0 * a_rs;
    Acc* cr = cn + r0 * ld;
    // Tails: MR is at most 6, so at most five narrower shapes are ever instantiated.
    switch (rest) {
      case 0: break;
      case 1: micro_block<1, NR>(kc, ar, a_rs, a_cs, bn, ld, cr, ld, sn, accumulate); break;
      case 2: micro_block<(MR > 2 ? 2 : 1), NR>(kc, ar, a_rs, a_cs, bn, ld, cr, ld, sn, accumulate); break;
      case 3: micro_block<(MR > 3 ? 3 : 1), NR>(kc, ar, a_rs, a_cs, bn, ld, cr, ld, sn, accumulate); break;
      case 4: micro_block<(MR > 4 ? 4 : 1), NR>(kc, ar, a_rs, a_cs, bn, ld, cr, ld, sn, accumulate); break;
      default: micro_block<(MR > 5 ? 5 : 1), NR>(kc, ar, a_rs, a_cs, bn, ld, cr, ld, sn, accumulate); break;
    }
  }
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_MICROKERNEL_HPP
