#ifndef ATTEND_DETAIL_KERNEL_TILES_HPP
#define ATTEND_DETAIL_KERNEL_TILES_HPP

// Tile-level steps of the query-tiled kernels (flash, mem_efficient, and the backward): packing a
// query tile, reading a key/value tile in the accumulation type, and dropout on a probability tile.
// Scores are transposed, s[jj * Br + ii] for key j0 + jj and query i0 + ii (kernel/microkernel.hpp).

#include <algorithm>  // std::min
#include <cstddef>    // std::size_t
#include <type_traits>

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/problem.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// (scale · X)^T of nq rows of a (rows x n) operand: xt[d * Br + ii] = scale · x[ii][d] for rows ii <
/// nq (the first at `x0`, rows `xs` elements apart), and 0 in the columns past the last row (nq < Br),
/// whose results are never written out. The query tile's pack: X = q's rows, n = D.
template <typename T>
void pack_transposed(const T* x0, Index xs, Index nq, Index n, acc_t<T> scale, acc_t<T>* xt) {
  using Acc = acc_t<T>;
  constexpr Index Br = TileTraits::kBlockQ;
  // The padding columns. The register transposes below store whole blocks of L columns, zeros
  // included, for the rows of d in whole blocks of L; only the rest is zeroed here. At N = 62 and
  // D = 64 that is nothing: a fill of each row's 2 padding columns was 64 calls to memset, 1% of a tile.
  constexpr Index L = kLanesOf<Acc>;
  const Index covered = kPacketIO<T> ? std::min(Br, (nq + L - 1) / L * L) : nq;
  const Index d_covered = kPacketIO<T> ? n / L * L : 0;
  for (Index d = 0; d < n; ++d) {
    for (Index ii = d < d_covered ? covered : nq; ii < Br; ++ii) xt[d * Br + ii] = Acc(0);
  }
  Index ii0 = 0;
  if constexpr (kPacketIO<T>) {
    // Whole L x L blocks go through a register transpose: at N = 62 (BS-RoFormer's frequency axis)
    // a scalar transpose here and in the epilogue costs about a third of the tile's FMAs.
    using Packet = PacketOf<Acc>;
    using namespace Eigen::internal;
    const Packet s = pset1<Packet>(scale);
    // The last, partial block too (62 = 3 x 16 + 14 queries at N = 62): its missing rows are zero
    // packets, which land in the padding columns that must be zero anyway.
    for (; ii0 < nq; ii0 += L) {
      const Index rows = std::min<Index>(L, nq - ii0);
      const T* r0 = x0 + ii0 * xs;  // the block's first row; rows xs apart
      Index d0 = 0;
      for (; d0 + L <= n; d0 += L) {
        // Row addresses from one base and stride, and no test per row in whole blocks: computing
        // each address through the view's four strides was a third of the pack at N = 62.
        PacketBlock<Packet, L> blk;
        if (rows == L) {
          for (int r = 0; r < L; ++r) blk.packet[r] = pmul(s, load_packet(r0 + r * xs + d0));
        } else {
          for (int r = 0; r < L; ++r) blk.packet[r] = r < rows ? pmul(s, load_packet(r0 + r * xs + d0)) : pset1<Packet>(Acc(0));
        }
        transpose_block(blk);
        for (int r = 0; r < L; ++r) pstore(xt + (d0 + r) * Br + ii0, blk.packet[r]);
      }
      for (; d0 < n; ++d0)
        for (Index r = 0; r < rows; ++r) xt[d0 * Br + ii0 + r] = scale * static_cast<Acc>(r0[r * xs + d0]);
    }
  }
  for (Index ii = ii0; ii < nq; ++ii) {
    const T* row = x0 + ii * xs;
    for (Index d = 0; d < n; ++d) xt[d * Br + ii] = scale * static_cast<Acc>(row[d]);
  }
}

/// Q^T of one query tile, pre-multiplied by the scale: qt[d * Br + ii] = scale · q[b, h, i0 + ii, d].
template <typename T>
void pack_query_tile(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, acc_t<T>* qt) {
  pack_transposed(&pb.q(b, h, i0, 0), pb.q.stride(2), nq, pb.D, pb.scale, qt);
}

/// Rows of an operand in the accumulation type: where they are and how far apart.
template <typename Acc>
struct Rows {
  const Acc* ptr;
  Index stride;
};

/// Rows [j0, j0 + n) of k or v for (b, kv head hk) as acc_t<T>: in place when T is acc_t<T>, else
/// converted into `buf` (row stride = the row length).
template <typename T>
Rows<acc_t<T>> kv_rows(const ConstView<T, 4>& x, Index b, Index hk, Index j0, Index n, acc_t<T>* buf) {
  const T* src = &x(b, hk, j0, 0);
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    return {src, x.stride(2)};
  } else {
    const Index len = x.dimension(3);
    for (Index j = 0; j < n; ++j) convert_row(src + j * x.stride(2), buf + j * len, len);
    return {buf, len};
  }
}

/// Zeroes the dropped probabilities of a tile (after the row sums took them in).
template <typename T, int Br>
void dropout_tile(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Index j0, Index nk, acc_t<T>* p) {
  for (Index ii = 0; ii < nq; ++ii) pb.dropout.apply_row(b, h, i0 + ii, j0, nk, p + ii, Br);
}

}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_DETAIL_KERNEL_TILES_HPP
