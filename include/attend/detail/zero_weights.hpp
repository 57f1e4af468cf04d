#ifndef ATTEND_DETAIL_ZERO_WEIGHTS_HPP
#define ATTEND_DETAIL_ZERO_WEIGHTS_HPP

// A zero weight contributes nothing, even against an Inf or NaN value.
//
// The product P·V multiplies every value row by its weight, and a hidden key (masked, causal, dropped,
// or with an exp that underflowed) has weight exactly 0. IEEE gives 0 · Inf = NaN, so one Inf in a
// row of v would turn into NaN every query that cannot even see that row, and each path would spread
// it differently (math: every query of the head; tiled: every query of each tile that visits the key;
// decode: the rows of its split). attend's rule, the same on every path: the term p · v[j][d] is added
// only when p != 0 (NaN weights are not 0, so a NaN row stays NaN).
//
// Keeping the fast loops free of that test costs nothing: 0 · Inf is the only way the rule can be
// broken, and it leaves a NaN in the accumulator, which stays NaN to the end. So the kernels compute as
// usual, look for a NaN in each finished accumulator tile (one compare per output element, about
// 1/64 of a tile's multiply-adds at Nk = 62 and less beyond), and only when one is found recompute that
// tile "carefully": values go through a copy whose non-finite entries are 0, their own terms are added
// separately where the weight is non-zero, and an accumulator column whose rescale factor is 0
// forgets the non-finite entries it held. Finite values take exactly the fast path's arithmetic, so
// every element that no non-finite value reaches is bitwise the same as in a clean run.

#include <cmath>  // std::isfinite
#include <type_traits>

#include <Eigen/Core>

#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/microkernel.hpp"
#include "attend/detail/problem.hpp"

namespace attend {
namespace detail {

/// Whether any of x[0, n) is NaN (any pointer, any n).
template <typename Acc>
bool any_nan(const Acc* x, Index n) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  using namespace Eigen::internal;
  // A packet at a time: the decode kernel scans 4 x 128 outputs per 512 keys, and a scalar scan of
  // them was 4% of its time with K and V in cache.
  Index i = 0;
#if defined(EIGEN_VECTORIZE_AVX512)
  // One unordered compare tests two packets, and the masks are OR-ed (1 cycle each): the generic
  // loop below is a chain of 3-cycle adds, 2% of a tile at N = 62 (4096 outputs).
  if constexpr (std::is_same_v<Acc, float> || std::is_same_v<Acc, double>) {
    unsigned nan_mask = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      if constexpr (std::is_same_v<Acc, float>) {
        nan_mask |= _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + L), _CMP_UNORD_Q);
      } else {
        nan_mask |= _mm512_cmp_pd_mask(_mm512_loadu_pd(x + i), _mm512_loadu_pd(x + i + L), _CMP_UNORD_Q);
      }
    }
    if (nan_mask != 0) return true;
  }
#endif
  const Packet one = pset1<Packet>(Acc(1));
  // pcmp_eq(p, p) is all-ones except in NaN lanes; pandnot(one, that) is 1 exactly in NaN lanes.
  Packet nan_lanes = pset1<Packet>(Acc(0));
  for (; i + L <= n; i += L) {
    const Packet p = ploadu<Packet>(x + i);
    nan_lanes = padd(nan_lanes, pandnot(one, pcmp_eq(p, p)));
  }
  bool nan = predux(nan_lanes) != Acc(0);
  for (; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

/// Copies rows [j0, j0 + nk) of v for (b, kv head hk) as Acc into buf (row stride Dv), with the
/// non-finite entries replaced by 0. Returns whether there were any.
template <typename T>
bool finite_value_rows(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, acc_t<T>* buf) {
  using Acc = acc_t<T>;
  bool dirty = false;
  for (Index j = 0; j < nk; ++j) {
    const T* row = &pb.v(b, hk, j0 + j, 0);
    for (Index d = 0; d < pb.Dv; ++d) {
      const Acc x = static_cast<Acc>(row[d]);
      const bool ok = std::isfinite(x);
      dirty |= !ok;
      buf[j * pb.Dv + d] = ok ? x : Acc(0);
    }
  }
  return dirty;
}

/// The careful re-run's rescale rule for O^T (Dv x Br): where α is 0, every earlier key's weight
/// underflowed against the new max, so what those keys left must go, including an Inf, which α would
/// turn into NaN. Finite entries are left to the product, which multiplies them by 0 as the fast path does.
template <int Br, typename Acc>
void forget_nonfinite_where_rescale_is_zero(Acc* ot, Index Dv, const Acc* rescale) {
  for (Index c = 0; c < Br; ++c) {
    if (rescale[c] != Acc(0)) continue;
    for (Index d = 0; d < Dv; ++d) {
      if (!std::isfinite(ot[d * Br + c])) ot[d * Br + c] = Acc(0);
    }
  }
}

/// The careful form of a tiled kernel's value step, O^T = [α ∘] O^T + V_j^T · P^T (see the top of
/// this file). pt is P^T (nk x Br), ot is O^T (Dv x Br); rescale (α, Br) may be null (no rescale).
/// buf holds nk x Dv Acc values.
template <typename T, int Br>
void careful_value_tile(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, const acc_t<T>* pt,
                        acc_t<T>* ot, const acc_t<T>* rescale, acc_t<T>* buf) {
  using Acc = acc_t<T>;
  const bool dirty = finite_value_rows(pb, b, hk, j0, nk, buf);
  if (rescale != nullptr) forget_nonfinite_where_rescale_is_zero<Br>(ot, pb.Dv, rescale);
  gemm_panel<Acc>(pb.Dv, nk, buf, 1, pb.Dv, pt, ot, rescale, true);
  if (!dirty) return;
  for (Index j = 0; j < nk; ++j) {
    const T* row = &pb.v(b, hk, j0 + j, 0);
    for (Index d = 0; d < pb.Dv; ++d) {
      const Acc x = static_cast<Acc>(row[d]);
      if (std::isfinite(x)) continue;
      for (Index c = 0; c < Br; ++c) {
        const Acc p = pt[j * Br + c];
        if (p != Acc(0)) ot[d * Br + c] += p * x;
      }
    }
  }
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_ZERO_WEIGHTS_HPP
