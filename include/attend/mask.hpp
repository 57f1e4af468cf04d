#ifndef ATTEND_MASK_HPP
#define ATTEND_MASK_HPP

// An optional attention mask: a boolean "may attend" mask or an additive one, broadcastable to
// (B, Hq, Nq, Nk) by PyTorch's rules.

#include <array>  // std::array

#include "attend/tensor.hpp"

namespace attend {

/// A mask over the scores, read in place through a view (never copied or expanded).
///
/// - `Mask<T>::keep(m)`: bool, **true where query i may attend key j** (PyTorch's
///   `scaled_dot_product_attention` convention; note `nn.MultiheadAttention`'s `key_padding_mask`
///   uses the opposite polarity).
/// - `Mask<T>::additive(m)`: values of T added to the scaled scores (0 to keep, -inf to drop, or a
///   bias such as ALiBi).
///
/// Either is rank 1 to 4 and broadcasts to (B, Hq, Nq, Nk) as PyTorch does: missing leading
/// dimensions count as 1, and each dimension is either the full size or 1. A rank-2 (Nq, Nk) mask
/// applies to every batch and head; a (B, 1, 1, Nk) mask is a key-padding mask.
template <typename T>
class Mask {
 public:
  enum class Kind { none, keep, additive };
  using Dims = std::array<Index, 4>;

  /// No mask.
  Mask() = default;

  template <int Rank>
  static Mask keep(const ConstView<bool, Rank>& m) {
    Mask r;
    r.kind_ = Kind::keep;
    r.keep_ = m.data();
    r.rank_ = Rank;
    pad(m, r.dims_, r.strides_);
    return r;
  }
  static Mask keep(const ConstView<bool, 4>& m) { return keep<4>(m); }
  static Mask keep(const ConstView<bool, 3>& m) { return keep<3>(m); }
  static Mask keep(const ConstView<bool, 2>& m) { return keep<2>(m); }
  static Mask keep(const ConstView<bool, 1>& m) { return keep<1>(m); }

  template <int Rank>
  static Mask additive(const ConstView<T, Rank>& m) {
    Mask r;
    r.kind_ = Kind::additive;
    r.add_ = m.data();
    r.rank_ = Rank;
    pad(m, r.dims_, r.strides_);
    return r;
  }
  static Mask additive(const ConstView<T, 4>& m) { return additive<4>(m); }
  static Mask additive(const ConstView<T, 3>& m) { return additive<3>(m); }
  static Mask additive(const ConstView<T, 2>& m) { return additive<2>(m); }
  static Mask additive(const ConstView<T, 1>& m) { return additive<1>(m); }

  Kind kind() const { return kind_; }
  bool empty() const { return kind_ == Kind::none; }
  /// The rank the mask was given with (before padding to 4).
  int rank() const { return rank_; }
  /// Sizes and strides padded on the left to rank 4: (B|1, Hq|1, Nq|1, Nk|1).
  const Dims& dims() const { return dims_; }
  const Dims& strides() const { return strides_; }
  const bool* keep_data() const { return keep_; }
  const T* additive_data() const { return add_; }

 private:
  template <typename V, int Rank>
  static void pad(const TensorView<V, Rank>& m, Dims& dims, Dims& strides) {
    static_assert(Rank >= 1 && Rank <= 4, "attend::Mask: a mask has rank 1 to 4");
    for (int r = 0; r < 4; ++r) {
      const int src = r - (4 - Rank);
      dims[static_cast<std::size_t>(r)] = src < 0 ? 1 : m.dimension(src);
      strides[static_cast<std::size_t>(r)] = src < 0 ? 0 : m.stride(src);
    }
  }

  Kind kind_ = Kind::none;
  const bool* keep_ = nullptr;
  const T* add_ = nullptr;
  int rank_ = 0;
  Dims dims_{};
  Dims strides_{};
};

}  // namespace attend

#endif  // ATTEND_MASK_HPP
