#ifndef ATTEND_DETAIL_DECODE_PATH_HPP
#define ATTEND_DETAIL_DECODE_PATH_HPP

// The flash path's kernel for few queries per key/value head (a KV-cache decode step: Nq = 1, or a
// short chunk), after Flash-Decoding (Dao, Haziza, Massa, Sizov, 2023).
//
// With one query per head, a 64-query tile would waste 63/64 of its products, and the B·Hq tiles of
// the tiled kernel would each re-read the same K and V once per query head of a GQA group. Here one
// work item is (b, kv head, key split): it reads its keys once for all Hq/Hkv · Nq query rows that
// share them, with D along the SIMD lanes, and leaves a partial (max, sum, unnormalised O) per row.
// The splits are merged by their log-sum-exp:
//   m = max_s m_s,  l = Σ_s e^{m_s - m} l_s,  O = Σ_s e^{m_s - m} O_s / l.
// The split length depends only on the shape, never on the thread count, and the merge runs in split
// order, so the result is bitwise the same for any number of threads.

#include <algorithm>  // std::min, std::max
#include <atomic>     // std::atomic
#include <cmath>      // std::exp, std::log, std::isfinite
#include <cstddef>    // std::size_t
#include <limits>     // std::numeric_limits
#include <new>        // placement new
#include <cstdint>      // std::uint16_t
#include <type_traits>  // std::is_same_v, std::integral_constant, std::conditional_t

#include "attend/detail/bf16_dot.hpp"
#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/online_softmax.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/tiles.hpp"
#include "attend/detail/zero_weights.hpp"

namespace attend {
namespace detail {

/// Whether the decode kernel has its AVX-512 blocks (decode_scores_4x4, decode_pv_block) for T:
/// float accumulation on AVX-512. Elsewhere it is the row-at-a-time form.
template <typename T>
constexpr bool kBlockedDecode =
#if defined(EIGEN_VECTORIZE_AVX512)
    std::is_same_v<acc_t<T>, float>;
#else
    false;
#endif

struct DecodeTraits {
  /// Queries per head (Nq) up to which a call takes this kernel, whatever Hq/Hkv: both kernels'
  /// costs grow with the number of query heads, so the choice depends on Nq and the head sizes only.
  /// A 64-query tile costs the same for 1 query as for 64; this kernel's cost grows with Nq.
  ///
  /// Blocked (kBlockedDecode): Nq <= 8 + (D + Dv) / 8, at most 32. It costs 4.5 ns per (query row,
  /// key) at D = Dv = 16 and 8.4 at 128, one Zen 4 thread. Measured crossovers against the tiles
  /// (Hq 8, Hkv 2, Nk 1200, bottom_right): Nq 12-16 at D = Dv = 16, 16-24 at 32, 24-32 at 64, 32-40
  /// at 128, 40-48 at 256. At the limit the kernel is 11-20% faster than the tiles (D = 16: 506
  /// against 569 us; 64: 1249 against 1669; 128: 2544 against 3147).
  ///
  /// Row at a time: Nq <= (D + Dv) / 8, at most 24. It costs 9-11 ns per (query row, key), almost
  /// whatever D; crossovers Nq 4-8 at D = Dv = 16, 24-28 at 64, 28-32 at 128 (Hq 8 or 32, Hkv 2 or 8
  /// alike).
  ///
  /// Before either, the limit was Hq/Hkv · Nq <= 16 rows: a chunk of 5 new tokens with 4 query heads
  /// per kv head ran on tiles, 6x slower (3.2 ms against 0.54 ms, Hq 8, Hkv 2, D 128).
  static constexpr Index kHeadDimsPerQuery = 8;
  static constexpr Index kBlockedBaseQueries = 8;
  static constexpr Index kBlockedMaxQueries = 32;
  static constexpr Index kMaxQueries = 24;
  /// Keys per split: 512 keys of D = 128 floats are 256 KiB of K and V, a few microseconds of
  /// streaming, so a 4096-key cache gives 8 items per kv head to spread over threads, and the merge
  /// (a few multiply-adds per row and split) stays negligible.
  static constexpr Index kSplitKeys = 512;
  /// Keys scored at a time: the exp and the max run over one packet of 16 scores per row.
  static constexpr Index kChunk = 16;
  /// How far ahead K and V rows are requested (prefetcht1). The kernel streams K and V once, so it
  /// waits on memory unless loads are in flight ahead of it; at (Hkv 8, Nk 4096, D 128, 4 rows) on
  /// one Zen 4 thread, from DRAM:
  ///   no prefetch                                                    112-118 ns per key
  ///   16 keys' rows (256 lines) in one burst per chunk, 64 keys ahead  88-92
  ///   the same with prefetcht0 or prefetchnta                          121-125
  ///   the same, every other line (the adjacent-line fetch is no help)  115-117
  ///   4 keys' rows (64 lines) before each 4-key score block, 64 ahead  70-72
  ///   the same, 32 or 128 keys ahead                                   71-83
  /// A burst of 256 prefetches fills the core's miss buffers and stalls everything behind it;
  /// spread over the chunk's four score blocks they overlap with the products. With K and V in
  /// cache the kernel takes 32 ns per key, so the rest is memory.
  static constexpr Index kPrefetchKeys = 64;
};

/// The most queries per head a call may have to take the decode kernel (DecodeTraits).
template <typename T>
Index decode_max_queries(Index D, Index Dv) {
  const Index per_dims = (D + Dv) / DecodeTraits::kHeadDimsPerQuery;
  if constexpr (kBlockedDecode<T>) {
    return std::min(DecodeTraits::kBlockedMaxQueries, DecodeTraits::kBlockedBaseQueries + per_dims);
  } else {
    return std::min(DecodeTraits::kMaxQueries, std::max<Index>(1, per_dims));
  }
}

template <typename T>
bool use_decode_kernel(const Problem<T>& pb) {
  return pb.Nq <= decode_max_queries<T>(pb.D, pb.Dv) && pb.Nk > 0;
}

template <typename T>
struct DecodeScratch {
  using Acc = acc_t<T>;
  static constexpr Index C = DecodeTraits::kChunk;
  Acc* q;     // (R, D)   the item's R = Hq/Hkv · Nq query rows, scaled (bf16 products: the raw rows)
  Acc* s;     // (R, C)   scores, then probabilities, of one chunk (packet-aligned rows)
  Acc* alpha; // (R)      per-row rescale of the output for the current chunk
  Acc* kbuf;  // (C, D)   the chunk's keys converted (16-bit T)
  Acc* vbuf;  // (C, Dv)  the chunk's values converted (16-bit T), or finite values (zero_weights.hpp)

  static std::size_t bytes(Index R, Index D, Index Dv) {
    return align_up(sizeof(Acc) * static_cast<std::size_t>(R * D)) + align_up(sizeof(Acc) * static_cast<std::size_t>(R * C)) +
           align_up(sizeof(Acc) * static_cast<std::size_t>(R)) + align_up(sizeof(Acc) * static_cast<std::size_t>(C * D)) +
           align_up(sizeof(Acc) * static_cast<std::size_t>(C * Dv));
  }
  DecodeScratch(void* base, Index R, Index D) {
    auto* p = static_cast<unsigned char*>(base);
    auto take = [&p](std::size_t n) {
      Acc* r = reinterpret_cast<Acc*>(p);
      p += align_up(sizeof(Acc) * n);
      return r;
    };
    q = take(static_cast<std::size_t>(R * D));
    s = take(static_cast<std::size_t>(R * C));
    alpha = take(static_cast<std::size_t>(R));
    kbuf = take(static_cast<std::size_t>(C * D));
    vbuf = reinterpret_cast<Acc*>(p);
  }
};

/// Partial results of one (b, kv head, split): per row its max, sum and unnormalised output.
template <typename Acc>
struct DecodePartials {
  Acc* base;
  Index rows, Dv, splits;
  std::size_t stride() const { return static_cast<std::size_t>(rows * (Dv + 2)); }
  Acc* item(Index bk, Index split) const {
    return base + (static_cast<std::size_t>(bk * splits + split)) * stride();
  }
};

/// Dot product of two contiguous Acc rows, D along the lanes (four accumulators hide FMA latency).
template <typename Acc>
EIGEN_ALWAYS_INLINE Acc dot_row(const Acc* a, const Acc* b, Index n) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  using namespace Eigen::internal;
  Packet acc0 = pset1<Packet>(Acc(0)), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  Index d = 0;
  for (; d + 4 * L <= n; d += 4 * L) {
    acc0 = pmadd(ploadu<Packet>(a + d), ploadu<Packet>(b + d), acc0);
    acc1 = pmadd(ploadu<Packet>(a + d + L), ploadu<Packet>(b + d + L), acc1);
    acc2 = pmadd(ploadu<Packet>(a + d + 2 * L), ploadu<Packet>(b + d + 2 * L), acc2);
    acc3 = pmadd(ploadu<Packet>(a + d + 3 * L), ploadu<Packet>(b + d + 3 * L), acc3);
  }
  for (; d + L <= n; d += L) acc0 = pmadd(ploadu<Packet>(a + d), ploadu<Packet>(b + d), acc0);
  Acc r = predux(padd(padd(acc0, acc1), padd(acc2, acc3)));
  for (; d < n; ++d) r += a[d] * b[d];
  return r;
}

/// out[0, n) = alpha · out + p · x, D along the lanes.
template <typename Acc>
EIGEN_ALWAYS_INLINE void axpby_row(Acc* out, Acc alpha, Acc p, const Acc* x, Index n) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  using namespace Eigen::internal;
  const Packet pa = pset1<Packet>(alpha), pp = pset1<Packet>(p);
  Index d = 0;
  for (; d + L <= n; d += L) pstoreu(out + d, pmadd(pp, ploadu<Packet>(x + d), pmul(pa, ploadu<Packet>(out + d))));
  for (; d < n; ++d) out[d] = alpha * out[d] + p * x[d];
}

/// o[r] = alpha[r] · o[r] + Σ_jj p[r][jj] · v[jj] for RB rows at once, two packets of Dv at a time:
/// 2·RB accumulators stay in registers over the chunk's keys, each value packet is loaded once for
/// all RB rows, and the rescale rides on the first load of o instead of a pass of its own.
template <int RB, typename Acc>
EIGEN_ALWAYS_INLINE void decode_pv_rows(Acc* o, Index ldo, const Acc* p, Index ldp, const Acc* alpha, const Acc* v,
                                        Index ldv, Index nk, Index Dv) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  using namespace Eigen::internal;
  Index d = 0;
  for (; d + 2 * L <= Dv; d += 2 * L) {
    Packet a0[RB], a1[RB];
    for (int r = 0; r < RB; ++r) {
      const Packet al = pset1<Packet>(alpha[r]);
      a0[r] = pmul(al, ploadu<Packet>(o + r * ldo + d));
      a1[r] = pmul(al, ploadu<Packet>(o + r * ldo + d + L));
    }
    for (Index jj = 0; jj < nk; ++jj) {
      const Packet v0 = ploadu<Packet>(v + jj * ldv + d), v1 = ploadu<Packet>(v + jj * ldv + d + L);
      for (int r = 0; r < RB; ++r) {
        const Packet pr = pset1<Packet>(p[r * ldp + jj]);
        a0[r] = pmadd(pr, v0, a0[r]);
        a1[r] = pmadd(pr, v1, a1[r]);
      }
    }
    for (int r = 0; r < RB; ++r) {
      pstoreu(o + r * ldo + d, a0[r]);
      pstoreu(o + r * ldo + d + L, a1[r]);
    }
  }
  for (; d < Dv; ++d) {  // Dv not a multiple of 2 packets: scalar columns
    for (int r = 0; r < RB; ++r) {
      Acc a = alpha[r] * o[r * ldo + d];
      for (Index jj = 0; jj < nk; ++jj) a += p[r * ldp + jj] * v[jj * ldv + d];
      o[r * ldo + d] = a;
    }
  }
}

#if defined(EIGEN_VECTORIZE_AVX512)
/// The K and V rows of 4 keys to request into L2, a cache line at a time: line(t) requests line t
/// of each row. The score kernel calls it once per packet of D, so that the requests interleave with
/// the multiply-adds instead of arriving as a burst (see DecodeTraits::kPrefetchKeys).
struct DecodePrefetch {
  const char* k[4];
  const char* v[4];
  Index klines, vlines, lines;  // lines = max(klines, vlines)
  EIGEN_ALWAYS_INLINE void line(Index t) const {
    if (t < klines) {
      for (int c = 0; c < 4; ++c) prefetch_l2(k[c] + 64 * t);
    }
    if (t < vlines) {
      for (int c = 0; c < 4; ++c) prefetch_l2(v[c] + 64 * t);
    }
  }
};

/// GCC folds a load used by several FMAs into each of them as a memory operand (one load per use),
/// and Zen 4 issues one 512-bit load a cycle: the 4x4 blocks below would do 20 loads for 16 FMAs.
/// An empty asm that claims to modify the loaded packets pins each one in a register.
EIGEN_ALWAYS_INLINE void keep_in_registers(__m512& a, __m512& b, __m512& c, __m512& d) {
#if defined(__GNUC__)
  __asm__("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d));
#else
  (void)a, (void)b, (void)c, (void)d;
#endif
}

/// The 16 accumulators of a 4 x 4 score block reduced to 16 scores, scaled, lane r of the result
/// holding row r's 4 keys; stored for rows < RB. Shared by the fp32 and bf16 score blocks.
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

/// s[r][c] = q[r] · k[c] for RB <= 4 rows and 4 keys, with one transpose-and-add tree at the end
/// instead of one horizontal sum per (row, key).
///
/// Why: with D along the lanes, a row-at-a-time dot product loads its key again for every row and
/// ends in a 4-step horizontal sum per score: 16 loads and about 12 shuffles and adds for 8 FMAs at
/// D = 128, where Zen 4 issues one 512-bit load a cycle. Blocking 4 rows x 4 keys holds 16
/// accumulators, loads each key and query packet once per block (8 loads for 16 FMAs), and reduces
/// the 16 accumulators with 18 shuffles and 15 adds, about 11 instructions per key. With the value
/// blocks below, the kernel went from 44 to 33 ns per key with K and V in cache (4 rows, D = 128,
/// one Zen 4 thread), and no longer spends a third of its time on horizontal sums.
template <int RB>
EIGEN_ALWAYS_INLINE void decode_scores_4x4(const float* q, Index ldq, const float* const* k, Index D, float* s,
                                           Index lds, const DecodePrefetch* pf = nullptr) {
  static_assert(RB >= 1 && RB <= 4, "a score block has 1 to 4 rows");
  __m512 acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
  Index d = 0;
  for (; d + 16 <= D; d += 16) {
    __m512 k0 = _mm512_loadu_ps(k[0] + d), k1 = _mm512_loadu_ps(k[1] + d);
    __m512 k2 = _mm512_loadu_ps(k[2] + d), k3 = _mm512_loadu_ps(k[3] + d);
    keep_in_registers(k0, k1, k2, k3);
    if (pf != nullptr) pf->line(d / 16);
    for (int r = 0; r < RB; ++r) {
      const __m512 qr = _mm512_loadu_ps(q + r * ldq + d);
      acc[r][0] = _mm512_fmadd_ps(qr, k0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(qr, k1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(qr, k2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(qr, k3, acc[r][3]);
    }
  }
  if (d < D) {  // D not a multiple of 16: the missing lanes load as 0
    const __mmask16 m = static_cast<__mmask16>((1u << (D - d)) - 1u);
    const __m512 k0 = _mm512_maskz_loadu_ps(m, k[0] + d), k1 = _mm512_maskz_loadu_ps(m, k[1] + d);
    const __m512 k2 = _mm512_maskz_loadu_ps(m, k[2] + d), k3 = _mm512_maskz_loadu_ps(m, k[3] + d);
    for (int r = 0; r < RB; ++r) {
      const __m512 qr = _mm512_maskz_loadu_ps(m, q + r * ldq + d);
      acc[r][0] = _mm512_fmadd_ps(qr, k0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(qr, k1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(qr, k2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(qr, k3, acc[r][3]);
    }
  }
  if (pf != nullptr) {
    for (Index t = D / 16; t < pf->lines; ++t) pf->line(t);
  }
  store_score_block<RB>(acc, 1.0f, s, lds);
}

#endif

#if ATTEND_HAVE_BF16_DOT
/// decode_scores_4x4 for bf16 q and K with vdpbf16ps: 32 elements of D per load, two products per
/// fp32 lane, K read in place (no conversion), and the scale applied to the fp32 scores, never to
/// q (as the flash path's bf16 kernel). Products of two bf16 are exact in fp32; vdpbf16ps treats
/// subnormal bf16 inputs as 0, as in the flash path.
template <int RB>
EIGEN_ALWAYS_INLINE void decode_scores_4x4_bf16(const std::uint16_t* q, Index ldq, const std::uint16_t* const* k,
                                                Index D, float scale, float* s, Index lds,
                                                const DecodePrefetch* pf = nullptr) {
  static_assert(RB >= 1 && RB <= 4, "a score block has 1 to 4 rows");
  __m512 acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
  Index d = 0;
  for (; d < D; d += 32) {
    // A 64-byte line holds 32 bf16: this step's line of each prefetched row.
    if (pf != nullptr) pf->line(d / 32);
    const __mmask32 m = D - d >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << (D - d)) - 1u);
    __m512 k0 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, k[0] + d));
    __m512 k1 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, k[1] + d));
    __m512 k2 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, k[2] + d));
    __m512 k3 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, k[3] + d));
    keep_in_registers(k0, k1, k2, k3);
    for (int r = 0; r < RB; ++r) {
      const __m512bh qr = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, q + r * ldq + d));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], qr, reinterpret_cast<__m512bh>(k0));
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], qr, reinterpret_cast<__m512bh>(k1));
      acc[r][2] = _mm512_dpbf16_ps(acc[r][2], qr, reinterpret_cast<__m512bh>(k2));
      acc[r][3] = _mm512_dpbf16_ps(acc[r][3], qr, reinterpret_cast<__m512bh>(k3));
    }
  }
  if (pf != nullptr) {
    for (Index t = (D + 31) / 32; t < pf->lines; ++t) pf->line(t);
  }
  store_score_block<RB>(acc, scale, s, lds);
}
#endif

#if defined(EIGEN_VECTORIZE_AVX512)
/// o[r][d0, d0 + 64) = alpha[r] · o[r] + Σ_jj p[r][jj] · v[jj] for RB <= 4 rows: 4·RB accumulators,
/// each value packet loaded once for all RB rows (16 FMAs for 4 loads and 4 broadcasts where a
/// row-at-a-time loop needs 8 loads and 4 broadcasts for 8). m[c] masks the columns of packet c
/// (Dv not a multiple of 64: the missing ones load as 0 and are not stored).
template <int RB>
EIGEN_ALWAYS_INLINE void decode_pv_block(float* o, Index ldo, const float* p, Index ldp, const float* alpha,
                                         const float* v, Index ldv, Index nk, const __mmask16* m) {
  static_assert(RB >= 1 && RB <= 4, "at most 4 rows x 4 packets of accumulators");
  __m512 acc[RB][4];
  for (int r = 0; r < RB; ++r) {
    const __m512 al = _mm512_set1_ps(alpha[r]);
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_mul_ps(al, _mm512_maskz_loadu_ps(m[c], o + r * ldo + 16 * c));
  }
  for (Index jj = 0; jj < nk; ++jj) {
    const float* vj = v + jj * ldv;
    __m512 v0 = _mm512_maskz_loadu_ps(m[0], vj), v1 = _mm512_maskz_loadu_ps(m[1], vj + 16);
    __m512 v2 = _mm512_maskz_loadu_ps(m[2], vj + 32), v3 = _mm512_maskz_loadu_ps(m[3], vj + 48);
    keep_in_registers(v0, v1, v2, v3);
    for (int r = 0; r < RB; ++r) {
      const __m512 pr = _mm512_set1_ps(p[r * ldp + jj]);
      acc[r][0] = _mm512_fmadd_ps(pr, v0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(pr, v1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(pr, v2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(pr, v3, acc[r][3]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < 4; ++c) _mm512_mask_storeu_ps(o + r * ldo + 16 * c, m[c], acc[r][c]);
}

template <int RB>
EIGEN_ALWAYS_INLINE void decode_pv_rows_avx512(float* o, Index ldo, const float* p, Index ldp, const float* alpha,
                                               const float* v, Index ldv, Index nk, Index Dv) {
  for (Index d = 0; d < Dv; d += 64) {
    __mmask16 m[4];
    for (Index c = 0; c < 4; ++c) {
      const Index n = std::min<Index>(16, std::max<Index>(0, Dv - d - 16 * c));
      m[c] = static_cast<__mmask16>(n == 16 ? 0xFFFFu : (1u << n) - 1u);
    }
    decode_pv_block<RB>(o + d, ldo, p, ldp, alpha, v + d, ldv, nk, m);
  }
}
#endif

/// O = α ∘ O + P V over one chunk for all rows, in blocks of 4 rows.
template <typename Acc>
EIGEN_ALWAYS_INLINE void decode_chunk_pv(Acc* o, const Acc* s, const Acc* alpha, const Acc* v, Index ldv, Index nk,
                                         Index rows, Index Dv) {
  constexpr Index C = DecodeTraits::kChunk;
  for_register_rows<4>(rows, [&](auto rb, Index r0) ATTEND_INLINE_LAMBDA {
    constexpr int RB = decltype(rb)::value;
#if defined(EIGEN_VECTORIZE_AVX512)
    if constexpr (std::is_same_v<Acc, float>) {
      decode_pv_rows_avx512<RB>(o + r0 * Dv, Dv, s + r0 * C, C, alpha + r0, v, ldv, nk, Dv);
      return;
    }
#endif
    decode_pv_rows<RB>(o + r0 * Dv, Dv, s + r0 * C, C, alpha + r0, v, ldv, nk, Dv);
  });
}

/// Requests the K and V rows [j, min(j + n, limit)) of (b, kv head hk) into L2, every cache line.
template <typename T>
EIGEN_ALWAYS_INLINE void prefetch_kv_rows(const Problem<T>& pb, Index b, Index hk, Index j, Index n, Index limit) {
  const Index end = std::min(j + n, limit);
  const Index kbytes = pb.D * static_cast<Index>(sizeof(T)), vbytes = pb.Dv * static_cast<Index>(sizeof(T));
  for (; j < end; ++j) {
    const auto* kr = reinterpret_cast<const char*>(&pb.k(b, hk, j, 0));
    const auto* vr = reinterpret_cast<const char*>(&pb.v(b, hk, j, 0));
    for (Index x = 0; x < kbytes; x += 64) prefetch_l2(kr + x);
    for (Index x = 0; x < vbytes; x += 64) prefetch_l2(vr + x);
  }
}

/// Scores of one chunk, s[r][jj] = q[r] · k[j0 + jj] for jj < nk (q already scaled); columns from nk
/// to the next multiple of 4 hold scores of the chunk's last key, for the caller to overwrite.
/// It also requests the keys and values DecodeTraits::kPrefetchKeys ahead.
template <typename T>
EIGEN_ALWAYS_INLINE void decode_chunk_scores(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Index j_end,
                                             Index rows, DecodeScratch<T>& w) {
  using Acc = acc_t<T>;
  constexpr Index C = DecodeTraits::kChunk;
  const Index D = pb.D;
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (std::is_same_v<Acc, float>) {
    // The chunk's keys as the score blocks read them: bf16 in place (bf16 products), float in
    // place, or converted to float (f16, and bf16 without AVX512_BF16).
    using Key = std::conditional_t<kBf16Dot<T>, std::uint16_t, float>;
    const Key* kc;  // (nk, D) row stride ldk
    Index ldk;
    if constexpr (kBf16Dot<T> || std::is_same_v<T, float>) {
      kc = reinterpret_cast<const Key*>(&pb.k(b, hk, j0, 0));
      ldk = pb.k.stride(2);
    } else {
      for (Index jj = 0; jj < nk; ++jj) convert_row(&pb.k(b, hk, j0 + jj, 0), w.kbuf + jj * D, D);
      kc = w.kbuf;
      ldk = D;
    }
    DecodePrefetch pf;
    pf.klines = (D * static_cast<Index>(sizeof(T)) + 63) / 64;
    pf.vlines = (pb.Dv * static_cast<Index>(sizeof(T)) + 63) / 64;
    pf.lines = std::max(pf.klines, pf.vlines);
    for (Index jj = 0; jj < nk; jj += 4) {
      // The keys kPrefetchKeys ahead, clamped to the last key (re-requesting a line is harmless).
      for (Index c = 0; c < 4; ++c) {
        const Index j = std::min(j0 + jj + c + DecodeTraits::kPrefetchKeys, pb.Nk - 1);
        pf.k[c] = reinterpret_cast<const char*>(&pb.k(b, hk, j, 0));
        pf.v[c] = reinterpret_cast<const char*>(&pb.v(b, hk, j, 0));
      }
      const Key* kp[4];
      for (Index c = 0; c < 4; ++c) kp[c] = kc + std::min(jj + c, nk - 1) * ldk;
      for_register_rows<4>(rows, [&](auto rb, Index r0) ATTEND_INLINE_LAMBDA {
        constexpr int RB = decltype(rb)::value;
        const DecodePrefetch* first = r0 == 0 ? &pf : nullptr;  // the first row block requests the lines
#if ATTEND_HAVE_BF16_DOT
        if constexpr (kBf16Dot<T>) {
          const auto* q = reinterpret_cast<const std::uint16_t*>(w.q);  // raw bf16 rows (decode_item)
          decode_scores_4x4_bf16<RB>(q + r0 * D, D, kp, D, pb.scale, w.s + r0 * C + jj, C, first);
          return;
        }
#endif
        if constexpr (!kBf16Dot<T>) decode_scores_4x4<RB>(w.q + r0 * D, D, kp, D, w.s + r0 * C + jj, C, first);
      });
    }
    return;
  }
#endif
  prefetch_kv_rows(pb, b, hk, j0 + DecodeTraits::kPrefetchKeys, C, j_end);
  for (Index jj = 0; jj < nk; ++jj) {
    const T* kj = &pb.k(b, hk, j0 + jj, 0);
    const Acc* k = reinterpret_cast<const Acc*>(kj);
    if constexpr (!std::is_same_v<T, Acc>) {
      convert_row(kj, w.kbuf, D);
      k = w.kbuf;
    }
    for (Index r = 0; r < rows; ++r) w.s[r * C + jj] = dot_row(w.q + r * D, k, D);
  }
}

/// One (b, kv head, key split): partial softmax statistics and outputs for its rows.
/// `careful` is the re-run of an item whose partial output came out with a NaN (zero_weights.hpp):
/// zero weights then skip their values.
template <typename T>
void decode_item(const Problem<T>& pb, Index b, Index hk, Index j_begin, Index j_end, DecodeScratch<T>& w,
                 acc_t<T>* part, bool careful = false) {
  using Acc = acc_t<T>;
  constexpr Index C = DecodeTraits::kChunk;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Index rows = pb.group * pb.Nq;  // row r: query head hk * group + r / Nq, query i = r % Nq
  const Index D = pb.D, Dv = pb.Dv;
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  static_assert(C % L == 0, "a decode chunk must be a whole number of packets");
  using namespace Eigen::internal;
  Acc* m = part;              // (rows) running max
  Acc* l = part + rows;       // (rows) running sum
  Acc* o = part + 2 * rows;   // (rows, Dv) unnormalised output

  for (Index r = 0; r < rows; ++r) {
    const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
    const T* src = &pb.q(b, h, i, 0);
    if constexpr (kBf16Dot<T>) {
      // bf16 products (decode_scores_4x4_bf16): q as it is, the scale goes on the fp32 scores.
      std::copy(src, src + D, reinterpret_cast<T*>(w.q) + r * D);
    } else {
      for (Index d = 0; d < D; ++d) w.q[r * D + d] = pb.scale * static_cast<Acc>(src[d]);
    }
    m[r] = kNegInf;
    l[r] = Acc(0);
    for (Index d = 0; d < Dv; ++d) o[r * Dv + d] = Acc(0);
  }

  for (Index j0 = j_begin; j0 < j_end; j0 += C) {
    const Index nk = std::min(C, j_end - j0);
    // Scores of the chunk, each key read once for all rows.
    decode_chunk_scores(pb, b, hk, j0, nk, j_end, rows, w);
    // Mask, online softmax and dropout per row, over the chunk's 16 scores as whole packets.
    const bool masked = pb.has_mask() || pb.causal != Causal::none;
    for (Index r = 0; r < rows; ++r) {
      const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
      Acc* s = w.s + r * C;
      if (masked) {
        for (Index jj = 0; jj < nk; ++jj) {
          const Index j = j0 + jj;
          if (!pb.causal_visible(i, j)) {
            s[jj] = kNegInf;
          } else if (pb.keep != nullptr) {
            if (!pb.keep[pb.mask_offset(b, h, i, j)]) s[jj] = kNegInf;
          } else if (pb.bias != nullptr) {
            s[jj] += static_cast<Acc>(pb.bias[pb.mask_offset(b, h, i, j)]);
          }
        }
      }
      for (Index jj = nk; jj < C; ++jj) s[jj] = kNegInf;  // the chunk's tail adds exp(-inf) = 0
      // As in OnlineSoftmax: a plain max may skip a NaN score, whose exp then poisons the sum.
      Packet mp = pset1<Packet>(m[r]);
      for (Index c = 0; c < C; c += L) mp = pmax(mp, pload<Packet>(s + c));
      const Acc mx = predux_max(mp);
      const Acc sub = mx == kNegInf ? Acc(0) : mx;
      const Acc alpha = m[r] == kNegInf ? Acc(0) : std::exp(m[r] - sub);
      const Packet ps = pset1<Packet>(sub);
      Packet sum = pset1<Packet>(Acc(0));
      for (Index c = 0; c < C; c += L) {
        const Packet e = exp_or_zero(psub(pload<Packet>(s + c), ps));
        pstore(s + c, e);
        sum = padd(sum, e);
      }
      l[r] = alpha * l[r] + predux(sum);
      m[r] = mx;
      if (pb.dropout.active) pb.dropout.apply_row(b, h, i, j0, nk, s, 1);
      w.alpha[r] = alpha;  // applied to o by decode_pv_rows
    }
    // O = α ∘ O + P V over the chunk, in blocks of 4 rows.
    const Acc* v = nullptr;
    Index ldv = Dv;
    bool dirty = false;
    if (careful) {
      // Finite copies of the values; a row whose α is 0 forgets the non-finite entries it held.
      dirty = finite_value_rows(pb, b, hk, j0, nk, w.vbuf);
      v = w.vbuf;
      for (Index r = 0; r < rows; ++r) {
        if (w.alpha[r] != Acc(0)) continue;
        for (Index d = 0; d < Dv; ++d) {
          if (!std::isfinite(o[r * Dv + d])) o[r * Dv + d] = Acc(0);
        }
      }
    } else if constexpr (std::is_same_v<T, Acc>) {
      v = &pb.v(b, hk, j0, 0);
      ldv = pb.v.stride(2);
    } else {
      for (Index jj = 0; jj < nk; ++jj) {
        const T* vj = &pb.v(b, hk, j0 + jj, 0);
        convert_row(vj, w.vbuf + jj * Dv, Dv);
      }
      v = w.vbuf;
    }
    decode_chunk_pv(o, w.s, w.alpha, v, ldv, nk, rows, Dv);
    if (dirty) {  // the non-finite values' own terms, where the weight is not 0
      for (Index jj = 0; jj < nk; ++jj) {
        for (Index d = 0; d < Dv; ++d) {
          const Acc x = static_cast<Acc>(pb.v(b, hk, j0 + jj, d));
          if (std::isfinite(x)) continue;
          for (Index r = 0; r < rows; ++r) {
            const Acc p = w.s[r * C + jj];
            if (p != Acc(0)) o[r * Dv + d] += p * x;
          }
        }
      }
    }
  }
  // 0 · Inf from a value hidden from some row leaves a NaN in its output: redo the item carefully.
  if (!careful && any_nan(o, rows * Dv)) decode_item(pb, b, hk, j_begin, j_end, w, part, true);
}

template <typename T>
Index decode_splits(const Problem<T>& pb) {
  return std::max<Index>(1, (pb.Nk + DecodeTraits::kSplitKeys - 1) / DecodeTraits::kSplitKeys);
}

/// Per (b, kv head): how many of its splits are still being computed. The worker that finishes the
/// last one merges them, so the merge needs no second pass over the pool.
using SplitCounter = std::atomic<int>;

template <typename T>
std::size_t decode_workspace_bytes(const Problem<T>& pb, int workers) {
  using Acc = acc_t<T>;
  const Index rows = pb.group * pb.Nq;
  const std::size_t partials =
      sizeof(Acc) * static_cast<std::size_t>(pb.B * pb.Hkv * decode_splits(pb) * rows * (pb.Dv + 2));
  const std::size_t counters = sizeof(SplitCounter) * static_cast<std::size_t>(pb.B * pb.Hkv);
  return align_up(partials) + align_up(counters) +
         DecodeScratch<T>::bytes(rows, pb.D, pb.Dv) * static_cast<std::size_t>(workers);
}

template <typename T>
void run_decode(const Problem<T>& pb, const Eigen::ThreadPoolDevice* device, void* workspace) {
  using Acc = acc_t<T>;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Index rows = pb.group * pb.Nq, splits = decode_splits(pb), Dv = pb.Dv;
  DecodePartials<Acc> parts{static_cast<Acc*>(workspace), rows, Dv, splits};
  const std::size_t partial_bytes = align_up(sizeof(Acc) * parts.stride() * static_cast<std::size_t>(pb.B * pb.Hkv * splits));
  auto* counter_base = static_cast<unsigned char*>(workspace) + partial_bytes;
  const std::size_t counter_bytes = align_up(sizeof(SplitCounter) * static_cast<std::size_t>(pb.B * pb.Hkv));
  auto* scratch = counter_base + counter_bytes;
  const std::size_t per_worker = DecodeScratch<T>::bytes(rows, pb.D, pb.Dv);
  auto* left = reinterpret_cast<SplitCounter*>(counter_base);  // (B·Hkv) splits not yet done
  for (Index bk = 0; bk < pb.B * pb.Hkv; ++bk) new (&left[bk]) SplitCounter(static_cast<int>(splits));

  // The merge of one (b, kv head): its splits' rows in split order (deterministic), normalised.
  const Acc extra = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
  const auto merge = [&](Index bk) {
    const Index b = bk / pb.Hkv, hk = bk % pb.Hkv;
    for (Index r = 0; r < rows; ++r) {
      const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
      Acc m = kNegInf;
      for (Index s = 0; s < splits; ++s) m = std::max(m, parts.item(bk, s)[r]);
      const Acc sub = m == kNegInf ? Acc(0) : m;
      Acc l = Acc(0);
      T* out = &pb.out(b, h, i, 0);
      // Accumulate in the first split's slot (owned by this bk alone), then write.
      Acc* acc = parts.item(bk, 0) + 2 * rows + r * Dv;
      for (Index s = 0; s < splits; ++s) {
        const Acc* p = parts.item(bk, s);
        const Acc f = p[r] == kNegInf ? Acc(0) : std::exp(p[r] - sub);
        l += f * p[rows + r];
        if (s == 0) {
          // f = 0: the split's weights all underflow against the overall max, so it contributes
          // nothing; an Inf it holds must not become 0 · Inf = NaN (zero_weights.hpp).
          for (Index d = 0; d < Dv; ++d) acc[d] = f == Acc(0) && !std::isfinite(acc[d]) ? Acc(0) : acc[d] * f;
        } else if (f != Acc(0) || f != f) {
          axpby_row(acc, Acc(1), f, p + 2 * rows + r * Dv, Dv);
        }
      }
      const Acc inv = l == Acc(0) ? Acc(0) : extra / l;
      for (Index d = 0; d < Dv; ++d) out[d] = static_cast<T>(acc[d] * inv);
      if (pb.lse.data() != nullptr) pb.lse(b, h, i) = l == Acc(0) ? kNegInf : m + std::log(l);
    }
  };

  // Every (b, kv head, split), in any order on any thread, in guided runs of consecutive splits
  // (parallel_for_runs): a worker then streams one stretch of K and V, and its prefetches past the
  // end of a split serve its own next item. The worker that completes a (b, kv head)'s last split
  // merges it (acq_rel: it sees every other split's partials), so there is one fork and join per
  // call, not two.
  const Index items = pb.B * pb.Hkv * splits;
  parallel_for_runs(device, worker_count(device), items, items, [&](int worker, Index begin, Index end) {
    DecodeScratch<T> w(scratch + per_worker * static_cast<std::size_t>(worker), rows, pb.D);
    for (Index item = begin; item < end; ++item) {
      const Index bk = item / splits, split = item % splits;
      const Index j_begin = split * DecodeTraits::kSplitKeys;
      const Index j_end = std::min(pb.Nk, j_begin + DecodeTraits::kSplitKeys);
      decode_item(pb, bk / pb.Hkv, bk % pb.Hkv, j_begin, j_end, w, parts.item(bk, split));
      if (left[bk].fetch_sub(1, std::memory_order_acq_rel) == 1) merge(bk);
    }
  });
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_DECODE_PATH_HPP
