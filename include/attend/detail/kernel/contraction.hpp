#ifndef ATTEND_DETAIL_KERNEL_CONTRACTION_HPP
#define ATTEND_DETAIL_KERNEL_CONTRACTION_HPP
// The math paths' matrices and Eigen's tensor contraction over them, with every byte of memory
// allocated by attend's own (ABI-tagged) code.
//
// Why not Eigen::Tensor and `c = a.contract(b)`: Eigen's allocation is inline code outside attend's
// tagged namespace whose behaviour depends on the target flags. Eigen::internal::aligned_malloc is
// std::malloc where EIGEN_MAX_ALIGN_BYTES is 16 (SSE2, NEON) and a hand-aligned block with its
// offset stored in front where it is 64 (AVX-512); aligned_free must match. In a program whose
// translation units are built with different flags, the linker keeps one copy of each non-inlined
// one, so a baseline TU could free with std::free what an AVX-512 TU's copy allocated by hand:
// clang 14 did exactly that in attend.odr.link_ab ("double free or corruption"). Here:
//   - MathMatrix holds its elements in a std::vector (operator new, the same on every target), and
//     Eigen sees it through a TensorMap;
//   - contract() runs Eigen's contraction evaluator on MathDevice, a type of attend's: the evaluator,
//     its packing mappers (which name the device) and its block buffers (MathDevice::allocate) are
//     instantiated per ABI tag, so each TU runs its own.
// The arithmetic is Eigen's contraction as before, with the same blocking (DefaultDevice's cache
// sizes): the math paths' results keep their bits.

#include <cstddef>  // std::size_t
#include <new>      // operator new, std::align_val_t
#include <vector>   // std::vector

#include <unsupported/Eigen/CXX11/Tensor>

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"  // attend::Index

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Eigen's DefaultDevice (one thread, its cache sizes) whose memory comes from attend's code: the
/// contraction's packed blocks and any temporary it evaluates.
struct MathDevice : Eigen::DefaultDevice {
  /// A cache line: as much as any target's packets ask for.
  static constexpr std::size_t kAlign = 64;
  void* allocate(std::size_t bytes) const { return ::operator new(bytes, std::align_val_t(kAlign)); }
  void deallocate(void* p) const {
    if (p != nullptr) ::operator delete(p, std::align_val_t(kAlign));
  }
  void* allocate_temp(std::size_t bytes) const { return allocate(bytes); }
  void deallocate_temp(void* p) const { deallocate(p); }
};

/// A (rows, cols) row-major matrix of Acc in memory of attend's own: m(i, j), data(), and map() for
/// Eigen expressions.
template <typename Acc>
class MathMatrix {
 public:
  using Map = Eigen::TensorMap<Eigen::Tensor<Acc, 2, Eigen::RowMajor, Index>>;
  using ConstMap = Eigen::TensorMap<const Eigen::Tensor<Acc, 2, Eigen::RowMajor, Index>>;

  /// Zero-filled.
  MathMatrix(Index rows, Index cols) : rows_(rows), cols_(cols), data_(static_cast<std::size_t>(rows * cols), Acc(0)) {}

  Acc& operator()(Index i, Index j) { return data_[static_cast<std::size_t>(i * cols_ + j)]; }
  const Acc& operator()(Index i, Index j) const { return data_[static_cast<std::size_t>(i * cols_ + j)]; }
  Acc* data() { return data_.data(); }
  const Acc* data() const { return data_.data(); }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index size() const { return rows_ * cols_; }
  ConstMap map() const { return ConstMap(data_.data(), rows_, cols_); }

 private:
  Index rows_, cols_;
  std::vector<Acc> data_;
};

/// One pair of contracted dimensions, e.g. {1, 1}: a bᵀ; {1, 0}: a b; {0, 0}: aᵀ b.
using ContractPair = Eigen::array<Eigen::IndexPair<Index>, 1>;

/// c = the contraction of a and b over `over`, by Eigen's evaluator on MathDevice, written straight
/// into c (which must have the result's shape: the free dimensions of a, then of b).
template <typename Acc>
void contract(const MathMatrix<Acc>& a, const ContractPair& over, const MathMatrix<Acc>& b, MathMatrix<Acc>& c) {
  using Op = Eigen::TensorContractionOp<const ContractPair, const typename MathMatrix<Acc>::ConstMap,
                                        const typename MathMatrix<Acc>::ConstMap, const Eigen::NoOpOutputKernel>;
  const MathDevice device;
  const auto am = a.map(), bm = b.map();
  Eigen::TensorEvaluator<const Op, MathDevice> evaluator(Op(am, bm, over), device);
  eigen_assert(evaluator.dimensions()[0] == c.rows() && evaluator.dimensions()[1] == c.cols());
  evaluator.evalSubExprsIfNeeded(c.data());  // evaluates into c: no temporary
  evaluator.cleanup();
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_CONTRACTION_HPP
