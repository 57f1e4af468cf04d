#ifndef ATTEND_WORKSPACE_HPP
#define ATTEND_WORKSPACE_HPP

// Reusable scratch memory for the flash and mem_efficient paths.

#include <cstddef>  // std::size_t
#include <cstdlib>  // std::free
#include <new>      // std::bad_alloc

#include <Eigen/Core>  // Eigen::internal::aligned_malloc

namespace attend {

/// Scratch memory a caller owns and lends to calls (`CallOptions::workspace`), so that a forward
/// call allocates nothing: size it once with `Attend<T>::workspace_bytes(...)`. A call that finds it
/// too small grows it (one allocation) and keeps it grown. One workspace serves one call at a time.
class Workspace {
 public:
  Workspace() = default;
  explicit Workspace(std::size_t bytes) { reserve(bytes); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&& o) noexcept : data_(o.data_), bytes_(o.bytes_) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  Workspace& operator=(Workspace&& o) noexcept {
    if (this != &o) {
      Eigen::internal::aligned_free(data_);
      data_ = o.data_;
      bytes_ = o.bytes_;
      o.data_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  ~Workspace() { Eigen::internal::aligned_free(data_); }

  /// Makes room for at least `bytes`; contents are not kept.
  void reserve(std::size_t bytes) {
    if (bytes <= bytes_) return;
    Eigen::internal::aligned_free(data_);
    data_ = nullptr;
    bytes_ = 0;
    data_ = Eigen::internal::aligned_malloc(bytes);  // throws std::bad_alloc on failure
    bytes_ = bytes;
  }

  void* data() const { return data_; }
  std::size_t size() const { return bytes_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace attend

#endif  // ATTEND_WORKSPACE_HPP
