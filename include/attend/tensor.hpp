#ifndef ATTEND_TENSOR_HPP
#define ATTEND_TENSOR_HPP

// The tensor types attend reads and writes: Eigen's row-major tensors and maps, and a strided view
// that can also describe q, k and v lying inside one packed projection buffer.

#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <type_traits>  // std::enable_if_t, std::is_const_v, std::remove_const_t

// attend takes an optional Eigen::ThreadPoolDevice, which Eigen declares only under EIGEN_USE_THREADS.
#ifndef EIGEN_USE_THREADS
#define EIGEN_USE_THREADS
#endif
#include <unsupported/Eigen/CXX11/Tensor>
#if !EIGEN_VERSION_AT_LEAST(3, 4, 90) && !defined(EIGEN_CXX11_TENSOR_TENSOR_DEVICE_THREAD_POOL_H)
#error "attend: Eigen's Tensor module was included without EIGEN_USE_THREADS; define it, or include <attend/attend.hpp> first"
#endif

namespace attend {

/// All sizes, strides and indices are 64-bit (`Eigen::Index` is `std::ptrdiff_t`).
using Index = Eigen::Index;

/// The owning tensor type attend returns: row-major, so (B, H, N, D) has D fastest, as in PyTorch.
template <typename T, int Rank>
using Tensor = Eigen::Tensor<T, Rank, Eigen::RowMajor, Index>;

/// A non-owning view of a rank-`Rank` tensor: a pointer, sizes and per-dimension strides counted in
/// elements. `T` may be const (an input) or not (an output).
///
/// Any stride is allowed on the leading dimensions (zero only for broadcast masks, which attend
/// checks); the last dimension must be contiguous (stride 1) for q, k, v and the output. That covers
/// Eigen row-major tensors and maps (converted implicitly, zero copy) and views into a packed buffer
/// such as the (B, N, 3, H, D) output of one QKV projection: there q is
/// `TensorView<const float, 4>(buf, {B, H, N, D}, {N*3*H*D, D, 3*H*D, 1})`.
template <typename T, int Rank>
class TensorView {
  static_assert(Rank >= 1, "attend::TensorView: Rank must be at least 1");

 public:
  using Scalar = T;
  using Dims = std::array<Index, Rank>;

  /// An empty view (null data, all sizes 0): used for optional arguments.
  TensorView() : data_(nullptr), dims_{}, strides_{} {}

  /// A view with explicit sizes and strides (in elements).
  TensorView(T* data, const Dims& dims, const Dims& strides)
      : data_(data), dims_(dims), strides_(strides) {}

  /// A contiguous row-major view over `data` with the given sizes.
  TensorView(T* data, const Dims& dims) : data_(data), dims_(dims), strides_(row_major_strides(dims)) {}

  /// From a row-major Eigen tensor (const or not, as T allows).
  template <typename U, int Options, typename IndexType,
            typename = std::enable_if_t<std::is_same_v<std::remove_const_t<T>, U> &&
                                        (Options & Eigen::RowMajor)>>
  TensorView(Eigen::Tensor<U, Rank, Options, IndexType>& t)  // NOLINT: implicit on purpose
      : TensorView(t.data(), dims_of(t)) {}

  template <typename U, int Options, typename IndexType, typename TT = T,
            typename = std::enable_if_t<std::is_const_v<TT> && std::is_same_v<std::remove_const_t<T>, U> &&
                                        (Options & Eigen::RowMajor)>>
  TensorView(const Eigen::Tensor<U, Rank, Options, IndexType>& t)  // NOLINT: implicit on purpose
      : TensorView(t.data(), dims_of(t)) {}

  /// From a row-major Eigen TensorMap over the caller's memory (zero copy).
  template <typename U, int Options, typename IndexType, int MapOptions,
            template <class> class MakePointer,
            typename = std::enable_if_t<(std::is_same_v<T, U> || std::is_same_v<T, const U>)&&(
                Options & Eigen::RowMajor)>>
  TensorView(const Eigen::TensorMap<Eigen::Tensor<U, Rank, Options, IndexType>, MapOptions, MakePointer>&
                 t)  // NOLINT: implicit on purpose
      : TensorView(t.data(), dims_of(t)) {}

  /// A mutable view converts to a const one.
  template <typename U, typename = std::enable_if_t<std::is_same_v<T, const U>>>
  TensorView(const TensorView<U, Rank>& other)  // NOLINT: implicit on purpose
      : data_(other.data()), dims_(other.dims()), strides_(other.strides()) {}

  T* data() const { return data_; }
  const Dims& dims() const { return dims_; }
  const Dims& strides() const { return strides_; }
  Index dimension(int i) const { return dims_[static_cast<std::size_t>(i)]; }
  Index stride(int i) const { return strides_[static_cast<std::size_t>(i)]; }
  bool empty_view() const { return data_ == nullptr; }

  /// Number of elements (the product of the sizes).
  Index size() const {
    Index n = 1;
    for (Index d : dims_) n *= d;
    return n;
  }

  /// Element access; no bounds check.
  template <typename... I>
  T& operator()(I... idx) const {
    static_assert(sizeof...(I) == Rank, "attend::TensorView: wrong number of indices");
    const Index ix[] = {static_cast<Index>(idx)...};
    Index off = 0;
    for (int r = 0; r < Rank; ++r) off += ix[r] * strides_[static_cast<std::size_t>(r)];
    return data_[off];
  }

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

/// Read-only view, the type of q, k, v and masks.
template <typename T, int Rank>
using ConstView = TensorView<const T, Rank>;

}  // namespace attend

#endif  // ATTEND_TENSOR_HPP
