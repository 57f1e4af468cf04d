#ifndef ATTEND_DETAIL_FORWARD_FLASH_HPP
#define ATTEND_DETAIL_FORWARD_FLASH_HPP

// The flash path's query tiles: FlashAttention-2's forward loop on the CPU. Query tiles are the unit
// of work (parallel over b, h and query tile); each walks the key/value tiles it can see with an
// online softmax, so its scratch is O(tile) and nothing of size Nq x Nk ever exists.
//
// Per query tile (Br queries) and key tile (Bc keys; TileTraits):
//   S^T = K_j · (scale · Q)^T              (Bc x Br)   Products::scores
//   mask / causal on tiles that need it; S^T -> P^T = exp(S^T - m_new), l = α l + Σ_j P
//   O = α ∘ O + P · V_j                    (Br x Dv)   Products::values
// and at the end out = O / l, lse = m + log l. (Where Dv is not whole micro-kernel column blocks, the
// value product is O^T = α ∘ O^T + V_j^T · P^T instead, and the epilogue transposes.) The products
// are a policy (kernel/products.hpp): fp32 FMAs, bf16 pairs on AVX512_BF16, or bf16 AMX tiles; the
// skeleton is one.

#include <algorithm>  // std::fill, std::min
#include <cstddef>    // std::size_t

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/epilogue.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/microkernel.hpp"
#include "attend/detail/kernel/online_softmax.hpp"
#include "attend/detail/kernel/prefetch.hpp"
#include "attend/detail/kernel/products.hpp"
#include "attend/detail/kernel/tiles.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/scratch.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Scratch of one flash worker: the tile's statistics, scores and output accumulator, and the
/// products' operand buffers.
template <typename T, class Products>
struct FlashScratch {
  using Acc = typename Products::Acc;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;

  OnlineSoftmax<Acc, Br>* softmax;
  Acc* st;  // (Bc, Br)  S^T, then P^T
  Acc* ot;  // (Dv, Br)  O^T, or (Br, Dv) O, unnormalised (see flash_query_tile)
  typename Products::Operands ops;

  static FlashScratch carve(ScratchLayout& l, Index D, Index Dv) {
    FlashScratch w;
    w.softmax = l.take<OnlineSoftmax<Acc, Br>>(1);
    w.st = l.take<Acc>(static_cast<std::size_t>(Bc * Br));
    w.ot = l.take<Acc>(static_cast<std::size_t>(Dv * Br));
    w.ops = Products::carve(l, D, Dv);
    return w;
  }
};

/// One query tile of one (b, h): the whole FlashAttention-2 loop. `next` (optional) holds the lines
/// the worker's next tile starts with; they are requested a few at a time inside the register
/// blocks of the first key tile's two products (every kHookSteps values of k). `careful` is the
/// re-run of a tile whose accumulator came out with a NaN (kernel/zero_weights.hpp): zero weights
/// then skip their values.
template <typename T, class Products>
void flash_query_tile(const Problem<T>& pb, Index b, Index h, Index i0, FlashScratch<T, Products>& w,
                      LinePrefetcher* next = nullptr, bool careful = false) {
  using Acc = typename Products::Acc;
  constexpr Index Br = TileTraits::kBlockQ;
  constexpr Index Bc = TileTraits::kBlockK;
  const Index nq = std::min(Br, pb.Nq - i0);
  const Index hk = pb.kv_head(h);

  // ---- Prologue: Q^T and empty statistics. The first key tile overwrites the accumulator; it is
  // zeroed only where no tile will (no visible key: the epilogue multiplies it by 0, so it must not
  // hold NaN garbage) and for the careful re-run, which accumulates from the start.
  Products::pack_queries(pb, b, h, i0, nq, w.ops);
  w.softmax->reset();
  const Index j_end = visible_key_end(pb, i0, nq);
  if (careful || j_end <= 0) std::fill(w.ot, w.ot + pb.Dv * Br, Acc(0));
  // The accumulator: O with a query per row (gemm_rows) where Dv is whole column blocks, so the
  // epilogue copies rows; else O^T (gemm_panel), also in the careful re-run, whose value step works
  // on O^T. Both hold the same bits (kernel/microkernel.hpp).
  const bool o_rows = !careful && rows_fit<typename Products::Ops>(pb.Dv);

  // ---- Key tiles.
  for (Index j0 = 0; j0 < j_end; j0 += Bc) {
    const Index nk = std::min(Bc, j_end - j0);
    // The next tile's lines, spread over this key tile's full register blocks (a 62 x 62 tile at
    // D = 64: 20 blocks, 150 hook calls for 744 lines of q, k and v, so 5 lines at a time).
    const auto hand_out = spread_over(next, Products::hook_calls_of(pb, nq, nk, o_rows));

    Products::scores(pb, b, hk, j0, nk, w.ops, w.st, hand_out);
    mask_score_tile<T, static_cast<int>(Br)>(pb, b, h, i0, nq, j0, nk, w.st);
    w.softmax->update(w.st, nk);
    if (pb.dropout.active) dropout_tile<T, static_cast<int>(Br)>(pb, b, h, i0, nq, j0, nk, w.st);

    if (careful) {
      forget_nonfinite(w.ot, Br, w.softmax->rescale, pb.Dv, 1, Br);
      const bool dirty = Products::template careful_values<Store::rescale_add>(pb, b, hk, j0, nk, w.st, w.ops, w.ot,
                                                                               w.softmax->rescale);
      if (dirty) {
        add_nonfinite_value_terms(
            pb, b, hk, j0, nk, Br, [&](Index j, Index ii) { return Products::weight(w.ops, w.st, j, ii); },
            [&](Index ii, Index d) -> Acc& { return w.ot[d * Br + ii]; });
      }
      continue;
    }
    if (j0 == 0) {
      Products::template values<Store::overwrite>(pb, b, hk, j0, nk, nq, w.st, w.ops, w.ot, o_rows, nullptr, hand_out);
    } else {
      Products::template values<Store::rescale_add>(pb, b, hk, j0, nk, nq, w.st, w.ops, w.ot, o_rows,
                                                    w.softmax->rescale, hand_out);
    }
    if (next != nullptr) next->drain();
  }
  if (next != nullptr) next->drain();  // no visible key

  // ---- A NaN here is either a NaN input reaching its rows, or 0 · Inf from a value this tile's
  // weights hide: only the careful re-run tells them apart (a Dv x 64 scan, once per tile).
  if (!careful && any_nan(w.ot, o_rows ? nq * pb.Dv : pb.Dv * Br)) {
    return flash_query_tile<T, Products>(pb, b, h, i0, w, nullptr, true);
  }

  // ---- Epilogue: normalise once, write out and lse.
  write_output<T, static_cast<int>(Br)>(pb, b, h, i0, nq, w.ot, *w.softmax, o_rows);
}

/// The first rows a query tile will read (its queries and first key/value tile), to stream in while
/// the tile before it computes. At N = 62 a whole (b, h) is one tile whose 48 KiB of q, k and v take
/// about as long to arrive from DRAM as its products take to compute.
template <typename T>
LinePrefetcher query_tile_lines(const Problem<T>& pb, Index b, Index h, Index i0) {
  constexpr Index Br = TileTraits::kBlockQ;
  constexpr Index Bc = TileTraits::kBlockK;
  constexpr auto size = static_cast<Index>(sizeof(T));
  const Index nq = std::min(Br, pb.Nq - i0), nk = std::min(Bc, visible_key_end(pb, i0, nq));
  const Index hk = pb.kv_head(h);
  LinePrefetcher lines;
  lines.add(&pb.q(b, h, i0, 0), nq, pb.q.stride(2) * size, pb.D * size);
  if (nk > 0) {
    lines.add(&pb.k(b, hk, 0, 0), nk, pb.k.stride(2) * size, pb.D * size);
    lines.add(&pb.v(b, hk, 0, 0), nk, pb.v.stride(2) * size, pb.Dv * size);
  }
  return lines;
}

/// The flash path's query tiles with Products, over every (b, h, tile) of the call.
template <typename T, class Products>
struct FlashForward {
  using Scratch = FlashScratch<T, Products>;

  static std::size_t workspace_bytes(const Problem<T>& pb, int workers) {
    return scratch_bytes<Scratch>(pb.D, pb.Dv) * static_cast<std::size_t>(workers);
  }

  static void run(const Problem<T>& pb, const Pool& pool, void* workspace) {
    constexpr Index Br = TileTraits::kBlockQ;
    const Index tiles = (pb.Nq + Br - 1) / Br;
    // Guided runs of consecutive tiles (parallel_for_runs), at most 64: a worker looks ahead only
    // within its run, so the first tile of each run starts cold (at N = 62 from DRAM, 17 us against
    // 13.7). BS-RoFormer's frequency axis (6408 tiles) at 2 threads: fixed runs of 8 took 135.5
    // GFLOP/s, fixed runs of 50 139.
    const Index items = pb.B * pb.Hq * tiles;
    parallel_for_runs(pool, worker_count(pool), items, 64, [&](int worker, Index begin, Index end) {
      Scratch w = worker_scratch<Scratch>(workspace, worker, pb.D, pb.Dv);
      for (Index item = begin; item < end; ++item) {
        const QueryTile t = query_tile(item, pb.Hq, tiles, Br);
        LinePrefetcher next;
        if (item + 1 < end) {
          const QueryTile n = query_tile(item + 1, pb.Hq, tiles, Br);
          next = query_tile_lines(pb, n.b, n.h, n.i0);
        }
        flash_query_tile<T, Products>(pb, t.b, t.h, t.i0, w, &next);
      }
      Products::finish();  // AMX: release this thread's tiles
      stream_fence();  // the output's non-temporal stores, before the pool hears this worker is done
    });
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_FORWARD_FLASH_HPP
