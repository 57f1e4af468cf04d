#ifndef ATTEND_DETAIL_BACKWARD_MEM_EFFICIENT_HPP
#define ATTEND_DETAIL_BACKWARD_MEM_EFFICIENT_HPP

// The mem_efficient path's backward: query chunks, as its forward. For each chunk of 64 queries the
// scores against every visible key are computed, P by an ordinary softmax over the full rows (not from
// the forward's lse), D_i = Σ_j P_ij dP_ij (not from the forward's out), then the three products over
// all keys at once. Scratch is O(chunk · Nk) per worker plus the (b, kv head)'s K, V, dK and dV rows
// in fp32. An item is a (b, kv head) (backward/common.hpp, GradItems), so dq, dk and dv are each
// summed by one item in a fixed order.

#include <algorithm>  // std::fill, std::min
#include <cstddef>    // std::size_t

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/backward/common.hpp"
#include "attend/detail/backward/tiles.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/microkernel.hpp"
#include "attend/detail/kernel/online_softmax.hpp"
#include "attend/detail/kernel/tiles.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/scratch.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

template <typename T>
struct MemEfficientBackward {
  using Acc = acc_t<T>;
  using Ops = FmaOps<Acc>;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;

  struct Scratch {
    OnlineSoftmax<Acc, Br>* softmax;
    Acc* ks;      // (Nk, Dp)   K, fp32, padded
    Acc* vs;      // (Nk, Dvp)  V
    Acc* dk;      // (Nk, Dp)   dK accumulator
    Acc* dv;      // (Nk, Dvp)  dV accumulator
    Acc* kf;      // (Nk, Dp)   K with Inf and NaN as 0 (careful items: backward/common.hpp)
    Acc* qt;      // (D, Br)    (scale Q)^T
    Acc* dot;     // (Dv, Br)   dO^T
    Acc* qrows;   // (Br, Dp)   Q rows
    Acc* dorows;  // (Br, Dvp)  dO rows
    Acc* dq;      // (Br, Dp)   the chunk's dQ
    Acc* pt;      // (Nk, Br)   S^T, then P^T
    Acc* zt;      // (Nk, Br)   Z^T (dropout only)
    Acc* dpt;     // (Nk, Br)   dP^T, then dS^T
    Acc* dvec;    // (Br)       D_i
    static Scratch carve(ScratchLayout& l, Index Nk, Index D, Index Dv, Index Dp, Index Dvp) {
      Scratch w;
      const auto n = [](Index x) { return static_cast<std::size_t>(x); };
      const Index nk = std::max<Index>(Nk, 1);
      w.softmax = l.take<OnlineSoftmax<Acc, Br>>(1);
      w.ks = l.take<Acc>(n(nk * Dp));
      w.vs = l.take<Acc>(n(nk * Dvp));
      w.dk = l.take<Acc>(n(nk * Dp));
      w.dv = l.take<Acc>(n(nk * Dvp));
      w.kf = l.take<Acc>(n(nk * Dp));
      w.qt = l.take<Acc>(n(D * Br));
      w.dot = l.take<Acc>(n(Dv * Br));
      w.qrows = l.take<Acc>(n(Br * Dp));
      w.dorows = l.take<Acc>(n(Br * Dvp));
      w.dq = l.take<Acc>(n(Br * Dp));
      w.pt = l.take<Acc>(n(nk * Br));
      w.zt = l.take<Acc>(n(nk * Br));
      w.dpt = l.take<Acc>(n(nk * Br));
      w.dvec = l.take<Acc>(n(Br));
      return w;
    }
  };

  struct Shared {
    Acc* dmask;  // the mask's padded shape, where dmask sums over broadcast dimensions
    unsigned char* scratch;
    static Shared carve(ScratchLayout& l, const GradProblem<T>& pb) {
      Shared s;
      s.dmask = pb.dmask != nullptr && !dmask_direct(pb) ? l.take<Acc>(DmaskAccumulator<T>::size(pb)) : nullptr;
      s.scratch = l.take<unsigned char>(0);
      return s;
    }
  };

  static std::size_t workspace_bytes(const GradProblem<T>& pb, int workers) {
    ScratchLayout l;
    Shared::carve(l, pb);
    return l.bytes() + scratch_bytes<Scratch>(pb.Nk, pb.D, pb.Dv, padded_cols<Acc>(pb.D), padded_cols<Acc>(pb.Dv)) *
                           static_cast<std::size_t>(workers);
  }

  /// Chunk (i0, nq) of query head h against keys [0, vend) of its kv head (in w.ks, w.vs).
  /// `careful_k`: the keys hold an Inf or NaN (w.kf is them with those as 0); `stream`: dq is written
  /// with non-temporal stores.
  static void chunk(const GradProblem<T>& pb, const DmaskAccumulator<T>& dmask, Index b, Index h, Index i0, Index nq,
                    Index vend, bool careful_k, bool stream, Scratch& w) {
    using Packet = PacketOf<Acc>;
    constexpr int L = kLanesOf<Acc>;
    using namespace Eigen::internal;
    const Index D = pb.D, Dv = pb.Dv, Dp = padded_cols<Acc>(D), Dvp = padded_cols<Acc>(Dv);
    const Acc keep = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
    pack_transposed(&pb.q(b, h, i0, 0), pb.q.stride(2), nq, D, pb.scale, w.qt);
    pack_transposed(&pb.dout(b, h, i0, 0), pb.dout.stride(2), nq, Dv, Acc(1), w.dot);
    copy_rows_padded(&pb.q(b, h, i0, 0), pb.q.stride(2), nq, D, w.qrows, Dp);
    copy_rows_padded(&pb.dout(b, h, i0, 0), pb.dout.stride(2), nq, Dv, w.dorows, Dvp);
    // Careful products where a zero weight could meet an Inf or NaN (backward/common.hpp).
    const bool careful = careful_k || any_nonfinite(w.qrows, nq, D, Dp) || any_nonfinite(w.dorows, nq, Dv, Dvp);
    if (careful) {
      zero_nonfinite(w.qrows, nq, D, Dp);
      zero_nonfinite(w.dorows, nq, Dv, Dvp);
    }

    // S^T over the visible keys, masked; P^T by one softmax over whole rows, normalised.
    for (Index j0 = 0; j0 < vend; j0 += Bc) {
      const Index nk = std::min(Bc, vend - j0);
      gemm_panel<Ops, Store::overwrite>(nk, D, {w.ks + j0 * Dp, Dp, 1}, w.qt, w.pt + j0 * Br);
      mask_score_tile<T, static_cast<int>(Br)>(pb, b, h, i0, nq, j0, nk, w.pt + j0 * Br);
      gemm_panel<Ops, Store::overwrite>(nk, Dv, {w.vs + j0 * Dvp, Dvp, 1}, w.dot, w.dpt + j0 * Br);
    }
    w.softmax->reset();
    w.softmax->update(w.pt, vend);
    alignas(64) Acc inv[Br];
    for (Index ii = 0; ii < Br; ++ii) inv[ii] = ii < nq ? w.softmax->inv_sum(static_cast<int>(ii), Acc(1)) : Acc(0);
    for (int c = 0; c < Br; c += L) {
      const Packet f = pload<Packet>(inv + c);
      for (Index j = 0; j < vend; ++j) pstore(w.pt + j * Br + c, pmul(pload<Packet>(w.pt + j * Br + c), f));
    }
    const Acc* zt = w.pt;
    if (pb.dropout.active) {
      std::copy(w.pt, w.pt + vend * Br, w.zt);
      for (Index ii = 0; ii < nq; ++ii) {
        pb.dropout.apply_row(b, h, i0 + ii, 0, vend, w.zt + ii, Br);
        pb.dropout.apply_row(b, h, i0 + ii, 0, vend, w.dpt + ii, Br);
      }
      zt = w.zt;
    }
    // D_i = Σ_j P_ij · keep · dP_ij over the terms with P != 0.
    const Packet zero = pset1<Packet>(Acc(0)), k = pset1<Packet>(keep);
    for (int c = 0; c < Br; c += L) {
      Packet d = zero;
      for (Index j = 0; j < vend; ++j) {
        const Packet p = pload<Packet>(w.pt + j * Br + c);
        d = padd(d, pselect(pcmp_eq(p, zero), zero, pmul(p, pmul(k, pload<Packet>(w.dpt + j * Br + c)))));
      }
      pstore(w.dvec + c, d);
    }
    grad_scores<Acc, static_cast<int>(Br)>(w.pt, w.dpt, vend, w.dvec, keep);
    add_dmask_tile<T, static_cast<int>(Br)>(pb, dmask, b, h, i0, nq, 0, vend, w.dpt);
    gemm_rows<Ops, Store::add>(vend, Dvp, nq, {zt, Br, 1}, w.dorows, Dvp, w.dv, Dvp);
    gemm_rows<Ops, Store::add>(vend, Dp, nq, {w.dpt, Br, 1}, w.qrows, Dp, w.dk, Dp);
    gemm_rows<Ops, Store::overwrite>(nq, Dp, vend, {w.dpt, 1, Br}, careful_k ? w.kf : w.ks, Dp, w.dq, Dp);
    if (careful) {  // the non-finite operands' own terms, where the weight is not 0
      const Acc* ds = w.dpt;
      add_nonfinite_terms<Acc>(
          nq, Dv, vend, [&](Index i, Index d) { return static_cast<Acc>(pb.dout(b, h, i0 + i, d)); },
          [&](Index i, Index j) { return zt[j * Br + i]; }, [&](Index j, Index d) -> Acc& { return w.dv[j * Dvp + d]; });
      add_nonfinite_terms<Acc>(
          nq, D, vend, [&](Index i, Index d) { return static_cast<Acc>(pb.q(b, h, i0 + i, d)); },
          [&](Index i, Index j) { return ds[j * Br + i]; }, [&](Index j, Index d) -> Acc& { return w.dk[j * Dp + d]; });
      add_nonfinite_terms<Acc>(
          vend, D, nq, [&](Index j, Index d) { return w.ks[j * Dp + d]; },
          [&](Index j, Index i) { return ds[j * Br + i]; }, [&](Index i, Index d) -> Acc& { return w.dq[i * Dp + d]; });
    }
    write_rows<T>(w.dq, Dp, nq, D, pb.scale, &pb.dq(b, h, i0, 0), pb.dq.stride(2), stream);
  }

  static void run(const GradProblem<T>& pb, const Pool& pool, void* workspace) {
    ScratchLayout layout(workspace);
    const Shared sh = Shared::carve(layout, pb);
    const DmaskAccumulator<T> dmask = DmaskAccumulator<T>::of(pb, sh.dmask);
    if (sh.dmask != nullptr) std::fill(sh.dmask, sh.dmask + DmaskAccumulator<T>::size(pb), Acc(0));
    if (pb.dmask != nullptr && sh.dmask == nullptr) zero_dmask(pb);  // hidden keys are skipped
    const GradItems items = GradItems::of(pb);
    const Index Dp = padded_cols<Acc>(pb.D), Dvp = padded_cols<Acc>(pb.Dv);
    const Index chunks = (pb.Nq + Br - 1) / Br;
    const bool stream = gradients_are_streamed(pb);
    parallel_for(pool, worker_count(pool), items.count(), [&](int worker, Index it) {
      Scratch w = worker_scratch<Scratch>(sh.scratch, worker, pb.Nk, pb.D, pb.Dv, Dp, Dvp);
      items.for_each(it, [&](Index b, Index hk) {
        copy_rows_padded(&pb.k(b, hk, 0, 0), pb.k.stride(2), pb.Nk, pb.D, w.ks, Dp);
        copy_rows_padded(&pb.v(b, hk, 0, 0), pb.v.stride(2), pb.Nk, pb.Dv, w.vs, Dvp);
        std::fill(w.dk, w.dk + pb.Nk * Dp, Acc(0));
        std::fill(w.dv, w.dv + pb.Nk * Dvp, Acc(0));
        const bool careful_k = any_nonfinite(w.ks, pb.Nk, pb.D, Dp);
        if (careful_k) {
          std::copy(w.ks, w.ks + pb.Nk * Dp, w.kf);
          zero_nonfinite(w.kf, pb.Nk, pb.D, Dp);
        }
        for (Index h = hk * pb.group; h < (hk + 1) * pb.group; ++h) {
          for (Index t = 0; t < chunks; ++t) {
            const Index i0 = t * Br, nq = std::min(Br, pb.Nq - i0);
            const Index vend = visible_key_end(pb, i0, nq);
            if (vend <= 0) {  // no visible key: dq rows 0, nothing for dk and dv
              for (Index ii = 0; ii < nq; ++ii) {
                T* row = &pb.dq(b, h, i0 + ii, 0);
                std::fill(row, row + pb.D, T(0));
              }
              continue;
            }
            chunk(pb, dmask, b, h, i0, nq, vend, careful_k, stream, w);
          }
        }
        const Acc keep = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
        write_rows<T>(w.dk, Dp, pb.Nk, pb.D, pb.scale, &pb.dk(b, hk, 0, 0), pb.dk.stride(2), stream);
        write_rows<T>(w.dv, Dvp, pb.Nk, pb.Dv, keep, &pb.dv(b, hk, 0, 0), pb.dv.stride(2), stream);
        stream_fence();  // the gradients' non-temporal stores, before the pool hears this item is done
      });
    });
    write_dmask(pb, dmask);
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_BACKWARD_MEM_EFFICIENT_HPP
