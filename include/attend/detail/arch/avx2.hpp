#ifndef ATTEND_DETAIL_ARCH_AVX2_HPP
#define ATTEND_DETAIL_ARCH_AVX2_HPP

// The AVX2 + FMA + F16C forms of the primitives (x86-64-v3; arch/primitives.hpp declares each one
// and holds its generic form). Included by primitives.hpp; empty unless the target is AVX2 without
// AVX-512 (ATTEND_ARCH_AVX2). The same shapes as arch/avx512.hpp, 8 lanes instead of 16.

#include "attend/detail/arch/isa.hpp"

#if ATTEND_ARCH_AVX2
#include <immintrin.h>

#include <cstdint>      // std::uintptr_t
#include <type_traits>  // std::is_same_v

#include <Eigen/Core>

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {
namespace avx2 {

/// 8 bf16 or half values to float. Exact: bf16 is the top half of a float (a 16-bit shift); F16C's
/// vcvtph2ps converts every half, subnormals included. Eigen 3.4's half packet conversion is in
/// software under GCC (see avx512::load16_as_float), about 20 instructions per value.
template <typename T>
EIGEN_ALWAYS_INLINE __m256 load8_as_float(const T* src) {
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  if constexpr (std::is_same_v<T, Eigen::half>) {
    return _mm256_cvtph_ps(x);
  } else {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16));
  }
}

/// 8 floats rounded to bf16 or half and stored, bit-identical to the AVX-512 form (round to nearest
/// even, overflow to Inf, subnormals kept; NaN stays NaN, bf16 NaN a quiet NaN of its sign).
/// `stream`: a non-temporal store where dst is 16-byte aligned.
template <typename T>
EIGEN_ALWAYS_INLINE void store8_from_float(T* dst, __m256 x, bool stream) {
  __m128i r;
  if constexpr (std::is_same_v<T, Eigen::half>) {
    r = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i high = _mm256_srli_epi32(bits, 16);
    const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_and_si256(high, _mm256_set1_epi32(0x8000)), _mm256_set1_epi32(0x7fc0));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    const __m256i words = _mm256_blendv_epi8(rounded, quiet, nan);  // each lane < 2^16
    r = _mm_packus_epi32(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
  }
  if (stream && (reinterpret_cast<std::uintptr_t>(dst) & 15) == 0) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), r);
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), r);
  }
}

/// 8 floats stored, non-temporally with `stream` where dst is 32-byte aligned.
EIGEN_ALWAYS_INLINE void store8_float(float* dst, __m256 x, bool stream) {
  if (stream && (reinterpret_cast<std::uintptr_t>(dst) & 31) == 0) {
    _mm256_stream_ps(dst, x);
  } else {
    _mm256_storeu_ps(dst, x);
  }
}

/// exp(x), exactly 0 for x = -inf, NaN stays NaN (see exp_or_zero in primitives.hpp); for x <= 88.
/// exp(x) = 2^n · e^r as in avx512::exp_or_zero (Cody & Waite reduction, Cephes' expf polynomial,
/// about 1 ulp), with n rounded by adding 1.5 · 2^23 + 127 in the same FMA that multiplies by log2 e,
/// which leaves n + 127 in the low bits of the sum: a shift makes 2^n of them. There is no vscalefps:
/// x is clamped to [-88, 88], and below -87.98 (n = -127) the shift makes 2^n = +0, so -inf and the
/// underflow come out exactly 0 without a mask; results between are down to 2^-126 · 0.7.
/// 15 instructions against about 30 for Eigen's pexp with the generic masking, which was a third of
/// the online softmax at x86-64-v3 (the softmax a sixth of a flash tile at D = 64).
EIGEN_ALWAYS_INLINE __m256 exp_or_zero(__m256 x) {
  // vmaxps and vminps return their second operand when one is NaN, so NaN survives both.
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-88.0f), x));
  const __m256 magic = _mm256_set1_ps(12583039.0f);  // 1.5 · 2^23 + 127
  const __m256 j = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(j, magic);                           // round(x · log2 e), exact
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);  // ln 2, high part (exact in n·hi)
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);       // ln 2, low part
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n = (n + 127) << 23: the bits of 1.5 · 2^23 above shift out. n + 127 is in [0, 254] on the
  // clamped range, 0 giving +0 (and a NaN lane's shifted bits are 0 too: NaN · 0 stays NaN).
  const __m256 pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(j), 23));
  return _mm256_mul_ps(p, pow2n);
}

/// Whether any of x[0, n / (2 · L) · 2L) is NaN (L = 8 floats or 4 doubles), and how far it scanned:
/// one unordered compare tests two packets, the masks are OR-ed, one movemask at the end.
template <typename Acc>
EIGEN_ALWAYS_INLINE bool any_nan_pairs(const Acc* x, Index n, Index& scanned) {
  constexpr Index L = 32 / static_cast<Index>(sizeof(Acc));
  __m256 nan = _mm256_setzero_ps();
  Index i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    if constexpr (std::is_same_v<Acc, float>) {
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i + L), _CMP_UNORD_Q));
    } else {
      nan = _mm256_or_ps(nan, _mm256_castpd_ps(_mm256_cmp_pd(_mm256_loadu_pd(x + i), _mm256_loadu_pd(x + i + L), _CMP_UNORD_Q)));
    }
  }
  scanned = i;
  return _mm256_movemask_ps(nan) != 0;
}

/// A mask of the first n (< 8) lanes, for vmaskmovps.
EIGEN_ALWAYS_INLINE __m256i first_lanes(Index n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// The first n (< 8) floats at p, the other lanes 0 (nothing past p + n is read); or stored, lanes n
/// and up left alone.
EIGEN_ALWAYS_INLINE __m256 load_partial(const float* p, Index n) { return _mm256_maskload_ps(p, first_lanes(n)); }
EIGEN_ALWAYS_INLINE void store_partial(float* p, __m256 x, Index n) { _mm256_maskstore_ps(p, first_lanes(n), x); }

/// GCC folds a load used by several FMAs into each of them as a memory operand (one load per use):
/// the micro-kernel's two B packets would be loaded six times each, 18 loads for 12 FMAs, which
/// saturates the load ports. An empty asm that claims to modify the packets pins them in registers.
EIGEN_ALWAYS_INLINE void keep_in_registers(__m256& a) {
#if defined(__GNUC__)
  __asm__("" : "+x"(a));
#else
  (void)a;
#endif
}

/// The 8 accumulators of a 2 x 4 score block (acc[r][c]: row r, key c, partial sums along the
/// lanes) reduced to 8 scores, times `scale` unless it is 1; stored for rows < RB, s[r * lds + c].
/// Three rounds of horizontal adds leave, per 128-bit lane, row r's 4 partial sums; one cross-lane
/// add finishes both rows.
template <int RB>
EIGEN_ALWAYS_INLINE void store_score_block(__m256 (&acc)[2][4], float scale, float* s, Index lds) {
  __m256 h[2];
  for (int r = 0; r < 2; ++r) {
    if (r >= RB) {
      h[r] = _mm256_setzero_ps();
      continue;
    }
    // Lane-wise: [Σ0, Σ1, Σ2, Σ3] over each 128-bit half of acc[r][c].
    h[r] = _mm256_hadd_ps(_mm256_hadd_ps(acc[r][0], acc[r][1]), _mm256_hadd_ps(acc[r][2], acc[r][3]));
  }
  __m256 z = _mm256_add_ps(_mm256_permute2f128_ps(h[0], h[1], 0x20), _mm256_permute2f128_ps(h[0], h[1], 0x31));
  if (scale != 1.0f) z = _mm256_mul_ps(z, _mm256_set1_ps(scale));
  _mm_storeu_ps(s, _mm256_castps256_ps128(z));
  if constexpr (RB > 1) _mm_storeu_ps(s + lds, _mm256_extractf128_ps(z, 1));
}

}  // namespace avx2
}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_ARCH_AVX2
#endif  // ATTEND_DETAIL_ARCH_AVX2_HPP
