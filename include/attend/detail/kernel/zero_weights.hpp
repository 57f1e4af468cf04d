#ifndef ATTEND_DETAIL_KERNEL_ZERO_WEIGHTS_HPP
#define ATTEND_DETAIL_KERNEL_ZERO_WEIGHTS_HPP

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
// separately where the weight is non-zero (add_nonfinite_terms), and an accumulator whose rescale
// factor is 0 forgets the non-finite entries it held (forget_nonfinite). Finite values take exactly
// the fast path's arithmetic, so every element that no non-finite value reaches is bitwise the same as
// in a clean run. Every path uses the three functions below.

#include <cmath>  // std::isfinite

#include "attend/detail/abi.hpp"
#include "attend/detail/problem.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Copies rows [j0, j0 + nk) of v for (b, kv head hk) as acc_t<T> into buf (row stride Dv), with the
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

/// The rescale rule: where an accumulator's factor is 0, every earlier key's weight underflowed against
/// the new max, so what those keys left must go, including an Inf, which the factor would turn into
/// NaN. Finite entries are left to the product, which multiplies them by 0 as the fast path does.
/// Accumulator `a` (a < count) with factor[a] == 0 holds n entries acc[a * a_stride + e * e_stride].
template <typename Acc>
void forget_nonfinite(Acc* acc, Index count, const Acc* factor, Index n, Index a_stride, Index e_stride) {
  for (Index a = 0; a < count; ++a) {
    if (factor[a] != Acc(0)) continue;
    for (Index e = 0; e < n; ++e) {
      Acc& x = acc[a * a_stride + e * e_stride];
      if (!std::isfinite(x)) x = Acc(0);
    }
  }
}

/// The non-finite operand entries' own terms, where the weight is not 0: for each non-finite x(j, d)
/// (j < n, d < cols), out(r, d) += weight(j, r) · x(j, d) for each row r < rows with a non-zero
/// weight. Operand, rows, columns and weights come through the caller's accessors, so every product
/// and accumulator layout (O^T, O with a row per query, decode rows, the math path's matrices, the
/// backward's dV, dQ and dK) shares the loop.
template <typename Acc, typename Value, typename Weight, typename Out>
void add_nonfinite_terms(Index n, Index cols, Index rows, Value x, Weight weight, Out out) {
  for (Index j = 0; j < n; ++j) {
    for (Index d = 0; d < cols; ++d) {
      const Acc v = x(j, d);
      if (std::isfinite(v)) continue;
      for (Index r = 0; r < rows; ++r) {
        const Acc p = weight(j, r);
        if (p != Acc(0)) out(r, d) += p * v;
      }
    }
  }
}

/// The forward's form: the operand is rows [j0, j0 + nk) of v for (b, kv head hk).
template <typename T, typename Weight, typename Out>
void add_nonfinite_value_terms(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Index rows, Weight weight,
                               Out out) {
  using Acc = acc_t<T>;
  add_nonfinite_terms<Acc>(
      nk, pb.Dv, rows, [&](Index j, Index d) { return static_cast<Acc>(pb.v(b, hk, j0 + j, d)); }, weight, out);
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_ZERO_WEIGHTS_HPP
