#ifndef ATTEND_DETAIL_DECODE_PATH_HPP
#define ATTEND_DETAIL_DECODE_PATH_HPP

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

#include <algorithm>  // std::min, std::max
#include <cmath>      // std::exp, std::log, std::isfinite
#include <cstddef>    // std::size_t
#include <limits>     // std::numeric_limits

#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/online_softmax.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/tiles.hpp"
#include "attend/detail/zero_weights.hpp"

namespace attend {
namespace detail {

struct DecodeTraits {
  /// Queries per head (Nq) up to which a call takes this kernel, whatever Hq/Hkv: both kernels'
  /// costs grow with the number of query heads, so the choice depends on Nq and the head sizes only.
  /// This kernel costs about 9-11 ns per (query row, key) on one Zen 4 thread, almost whatever D,
  /// where a 64-query tile costs the same for 1 query as for 64: 60 ns per key at D = Dv = 16,
  /// 170 at 64, 363 at 128. Measured crossovers (Nk 1200, bottom_right): Nq 4-8 at D = Dv = 16,
  /// 24-28 at 64, 28-32 at 128 (Hq 8 or 32, Hkv 2 or 8 alike); so Nq <= (D + Dv) / 8, at most 24.
  /// Before, the limit was Hq/Hkv · Nq <= 16 rows: a chunk of 5 new tokens with 4 query heads per
  /// kv head ran on tiles, 6x slower (3.2 ms against 0.54 ms, Hq 8, Hkv 2, D 128).
  static constexpr Index kMaxQueries = 24;
  static constexpr Index kHeadDimsPerQuery = 8;
  /// Keys per split: 512 keys of D = 128 floats are 256 KiB of K and V, a few microseconds of
  /// streaming, so a 4096-key cache gives 8 items per kv head to spread over threads, and the merge
  /// (a few multiply-adds per row and split) stays negligible.
  static constexpr Index kSplitKeys = 512;
  /// Keys scored at a time: the exp and the max run over one packet of 16 scores per row.
  static constexpr Index kChunk = 16;
};

template <typename T>
bool use_decode_kernel(const Problem<T>& pb) {
  const Index max_queries =
      std::min(DecodeTraits::kMaxQueries, std::max<Index>(1, (pb.D + pb.Dv) / DecodeTraits::kHeadDimsPerQuery));
  return pb.Nq <= max_queries && pb.Nk > 0;
}

template <typename T>
struct DecodeScratch {
  using Acc = acc_t<T>;
  static constexpr Index C = DecodeTraits::kChunk;
  Acc* q;     // (R, D)   the item's R = Hq/Hkv · Nq query rows, scaled
  Acc* s;     // (R, C)   scores, then probabilities, of one chunk (packet-aligned rows)
  Acc* alpha; // (R)      per-row rescale of the output for the current chunk
  Acc* krow;  // (D)      one key converted (16-bit T)
  Acc* vbuf;  // (C, Dv)  the chunk's values converted (16-bit T), or finite values (zero_weights.hpp)

  static std::size_t bytes(Index R, Index D, Index Dv) {
    return align_up(sizeof(Acc) * static_cast<std::size_t>(R * D)) + align_up(sizeof(Acc) * static_cast<std::size_t>(R * C)) +
           align_up(sizeof(Acc) * static_cast<std::size_t>(R)) + align_up(sizeof(Acc) * static_cast<std::size_t>(D)) +
           align_up(sizeof(Acc) * static_cast<std::size_t>(C * Dv));
  }
  DecodeScratch(void* base, Index R, Index D) {
    auto* p = static_cast<unsigned char*>(base);
    auto take = [&p](std::size_t n) {
      Acc* r = reinterpret_cast<Acc*>(p);
      p += align_up(sizeof(Acc) * n);
      return r;
    };
    q = take(static_cast<std::size_t>(R * D));
    s = take(static_cast<std::size_t>(R * C));
    alpha = take(static_cast<std::size_t>(R));
    krow = take(static_cast<std::size_t>(D));
    vbuf = reinterpret_cast<Acc*>(p);
  }
};

/// Partial results of one (b, kv head, split): per row its max, sum and unnormalised output.
template <typename Acc>
struct DecodePartials {
  Acc* base;
  Index rows, Dv, splits;
  std::size_t stride() const { return static_cast<std::size_t>(rows * (Dv + 2)); }
  Acc* item(Index bk, Index split) const {
    return base + (static_cast<std::size_t>(bk * splits + split)) * stride();
  }
};

/// Dot product of two contiguous Acc rows, D along the lanes (four accumulators hide FMA latency).
template <typename Acc>
EIGEN_ALWAYS_INLINE Acc dot_row(const Acc* a, const Acc* b, Index n) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
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

/// out[0, n) = alpha · out + p · x, D along the lanes.
template <typename Acc>
EIGEN_ALWAYS_INLINE void axpby_row(Acc* out, Acc alpha, Acc p, const Acc* x, Index n) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  using namespace Eigen::internal;
  const Packet pa = pset1<Packet>(alpha), pp = pset1<Packet>(p);
  Index d = 0;
  for (; d + L <= n; d += L) pstoreu(out + d, pmadd(pp, ploadu<Packet>(x + d), pmul(pa, ploadu<Packet>(out + d))));
  for (; d < n; ++d) out[d] = alpha * out[d] + p * x[d];
}

/// o[r] = alpha[r] · o[r] + Σ_jj p[r][jj] · v[jj] for RB rows at once, two packets of Dv at a time:
/// 2·RB accumulators stay in registers over the chunk's keys, each value packet is loaded once for
/// all RB rows, and the rescale rides on the first load of o instead of a pass of its own.
template <int RB, typename Acc>
EIGEN_ALWAYS_INLINE void decode_pv_rows(Acc* o, Index ldo, const Acc* p, Index ldp, const Acc* alpha, const Acc* v,
                                        Index ldv, Index nk, Index Dv) {
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
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

/// One (b, kv head, key split): partial softmax statistics and outputs for its rows.
/// `careful` is the re-run of an item whose partial output came out with a NaN (zero_weights.hpp):
/// zero weights then skip their values.
template <typename T>
void decode_item(const Problem<T>& pb, Index b, Index hk, Index j_begin, Index j_end, DecodeScratch<T>& w,
                 acc_t<T>* part, bool careful = false) {
  using Acc = acc_t<T>;
  constexpr Index C = DecodeTraits::kChunk;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Index rows = pb.group * pb.Nq;  // row r: query head hk * group + r / Nq, query i = r % Nq
  const Index D = pb.D, Dv = pb.Dv;
  using Packet = typename KernelTraits<Acc>::Packet;
  constexpr Index L = KernelTraits<Acc>::kLanes;
  static_assert(C % L == 0, "a decode chunk must be a whole number of packets");
  using namespace Eigen::internal;
  Acc* m = part;              // (rows) running max
  Acc* l = part + rows;       // (rows) running sum
  Acc* o = part + 2 * rows;   // (rows, Dv) unnormalised output

  for (Index r = 0; r < rows; ++r) {
    const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
    const T* src = &pb.q(b, h, i, 0);
    for (Index d = 0; d < D; ++d) w.q[r * D + d] = pb.scale * static_cast<Acc>(src[d]);
    m[r] = kNegInf;
    l[r] = Acc(0);
    for (Index d = 0; d < Dv; ++d) o[r * Dv + d] = Acc(0);
  }

  for (Index j0 = j_begin; j0 < j_end; j0 += C) {
    const Index nk = std::min(C, j_end - j0);
    // The kernel streams K and V once, so it waits on memory unless loads are in flight ahead of
    // it: request the chunk four ahead (4 x 16 keys, 64 KiB of K and V at D = 128 float) into L2.
    // Profiles showed over half the time stalled on the first touch of K and V rows without this;
    // into L1 (prefetcht0) two chunks ahead, the fill buffers stall the prefetches themselves. At
    // (Hkv 8, Nk 4096, D 128) on one Zen 4 thread: 135 ns a key with no prefetch or with t0 at 2
    // chunks, 104-116 ns with t1 at 4, 119-122 ns with t1 at 8 (in cache the kernel takes 45 ns).
    constexpr Index kAhead = 4;
    const Index jp = j0 + kAhead * C;
    if (jp < j_end) {
      const Index np = std::min(C, j_end - jp);
      constexpr Index kLine = 64 / static_cast<Index>(sizeof(T));
      for (Index jj = 0; jj < np; ++jj) {
        const auto* kr = reinterpret_cast<const char*>(&pb.k(b, hk, jp + jj, 0));
        const auto* vr = reinterpret_cast<const char*>(&pb.v(b, hk, jp + jj, 0));
        for (Index d = 0; d < D; d += kLine) prefetch_l2(kr + d * static_cast<Index>(sizeof(T)));
        for (Index d = 0; d < Dv; d += kLine) prefetch_l2(vr + d * static_cast<Index>(sizeof(T)));
      }
    }
    // Scores of the chunk, each key read once for all rows.
    for (Index jj = 0; jj < nk; ++jj) {
      const T* kj = &pb.k(b, hk, j0 + jj, 0);
      const Acc* k = reinterpret_cast<const Acc*>(kj);
      if constexpr (!std::is_same_v<T, Acc>) {
        convert_row(kj, w.krow, D);
        k = w.krow;
      }
      for (Index r = 0; r < rows; ++r) w.s[r * C + jj] = dot_row(w.q + r * D, k, D);
    }
    // Mask, online softmax and dropout per row, over the chunk's 16 scores as whole packets.
    const bool masked = pb.has_mask() || pb.causal != Causal::none;
    for (Index r = 0; r < rows; ++r) {
      const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
      Acc* s = w.s + r * C;
      if (masked) {
        for (Index jj = 0; jj < nk; ++jj) {
          const Index j = j0 + jj;
          if (!pb.causal_visible(i, j)) {
            s[jj] = kNegInf;
          } else if (pb.keep != nullptr) {
            if (!pb.keep[pb.mask_offset(b, h, i, j)]) s[jj] = kNegInf;
          } else if (pb.bias != nullptr) {
            s[jj] += static_cast<Acc>(pb.bias[pb.mask_offset(b, h, i, j)]);
          }
        }
      }
      for (Index jj = nk; jj < C; ++jj) s[jj] = kNegInf;  // the chunk's tail adds exp(-inf) = 0
      // As in OnlineSoftmax: a plain max may skip a NaN score, whose exp then poisons the sum.
      Packet mp = pset1<Packet>(m[r]);
      for (Index c = 0; c < C; c += L) mp = pmax(mp, pload<Packet>(s + c));
      const Acc mx = predux_max(mp);
      const Acc sub = mx == kNegInf ? Acc(0) : mx;
      const Acc alpha = m[r] == kNegInf ? Acc(0) : std::exp(m[r] - sub);
      const Packet ps = pset1<Packet>(sub);
      Packet sum = pset1<Packet>(Acc(0));
      for (Index c = 0; c < C; c += L) {
        const Packet e = exp_or_zero(psub(pload<Packet>(s + c), ps));
        pstore(s + c, e);
        sum = padd(sum, e);
      }
      l[r] = alpha * l[r] + predux(sum);
      m[r] = mx;
      if (pb.dropout.active) pb.dropout.apply_row(b, h, i, j0, nk, s, 1);
      w.alpha[r] = alpha;  // applied to o by decode_pv_rows
    }
    // O = α ∘ O + P V over the chunk, in blocks of 4 rows.
    const Acc* v = nullptr;
    Index ldv = Dv;
    bool dirty = false;
    if (careful) {
      // Finite copies of the values; a row whose α is 0 forgets the non-finite entries it held.
      dirty = finite_value_rows(pb, b, hk, j0, nk, w.vbuf);
      v = w.vbuf;
      for (Index r = 0; r < rows; ++r) {
        if (w.alpha[r] != Acc(0)) continue;
        for (Index d = 0; d < Dv; ++d) {
          if (!std::isfinite(o[r * Dv + d])) o[r * Dv + d] = Acc(0);
        }
      }
    } else if constexpr (std::is_same_v<T, Acc>) {
      v = &pb.v(b, hk, j0, 0);
      ldv = pb.v.stride(2);
    } else {
      for (Index jj = 0; jj < nk; ++jj) {
        const T* vj = &pb.v(b, hk, j0 + jj, 0);
        convert_row(vj, w.vbuf + jj * Dv, Dv);
      }
      v = w.vbuf;
    }
    Index r0 = 0;
    for (; r0 + 4 <= rows; r0 += 4) decode_pv_rows<4>(o + r0 * Dv, Dv, w.s + r0 * C, C, w.alpha + r0, v, ldv, nk, Dv);
    switch (rows - r0) {
      case 3: decode_pv_rows<3>(o + r0 * Dv, Dv, w.s + r0 * C, C, w.alpha + r0, v, ldv, nk, Dv); break;
      case 2: decode_pv_rows<2>(o + r0 * Dv, Dv, w.s + r0 * C, C, w.alpha + r0, v, ldv, nk, Dv); break;
      case 1: decode_pv_rows<1>(o + r0 * Dv, Dv, w.s + r0 * C, C, w.alpha + r0, v, ldv, nk, Dv); break;
      default: break;
    }
    if (dirty) {  // the non-finite values' own terms, where the weight is not 0
      for (Index jj = 0; jj < nk; ++jj) {
        for (Index d = 0; d < Dv; ++d) {
          const Acc x = static_cast<Acc>(pb.v(b, hk, j0 + jj, d));
          if (std::isfinite(x)) continue;
          for (Index r = 0; r < rows; ++r) {
            const Acc p = w.s[r * C + jj];
            if (p != Acc(0)) o[r * Dv + d] += p * x;
          }
        }
      }
    }
  }
  // 0 · Inf from a value hidden from some row leaves a NaN in its output: redo the item carefully.
  if (!careful && any_nan(o, rows * Dv)) decode_item(pb, b, hk, j_begin, j_end, w, part, true);
}

template <typename T>
Index decode_splits(const Problem<T>& pb) {
  return std::max<Index>(1, (pb.Nk + DecodeTraits::kSplitKeys - 1) / DecodeTraits::kSplitKeys);
}

template <typename T>
std::size_t decode_workspace_bytes(const Problem<T>& pb, int workers) {
  using Acc = acc_t<T>;
  const Index rows = pb.group * pb.Nq;
  const std::size_t partials =
      sizeof(Acc) * static_cast<std::size_t>(pb.B * pb.Hkv * decode_splits(pb) * rows * (pb.Dv + 2));
  return align_up(partials) + DecodeScratch<T>::bytes(rows, pb.D, pb.Dv) * static_cast<std::size_t>(workers);
}

template <typename T>
void run_decode(const Problem<T>& pb, const Eigen::ThreadPoolDevice* device, void* workspace) {
  using Acc = acc_t<T>;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Index rows = pb.group * pb.Nq, splits = decode_splits(pb), Dv = pb.Dv;
  DecodePartials<Acc> parts{static_cast<Acc*>(workspace), rows, Dv, splits};
  const std::size_t partial_bytes = align_up(sizeof(Acc) * parts.stride() * static_cast<std::size_t>(pb.B * pb.Hkv * splits));
  auto* scratch = static_cast<unsigned char*>(workspace) + partial_bytes;
  const std::size_t per_worker = DecodeScratch<T>::bytes(rows, pb.D, pb.Dv);

  // Phase 1: every (b, kv head, split), in any order on any thread.
  parallel_for(device, worker_count(device), pb.B * pb.Hkv * splits, [&](int worker, Index item) {
    DecodeScratch<T> w(scratch + per_worker * static_cast<std::size_t>(worker), rows, pb.D);
    const Index bk = item / splits, split = item % splits;
    const Index j_begin = split * DecodeTraits::kSplitKeys;
    const Index j_end = std::min(pb.Nk, j_begin + DecodeTraits::kSplitKeys);
    decode_item(pb, bk / pb.Hkv, bk % pb.Hkv, j_begin, j_end, w, parts.item(bk, split));
  });

  // Phase 2: merge the splits of each row in split order (deterministic), normalise, write.
  const Acc extra = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
  parallel_for(device, worker_count(device), pb.B * pb.Hkv, [&](int, Index bk) {
    const Index b = bk / pb.Hkv, hk = bk % pb.Hkv;
    for (Index r = 0; r < rows; ++r) {
      const Index h = hk * pb.group + r / pb.Nq, i = r % pb.Nq;
      Acc m = kNegInf;
      for (Index s = 0; s < splits; ++s) m = std::max(m, parts.item(bk, s)[r]);
      const Acc sub = m == kNegInf ? Acc(0) : m;
      Acc l = Acc(0);
      T* out = &pb.out(b, h, i, 0);
      // Accumulate in the first split's slot (owned by this bk alone), then write.
      Acc* acc = parts.item(bk, 0) + 2 * rows + r * Dv;
      for (Index s = 0; s < splits; ++s) {
        const Acc* p = parts.item(bk, s);
        const Acc f = p[r] == kNegInf ? Acc(0) : std::exp(p[r] - sub);
        l += f * p[rows + r];
        if (s == 0) {
          // f = 0: the split's weights all underflow against the overall max, so it contributes
          // nothing; an Inf it holds must not become 0 · Inf = NaN (zero_weights.hpp).
          for (Index d = 0; d < Dv; ++d) acc[d] = f == Acc(0) && !std::isfinite(acc[d]) ? Acc(0) : acc[d] * f;
        } else if (f != Acc(0) || f != f) {
          axpby_row(acc, Acc(1), f, p + 2 * rows + r * Dv, Dv);
        }
      }
      const Acc inv = l == Acc(0) ? Acc(0) : extra / l;
      for (Index d = 0; d < Dv; ++d) out[d] = static_cast<T>(acc[d] * inv);
      if (pb.lse.data() != nullptr) pb.lse(b, h, i) = l == Acc(0) ? kNegInf : m + std::log(l);
    }
  });
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_DECODE_PATH_HPP
