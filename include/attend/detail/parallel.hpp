#ifndef ATTEND_DETAIL_PARALLEL_HPP
#define ATTEND_DETAIL_PARALLEL_HPP

// Work distribution over an optional Eigen::ThreadPoolDevice. Workers claim items one at a time from
// an atomic counter, so uneven items (causal rows, ragged tiles) balance by themselves. Each item is
// computed by exactly one worker and always the same way, so results never depend on the thread count.

#include <algorithm>  // std::min
#include <atomic>     // std::atomic
#include <exception>  // std::exception_ptr

#include "attend/tensor.hpp"

namespace attend {
namespace detail {

/// Number of workers a call uses: the device's thread count, or 1 without a device.
inline int worker_count(const Eigen::ThreadPoolDevice* device) {
  return device == nullptr ? 1 : std::max(1, device->numThreads());
}

/// Calls fn(worker, item) for every item in [0, n); `worker` is in [0, workers) and names the scratch
/// slot the call may use, never shared by two threads at once. The calling thread is worker 0 and
/// `workers - 1` tasks go to the pool, so `workers` threads compute while the pool has them free.
template <typename Fn>
void parallel_for(const Eigen::ThreadPoolDevice* device, int workers, Index n, Fn&& fn) {
  if (n <= 0) return;
  workers = static_cast<int>(std::min<Index>(workers, n));
  if (device == nullptr || workers <= 1) {
    for (Index i = 0; i < n; ++i) fn(0, i);
    return;
  }
  std::atomic<Index> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  auto work = [&](int worker) {
    try {
      for (Index i = next.fetch_add(1, std::memory_order_relaxed); i < n;
           i = next.fetch_add(1, std::memory_order_relaxed)) {
        fn(worker, i);
      }
    } catch (...) {
      // Kernels throw nothing after validation; this keeps a bad_alloc from escaping a pool thread.
      if (!failed.exchange(true)) error = std::current_exception();
      next.store(n, std::memory_order_relaxed);
    }
  };
  Eigen::Barrier barrier(static_cast<unsigned int>(workers - 1));
  for (int w = 1; w < workers; ++w) {
    device->enqueueNoNotification([&work, &barrier, w] {
      work(w);
      barrier.Notify();
    });
  }
  work(0);
  barrier.Wait();
  if (failed.load()) std::rethrow_exception(error);
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_PARALLEL_HPP
