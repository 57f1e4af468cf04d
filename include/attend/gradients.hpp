#ifndef ATTEND_GRADIENTS_HPP
#define ATTEND_GRADIENTS_HPP

/// @file
/// @brief What attend::Attend::backward writes: the gradients of q, k and v (attend::GradientViews,
/// or the owning attend::Gradients it returns), and optionally of an additive mask (attend::MaskGrad).

#include <array>  // std::array

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE

/// @brief The output for the gradient of an additive mask: a view with the mask's own shape, written
/// by attend::Attend::backward.
///
/// The gradient of `L = sum(out ∘ dout)` with respect to each element of the additive mask given in
/// attend::CallOptions::mask: dS = P ∘ (dP − rowsum(dout ∘ out)) (the gradient of the scores),
/// summed over the dimensions the mask broadcasts over, so that its shape is the mask's. A mask
/// entry under a hidden score (-inf, causality, a bool-masked row) gets 0. Built like the mask
/// (rank 1 to 4, padded on the left to (B|1, Hq|1, Nq|1, Nk|1)); a call checks that its padded shape
/// is the mask's and refuses it (attend::Error) when the call has no additive mask.
///
/// @tparam T the element type of the attend::Attend<T> it is passed to
template <typename T>
class MaskGrad {
 public:
  /// @brief Sizes or strides padded on the left to rank 4.
  using Dims = std::array<Index, 4>;

  /// @brief None: the mask's gradient is not computed.
  MaskGrad() = default;

  /// @brief The gradient goes to @p g, a view with the mask's shape.
  /// @tparam Rank the view's rank, 1 to 4 (checked at compile time), the mask's
  /// @param g where the gradient is written: any positive strides, elements not overlapping each
  ///          other or any input or other output of the call
  /// @return a MaskGrad writing to @p g
  template <int Rank>
  static MaskGrad of(const TensorView<T, Rank>& g) {
    static_assert(Rank >= 1 && Rank <= 4, "attend::MaskGrad: a mask has rank 1 to 4");
    MaskGrad r;
    r.data_ = g.data();
    r.rank_ = Rank;
    for (int d = 0; d < 4; ++d) {
      const int src = d - (4 - Rank);
      r.dims_[static_cast<std::size_t>(d)] = src < 0 ? 1 : g.dimension(src);
      r.strides_[static_cast<std::size_t>(d)] = src < 0 ? 0 : g.stride(src);
    }
    return r;
  }
  /// @brief of() for a rank-4 view; also takes a row-major `Eigen::Tensor<T, 4>` or map.
  /// @param g where the gradient is written
  /// @return a MaskGrad writing to @p g
  static MaskGrad of(const TensorView<T, 4>& g) { return of<4>(g); }
  /// @brief of() for a rank-3 view.
  /// @param g where the gradient is written
  /// @return a MaskGrad writing to @p g
  static MaskGrad of(const TensorView<T, 3>& g) { return of<3>(g); }
  /// @brief of() for a rank-2 view.
  /// @param g where the gradient is written
  /// @return a MaskGrad writing to @p g
  static MaskGrad of(const TensorView<T, 2>& g) { return of<2>(g); }
  /// @brief of() for a rank-1 view.
  /// @param g where the gradient is written
  /// @return a MaskGrad writing to @p g
  static MaskGrad of(const TensorView<T, 1>& g) { return of<1>(g); }

  /// @brief Whether no gradient is requested.
  /// @return `rank() == 0`
  bool empty() const { return rank_ == 0; }
  /// @brief The rank the view was given with (0 for none).
  /// @return 0 to 4
  int rank() const { return rank_; }
  /// @brief The sizes, padded on the left to rank 4 with 1.
  /// @return the sizes (all 0 for none)
  const Dims& dims() const { return dims_; }
  /// @brief The strides in elements, padded on the left to rank 4 with 0.
  /// @return the strides (all 0 for none)
  const Dims& strides() const { return strides_; }
  /// @brief The view's data.
  /// @return the element at index (0, ..., 0); null for none
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  int rank_ = 0;
  Dims dims_{};
  Dims strides_{};
};

/// @brief Where attend::Attend::backward writes the gradients: views of the caller's memory.
///
/// dq, dk and dv have the shapes of q, k and v: tensors, maps or strided views with the last
/// dimension contiguous, for instance three views into one packed (B, N, 3, H, D) buffer, the layout a
/// fused QKV projection wants its gradient in. They must not overlap each other, `dmask`, or any
/// input of the call. `dmask` is optional (default: not computed).
/// @tparam T the element type of the attend::Attend<T> it is passed to
template <typename T>
struct GradientViews {
  TensorView<T, 4> dq;  ///< (B, Hq, Nq, D), the gradient of q
  TensorView<T, 4> dk;  ///< (B, Hkv, Nk, D), the gradient of k: summed over the query heads of each kv head
  TensorView<T, 4> dv;  ///< (B, Hkv, Nk, Dv), the gradient of v: summed over the query heads of each kv head
  MaskGrad<T> dmask;    ///< the gradient of the additive mask, or none (the default)
};

/// @brief The gradients of q, k and v, as new row-major tensors: what the returning
/// attend::Attend::backward gives.
/// @tparam T the element type
template <typename T>
struct Gradients {
  Tensor<T, 4> dq;  ///< (B, Hq, Nq, D)
  Tensor<T, 4> dk;  ///< (B, Hkv, Nk, D)
  Tensor<T, 4> dv;  ///< (B, Hkv, Nk, Dv)
};

ATTEND_END_NAMESPACE

#endif  // ATTEND_GRADIENTS_HPP
