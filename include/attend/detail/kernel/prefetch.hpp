#ifndef ATTEND_DETAIL_KERNEL_PREFETCH_HPP
#define ATTEND_DETAIL_KERNEL_PREFETCH_HPP

// Software prefetch spread over the work instead of issued in one burst.
//
// A kernel that streams its inputs from DRAM waits on memory unless requests are in flight ahead of
// it. Requesting a whole next work item at once does not achieve that: on Zen 4 a burst of a few
// hundred prefetches fills the core's miss buffers, and every load behind the burst waits for them.
// The same requests handed out a few at a time, interleaved with the multiply-adds, overlap with the
// arithmetic: a BS-RoFormer frequency-axis tile (62 x 62, D = 64, 101 MB of q, k and v per call)
// takes 11.5-11.9 us from DRAM with 5 lines handed out every 8 steps of k (kHookSteps) against
// 10.8 us with its data in cache, one Zen 4 thread. (docs/perf-notes.md has the measurements that led
// here.)

#include <algorithm>  // std::min

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// The cache lines of up to kMaxRanges row ranges, requested into L2 a few at a time by issue().
/// A row is ceil(bytes / 64) lines from its first byte: a row that does not start on a line boundary
/// may leave its last partial line unrequested (a prefetch is only a hint).
class LinePrefetcher {
 public:
  static constexpr int kMaxRanges = 6;  // the flash backward's next item: k, v, q, dout, out, lse

  /// Appends `rows` rows of `row_bytes` bytes, `stride_bytes` apart, starting at `first`. Rows that
  /// follow each other in memory count as one long row.
  void add(const void* first, Index rows, Index stride_bytes, Index row_bytes) {
    if (rows <= 0 || row_bytes <= 0 || count_ == kMaxRanges) return;
    Range& r = ranges_[count_++];
    const bool dense = stride_bytes == row_bytes;
    r.base = static_cast<const char*>(first);
    r.rows = dense ? 1 : rows;
    r.stride = stride_bytes;
    r.bytes = dense ? rows * row_bytes : row_bytes;
    lines_ += r.rows * ((r.bytes + kLine - 1) / kLine);
    if (count_ == 1) start_row();
  }

  /// Lines not yet requested.
  Index remaining() const { return lines_; }

  /// The next line's address, and moves past it; only while remaining() > 0.
  EIGEN_ALWAYS_INLINE const char* take() {
    const char* line = cur_;
    --lines_;
    cur_ += kLine;
    if (cur_ >= row_end_ && lines_ > 0) next_row();
    return line;
  }

  /// Requests the next n lines (fewer if fewer remain): a prefetch, an add and a compare per line.
  EIGEN_ALWAYS_INLINE void issue(Index n) {
    for (n = std::min(n, lines_); n > 0; --n) prefetch_l2(take());
  }

  /// Requests every line left.
  void drain() { issue(lines_); }

 private:
  static constexpr Index kLine = 64;
  struct Range {
    const char* base;
    Index rows, stride, bytes;
  };

  void start_row() {
    const Range& r = ranges_[range_];
    cur_ = r.base + row_ * r.stride;
    row_end_ = cur_ + r.bytes;
  }
  void next_row() {
    if (++row_ == ranges_[range_].rows) {
      row_ = 0;
      ++range_;
    }
    start_row();
  }

  Range ranges_[kMaxRanges] = {};
  int count_ = 0, range_ = 0;
  Index row_ = 0, lines_ = 0;
  const char* cur_ = nullptr;
  const char* row_end_ = nullptr;
};

/// A hook for gemm_panel, gemm_rows and bf16_gemm_panel that hands out `next`'s lines evenly over
/// `calls` calls (hook_calls counts them; nothing when `next` is null or empty). Lines left over
/// when the calls run out are the caller's to drain.
inline auto spread_over(LinePrefetcher* next, Index calls) {
  const Index left = next == nullptr ? 0 : next->remaining();
  const Index per_call = left == 0 ? 0 : (left + calls - 1) / std::max<Index>(1, calls);
  return [next, per_call] {
    if (per_call > 0) next->issue(per_call);
  };
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_PREFETCH_HPP
