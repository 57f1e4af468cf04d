#ifndef ATTEND_DETAIL_MEM_EFFICIENT_PATH_HPP
#define ATTEND_DETAIL_MEM_EFFICIENT_PATH_HPP

// The mem_efficient path: queries in chunks (Rabe & Staats, "Self-attention does not need O(n^2)
// memory", 2021). For each chunk of 64 queries, the scores against all Nk keys are computed, then one
// ordinary (two-pass) softmax over the full rows, then the product with V. Scratch is
// O(chunk * Nk) per worker instead of the math path's O(Nq * Nk); there is no online rescaling.

#include <cstddef>  // std::size_t

#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/microkernel.hpp"
#include "attend/detail/online_softmax.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/tiles.hpp"
#include "attend/detail/zero_weights.hpp"

namespace attend {
namespace detail {

template <typename T>
struct MemEfficientScratch {
  using Acc = acc_t<T>;
  using Traits = KernelTraits<Acc>;
  static constexpr Index Br = Traits::kChunkQ;
  static constexpr Index Bc = Traits::kBlockK;
  static constexpr bool kConvert = !std::is_same_v<T, Acc>;

  OnlineSoftmax<Acc, Traits::kChunkQ>* softmax;
  Acc* qt;    // (D, Br)
  Acc* st;    // (Nk, Br)  all scores of the chunk, then probabilities
  Acc* ot;    // (Dv, Br) O^T, or (Br, Dv) O (see mem_efficient_chunk)
  Acc* kbuf;  // (Bc, D)   converted keys (16-bit T only)
  Acc* vbuf;  // (Bc, Dv)  converted values (16-bit T), or finite values (careful pass, zero_weights.hpp)

  static std::size_t bytes(Index Nk, Index D, Index Dv) {
    std::size_t n = align_up(sizeof(OnlineSoftmax<Acc, Traits::kChunkQ>));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(D * Br));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(std::max<Index>(Nk, 1) * Br));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(Dv * Br));
    if (kConvert) n += align_up(sizeof(Acc) * static_cast<std::size_t>(Bc * D));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(Bc * Dv));
    return n;
  }

  MemEfficientScratch(void* base, Index Nk, Index D, Index Dv) {
    auto* p = static_cast<unsigned char*>(base);
    auto take = [&p](std::size_t bytes) {
      unsigned char* r = p;
      p += align_up(bytes);
      return r;
    };
    softmax = reinterpret_cast<OnlineSoftmax<Acc, Traits::kChunkQ>*>(take(sizeof(OnlineSoftmax<Acc, Traits::kChunkQ>)));
    qt = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(D * Br)));
    st = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(std::max<Index>(Nk, 1) * Br)));
    ot = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Dv * Br)));
    kbuf = kConvert ? reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Bc * D))) : nullptr;
    vbuf = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Bc * Dv)));
  }
};

template <typename T>
void mem_efficient_chunk(const Problem<T>& pb, Index b, Index h, Index i0, MemEfficientScratch<T>& w) {
  using Acc = acc_t<T>;
  constexpr Index Br = MemEfficientScratch<T>::Br;
  constexpr Index Bc = MemEfficientScratch<T>::Bc;
  const Index nq = std::min(Br, pb.Nq - i0);
  const Index hk = pb.kv_head(h);
  const Index j_end = visible_key_end(pb, i0, nq);

  pack_query_tile(pb, b, h, i0, nq, w.qt);
  w.softmax->reset();

  // Pass 1: every visible score of the chunk, S^T (j_end x Br).
  for (Index j0 = 0; j0 < j_end; j0 += Bc) {
    const Index nk = std::min(Bc, j_end - j0);
    Index ks = 0;
    const Acc* kt = kv_rows(pb.k, b, hk, j0, nk, w.kbuf, ks);
    Acc* s = w.st + j0 * Br;
    gemm_panel<Acc>(nk, pb.D, kt, ks, 1, w.qt, s, nullptr, false);
    mask_score_tile(pb, b, h, i0, nq, j0, nk, s);
  }

  // Pass 2: the softmax over whole rows (one update of the online softmax is an ordinary softmax).
  w.softmax->update(w.st, j_end);
  if (pb.dropout.active) dropout_tile(pb, b, h, i0, nq, 0, j_end, w.st);

  // Pass 3: O = P · V over all visible keys, with a query per row where Dv allows (as in the flash
  // path), else O^T = V^T · P^T.
  bool o_rows = rows_fit<Acc>(pb.Dv);
  std::fill(w.ot, w.ot + pb.Dv * Br, Acc(0));
  for (Index j0 = 0; j0 < j_end; j0 += Bc) {
    const Index nk = std::min(Bc, j_end - j0);
    Index vs = 0;
    const Acc* vt = kv_rows(pb.v, b, hk, j0, nk, w.vbuf, vs);
    if (o_rows) {
      gemm_rows<Acc>(nq, pb.Dv, nk, w.st + j0 * Br, 1, Br, vt, vs, w.ot, pb.Dv, nullptr, true);
    } else {
      gemm_panel<Acc>(pb.Dv, nk, vt, 1, vs, w.st + j0 * Br, w.ot, nullptr, true);
    }
  }
  // 0 · Inf from a value the weights hide leaves a NaN: redo the product carefully, on O^T
  // (zero_weights.hpp).
  if (any_nan(w.ot, o_rows ? nq * pb.Dv : pb.Dv * Br)) {
    o_rows = false;
    std::fill(w.ot, w.ot + pb.Dv * Br, Acc(0));
    for (Index j0 = 0; j0 < j_end; j0 += Bc) {
      const Index nk = std::min(Bc, j_end - j0);
      careful_value_tile<T, static_cast<int>(Br)>(pb, b, hk, j0, nk, w.st + j0 * Br, w.ot, nullptr, w.vbuf);
    }
  }

  write_output<T, static_cast<int>(Br)>(pb, b, h, i0, nq, w.ot, *w.softmax, o_rows);
}

template <typename T>
std::size_t mem_efficient_workspace_bytes(Index Nk, Index D, Index Dv, int workers) {
  return MemEfficientScratch<T>::bytes(Nk, D, Dv) * static_cast<std::size_t>(workers);
}

template <typename T>
void run_mem_efficient(const Problem<T>& pb, const Eigen::ThreadPoolDevice* device, void* workspace) {
  constexpr Index Br = MemEfficientScratch<T>::Br;
  const Index chunks = (pb.Nq + Br - 1) / Br;
  const std::size_t per_worker = MemEfficientScratch<T>::bytes(pb.Nk, pb.D, pb.Dv);
  parallel_for(device, worker_count(device), pb.B * pb.Hq * chunks, [&](int worker, Index item) {
    MemEfficientScratch<T> w(static_cast<unsigned char*>(workspace) + per_worker * static_cast<std::size_t>(worker),
                             pb.Nk, pb.D, pb.Dv);
    const Index bh = item / chunks;
    mem_efficient_chunk(pb, bh / pb.Hq, bh % pb.Hq, (item % chunks) * Br, w);
    stream_fence();  // the output's non-temporal stores, before the pool hears this item is done
  });
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_MEM_EFFICIENT_PATH_HPP
