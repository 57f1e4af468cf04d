#ifndef ATTEND_DETAIL_ARCH_AVX512_BF16_HPP
#define ATTEND_DETAIL_ARCH_AVX512_BF16_HPP

// bf16 products with fp32 accumulation (AVX512_BF16's vdpbf16ps): the multiply-add policy the
// micro-kernel and the decode blocks take for bf16 (kernel/microkernel.hpp, forward/decode_blocks.hpp),
// and the packing of operands into bf16 pairs.
//
// vdpbf16ps adds two bf16 products to each fp32 lane, c[i] += a[2i]·b[2i] + a[2i+1]·b[2i+1]: 32
// multiply-adds per instruction where an fp32 FMA does 16. Whether that pays depends on the CPU, not
// on the instruction set, so bf16_pairs_pay() decides at run time (below). Both attention products are
// laid out so that the pair runs along the reduction:
//   S^T  = K · Q^T       (Bc x Br)  over d:    A pair (k[j][2c], k[j][2c+1]), read in place from K
//                                              B pair Qp[c][i] = (q[i][2c], q[i][2c+1])
//   O    = P · V         (Br x Dv)  over keys: A pair Pp[c][i] = (p[2c][i], p[2c+1][i])
//                                              B pair Vp[c][e] = (v[2c][e], v[2c+1][e])
// so a broadcast of one 32-bit pair times a packet of 16 pairs is one instruction, and the
// micro-kernel has the shape of the fp32 one with half as many reduction steps.
//
// Numerics: a product of two bf16 is exact in fp32, so S is the fp32 sum of exact products (the
// scale is applied to the fp32 result, never to q before rounding, where a scale such as 1/sqrt(128)
// would add an error of 2^-9·|s|). P is rounded to bf16 (relative error at most 2^-9) before P·V, as
// PyTorch's CPU flash kernel does for bf16 inputs; the row sums use the unrounded fp32 P. The
// instruction treats denormal inputs and results as 0, which changes only terms below 1e-38.
//
// Included by arch/primitives.hpp; empty unless the target has AVX512_BF16 (ATTEND_HAVE_BF16_DOT).
// Kernels name Bf16Pairs as Bf16PairOps.

#include "attend/detail/arch/isa.hpp"

#if ATTEND_HAVE_BF16_DOT
#include <cpuid.h>  // __get_cpuid
#include <immintrin.h>

#include <algorithm>  // std::min, std::max
#include <cstdint>    // std::uint16_t, std::uint32_t
#include <cstdlib>    // std::getenv
#include <cstring>    // std::memcpy, std::strcmp

#include <Eigen/Core>

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/avx512.hpp"
#include "attend/tensor.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {
namespace avx512 {

/// The multiply-add policy of bf16 pairs (see kernel/microkernel.hpp, FmaOps, for the members).
/// A is addressed in bytes (a pair is 4 bytes, any alignment: K is read in place), B in pairs.
struct Bf16Pairs {
  using Scalar = float;           ///< the accumulator's lanes
  using Packet = __m512;          ///< the accumulator
  using APacket = __m512bh;       ///< a broadcast pair
  using BPacket = __m512bh;       ///< 16 pairs
  using AUnit = unsigned char;    ///< A's strides count bytes
  using BUnit = std::uint32_t;    ///< B's strides count pairs
  static constexpr int kLanes = 16;
  static constexpr int kValuesPerStep = 2;  ///< one step of the reduction is a pair of values
  static constexpr int kRegisters = 32;
  /// vdpbf16ps has 6 cycles of latency at 2 per cycle: 12 independent chains hide it.
  static constexpr int kMinChains = 12;
  static constexpr bool kPinB = false;
  static constexpr bool kFusedMadd = true;
  /// No multiply-add by lane: x86 has none (an A pair is broadcast by the load itself).
  static constexpr bool kLaneFma = false;

  static EIGEN_ALWAYS_INLINE Packet zero() { return _mm512_setzero_ps(); }
  /// One bf16 pair (4 bytes, any alignment) broadcast to every lane.
  static EIGEN_ALWAYS_INLINE APacket broadcast_a(const AUnit* p) {
    std::uint32_t x;
    std::memcpy(&x, p, sizeof x);
    return (__m512bh)_mm512_set1_epi32(static_cast<int>(x));
  }
  template <bool kAligned>
  static EIGEN_ALWAYS_INLINE BPacket load_b(const BUnit* p) {
    return (__m512bh)_mm512_loadu_si512(p);
  }
  /// The first n (< 32) bf16 values at p as pairs, the rest 0.
  static EIGEN_ALWAYS_INLINE BPacket load_b_partial(const BUnit* p, Index n) {
    return (__m512bh)_mm512_maskz_loadu_epi16(static_cast<__mmask32>((1u << n) - 1u), p);
  }
  static EIGEN_ALWAYS_INLINE Packet madd(const APacket& a, const BPacket& b, const Packet& acc) {
    return _mm512_dpbf16_ps(acc, a, b);
  }


  /// Qp (D/2 x Br pairs) of nq query rows (`rows` is the first row's bytes, rows `row_bytes` apart):
  /// qp[c * Br + ii] = (q[ii][2c], q[ii][2c + 1]), 0 for the padding queries ii >= nq. A row of q is
  /// already D/2 pairs in memory, so this is a 32-bit transpose, done 16 x 16 in registers. D is even.
  template <int Br>
  static EIGEN_ALWAYS_INLINE void pack_query_pairs(const unsigned char* rows, Index row_bytes, Index nq, Index D,
                                            std::uint32_t* qp) {
    using namespace Eigen::internal;
    constexpr int L = 16;
    const Index D2 = D / 2;
    for (Index ii0 = 0; ii0 < Br; ii0 += L) {
      const Index n = std::max<Index>(0, std::min<Index>(L, nq - ii0));
      const unsigned char* q0 = n > 0 ? rows + ii0 * row_bytes : nullptr;
      auto row = [&](Index r) { return q0 + r * row_bytes; };
      Index c0 = 0;
      for (; c0 + L <= D2; c0 += L) {
        PacketBlock<Packet16f, L> blk;
        if (n == L) {
          for (int r = 0; r < L; ++r) blk.packet[r] = _mm512_castsi512_ps(_mm512_loadu_si512(row(r) + 4 * c0));
        } else {
          for (int r = 0; r < L; ++r)
            blk.packet[r] = r < n ? _mm512_castsi512_ps(_mm512_loadu_si512(row(r) + 4 * c0)) : _mm512_setzero_ps();
        }
        transpose16(blk);
        for (int r = 0; r < L; ++r) _mm512_store_ps(reinterpret_cast<float*>(qp + (c0 + r) * Br + ii0), blk.packet[r]);
      }
      for (; c0 < D2; ++c0) {
        for (Index r = 0; r < L; ++r) {
          std::uint32_t x = 0;
          if (r < n) std::memcpy(&x, row(r) + 4 * c0, sizeof x);
          qp[c0 * Br + ii0 + r] = x;
        }
      }
    }
  }

  /// Pp (ceil(nk/2) x Br pairs): P^T (nk x Br fp32) rounded to bf16 (nearest even) and interleaved by
  /// pairs of keys; an odd last key is paired with 0.
  template <int Br>
  static EIGEN_ALWAYS_INLINE void pack_probability_pairs(const float* pt, Index nk, std::uint32_t* pp) {
    constexpr int L = 16;
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
  static EIGEN_ALWAYS_INLINE bool bf16_nonfinite(std::uint16_t bits) { return (bits & 0x7f80u) == 0x7f80u; }

  /// Vp (ceil(nk/2) x Dv pairs) of a value tile (rows of `v`, `vs` elements apart): vp[c * Dv + e] =
  /// (v[2c][e], v[2c + 1][e]), an odd last key paired with 0. With `finite_only`, non-finite values are
  /// stored as 0 (the careful re-run, kernel/zero_weights.hpp); returns whether any value was
  /// non-finite then.
  static EIGEN_ALWAYS_INLINE bool pack_value_pairs(const Eigen::bfloat16* v, Index vs, Index nk, Index Dv, std::uint32_t* vp,
                                            bool finite_only) {
    constexpr int L = 16;
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

  /// The bf16 probability of key j for query ii of a Pp (pairs of keys, Br apart), back in fp32.
  template <int Br>
  static EIGEN_ALWAYS_INLINE float unpack_probability(const std::uint32_t* pp, Index j, Index ii) {
    const std::uint32_t pair = pp[(j / 2) * Br + ii];
    const std::uint32_t bits = (j % 2 == 0 ? pair & 0xffffu : pair >> 16) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
};

}  // namespace avx512

/// Whether the flash forward's bf16 tiles take bf16 pair products (vdpbf16ps) on this CPU, rather
/// than converting to fp32 and taking fp32 FMAs: the same instruction set, different speeds.
/// Measured with the same binary (flash bf16, one thread, GFLOP/s; bench/results/xeon16_s3_*):
///   AMD Zen 4:                         pairs 1.66x the f32 row on long4k (0.85 of the fp32 peak → 1.4)
///   Intel Xeon (Sapphire/Emerald Rapids): pairs 76 on long4k and bsr_time, fp32 products 117-129
///                                      (vdpbf16ps there does not issue at twice the FMA's rate)
/// So pairs on AMD, fp32 products elsewhere. ATTEND_BF16_PRODUCTS=pairs or =fp32 overrides it (tests
/// take both kernels on any CPU that has the instruction). Read once per process: the kernel a call
/// takes, its workspace size and Dispatch::kernel all ask here, and must agree.
inline bool bf16_pairs_pay() {
  static const bool pay = [] {
    if (const char* forced = std::getenv("ATTEND_BF16_PRODUCTS")) {
      if (std::strcmp(forced, "pairs") == 0) return true;
      if (std::strcmp(forced, "fp32") == 0) return false;
    }
    unsigned int max_leaf = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &max_leaf, &ebx, &ecx, &edx) == 0) return false;
    // The vendor string is EBX, EDX, ECX: "Auth" "enti" "cAMD".
    return ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u;
  }();
  return pay;
}

}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_HAVE_BF16_DOT
#endif  // ATTEND_DETAIL_ARCH_AVX512_BF16_HPP
