#ifndef ATTEND_TESTS_SUPPORT_REFERENCE_HPP
#define ATTEND_TESTS_SUPPORT_REFERENCE_HPP

// The tests' oracle: scaled dot-product attention and its gradients in double, by naive loops written
// directly over attend_test::Inputs. It shares nothing with the library but the types of Inputs: its
// own index arithmetic, mask broadcasting, causal rule and Philox4x32-10 dropout, from the semantics
// in tests/data/golden/README.md (PyTorch's scaled_dot_product_attention, and attend's documented
// dropout keep-mask), so a bug in the library's validation, mask broadcasting or dropout cannot hide
// in the oracle too. Checked against the golden cases (out, lse and, for the gradients, dq, dk, dv)
// and by finite differences (support/reference_test.cpp).
//
// Semantics:
//   s_ij = scale · q_i · k_j, then a bool mask or causality hides (s_ij = -inf: written, not added,
//   so a hidden NaN key stays hidden) and an additive mask adds. Query head h reads kv head
//   h / (Hq / Hkv). causal top_left: j <= i; bottom_right: j <= i + Nk - Nq.
//   A row that sees no key (every s_ij = -inf, or Nk = 0): out 0, lse -inf, zero gradients.
//   A row with a NaN score: out and lse NaN. Otherwise P = softmax(s), lse = log Σ exp(s).
//   Dropout (p > 0): the weights are w_ij = P_ij · M_ij with M_ij = keep_ij / (1 - p) (0 for p = 1),
//   a product, so a NaN P stays NaN when dropped; lse is that of P, before dropout.
//   out_i = Σ_j w_ij v_j over the j with w_ij != 0: a weight of exactly 0 contributes nothing, even
//   against an Inf or NaN value (attend's zero-weight rule, docs/errors.md).
//   Gradients of L = Σ out ∘ dout: dv = wᵀ dout; dP = (dout vᵀ) ∘ M; dS = P ∘ (dP - rowsum(dout ∘ out));
//   dq = scale · dS k; dk = scale · dSᵀ q; dmask = dS summed over the mask's broadcast dimensions
//   (additive masks only). GQA: dk and dv of a kv head sum over its query heads. A term whose weight
//   (P_ij for dS, w_ij for dv) is exactly 0 contributes nothing, as in the forward pass.

#include <array>
#include <cstdint>
#include <vector>

#include "support/attend_test.hpp"

namespace attend_test {

/// Philox4x32-10 (Salmon et al., SC'11, with Random123's constants): ten rounds over a 128-bit
/// counter with a 64-bit key.
std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key);

/// Dropout as the golden README documents it. p = 0: none.
struct DropoutSpec {
  double p = 0.0;
  std::uint64_t seed = 0;
  std::uint32_t offset = 0;

  bool active() const { return p > 0.0; }
  /// Whether element (b, h, i, j) of a call with Hq query heads is kept: word j % 4 of
  /// Philox4x32-10 with counter (j / 4, i, b·Hq + h, offset) and key (seed's low 32 bits, its high
  /// 32 bits) is at least round(p · 2^32).
  bool keeps(Index Hq, Index b, Index h, Index i, Index j) const;
  /// The factor of a kept weight, 1 / (1 - p) (0 for p = 1, where nothing is kept).
  double keep_scale() const { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }
};

/// The dropout a RunSpec asks for: active only in training with p > 0.
inline DropoutSpec dropout_of(const RunSpec& s) {
  DropoutSpec d;
  if (s.train && s.dropout > 0.0) {
    d.p = s.dropout;
    d.seed = s.seed;
    d.offset = s.offset;
  }
  return d;
}

/// out (B, Hq, Nq, Dv) and lse (B, Hq, Nq), row-major.
struct Forward {
  std::vector<double> out, lse;
};

/// The forward pass of `in` in double.
Forward naive_forward(const Inputs& in, const DropoutSpec& dropout = {});

/// Gradients of L = Σ out ∘ dout, shaped like q, k, v and (for an additive mask) the mask itself.
struct Gradients {
  std::vector<double> dq, dk, dv;
  std::vector<double> dmask;  // additive masks only, in in.mask_dims' shape; empty otherwise
  /// For each gradient, the largest sum of the absolute values of the terms that one element sums:
  /// the magnitude its tolerance scales with (attend_test::grad_tolerance).
  struct {
    double dq = 0, dk = 0, dv = 0, dmask = 0;
  } terms;
  /// For dq, dk and dmask (dv does not depend on D_i = rowsum(dout ∘ out)), the largest sum over one
  /// element's terms of |∂term/∂D_i| · Σ_d |dout_id| · X_id, with X_id = Σ_j |w_ij v_jd| (the size of
  /// out_id's own terms: `terms`) or |out_id| (`values`): how far the element moves when each out_id
  /// moves by a relative error of its terms or of its value. A backward that reads D_i from the
  /// forward's out (the flash path, as FlashAttention-2) inherits out's kernel error (relative to its
  /// terms) and its rounding to T (relative to its value) (attend_test::grad_tolerance).
  struct RowsumTerms {
    double dq = 0, dk = 0, dmask = 0;
  };
  RowsumTerms rowsum_terms, rowsum_values;
};

/// The gradients of Σ out ∘ dout for `in`, in double; dout is (B, Hq, Nq, Dv).
Gradients naive_backward(const Inputs& in, const std::vector<double>& dout, const DropoutSpec& dropout = {});

/// The reference for a T computation of `in` run as `spec` says: the naive forward pass in double
/// on the inputs rounded to T, with the same dropout.
template <typename T>
Forward reference(const Inputs& in, const RunSpec& spec = {}) {
  return naive_forward(rounded<T>(in), dropout_of(spec));
}

/// The reference gradients for a T computation of `in` with upstream gradient `dout`, run as `spec`
/// says: the naive backward in double on the inputs and dout rounded to T, with the same dropout.
template <typename T>
Gradients grad_reference(const Inputs& in, const std::vector<double>& dout, const RunSpec& spec = {}) {
  return naive_backward(rounded<T>(in), round_all<T>(dout), dropout_of(spec));
}

}  // namespace attend_test

#endif  // ATTEND_TESTS_SUPPORT_REFERENCE_HPP
