#ifndef ATTEND_DETAIL_BACKWARD_FLASH_HPP
#define ATTEND_DETAIL_BACKWARD_FLASH_HPP

// The flash path's backward: FlashAttention-2's backward on the CPU. P is recomputed a tile at a time
// from the forward's lse, D_i = rowsum(dout_i ∘ out_i) once per query row, and each (query tile, key
// tile) pair runs the five products of backward/tiles.hpp. Nothing of size Nq x Nk ever exists.
//
// Work: an item is a split of the keys of a (b, kv head) (GradTraits: calls with few (b, kv head)
// pairs split their keys, so that long4k's 8 heads still spread over 16 threads). An item owns the
// dK and dV rows of its keys, accumulated in fp32 over every query head of the group and every query
// tile, and written once. dQ of a query tile is summed over the splits: each item adds its share to
// an fp32 accumulator in the split order (in_turn), and the last one writes dq. Items are claimed in
// order, one at a time, so the splits of a (b, kv head) run side by side and wait for each other only
// for those adds. Neither the split count nor the order depends on the thread count: the gradients
// are bitwise the same for any number of threads, without atomics on the data.
//
// There is no pass over the inputs before the items: D_i is computed from each query tile's packed
// dO rows, and whether a tile's products must run carefully (an Inf or NaN in its q or dout rows, or
// in its split's keys) is read off the packed operands. While a tile computes, the next tile's rows
// (or the next item's) stream in, handed out over its products (kernel/prefetch.hpp): at N = 62 each
// (b, h) is one item of one tile whose inputs come from memory.

#include <algorithm>  // std::fill, std::min, std::max
#include <cstddef>    // std::size_t
#include <limits>     // std::numeric_limits
#include <new>        // placement new

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/backward/common.hpp"
#include "attend/detail/backward/tiles.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/microkernel.hpp"
#include "attend/detail/kernel/prefetch.hpp"
#include "attend/detail/kernel/tiles.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/scratch.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

template <typename T>
struct FlashBackward {
  using Acc = acc_t<T>;
  using Ops = FmaOps<Acc>;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;

  /// How a call's work is cut; a function of the shapes only.
  struct Plan {
    GradItems items;
    Index splits = 1;   // key splits per (b, kv head) group
    Index split = 0;    // keys per split, a multiple of Bc (the last split may be shorter)
    Index tiles = 0;    // query tiles per query head
    Index Dp = 0, Dvp = 0;
    Index count() const { return items.count() * splits; }
  };

  static Plan plan(const GradProblem<T>& pb) {
    Plan p;
    p.items = GradItems::of(pb);
    p.tiles = (pb.Nq + Br - 1) / Br;
    p.Dp = padded_cols<Acc>(pb.D);
    p.Dvp = padded_cols<Acc>(pb.Dv);
    const Index key_tiles = std::max<Index>(1, (pb.Nk + Bc - 1) / Bc);
    // A split's K, V, dK and dV rows within GradTraits::kSplitBytes, and enough items overall.
    const Index row_bytes = 2 * (p.Dp + p.Dvp) * static_cast<Index>(sizeof(Acc));
    const Index max_tiles = std::max<Index>(1, static_cast<Index>(GradTraits::kSplitBytes) / (row_bytes * Bc));
    const Index n = std::max<Index>(1, p.items.count());
    Index splits = std::min(key_tiles, (GradTraits::kMinItems + n - 1) / n);
    splits = std::max(splits, (key_tiles + max_tiles - 1) / max_tiles);
    if (pb.dmask_reduces(3)) splits = 1;  // dmask summed over keys: one item owns each sum
    splits = std::max<Index>(1, std::min(splits, key_tiles));
    p.split = (key_tiles + splits - 1) / splits * Bc;
    p.splits = (pb.Nk + p.split - 1) / p.split;
    if (p.splits == 0) p.splits = 1;
    return p;
  }

  /// Scratch of one worker.
  struct Scratch {
    Acc* ks;      // (split, Dp)   the split's keys, fp32, padded
    Acc* vs;      // (split, Dvp)  its values
    Acc* dk;      // (split, Dp)   dK accumulator
    Acc* dv;      // (split, Dvp)  dV accumulator
    Acc* kf;      // (split, Dp)   the keys with Inf and NaN as 0 (careful calls: backward/common.hpp)
    Acc* qt;      // (D, Br)       (scale Q)^T of the query tile
    Acc* dot;     // (Dv, Br)      dO^T
    Acc* ot;      // (Dv, Br)      O^T (for D_i)
    Acc* qrows;   // (Br, Dp)      Q rows, padded
    Acc* dorows;  // (Br, Dvp)     dO rows, padded
    Acc* dq;      // (Br, Dp)      the tile's dQ share
    Acc* pt;      // (Bc, Br)      S^T, then P^T
    Acc* zt;      // (Bc, Br)      Z^T = P^T ∘ M (dropout only)
    Acc* dpt;     // (Bc, Br)      dP^T, then dS^T
    Acc* sub;     // (Br)          lse subtrahends
    Acc* dvec;    // (Br)          D_i
    static Scratch carve(ScratchLayout& l, Index split, Index D, Index Dv, Index Dp, Index Dvp) {
      Scratch w;
      const auto n = [](Index x) { return static_cast<std::size_t>(x); };
      w.ks = l.take<Acc>(n(split * Dp));
      w.vs = l.take<Acc>(n(split * Dvp));
      w.dk = l.take<Acc>(n(split * Dp));
      w.dv = l.take<Acc>(n(split * Dvp));
      w.kf = l.take<Acc>(n(split * Dp));
      w.qt = l.take<Acc>(n(D * Br));
      w.dot = l.take<Acc>(n(Dv * Br));
      w.ot = l.take<Acc>(n(Dv * Br));
      w.qrows = l.take<Acc>(n(Br * Dp));
      w.dorows = l.take<Acc>(n(Br * Dvp));
      w.dq = l.take<Acc>(n(Br * Dp));
      w.pt = l.take<Acc>(n(Bc * Br));
      w.zt = l.take<Acc>(n(Bc * Br));
      w.dpt = l.take<Acc>(n(Bc * Br));
      w.sub = l.take<Acc>(n(Br));
      w.dvec = l.take<Acc>(n(Br));
      return w;
    }
  };

  /// The call's shared workspace, then the workers' scratch.
  struct Shared {
    Acc* dq;       // (B, Hq, Nq, Dp)   dQ summed over splits (splits > 1 only)
    Turn* turns;   // (B, Hq, tiles)    whose turn it is to add to a tile's dQ (splits > 1 only)
    Acc* dmask;    // the mask's padded shape, where dmask sums over broadcast dimensions
    unsigned char* scratch;
    bool stream = false;  // gradients written with non-temporal stores (gradients_are_streamed)
    static Shared carve(ScratchLayout& l, const GradProblem<T>& pb, const Plan& p) {
      Shared s;
      s.stream = gradients_are_streamed(pb);
      const auto rows = static_cast<std::size_t>(pb.B * pb.Hq * pb.Nq);
      s.dq = p.splits > 1 ? l.take<Acc>(rows * static_cast<std::size_t>(p.Dp)) : nullptr;
      s.turns = p.splits > 1 ? l.take<Turn>(static_cast<std::size_t>(pb.B * pb.Hq * p.tiles)) : nullptr;
      s.dmask = pb.dmask != nullptr && !dmask_direct(pb) ? l.take<Acc>(DmaskAccumulator<T>::size(pb)) : nullptr;
      s.scratch = l.take<unsigned char>(0);
      return s;
    }
  };

  static std::size_t workspace_bytes(const GradProblem<T>& pb, int workers) {
    const Plan p = plan(pb);
    ScratchLayout l;
    Shared::carve(l, pb, p);
    return l.bytes() + scratch_bytes<Scratch>(p.split, pb.D, pb.Dv, p.Dp, p.Dvp) * static_cast<std::size_t>(workers);
  }

  /// The rows a query tile reads first (q, dout, out and lse), into `lines`.
  static void tile_lines(const GradProblem<T>& pb, Index b, Index h, Index i0, LinePrefetcher& lines) {
    constexpr auto size = static_cast<Index>(sizeof(T));
    const Index nq = std::min(Br, pb.Nq - i0);
    lines.add(&pb.q(b, h, i0, 0), nq, pb.q.stride(2) * size, pb.D * size);
    lines.add(&pb.dout(b, h, i0, 0), nq, pb.dout.stride(2) * size, pb.Dv * size);
    lines.add(&pb.o(b, h, i0, 0), nq, pb.o.stride(2) * size, pb.Dv * size);
    lines.add(&pb.lse_in(b, h, i0), nq, pb.lse_in.stride(2) * static_cast<Index>(sizeof(Acc)),
              static_cast<Index>(sizeof(Acc)));
  }

  /// The lines of item `it`'s keys and values and of its first query tile.
  static LinePrefetcher item_lines(const GradProblem<T>& pb, const Plan& p, Index it) {
    constexpr auto size = static_cast<Index>(sizeof(T));
    LinePrefetcher lines;
    Index b0 = 0, hk0 = 0;
    p.items.first(it / p.splits, b0, hk0);
    const Index js = (it % p.splits) * p.split, ns = std::min(p.split, pb.Nk - js);
    lines.add(&pb.k(b0, hk0, js, 0), ns, pb.k.stride(2) * size, pb.D * size);
    lines.add(&pb.v(b0, hk0, js, 0), ns, pb.v.stride(2) * size, pb.Dv * size);
    tile_lines(pb, b0, hk0 * pb.group, 0, lines);
    return lines;
  }

  /// One query tile (i0, nq) of query head h against the item's keys [js, je), visible ones only;
  /// accumulates dK and dV of those keys and this item's share of the tile's dQ in w.dq, while
  /// `next`'s lines are requested. `careful_k`: the split's keys hold an Inf or NaN (w.kf is them
  /// with those as 0).
  static void query_tile(const GradProblem<T>& pb, const Plan& p, const DmaskAccumulator<T>& dmask, Index b, Index h,
                         Index i0, Index nq, Index js, Index je, bool careful_k, LinePrefetcher* next, Scratch& w) {
    const Index D = pb.D, Dv = pb.Dv, Dp = p.Dp, Dvp = p.Dvp;
    const Acc keep = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
    // The query tile's operands: (scale Q)^T and dO^T for the panels, Q and dO rows for gemm_rows.
    pack_transposed(&pb.q(b, h, i0, 0), pb.q.stride(2), nq, D, pb.scale, w.qt);
    pack_transposed(&pb.dout(b, h, i0, 0), pb.dout.stride(2), nq, Dv, Acc(1), w.dot);
    copy_rows_padded(&pb.q(b, h, i0, 0), pb.q.stride(2), nq, D, w.qrows, Dp);
    copy_rows_padded(&pb.dout(b, h, i0, 0), pb.dout.stride(2), nq, Dv, w.dorows, Dvp);
    // D_i = rowsum(dO_i ∘ O_i), from dO as given (before any zeroing below).
    pack_transposed(&pb.o(b, h, i0, 0), pb.o.stride(2), nq, Dv, Acc(1), w.ot);
    dout_dot_out<Acc, static_cast<int>(Br)>(w.dot, w.ot, Dv, w.dvec);
    // Careful products where a zero weight could meet an Inf or NaN (backward/common.hpp): finite
    // operands, and the non-finite terms added where the weight is not 0.
    const bool careful = careful_k || any_nonfinite(w.qrows, nq, D, Dp) || any_nonfinite(w.dorows, nq, Dv, Dvp);
    if (careful) {
      zero_nonfinite(w.qrows, nq, D, Dp);
      zero_nonfinite(w.dorows, nq, Dv, Dvp);
    }
    constexpr Acc kInf = std::numeric_limits<Acc>::infinity();
    for (Index ii = 0; ii < Br; ++ii) w.sub[ii] = ii < nq ? lse_subtrahend(static_cast<Acc>(pb.lse_in(b, h, i0 + ii))) : kInf;
    std::fill(w.dq, w.dq + nq * Dp, Acc(0));
    // The next tile's lines, handed out over the first key tile's five products: a few lines every
    // kHookSteps steps of each full register block.
    using Blocking = RegisterBlocking<Ops>;
    constexpr Index MR = Blocking::kRegM, kCols = Blocking::kColsPerBlock;
    const Index nk0 = std::min(Bc, je - js);
    const Index calls = hook_calls(nk0 / MR * Blocking::kColBlocks, D) + hook_calls(nk0 / MR * Blocking::kColBlocks, Dv) +
                        hook_calls(nk0 / MR * (Dvp / kCols), nq) + hook_calls(nk0 / MR * (Dp / kCols), nq) +
                        hook_calls(nq / MR * (Dp / kCols), nk0);
    const auto hand_out = spread_over(next, calls);

    for (Index j0 = js; j0 < je; j0 += Bc) {
      const Index nk = std::min(Bc, je - j0);
      const Acc* kc = w.ks + (j0 - js) * Dp;  // the key tile's rows
      const Acc* vc = w.vs + (j0 - js) * Dvp;
      Acc* dkc = w.dk + (j0 - js) * Dp;
      Acc* dvc = w.dv + (j0 - js) * Dvp;
      // S^T = K_j · (scale Q)^T, masked; P^T = exp(S^T - lse).
      gemm_panel<Ops, Store::overwrite>(nk, D, {kc, Dp, 1}, w.qt, w.pt, nullptr, 1, hand_out);
      mask_score_tile<T, static_cast<int>(Br)>(pb, b, h, i0, nq, j0, nk, w.pt);
      probabilities_from_lse<Acc, static_cast<int>(Br)>(w.pt, nk, w.sub);
      // dP^T = V_j · dO^T; under dropout Z^T = P^T ∘ M and the dropped dP^T are 0.
      gemm_panel<Ops, Store::overwrite>(nk, Dv, {vc, Dvp, 1}, w.dot, w.dpt, nullptr, 1, hand_out);
      const Acc* zt = w.pt;
      if (pb.dropout.active) {
        std::copy(w.pt, w.pt + nk * Br, w.zt);
        for (Index ii = 0; ii < nq; ++ii) {
          pb.dropout.apply_row(b, h, i0 + ii, j0, nk, w.zt + ii, Br);
          pb.dropout.apply_row(b, h, i0 + ii, j0, nk, w.dpt + ii, Br);
        }
        zt = w.zt;
      }
      // dS^T = P^T ∘ (dP^T - D), 0 where P is 0.
      grad_scores<Acc, static_cast<int>(Br)>(w.pt, w.dpt, nk, w.dvec, keep);
      add_dmask_tile<T, static_cast<int>(Br)>(pb, dmask, b, h, i0, nq, j0, nk, w.dpt);
      // dV_j += Z^T · dO,  dK_j += dS^T · Q,  dQ += dS · K_j.
      const Acc* kq = careful_k ? w.kf + (j0 - js) * Dp : kc;
      gemm_rows<Ops, Store::add>(nk, Dvp, nq, {zt, Br, 1}, w.dorows, Dvp, dvc, Dvp, nullptr, hand_out);
      gemm_rows<Ops, Store::add>(nk, Dp, nq, {w.dpt, Br, 1}, w.qrows, Dp, dkc, Dp, nullptr, hand_out);
      gemm_rows<Ops, Store::add>(nq, Dp, nk, {w.dpt, 1, Br}, kq, Dp, w.dq, Dp, nullptr, hand_out);
      if (careful) {  // the non-finite operands' own terms, where the weight is not 0
        const Acc* ds = w.dpt;
        add_nonfinite_terms<Acc>(
            nq, Dv, nk, [&](Index i, Index d) { return static_cast<Acc>(pb.dout(b, h, i0 + i, d)); },
            [&](Index i, Index jj) { return zt[jj * Br + i]; }, [&](Index jj, Index d) -> Acc& { return dvc[jj * Dvp + d]; });
        add_nonfinite_terms<Acc>(
            nq, D, nk, [&](Index i, Index d) { return static_cast<Acc>(pb.q(b, h, i0 + i, d)); },
            [&](Index i, Index jj) { return ds[jj * Br + i]; }, [&](Index jj, Index d) -> Acc& { return dkc[jj * Dp + d]; });
        add_nonfinite_terms<Acc>(
            nk, D, nq, [&](Index jj, Index d) { return kc[jj * Dp + d]; },
            [&](Index jj, Index i) { return ds[jj * Br + i]; }, [&](Index i, Index d) -> Acc& { return w.dq[i * Dp + d]; });
      }
    }
    if (next != nullptr) next->drain();
  }

  /// Item `it`: (group it / splits, split it % splits). `next`: the lines of the item the worker runs
  /// after this one (null: none), requested during its last tile.
  static void item(const GradProblem<T>& pb, const Plan& p, const Shared& sh, const DmaskAccumulator<T>& dmask,
                   Index it, const LinePrefetcher* next_item, Scratch& w) {
    const Index g = it / p.splits, s = it % p.splits;
    const Index js = s * p.split, ns = std::min(p.split, pb.Nk - js);
    const Index Dp = p.Dp, Dvp = p.Dvp;
    p.items.for_each(g, [&](Index b, Index hk) {
      copy_rows_padded(&pb.k(b, hk, js, 0), pb.k.stride(2), ns, pb.D, w.ks, Dp);
      copy_rows_padded(&pb.v(b, hk, js, 0), pb.v.stride(2), ns, pb.Dv, w.vs, Dvp);
      const bool careful_k = any_nonfinite(w.ks, ns, pb.D, Dp);
      if (careful_k) {
        std::copy(w.ks, w.ks + ns * Dp, w.kf);
        zero_nonfinite(w.kf, ns, pb.D, Dp);
      }
      std::fill(w.dk, w.dk + ns * Dp, Acc(0));
      std::fill(w.dv, w.dv + ns * Dvp, Acc(0));
      const Index h_end = (hk + 1) * pb.group;
      for (Index h = hk * pb.group; h < h_end; ++h) {
        const Index bh = b * pb.Hq + h;
        for (Index t = 0; t < p.tiles; ++t) {
          const Index i0 = t * Br, nq = std::min(Br, pb.Nq - i0);
          const Index vend = visible_key_end(pb, i0, nq);  // keys [0, vend) are visible to the tile
          const Index je = std::min(js + ns, vend);
          T* dq_rows = &pb.dq(b, h, i0, 0);
          const Index dq_stride = pb.dq.stride(2);
          if (je <= js) {  // no visible key in this split; if none in any, split 0 writes the zeros
            if (s == 0 && vend <= 0) {
              for (Index ii = 0; ii < nq; ++ii) std::fill(dq_rows + ii * dq_stride, dq_rows + ii * dq_stride + pb.D, T(0));
            }
            continue;
          }
          // What streams in meanwhile: the next tile of this item, or the next item.
          LinePrefetcher next;
          if (t + 1 < p.tiles) {
            tile_lines(pb, b, h, i0 + Br, next);
          } else if (h + 1 < h_end) {
            tile_lines(pb, b, h + 1, 0, next);
          } else if (next_item != nullptr) {
            next = *next_item;
          }
          query_tile(pb, p, dmask, b, h, i0, nq, js, je, careful_k, &next, w);
          if (p.splits == 1) {
            write_rows<T>(w.dq, Dp, nq, pb.D, pb.scale, dq_rows, dq_stride, sh.stream);
            continue;
          }
          // The splits that see this tile are 0 .. last; each adds its share in split order.
          const Index last = std::min(p.splits - 1, (vend - 1) / p.split);
          Acc* acc = sh.dq + (bh * pb.Nq + i0) * Dp;
          in_turn(sh.turns[bh * p.tiles + t], s, [&] {
            if (s == 0) {
              std::copy(w.dq, w.dq + nq * Dp, acc);
            } else {
              for (Index e = 0; e < nq * Dp; ++e) acc[e] += w.dq[e];
            }
            if (s == last) write_rows<T>(acc, Dp, nq, pb.D, pb.scale, dq_rows, dq_stride, sh.stream);
          });
        }
      }
      const Acc keep = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
      write_rows<T>(w.dk, Dp, ns, pb.D, pb.scale, &pb.dk(b, hk, js, 0), pb.dk.stride(2), sh.stream);
      write_rows<T>(w.dv, Dvp, ns, pb.Dv, keep, &pb.dv(b, hk, js, 0), pb.dv.stride(2), sh.stream);
    });
  }

  static void run(const GradProblem<T>& pb, const Pool& pool, void* workspace) {
    const Plan p = plan(pb);
    ScratchLayout layout(workspace);
    const Shared sh = Shared::carve(layout, pb, p);
    const int workers = worker_count(pool);
    if (sh.turns != nullptr) {
      for (Index i = 0; i < pb.B * pb.Hq * p.tiles; ++i) new (&sh.turns[i]) Turn(0);
    }
    const DmaskAccumulator<T> dmask = DmaskAccumulator<T>::of(pb, sh.dmask);
    if (sh.dmask != nullptr) std::fill(sh.dmask, sh.dmask + DmaskAccumulator<T>::size(pb), Acc(0));
    if (pb.dmask != nullptr && sh.dmask == nullptr) zero_dmask(pb);  // hidden tiles are skipped
    // Runs of consecutive items (at most 64, shrinking at the end), each worker looking one item ahead
    // within its run. Items are claimed in order and a worker runs its own in order, so an item only
    // ever waits (in_turn) for items claimed before it: the earliest unfinished one can always run.
    parallel_for_runs(pool, workers, p.count(), 64, [&](int worker, Index begin, Index end) {
      Scratch w = worker_scratch<Scratch>(sh.scratch, worker, p.split, pb.D, pb.Dv, p.Dp, p.Dvp);
      for (Index it = begin; it < end; ++it) {
        LinePrefetcher next;
        if (it + 1 < end) next = item_lines(pb, p, it + 1);
        item(pb, p, sh, dmask, it, it + 1 < end ? &next : nullptr, w);
      }
      stream_fence();  // the gradients' non-temporal stores, before the pool hears this worker is done
    });
    write_dmask(pb, dmask);
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_BACKWARD_FLASH_HPP
