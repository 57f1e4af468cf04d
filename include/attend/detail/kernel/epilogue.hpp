#ifndef ATTEND_DETAIL_KERNEL_EPILOGUE_HPP
#define ATTEND_DETAIL_KERNEL_EPILOGUE_HPP

// The epilogue of the query-tiled kernels: out = O / l (times 1/(1-p) under dropout) and lse, from
// either layout of the output accumulator: O with a query per row (gemm_rows) or O^T (gemm_panel).

#include <algorithm>  // std::min
#include <cstddef>    // std::size_t

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

/// out[b, h, i0 + ii, :] from O with a query per row (nq x Dv, row stride Dv), each row one scaled
/// copy. At N = 62 the 16 x 16 transposes of O^T were 6% of a tile.
template <typename T, int Br>
void write_row_output(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, const acc_t<T>* o,
                      const OnlineSoftmax<acc_t<T>, Br>& sm) {
  using Acc = acc_t<T>;
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  const Acc extra = output_factor(pb);
  const Index Dv = pb.Dv;
  [[maybe_unused]] const bool stream = output_is_streamed(pb);
  for (Index ii = 0; ii < nq; ++ii) {
    const Acc inv = sm.inv_sum(static_cast<int>(ii), extra);
    const Packet invp = pset1<Packet>(inv);
    const Acc* src = o + ii * Dv;
    T* dst = &pb.out(b, h, i0 + ii, 0);
    Index d = 0;
    if constexpr (kStorePacket<T>) {
      for (; d + L <= Dv; d += L) store_packet(dst + d, pmul(ploadu<Packet>(src + d), invp), stream);
    }
    for (; d < Dv; ++d) dst[d] = static_cast<T>(src[d] * inv);
  }
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
