#ifndef ATTEND_DETAIL_PARALLEL_HPP
#define ATTEND_DETAIL_PARALLEL_HPP

// Work distribution over a thread pool (the caller's optional Eigen::ThreadPoolDevice). Workers claim
// items from an atomic counter, so uneven items (causal rows, ragged tiles) balance by themselves.
// Each item is computed by exactly one worker and always the same way, so results never depend on
// the thread count.

#include <algorithm>  // std::min
#include <atomic>     // std::atomic
#include <exception>  // std::exception_ptr
#include <thread>     // std::this_thread::yield

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// A thread pool as the kernels see it: a fork-join over plain function pointers. The kernels never
/// touch an Eigen object of the caller's, so kernels compiled for one instruction set can run on a
/// pool owned by code compiled for another (the dispatch component: no Eigen object crosses between
/// its variants). pool_of() wraps the caller's Eigen::ThreadPoolDevice.
struct Pool {
  int threads = 1;          ///< workers a call uses, the calling thread included
  void* context = nullptr;  ///< the fork's first argument (the Eigen device)
  /// Runs task(arg, w) for w in [1, n) on other threads, task(arg, 0) on the calling thread, and
  /// returns when all have finished; null with one thread.
  void (*fork)(void* context, int n, void (*task)(void*, int), void* arg) = nullptr;
};

/// The fork of an Eigen::ThreadPoolDevice. The pool stores tasks in std::function, which keeps a
/// capture of at most 16 trivially copyable bytes inline: one pointer and the worker index fit, so
/// handing out tasks allocates nothing.
inline void fork_on_eigen_device(void* context, int n, void (*task)(void*, int), void* arg) {
  const auto* device = static_cast<const Eigen::ThreadPoolDevice*>(context);
  Eigen::Barrier barrier(static_cast<unsigned int>(n - 1));
  struct Shared {
    void (*task)(void*, int);
    void* arg;
    Eigen::Barrier* done;
  } shared{task, arg, &barrier};
  const Shared* sp = &shared;
  for (int w = 1; w < n; ++w) {
    device->enqueueNoNotification([sp, w] {
      sp->task(sp->arg, w);
      sp->done->Notify();
    });
  }
  task(arg, 0);
  barrier.Wait();
}

/// The pool of a call's Eigen device: its thread count, or the calling thread alone without one.
inline Pool pool_of(const Eigen::ThreadPoolDevice* device) {
  Pool p;
  if (device == nullptr) return p;
  p.threads = std::max(1, device->numThreads());
  p.context = const_cast<Eigen::ThreadPoolDevice*>(device);
  p.fork = &fork_on_eigen_device;
  return p;
}

/// Number of workers a call uses: the pool's thread count.
inline int worker_count(const Pool& pool) { return pool.threads; }

/// Calls fn(worker, begin, end) over [0, n) in runs of consecutive items; `worker` is in
/// [0, workers) and names the scratch slot the call may use, never shared by two threads at once.
/// The calling thread is worker 0 and `workers - 1` tasks go to the pool, so `workers` threads
/// compute while the pool has them free. A run lets the callee look ahead (prefetch item i + 1 while
/// computing item i, stream one stretch of memory).
///
/// Runs are claimed one at a time and shrink as the work runs out ("guided" scheduling): a claim
/// takes max(1, remaining / (2 · workers)) items, at most `grain`. Long runs early keep look-ahead
/// and streams unbroken; short runs at the end let a thread that woke late, or got the expensive
/// (causal) items, finish with the others (docs/perf-notes.md has the measurements).
template <typename Fn>
void parallel_for_runs(const Pool& pool, int workers, Index n, Index grain, Fn&& fn) {
  if (n <= 0) return;
  grain = std::max<Index>(1, grain);
  workers = static_cast<int>(std::min<Index>(workers, n));
  if (pool.fork == nullptr || workers <= 1) {
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
  using Work = decltype(work);
  pool.fork(pool.context, workers, [](void* arg, int w) { (*static_cast<Work*>(arg))(w); }, &work);
  if (failed.load()) std::rethrow_exception(error);
}

/// Calls fn(worker, item) for every item in [0, n), items claimed one at a time (see
/// parallel_for_runs: a grain of 1).
template <typename Fn>
void parallel_for(const Pool& pool, int workers, Index n, Fn&& fn) {
  parallel_for_runs(pool, workers, n, 1, [&fn](int worker, Index begin, Index end) {
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
