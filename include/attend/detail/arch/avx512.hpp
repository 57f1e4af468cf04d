#ifndef ATTEND_DETAIL_ARCH_AVX512_HPP
#define ATTEND_DETAIL_ARCH_AVX512_HPP

// The AVX-512 forms of the primitives (arch/primitives.hpp declares each one and holds its generic
// form). Included by primitives.hpp; empty unless the target has AVX-512 (ATTEND_ARCH_AVX512).

#include "attend/detail/arch/isa.hpp"

#if ATTEND_ARCH_AVX512
#include <immintrin.h>

#include <cstdint>      // std::uintptr_t
#include <type_traits>  // std::is_same_v

#include <Eigen/Core>

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

// PacketBlock<__m512, 16> drops __m512's alignment attribute in the template argument, which GCC
// reports; Eigen's own uses of PacketBlock are compiled under the same suppression.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {
namespace avx512 {

/// 16 bf16 or half values to float. Exact: bf16 is the top half of a float; vcvtph2ps converts every
/// half, subnormals included. Eigen 3.4 has the half packet conversion in software under GCC (its
/// EIGEN_HAS_FP16_C test reads `!defined(EIGEN_COMP_CLANG)`, which is always false), about 20
/// instructions per value: 43% of a flash f16 call at long4k before this.
template <typename T>
EIGEN_ALWAYS_INLINE __m512 load16_as_float(const T* src) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  if constexpr (std::is_same_v<T, Eigen::half>) {
    return _mm512_cvtph_ps(x);
  } else {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16));
  }
}

/// 16 floats rounded to bf16 or half and stored, bit-identical to Eigen's scalar conversions: round to
/// nearest even, overflow to Inf, subnormals kept; NaN stays NaN. `stream`: a non-temporal store
/// where dst is 32-byte aligned.
template <typename T>
EIGEN_ALWAYS_INLINE void store16_from_float(T* dst, __m512 x, bool stream) {
  __m256i r;
  if constexpr (std::is_same_v<T, Eigen::half>) {
    r = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    // bits + 0x7fff + (bit 16) then >> 16 rounds to nearest even; NaN becomes a quiet NaN of its sign,
    // as Eigen's float_to_bfloat16_rtne does.
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512i quiet = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x8000)),
                                          _mm512_set1_epi32(0x7fc0));
    rounded = _mm512_mask_mov_epi32(rounded, nan, quiet);
    r = _mm512_cvtepi32_epi16(rounded);
  }
  if (stream && (reinterpret_cast<std::uintptr_t>(dst) & 31) == 0) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst), r);
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), r);
  }
}

/// 16 floats stored, non-temporally with `stream` where dst is 64-byte aligned.
EIGEN_ALWAYS_INLINE void store16_float(float* dst, __m512 x, bool stream) {
  if (stream && (reinterpret_cast<std::uintptr_t>(dst) & 63) == 0) {
    _mm512_stream_ps(dst, x);
  } else {
    _mm512_storeu_ps(dst, x);
  }
}

/// Transposes the 16 x 16 floats of b in registers: 64 two-source shuffles in four rounds (32-bit,
/// 64-bit, then two of 128-bit lanes). Eigen 3.4's ptranspose for this block goes through 256-bit
/// halves, about 150 instructions; the query pack is 16 such blocks per 64 x 64 tile.
EIGEN_ALWAYS_INLINE void transpose16(Eigen::internal::PacketBlock<__m512, 16>& b) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // t[2i], t[2i+1]: rows 2i, 2i+1 interleaved by element
    t[2 * i] = _mm512_unpacklo_ps(b.packet[2 * i], b.packet[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(b.packet[2 * i], b.packet[2 * i + 1]);
  }
  // u[4i + j], 128-bit lane l: column 4l + j of rows 4i .. 4i + 3
  for (int i = 0; i < 4; ++i) {
    const __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  // Column 4l + j gathers lane l of u[j], u[4 + j], u[8 + j], u[12 + j]: a 4 x 4 transpose of lanes.
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);      // lanes a0 a2 b0 b2
    const __m512 v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);      // a1 a3 b1 b3
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);  // c0 c2 d0 d2
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);  // c1 c3 d1 d3
    b.packet[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);                   // a0 b0 c0 d0
    b.packet[4 + j] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    b.packet[8 + j] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    b.packet[12 + j] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

/// exp(x), exactly 0 for x = -inf, NaN stays NaN (see exp_or_zero in primitives.hpp).
/// exp(x) = 2^n · e^r with n = round(x · log2 e) and r = x - n · ln 2 in [-ln2/2, ln2/2], reduced with
/// ln 2 split in two (Cody & Waite) so r stays exact for |x| up to ~100; e^r from Cephes' expf
/// minimax polynomial (about 1 ulp); 2^n applied by vscalefps, which also rounds 2^-200 to exactly 0.
/// About 13 instructions against about 25 for pexp with the generic masking: the exp is a third of
/// the softmax, and the softmax 15% of a flash tile at D = 64.
EIGEN_ALWAYS_INLINE __m512 exp_or_zero(__m512 x) {
  // max(-138.6, x): vmaxps returns its second operand when one is NaN, so NaN survives; -inf and
  // anything below -138.6 = -200 · ln 2 lands on n = -200, which vscalefps turns into exactly 0.
  const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-138.6f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);  // ln 2, high part (exact in n·hi)
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);       // ln 2, low part
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

/// Whether any of x[0, n / (2 · 16) · 32) is NaN, for float or double, and how far it scanned. One
/// unordered compare tests two packets, and the masks are OR-ed (1 cycle each): the generic loop is a
/// chain of 3-cycle adds, 2% of a tile at N = 62 (4096 outputs).
template <typename Acc>
EIGEN_ALWAYS_INLINE bool any_nan_pairs(const Acc* x, Index n, Index& scanned) {
  constexpr Index L = 64 / static_cast<Index>(sizeof(Acc));
  unsigned nan_mask = 0;
  Index i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    if constexpr (std::is_same_v<Acc, float>) {
      nan_mask |= _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + L), _CMP_UNORD_Q);
    } else {
      nan_mask |= _mm512_cmp_pd_mask(_mm512_loadu_pd(x + i), _mm512_loadu_pd(x + i + L), _CMP_UNORD_Q);
    }
  }
  scanned = i;
  return nan_mask != 0;
}

/// The first n (< 16) floats at p, the other lanes 0; or stored, lanes n and up left alone.
EIGEN_ALWAYS_INLINE __m512 load_partial(const float* p, Index n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
}
EIGEN_ALWAYS_INLINE void store_partial(float* p, __m512 x, Index n) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), x);
}

/// GCC folds a load used by several FMAs into each of them as a memory operand (one load per use),
/// and Zen 4 issues one 512-bit load a cycle: the decode's 4 x 4 blocks would do 20 loads for 16
/// FMAs. An empty asm that claims to modify the loaded packets pins each one in a register.
EIGEN_ALWAYS_INLINE void keep_in_registers(__m512& a, __m512& b, __m512& c, __m512& d) {
#if defined(__GNUC__)
  __asm__("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d));
#else
  (void)a, (void)b, (void)c, (void)d;
#endif
}

/// The 16 accumulators of a 4 x 4 score block (acc[r][c]: row r, key c, partial sums along the
/// lanes) reduced to 16 scores, times `scale` unless it is 1, lane r of the result holding row r's 4
/// keys; stored for rows < RB, s[r * lds + c]. 18 shuffles and 15 adds for 16 scores, where 16
/// horizontal sums take about 12 instructions each.
template <int RB>
EIGEN_ALWAYS_INLINE void store_score_block(__m512 (&acc)[4][4], float scale, float* s, Index lds) {
  // Within each 128-bit lane: u[r] = [Σ acc[r][0], Σ acc[r][1], Σ acc[r][2], Σ acc[r][3]] over the
  // lane's 4 elements.
  __m512 u[4];
  for (int r = 0; r < 4; ++r) {
    if (r >= RB) {
      u[r] = _mm512_setzero_ps();
      continue;
    }
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(acc[r][0], acc[r][1]), _mm512_unpackhi_ps(acc[r][0], acc[r][1]));
    const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(acc[r][2], acc[r][3]), _mm512_unpackhi_ps(acc[r][2], acc[r][3]));
    u[r] = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Across the 4 lanes: lane r of z = row r's 4 scores.
  const __m512 x01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 x23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 z = _mm512_add_ps(_mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(3, 1, 3, 1)));
  if (scale != 1.0f) z = _mm512_mul_ps(z, _mm512_set1_ps(scale));
  _mm_storeu_ps(s, _mm512_castps512_ps128(z));
  if constexpr (RB > 1) _mm_storeu_ps(s + lds, _mm512_extractf32x4_ps(z, 1));
  if constexpr (RB > 2) _mm_storeu_ps(s + 2 * lds, _mm512_extractf32x4_ps(z, 2));
  if constexpr (RB > 3) _mm_storeu_ps(s + 3 * lds, _mm512_extractf32x4_ps(z, 3));
}

}  // namespace avx512
}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_ARCH_AVX512
#endif  // ATTEND_DETAIL_ARCH_AVX512_HPP
