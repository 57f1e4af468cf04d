#ifndef ATTEND_DETAIL_PARALLEL_HPP
#define ATTEND_DETAIL_PARALLEL_HPP

// Work distribution over an optional Eigen::ThreadPoolDevice. Workers claim items one at a time from
// an atomic counter, so uneven items (causal rows, ragged tiles) balance by themselves. Each item is
// computed by exactly one worker and always the same way, so results never depend on the thread count.

#include <algorithm>  // std::min
#include <atomic>     // std::atomic
#include <exception>  // std::exception_ptr
#include <thread>     // std::this_thread::yield

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Number of workers a call uses: the device's thread count, or 1 without a device.
inline int worker_count(const Eigen::ThreadPoolDevice* device) {
  return device == nullptr ? 1 : std::max(1, device->numThreads());
}

/// Calls fn(worker, begin, end) over [0, n) in runs of consecutive items; `worker` is in
/// [0, workers) and names the scratch slot the call may use, never shared by two threads at once.
/// The calling thread is worker 0 and `workers - 1` tasks go to the pool, so `workers` threads
/// compute while the pool has them free. A run lets the callee look ahead (prefetch item i + 1 while
/// computing item i, stream one stretch of memory).
///
/// Runs are claimed one at a time and shrink as the work runs out ("guided" scheduling): a claim
/// takes max(1, remaining / (2 · workers)) items, at most `grain`. Long runs early keep look-ahead
/// and streams unbroken; short runs at the end let a thread that woke late, or got the expensive
/// (causal) items, finish with the others. At (Hkv 8, Nk 4096, D 128), 64 decode items on 2 Zen 4
/// threads: one item per claim 1.41-1.53 ms, fixed runs of 8 1.20-1.40 ms with one thread often idle
/// at the end (cpu_util down to 0.76), guided 1.23-1.40 ms (median of 5: 1.36, cpu_util 0.88-0.98).
template <typename Fn>
void parallel_for_runs(const Eigen::ThreadPoolDevice* device, int workers, Index n, Index grain, Fn&& fn) {
  if (n <= 0) return;
  grain = std::max<Index>(1, grain);
  workers = static_cast<int>(std::min<Index>(workers, n));
  if (device == nullptr || workers <= 1) {
    fn(0, Index(0), n);
    return;
  }
  std::atomic<Index> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  const Index spread = 2 * static_cast<Index>(workers);
  auto work = [&](int worker) {
    try {
      Index begin = next.load(std::memory_order_relaxed);
      while (begin < n) {
        const Index size = std::min(grain, std::max<Index>(1, (n - begin) / spread));
        if (!next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed)) continue;  // begin reloaded
        fn(worker, begin, std::min(n, begin + size));
        begin = next.load(std::memory_order_relaxed);
      }
    } catch (...) {
      // Kernels throw nothing after validation; this keeps a bad_alloc from escaping a pool thread.
      if (!failed.exchange(true)) error = std::current_exception();
      next.store(n, std::memory_order_relaxed);
    }
  };
  Eigen::Barrier barrier(static_cast<unsigned int>(workers - 1));
  // The pool stores tasks in std::function, which keeps a capture of at most 16 trivially copyable
  // bytes inline: one pointer and the worker index fit, so handing out tasks allocates nothing.
  using Work = decltype(work);
  struct Shared {
    Work* run;
    Eigen::Barrier* done;
  } shared{&work, &barrier};
  const Shared* sp = &shared;
  for (int w = 1; w < workers; ++w) {
    device->enqueueNoNotification([sp, w] {
      (*sp->run)(w);
      sp->done->Notify();
    });
  }
  work(0);
  barrier.Wait();
  if (failed.load()) std::rethrow_exception(error);
}

/// Calls fn(worker, item) for every item in [0, n), items claimed one at a time (see
/// parallel_for_runs: a grain of 1).
template <typename Fn>
void parallel_for(const Eigen::ThreadPoolDevice* device, int workers, Index n, Fn&& fn) {
  parallel_for_runs(device, workers, n, 1, [&fn](int worker, Index begin, Index end) {
    for (Index i = begin; i < end; ++i) fn(worker, i);
  });
}

/// A turn counter for contributions that must be added to a shared accumulator in a fixed order,
/// whatever thread computes them (the backward's dq, summed over key splits in split order): the
/// contribution numbered `mine` waits until turns 0 .. mine - 1 have been taken. Deterministic
/// without atomics on the data, and free of deadlock as long as a contribution only waits on
/// contributions that an already running worker has claimed (items claimed one at a time, in order).
using Turn = std::atomic<Index>;

/// Runs f() when `turn` reaches `mine`, then passes the turn on. Spins briefly, then yields: the
/// contribution ahead is usually finishing its own add (a few microseconds).
template <typename F>
void in_turn(Turn& turn, Index mine, F&& f) {
  int spins = 0;
  while (turn.load(std::memory_order_acquire) != mine) {
    if (++spins > 64) std::this_thread::yield();
  }
  f();
  turn.store(mine + 1, std::memory_order_release);
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_PARALLEL_HPP
