#ifndef ATTEND_DETAIL_KERNEL_MASK_HPP
#define ATTEND_DETAIL_KERNEL_MASK_HPP

// attend's masking rule, the one every path applies, in a row form (the math and decode paths, and
// the backward's recomputed scores) and a tile form (query tiles, scores transposed):
//   - a bool mask hides the keys it marks false;
//   - an additive mask is added to the scaled score;
//   - causality hides the keys past the diagonal (j > i + causal_offset), whatever the mask holds
//     there.
// A hidden score is overwritten with -inf, never added to, so a NaN or Inf in a hidden key, or in the
// mask under a causally hidden key, cannot leak into the row.

#include <algorithm>  // std::min, std::max
#include <limits>     // std::numeric_limits

#include "attend/detail/abi.hpp"
#include "attend/detail/problem.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// The key range a block of queries [i0, i0 + nq) can see under causality: [0, end). end <= 0 means
/// none.
template <typename T>
Index visible_key_end(const Problem<T>& pb, Index i0, Index nq) {
  if (pb.causal == Causal::none) return pb.Nk;
  return std::min(pb.Nk, std::max<Index>(0, i0 + nq + pb.causal_offset));
}

/// The rule for query row i of (b, h): scores s[t * stride] of keys j0 + t, t < n, in place.
template <typename T>
void mask_row(const Problem<T>& pb, Index b, Index h, Index i, Index j0, Index n, acc_t<T>* s, Index stride) {
  using Acc = acc_t<T>;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Index js = pb.mask_strides[3];
  if (pb.keep != nullptr) {
    const bool* m = pb.keep + pb.mask_offset(b, h, i, j0);
    for (Index t = 0; t < n; ++t) {
      if (!m[t * js]) s[t * stride] = kNegInf;
    }
  } else if (pb.bias != nullptr) {
    const T* m = pb.bias + pb.mask_offset(b, h, i, j0);
    for (Index t = 0; t < n; ++t) s[t * stride] += static_cast<Acc>(m[t * js]);
  }
  if (pb.causal != Causal::none) {
    const Index first_hidden = std::max<Index>(0, i + pb.causal_offset + 1 - j0);
    for (Index t = first_hidden; t < n; ++t) s[t * stride] = kNegInf;
  }
}

/// The rule for a transposed score tile, s[jj * Br + ii] for key j0 + jj (jj < nk) and query i0 + ii
/// (ii < nq). A tile that is not cut by the diagonal and has no mask is left alone.
template <typename T, int Br>
void mask_score_tile(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Index j0, Index nk, acc_t<T>* s) {
  // The first query sees keys up to i0 + offset; if the tile's last key is within that, no query of
  // the tile is cut by the diagonal.
  const bool cut = pb.causal != Causal::none && j0 + nk - 1 > i0 + pb.causal_offset;
  if (!cut && !pb.has_mask()) return;
  for (Index ii = 0; ii < nq; ++ii) mask_row(pb, b, h, i0 + ii, j0, nk, s + ii, Br);
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_MASK_HPP
