// Which path a call takes, and why the ones before it were passed over: flash = false always takes
// math; flash = true takes the first enabled path that can serve the call, in the order flash,
// mem_efficient, math; head dimensions beyond kMaxTiledHeadDim rule the tiled paths out; asking for
// exactly one path that cannot serve the call is an error, never a silent fallback.

#include <gtest/gtest.h>

#include <cstdlib>  // std::getenv
#if defined(ATTEND_DISPATCH) && defined(__x86_64__)
#include <cpuid.h>  // __get_cpuid_count
#endif
#include <string>
#include <utility>  // std::pair
#include <vector>

#include "support/attend_test.hpp"
#include "support/reference.hpp"

namespace {

#if defined(ATTEND_DISPATCH) && defined(__x86_64__)
/// AMX-TILE and AMX-BF16 in CPUID and their state in XCR0: what the selector asks of x86-64-v4-amx,
/// checked here independently of it.
bool cpu_has_amx() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 22) & 1) || !((d >> 24) & 1)) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0x60000u) == 0x60000u;
}
#endif

using attend::Dispatch;
using attend::FlashAttentionConfig;
using attend::Index;
using attend::Path;
using T = float;

constexpr Index kMax = attend::Attend<T>::kMaxTiledHeadDim;

struct Args {
  std::vector<T> q, k, v;
  attend::ConstView<T, 4> qv, kv, vv;
  Args(Index D, Index Dv, Index Nq = 3, Index Nk = 4)
      : q(static_cast<std::size_t>(Nq * D), T(0.01)),
        k(static_cast<std::size_t>(Nk * D), T(0.02)),
        v(static_cast<std::size_t>(Nk * Dv), T(1)),
        qv(q.data(), {1, 1, Nq, D}),
        kv(k.data(), {1, 1, Nk, D}),
        vv(v.data(), {1, 1, Nk, Dv}) {}
};

Dispatch dispatch(bool flash, FlashAttentionConfig config, Index D, Index Dv) {
  const Args a(D, Dv);
  return attend::Attend<T>(0.0, flash, std::nullopt, config).dispatch(a.qv, a.kv, a.vv);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Dispatch, FlashFalseTakesMathAndSaysWhy) {
  for (const FlashAttentionConfig c : {FlashAttentionConfig{}, attend_test::only(Path::flash)}) {
    const Dispatch d = dispatch(false, c, 64, 64);
    EXPECT_EQ(d.path, Path::math);
    EXPECT_TRUE(contains(d.flash_reason, "flash = false")) << d.flash_reason;
    EXPECT_TRUE(contains(d.mem_efficient_reason, "flash = false")) << d.mem_efficient_reason;
  }
}

TEST(Dispatch, FlashTrueDefaultTakesFlash) {
  const Dispatch d = dispatch(true, {}, 64, 64);
  EXPECT_EQ(d.path, Path::flash);
  EXPECT_EQ(d.flash_reason, "");
  EXPECT_EQ(d.mem_efficient_reason, "");  // not considered
}

TEST(Dispatch, OnlyMemEfficientTakesMemEfficient) {
  const Dispatch d = dispatch(true, attend_test::only(Path::mem_efficient), 64, 64);
  EXPECT_EQ(d.path, Path::mem_efficient);
  EXPECT_TRUE(contains(d.flash_reason, "disabled")) << d.flash_reason;
  EXPECT_EQ(d.mem_efficient_reason, "");
}

TEST(Dispatch, FlashDisabledFallsToMemEfficientThenMath) {
  FlashAttentionConfig c;
  c.enable_flash = false;
  EXPECT_EQ(dispatch(true, c, 64, 64).path, Path::mem_efficient);
  c.enable_mem_efficient = false;
  const Dispatch d = dispatch(true, c, 64, 64);
  EXPECT_EQ(d.path, Path::math);
  EXPECT_TRUE(contains(d.flash_reason, "disabled")) << d.flash_reason;
  EXPECT_TRUE(contains(d.mem_efficient_reason, "disabled")) << d.mem_efficient_reason;
}

TEST(Dispatch, OnlyMathTakesMath) { EXPECT_EQ(dispatch(true, attend_test::only(Path::math), 64, 64).path, Path::math); }

// At the limit the tiled paths still serve; one past it (in D or in Dv) they do not, with a reason
// that names the limit, and the call falls to math.
TEST(Dispatch, HeadDimAboveTiledLimitTakesMathWithReasons) {
  EXPECT_EQ(dispatch(true, {}, kMax, kMax).path, Path::flash);
  for (const auto& [D, Dv] : {std::pair<Index, Index>{kMax + 1, 8}, {8, kMax + 1}, {4 * kMax, kMax + 1}}) {
    const Dispatch d = dispatch(true, {}, D, Dv);
    EXPECT_EQ(d.path, Path::math) << "D " << D << " Dv " << Dv;
    EXPECT_TRUE(contains(d.flash_reason, std::to_string(kMax))) << d.flash_reason;
    EXPECT_TRUE(contains(d.mem_efficient_reason, std::to_string(kMax))) << d.mem_efficient_reason;
  }
}

// Such a call also computes the right thing on the math path.
TEST(Dispatch, HeadDimAboveTiledLimitComputesOnMath) {
  const attend_test::Inputs in = attend_test::random_inputs(1, 2, 1, 3, 5, kMax + 7, 4, 301);
  attend_test::RunSpec flash_default;
  flash_default.route = attend_test::routes()[4];  // flash = true, the default config
  const auto got = attend_test::run<T>(in, flash_default);
  EXPECT_EQ(got.dispatch.path, Path::math);
  const auto ref = attend_test::reference<T>(in);
  const auto tol = attend_test::tolerance<T>(attend_test::rounded<T>(in), attend_test::max_abs_finite(ref.out), 1.0);
  const auto diff = attend_test::compare(got.out, ref.out);
  EXPECT_LE(diff.max_abs_err, tol.out);
}

// Exactly one tiled path enabled and a head too big for it: an Error from dispatch() and from a call.
TEST(Dispatch, OnlyTiledPathAndHeadTooBigIsAnError) {
  for (const Path p : {Path::flash, Path::mem_efficient}) {
    for (const auto& [D, Dv] : {std::pair<Index, Index>{kMax + 1, 8}, {8, kMax + 1}}) {
      EXPECT_THROW(dispatch(true, attend_test::only(p), D, Dv), attend::Error) << attend::path_name(p);
      const Args a(D, Dv);
      std::vector<T> out(static_cast<std::size_t>(3 * Dv), T(9));
      EXPECT_THROW(attend_test::forward(attend_test::make_attend<T>(attend_test::forced(p)), a.qv, a.kv, a.vv,
                                        attend::TensorView<T, 4>(out.data(), {1, 1, 3, Dv})),
                   attend::Error);
      for (T x : out) EXPECT_EQ(x, T(9));
    }
  }
  // flash and mem_efficient both enabled, math off: still an error, naming both reasons.
  FlashAttentionConfig c = attend_test::only(Path::flash);
  c.enable_mem_efficient = true;
  try {
    dispatch(true, c, kMax + 1, 8);
    FAIL() << "no exception";
  } catch (const attend::Error& e) {
    EXPECT_TRUE(contains(e.what(), std::to_string(kMax))) << e.what();
  }
}

// CallOptions::dispatch reports what the call did, the same as dispatch() predicts.
TEST(Dispatch, CallReportsThePathItTook) {
  const Args a(16, 16);
  const std::vector<std::pair<bool, FlashAttentionConfig>> modules = {
      {false, {}}, {true, {}}, {true, attend_test::only(Path::mem_efficient)}, {true, attend_test::only(Path::math)}};
  for (const auto& [flash, config] : modules) {
    const attend::Attend<T> m(0.0, flash, std::nullopt, config);
    Dispatch got;
    attend::CallOptions<T> o;
    o.dispatch = &got;
    std::vector<T> out(3 * 16);
    attend_test::forward(m, a.qv, a.kv, a.vv, attend::TensorView<T, 4>(out.data(), {1, 1, 3, 16}), o);
    const Dispatch want = m.dispatch(a.qv, a.kv, a.vv);
    EXPECT_EQ(got.path, want.path);
    EXPECT_EQ(got.flash_reason, want.flash_reason);
    EXPECT_EQ(got.mem_efficient_reason, want.mem_efficient_reason);
    EXPECT_EQ(got.kernel, want.kernel);
    EXPECT_STREQ(got.isa, want.isa);
  }
}

// Dispatch::isa names the instruction set of the kernels a call runs. Header-only: the one the
// caller's translation unit was compiled for, the ABI tag's. Through attend::dispatch: the variant's
// the selector chose, the one ATTEND_ISA forces when the CPU runs it.
TEST(Dispatch, IsaNamesTheTargetOfTheKernels) {
  const std::vector<T> x(16 * 3, T(0.5));
  const attend::ConstView<T, 4> view(x.data(), {1, 1, 3, 16});
  EXPECT_STREQ(Dispatch{}.isa, "");
  EXPECT_EQ(Dispatch{}.kernel, attend::Kernel::none);
  const Dispatch d = attend::Attend<T>(0.0, true).dispatch(view, view, view);
#ifdef ATTEND_DISPATCH
  const std::string isa = d.isa;
#if defined(__x86_64__)
  const std::vector<std::pair<std::string, std::string>> levels = {
      {"x86-64", "sse2"},         {"x86-64-v3", "avx2"}, {"x86-64-v4", "avx512"}, {"x86-64-v4-bf16", "avx512_bf16"},
      {"x86-64-v4-amx", "avx512_bf16_amx"}};
  bool known = false;
  for (const auto& [level, level_isa] : levels) known = known || isa == level_isa;
  EXPECT_TRUE(known) << isa;
  // A forced level is taken when the CPU runs it; otherwise the best one is, so the forced name
  // must match only where the CPU has it (ctest's environment sets it: .ci/dispatch.sh).
  if (const char* forced = std::getenv("ATTEND_ISA")) {
    for (const auto& [level, level_isa] : levels) {
      if (level != forced && level_isa != forced) continue;
      __builtin_cpu_init();
      const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
      const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
      const bool bf16 = v4 && __builtin_cpu_supports("avx512bf16");
      const bool runs = level == "x86-64" || (level == "x86-64-v3" && v3) || (level == "x86-64-v4" && v4) ||
                        (level == "x86-64-v4-bf16" && bf16) || (level == "x86-64-v4-amx" && bf16 && cpu_has_amx());
      if (runs) {
        EXPECT_EQ(isa, level_isa) << "ATTEND_ISA=" << forced;
      }
    }
  }
#endif
  EXPECT_EQ(isa, attend::Attend<T>(0.0, true).backward_dispatch(view, view, view).isa);
#else
  EXPECT_STREQ(d.isa, ATTEND_ISA_NAME);
  EXPECT_NE(std::string(ATTEND_ABI_NAME).find(d.isa), std::string::npos) << ATTEND_ABI_NAME;
#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512F__) && defined(__AMX_TILE__) && \
    defined(__AMX_BF16__)
  EXPECT_STREQ(d.isa, "avx512_bf16_amx");
#elif defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512F__)
  EXPECT_STREQ(d.isa, "avx512_bf16");
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
  EXPECT_STREQ(d.isa, "avx512");
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  EXPECT_STREQ(d.isa, "avx2");
#elif defined(__aarch64__)
  EXPECT_EQ(std::string(d.isa).rfind("neon", 0), 0u) << d.isa;
#endif
#endif
}

TEST(Dispatch, KernelNamesAreTheEnumeratorNames) {
  using attend::Kernel;
  EXPECT_STREQ(attend::kernel_name(Kernel::none), "none");
  EXPECT_STREQ(attend::kernel_name(Kernel::contraction), "contraction");
  EXPECT_STREQ(attend::kernel_name(Kernel::query_chunks), "query_chunks");
  EXPECT_STREQ(attend::kernel_name(Kernel::query_tiles), "query_tiles");
  EXPECT_STREQ(attend::kernel_name(Kernel::query_tiles_bf16_dot), "query_tiles_bf16_dot");
  EXPECT_STREQ(attend::kernel_name(Kernel::query_tiles_bf16_amx), "query_tiles_bf16_amx");
  EXPECT_STREQ(attend::kernel_name(Kernel::split_kv_decode), "split_kv_decode");
  EXPECT_STREQ(attend::kernel_name(static_cast<Kernel>(99)), "unknown");
}

// Dispatch::kernel names the kernel inside the path: split-KV decode for few queries per head (up
// to decode_max_queries, from DecodeTraits), query tiles above; bf16 products only for bf16 with an
// even D on AVX512_BF16.
TEST(Dispatch, KernelNamesTheKernelInsideThePath) {
  auto kernel = [](bool flash, FlashAttentionConfig config, Index Hq, Index Hkv, Index Nq) {
    const std::vector<T> q(static_cast<std::size_t>(Hq * Nq * 16), T(0.01));
    const std::vector<T> k(static_cast<std::size_t>(Hkv * 70 * 16), T(0.02));
    const attend::ConstView<T, 4> qv(q.data(), {1, Hq, Nq, 16}), kv(k.data(), {1, Hkv, 70, 16});
    return std::string(attend::kernel_name(attend::Attend<T>(0.0, flash, std::nullopt, config).dispatch(qv, kv, kv).kernel));
  };
#ifdef ATTEND_DISPATCH
  // The threshold is the chosen variant's (its DecodeTraits), not this translation unit's: decode
  // up to some Nq >= 1, tiles from there on.
  Index most = 0;
  while (most < 64 && kernel(true, {}, 4, 1, most + 1) == "split_kv_decode") ++most;
  ASSERT_GE(most, 1);
  ASSERT_LT(most, 64);
  for (Index nq = most + 1; nq <= 70; ++nq) EXPECT_EQ(kernel(true, {}, 4, 1, nq), "query_tiles") << nq;
#else
  const Index most = attend::detail::decode_max_queries<T>(16, 16);
  ASSERT_GE(most, 1) << "premise";
  EXPECT_EQ(kernel(true, {}, 4, 1, most), "split_kv_decode");
  EXPECT_EQ(kernel(true, {}, 4, 1, most + 1), "query_tiles");
#endif
  EXPECT_EQ(kernel(true, {}, 4, 1, 1), "split_kv_decode");
  EXPECT_EQ(kernel(true, {}, 1, 1, 17), "query_tiles");
  EXPECT_EQ(kernel(true, attend_test::only(Path::mem_efficient), 1, 1, 3), "query_chunks");
  EXPECT_EQ(kernel(false, {}, 1, 1, 3), "contraction");

  using B16 = Eigen::bfloat16;
  auto bf16_kernel = [](Index D) {
    const std::vector<B16> x(static_cast<std::size_t>(70 * D), B16(0.5f));
    const attend::ConstView<B16, 4> view(x.data(), {1, 1, 70, D});
    return std::string(attend::kernel_name(attend::Attend<B16>(0.0, true).dispatch(view, view, view).kernel));
  };
  // Where the kernels have AVX512_BF16, the CPU decides between fp32 and pair products
  // (bf16_pairs_pay), unless ATTEND_BF16_PRODUCTS forces one (ctest runs both: attend.bf16_*).
  const char* forced = std::getenv("ATTEND_BF16_PRODUCTS");
  const std::string products = forced != nullptr ? forced : "";
#ifdef ATTEND_DISPATCH
  const std::vector<B16> x(70 * 64, B16(0.5f));
  const attend::ConstView<B16, 4> view(x.data(), {1, 1, 70, 64});
  const std::string isa = attend::Attend<B16>(0.0, true).dispatch(view, view, view).isa;
  const bool has_pairs = isa == "avx512_bf16" || isa == "avx512_bf16_amx";
  const bool has_amx = isa == "avx512_bf16_amx";
#else
  const std::string isa = ATTEND_ISA_NAME;
  const bool has_pairs = ATTEND_HAVE_BF16_DOT;
  const bool has_amx = ATTEND_HAVE_AMX_BF16;
#endif
  // AMX tiles where the kernels have them and the CPU and OS allow them (bf16_amx_pays), unless
  // ATTEND_BF16_PRODUCTS names pairs or fp32; otherwise the choice below, as without AMX.
  if (has_amx && products != "pairs" && products != "fp32") {
    const std::string k = bf16_kernel(64);
    EXPECT_TRUE(k == "query_tiles_bf16_amx" || k == "query_tiles" || k == "query_tiles_bf16_dot") << k;
#ifndef ATTEND_DISPATCH
    if (attend::detail::bf16_amx_pays()) {
      EXPECT_EQ(k, "query_tiles_bf16_amx");
    }
#endif
    if (k == "query_tiles_bf16_amx") {
      EXPECT_EQ(bf16_kernel(63), "query_tiles");  // odd D: as the pairs, the last d has no partner
      return;
    }
  }
  if (!has_pairs || products == "fp32") {
    EXPECT_EQ(bf16_kernel(64), "query_tiles") << isa;
  } else if (products == "pairs") {
    EXPECT_EQ(bf16_kernel(64), "query_tiles_bf16_dot") << isa;
  } else {
    const std::string k = bf16_kernel(64);
    EXPECT_TRUE(k == "query_tiles" || k == "query_tiles_bf16_dot") << k;
#ifndef ATTEND_DISPATCH
    EXPECT_EQ(k, attend::detail::bf16_pairs_pay() ? "query_tiles_bf16_dot" : "query_tiles");
#endif
  }
  EXPECT_EQ(bf16_kernel(63), "query_tiles");  // odd D: a K row's last element has no partner
}

}  // namespace
