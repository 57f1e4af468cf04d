#ifndef ATTEND_DETAIL_BF16_DOT_HPP
#define ATTEND_DETAIL_BF16_DOT_HPP

// bf16 products with fp32 accumulation for the flash path's bf16 tiles (AVX512_BF16's vdpbf16ps).
//
// vdpbf16ps adds two bf16 products to each fp32 lane, c[i] += a[2i]·b[2i] + a[2i+1]·b[2i+1]: 32
// multiply-adds per instruction where an fp32 FMA does 16, at the same issue rate (Zen 4 and Sapphire
// Rapids). Both attention products are laid out so that the pair runs along the reduction:
//   S^T  = K · Q^T       (Bc x Br)  over d:    A pair (k[j][2c], k[j][2c+1]), read in place from K
//                                              B pair Qp[c][i] = (q[i][2c], q[i][2c+1])
//   O^T += V^T · P^T     (Dv x Br)  over keys: A pair Vp[c][e] = (v[2c][e], v[2c+1][e])
//                                              B pair Pp[c][i] = (p[2c][i], p[2c+1][i])
// so a broadcast of one 32-bit pair times a packet of 16 query pairs is one instruction, and the
// micro-kernel has the shape of the fp32 one (microkernel.hpp) with half as many reduction steps.
//
// Numerics: a product of two bf16 is exact in fp32, so S is the fp32 sum of exact products (the
// scale is applied to the fp32 result, never to q before rounding, where a scale such as 1/sqrt(128)
// would add an error of 2^-9·|s|). P is rounded to bf16 (relative error at most 2^-9) before P·V, as
// PyTorch's CPU flash kernel does for bf16 inputs; the row sums use the unrounded fp32 P. The
// instruction treats denormal inputs and results as 0, which changes only terms below 1e-38.

#include <cstdint>  // std::uint32_t, std::uint16_t
#include <cstring>  // std::memcpy

#include <Eigen/Core>

#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/microkernel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/tiles.hpp"

#if defined(EIGEN_VECTORIZE_AVX512) && defined(__AVX512BF16__) && defined(__AVX512BW__)
#define ATTEND_HAVE_BF16_DOT 1
#include <immintrin.h>
#else
#define ATTEND_HAVE_BF16_DOT 0
#endif

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace attend {
namespace detail {

/// Whether the flash path computes a T tile with bf16 products: T is bf16 and the target has
/// AVX512_BF16. Calls with an odd D take the fp32 tiles (a K row's last element has no partner).
template <typename T>
constexpr bool kBf16Dot = ATTEND_HAVE_BF16_DOT && std::is_same_v<T, Eigen::bfloat16>;

#if ATTEND_HAVE_BF16_DOT

struct Bf16DotTraits {
  static constexpr int kLanes = 16;                          ///< fp32 lanes (and bf16 pairs) per packet
  static constexpr int kBlockQ = KernelTraits<float>::kBlockQ;  ///< Br: queries per tile, along the lanes
  static constexpr int kBlockK = KernelTraits<float>::kBlockK;  ///< Bc: keys per tile
  static constexpr int kRegM = 6;                            ///< rows of accumulators
  static constexpr int kRegN = kBlockQ / kLanes;             ///< packets of accumulators per row
  static_assert(kBlockQ % kLanes == 0, "the query tile must be a whole number of packets");
  static_assert(kRegM * kRegN + kRegN + 1 <= 32, "6 x 4 accumulators, 4 B packets and a broadcast: 29 of 32 zmm");
  static_assert(kRegM * kRegN >= 12, "vdpbf16ps has 6 cycles of latency at 2 per cycle: 12 chains hide it");
};

/// Steps of the pair loop between two calls of a hook: kHookSteps values of k (hook_calls counts
/// them in values of k, so it holds for these blocks too).
constexpr Index kHookPairs = kHookSteps / 2;
static_assert(kHookPairs >= 1 && (kHookPairs & (kHookPairs - 1)) == 0, "the hook interval must be a power of two");

/// One bf16 pair (4 bytes, any alignment) broadcast to every lane.
EIGEN_ALWAYS_INLINE __m512bh bcast_pair(const unsigned char* p) {
  std::uint32_t x;
  std::memcpy(&x, p, sizeof x);
  return (__m512bh)_mm512_set1_epi32(static_cast<int>(x));
}

/// The epilogues: scores are overwritten and scaled; the output accumulator is overwritten (first key
/// tile) or rescaled and added to.
enum class Bf16Store { scaled, overwrite, rescale_add };

/// C (MR x 64) from Σ_c A(r, c) · B(c, :) over kc2 pairs; A(r, c) is the pair at a + r·a_rs + c·a_cs
/// (bytes), B is kc2 rows of pairs, ldb apart; C rows are ldc apart. rescale_add takes one factor per
/// column (ScaleBy::column: `factors` points at the block's first column) or per row (ScaleBy::row).
/// `step()` runs every kHookPairs pairs.
template <int MR, Bf16Store kStore, ScaleBy kScale = ScaleBy::column, typename Hook = NoHook>
EIGEN_ALWAYS_INLINE void bf16_micro_block(Index kc2, const unsigned char* a, Index a_rs, Index a_cs,
                                          const std::uint32_t* b, Index ldb, float* c, Index ldc, const float* factors,
                                          float scale, const Hook& step = {}) {
  constexpr int NR = Bf16DotTraits::kRegN;
  constexpr int L = Bf16DotTraits::kLanes;
  __m512 acc[MR][NR];
  ATTEND_UNROLL
  for (int r = 0; r < MR; ++r)
    ATTEND_UNROLL
    for (int n = 0; n < NR; ++n) acc[r][n] = _mm512_setzero_ps();
  for (Index cc = 0; cc < kc2; ++cc) {
    __m512bh bk[NR];
    ATTEND_UNROLL
    for (int n = 0; n < NR; ++n) bk[n] = (__m512bh)_mm512_loadu_si512(b + cc * ldb + n * L);
    const unsigned char* ac = a + cc * a_cs;
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r) {
      const __m512bh ar = bcast_pair(ac + r * a_rs);
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) acc[r][n] = _mm512_dpbf16_ps(acc[r][n], ar, bk[n]);
    }
    if ((cc & (kHookPairs - 1)) == kHookPairs - 1) step();  // every kHookSteps values of k, as in micro_block
  }
  if constexpr (kStore == Bf16Store::scaled) {
    const __m512 s = _mm512_set1_ps(scale);
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) _mm512_store_ps(c + r * ldc + n * L, _mm512_mul_ps(acc[r][n], s));
  } else if constexpr (kStore == Bf16Store::overwrite) {
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) _mm512_store_ps(c + r * ldc + n * L, acc[r][n]);
  } else {
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r) {
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) {
        float* cp = c + r * ldc + n * L;
        const __m512 al = kScale == ScaleBy::column ? _mm512_load_ps(factors + n * L) : _mm512_set1_ps(factors[r]);
        _mm512_store_ps(cp, _mm512_fmadd_ps(_mm512_load_ps(cp), al, acc[r][n]));
      }
    }
  }
}

/// C (m x Br) = scale · A · B (scaled), A · B (overwrite) or col_scale ∘ C + A · B (rescale_add), A (m x kc2 pairs)
/// through byte strides, B (kc2 x Br pairs). Rows past a multiple of 6 take a narrower block.
/// `step()` runs inside each full register block every kHookPairs pairs, as in gemm_panel.
template <Bf16Store kStore, typename Hook = NoHook>
void bf16_gemm_panel(Index m, Index kc2, const unsigned char* a, Index a_rs, Index a_cs, const std::uint32_t* b,
                     float* c, const float* col_scale, float scale, Hook step = {}) {
  constexpr int MR = Bf16DotTraits::kRegM;
  constexpr Index ld = Bf16DotTraits::kBlockQ;
  for_register_rows<MR>(m, [&](auto rows, Index r0) ATTEND_INLINE_LAMBDA {
    constexpr int R = decltype(rows)::value;
    const unsigned char* ar = a + r0 * a_rs;
    if constexpr (R == MR) {
      bf16_micro_block<R, kStore>(kc2, ar, a_rs, a_cs, b, ld, c + r0 * ld, ld, col_scale, scale, step);
    } else {
      bf16_micro_block<R, kStore>(kc2, ar, a_rs, a_cs, b, ld, c + r0 * ld, ld, col_scale, scale);
    }
  });
}

/// C (m x n) = A · B (overwrite) or row_scale ∘ C + A · B (rescale_add), B (kc2 x n pairs, rows ldb
/// apart), C rows ldc apart; n a multiple of 64 (rows_fit<float>). The flash path's O = α ∘ O + P · V
/// with A = Pp read as (query, pair of keys) and B = Vp: O has a query per row, as in gemm_rows.
template <Bf16Store kStore, typename Hook = NoHook>
void bf16_gemm_rows(Index m, Index n, Index kc2, const unsigned char* a, Index a_rs, Index a_cs,
                    const std::uint32_t* b, Index ldb, float* c, Index ldc, const float* row_scale, Hook step = {}) {
  static_assert(kStore != Bf16Store::scaled, "bf16_gemm_rows computes the value product only");
  constexpr int MR = Bf16DotTraits::kRegM;
  constexpr Index kCols = Bf16DotTraits::kRegN * Bf16DotTraits::kLanes;
  for (Index n0 = 0; n0 < n; n0 += kCols) {
    for_register_rows<MR>(m, [&](auto rows, Index r0) ATTEND_INLINE_LAMBDA {
      constexpr int R = decltype(rows)::value;
      const unsigned char* ar = a + r0 * a_rs;
      float* cr = c + r0 * ldc + n0;
      const float* sr = row_scale == nullptr ? nullptr : row_scale + r0;
      if constexpr (R == MR) {
        bf16_micro_block<R, kStore, ScaleBy::row>(kc2, ar, a_rs, a_cs, b + n0, ldb, cr, ldc, sr, 1.0f, step);
      } else {
        bf16_micro_block<R, kStore, ScaleBy::row>(kc2, ar, a_rs, a_cs, b + n0, ldb, cr, ldc, sr, 1.0f);
      }
    });
  }
}

/// Qp (D/2 x Br pairs) of one query tile: qp[c * Br + ii] = (q[i0 + ii][2c], q[i0 + ii][2c + 1]),
/// 0 for the padding queries ii >= nq. A row of q is already D/2 pairs in memory, so this is a 32-bit
/// transpose, done 16 x 16 in registers. D is even.
inline void pack_query_pairs(const Problem<Eigen::bfloat16>& pb, Index b, Index h, Index i0, Index nq, std::uint32_t* qp) {
  using namespace Eigen::internal;
  constexpr Index Br = Bf16DotTraits::kBlockQ;
  constexpr int L = Bf16DotTraits::kLanes;
  const Index D2 = pb.D / 2;
  // Rows from one base and stride (bytes), as in pack_query_tile.
  const Index qs = pb.q.stride(2) * static_cast<Index>(sizeof(Eigen::bfloat16));
  for (Index ii0 = 0; ii0 < Br; ii0 += L) {
    const Index rows = std::max<Index>(0, std::min<Index>(L, nq - ii0));
    const auto* q0 = rows > 0 ? reinterpret_cast<const unsigned char*>(&pb.q(b, h, i0 + ii0, 0)) : nullptr;
    auto row = [&](Index r) { return q0 + r * qs; };
    Index c0 = 0;
    for (; c0 + L <= D2; c0 += L) {
      PacketBlock<Packet16f, L> blk;
      if (rows == L) {
        for (int r = 0; r < L; ++r) blk.packet[r] = _mm512_castsi512_ps(_mm512_loadu_si512(row(r) + 4 * c0));
      } else {
        for (int r = 0; r < L; ++r)
          blk.packet[r] = r < rows ? _mm512_castsi512_ps(_mm512_loadu_si512(row(r) + 4 * c0)) : _mm512_setzero_ps();
      }
      transpose_block(blk);
      for (int r = 0; r < L; ++r) _mm512_store_ps(reinterpret_cast<float*>(qp + (c0 + r) * Br + ii0), blk.packet[r]);
    }
    for (; c0 < D2; ++c0) {
      for (Index r = 0; r < L; ++r) {
        std::uint32_t x = 0;
        if (r < rows) std::memcpy(&x, row(r) + 4 * c0, sizeof x);
        qp[c0 * Br + ii0 + r] = x;
      }
    }
  }
}

/// Pp (ceil(nk/2) x Br pairs): P^T (nk x Br fp32) rounded to bf16 (nearest even) and interleaved by
/// pairs of keys; an odd last key is paired with 0.
inline void pack_probability_pairs(const float* pt, Index nk, std::uint32_t* pp) {
  constexpr Index Br = Bf16DotTraits::kBlockQ;
  constexpr int L = Bf16DotTraits::kLanes;
  // cvtne2ps2bf16(r1, r0) holds r0's 16 values then r1's; word 2i of a pair packet is r0[i], 2i+1 is r1[i].
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                              21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (Index c = 0; 2 * c < nk; ++c) {
    const float* r0 = pt + 2 * c * Br;
    const bool odd = 2 * c + 1 == nk;
    for (Index n = 0; n < Br; n += L) {
      const __m512 x0 = _mm512_load_ps(r0 + n);
      const __m512 x1 = odd ? _mm512_setzero_ps() : _mm512_load_ps(r0 + Br + n);
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
      _mm512_store_si512(pp + c * Br + n, _mm512_permutexvar_epi16(interleave, both));
    }
  }
}

/// Whether a bf16 is Inf or NaN (all exponent bits set).
EIGEN_ALWAYS_INLINE bool bf16_nonfinite(std::uint16_t bits) { return (bits & 0x7f80u) == 0x7f80u; }

/// Vp (ceil(nk/2) x Dv pairs) of a value tile: vp[c * Dv + e] = (v[2c][e], v[2c + 1][e]), an odd last
/// key paired with 0. With `finite_only`, non-finite values are stored as 0 (the careful re-run,
/// zero_weights.hpp); returns whether any value was non-finite then.
inline bool pack_value_pairs(const Eigen::bfloat16* v, Index vs, Index nk, Index Dv, std::uint32_t* vp, bool finite_only) {
  constexpr int L = Bf16DotTraits::kLanes;
  // Words of two rows a (index w) and b (index 32 + w): pairs (a[e], b[e]) for e = 0..15 and 16..31.
  const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37, 5,
                                      36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
  bool dirty = false;
  for (Index c = 0; 2 * c < nk; ++c) {
    const auto* a = reinterpret_cast<const std::uint16_t*>(v + 2 * c * vs);
    const bool odd = 2 * c + 1 == nk;
    const auto* bb = odd ? nullptr : reinterpret_cast<const std::uint16_t*>(v + (2 * c + 1) * vs);
    std::uint32_t* out = vp + c * Dv;
    Index e = 0;
    if (!finite_only) {
      for (; e + 2 * L <= Dv; e += 2 * L) {
        const __m512i xa = _mm512_loadu_si512(a + e);
        const __m512i xb = odd ? _mm512_setzero_si512() : _mm512_loadu_si512(bb + e);
        _mm512_storeu_si512(out + e, _mm512_permutex2var_epi16(xa, lo, xb));
        _mm512_storeu_si512(out + e + L, _mm512_permutex2var_epi16(xa, hi, xb));
      }
    }
    for (; e < Dv; ++e) {
      std::uint16_t x0 = a[e], x1 = odd ? std::uint16_t(0) : bb[e];
      if (finite_only) {
        if (bf16_nonfinite(x0)) dirty = true, x0 = 0;
        if (bf16_nonfinite(x1)) dirty = true, x1 = 0;
      }
      out[e] = static_cast<std::uint32_t>(x0) | (static_cast<std::uint32_t>(x1) << 16);
    }
  }
  return dirty;
}

/// Probability of pair row c, element `second` (0 or 1), query ii, back in fp32.
EIGEN_ALWAYS_INLINE float unpack_probability(const std::uint32_t* pp, Index j, Index ii) {
  const std::uint32_t pair = pp[(j / 2) * Bf16DotTraits::kBlockQ + ii];
  const std::uint32_t bits = (j % 2 == 0 ? pair & 0xffffu : pair >> 16) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

#endif  // ATTEND_HAVE_BF16_DOT

}  // namespace detail
}  // namespace attend

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_DETAIL_BF16_DOT_HPP
