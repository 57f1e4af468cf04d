// No hidden allocation: with a caller-provided Workspace sized by Attend<T>::workspace_bytes (or, for
// the backward pass, backward_workspace_bytes), a flash or mem_efficient forward or backward call
// allocates nothing at all; without one it allocates its scratch once, up front, never inside the tile
// loops.
//
// Three independent counters watch a call:
//  - Eigen's EIGEN_RUNTIME_NO_MALLOC with set_is_malloc_allowed(false): any Eigen allocation trips
//    eigen_assert, which this file routes to a counter (so it works under NDEBUG too);
//  - this binary's replacements of every global operator new;
//  - outside sanitizer builds, this binary's replacements of malloc, calloc, realloc and the aligned
//    allocators (forwarding to glibc's __libc_* functions), which see C and Eigen allocations too.
// This file is its own executable: the replacements must not reach other tests.

// Before anything includes Eigen.
#define EIGEN_RUNTIME_NO_MALLOC
void robust_eigen_assert_failed(const char* what, const char* file, int line);
#define eigen_assert(x)                                       \
  do {                                                        \
    if (!static_cast<bool>(x)) robust_eigen_assert_failed(#x, __FILE__, __LINE__); \
  } while (false)

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#include <gtest/gtest.h>

#include "support/attend_test.hpp"
#include "support/check.hpp"

// ---- Counters ----

namespace {
std::atomic<long> g_eigen_asserts{0};
std::atomic<long> g_news{0};
std::atomic<long> g_mallocs{0};
std::atomic<bool> g_counting{false};
const char* g_last_assert = "";

void* counted_new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* counted_new_aligned(std::size_t n, std::align_val_t al) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = static_cast<std::size_t>(al);
  void* p = std::aligned_alloc(a, (n + a - 1) / a * a);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void robust_eigen_assert_failed(const char* what, const char* file, int line) {
  g_eigen_asserts.fetch_add(1);
  g_last_assert = what;  // shown by the expectation that fails
  (void)file;
  (void)line;
}

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// malloc and friends, where no sanitizer runtime owns them.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define ROBUST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ROBUST_SANITIZED 1
#endif
#if !defined(ROBUST_SANITIZED) && defined(__GLIBC__)
#define ROBUST_COUNT_MALLOC 1
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

static inline void count_malloc() {
  if (g_counting.load(std::memory_order_relaxed)) g_mallocs.fetch_add(1, std::memory_order_relaxed);
}
void* malloc(std::size_t n) {
  count_malloc();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  count_malloc();
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  count_malloc();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
void* memalign(std::size_t a, std::size_t n) {
  count_malloc();
  return __libc_memalign(a, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  count_malloc();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  count_malloc();
  void* p = __libc_memalign(a, n);
  if (p == nullptr) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}
#endif

namespace {

using attend::ConstView;
using attend::Index;
using attend::Tensor;
using attend_test::Route;

/// Allocations seen while a scope is open.
struct Watch {
  long eigen0, news0, mallocs0;
  Watch() : eigen0(g_eigen_asserts.load()), news0(g_news.load()), mallocs0(g_mallocs.load()) {
    Eigen::internal::set_is_malloc_allowed(false);
    g_counting.store(true);
  }
  void stop() {
    g_counting.store(false);
    Eigen::internal::set_is_malloc_allowed(true);
  }
  long eigen() const { return g_eigen_asserts.load() - eigen0; }
  long news() const { return g_news.load() - news0; }
  long mallocs() const { return g_mallocs.load() - mallocs0; }
};

struct Shape {
  const char* name;
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
};
// Many query tiles; and a decode step (the flash path's split-KV kernel).
constexpr Shape kShapes[] = {{"tiles", 2, 4, 2, 200, 150, 32, 24}, {"decode", 2, 8, 2, 3, 1100, 64, 64}};

template <typename T>
struct Problem {
  Tensor<T, 4> q, k, v, out;
  Tensor<bool, 4> keep;
  Tensor<attend::acc_t<T>, 3> lse;
  explicit Problem(const Shape& s)
      : q(s.B, s.Hq, s.Nq, s.D), k(s.B, s.Hkv, s.Nk, s.D), v(s.B, s.Hkv, s.Nk, s.Dv), out(s.B, s.Hq, s.Nq, s.Dv),
        keep(s.B, 1, 1, s.Nk), lse(s.B, s.Hq, s.Nq) {
    attend_test::fill(q, 1);
    attend_test::fill(k, 2);
    attend_test::fill(v, 3);
    for (Index i = 0; i < keep.size(); ++i) keep.data()[i] = i % 7 != 3;
  }
  // Mask, causality, lse and dropout: everything a call can do.
  attend::CallOptions<T> options() {
    attend::CallOptions<T> o;
    o.mask = attend::Mask<T>::keep(ConstView<bool, 4>(keep));
    o.causal = attend::Causal::bottom_right;
    o.lse = lse;
    o.dropout_offset = 5;
    return o;
  }
};

template <typename T>
attend::Attend<T> module(const Route& r) {
  attend::Attend<T> a = attend_test::make_attend<T>(r, 0.1, std::nullopt, 99);
  a.train();
  return a;
}

template <typename T>
class NoAlloc : public ::testing::Test {};
TYPED_TEST_SUITE(NoAlloc, attend_test::AllTypes, attend_test::TypeNames);

// The whole forward call, validation and dispatch included, allocates nothing with a Workspace.
TYPED_TEST(NoAlloc, TiledPathsWithWorkspaceAllocateNothing) {
  using T = TypeParam;
  for (const Shape& sh : kShapes) {
    for (const Route& route : {attend_test::forced_routes()[0], attend_test::forced_routes()[1]}) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
      const attend::Attend<T> a = module<T>(route);
      Problem<T> p(sh);
      attend::CallOptions<T> o = p.options();
      attend::Workspace ws(a.workspace_bytes(p.q, p.k, p.v, o));
      o.workspace = &ws;
      Watch w;
      a.forward(p.q, p.k, p.v, p.out, o);
      w.stop();
      EXPECT_EQ(w.eigen(), 0) << "Eigen allocated: " << g_last_assert;
      EXPECT_EQ(w.news(), 0) << "operator new was called";
      EXPECT_EQ(w.mallocs(), 0) << "malloc was called";
      EXPECT_TRUE(attend_test::is_finite(p.out(0, 0, sh.Nq - 1, 0)));
    }
  }
}

// workspace_bytes() allocates nothing, and neither does choosing the path inside a call that does
// not ask for the reasons (dispatch() itself returns the reasons as strings, so it may allocate).
TYPED_TEST(NoAlloc, WorkspaceQueryAllocatesNothing) {
  using T = TypeParam;
  for (const Route& route : attend_test::routes()) {
    SCOPED_TRACE(route.name);
    const attend::Attend<T> a = module<T>(route);
    Problem<T> p(kShapes[0]);
    const attend::CallOptions<T> o = p.options();
    Watch w;
    const std::size_t bytes = a.workspace_bytes(p.q, p.k, p.v, o);
    w.stop();
    EXPECT_EQ(w.eigen() + w.news() + w.mallocs(), 0) << bytes;
    EXPECT_EQ(a.dispatch(p.q, p.k, p.v, o).path, route.expect);
  }
}

// Without a Workspace, a call allocates its scratch once, whatever the number of tiles.
TYPED_TEST(NoAlloc, WithoutWorkspaceOneAllocationUpFront) {
  using T = TypeParam;
  for (const Route& route : {attend_test::forced_routes()[0], attend_test::forced_routes()[1]}) {
    for (const Shape& sh : {kShapes[0], Shape{"4x the tiles", 4, 8, 2, 400, 150, 32, 24}}) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
      const attend::Attend<T> a = module<T>(route);
      Problem<T> p(sh);
      const attend::CallOptions<T> o = p.options();
      Watch w;
      a.forward(p.q, p.k, p.v, p.out, o);
      w.stop();
      EXPECT_EQ(w.eigen(), 0) << "Eigen allocations";
      EXPECT_EQ(w.news(), 1) << "the scratch, once (aligned operator new: Workspace)";
#ifdef ROBUST_COUNT_MALLOC
      EXPECT_EQ(w.mallocs(), 1);
#endif
    }
  }
}

// With a thread pool the call hands workers - 1 tasks to Eigen's ThreadPool, which stores each in a
// std::function. parallel_for's task captures one pointer and the worker index, 16 bytes, which
// libstdc++'s std::function keeps inline, so a call with a pool and a Workspace allocates nothing.
TYPED_TEST(NoAlloc, WithThreadPoolNothingAllocates) {
  using T = TypeParam;
  Eigen::ThreadPool pool(3);
  const Eigen::ThreadPoolDevice device(&pool, 3);
  for (const Route& route : {attend_test::forced_routes()[0], attend_test::forced_routes()[1]}) {
    SCOPED_TRACE(route.name);
    const attend::Attend<T> a = module<T>(route);
    Problem<T> p(kShapes[0]);
    attend::CallOptions<T> o = p.options();
    o.device = &device;
    attend::Workspace ws(a.workspace_bytes(p.q, p.k, p.v, o));
    o.workspace = &ws;
    a.forward(p.q, p.k, p.v, p.out, o);  // warm the pool's threads
    Watch w;
    a.forward(p.q, p.k, p.v, p.out, o);
    w.stop();
    EXPECT_EQ(w.eigen(), 0) << "Eigen allocated: " << g_last_assert;
    EXPECT_EQ(w.news(), 0) << "a task handed to the pool allocated";
    this->RecordProperty("operator_new_calls_with_pool", static_cast<int>(w.news()));
    std::printf("[ info ] %s with a 3-thread pool: %ld operator new, %ld malloc\n", route.name, w.news(), w.mallocs());
  }
}

// The math path materialises its (Nq, Nk) scores (workspace_bytes is 0 for it): it allocates,
// documented, not a defect, and only through operator new, never Eigen's aligned_malloc, whose code
// depends on the target flags (kernel/contraction.hpp; attend.odr.*). So Eigen's counter stays at 0,
// header-only or through attend::dispatch.
TYPED_TEST(NoAlloc, MathPathAllocatesThroughOperatorNew) {
  using T = TypeParam;
  const attend::Attend<T> a = module<T>(attend_test::forced_routes()[2]);
  Problem<T> p(kShapes[0]);
  const attend::CallOptions<T> o = p.options();
  EXPECT_EQ(a.workspace_bytes(p.q, p.k, p.v, o), 0u);
  Watch w;
  a.forward(p.q, p.k, p.v, p.out, o);
  w.stop();
  EXPECT_GT(w.news(), 0);
  EXPECT_EQ(w.eigen(), 0);
}

// ---- The backward pass ----

/// A training step's tensors: the forward's out and lse, an upstream gradient, the gradients, and an
/// additive (B, 1, 1, Nk) mask whose dmask sums over heads and queries (an fp32 accumulator in the
/// workspace).
template <typename T>
struct GradProblem {
  Tensor<T, 4> q, k, v, out, dout, dq, dk, dv;
  Tensor<T, 4> bias, dbias;
  Tensor<attend::acc_t<T>, 3> lse;
  explicit GradProblem(const Shape& s)
      : q(s.B, s.Hq, s.Nq, s.D), k(s.B, s.Hkv, s.Nk, s.D), v(s.B, s.Hkv, s.Nk, s.Dv), out(s.B, s.Hq, s.Nq, s.Dv),
        dout(s.B, s.Hq, s.Nq, s.Dv), dq(s.B, s.Hq, s.Nq, s.D), dk(s.B, s.Hkv, s.Nk, s.D), dv(s.B, s.Hkv, s.Nk, s.Dv),
        bias(s.B, 1, 1, s.Nk), dbias(s.B, 1, 1, s.Nk), lse(s.B, s.Hq, s.Nq) {
    attend_test::fill(q, 1);
    attend_test::fill(k, 2);
    attend_test::fill(v, 3);
    attend_test::fill(dout, 4);
    for (Index i = 0; i < bias.size(); ++i) bias.data()[i] = static_cast<T>(i % 7 == 3 ? -1e30 : 0.01 * (i % 11));
  }
  attend::CallOptions<T> options() {
    attend::CallOptions<T> o;
    o.mask = attend::Mask<T>::additive(ConstView<T, 4>(bias));
    o.causal = attend::Causal::bottom_right;
    o.dropout_offset = 5;
    return o;
  }
  attend::GradientViews<T> grads() { return {dq, dk, dv, attend::MaskGrad<T>::of(dbias)}; }
  /// The forward with lse (not watched).
  void forward(const attend::Attend<T>& a) {
    attend::CallOptions<T> o = options();
    o.lse = lse;
    a.forward(q, k, v, out, o);
  }
  void backward(const attend::Attend<T>& a, const attend::CallOptions<T>& o) {
    a.backward(q, k, v, out, lse, dout, grads(), o);
  }
};

// With a Workspace sized by backward_workspace_bytes (dmask included), a flash or mem_efficient
// backward call allocates nothing at all: the flash backward's split keys (this shape has 4 (b, kv
// head) pairs, fewer than GradTraits::kMinItems: a dq accumulator and the split order's turns), the
// dmask accumulator, the dropout mask regenerated.
TYPED_TEST(NoAlloc, BackwardTiledPathsWithWorkspaceAllocateNothing) {
  using T = TypeParam;
  for (const Route& route : {attend_test::forced_routes()[0], attend_test::forced_routes()[1]}) {
    SCOPED_TRACE(route.name);
    const attend::Attend<T> a = module<T>(route);
    GradProblem<T> p(kShapes[0]);
    p.forward(a);
    attend::CallOptions<T> o = p.options();
    attend::Workspace ws(a.backward_workspace_bytes(p.q, p.k, p.v, o, p.grads().dmask));
    o.workspace = &ws;
    Watch w;
    p.backward(a, o);
    w.stop();
    EXPECT_EQ(w.eigen(), 0) << "Eigen allocated: " << g_last_assert;
    EXPECT_EQ(w.news(), 0) << "operator new was called";
    EXPECT_EQ(w.mallocs(), 0) << "malloc was called";
    EXPECT_TRUE(attend_test::is_finite(p.dq(0, 0, kShapes[0].Nq - 1, 0)));
    EXPECT_NE(static_cast<double>(p.dbias(0, 0, 0, 0)), 0.0) << "premise: dmask was computed";
  }
}

// backward_workspace_bytes() and backward_dispatch()'s choice inside a call allocate nothing.
TYPED_TEST(NoAlloc, BackwardWorkspaceQueryAllocatesNothing) {
  using T = TypeParam;
  for (const Route& route : attend_test::routes()) {
    SCOPED_TRACE(route.name);
    const attend::Attend<T> a = module<T>(route);
    GradProblem<T> p(kShapes[0]);
    const attend::CallOptions<T> o = p.options();
    const attend::MaskGrad<T> dmask = p.grads().dmask;
    Watch w;
    const std::size_t bytes = a.backward_workspace_bytes(p.q, p.k, p.v, o, dmask);
    w.stop();
    EXPECT_EQ(w.eigen() + w.news() + w.mallocs(), 0) << bytes;
    EXPECT_EQ(a.backward_dispatch(p.q, p.k, p.v, o).path, route.expect);
    EXPECT_EQ(bytes == 0, route.expect == attend::Path::math) << "the tiled paths need scratch; math none";
  }
}

// Without a Workspace, a backward call allocates its scratch once, whatever the number of tiles.
TYPED_TEST(NoAlloc, BackwardWithoutWorkspaceOneAllocationUpFront) {
  using T = TypeParam;
  for (const Route& route : {attend_test::forced_routes()[0], attend_test::forced_routes()[1]}) {
    for (const Shape& sh : {kShapes[0], Shape{"4x the tiles", 4, 8, 2, 400, 150, 32, 24}}) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
      const attend::Attend<T> a = module<T>(route);
      GradProblem<T> p(sh);
      p.forward(a);
      const attend::CallOptions<T> o = p.options();
      Watch w;
      p.backward(a, o);
      w.stop();
      EXPECT_EQ(w.eigen(), 0) << "Eigen allocations";
      EXPECT_EQ(w.news(), 1) << "the scratch, once (aligned operator new: Workspace)";
#ifdef ROBUST_COUNT_MALLOC
      EXPECT_EQ(w.mallocs(), 1);
#endif
    }
  }
}

// With a thread pool and a Workspace, a backward call allocates nothing either (the split keys'
// ordered dq adds wait on each other without allocating).
TYPED_TEST(NoAlloc, BackwardWithThreadPoolNothingAllocates) {
  using T = TypeParam;
  Eigen::ThreadPool pool(3);
  const Eigen::ThreadPoolDevice device(&pool, 3);
  for (const Route& route : {attend_test::forced_routes()[0], attend_test::forced_routes()[1]}) {
    SCOPED_TRACE(route.name);
    const attend::Attend<T> a = module<T>(route);
    GradProblem<T> p(kShapes[0]);
    p.forward(a);
    attend::CallOptions<T> o = p.options();
    o.device = &device;
    attend::Workspace ws(a.backward_workspace_bytes(p.q, p.k, p.v, o, p.grads().dmask));
    o.workspace = &ws;
    p.backward(a, o);  // warm the pool's threads
    Watch w;
    p.backward(a, o);
    w.stop();
    EXPECT_EQ(w.eigen(), 0) << "Eigen allocated: " << g_last_assert;
    EXPECT_EQ(w.news(), 0) << "a task handed to the pool allocated";
  }
}

// The math backward materialises (Nq, Nk) matrices (backward_workspace_bytes is 0 for it): it
// allocates, documented, not a defect, and as the forward's math path does, only through operator new.
TYPED_TEST(NoAlloc, MathBackwardAllocatesThroughOperatorNew) {
  using T = TypeParam;
  const attend::Attend<T> a = module<T>(attend_test::forced_routes()[2]);
  GradProblem<T> p(kShapes[0]);
  p.forward(a);
  const attend::CallOptions<T> o = p.options();
  EXPECT_EQ(a.backward_workspace_bytes(p.q, p.k, p.v, o, p.grads().dmask), 0u);
  Watch w;
  p.backward(a, o);
  w.stop();
  EXPECT_GT(w.news(), 0);
  EXPECT_EQ(w.eigen(), 0);
}

}  // namespace
