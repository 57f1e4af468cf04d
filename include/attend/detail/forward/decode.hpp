#ifndef ATTEND_DETAIL_FORWARD_DECODE_HPP
#define ATTEND_DETAIL_FORWARD_DECODE_HPP

// The flash path's kernel for few queries per key/value head (a KV-cache decode step: Nq = 1, or a
// short chunk), after Flash-Decoding (Dao, Haziza, Massa, Sizov, 2023).
//
// With one query per head, a 64-query tile would waste 63/64 of its products, and the B·Hq tiles of
// the tiled kernel would each re-read the same K and V once per query head of a GQA group. Here one
// work item is (b, kv head, key split): it reads its keys once for all Hq/Hkv · Nq query rows that
// share them, with D along the SIMD lanes, and leaves a partial (max, sum, unnormalised O) per row.
// The splits are merged by their log-sum-exp:
//   m = max_s m_s,  l = Σ_s e^{m_s - m} l_s,  O = Σ_s e^{m_s - m} O_s / l.
// The split length depends only on the shape, never on the thread count, and the merge runs in split
// order, so the result is bitwise the same for any number of threads.

#include <algorithm>    // std::min, std::max, std::copy
#include <atomic>       // std::atomic
#include <cmath>        // std::exp, std::log, std::isfinite
#include <cstddef>      // std::size_t
#include <cstdint>      // std::uint16_t
#include <limits>       // std::numeric_limits
#include <new>          // placement new
#include <type_traits>  // std::conditional_t

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/forward/decode_blocks.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/microkernel.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/scratch.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Whether the decode kernel runs its register blocks (forward/decode_blocks.hpp) for T: float
/// accumulation, on a target that reduces the score blocks in registers. Elsewhere it is the
/// row-at-a-time form.
template <typename T>
constexpr bool kBlockedDecode = kBlockedDecodeTarget && std::is_same_v<acc_t<T>, float>;

/// The most queries per head a call may have to take the decode kernel (DecodeTraits).
template <typename T>
Index decode_max_queries(Index D, Index Dv) {
  const Index per_dims = (D + Dv) / DecodeTraits::kHeadDimsPerQuery;
  if constexpr (kBlockedDecode<T>) {
    return std::min(DecodeTraits::kBlockedMaxQueries, DecodeTraits::kBlockedBaseQueries + per_dims);
  } else {
    return std::min(DecodeTraits::kMaxQueries, std::max<Index>(1, per_dims));
  }
}

template <typename T>
bool use_decode_kernel(const Problem<T>& pb) {
  return pb.Nq <= decode_max_queries<T>(pb.D, pb.Dv) && pb.Nk > 0;
}

/// Per (b, kv head): how many of its splits are still being computed. The worker that finishes the
/// last one merges them, so the merge needs no second pass over the pool.
using SplitCounter = std::atomic<int>;

template <typename T>
struct DecodeForward {
  using Acc = acc_t<T>;
  static constexpr Index C = DecodeTraits::kChunk;
  /// The score blocks' multiply-add policy and the storage they read q and k in: bf16 pairs as they
  /// are (AVX512_BF16), else floats (f16 and bf16 without it converted).
  using ScoreOps = std::conditional_t<kBf16Dot<T>, Bf16PairOps, FmaOps<Acc>>;
  using Key = std::conditional_t<kBf16Dot<T>, std::uint16_t, Acc>;

  /// Scratch of one worker.
  struct Scratch {
    Acc* q;      // (R, D)   the item's R = Hq/Hkv · Nq query rows, scaled (bf16 products: the raw rows)
    Acc* s;      // (R, C)   scores, then probabilities, of one chunk (packet-aligned rows)
    Acc* alpha;  // (R)      per-row rescale of the output for the current chunk
    Acc* kbuf;   // (C, D)   the chunk's keys converted (16-bit T)
    Acc* vbuf;   // (C, Dv)  the chunk's values converted (16-bit T), or finite values (zero_weights.hpp)
    static Scratch carve(ScratchLayout& l, Index R, Index D, Index Dv) {
      Scratch w;
      w.q = l.take<Acc>(static_cast<std::size_t>(R * D));
      w.s = l.take<Acc>(static_cast<std::size_t>(R * C));
      w.alpha = l.take<Acc>(static_cast<std::size_t>(R));
      w.kbuf = l.take<Acc>(static_cast<std::size_t>(C * D));
      w.vbuf = l.take<Acc>(static_cast<std::size_t>(C * Dv));
      return w;
    }
  };

  /// The whole call's workspace: every item's partial results, the split counters, then the workers'
  /// scratch. Partials of item (b·Hkv + hk, split) hold per row its max, its sum and its
  /// unnormalised output.
  struct Workspace {
    Acc* partials;        // (B·Hkv, splits, rows, Dv + 2)
    SplitCounter* left;   // (B·Hkv)
    unsigned char* scratch;
    Index rows = 0, Dv = 0, splits = 0;

    static Workspace carve(ScratchLayout& l, Index BHkv, Index splits, Index rows, Index Dv) {
      Workspace w;
      w.partials = l.take<Acc>(static_cast<std::size_t>(BHkv * splits * rows * (Dv + 2)));
      w.left = l.take<SplitCounter>(static_cast<std::size_t>(BHkv));
      w.scratch = l.take<unsigned char>(0);
      w.rows = rows, w.Dv = Dv, w.splits = splits;
      return w;
    }
    Acc* item(Index bk, Index split) const {
      return partials + static_cast<std::size_t>(bk * splits + split) * static_cast<std::size_t>(rows * (Dv + 2));
    }
  };

  static Index splits(const Problem<T>& pb) {
    return std::max<Index>(1, (pb.Nk + DecodeTraits::kSplitKeys - 1) / DecodeTraits::kSplitKeys);
  }
  static Index rows(const Problem<T>& pb) { return pb.group * pb.Nq; }

  static std::size_t workspace_bytes(const Problem<T>& pb, int workers) {
    return scratch_bytes<Workspace>(pb.B * pb.Hkv, splits(pb), rows(pb), pb.Dv) +
           scratch_bytes<Scratch>(rows(pb), pb.D, pb.Dv) * static_cast<std::size_t>(workers);
  }

  /// Requests the K and V rows [j, min(j + n, limit)) of (b, kv head hk) into L2, every cache line.
  static void prefetch_kv_rows(const Problem<T>& pb, Index b, Index hk, Index j, Index n, Index limit) {
    const Index end = std::min(j + n, limit);
    const Index kbytes = pb.D * static_cast<Index>(sizeof(T)), vbytes = pb.Dv * static_cast<Index>(sizeof(T));
    for (; j < end; ++j) {
      const auto* kr = reinterpret_cast<const char*>(&pb.k(b, hk, j, 0));
      const auto* vr = reinterpret_cast<const char*>(&pb.v(b, hk, j, 0));
      for (Index x = 0; x < kbytes; x += 64) prefetch_l2(kr + x);
      for (Index x = 0; x < vbytes; x += 64) prefetch_l2(vr + x);
    }
  }

  /// Scores of one chunk, s[r][jj] = q[r] · k[j0 + jj] for jj < nk (q already scaled, or the scale
  /// applied to the fp32 scores with bf16 products); columns from nk to the next multiple of 4 hold
  /// scores of the chunk's last key, for the caller to overwrite. Also requests the keys and values
  /// DecodeTraits::kPrefetchKeys ahead.
  static void chunk_scores(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Index j_end, Index rows,
                           Scratch& w) {
    const Index D = pb.D;
    if constexpr (kBlockedDecode<T>) {
      // The chunk's keys as the score blocks read them: bf16 in place (bf16 products), float in
      // place, or converted to float (f16, and bf16 without AVX512_BF16).
      const Key* kc;  // (nk, D) row stride ldk
      Index ldk;
      if constexpr (kBf16Dot<T> || std::is_same_v<T, Acc>) {
        kc = reinterpret_cast<const Key*>(&pb.k(b, hk, j0, 0));
        ldk = pb.k.stride(2);
      } else {
        for (Index jj = 0; jj < nk; ++jj) convert_row(&pb.k(b, hk, j0 + jj, 0), w.kbuf + jj * D, D);
        kc = w.kbuf;
        ldk = D;
      }
      const Key* q = reinterpret_cast<const Key*>(w.q);  // raw bf16 rows with bf16 products (item)
      const Acc scale = kBf16Dot<T> ? pb.scale : Acc(1);
      DecodePrefetch pf;
      pf.klines = (D * static_cast<Index>(sizeof(T)) + 63) / 64;
      pf.vlines = (pb.Dv * static_cast<Index>(sizeof(T)) + 63) / 64;
      pf.lines = std::max(pf.klines, pf.vlines);
      for (Index jj = 0; jj < nk; jj += 4) {
        // The keys kPrefetchKeys ahead, clamped to the last key (re-requesting a line is harmless).
        for (Index c = 0; c < 4; ++c) {
          const Index j = std::min(j0 + jj + c + DecodeTraits::kPrefetchKeys, pb.Nk - 1);
          pf.k[c] = reinterpret_cast<const char*>(&pb.k(b, hk, j, 0));
          pf.v[c] = reinterpret_cast<const char*>(&pb.v(b, hk, j, 0));
        }
        const Key* kp[4];
        for (Index c = 0; c < 4; ++c) kp[c] = kc + std::min(jj + c, nk - 1) * ldk;
        for_register_rows<DecodeTraits::kScoreRows>(rows, [&](auto rb, Index r0) ATTEND_INLINE_LAMBDA {
          constexpr int RB = decltype(rb)::value;
          const DecodePrefetch* first = r0 == 0 ? &pf : nullptr;  // the first row block requests the lines
          decode_scores_block<RB, ScoreOps>(q + r0 * D, D, kp, D, scale, w.s + r0 * C + jj, C, first);
        });
      }
    } else {
      prefetch_kv_rows(pb, b, hk, j0 + DecodeTraits::kPrefetchKeys, C, j_end);
      for (Index jj = 0; jj < nk; ++jj) {
        const T* kj = &pb.k(b, hk, j0 + jj, 0);
        const Acc* k = reinterpret_cast<const Acc*>(kj);
        if constexpr (!std::is_same_v<T, Acc>) {
          convert_row(kj, w.kbuf, D);
          k = w.kbuf;
        }
        for (Index r = 0; r < rows; ++r) w.s[r * C + jj] = dot_row(w.q + r * D, k, D);
      }
    }
  }

  /// O = α ∘ O + P V over one chunk for all rows, in blocks of 4 rows.
  static void chunk_values(Acc* o, const Acc* s, const Acc* alpha, const Acc* v, Index ldv, Index nk, Index rows,
                           Index Dv) {
    constexpr Index kBlockCols = DecodeTraits::kValuePackets * kLanesOf<Acc>;
    for_register_rows<DecodeTraits::kValueRows>(rows, [&](auto rb, Index r0) ATTEND_INLINE_LAMBDA {
      constexpr int RB = decltype(rb)::value;
      if constexpr (kBlockedDecode<T>) {
        for (Index d = 0; d < Dv; d += kBlockCols) {
          decode_pv_block<RB>(o + r0 * Dv + d, Dv, s + r0 * C, C, alpha + r0, v + d, ldv, nk,
                              std::min(kBlockCols, Dv - d));
        }
      } else {
        decode_pv_rows<RB>(o + r0 * Dv, Dv, s + r0 * C, C, alpha + r0, v, ldv, nk, Dv);
      }
    });
  }

  /// The online softmax of one row over a chunk's C scores (as whole packets; the scores past nk
  /// are -inf): updates the row's max and sum, returns the rescale of its output. Scalar exp for the
  /// rescale, the packet exp_or_zero for the scores.
  static Acc softmax_row(Acc* s, Acc& m, Acc& l) {
    using Packet = PacketOf<Acc>;
    constexpr Index L = kLanesOf<Acc>;
    constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
    using namespace Eigen::internal;
    // As in OnlineSoftmax: a plain max may skip a NaN score, whose exp then poisons the sum.
    Packet mp = pset1<Packet>(m);
    for (Index c = 0; c < C; c += L) mp = pmax(mp, pload<Packet>(s + c));
    const Acc mx = predux_max(mp);
    const Acc sub = mx == kNegInf ? Acc(0) : mx;
    const Acc alpha = m == kNegInf ? Acc(0) : std::exp(m - sub);
    const Packet ps = pset1<Packet>(sub);
    Packet sum = pset1<Packet>(Acc(0));
    for (Index c = 0; c < C; c += L) {
      const Packet e = exp_or_zero(psub(pload<Packet>(s + c), ps));
      pstore(s + c, e);
      sum = padd(sum, e);
    }
    l = alpha * l + predux(sum);
    m = mx;
    return alpha;
  }

  /// One (b, kv head, key split): partial softmax statistics and outputs for its rows. `careful` is
  /// the re-run of an item whose partial output came out with a NaN (kernel/zero_weights.hpp): zero
  /// weights then skip their values.
  static void item(const Problem<T>& pb, Index b, Index hk, Index j_begin, Index j_end, Scratch& w, Acc* part,
                   bool careful = false) {
    constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
    static_assert(C % kLanesOf<Acc> == 0, "a decode chunk must be a whole number of packets");
    const Index rows = DecodeForward::rows(pb);  // row r: query head hk · group + r / Nq, query i = r % Nq
    const Index D = pb.D, Dv = pb.Dv;
    Acc* m = part;             // (rows) running max
    Acc* l = part + rows;      // (rows) running sum
    Acc* o = part + 2 * rows;  // (rows, Dv) unnormalised output

    for (Index r = 0; r < rows; ++r) {
      const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
      const T* src = &pb.q(b, h, i, 0);
      if constexpr (kBf16Dot<T>) {
        // bf16 products (decode_scores_block): q as it is, the scale goes on the fp32 scores.
        std::copy(src, src + D, reinterpret_cast<T*>(w.q) + r * D);
      } else {
        for (Index d = 0; d < D; ++d) w.q[r * D + d] = pb.scale * static_cast<Acc>(src[d]);
      }
      m[r] = kNegInf;
      l[r] = Acc(0);
      for (Index d = 0; d < Dv; ++d) o[r * Dv + d] = Acc(0);
    }

    const bool masked = pb.has_mask() || pb.causal != Causal::none;
    for (Index j0 = j_begin; j0 < j_end; j0 += C) {
      const Index nk = std::min(C, j_end - j0);
      // Scores of the chunk, each key read once for all rows.
      chunk_scores(pb, b, hk, j0, nk, j_end, rows, w);
      // Mask, online softmax and dropout per row, over the chunk's C scores as whole packets.
      for (Index r = 0; r < rows; ++r) {
        const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
        Acc* s = w.s + r * C;
        if (masked) mask_row(pb, b, h, i, j0, nk, s, 1);
        for (Index jj = nk; jj < C; ++jj) s[jj] = kNegInf;  // the chunk's tail adds exp(-inf) = 0
        w.alpha[r] = softmax_row(s, m[r], l[r]);  // applied to o by chunk_values
        if (pb.dropout.active) pb.dropout.apply_row(b, h, i, j0, nk, s, 1);
      }
      // O = α ∘ O + P V over the chunk, in blocks of 4 rows.
      const Acc* v = nullptr;
      Index ldv = Dv;
      bool dirty = false;
      if (careful) {
        // Finite copies of the values; a row whose α is 0 forgets the non-finite entries it held.
        dirty = finite_value_rows(pb, b, hk, j0, nk, w.vbuf);
        v = w.vbuf;
        forget_nonfinite(o, rows, w.alpha, Dv, Dv, 1);
      } else if constexpr (std::is_same_v<T, Acc>) {
        v = &pb.v(b, hk, j0, 0);
        ldv = pb.v.stride(2);
      } else {
        for (Index jj = 0; jj < nk; ++jj) convert_row(&pb.v(b, hk, j0 + jj, 0), w.vbuf + jj * Dv, Dv);
        v = w.vbuf;
      }
      chunk_values(o, w.s, w.alpha, v, ldv, nk, rows, Dv);
      if (dirty) {
        add_nonfinite_value_terms(
            pb, b, hk, j0, nk, rows, [&](Index jj, Index r) { return w.s[r * C + jj]; },
            [&](Index r, Index d) -> Acc& { return o[r * Dv + d]; });
      }
    }
    // 0 · Inf from a value hidden from some row leaves a NaN in its output: redo the item carefully.
    if (!careful && any_nan(o, rows * Dv)) item(pb, b, hk, j_begin, j_end, w, part, true);
  }

  /// The merge of one (b, kv head): its splits' rows in split order (deterministic), normalised.
  static void merge(const Problem<T>& pb, const Workspace& ws, Index bk) {
    constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
    const Index rows = ws.rows, splits = ws.splits, Dv = pb.Dv;
    const Acc extra = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
    const Index b = bk / pb.Hkv, hk = bk % pb.Hkv;
    for (Index r = 0; r < rows; ++r) {
      const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
      Acc m = kNegInf;
      for (Index s = 0; s < splits; ++s) m = std::max(m, ws.item(bk, s)[r]);
      const Acc sub = m == kNegInf ? Acc(0) : m;
      Acc l = Acc(0);
      T* out = &pb.out(b, h, i, 0);
      // Accumulate in the first split's slot (owned by this bk alone), then write.
      Acc* acc = ws.item(bk, 0) + 2 * rows + r * Dv;
      for (Index s = 0; s < splits; ++s) {
        const Acc* p = ws.item(bk, s);
        const Acc f = p[r] == kNegInf ? Acc(0) : std::exp(p[r] - sub);
        l += f * p[rows + r];
        if (s == 0) {
          // f = 0: the split's weights all underflow against the overall max, so it contributes
          // nothing; an Inf it holds must not become 0 · Inf = NaN (kernel/zero_weights.hpp).
          Acc zero = f;
          forget_nonfinite(acc, 1, &zero, Dv, 0, 1);
          for (Index d = 0; d < Dv; ++d) acc[d] = acc[d] * f;
        } else if (f != Acc(0) || f != f) {
          axpy_row(acc, f, p + 2 * rows + r * Dv, Dv);
        }
      }
      const Acc inv = l == Acc(0) ? Acc(0) : extra / l;
      for (Index d = 0; d < Dv; ++d) out[d] = static_cast<T>(acc[d] * inv);
      if (pb.lse.data() != nullptr) pb.lse(b, h, i) = l == Acc(0) ? kNegInf : m + std::log(l);
    }
  }

  /// out[0, n) = 1 · out + f · x, D along the lanes.
  static void axpy_row(Acc* out, Acc f, const Acc* x, Index n) {
    using Packet = PacketOf<Acc>;
    constexpr Index L = kLanesOf<Acc>;
    using namespace Eigen::internal;
    const Packet pa = pset1<Packet>(Acc(1)), pp = pset1<Packet>(f);
    Index d = 0;
    for (; d + L <= n; d += L) pstoreu(out + d, pmadd(pp, ploadu<Packet>(x + d), pmul(pa, ploadu<Packet>(out + d))));
    for (; d < n; ++d) out[d] = Acc(1) * out[d] + f * x[d];
  }

  static void run(const Problem<T>& pb, const Pool& pool, void* workspace) {
    const Index n_rows = rows(pb), n_splits = splits(pb);
    ScratchLayout layout(workspace);
    const Workspace ws = Workspace::carve(layout, pb.B * pb.Hkv, n_splits, n_rows, pb.Dv);
    for (Index bk = 0; bk < pb.B * pb.Hkv; ++bk) new (&ws.left[bk]) SplitCounter(static_cast<int>(n_splits));

    // Every (b, kv head, split), in any order on any thread, in guided runs of consecutive splits
    // (parallel_for_runs): a worker then streams one stretch of K and V, and its prefetches past the
    // end of a split serve its own next item. The worker that completes a (b, kv head)'s last split
    // merges it (acq_rel: it sees every other split's partials), so there is one fork and join per
    // call, not two.
    const Index items = pb.B * pb.Hkv * n_splits;
    parallel_for_runs(pool, worker_count(pool), items, items, [&](int worker, Index begin, Index end) {
      Scratch w = worker_scratch<Scratch>(ws.scratch, worker, n_rows, pb.D, pb.Dv);
      for (Index it = begin; it < end; ++it) {
        const Index bk = it / n_splits, split = it % n_splits;
        const Index j_begin = split * DecodeTraits::kSplitKeys;
        const Index j_end = std::min(pb.Nk, j_begin + DecodeTraits::kSplitKeys);
        item(pb, bk / pb.Hkv, bk % pb.Hkv, j_begin, j_end, w, ws.item(bk, split));
        if (ws.left[bk].fetch_sub(1, std::memory_order_acq_rel) == 1) merge(pb, ws, bk);
      }
    });
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_FORWARD_DECODE_HPP
