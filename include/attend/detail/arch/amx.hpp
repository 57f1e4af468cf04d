#ifndef ATTEND_DETAIL_ARCH_AMX_HPP
#define ATTEND_DETAIL_ARCH_AMX_HPP

// bf16 products on AMX tiles (AMX-TILE, AMX-BF16: Sapphire Rapids and later Xeons): the tile
// configuration, whether the CPU and the OS let this process use them, and the one tiled product the
// flash forward's AmxTiles policy (kernel/products.hpp) takes for both of its products.
//
// tdpbf16ps C += A · B on tiles: C is 16 rows x 16 fp32, A 16 rows x 16 bf16 pairs (32 values along
// the reduction, 64 bytes a row), B 16 rows of 16 pairs (row k holds, for each of C's 16 columns, the
// pair of reduction values 2k, 2k + 1): 16 · 16 · 32 = 8192 multiply-adds per instruction, where
// vdpbf16ps does 32. The pair layout is arch/avx512_bf16.hpp's:
//   S^T = K · Q^T  (Bc x Br)  A = 16 K rows x 32 d, read in place (K's rows are already d pairs)
//                             B = Qp (pairs of d by queries), as Bf16Pairs::pack_query_pairs packs it
//   O   = P · V     (Br x Dv) A = P by pairs of keys (Pp transposed as 32-bit words), B = Vp in place
//   O^T = V^T · P^T (Dv x Br) A = V^T by pairs of keys (Vp transposed as 32-bit words)
//                             B = Pp (pairs of keys by queries), as pack_probability_pairs packs it
// (O where the flash skeleton keeps O by rows, O^T elsewhere and in the careful re-run.)
// Numerics are the pairs kernel's: products of bf16 are exact in fp32, sums in fp32, denormal inputs
// and results read as 0.
//
// Before the first tile instruction a process must ask Linux for the tile state (arch_prctl
// ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA; Linux 5.16 and later), or the instruction faults. Each
// thread must load a tile configuration (ldtilecfg) before using the tiles; it is per thread and any
// other code on the thread may change it, so AmxTiles loads it at the start of every query tile (the
// smallest benchmarked tile, bsr_freq's 62 x 62 at D 64, is 1 MFLOP of products) and releases the
// tiles when its worker is done, so that the thread no longer carries 8 KiB of tile state through
// context switches.
//
// Included by arch/primitives.hpp; empty unless the target has AMX (ATTEND_HAVE_AMX_BF16).

#include "attend/detail/arch/isa.hpp"

#if ATTEND_HAVE_AMX_BF16
#include <cpuid.h>  // __get_cpuid, __get_cpuid_count
#include <immintrin.h>

#include <cstdint>  // std::uint8_t, std::uint16_t
#include <cstdlib>  // std::getenv
#include <cstring>  // std::strcmp

#if defined(__linux__)
#include <sys/syscall.h>  // SYS_arch_prctl
#include <unistd.h>       // syscall
#endif

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {
namespace amx {

/// Tile geometry: 16 rows of 64 bytes (16 fp32 or 32 bf16), the largest palette 1 allows.
constexpr int kRows = 16;
constexpr int kRowBytes = 64;
constexpr int kPairsPerRow = kRowBytes / 4;  ///< bf16 pairs in an A row, or C columns

/// The 64-byte operand of ldtilecfg (palette 1): every one of the 8 tiles 16 rows x 64 bytes. Partial
/// tiles are never configured: AmxTiles pads its packed operands with zeros instead, so that one
/// configuration serves every shape.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved0[14] = {};
  std::uint16_t colsb[16] = {kRowBytes, kRowBytes, kRowBytes, kRowBytes, kRowBytes, kRowBytes, kRowBytes, kRowBytes};
  std::uint8_t rows[16] = {kRows, kRows, kRows, kRows, kRows, kRows, kRows, kRows};
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

/// Loads the tile configuration on the calling thread. A function-local constant, not a namespace-scope
/// one: the dispatch component forbids static initializers in its variant objects.
inline void configure() {
  static constexpr TileConfig config{};
  _tile_loadconfig(&config);
}
/// Marks the calling thread's tiles unused (tilerelease), returning them to their initial state.
inline void release() { _tile_release(); }

/// Whether this process may run tile instructions: CPUID says AMX-TILE and AMX-BF16 (leaf 7, EDX bits
/// 24 and 22), Linux granted the tile state to the process (arch_prctl, once per process), and the OS
/// enabled it in XCR0 (bits 17 TILECFG and 18 TILEDATA). Asked once per process; any failure answers
/// false, and the caller keeps the kernel it would have taken without AMX.
inline bool usable() {
  static const bool ok = [] {
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0 || eax < 7) return false;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 27)) == 0) return false;  // OSXSAVE
    __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx);
    if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return false;
#if defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM (asm/prctl.h)
    constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
#endif
    unsigned int xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    constexpr unsigned int kTileState = (1u << 17) | (1u << 18);
    return (xcr0_lo & kTileState) == kTileState;
  }();
  return ok;
}

/// C [+]= A · B over `steps` reduction steps of 32 values (16 pairs), C being mb x nb tiles of 16 x 16
/// fp32. A tile (m, s) starts at byte a + 16·m·a_rs + 64·s (rows a_rs bytes apart), B tile (s, n) at
/// b + 16·s·b_rs + 64·n, C tile (m, n) at c + 16·m·c_rs + 64·n. With kLoadC the tiles of C start from
/// memory, else from 0. nb is even.
///
/// 2 x 2 blocks of C (tiles 0-3) with two A tiles (4, 5) and two B tiles (6, 7): 4 loads for 4
/// products per step, where a row of 4 C tiles with one A would need 5. An odd last row of C tiles
/// takes a 1 x 2 block. Each C element is the same chain of tdpbf16ps over the steps in order,
/// whatever the block, so the blocking never changes a result.
/// `hook()` runs after each block (the flash skeleton's prefetch of its next tile: blocks(mb, nb) calls).
template <bool kLoadC, typename Hook>
inline void gemm(Index mb, Index nb, Index steps, const unsigned char* a, Index a_rs, const unsigned char* b,
                 Index b_rs, unsigned char* c, Index c_rs, Hook& hook) {
  const Index a_tile = kRows * a_rs, b_tile = kRows * b_rs, c_tile = kRows * c_rs;
  Index m = 0;
  for (; m + 2 <= mb; m += 2) {
    const unsigned char* a0 = a + m * a_tile;
    const unsigned char* a1 = a0 + a_tile;
    for (Index n = 0; n < nb; n += 2) {
      unsigned char* c00 = c + m * c_tile + n * kRowBytes;
      unsigned char* c10 = c00 + c_tile;
      if (kLoadC) {
        _tile_loadd(0, c00, c_rs);
        _tile_loadd(1, c00 + kRowBytes, c_rs);
        _tile_loadd(2, c10, c_rs);
        _tile_loadd(3, c10 + kRowBytes, c_rs);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (Index s = 0; s < steps; ++s) {
        const unsigned char* bs = b + s * b_tile + n * kRowBytes;
        _tile_loadd(4, a0 + s * kRowBytes, a_rs);
        _tile_loadd(6, bs, b_rs);
        _tile_loadd(7, bs + kRowBytes, b_rs);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + s * kRowBytes, a_rs);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, c00, c_rs);
      _tile_stored(1, c00 + kRowBytes, c_rs);
      _tile_stored(2, c10, c_rs);
      _tile_stored(3, c10 + kRowBytes, c_rs);
      hook();
    }
  }
  if (m < mb) {
    const unsigned char* a0 = a + m * a_tile;
    for (Index n = 0; n < nb; n += 2) {
      unsigned char* c00 = c + m * c_tile + n * kRowBytes;
      if (kLoadC) {
        _tile_loadd(0, c00, c_rs);
        _tile_loadd(1, c00 + kRowBytes, c_rs);
      } else {
        _tile_zero(0);
        _tile_zero(1);
      }
      for (Index s = 0; s < steps; ++s) {
        const unsigned char* bs = b + s * b_tile + n * kRowBytes;
        _tile_loadd(4, a0 + s * kRowBytes, a_rs);
        _tile_loadd(6, bs, b_rs);
        _tile_loadd(7, bs + kRowBytes, b_rs);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
      }
      _tile_stored(0, c00, c_rs);
      _tile_stored(1, c00 + kRowBytes, c_rs);
      hook();
    }
  }
}

/// The blocks (hook calls) of a gemm of mb x nb tiles.
constexpr Index blocks(Index mb, Index nb) { return (mb + 1) / 2 * (nb / 2); }

/// c[r · ld + i] *= s for r < rows, i < cols (cols a multiple of 16, rows 64-byte aligned): the
/// scale of the scores, applied to the fp32 sums as the pairs kernel does (never to q before rounding).
inline void scale_rows(float* c, Index rows, Index ld, Index cols, float s) {
  const __m512 f = _mm512_set1_ps(s);
  for (Index r = 0; r < rows; ++r)
    for (Index i = 0; i < cols; i += 16) _mm512_store_ps(c + r * ld + i, _mm512_mul_ps(_mm512_load_ps(c + r * ld + i), f));
}

/// c[r · ld + i] *= f[r] for r < rows, i < cols (cols a multiple of 16, rows 64-byte aligned): the
/// online softmax's rescale of O kept by rows, one factor per query (row).
inline void scale_rows_by(float* c, Index rows, Index ld, Index cols, const float* f) {
  for (Index r = 0; r < rows; ++r) {
    const __m512 fr = _mm512_set1_ps(f[r]);
    for (Index i = 0; i < cols; i += 16) _mm512_store_ps(c + r * ld + i, _mm512_mul_ps(_mm512_load_ps(c + r * ld + i), fr));
  }
}

/// c[r · ld + i] *= f[i] for r < rows, i < cols (cols a multiple of 16, rows 64-byte aligned): the online
/// softmax's rescale of O^T, one factor per query (column), before the tiles add the new key tile.
inline void scale_columns(float* c, Index rows, Index ld, Index cols, const float* f) {
  for (Index i = 0; i < cols; i += 16) {
    const __m512 fi = _mm512_loadu_ps(f + i);
    for (Index r = 0; r < rows; ++r) _mm512_store_ps(c + r * ld + i, _mm512_mul_ps(_mm512_load_ps(c + r * ld + i), fi));
  }
}

}  // namespace amx

/// Whether the flash forward's bf16 tiles take AMX products (AmxTiles): where this process can run
/// them (amx::usable), unless ATTEND_BF16_PRODUCTS names another choice (`pairs` or `fp32`). `amx`
/// takes them where usable and otherwise leaves the choice to bf16_pairs_pay, silently. Read once per
/// process: the kernel a call takes, its workspace size and Dispatch::kernel all ask here.
/// Measured in docs/perf-notes.md (one Sapphire Rapids thread, flash bf16).
inline bool bf16_amx_pays() {
  static const bool pay = [] {
    if (const char* forced = std::getenv("ATTEND_BF16_PRODUCTS")) {
      if (std::strcmp(forced, "pairs") == 0 || std::strcmp(forced, "fp32") == 0) return false;
    }
    return amx::usable();
  }();
  return pay;
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_HAVE_AMX_BF16
#endif  // ATTEND_DETAIL_ARCH_AMX_HPP
