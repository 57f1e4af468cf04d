#ifndef ATTEND_DETAIL_FORWARD_DECODE_BLOCKS_HPP
#define ATTEND_DETAIL_FORWARD_DECODE_BLOCKS_HPP

// The decode kernel's register blocks (forward/decode.hpp), with D (or Dv) along the lanes:
//   decode_scores_block   s[r][c] = q[r] · k[c] for up to 4 rows (2 with 16 registers) and 4 keys,
//                         any multiply-add policy (FmaOps<float>, Bf16PairOps), reduced by
//                         reduce_score_block
//   decode_pv_block       o[r] = α[r] · o[r] + Σ_jj p[r][jj] · v[jj], up to 4 rows, 4 packets of
//                         columns (2 with 16 registers)
//   (the block shapes: DecodeTraits)
//   dot_row, decode_pv_rows   the row-at-a-time forms, for targets without the blocked ones
// and the prefetcher that hands out the next keys' lines inside the score blocks.

#include <algorithm>  // std::min, std::max

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/tensor.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// The K and V rows of 4 keys to request into L2, a cache line at a time: line(t) requests line t
/// of each row. The first score block of each 4 keys calls it once per 64 bytes of D, so that the
/// requests interleave with the multiply-adds instead of arriving as a burst (see
/// DecodeTraits::kPrefetchKeys).
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

/// s[r * lds + c] = scale · q[r] · k[c] for RB <= DecodeTraits::kScoreRows rows (q rows ldq apart)
/// and 4 keys (k[c]), with
/// one transpose-and-add tree at the end instead of one horizontal sum per (row, key). Elem is the
/// storage of q and k (float, or bf16 bits for Bf16PairOps); a packet holds kLanes · kValuesPerStep
/// of them. `pf` (the first row block only) hands out the next keys' lines.
///
/// Why: with D along the lanes, a row-at-a-time dot product loads its key again for every row and
/// ends in a 4-step horizontal sum per score: 16 loads and about 12 shuffles and adds for 8 FMAs at
/// D = 128, where Zen 4 issues one 512-bit load a cycle. Blocking 4 rows x 4 keys holds 16
/// accumulators, loads each key and query packet once per block (8 loads for 16 FMAs), and reduces
/// the 16 accumulators with 18 shuffles and 15 adds, about 11 instructions per key. With the value
/// blocks below, the kernel went from 44 to 33 ns per key with K and V in cache (4 rows, D = 128,
/// one Zen 4 thread), and no longer spends a third of its time on horizontal sums.
template <int RB, class Ops, typename Elem>
EIGEN_ALWAYS_INLINE void decode_scores_block(const Elem* q, Index ldq, const Elem* const* k, Index D,
                                             typename Ops::Scalar scale, typename Ops::Scalar* s, Index lds,
                                             const DecodePrefetch* pf) {
  constexpr int R = DecodeTraits::kScoreRows;
  static_assert(RB >= 1 && RB <= R, "a score block has 1 to kScoreRows rows");
  using BUnit = typename Ops::BUnit;
  using BPacket = typename Ops::BPacket;
  constexpr Index W = Ops::kLanes * Ops::kValuesPerStep;  // values of D per packet
  // Packets per 64-byte line: 1 with AVX-512, 2 with AVX2.
  constexpr Index kPerLine = std::max<Index>(1, 64 / (W * static_cast<Index>(sizeof(Elem))));
  const auto at = [](const Elem* p, Index d) { return reinterpret_cast<const BUnit*>(p + d); };
  typename Ops::Packet acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = Ops::zero();
  Index d = 0;
  for (; d + W <= D; d += W) {
    BPacket k0 = Ops::template load_b<false>(at(k[0], d)), k1 = Ops::template load_b<false>(at(k[1], d));
    BPacket k2 = Ops::template load_b<false>(at(k[2], d)), k3 = Ops::template load_b<false>(at(k[3], d));
    keep_in_registers(k0, k1, k2, k3);
    if (pf != nullptr && (d / W) % kPerLine == 0) pf->line(d / W / kPerLine);
    for (int r = 0; r < RB; ++r) {
      const BPacket qr = Ops::template load_b<false>(at(q + r * ldq, d));
      acc[r][0] = Ops::madd(qr, k0, acc[r][0]);
      acc[r][1] = Ops::madd(qr, k1, acc[r][1]);
      acc[r][2] = Ops::madd(qr, k2, acc[r][2]);
      acc[r][3] = Ops::madd(qr, k3, acc[r][3]);
    }
  }
  if (d < D) {  // D not a multiple of a packet: the missing lanes load as 0
    const Index n = D - d;
    const BPacket k0 = Ops::load_b_partial(at(k[0], d), n), k1 = Ops::load_b_partial(at(k[1], d), n);
    const BPacket k2 = Ops::load_b_partial(at(k[2], d), n), k3 = Ops::load_b_partial(at(k[3], d), n);
    for (int r = 0; r < RB; ++r) {
      const BPacket qr = Ops::load_b_partial(at(q + r * ldq, d), n);
      acc[r][0] = Ops::madd(qr, k0, acc[r][0]);
      acc[r][1] = Ops::madd(qr, k1, acc[r][1]);
      acc[r][2] = Ops::madd(qr, k2, acc[r][2]);
      acc[r][3] = Ops::madd(qr, k3, acc[r][3]);
    }
  }
  if (pf != nullptr) {
    for (Index t = (D / W + kPerLine - 1) / kPerLine; t < pf->lines; ++t) pf->line(t);
  }
  reduce_score_block<RB>(acc, scale, s, lds);
}

/// Pins a value block's packets in registers (keep_in_registers).
template <typename Packet, int NP>
EIGEN_ALWAYS_INLINE void keep_values_in_registers(Packet (&v)[NP]) {
  if constexpr (NP == 4) {
    keep_in_registers(v[0], v[1], v[2], v[3]);
  } else {
    for (int c = 0; c < NP; ++c) v[c] = in_register(v[c]);
  }
}

/// o[r][0, NP·L) = alpha[r] · o[r] + Σ_jj p[r][jj] · v[jj] for RB <= 4 rows and NP =
/// DecodeTraits::kValuePackets packets: NP·RB accumulators, each value packet loaded once for all RB
/// rows (16 FMAs for 4 loads and 4 broadcasts at NP = 4, where a row-at-a-time loop needs 8 loads
/// and 4 broadcasts for 8). `cols` (<= NP·L) columns are real: a partial block loads the missing ones
/// as 0 and does not store them.
template <int RB, typename Acc>
EIGEN_ALWAYS_INLINE void decode_pv_block(Acc* o, Index ldo, const Acc* p, Index ldp, const Acc* alpha, const Acc* v,
                                         Index ldv, Index nk, Index cols) {
  constexpr int NP = DecodeTraits::kValuePackets;
  static_assert(RB >= 1 && RB <= DecodeTraits::kValueRows, "at most kValueRows rows x kValuePackets packets");
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  Index n[NP];  // real lanes of each packet
  for (int c = 0; c < NP; ++c) n[c] = std::min<Index>(L, std::max<Index>(0, cols - L * c));
  const auto load = [&n](const Acc* src, int c) {
    return n[c] == L ? ploadu<Packet>(src) : n[c] == 0 ? pset1<Packet>(Acc(0)) : load_partial<Packet>(src, n[c]);
  };
  Packet acc[RB][NP];
  for (int r = 0; r < RB; ++r) {
    const Packet al = pset1<Packet>(alpha[r]);
    for (int c = 0; c < NP; ++c) acc[r][c] = pmul(al, load(o + r * ldo + L * c, c));
  }
  if (cols == NP * L) {
    for (Index jj = 0; jj < nk; ++jj) {
      const Acc* vj = v + jj * ldv;
      Packet vp[NP];
      for (int c = 0; c < NP; ++c) vp[c] = ploadu<Packet>(vj + c * L);
      keep_values_in_registers(vp);
      for (int r = 0; r < RB; ++r) {
        const Packet pr = pset1<Packet>(p[r * ldp + jj]);
        for (int c = 0; c < NP; ++c) acc[r][c] = pmadd(pr, vp[c], acc[r][c]);
      }
    }
  } else {
    for (Index jj = 0; jj < nk; ++jj) {
      const Acc* vj = v + jj * ldv;
      Packet vp[NP];
      for (int c = 0; c < NP; ++c) vp[c] = load(vj + c * L, c);
      keep_values_in_registers(vp);
      for (int r = 0; r < RB; ++r) {
        const Packet pr = pset1<Packet>(p[r * ldp + jj]);
        for (int c = 0; c < NP; ++c) acc[r][c] = pmadd(pr, vp[c], acc[r][c]);
      }
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < NP; ++c) {
      if (n[c] == L) {
        pstoreu(o + r * ldo + L * c, acc[r][c]);
      } else if (n[c] > 0) {
        store_partial(o + r * ldo + L * c, acc[r][c], n[c]);
      }
    }
}

/// Dot product of two contiguous Acc rows, D along the lanes (four accumulators hide FMA latency).
template <typename Acc>
EIGEN_ALWAYS_INLINE Acc dot_row(const Acc* a, const Acc* b, Index n) {
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
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

/// o[r] = alpha[r] · o[r] + Σ_jj p[r][jj] · v[jj] for RB rows at once, two packets of Dv at a time:
/// 2·RB accumulators stay in registers over the chunk's keys, each value packet is loaded once for
/// all RB rows, and the rescale rides on the first load of o instead of a pass of its own.
template <int RB, typename Acc>
EIGEN_ALWAYS_INLINE void decode_pv_rows(Acc* o, Index ldo, const Acc* p, Index ldp, const Acc* alpha, const Acc* v,
                                        Index ldv, Index nk, Index Dv) {
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
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

}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_DETAIL_FORWARD_DECODE_BLOCKS_HPP
