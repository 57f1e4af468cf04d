#ifndef ATTEND_DETAIL_KERNEL_EPILOGUE_HPP
#define ATTEND_DETAIL_KERNEL_EPILOGUE_HPP

// The epilogue of the query-tiled kernels: out = O / l (times 1/(1-p) under dropout) and lse, from
// either layout of the output accumulator: O with a query per row (gemm_rows) or O^T (gemm_panel).

#include <algorithm>    // std::min
#include <cstddef>      // std::size_t
#include <cstdint>      // std::uintptr_t, std::uint32_t, std::uint64_t
#include <cstring>      // std::memcpy
#include <type_traits>  // std::conditional_t, std::is_invocable_v

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/online_softmax.hpp"
#include "attend/detail/problem.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Whether a kernel writes `bytes` of results with non-temporal stores: when they are more than the
/// caches can keep until anyone reads them (TileTraits::kStreamOutputBytes), an ordinary store first
/// reads each line from memory to own it, a third of the traffic of a short-sequence call. At
/// bsr_freq (101 MB of output, 62-query tiles) that read cost 6-7% of the forward's time on Zen 4.
inline bool streams_results(std::size_t bytes) { return bytes >= TileTraits::kStreamOutputBytes; }

/// Whether the tiled kernels write the forward's output with non-temporal stores (streams_results).
template <typename T>
bool output_is_streamed(const Problem<T>& pb) {
  return streams_results(static_cast<std::size_t>(pb.B * pb.Hq * pb.Nq * pb.Dv) * sizeof(T));
}

/// The factor that turns the accumulator into the output: 1/(1-p) under dropout, else 1.
template <typename T>
acc_t<T> output_factor(const Problem<T>& pb) {
  return static_cast<acc_t<T>>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
}

/// lse[b, h, i0 + ii] for the tile's queries, where the caller asked for it.
template <typename T, int Br>
void write_tile_lse(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const OnlineSoftmax<acc_t<T>, Br>& sm) {
  if (pb.lse.data() == nullptr) return;
  for (Index ii = 0; ii < nq; ++ii) pb.lse(b, h, i0 + ii) = sm.lse(static_cast<int>(ii));
}

/// out[b, h, i0 + ii, :] = O^T[:, ii] / row_sum (times 1/(1-p) under dropout).
template <typename T, int Br>
void write_transposed_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* ot,
                             const OnlineSoftmax<acc_t<T>, Br>& sm) {
  using Acc = acc_t<T>;
  const Acc extra = output_factor(pb);
  Index ii0 = 0;
  [[maybe_unused]] const bool stream = output_is_streamed(pb);
  if constexpr (kPacketIO<T>) {
    // Register transposes of whole L x L blocks, as in pack_transposed.
    using Packet = PacketOf<Acc>;
    constexpr int L = kLanesOf<Acc>;
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
        for (Index r = 0; r < rows; ++r) store_packet(&pb.out(b, h, i0 + ii0 + r, d0), pmul(blk.packet[r], inv[r]), stream);
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
}

/// The factor of every row of write_rows: one value (the backward's scale), or a function of the
/// row (the forward's 1/l per query).
template <typename Acc, typename Factor>
EIGEN_ALWAYS_INLINE Acc row_factor(const Factor& f, Index r) {
  if constexpr (std::is_invocable_v<const Factor&, Index>) {
    return static_cast<Acc>(f(r));
  } else {
    return static_cast<Acc>(f);
  }
}

/// Writes rows x n results: dst row r (`stride` apart) = T(factor(r) · src row r (`ld` apart)), each
/// value rounded to T once; `stream`: non-temporal stores where the target has them and a packet's
/// address is aligned for them (the caller's worker ends with stream_fence before a hand-off).
///
/// Where source and destination are each one span (ld == stride == n: a dense tensor's rows and an
/// unpadded accumulator), the span is written from its first packet-aligned address on, a packet
/// straddling two rows taking each lane's own factor, so every packet store is aligned whatever the
/// view's alignment. A program built for the baseline (attend::dispatch's users) has Eigen's 16-byte
/// alignment: row by row, each of a 64-float row's four AVX-512 stores then split a cache line and
/// none could be non-temporal, and the epilogue took 16.6% of flash f32 bsr_freq's time, against
/// 5.5% with a 64-byte-aligned output (one thread, Sapphire Rapids-class Xeon, perf). Each value is
/// the same product, rounded the same way, on either route, so the bits do not depend on it.
template <typename T, typename Factor>
void write_rows(const acc_t<T>* src, Index ld, Index rows, Index n, const Factor& factor, T* dst, Index stride,
                [[maybe_unused]] bool stream = false) {
  using Acc = acc_t<T>;
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  if constexpr (kStorePacket<T>) {
    if (ld == n && stride == n && n >= L) {
      const Index total = rows * n;
      constexpr std::size_t kAlignBytes = static_cast<std::size_t>(L) * sizeof(T);
      const std::size_t misalign = reinterpret_cast<std::uintptr_t>(dst) % kAlignBytes;
      Index e = std::min<Index>(total, static_cast<Index>((kAlignBytes - misalign) % kAlignBytes / sizeof(T)));
      for (Index i = 0; i < e; ++i) dst[i] = static_cast<T>(row_factor<Acc>(factor, i / n) * src[i]);
      Index r = e / n;          // the row of the packet at e
      Index row_end = (r + 1) * n;
      Acc fr = row_factor<Acc>(factor, r);
      // A straddling packet's factors come from a lane mask (all ones in the lanes of row r): built
      // in memory when the split point changes, which for n a multiple of L is once per call.
      // Built per packet from a lanes[] array, the store-forwarding stall of its reload cost more
      // than the alignment gained.
      using Bits = std::conditional_t<sizeof(Acc) == 8, std::uint64_t, std::uint32_t>;
      static_assert(sizeof(Bits) == sizeof(Acc), "a lane mask needs an unsigned type of the lane's size");
      Index mask_split = -1;
      Packet mask = pset1<Packet>(Acc(0));
      for (; e + L <= total; e += L) {
        Packet f;
        if (e + L <= row_end) {
          f = pset1<Packet>(fr);
        } else {  // rows r and r + 1 (n >= L: never three); r + 1 < rows, as e + L <= total
          const Index split = row_end - e;  // lanes of row r
          if (split != mask_split) {
            alignas(64) Acc lanes[L];
            for (Index l = 0; l < L; ++l) {
              const Bits b = l < split ? ~Bits(0) : Bits(0);
              std::memcpy(&lanes[l], &b, sizeof(Acc));
            }
            mask = pload<Packet>(lanes);
            mask_split = split;
          }
          f = por(pand(mask, pset1<Packet>(fr)), pandnot(pset1<Packet>(row_factor<Acc>(factor, r + 1)), mask));
        }
        store_packet(dst + e, pmul(f, ploadu<Packet>(src + e)), stream);
        if (e + L >= row_end && r + 1 < rows) {  // the next packet starts in the next row
          ++r;
          row_end += n;
          fr = row_factor<Acc>(factor, r);
        }
      }
      for (; e < total; ++e) dst[e] = static_cast<T>(row_factor<Acc>(factor, e / n) * src[e]);
      return;
    }
  }
  for (Index r = 0; r < rows; ++r) {
    const Acc fr = row_factor<Acc>(factor, r);
    const Acc* s = src + r * ld;
    T* d = dst + r * stride;
    Index e = 0;
    if constexpr (kStorePacket<T>) {
      const Packet f = pset1<Packet>(fr);
      for (; e + L <= n; e += L) store_packet(d + e, pmul(f, ploadu<Packet>(s + e)), stream);
    }
    for (; e < n; ++e) d[e] = static_cast<T>(fr * s[e]);
  }
}

/// out[b, h, i0 + ii, :] from O with a query per row (nq x Dv, row stride Dv), each row one scaled
/// copy. At N = 62 the 16 x 16 transposes of O^T were 6% of a tile.
template <typename T, int Br>
void write_row_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* o,
                      const OnlineSoftmax<acc_t<T>, Br>& sm) {
  const acc_t<T> extra = output_factor(pb);
  const auto inv_sum = [&sm, extra](Index ii) { return sm.inv_sum(static_cast<int>(ii), extra); };
  write_rows<T>(o, pb.Dv, nq, pb.Dv, inv_sum, &pb.out(b, h, i0, 0), pb.out.stride(2), output_is_streamed(pb));
}

/// The epilogue for either layout of the output accumulator: O with a query per row (`rows`, nq x
/// Dv) or O^T (Dv x Br); then the lse.
template <typename T, int Br>
void write_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* acc,
                  const OnlineSoftmax<acc_t<T>, Br>& sm, bool rows) {
  if (rows) {
    write_row_output<T, Br>(pb, b, h, i0, nq, acc, sm);
  } else {
    write_transposed_output<T, Br>(pb, b, h, i0, nq, acc, sm);
  }
  write_tile_lse<T, Br>(pb, b, h, i0, nq, sm);
}

}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_DETAIL_KERNEL_EPILOGUE_HPP
