// Threads: results are the same bits for any number of threads and across runs, dropout included,
// and one const Attend object serves many calling threads at once. Built and run under
// ThreadSanitizer by .ci/sanitize.sh (ctest label "threads").

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::ConstView;
using attend::Index;
using attend::Tensor;
using attend_test::Route;

struct Shape {
  const char* name;
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
  attend::Causal causal;
};
// Query tiles with ragged edges, and a decode step (split-KV kernel: three key splits to merge).
constexpr Shape kShapes[] = {
    {"tiles", 2, 4, 2, 150, 140, 32, 24, attend::Causal::bottom_right},
    {"decode", 2, 4, 1, 2, 1100, 16, 8, attend::Causal::none},
};

/// One call's inputs and outputs.
template <typename T>
struct Problem {
  Tensor<T, 4> q, k, v, out;
  Tensor<bool, 4> keep;  // (B, 1, Nq, Nk): a key-padding-like mask with some fully masked rows
  Tensor<attend::acc_t<T>, 3> lse;
  Problem(const Shape& s, std::uint32_t seed)
      : q(s.B, s.Hq, s.Nq, s.D), k(s.B, s.Hkv, s.Nk, s.D), v(s.B, s.Hkv, s.Nk, s.Dv), out(s.B, s.Hq, s.Nq, s.Dv),
        keep(s.B, 1, s.Nq, s.Nk), lse(s.B, s.Hq, s.Nq) {
    attend_test::fill(q, seed * 3 + 1);
    attend_test::fill(k, seed * 3 + 2);
    attend_test::fill(v, seed * 3 + 3);
    for (Index i = 0; i < keep.size(); ++i) keep.data()[i] = ((i * 2654435761u + seed) >> 7) % 5 != 0;
    for (Index j = 0; j < s.Nk; ++j) keep(0, 0, 1, j) = false;  // a row that sees nothing
  }
  attend::CallOptions<T> options(const Shape& s, std::uint32_t offset) {
    attend::CallOptions<T> o;
    o.mask = attend::Mask<T>::keep(ConstView<bool, 4>(keep));
    o.causal = s.causal;
    o.lse = lse;
    o.dropout_offset = offset;
    return o;
  }
};

template <typename T>
attend::Attend<T> training_module(const Route& route) {
  attend::Attend<T> a = attend_test::make_attend<T>(route, /*dropout=*/0.2, std::nullopt, /*seed=*/0x5eed5eed12345ULL);
  a.train();
  return a;
}

template <typename T>
class Threads : public ::testing::Test {};
TYPED_TEST_SUITE(Threads, attend_test::AllTypes, attend_test::TypeNames);

// Every path gives the same bits with 1, 2, 3 and 8 threads as without a pool, run after run.
TYPED_TEST(Threads, SameBitsForAnyThreadCountAndRun) {
  using T = TypeParam;
  for (const Shape& sh : kShapes) {
    for (const Route& route : attend_test::forced_routes()) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
      const attend::Attend<T> a = training_module<T>(route);
      Problem<T> ref(sh, 1);
      attend_test::forward(a, ref.q, ref.k, ref.v, ref.out, ref.options(sh, 7));
      for (int threads : {1, 2, 3, 8}) {
        Eigen::ThreadPool pool(threads);
        const Eigen::ThreadPoolDevice device(&pool, threads);
        for (int rep = 0; rep < 2; ++rep) {
          Problem<T> p(sh, 1);
          attend::CallOptions<T> o = p.options(sh, 7);
          o.device = &device;
          attend::Workspace ws;
          if (rep == 1) o.workspace = &ws;
          attend_test::forward(a, p.q, p.k, p.v, p.out, o);
          EXPECT_EQ(attend_test::first_diff(p.out, ref.out), -1) << threads << " threads, run " << rep;
          EXPECT_EQ(attend_test::first_diff(p.lse, ref.lse), -1) << threads << " threads, run " << rep;
        }
      }
    }
  }
}

// One Attend per path, each called at once from 8 std::threads that share one thread pool device
// (and so compete for its 3 threads); every call gives the bits the same call gives alone.
TYPED_TEST(Threads, OneModuleCalledFromEightThreads) {
  using T = TypeParam;
  constexpr int kCallers = 8, kCalls = 3;
  Eigen::ThreadPool pool(3);
  const Eigen::ThreadPoolDevice device(&pool, 3);
  for (const Shape& sh : kShapes) {
    for (const Route& route : attend_test::routes()) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
      const attend::Attend<T> a = training_module<T>(route);
      // Serial references: caller c, call n uses inputs seeded c and dropout offset n.
      std::vector<std::unique_ptr<Problem<T>>> refs;
      for (int c = 0; c < kCallers; ++c) {
        for (int n = 0; n < kCalls; ++n) {
          refs.push_back(std::make_unique<Problem<T>>(sh, static_cast<std::uint32_t>(c + 1)));
          Problem<T>& r = *refs.back();
          attend_test::forward(a, r.q, r.k, r.v, r.out, r.options(sh, static_cast<std::uint32_t>(n)));
        }
      }
      std::vector<std::unique_ptr<Problem<T>>> got(refs.size());
      std::vector<std::thread> callers;
      for (int c = 0; c < kCallers; ++c) {
        callers.emplace_back([&, c] {
          attend::Workspace ws;  // one per caller: a workspace serves one call at a time
          for (int n = 0; n < kCalls; ++n) {
            auto p = std::make_unique<Problem<T>>(sh, static_cast<std::uint32_t>(c + 1));
            attend::CallOptions<T> o = p->options(sh, static_cast<std::uint32_t>(n));
            o.device = (c + n) % 4 == 3 ? nullptr : &device;  // some callers without the pool
            if (n % 2 == 1) o.workspace = &ws;
            attend_test::forward(a, p->q, p->k, p->v, p->out, o);
            got[static_cast<std::size_t>(c * kCalls + n)] = std::move(p);
          }
        });
      }
      for (std::thread& t : callers) t.join();
      for (std::size_t i = 0; i < refs.size(); ++i) {
        ASSERT_TRUE(got[i]);
        EXPECT_EQ(attend_test::first_diff(got[i]->out, refs[i]->out), -1) << "caller " << i / kCalls << ", call " << i % kCalls;
        EXPECT_EQ(attend_test::first_diff(got[i]->lse, refs[i]->lse), -1) << "caller " << i / kCalls << ", call " << i % kCalls;
      }
    }
  }
}

// The returning operator() and dispatch() are as thread-safe as forward().
TEST(ThreadsApi, ReturningCallAndDispatchFromManyThreads) {
  const Shape& sh = kShapes[0];
  const attend::Attend<float> a(0.0, true);
  Problem<float> p(sh, 3);
  const attend::CallOptions<float> o = p.options(sh, 0);
  const Tensor<float, 4> ref = attend_test::call(a, p.q, p.k, p.v, o);
  std::vector<int> ok(8, 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      attend::Dispatch d;
      attend::CallOptions<float> mine = o;
      mine.dispatch = &d;
      mine.lse = {};
      const Tensor<float, 4> out = attend_test::call(a, p.q, p.k, p.v, mine);
      ok[static_cast<std::size_t>(t)] = attend_test::same_bits(out, ref) && d.path == attend::Path::flash &&
                                        a.dispatch(p.q, p.k, p.v, o).path == attend::Path::flash;
    });
  }
  for (std::thread& t : ts) t.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(ok[static_cast<std::size_t>(t)], 1) << "thread " << t;
}

}  // namespace

// The scheduler under every path (detail/parallel.hpp): guided runs cover each item exactly once,
// in runs of consecutive items no longer than the grain, on worker slots below the worker count,
// and shrink toward the end (the last runs are single items when there are enough of them).
TEST(ThreadsScheduler, GuidedRunsCoverEveryItemOnce) {
  Eigen::ThreadPool pool(3);
  const Eigen::ThreadPoolDevice device(&pool, 3);
  for (const Index n : {Index{1}, Index{2}, Index{7}, Index{64}, Index{1000}}) {
    for (const Index grain : {Index{1}, Index{8}, Index{64}, n}) {
      SCOPED_TRACE("n " + std::to_string(n) + ", grain " + std::to_string(grain));
      std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
      std::vector<std::atomic<int>> busy(4);
      std::atomic<Index> longest{0}, bad{0}, last_size{0};
      attend::detail::parallel_for_runs(attend::detail::pool_of(&device), 3, n, grain, [&](int worker, Index begin, Index end) {
        if (worker < 0 || worker >= 3 || begin >= end || busy[static_cast<std::size_t>(worker)]++ != 0) ++bad;
        for (Index i = begin; i < end; ++i) ++seen[static_cast<std::size_t>(i)];
        Index l = longest.load();
        while (end - begin > l && !longest.compare_exchange_weak(l, end - begin)) {
        }
        if (end == n) last_size = end - begin;
        --busy[static_cast<std::size_t>(worker)];
      });
      EXPECT_EQ(bad.load(), 0) << "a run was empty, or two runs shared a worker slot at once";
      for (Index i = 0; i < n; ++i) {
        ASSERT_EQ(seen[static_cast<std::size_t>(i)].load(), 1) << "item " << i;
      }
      EXPECT_LE(longest.load(), grain);
      if (n >= 64) {
        EXPECT_EQ(last_size.load(), 1) << "the last run should be a single item";
      }
    }
  }
}
