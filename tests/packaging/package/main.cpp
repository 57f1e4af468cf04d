// A consumer of attend: one small attention whose answer is known, forward and backward, on every
// path, plus the version. Built by tests/packaging/CMakeLists.txt once per way of getting attend
// (find_package, add_subdirectory, FetchContent, pkg-config, and linking attend::dispatch); exits
// non-zero on any mismatch, and 77 (ctest's skip) when ATTEND_EXPECT_LEVEL names a level this CPU
// cannot run.
#include <attend/attend.hpp>

#include <cmath>    // std::abs, std::isfinite
#include <cstdio>   // std::printf, std::fprintf
#include <cstdlib>  // std::getenv
#include <cstring>  // std::strcmp
#include <string>   // std::string, std::to_string
#if defined(ATTEND_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>  // __get_cpuid_count
#endif

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "attend_consumer: FAILED: %s\n", what.c_str());
    ++failures;
  }
}

#ifdef ATTEND_DISPATCH
// attend::dispatch: the instruction set Dispatch::isa reports for a level ATTEND_ISA forces, or
// nullptr where this CPU cannot run it (and the selector falls back to another).
const char* isa_of_level(const char* level) {
  struct Level {
    const char* name;
    const char* isa;
  };
  static const Level levels[] = {{"x86-64", "sse2"},
                                 {"x86-64-v3", "avx2"},
                                 {"x86-64-v4", "avx512"},
                                 {"x86-64-v4-bf16", "avx512_bf16"},
                                 {"x86-64-v4-amx", "avx512_bf16_amx"}};
  for (const Level& l : levels) {
    if (std::strcmp(level, l.name) != 0) continue;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    const bool bf16 = v4 && __builtin_cpu_supports("avx512bf16");
    // AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22) and their state in XCR0 (bits 17, 18).
    unsigned a = 0, b = 0, c = 0, d = 0, lo = 0, hi = 0;
    const bool amx_cpu = __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 22) & 1) && ((d >> 24) & 1);
    if (amx_cpu) __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;  // XCR0's upper half: no state bit there is needed
    const bool runs[] = {true, v3, v4, bf16, bf16 && amx_cpu && (lo & 0x60000u) == 0x60000u};
    if (!runs[&l - levels]) return nullptr;
#endif
    return l.isa;
  }
  return nullptr;
}
#endif

}  // namespace

int main() {
  const std::string version = std::to_string(ATTEND_VERSION_MAJOR) + "." + std::to_string(ATTEND_VERSION_MINOR) +
                              "." + std::to_string(ATTEND_VERSION_PATCH);
#ifdef ATTEND_EXPECTED_VERSION
  check(version == ATTEND_EXPECTED_VERSION,
        "headers say version " + version + ", the package says " + ATTEND_EXPECTED_VERSION);
#endif

  // q (1, 2, 3, 4), k (1, 2, 5, 4), v (1, 2, 5, 2). Every key row of v is the same within a head, so
  // whatever the weights, each output row equals that row: (h + 1, -(h + 1)).
  const attend::Index B = 1, H = 2, Nq = 3, Nk = 5, D = 4, Dv = 2;
  attend::Tensor<float, 4> q(B, H, Nq, D), k(B, H, Nk, D), v(B, H, Nk, Dv);
  for (attend::Index i = 0; i < q.size(); ++i) q.data()[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  for (attend::Index i = 0; i < k.size(); ++i) k.data()[i] = 0.2f * static_cast<float>(i % 5) - 0.4f;
  for (attend::Index h = 0; h < H; ++h)
    for (attend::Index j = 0; j < Nk; ++j) {
      v(0, h, j, 0) = static_cast<float>(h + 1);
      v(0, h, j, 1) = -static_cast<float>(h + 1);
    }

  for (attend::Path path : {attend::Path::math, attend::Path::mem_efficient, attend::Path::flash}) {
    attend::FlashAttentionConfig only;  // exactly one path enabled: that path or an error
    only.enable_flash = path == attend::Path::flash;
    only.enable_mem_efficient = path == attend::Path::mem_efficient;
    only.enable_math = path == attend::Path::math;
    const attend::Attend<float> attn(/*dropout=*/0.0, /*flash=*/true, /*scale=*/{}, only);

    attend::Tensor<float, 3> lse(B, H, Nq);
    attend::Dispatch dispatch;
    attend::CallOptions<float> options;
    options.causal = attend::Causal::bottom_right;
    options.lse = lse;
    options.dispatch = &dispatch;
    const attend::Tensor<float, 4> out = attn(q, k, v, options);

    const std::string name = attend::path_name(path);
    check(dispatch.path == path, name + ": ran " + attend::path_name(dispatch.path));
    check(*dispatch.isa != '\0', name + ": Dispatch::isa is empty");
#ifdef ATTEND_DISPATCH
    if (const char* level = std::getenv("ATTEND_EXPECT_LEVEL")) {
      const char* want = isa_of_level(level);
      if (want == nullptr) {
        std::printf("attend_consumer: this CPU cannot run %s: skipped\n", level);
        return 77;
      }
      check(std::strcmp(dispatch.isa, want) == 0,
            name + ": ATTEND_ISA=" + level + " ran " + dispatch.isa + ", not " + want);
    }
#endif
    for (attend::Index h = 0; h < H; ++h)
      for (attend::Index i = 0; i < Nq; ++i) {
        const float want = static_cast<float>(h + 1);
        check(std::abs(out(0, h, i, 0) - want) <= 1e-6f * want && std::abs(out(0, h, i, 1) + want) <= 1e-6f * want,
              name + ": out(0, " + std::to_string(h) + ", " + std::to_string(i) + ", :) is wrong");
        check(std::isfinite(lse(0, h, i)), name + ": lse is not finite");
      }
    // Backward: each row of the weights sums to 1, so Σ_j dv(j, :) = Σ_i dout(i, :) whatever the
    // weights; and since every value row of a head is the same, dq = 0 (the output does not move).
    attend::Tensor<float, 4> dout(B, H, Nq, Dv);
    for (attend::Index i = 0; i < dout.size(); ++i) dout.data()[i] = 0.25f * static_cast<float>(i % 3) + 0.5f;
    const attend::Gradients<float> g = attn.backward(q, k, v, out, lse, dout, options);
    check(dispatch.path == path, name + ": the backward ran " + attend::path_name(dispatch.path));
    for (attend::Index h = 0; h < H; ++h)
      for (attend::Index c = 0; c < Dv; ++c) {
        float dv_sum = 0, dout_sum = 0;
        for (attend::Index j = 0; j < Nk; ++j) dv_sum += g.dv(0, h, j, c);
        for (attend::Index i = 0; i < Nq; ++i) dout_sum += dout(0, h, i, c);
        check(std::abs(dv_sum - dout_sum) <= 1e-5f * dout_sum, name + ": sum of dv(0, " + std::to_string(h) +
                                                                   ", :, " + std::to_string(c) + ") is wrong");
      }
    for (attend::Index i = 0; i < g.dq.size(); ++i)
      check(std::abs(g.dq.data()[i]) <= 1e-5f, name + ": dq is not 0");

    std::printf("attend %s: %s path (%s), out(0, 1, 2, :) = (%g, %g), lse(0, 1, 2) = %g, dv(0, 1, 4, 0) = %g\n",
                version.c_str(), name.c_str(), dispatch.isa, static_cast<double>(out(0, 1, 2, 0)),
                static_cast<double>(out(0, 1, 2, 1)), static_cast<double>(lse(0, 1, 2)),
                static_cast<double>(g.dv(0, 1, 4, 0)));
  }

  // Errors are attend::Error, and its message says where it came from.
  try {
    attend::Attend<float> bad(/*dropout=*/1.5);
    check(false, "dropout 1.5 was accepted");
  } catch (const attend::Error& e) {
    check(std::string(e.what()).rfind("attend: ", 0) == 0, std::string("error message: ") + e.what());
  }

  return failures == 0 ? 0 : 1;
}
