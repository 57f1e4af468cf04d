#ifndef ATTEND_MASK_HPP
#define ATTEND_MASK_HPP

/// @file
/// @brief attend::Mask: an optional attention mask, a boolean "may attend" mask or an additive one,
/// broadcastable to (B, Hq, Nq, Nk) by PyTorch's rules.

#include <array>  // std::array

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE

/// @brief A mask over the scores, read in place through a view (never copied or expanded).
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
///
/// A mask combines with attend::CallOptions::causal. A row that ends up with no visible key gives 0
/// in the output and -inf in `lse` (PyTorch's math path would give NaN). An additive mask of -inf
/// does not hide a NaN key (NaN + -inf is NaN, as in PyTorch); a bool mask does.
///
/// Building a Mask checks nothing and never throws: a call validates it and throws attend::Error
/// for a mask that does not broadcast to (B, Hq, Nq, Nk), a negative stride, a stride of 0 on a
/// dimension of full size greater than 1 (give a broadcast dimension size 1 instead), a null pointer
/// with a non-empty shape, or an output that overlaps the mask's memory. A Mask holds a pointer to
/// the caller's memory, which must outlive every call that uses it.
///
/// @tparam T the element type of the attend::Attend<T> it is passed to; an additive mask holds
///           values of T
template <typename T>
class Mask {
 public:
  /// @brief Which form the mask has: `none` (no mask, the default), `keep` (a bool mask, built by
  /// keep()) or `additive` (values of T added to the scores, built by additive()).
  enum class Kind { none, keep, additive };
  /// @brief Sizes or strides padded on the left to rank 4: (B|1, Hq|1, Nq|1, Nk|1).
  using Dims = std::array<Index, 4>;

  /// @brief No mask: kind() is Kind::none and every score is kept.
  Mask() = default;

  /// @brief A bool mask, **true where query i may attend key j** (PyTorch SDPA's polarity).
  /// @tparam Rank the mask's rank, 1 to 4 (checked at compile time)
  /// @param m a view of the mask, broadcastable to (B, Hq, Nq, Nk): its last dimension is Nk (or 1),
  ///          the one before Nq (or 1), and so on; read in place, so it must outlive the calls
  /// @return a Mask of kind Kind::keep
  template <int Rank>
  static Mask keep(const ConstView<bool, Rank>& m) {
    Mask r;
    r.kind_ = Kind::keep;
    r.keep_ = m.data();
    r.rank_ = Rank;
    pad(m, r.dims_, r.strides_);
    return r;
  }
  /// @brief keep() for a rank-4 mask, e.g. (B, 1, 1, Nk) for key padding; also takes a
  /// row-major `Eigen::Tensor<bool, 4>` or map, converted implicitly.
  /// @param m a view of the mask, broadcastable to (B, Hq, Nq, Nk)
  /// @return a Mask of kind Kind::keep
  static Mask keep(const ConstView<bool, 4>& m) { return keep<4>(m); }
  /// @brief keep() for a rank-3 mask, (Hq|1, Nq|1, Nk|1), broadcast over B.
  /// @param m a view of the mask, broadcastable to (Hq, Nq, Nk)
  /// @return a Mask of kind Kind::keep
  static Mask keep(const ConstView<bool, 3>& m) { return keep<3>(m); }
  /// @brief keep() for a rank-2 mask, (Nq|1, Nk|1), applied to every batch and head.
  /// @param m a view of the mask, broadcastable to (Nq, Nk)
  /// @return a Mask of kind Kind::keep
  static Mask keep(const ConstView<bool, 2>& m) { return keep<2>(m); }
  /// @brief keep() for a rank-1 mask, (Nk|1), applied to every batch, head and query.
  /// @param m a view of the mask, of size Nk or 1
  /// @return a Mask of kind Kind::keep
  static Mask keep(const ConstView<bool, 1>& m) { return keep<1>(m); }

  /// @brief An additive mask: values of T added to the scaled scores (0 keeps, -inf drops, any
  /// other value is a bias such as ALiBi).
  /// @tparam Rank the mask's rank, 1 to 4 (checked at compile time)
  /// @param m a view of the mask, broadcastable to (B, Hq, Nq, Nk): its last dimension is Nk (or 1),
  ///          the one before Nq (or 1), and so on; read in place, so it must outlive the calls
  /// @return a Mask of kind Kind::additive
  template <int Rank>
  static Mask additive(const ConstView<T, Rank>& m) {
    Mask r;
    r.kind_ = Kind::additive;
    r.add_ = m.data();
    r.rank_ = Rank;
    pad(m, r.dims_, r.strides_);
    return r;
  }
  /// @brief additive() for a rank-4 mask; also takes a row-major `Eigen::Tensor<T, 4>` or map,
  /// converted implicitly.
  /// @param m a view of the mask, broadcastable to (B, Hq, Nq, Nk)
  /// @return a Mask of kind Kind::additive
  static Mask additive(const ConstView<T, 4>& m) { return additive<4>(m); }
  /// @brief additive() for a rank-3 mask, (Hq|1, Nq|1, Nk|1), broadcast over B.
  /// @param m a view of the mask, broadcastable to (Hq, Nq, Nk)
  /// @return a Mask of kind Kind::additive
  static Mask additive(const ConstView<T, 3>& m) { return additive<3>(m); }
  /// @brief additive() for a rank-2 mask, (Nq|1, Nk|1), applied to every batch and head.
  /// @param m a view of the mask, broadcastable to (Nq, Nk)
  /// @return a Mask of kind Kind::additive
  static Mask additive(const ConstView<T, 2>& m) { return additive<2>(m); }
  /// @brief additive() for a rank-1 mask, (Nk|1), applied to every batch, head and query.
  /// @param m a view of the mask, of size Nk or 1
  /// @return a Mask of kind Kind::additive
  static Mask additive(const ConstView<T, 1>& m) { return additive<1>(m); }

  /// @brief The mask's form.
  /// @return Kind::none, Kind::keep or Kind::additive
  Kind kind() const { return kind_; }
  /// @brief Whether this is no mask at all.
  /// @return `kind() == Kind::none`
  bool empty() const { return kind_ == Kind::none; }
  /// @brief The rank the mask was given with (before padding to 4).
  /// @return 1 to 4, or 0 for no mask
  int rank() const { return rank_; }
  /// @brief Sizes padded on the left to rank 4: (B|1, Hq|1, Nq|1, Nk|1).
  /// @return the sizes; a padded dimension has size 1 (all 0 for no mask)
  const Dims& dims() const { return dims_; }
  /// @brief Strides in elements, padded on the left to rank 4 like dims().
  /// @return the strides; a padded dimension has stride 0 (all 0 for no mask)
  const Dims& strides() const { return strides_; }
  /// @brief The bool mask's data.
  /// @return the data pointer of the view given to keep(); null unless kind() is Kind::keep
  const bool* keep_data() const { return keep_; }
  /// @brief The additive mask's data.
  /// @return the data pointer of the view given to additive(); null unless kind() is Kind::additive
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

ATTEND_END_NAMESPACE

#endif  // ATTEND_MASK_HPP
