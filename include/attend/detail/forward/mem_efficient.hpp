#ifndef ATTEND_DETAIL_FORWARD_MEM_EFFICIENT_HPP
#define ATTEND_DETAIL_FORWARD_MEM_EFFICIENT_HPP

// The mem_efficient path: queries in chunks (Rabe & Staats, "Self-attention does not need O(n^2)
// memory", 2021). For each chunk of TileTraits::kBlockQ queries, the scores against all Nk keys are
// computed, then one ordinary (two-pass) softmax over the full rows, then the product with V.
// Scratch is O(chunk · Nk) per worker instead of the math path's O(Nq · Nk); there is no online
// rescaling. The products are the flash tiles' fp32 ones (kernel/products.hpp, FmaTiles).

#include <algorithm>  // std::fill, std::max, std::min
#include <cstddef>    // std::size_t

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/epilogue.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/online_softmax.hpp"
#include "attend/detail/kernel/products.hpp"
#include "attend/detail/kernel/tiles.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/scratch.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

template <typename T>
struct MemEfficientForward {
  using Acc = acc_t<T>;
  using Products = FmaTiles<T>;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;

  struct Scratch {
    OnlineSoftmax<Acc, Br>* softmax;
    Acc* st;  // (Nk, Br)  all scores of the chunk, then probabilities
    Acc* ot;  // (Dv, Br)  O^T, or (Br, Dv) O (see chunk)
    typename Products::Operands ops;

    static Scratch carve(ScratchLayout& l, Index Nk, Index D, Index Dv) {
      Scratch w;
      w.softmax = l.take<OnlineSoftmax<Acc, Br>>(1);
      w.st = l.take<Acc>(static_cast<std::size_t>(std::max<Index>(Nk, 1) * Br));
      w.ot = l.take<Acc>(static_cast<std::size_t>(Dv * Br));
      w.ops = Products::carve(l, D, Dv);
      return w;
    }
  };

  static void chunk(const Problem<T>& pb, Index b, Index h, Index i0, Scratch& w) {
    const Index nq = std::min(Br, pb.Nq - i0);
    const Index hk = pb.kv_head(h);
    const Index j_end = visible_key_end(pb, i0, nq);

    Products::pack_queries(pb, b, h, i0, nq, w.ops);
    w.softmax->reset();

    // Pass 1: every visible score of the chunk, S^T (j_end x Br).
    for (Index j0 = 0; j0 < j_end; j0 += Bc) {
      const Index nk = std::min(Bc, j_end - j0);
      Acc* s = w.st + j0 * Br;
      Products::scores(pb, b, hk, j0, nk, w.ops, s);
      mask_score_tile<T, static_cast<int>(Br)>(pb, b, h, i0, nq, j0, nk, s);
    }

    // Pass 2: the softmax over whole rows (one update of the online softmax is an ordinary softmax).
    w.softmax->update(w.st, j_end);
    if (pb.dropout.active) dropout_tile<T, static_cast<int>(Br)>(pb, b, h, i0, nq, 0, j_end, w.st);

    // Pass 3: O = P · V over all visible keys, with a query per row where Dv allows (as in the flash
    // path), else O^T = V^T · P^T.
    bool o_rows = rows_fit<typename Products::Ops>(pb.Dv);
    std::fill(w.ot, w.ot + pb.Dv * Br, Acc(0));
    for (Index j0 = 0; j0 < j_end; j0 += Bc) {
      const Index nk = std::min(Bc, j_end - j0);
      Products::template values<Store::add>(pb, b, hk, j0, nk, nq, w.st + j0 * Br, w.ops, w.ot, o_rows, nullptr);
    }
    // 0 · Inf from a value the weights hide leaves a NaN: redo the product carefully, on O^T
    // (kernel/zero_weights.hpp).
    if (any_nan(w.ot, o_rows ? nq * pb.Dv : pb.Dv * Br)) {
      o_rows = false;
      std::fill(w.ot, w.ot + pb.Dv * Br, Acc(0));
      for (Index j0 = 0; j0 < j_end; j0 += Bc) {
        const Index nk = std::min(Bc, j_end - j0);
        const Acc* pt = w.st + j0 * Br;
        if (Products::template careful_values<Store::add>(pb, b, hk, j0, nk, pt, w.ops, w.ot, nullptr)) {
          add_nonfinite_value_terms(
              pb, b, hk, j0, nk, Br, [&](Index j, Index ii) { return Products::weight(w.ops, pt, j, ii); },
              [&](Index ii, Index d) -> Acc& { return w.ot[d * Br + ii]; });
        }
      }
    }

    write_output<T, static_cast<int>(Br)>(pb, b, h, i0, nq, w.ot, *w.softmax, o_rows);
  }

  static std::size_t workspace_bytes(const Problem<T>& pb, int workers) {
    return scratch_bytes<Scratch>(pb.Nk, pb.D, pb.Dv) * static_cast<std::size_t>(workers);
  }

  static void run(const Problem<T>& pb, const Pool& pool, void* workspace) {
    const Index chunks = (pb.Nq + Br - 1) / Br;
    parallel_for(pool, worker_count(pool), pb.B * pb.Hq * chunks, [&](int worker, Index item) {
      Scratch w = worker_scratch<Scratch>(workspace, worker, pb.Nk, pb.D, pb.Dv);
      const QueryTile t = query_tile(item, pb.Hq, chunks, Br);
      chunk(pb, t.b, t.h, t.i0, w);
      stream_fence();  // the output's non-temporal stores, before the pool hears this item is done
    });
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_FORWARD_MEM_EFFICIENT_HPP
