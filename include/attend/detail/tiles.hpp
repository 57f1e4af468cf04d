#ifndef ATTEND_DETAIL_TILES_HPP
#define ATTEND_DETAIL_TILES_HPP

// Tile-level steps shared by the flash and mem_efficient paths: packing a query tile, reading a
// key/value tile in the accumulation type, masking a score tile, dropout, and the epilogue.
// Scores are transposed, s[jj * Br + ii] for key j0 + jj and query i0 + ii (see microkernel.hpp).

#include <algorithm>  // std::min, std::max
#include <cstddef>    // std::size_t
#include <cstdint>    // std::uintptr_t
#include <limits>     // std::numeric_limits
#include <type_traits>

#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/online_softmax.hpp"
#include "attend/detail/problem.hpp"

// PacketBlock<__m512, 16> drops __m512's alignment attribute in the template argument, which GCC
// reports; Eigen's own uses of PacketBlock are compiled under the same suppression.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace attend {
namespace detail {

#if defined(EIGEN_VECTORIZE_AVX512)
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
/// where dst is 32-byte aligned (see output_is_streamed).
template <typename T>
EIGEN_ALWAYS_INLINE void store16_from_float(T* dst, __m512 x, bool stream = false) {
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
#endif

/// A square register transpose of one block of packets: transpose16 for AVX-512 floats, Eigen's
/// ptranspose otherwise.
template <typename Packet, int N>
EIGEN_ALWAYS_INLINE void transpose_block(Eigen::internal::PacketBlock<Packet, N>& b) {
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (std::is_same_v<Packet, __m512> && N == 16) {
    transpose16(b);
  } else {
    Eigen::internal::ptranspose(b);
  }
#else
  Eigen::internal::ptranspose(b);
#endif
}

/// Whether the query pack and the epilogue move T through 16 x 16 register transposes: f32, and with
/// AVX-512 also bf16/half (load16_as_float, store16_from_float); other cases go element by element.
template <typename T>
#if defined(EIGEN_VECTORIZE_AVX512)
constexpr bool kTransposeBlocks = std::is_same_v<acc_t<T>, float>;
#else
constexpr bool kTransposeBlocks = std::is_same_v<T, float>;
#endif

/// Q^T of one query tile, pre-multiplied by the scale: qt[d * Br + ii] = scale * q[b, h, i0 + ii, d],
/// and 0 in the columns past the last query (nq < Br), whose results are never written out.
template <typename T>
void pack_query_tile(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, acc_t<T>* qt) {
  using Acc = acc_t<T>;
  constexpr Index Br = KernelTraits<Acc>::kBlockQ;
  // The padding columns. The register transposes below store whole blocks of L columns, zeros
  // included, for the rows of d in whole blocks of L; only the rest is zeroed here. At N = 62 and
  // D = 64 that is nothing: a fill of each row's 2 padding columns was 64 calls to memset, 1% of a tile.
  constexpr Index L = KernelTraits<Acc>::kLanes;
  const Index covered = kTransposeBlocks<T> ? std::min(Br, (nq + L - 1) / L * L) : nq;
  const Index d_covered = kTransposeBlocks<T> ? pb.D / L * L : 0;
  for (Index d = 0; d < pb.D; ++d) {
    for (Index ii = d < d_covered ? covered : nq; ii < Br; ++ii) qt[d * Br + ii] = Acc(0);
  }
  Index ii0 = 0;
  if constexpr (kTransposeBlocks<T>) {
    // Whole L x L blocks go through a register transpose: at N = 62 (BS-RoFormer's frequency axis)
    // a scalar transpose here and in the epilogue costs about a third of the tile's FMAs.
    using Packet = typename KernelTraits<Acc>::Packet;
    using namespace Eigen::internal;
    const Packet scale = pset1<Packet>(pb.scale);
    // The last, partial block too (62 = 3 x 16 + 14 queries at N = 62): its missing rows are zero
    // packets, which land in the padding columns that must be zero anyway.
    const Index qs = pb.q.stride(2);
    const auto load_row = [&](const T* p) {
      if constexpr (std::is_same_v<T, float>) {
        return pmul(scale, ploadu<Packet>(p));
      } else {
#if defined(EIGEN_VECTORIZE_AVX512)
        return pmul(scale, load16_as_float(p));
#else
        return scale;  // unreachable: kTransposeBlocks is false for 16-bit T without AVX-512
#endif
      }
    };
    for (; ii0 < nq; ii0 += L) {
      const Index rows = std::min<Index>(L, nq - ii0);
      const T* q0 = &pb.q(b, h, i0 + ii0, 0);  // the block's first query row; rows qs apart
      Index d0 = 0;
      for (; d0 + L <= pb.D; d0 += L) {
        // Row addresses from one base and stride, and no test per row in whole blocks: computing
        // each address through the view's four strides was a third of the pack at N = 62.
        PacketBlock<Packet, L> blk;
        if (rows == L) {
          for (int r = 0; r < L; ++r) blk.packet[r] = load_row(q0 + r * qs + d0);
        } else {
          for (int r = 0; r < L; ++r) blk.packet[r] = r < rows ? load_row(q0 + r * qs + d0) : pset1<Packet>(Acc(0));
        }
        transpose_block(blk);
        for (int r = 0; r < L; ++r) pstore(qt + (d0 + r) * Br + ii0, blk.packet[r]);
      }
      for (; d0 < pb.D; ++d0)
        for (Index r = 0; r < rows; ++r) qt[d0 * Br + ii0 + r] = pb.scale * static_cast<Acc>(pb.q(b, h, i0 + ii0 + r, d0));
    }
  }
  for (Index ii = ii0; ii < nq; ++ii) {
    const T* row = &pb.q(b, h, i0 + ii, 0);
    for (Index d = 0; d < pb.D; ++d) qt[d * Br + ii] = pb.scale * static_cast<Acc>(row[d]);
  }
}


/// dst[0, n) = src[0, n) converted to float, a packet at a time: with AVX-512 by the instructions
/// above, elsewhere where Eigen has a 16-bit packet as wide as the float one (AVX2: 8 lanes). A scalar
/// bf16 or half conversion costs as much as the FMAs that use the value.
template <typename T>
EIGEN_ALWAYS_INLINE void convert_row(const T* src, float* dst, Index n) {
  using namespace Eigen::internal;
  constexpr Index L = KernelTraits<float>::kLanes;
  Index d = 0;
#if defined(EIGEN_VECTORIZE_AVX512)
  for (; d + L <= n; d += L) _mm512_storeu_ps(dst + d, load16_as_float(src + d));
#else
  using Packet = typename KernelTraits<float>::Packet;  // here: with AVX-512 they would be unused
  using Packet16 = typename packet_traits<T>::type;
  // Only where Eigen has the vectorised cast: NEON's Packet4bf has none (Eigen 3.4), and the generic
  // pcast, a static_cast of the packet, does not compile there.
  if constexpr (packet_traits<T>::Vectorizable && unpacket_traits<Packet16>::size == L &&
                type_casting_traits<T, float>::VectorizedCast) {
    for (; d + L <= n; d += L) pstoreu(dst + d, pcast<Packet16, Packet>(ploadu<Packet16>(src + d)));
  }
#endif
  for (; d < n; ++d) dst[d] = static_cast<float>(src[d]);
}

/// Rows [j0, j0 + n) of k or v for (b, kv head hk) as Acc: in place when T is Acc (returns the
/// source and its row stride), else converted into `buf` (row stride = the row length).
template <typename T>
const acc_t<T>* kv_rows(const ConstView<T, 4>& x, Index b, Index hk, Index j0, Index n, acc_t<T>* buf,
                        Index& row_stride) {
  using Acc = acc_t<T>;
  const T* src = &x(b, hk, j0, 0);
  if constexpr (std::is_same_v<T, Acc>) {
    row_stride = x.stride(2);
    return src;
  } else {
    const Index len = x.dimension(3);
    for (Index j = 0; j < n; ++j) convert_row(src + j * x.stride(2), buf + j * len, len);
    row_stride = len;
    return buf;
  }
}

/// The key range a query tile can see under causality: [0, end). end <= 0 means none.
template <typename T>
Index visible_key_end(const Problem<T>& pb, Index i0, Index nq) {
  if (pb.causal == Causal::none) return pb.Nk;
  return std::min(pb.Nk, std::max<Index>(0, i0 + nq + pb.causal_offset));
}

/// Applies causality (where the tile crosses the diagonal) and the mask to a score tile.
/// Masked scores are overwritten with -inf, not added to, so a NaN or Inf in a hidden key cannot leak.
template <typename T>
void mask_score_tile(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Index j0, Index nk, acc_t<T>* s) {
  using Acc = acc_t<T>;
  constexpr Index Br = KernelTraits<Acc>::kBlockQ;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  // The first query sees keys up to i0 + offset; if the tile's last key is within that, no query
  // of the tile is cut by the diagonal.
  if (pb.causal != Causal::none && j0 + nk - 1 > i0 + pb.causal_offset) {
    for (Index ii = 0; ii < nq; ++ii) {
      const Index first_hidden = std::max<Index>(0, i0 + ii + pb.causal_offset + 1 - j0);
      for (Index jj = first_hidden; jj < nk; ++jj) s[jj * Br + ii] = kNegInf;
    }
  }
  if (pb.keep != nullptr) {
    for (Index ii = 0; ii < nq; ++ii) {
      const bool* m = pb.keep + pb.mask_offset(b, h, i0 + ii, j0);
      const Index js = pb.mask_strides[3];
      for (Index jj = 0; jj < nk; ++jj) {
        if (!m[jj * js]) s[jj * Br + ii] = kNegInf;
      }
    }
  } else if (pb.bias != nullptr) {
    for (Index ii = 0; ii < nq; ++ii) {
      const T* m = pb.bias + pb.mask_offset(b, h, i0 + ii, j0);
      const Index js = pb.mask_strides[3];
      for (Index jj = 0; jj < nk; ++jj) s[jj * Br + ii] += static_cast<Acc>(m[jj * js]);
    }
  }
}

/// Zeroes the dropped probabilities of a tile (after the row sums took them in).
template <typename T>
void dropout_tile(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Index j0, Index nk, acc_t<T>* p) {
  constexpr Index Br = KernelTraits<acc_t<T>>::kBlockQ;
  for (Index ii = 0; ii < nq; ++ii) pb.dropout.apply_row(b, h, i0 + ii, j0, nk, p + ii, Br);
}

/// Whether the tiled kernels write the output with non-temporal stores: when it is larger than the
/// caches can keep until anyone reads it (KernelTraits::kStreamOutputBytes), an ordinary store first
/// reads each line from memory to own it, a third of the traffic of a short-sequence call. At
/// bsr_freq (101 MB of output, 62-query tiles) that read cost 6-7% of the time on Zen 4.
template <typename T>
bool output_is_streamed(const Problem<T>& pb) {
  return static_cast<std::size_t>(pb.B * pb.Hq * pb.Nq * pb.Dv) * sizeof(T) >= KernelTraits<acc_t<T>>::kStreamOutputBytes;
}

/// Orders a worker's non-temporal stores before whatever tells another thread that it is done.
inline void stream_fence() {
#if defined(EIGEN_VECTORIZE_AVX512)
  _mm_sfence();
#endif
}

/// lse[b, h, i0 + ii] for the tile's queries, where the caller asked for it.
template <typename T, int Br>
void write_tile_lse(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const OnlineSoftmax<acc_t<T>, Br>& sm) {
  if (pb.lse.data() == nullptr) return;
  for (Index ii = 0; ii < nq; ++ii) pb.lse(b, h, i0 + ii) = sm.lse(static_cast<int>(ii));
}

/// Writes out[b, h, i0 + ii, :] = O^T[:, ii] / row_sum (times 1/(1-p) under dropout) and the lse.
template <typename T, int Br>
void write_tile_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* ot,
                       const OnlineSoftmax<acc_t<T>, Br>& sm) {
  using Acc = acc_t<T>;
  const Acc extra = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
  Index ii0 = 0;
  [[maybe_unused]] const bool stream = output_is_streamed(pb);
  if constexpr (kTransposeBlocks<T>) {
    // Register transposes of whole L x L blocks, as in pack_query_tile.
    using Packet = typename KernelTraits<Acc>::Packet;
    constexpr int L = KernelTraits<Acc>::kLanes;
    using namespace Eigen::internal;
    // Whole blocks of O^T columns, the partial last one included (O^T has all Br columns); only the
    // rows of real queries are stored.
    for (; ii0 < nq; ii0 += L) {
      const Index rows = std::min<Index>(L, nq - ii0);
      Packet inv[L];
      for (int r = 0; r < L; ++r) inv[r] = pset1<Packet>(r < rows ? sm.inv_sum(static_cast<int>(ii0 + r), extra) : Acc(0));
      Index d0 = 0;
      for (; d0 + L <= pb.Dv; d0 += L) {
        PacketBlock<Packet, L> blk;
        for (int r = 0; r < L; ++r) blk.packet[r] = pload<Packet>(ot + (d0 + r) * Br + ii0);
        transpose_block(blk);
        for (Index r = 0; r < rows; ++r) {
#if defined(EIGEN_VECTORIZE_AVX512)
          if constexpr (std::is_same_v<T, float>) {
            store16_float(&pb.out(b, h, i0 + ii0 + r, d0), pmul(blk.packet[r], inv[r]), stream);
          } else {
            store16_from_float(&pb.out(b, h, i0 + ii0 + r, d0), pmul(blk.packet[r], inv[r]), stream);
          }
#else
          pstoreu(&pb.out(b, h, i0 + ii0 + r, d0), pmul(blk.packet[r], inv[r]));
#endif
        }
      }
      for (Index r = 0; r < rows; ++r) {
        const Acc iv = sm.inv_sum(static_cast<int>(ii0 + r), extra);
        for (Index d = d0; d < pb.Dv; ++d) pb.out(b, h, i0 + ii0 + r, d) = static_cast<T>(ot[d * Br + ii0 + r] * iv);
      }
    }
  }
  for (Index ii = ii0; ii < nq; ++ii) {
    const Acc inv = sm.inv_sum(static_cast<int>(ii), extra);
    T* row = &pb.out(b, h, i0 + ii, 0);
    for (Index d = 0; d < pb.Dv; ++d) row[d] = static_cast<T>(ot[d * Br + ii] * inv);
  }
  write_tile_lse(pb, b, h, i0, nq, sm);
}

/// write_tile_output for O with a query per row (nq x Dv, row stride Dv: gemm_rows), so each output
/// row is one scaled copy. At N = 62 the 16 x 16 transposes of O^T were 6% of a tile.
template <typename T, int Br>
void write_row_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* o,
                      const OnlineSoftmax<acc_t<T>, Br>& sm) {
  using Acc = acc_t<T>;
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  using namespace Eigen::internal;
  const Acc extra = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
  const Index Dv = pb.Dv;
  [[maybe_unused]] const bool stream = output_is_streamed(pb);
  for (Index ii = 0; ii < nq; ++ii) {
    const Acc inv = sm.inv_sum(static_cast<int>(ii), extra);
    const Packet invp = pset1<Packet>(inv);
    const Acc* src = o + ii * Dv;
    T* dst = &pb.out(b, h, i0 + ii, 0);
    Index d = 0;
#if defined(EIGEN_VECTORIZE_AVX512)
    if constexpr (std::is_same_v<Acc, float>) {
      for (; d + L <= Dv; d += L) {
        if constexpr (std::is_same_v<T, float>) {
          store16_float(dst + d, pmul(ploadu<Packet>(src + d), invp), stream);
        } else {
          store16_from_float(dst + d, pmul(ploadu<Packet>(src + d), invp), stream);
        }
      }
    }
#endif
    if constexpr (std::is_same_v<T, Acc>) {
      for (; d + L <= Dv; d += L) pstoreu(dst + d, pmul(ploadu<Packet>(src + d), invp));
    }
    for (; d < Dv; ++d) dst[d] = static_cast<T>(src[d] * inv);
  }
  write_tile_lse(pb, b, h, i0, nq, sm);
}

/// The epilogue for either layout of the output accumulator: O with a query per row (`rows`,
/// nq x Dv) or O^T (Dv x Br).
template <typename T, int Br>
void write_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* acc,
                  const OnlineSoftmax<acc_t<T>, Br>& sm, bool rows) {
  if (rows) {
    write_row_output<T, Br>(pb, b, h, i0, nq, acc, sm);
  } else {
    write_tile_output<T, Br>(pb, b, h, i0, nq, acc, sm);
  }
}

/// Requests the cache line at p into L2 (prefetcht1 on x86; a plain prefetch elsewhere).
EIGEN_ALWAYS_INLINE void prefetch_l2(const void* p) {
#if defined(__SSE__) || defined(_M_X64)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#else
  Eigen::internal::prefetch(static_cast<const char*>(p));
#endif
}

/// Rounds a byte count up to the scratch alignment.
inline std::size_t align_up(std::size_t bytes, std::size_t align = 64) { return (bytes + align - 1) / align * align; }

}  // namespace detail
}  // namespace attend

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_DETAIL_TILES_HPP
