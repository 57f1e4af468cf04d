#ifndef ATTEND_WORKSPACE_HPP
#define ATTEND_WORKSPACE_HPP

/// @file
/// @brief attend::Workspace: reusable scratch memory for the flash and mem_efficient paths.

#include <cstddef>  // std::size_t
#include <cstdlib>  // std::free
#include <new>      // std::bad_alloc

#include <Eigen/Core>  // Eigen::internal::handmade_aligned_malloc

namespace attend {

/// @brief Scratch memory a caller owns and lends to calls (attend::CallOptions::workspace), so that
/// a forward call allocates nothing: size it once with attend::Attend::workspace_bytes().
///
/// A call that finds it too small grows it (one allocation) and keeps it grown. One workspace serves
/// one call at a time: it is not thread-safe, so concurrent calls each need their own (for example
/// one per thread). The memory is aligned to 64 bytes (a cache line, and every Eigen packet). Movable,
/// not copyable.
class Workspace {
 public:
  /// @brief An empty workspace (no memory); a call that uses it grows it to the size it needs.
  Workspace() = default;
  /// @brief A workspace of at least @p bytes.
  /// @param bytes the size, typically attend::Attend::workspace_bytes() of the calls it will serve
  /// @throws std::bad_alloc if the memory cannot be allocated
  explicit Workspace(std::size_t bytes) { reserve(bytes); }
  /// @brief Not copyable: a workspace owns its memory.
  Workspace(const Workspace&) = delete;
  /// @brief Not copy-assignable: a workspace owns its memory.
  Workspace& operator=(const Workspace&) = delete;
  /// @brief Takes over the memory of @p o, which is left empty.
  /// @param o the workspace to move from
  Workspace(Workspace&& o) noexcept : data_(o.data_), bytes_(o.bytes_) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  /// @brief Frees this workspace's memory and takes over that of @p o, which is left empty.
  /// @param o the workspace to move from
  /// @return `*this`
  Workspace& operator=(Workspace&& o) noexcept {
    if (this != &o) {
      Eigen::internal::handmade_aligned_free(data_);
      data_ = o.data_;
      bytes_ = o.bytes_;
      o.data_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  /// @brief Frees the memory.
  ~Workspace() { Eigen::internal::handmade_aligned_free(data_); }

  /// @brief Makes room for at least @p bytes; contents are not kept.
  ///
  /// Does nothing if size() is already at least @p bytes; it never shrinks.
  /// @param bytes the size needed
  /// @throws std::bad_alloc if the memory cannot be allocated; the workspace is then empty
  void reserve(std::size_t bytes) {
    if (bytes <= bytes_) return;
    Eigen::internal::handmade_aligned_free(data_);
    data_ = nullptr;
    bytes_ = 0;
    // 64 bytes on every target: the paths' scratch (OnlineSoftmax's alignas(64) rows, kAlign) is laid
    // out from a cache-line-aligned base, while Eigen's aligned_malloc aligns only for its packets
    // (16 bytes with SSE or NEON, 32 with AVX). Eigen's heap check (EIGEN_RUNTIME_NO_MALLOC) as before.
    Eigen::internal::check_that_malloc_is_allowed();
    data_ = Eigen::internal::handmade_aligned_malloc(bytes, kAlignment);
    if (data_ == nullptr) throw std::bad_alloc();
    bytes_ = bytes;
  }

  /// @brief The memory.
  /// @return the start of the block, aligned to 64 bytes; null while size() is 0
  void* data() const { return data_; }
  /// @brief The size of the block.
  /// @return the number of bytes data() points to
  std::size_t size() const { return bytes_; }

 private:
  static constexpr std::size_t kAlignment = 64;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace attend

#endif  // ATTEND_WORKSPACE_HPP
