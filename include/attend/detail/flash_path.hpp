#ifndef ATTEND_DETAIL_FLASH_PATH_HPP
#define ATTEND_DETAIL_FLASH_PATH_HPP

// The flash path: FlashAttention-2's forward loop on the CPU. Query tiles are the unit of work
// (parallel over b, h and query tile); each walks the key/value tiles it can see with an online
// softmax, so its scratch is O(tile) and nothing of size Nq x Nk ever exists.
//
// Per query tile (Br = 64 queries) and key tile (Bc = 64 keys):
//   S^T = K_j · (scale · Q)^T              (Bc x Br)   micro-kernel, K read in place
//   mask / causal on tiles that need it; S^T -> P^T = exp(S^T - m_new), l = α l + Σ_j P
//   O = α ∘ O + P · V_j                    (Br x Dv)   same micro-kernel, V read in place
// and at the end out = O / l, lse = m + log l. (Where Dv is not whole micro-kernel column blocks,
// the value product is O^T = α ∘ O^T + V_j^T · P^T instead, and the epilogue transposes.)

#include <cmath>    // std::isfinite
#include <cstddef>  // std::size_t
#include <cstdint>  // std::uint32_t

#include "attend/detail/bf16_dot.hpp"
#include "attend/detail/kernel_traits.hpp"
#include "attend/detail/microkernel.hpp"
#include "attend/detail/online_softmax.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/prefetch.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/tiles.hpp"
#include "attend/detail/zero_weights.hpp"

namespace attend {
namespace detail {

/// Scratch of one flash worker, carved from one aligned block.
template <typename T>
struct FlashScratch {
  using Acc = acc_t<T>;
  using Traits = KernelTraits<Acc>;
  static constexpr Index Br = Traits::kBlockQ;
  static constexpr Index Bc = Traits::kBlockK;
  static constexpr bool kConvert = !std::is_same_v<T, Acc>;

  OnlineSoftmax<Acc, Traits::kBlockQ>* softmax;
  Acc* qt;    // (D, Br)   Q^T of the tile, scaled
  Acc* st;    // (Bc, Br)  S^T, then P^T
  Acc* ot;    // (Dv, Br)  O^T, or (Br, Dv) O, unnormalised (see flash_query_tile)
  Acc* kbuf;  // (Bc, D)   converted keys (16-bit T only)
  Acc* vbuf;  // (Bc, Dv)  converted values (16-bit T), or finite values (careful re-run, zero_weights.hpp)
  // bf16 products (bf16_dot.hpp, bf16 T on AVX512_BF16 only): pairs of bf16 in 32 bits.
  std::uint32_t* qp = nullptr;  // (D/2, Br)   Q^T by pairs of d
  std::uint32_t* pp = nullptr;  // (Bc/2, Br)  P^T in bf16 by pairs of keys
  std::uint32_t* vp = nullptr;  // (Bc/2, Dv)  V tile by pairs of keys
  static std::size_t pair_words(Index n) { return static_cast<std::size_t>((n + 1) / 2); }

  static std::size_t bytes(Index D, Index Dv) {
    std::size_t n = align_up(sizeof(OnlineSoftmax<Acc, Traits::kBlockQ>));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(D * Br));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(Bc * Br));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(Dv * Br));
    if (kConvert) n += align_up(sizeof(Acc) * static_cast<std::size_t>(Bc * D));
    n += align_up(sizeof(Acc) * static_cast<std::size_t>(Bc * Dv));
    if (kBf16Dot<T>) {
      n += align_up(sizeof(std::uint32_t) * pair_words(D) * Br);
      n += align_up(sizeof(std::uint32_t) * pair_words(Bc) * Br);
      n += align_up(sizeof(std::uint32_t) * pair_words(Bc) * static_cast<std::size_t>(Dv));
    }
    return n;
  }

  FlashScratch(void* base, Index D, Index Dv) {
    auto* p = static_cast<unsigned char*>(base);
    auto take = [&p](std::size_t bytes) {
      unsigned char* r = p;
      p += align_up(bytes);
      return r;
    };
    softmax = reinterpret_cast<OnlineSoftmax<Acc, Traits::kBlockQ>*>(take(sizeof(OnlineSoftmax<Acc, Traits::kBlockQ>)));
    qt = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(D * Br)));
    st = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Bc * Br)));
    ot = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Dv * Br)));
    kbuf = kConvert ? reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Bc * D))) : nullptr;
    vbuf = reinterpret_cast<Acc*>(take(sizeof(Acc) * static_cast<std::size_t>(Bc * Dv)));
    if (kBf16Dot<T>) {
      qp = reinterpret_cast<std::uint32_t*>(take(sizeof(std::uint32_t) * pair_words(D) * Br));
      pp = reinterpret_cast<std::uint32_t*>(take(sizeof(std::uint32_t) * pair_words(Bc) * Br));
      vp = reinterpret_cast<std::uint32_t*>(take(sizeof(std::uint32_t) * pair_words(Bc) * static_cast<std::size_t>(Dv)));
    }
  }
};

/// One query tile of one (b, h): the whole FlashAttention-2 loop. `next` (optional) holds the lines
/// the worker's next tile starts with; they are requested a few at a time inside the register
/// blocks of the first key tile's two products (every kHookSteps steps of k). `careful` is the
/// re-run of a tile whose accumulator came out with a NaN (zero_weights.hpp): zero weights then skip
/// their values.
template <typename T>
void flash_query_tile(const Problem<T>& pb, Index b, Index h, Index i0, FlashScratch<T>& w,
                      LinePrefetcher* next = nullptr, bool careful = false) {
  using Acc = acc_t<T>;
  constexpr Index Br = FlashScratch<T>::Br;
  constexpr Index Bc = FlashScratch<T>::Bc;
  const Index nq = std::min(Br, pb.Nq - i0);
  const Index hk = pb.kv_head(h);
  const bool needs_mask = pb.has_mask();

  // Prologue: Q^T and empty statistics. The first key tile overwrites O^T; it is zeroed only where no
  // tile will (no visible key: the epilogue multiplies it by 0, so it must not hold NaN garbage) and
  // for the careful re-run, which accumulates from the start. At N = 62 (one tile per (b, h), data in
  // cache) the fill and the reads of zeros it replaces were 2% of a tile (13.00 against 12.77 us).
  pack_query_tile(pb, b, h, i0, nq, w.qt);
  w.softmax->reset();
  const Index j_end = visible_key_end(pb, i0, nq);
  if (careful || j_end <= 0) std::fill(w.ot, w.ot + pb.Dv * Br, Acc(0));
  // The accumulator: O with a query per row (gemm_rows) where Dv is whole column blocks, so the
  // epilogue copies rows; else O^T (gemm_panel), also in the careful re-run, whose value step works
  // on O^T. Both hold the same bits (microkernel.hpp).
  const bool o_rows = !careful && rows_fit<Acc>(pb.Dv);

  for (Index j0 = 0; j0 < j_end; j0 += Bc) {
    const Index nk = std::min(Bc, j_end - j0);
    Index ks = 0, vs = 0;
    const Acc* kt = kv_rows(pb.k, b, hk, j0, nk, w.kbuf, ks);  // (nk, D), row stride ks

    // The next tile's lines, spread over this key tile's full register blocks (a 62 x 62 tile at
    // D = 64: 20 blocks, 150 hook calls for 744 lines of q, k and v, so 5 lines at a time).
    using Traits = KernelTraits<Acc>;
    constexpr Index MR = Traits::kRegM;
    const Index score_blocks = nk / MR * Traits::kColBlocks;  // full register blocks of gemm_panel
    const Index value_blocks = o_rows ? nq / MR * (pb.Dv / Traits::kColsPerBlock) : pb.Dv / MR * Traits::kColBlocks;
    const auto hand_out = spread_over(next, hook_calls(score_blocks, pb.D) + hook_calls(value_blocks, nk));

    // S^T = K_j · Q^T: A(r = key, c = d) = kt[r * ks + c]
    gemm_panel<Acc>(nk, pb.D, kt, ks, 1, w.qt, w.st, nullptr, false, hand_out);
    if (needs_mask || pb.causal != Causal::none) mask_score_tile(pb, b, h, i0, nq, j0, nk, w.st);
    w.softmax->update(w.st, nk);
    if (pb.dropout.active) dropout_tile(pb, b, h, i0, nq, j0, nk, w.st);

    if (careful) {
      careful_value_tile<T, static_cast<int>(Br)>(pb, b, hk, j0, nk, w.st, w.ot, w.softmax->rescale, w.vbuf);
      continue;
    }
    const Acc* vt = kv_rows(pb.v, b, hk, j0, nk, w.vbuf, vs);  // (nk, Dv), row stride vs
    if (o_rows) {
      // O = α ∘ O + P · V_j: A(r = query, c = key) = st[c * Br + r], B = V_j's rows in place
      gemm_rows<Acc>(nq, pb.Dv, nk, w.st, 1, Br, vt, vs, w.ot, pb.Dv, w.softmax->rescale, j0 > 0, hand_out);
    } else {
      // O^T = α ∘ O^T + V_j^T · P^T: A(r = d, c = key) = vt[c * vs + r]
      gemm_panel<Acc>(pb.Dv, nk, vt, 1, vs, w.st, w.ot, w.softmax->rescale, j0 > 0, hand_out);
    }
    if (next != nullptr) next->drain();
  }
  if (next != nullptr) next->drain();  // no visible key
  // A NaN here is either a NaN input reaching its rows, or 0 · Inf from a value this tile's weights
  // hide: only the careful re-run tells them apart (a Dv x 64 scan, once per tile).
  if (!careful && any_nan(w.ot, o_rows ? nq * pb.Dv : pb.Dv * Br)) {
    return flash_query_tile(pb, b, h, i0, w, nullptr, true);
  }

  // Epilogue: normalise once, write out and lse.
  write_output<T, static_cast<int>(Br)>(pb, b, h, i0, nq, w.ot, *w.softmax, o_rows);
}

#if ATTEND_HAVE_BF16_DOT
/// flash_query_tile for bf16 with bf16 products (bf16_dot.hpp): K read in place by pairs of d, Q^T
/// packed by pairs, and P^T and the V tile packed by pairs of keys for P·V. D is even.
inline void flash_query_tile_bf16(const Problem<Eigen::bfloat16>& pb, Index b, Index h, Index i0,
                                  FlashScratch<Eigen::bfloat16>& w, LinePrefetcher* next = nullptr,
                                  bool careful = false) {
  constexpr Index Br = FlashScratch<Eigen::bfloat16>::Br;
  constexpr Index Bc = FlashScratch<Eigen::bfloat16>::Bc;
  const Index nq = std::min(Br, pb.Nq - i0);
  const Index hk = pb.kv_head(h);
  const bool needs_mask = pb.has_mask();
  const Index D2 = pb.D / 2, Dv = pb.Dv;
  const Index ks_bytes = pb.k.stride(2) * static_cast<Index>(sizeof(Eigen::bfloat16));

  pack_query_pairs(pb, b, h, i0, nq, w.qp);
  w.softmax->reset();
  const Index j_end = visible_key_end(pb, i0, nq);
  if (careful || j_end <= 0) std::fill(w.ot, w.ot + Dv * Br, 0.0f);  // as in flash_query_tile
  const bool o_rows = !careful && rows_fit<float>(Dv);                // O or O^T, as in flash_query_tile

  for (Index j0 = 0; j0 < j_end; j0 += Bc) {
    const Index nk = std::min(Bc, j_end - j0);
    // S^T = scale · K_j · Q^T: A(r = key, c = pair of d) at byte r·ks + 4c of K's rows
    const auto* kt = reinterpret_cast<const unsigned char*>(&pb.k(b, hk, j0, 0));
    // The next tile's lines, spread over the full register blocks as in flash_query_tile.
    constexpr Index MR = Bf16DotTraits::kRegM;
    const Index value_blocks = o_rows ? nq / MR * (Dv / (Bf16DotTraits::kRegN * Bf16DotTraits::kLanes)) : Dv / MR;
    const auto hand_out = spread_over(next, hook_calls(nk / MR, pb.D) + hook_calls(value_blocks, 2 * ((nk + 1) / 2)));
    bf16_gemm_panel<Bf16Store::scaled>(nk, D2, kt, ks_bytes, 4, w.qp, w.st, nullptr, pb.scale, hand_out);
    if (needs_mask || pb.causal != Causal::none) mask_score_tile(pb, b, h, i0, nq, j0, nk, w.st);
    w.softmax->update(w.st, nk);
    if (pb.dropout.active) dropout_tile(pb, b, h, i0, nq, j0, nk, w.st);

    pack_probability_pairs(w.st, nk, w.pp);
    const bool dirty = pack_value_pairs(&pb.v(b, hk, j0, 0), pb.v.stride(2), nk, Dv, w.vp, careful);
    if (careful) forget_nonfinite_where_rescale_is_zero<static_cast<int>(Br)>(w.ot, Dv, w.softmax->rescale);
    const auto* vp = reinterpret_cast<const unsigned char*>(w.vp);
    const Index nk2 = (nk + 1) / 2;
    if (o_rows) {
      // O = α ∘ O + P · V_j: A(r = query, c = pair of keys) at byte 4r + 4·Br·c of Pp, B = Vp
      const auto* pp = reinterpret_cast<const unsigned char*>(w.pp);
      if (j0 == 0) {
        bf16_gemm_rows<Bf16Store::overwrite>(nq, Dv, nk2, pp, 4, 4 * Br, w.vp, Dv, w.ot, Dv, nullptr, hand_out);
      } else {
        bf16_gemm_rows<Bf16Store::rescale_add>(nq, Dv, nk2, pp, 4, 4 * Br, w.vp, Dv, w.ot, Dv, w.softmax->rescale,
                                               hand_out);
      }
    } else if (j0 == 0 && !careful) {
      // O^T = α ∘ O^T + V_j^T · P^T: A(r = e, c = pair of keys) at byte 4e + 4·Dv·c of Vp
      bf16_gemm_panel<Bf16Store::overwrite>(Dv, nk2, vp, 4, 4 * Dv, w.pp, w.ot, nullptr, 1.0f, hand_out);
    } else {
      bf16_gemm_panel<Bf16Store::rescale_add>(Dv, nk2, vp, 4, 4 * Dv, w.pp, w.ot, w.softmax->rescale, 1.0f, hand_out);
    }
    if (next != nullptr) next->drain();
    if (dirty) {  // the non-finite values' own terms, where the (rounded) weight is not 0
      for (Index jj = 0; jj < nk; ++jj) {
        for (Index e = 0; e < Dv; ++e) {
          const float x = static_cast<float>(pb.v(b, hk, j0 + jj, e));
          if (std::isfinite(x)) continue;
          for (Index ii = 0; ii < Br; ++ii) {
            const float p = unpack_probability(w.pp, jj, ii);
            if (p != 0.0f) w.ot[e * Br + ii] += p * x;
          }
        }
      }
    }
  }
  if (next != nullptr) next->drain();  // no visible key
  if (!careful && any_nan(w.ot, o_rows ? nq * Dv : Dv * Br)) {
    return flash_query_tile_bf16(pb, b, h, i0, w, nullptr, true);
  }
  write_output<Eigen::bfloat16, static_cast<int>(Br)>(pb, b, h, i0, nq, w.ot, *w.softmax, o_rows);
}
#endif

/// Bytes of scratch the flash path needs for `workers` workers.
template <typename T>
std::size_t flash_workspace_bytes(Index D, Index Dv, int workers) {
  return FlashScratch<T>::bytes(D, Dv) * static_cast<std::size_t>(workers);
}

/// The first rows a query tile will read (its queries and first key/value tile), to stream in while
/// the tile before it computes. At N = 62 a whole (b, h) is one tile whose 48 KiB of q, k and v take
/// about as long to arrive from DRAM as its products take to compute.
template <typename T>
LinePrefetcher query_tile_lines(const Problem<T>& pb, Index b, Index h, Index i0) {
  constexpr Index Br = FlashScratch<T>::Br;
  constexpr Index Bc = FlashScratch<T>::Bc;
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

template <typename T>
void run_flash(const Problem<T>& pb, const Eigen::ThreadPoolDevice* device, void* workspace) {
  constexpr Index Br = FlashScratch<T>::Br;
  const Index tiles = (pb.Nq + Br - 1) / Br;
  const std::size_t per_worker = FlashScratch<T>::bytes(pb.D, pb.Dv);
  // Guided runs of consecutive tiles (parallel_for_runs), at most 64: a worker looks ahead only
  // within its run, so the first tile of each run starts cold (at N = 62 from DRAM, 17 us against
  // 13.7). BS-RoFormer's frequency axis (6408 tiles) at 2 threads: fixed runs of 8 took 135.5
  // GFLOP/s, fixed runs of 50 139.
  const Index items = pb.B * pb.Hq * tiles;
  parallel_for_runs(device, worker_count(device), items, 64, [&](int worker, Index begin, Index end) {
    FlashScratch<T> w(static_cast<unsigned char*>(workspace) + per_worker * static_cast<std::size_t>(worker), pb.D,
                      pb.Dv);
    for (Index item = begin; item < end; ++item) {
      const Index bh = item / tiles, nb = (item + 1) / tiles;
      LinePrefetcher next;
      if (item + 1 < end) next = query_tile_lines(pb, nb / pb.Hq, nb % pb.Hq, ((item + 1) % tiles) * Br);
#if ATTEND_HAVE_BF16_DOT
      if constexpr (kBf16Dot<T>) {
        if (pb.D % 2 == 0) {
          flash_query_tile_bf16(pb, bh / pb.Hq, bh % pb.Hq, (item % tiles) * Br, w, &next);
          continue;
        }
      }
#endif
      flash_query_tile(pb, bh / pb.Hq, bh % pb.Hq, (item % tiles) * Br, w, &next);
    }
    stream_fence();  // the output's non-temporal stores, before the pool hears this worker is done
  });
}

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_FLASH_PATH_HPP
