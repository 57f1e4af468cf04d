#ifndef ATTEND_DETAIL_SCRATCH_HPP
#define ATTEND_DETAIL_SCRATCH_HPP

// Scratch memory laid out by one description. A kernel's scratch struct lists its buffers once, in a
// `carve(ScratchLayout&, ...)` function; run with a layout over no memory it only counts (the
// workspace size), run over the workspace it places the buffers. Sizing and placing cannot disagree.

#include <cstddef>  // std::size_t

#include "attend/detail/abi.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Rounds a byte count up to the scratch alignment (a cache line).
constexpr std::size_t align_up(std::size_t bytes) {
  return (bytes + TileTraits::kAlign - 1) / TileTraits::kAlign * TileTraits::kAlign;
}

/// Buffers one after another from a base address, each starting on a cache line. With a null base
/// nothing is placed (take() returns null) and bytes() is the size the same sequence needs.
class ScratchLayout {
 public:
  explicit ScratchLayout(void* base = nullptr) : base_(static_cast<unsigned char*>(base)) {}

  /// The next `count` objects of type U (uninitialised memory; U trivially destructible).
  template <typename U>
  U* take(std::size_t count) {
    U* p = base_ == nullptr ? nullptr : reinterpret_cast<U*>(base_ + bytes_);
    bytes_ += align_up(sizeof(U) * count);
    return p;
  }

  /// Bytes taken so far.
  std::size_t bytes() const { return bytes_; }

 private:
  unsigned char* base_;
  std::size_t bytes_ = 0;
};

/// The bytes a scratch struct S takes: S::carve over no memory. `args` are carve's sizes.
template <typename S, typename... Args>
std::size_t scratch_bytes(const Args&... args) {
  ScratchLayout layout;
  S::carve(layout, args...);
  return layout.bytes();
}

/// S placed at `base` for worker `worker`, each worker's block scratch_bytes<S>(args...) apart.
template <typename S, typename... Args>
S worker_scratch(void* base, int worker, const Args&... args) {
  ScratchLayout layout(static_cast<unsigned char*>(base) + scratch_bytes<S>(args...) * static_cast<std::size_t>(worker));
  return S::carve(layout, args...);
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_SCRATCH_HPP
