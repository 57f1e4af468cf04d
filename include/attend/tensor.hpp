#ifndef ATTEND_TENSOR_HPP
#define ATTEND_TENSOR_HPP

/// @file
/// @brief The tensor types attend reads and writes: Eigen's row-major tensors and maps, and a strided
/// view that can also describe q, k and v lying inside one packed projection buffer.
///
/// Including this header (or <attend/attend.hpp>) defines `EIGEN_USE_THREADS` if it is not already
/// defined, and includes Eigen's Tensor module. If you include Eigen's Tensor module yourself before
/// attend, define `EIGEN_USE_THREADS` first: otherwise this header stops the build with an `#error`.

#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <type_traits>  // std::enable_if_t, std::is_const_v, std::remove_const_t

/// @def EIGEN_USE_THREADS
/// @brief Eigen's switch for its thread-pool device, defined here if not already defined.
///
/// attend takes an optional `Eigen::ThreadPoolDevice` (attend::CallOptions::device), which Eigen
/// declares only under `EIGEN_USE_THREADS`.
#ifndef EIGEN_USE_THREADS
#define EIGEN_USE_THREADS
#endif

#include <unsupported/Eigen/CXX11/Tensor>
#if !EIGEN_VERSION_AT_LEAST(3, 4, 90) && !defined(EIGEN_CXX11_TENSOR_TENSOR_DEVICE_THREAD_POOL_H)
#error "attend: Eigen's Tensor module was included without EIGEN_USE_THREADS; define it, or include <attend/attend.hpp> first"
#endif

#include "attend/detail/abi.hpp"

ATTEND_BEGIN_NAMESPACE

/// @brief The type of all sizes, strides and indices: 64-bit and signed (`Eigen::Index` is
/// `std::ptrdiff_t`).
using Index = Eigen::Index;

/// @brief The owning tensor type attend returns: row-major, so (B, H, N, D) has D fastest, as in
/// PyTorch.
///
/// Converts implicitly, without a copy, to attend::TensorView and attend::ConstView of the same rank.
/// @tparam T    the element type
/// @tparam Rank the number of dimensions
template <typename T, int Rank>
using Tensor = Eigen::Tensor<T, Rank, Eigen::RowMajor, Index>;

/// @brief A non-owning view of a rank-`Rank` tensor: a pointer, sizes and per-dimension strides
/// counted in elements.
///
/// `T` may be const (an input; see attend::ConstView) or not (an output). The view does not own or
/// copy anything: the memory must outlive every use of the view, and writing through a view of
/// non-const `T` writes the caller's memory.
///
/// Any stride is allowed on the leading dimensions (zero only for broadcast masks, which attend
/// checks); the last dimension must be contiguous (stride 1) for q, k, v and the output. That covers
/// Eigen row-major tensors and maps (converted implicitly, zero copy) and views into a packed buffer
/// such as the (B, N, 3, H, D) output of one QKV projection: there q is
/// `TensorView<const float, 4>(buf, {B, H, N, D}, {N*3*H*D, D, 3*H*D, 1})`.
///
/// The view itself checks nothing (no bounds, no strides): attend::Attend validates the views of a
/// call, and throws attend::Error for negative sizes, non-positive strides, a non-contiguous last
/// dimension, a null pointer with a non-empty shape, and overlapping outputs.
///
/// @tparam T    the element type, `const`-qualified for a read-only view
/// @tparam Rank the number of dimensions, at least 1
template <typename T, int Rank>
class TensorView {
  static_assert(Rank >= 1, "attend::TensorView: Rank must be at least 1");

 public:
  /// @brief The element type, as given (`const`-qualified for a read-only view).
  using Scalar = T;
  /// @brief Sizes or strides, one per dimension, outermost first.
  using Dims = std::array<Index, Rank>;

  /// @brief An empty view (null data, all sizes 0): used for optional arguments.
  TensorView() : data_(nullptr), dims_{}, strides_{} {}

  /// @brief A view with explicit sizes and strides (in elements).
  /// @param data    the element at index (0, ..., 0)
  /// @param dims    the sizes, outermost first
  /// @param strides the distance in elements between neighbours along each dimension
  TensorView(T* data, const Dims& dims, const Dims& strides)
      : data_(data), dims_(dims), strides_(strides) {}

  /// @brief A contiguous row-major view over @p data with the given sizes.
  /// @param data the first element of a row-major block of `size()` elements
  /// @param dims the sizes, outermost first; the strides are row_major_strides(dims)
  TensorView(T* data, const Dims& dims) : data_(data), dims_(dims), strides_(row_major_strides(dims)) {}

  /// @brief From a mutable row-major Eigen tensor (zero copy; implicit on purpose).
  ///
  /// Participates only for a row-major tensor of the same rank whose element type is `T` without
  /// `const`; it converts to a mutable or a const view.
  /// @param t the tensor; it must outlive the view
  template <typename U, int Options, typename IndexType,
            typename = std::enable_if_t<std::is_same_v<std::remove_const_t<T>, U> &&
                                        (Options & Eigen::RowMajor)>>
  TensorView(Eigen::Tensor<U, Rank, Options, IndexType>& t)  // NOLINT: implicit on purpose
      : TensorView(t.data(), dims_of(t)) {}

  /// @brief From a const row-major Eigen tensor (zero copy; implicit on purpose).
  ///
  /// Participates only when `T` is const (a read-only view) and the tensor is row-major, of the same
  /// rank and of element type `T` without `const`.
  /// @param t the tensor; it must outlive the view
  template <typename U, int Options, typename IndexType, typename TT = T,
            typename = std::enable_if_t<std::is_const_v<TT> && std::is_same_v<std::remove_const_t<T>, U> &&
                                        (Options & Eigen::RowMajor)>>
  TensorView(const Eigen::Tensor<U, Rank, Options, IndexType>& t)  // NOLINT: implicit on purpose
      : TensorView(t.data(), dims_of(t)) {}

  /// @brief From a row-major Eigen `TensorMap` over the caller's memory (zero copy; implicit on
  /// purpose).
  ///
  /// Participates only for a map of a row-major tensor of the same rank whose element type is `T`,
  /// or `T` without `const` for a read-only view.
  /// @param t the map; the memory it maps must outlive the view
  template <typename U, int Options, typename IndexType, int MapOptions,
            template <class> class MakePointer,
            typename = std::enable_if_t<(std::is_same_v<T, U> || std::is_same_v<T, const U>)&&(
                Options & Eigen::RowMajor)>>
  TensorView(const Eigen::TensorMap<Eigen::Tensor<U, Rank, Options, IndexType>, MapOptions, MakePointer>&
                 t)  // NOLINT: implicit on purpose
      : TensorView(t.data(), dims_of(t)) {}

  /// @brief A mutable view converts to a const one (implicit); the other way does not compile.
  /// @param other the mutable view to look at read-only
  template <typename U, typename = std::enable_if_t<std::is_same_v<T, const U>>>
  TensorView(const TensorView<U, Rank>& other)  // NOLINT: implicit on purpose
      : data_(other.data()), dims_(other.dims()), strides_(other.strides()) {}

  /// @brief The element at index (0, ..., 0); null for an empty view.
  /// @return the data pointer the view was built with
  T* data() const { return data_; }
  /// @brief The sizes, outermost first.
  /// @return a reference to the view's sizes, valid as long as the view
  const Dims& dims() const { return dims_; }
  /// @brief The strides in elements, outermost first.
  /// @return a reference to the view's strides, valid as long as the view
  const Dims& strides() const { return strides_; }
  /// @brief The size of one dimension.
  /// @param i the dimension, 0 to Rank - 1 (not checked)
  /// @return `dims()[i]`
  Index dimension(int i) const { return dims_[static_cast<std::size_t>(i)]; }
  /// @brief The stride of one dimension, in elements.
  /// @param i the dimension, 0 to Rank - 1 (not checked)
  /// @return `strides()[i]`
  Index stride(int i) const { return strides_[static_cast<std::size_t>(i)]; }
  /// @brief Whether the view has no data pointer (an optional argument left unset).
  ///
  /// It looks only at the pointer: a view with sizes 0 over valid memory is not an empty view.
  /// @return `data() == nullptr`
  bool empty_view() const { return data_ == nullptr; }

  /// @brief Number of elements (the product of the sizes).
  /// @return the product of `dims()`: 0 if any size is 0, as for an empty view
  Index size() const {
    Index n = 1;
    for (Index d : dims_) n *= d;
    return n;
  }

  /// @brief Element access; no bounds check.
  /// @tparam I   integer types, exactly Rank of them (checked at compile time)
  /// @param idx  one index per dimension, outermost first
  /// @return a reference to the element at `data() + sum(idx[r] * strides()[r])`
  template <typename... I>
  T& operator()(I... idx) const {
    static_assert(sizeof...(I) == Rank, "attend::TensorView: wrong number of indices");
    const Index ix[] = {static_cast<Index>(idx)...};
    Index off = 0;
    for (int r = 0; r < Rank; ++r) off += ix[r] * strides_[static_cast<std::size_t>(r)];
    return data_[off];
  }

  /// @brief The strides of a contiguous row-major tensor with sizes @p dims.
  /// @param dims the sizes, outermost first
  /// @return the strides in elements: 1 for the last dimension, and each other the product of the
  ///         sizes after it
  static Dims row_major_strides(const Dims& dims) {
    Dims s{};
    Index acc = 1;
    for (int r = Rank - 1; r >= 0; --r) {
      s[static_cast<std::size_t>(r)] = acc;
      acc *= dims[static_cast<std::size_t>(r)];
    }
    return s;
  }

 private:
  template <typename E>
  static Dims dims_of(const E& t) {
    Dims d{};
    for (int r = 0; r < Rank; ++r) d[static_cast<std::size_t>(r)] = static_cast<Index>(t.dimension(r));
    return d;
  }

  T* data_;
  Dims dims_;
  Dims strides_;
};

/// @brief Read-only view, the type of q, k, v and masks: an attend::TensorView of `const T`.
/// @tparam T    the element type, without `const`
/// @tparam Rank the number of dimensions
template <typename T, int Rank>
using ConstView = TensorView<const T, Rank>;

ATTEND_END_NAMESPACE

#endif  // ATTEND_TENSOR_HPP
