#ifndef ATTEND_DETAIL_BACKWARD_COMMON_HPP
#define ATTEND_DETAIL_BACKWARD_COMMON_HPP

// What every backward path shares: the gradient's arithmetic in one place, and how a call's work is
// cut into items.
//
// With P = softmax(S), S = scale · q kᵀ + mask (hidden scores -inf), the dropout keep-mask M and its
// scale s = 1/(1 - p), Z = s · P ∘ M and out = Z v, the gradients of L = sum(out ∘ dout) are
//   dv = Zᵀ dout                   dP = s · (dout vᵀ) ∘ M          D_i = rowsum(dout_i ∘ out_i)
//   dS = P ∘ (dP − D)              dq = scale · dS k               dk = scale · dSᵀ q
//   dmask = dS, summed over the dimensions the mask broadcasts over
// (D_i = Σ_j P_ij dP_ij: the flash and mem_efficient paths read it from out, the math path sums it.)
//
// attend's rule for zero weights holds in the backward too (kernel/zero_weights.hpp): where P_ij = 0
// (a hidden key, an underflowed weight) dS_ij is exactly 0 whatever dP and D are, and a weight of 0
// (Z for dv, dS for dq and dk) contributes nothing even against a non-finite dout, k or q. A row
// that sees no key (lse = -inf) gets zero gradients.

#include <algorithm>  // std::min
#include <cmath>      // std::isfinite
#include <limits>     // std::numeric_limits

#include "attend/detail/abi.hpp"
#include "attend/detail/problem.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// dS_ij from P_ij, dP_ij and D_i: exactly 0 where P is 0.
template <typename Acc>
EIGEN_ALWAYS_INLINE Acc grad_score(Acc p, Acc dp, Acc d) {
  return p == Acc(0) ? Acc(0) : p * (dp - d);
}

/// The subtrahend that turns a score into its probability, exp(s - sub): the forward's lse, or +inf
/// for a row that saw no key (lse -inf), so that every exp is exactly 0 there, never NaN.
template <typename Acc>
EIGEN_ALWAYS_INLINE Acc lse_subtrahend(Acc lse) {
  return lse == -std::numeric_limits<Acc>::infinity() ? std::numeric_limits<Acc>::infinity() : lse;
}

/// A backward call's work items: ranges of batches and kv heads, each item computing dk and dv of its
/// (b, kv head) pairs completely (and dq of their query heads, or its share of it). An item covers one
/// (b, kv head) unless dmask is requested with a mask that broadcasts over B (then every b) or over
/// query heads of several kv heads (then every kv head), so that each dmask element's sum is made by
/// one item, in a fixed order: the result never depends on the thread count.
struct GradItems {
  Index b_per_item = 1, hkv_per_item = 1;
  Index b_items = 0, hkv_items = 0;

  template <typename T>
  static GradItems of(const GradProblem<T>& pb) {
    GradItems it;
    it.b_per_item = pb.dmask_reduces(0) ? pb.B : 1;
    it.hkv_per_item = pb.dmask_reduces(1) && pb.Hkv > 1 ? pb.Hkv : 1;
    it.b_items = pb.B == 0 ? 0 : pb.B / it.b_per_item;
    it.hkv_items = pb.Hkv == 0 ? 0 : pb.Hkv / it.hkv_per_item;
    return it;
  }
  Index count() const { return b_items * hkv_items; }
  /// The first (b, kv head) of item `item`.
  void first(Index item, Index& b0, Index& h0) const {
    b0 = (item / hkv_items) * b_per_item;
    h0 = (item % hkv_items) * hkv_per_item;
  }
  /// Calls f(b, hk) for every (b, kv head) of item `item`, b-major.
  template <typename F>
  void for_each(Index item, F&& f) const {
    Index b0 = 0, h0 = 0;
    first(item, b0, h0);
    for (Index b = b0; b < b0 + b_per_item; ++b)
      for (Index hk = h0; hk < h0 + hkv_per_item; ++hk) f(b, hk);
  }
};

/// Sets every element of dmask to 0 (before a call that writes only the visible scores' entries).
template <typename T>
void zero_dmask(const GradProblem<T>& pb) {
  if (pb.dmask == nullptr) return;
  const auto& n = pb.mask_dims;
  for (Index b = 0; b < n[0]; ++b)
    for (Index h = 0; h < n[1]; ++h)
      for (Index i = 0; i < n[2]; ++i)
        for (Index j = 0; j < n[3]; ++j) pb.dmask[pb.dmask_offset(b, h, i, j)] = T(0);
}

/// Adds one dS value to the dmask accumulator (the mask's padded shape, row-major, Acc) at the
/// position (b, h, i, j) broadcasts to.
template <typename T>
struct DmaskAccumulator {
  acc_t<T>* acc = nullptr;  // (B|1, Hq|1, Nq|1, Nk|1) row-major, or null
  std::array<Index, 4> strides{};

  static DmaskAccumulator of(const GradProblem<T>& pb, acc_t<T>* buffer) {
    DmaskAccumulator d;
    if (pb.dmask == nullptr) return d;
    d.acc = buffer;
    Index s = 1;
    for (int r = 3; r >= 0; --r) {
      const Index n = pb.mask_dims[static_cast<std::size_t>(r)];
      d.strides[static_cast<std::size_t>(r)] = n == 1 ? 0 : s;
      s *= n;
    }
    return d;
  }
  static std::size_t size(const GradProblem<T>& pb) {
    if (pb.dmask == nullptr) return 0;
    std::size_t n = 1;
    for (Index d : pb.mask_dims) n *= static_cast<std::size_t>(d);
    return n;
  }
  acc_t<T>& at(Index b, Index h, Index i, Index j) const {
    return acc[b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]];
  }
};

/// Writes the dmask accumulator to pb.dmask, rounded to T once (nothing where dmask was written
/// directly: no accumulator).
template <typename T>
void write_dmask(const GradProblem<T>& pb, const DmaskAccumulator<T>& acc) {
  if (pb.dmask == nullptr || acc.acc == nullptr) return;
  const auto& n = pb.mask_dims;
  for (Index b = 0; b < n[0]; ++b)
    for (Index h = 0; h < n[1]; ++h)
      for (Index i = 0; i < n[2]; ++i)
        for (Index j = 0; j < n[3]; ++j) pb.dmask[pb.dmask_offset(b, h, i, j)] = static_cast<T>(acc.at(b, h, i, j));
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_BACKWARD_COMMON_HPP
