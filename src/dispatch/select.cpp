// The attend::dispatch component's selector, compiled for the baseline: it finds which of the
// compiled variants (ATTEND_VARIANTS: cmake/dispatch.cmake) the CPU and the operating system support,
// picks the best, or the one the environment variable ATTEND_ISA names, and hands its table to every
// call (detail/runtime.hpp). Chosen once, on first use, by a function-local static.
//
// ATTEND_ISA takes a level's name (x86-64, x86-64-v3, x86-64-v4, x86-64-v4-bf16, x86-64-v4-amx) or its
// instruction set's as Dispatch::isa reports it (sse2, avx2, avx512, avx512_bf16, avx512_bf16_amx). A level the machine cannot
// run is not taken: the best level it can is, with a warning on stderr.
#include <attend/detail/runtime.hpp>

#include <cstdio>   // std::fprintf
#include <cstdlib>  // std::getenv
#include <cstring>  // std::strcmp

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace attend {
namespace ATTEND_ABI_CAT(runtime_, ATTEND_ABI_VERSION) {
namespace {

// The variants compiled into the component, best last: ATTEND_VARIANTS is a list of X(entry, level).
#define X(entry, level) extern "C" const void* entry();
ATTEND_VARIANTS
#undef X

struct Variant {
  const Table* table;
  bool supported;
};

#if defined(__x86_64__) || defined(__i386__)
/// The CPU's features and the registers the OS saves (XCR0), as the x86-64 levels need them.
struct X86 {
  bool v3 = false, v4 = false, bf16 = false, amx = false;
};

unsigned long long xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

X86 detect_x86() {
  X86 f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = (c >> 12) & 1, movbe = (c >> 22) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
             f16c = (c >> 29) & 1;
  if (!osxsave) return f;
  const unsigned long long x = xcr0();
  const bool ymm = (x & 0x6) == 0x6;    // SSE and AVX state
  const bool zmm = (x & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM state
  unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
  if (!__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7)) return f;
  const bool avx2 = (b7 >> 5) & 1, bmi1 = (b7 >> 3) & 1, bmi2 = (b7 >> 8) & 1;
  unsigned a81 = 0, b81 = 0, c81 = 0, d81 = 0;
  const bool lzcnt = __get_cpuid(0x80000001u, &a81, &b81, &c81, &d81) && ((c81 >> 5) & 1);
  f.v3 = ymm && avx && avx2 && fma && f16c && bmi1 && bmi2 && lzcnt && movbe;
  const bool avx512f = (b7 >> 16) & 1, avx512dq = (b7 >> 17) & 1, avx512cd = (b7 >> 28) & 1,
             avx512bw = (b7 >> 30) & 1, avx512vl = (b7 >> 31) & 1;
  f.v4 = f.v3 && zmm && avx512f && avx512dq && avx512cd && avx512bw && avx512vl;
  unsigned a71 = 0, b71 = 0, c71 = 0, d71 = 0;
  f.bf16 = f.v4 && __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71) && ((a71 >> 5) & 1);
  // AMX-BF16 and AMX-TILE (leaf 7 EDX bits 22, 24), and the tile state in XCR0 (TILECFG, TILEDATA:
  // bits 17, 18). Linux keeps those bits set and faults a process's first tile instruction unless it
  // asked for the state (arch_prctl), which the variant does itself, falling back where refused.
  f.amx = f.bf16 && ((d7 >> 22) & 1) && ((d7 >> 24) & 1) && (x & 0x60000) == 0x60000;
  return f;
}
#endif

/// Whether the machine runs the variant of `level`.
bool supports(const char* level) {
#if defined(__x86_64__) || defined(__i386__)
  static const X86 f = detect_x86();
  if (std::strcmp(level, "x86-64") == 0) return true;
  if (std::strcmp(level, "x86-64-v3") == 0) return f.v3;
  if (std::strcmp(level, "x86-64-v4") == 0) return f.v4;
  if (std::strcmp(level, "x86-64-v4-bf16") == 0) return f.bf16;
  if (std::strcmp(level, "x86-64-v4-amx") == 0) return f.amx;
  return false;
#else
  (void)level;
  return true;  // one variant: the target's own
#endif
}

const Table& choose() {
  Variant variants[] = {
#define X(entry, level) {static_cast<const Table*>(entry()), false},
      ATTEND_VARIANTS
#undef X
  };
  const Table* best = nullptr;
  for (Variant& v : variants) {
    v.supported = supports(v.table->level);
    if (v.supported) best = v.table;
  }
  if (best == nullptr) best = variants[0].table;  // the baseline always runs
  const char* want = std::getenv("ATTEND_ISA");
  if (want == nullptr || *want == '\0') return *best;
  for (const Variant& v : variants) {
    if (std::strcmp(want, v.table->level) != 0 && std::strcmp(want, v.table->isa) != 0) continue;
    if (v.supported) return *v.table;
    std::fprintf(stderr, "attend: ATTEND_ISA=%s: this machine cannot run %s; using %s\n", want, v.table->level,
                 best->level);
    return *best;
  }
  std::fprintf(stderr, "attend: ATTEND_ISA=%s names no compiled variant (", want);
  for (const Variant& v : variants) std::fprintf(stderr, " %s", v.table->level);
  std::fprintf(stderr, " ); using %s\n", best->level);
  return *best;
}

}  // namespace

const Table& table() {
  static const Table& chosen = choose();
  return chosen;
}

}  // namespace runtime_...
}  // namespace attend
