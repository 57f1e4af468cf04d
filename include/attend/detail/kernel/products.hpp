#ifndef ATTEND_DETAIL_KERNEL_PRODUCTS_HPP
#define ATTEND_DETAIL_KERNEL_PRODUCTS_HPP

// The two attention products of a query tile, as a policy of the tile skeleton (forward/flash.hpp,
// forward/mem_efficient.hpp): how Q is packed, how S^T = K · Q^T is computed, and how the value
// product O = α ∘ O + P · V (or its transpose) is. Two policies, differing only in the products:
//   FmaTiles<T>     acc_t<T> FMAs (FmaOps); 16-bit K and V tiles converted to float first
//   PairTiles<T>    bf16 pairs (Bf16PairOps, AVX512_BF16): K read in place by pairs of d, Q^T packed
//                   by pairs, P^T and the V tile packed by pairs of keys; needs an even D
//   AmxTiles<T>     bf16 AMX tiles (arch/amx.hpp): PairTiles' packing, the products as 16 x 16 tiles
//                   of tdpbf16ps; needs an even D
// Each holds its operand buffers (Operands), carved with the rest of the tile's scratch.
//
// The value product has a fast form (any Store, either layout) and a careful one for the re-run of a
// tile whose accumulator came out with a NaN (kernel/zero_weights.hpp): O^T only, non-finite values
// replaced by 0, their own terms added by the caller through weight().

#include <algorithm>  // std::copy, std::fill
#include <cstdint>    // std::uint32_t
#include <cstring>    // std::memcpy, std::memset

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/microkernel.hpp"
#include "attend/detail/kernel/tiles.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/scratch.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Full register blocks of a product with m rows: gemm_panel's (query columns in kColBlocks blocks)
/// or gemm_rows' (n columns in blocks of kColsPerBlock).
template <class Ops>
constexpr Index panel_blocks(Index m) {
  return m / RegisterBlocking<Ops>::kRegM * RegisterBlocking<Ops>::kColBlocks;
}
template <class Ops>
constexpr Index rows_blocks(Index m, Index n) {
  return m / RegisterBlocking<Ops>::kRegM * (n / RegisterBlocking<Ops>::kColsPerBlock);
}

template <typename T>
struct FmaTiles {
  using Acc = acc_t<T>;
  using Ops = FmaOps<Acc>;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;
  static constexpr bool kConvert = !std::is_same_v<T, Acc>;
  /// A worker's last tile is done: nothing to give back.
  static void finish() {}

  struct Operands {
    Acc* qt;    // (D, Br)   Q^T of the tile, scaled
    Acc* kbuf;  // (Bc, D)   converted keys (16-bit T only)
    Acc* vbuf;  // (Bc, Dv)  converted values (16-bit T), or finite values (careful re-run)
  };
  static Operands carve(ScratchLayout& l, Index D, Index Dv) {
    Operands o;
    o.qt = l.take<Acc>(static_cast<std::size_t>(D * Br));
    o.kbuf = kConvert ? l.take<Acc>(static_cast<std::size_t>(Bc * D)) : nullptr;
    o.vbuf = l.take<Acc>(static_cast<std::size_t>(Bc * Dv));
    return o;
  }

  static void pack_queries(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Operands& w) {
    pack_query_tile(pb, b, h, i0, nq, w.qt);
  }

  /// Hook calls of the scores of nk keys and the fast value product of nk keys for nq queries.
  static Index hook_calls_of(const Problem<T>& pb, Index nq, Index nk, bool o_rows) {
    const Index value_blocks = o_rows ? rows_blocks<Ops>(nq, pb.Dv) : panel_blocks<Ops>(pb.Dv);
    return hook_calls(panel_blocks<Ops>(nk), pb.D) + hook_calls(value_blocks, nk);
  }

  /// st (nk x Br) = K_j · Q^T, keys j0 .. j0 + nk of (b, kv head hk); the scale is in Q^T.
  template <typename Hook = NoHook>
  static void scores(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Operands& w, Acc* st,
                     Hook hook = {}) {
    const Rows<Acc> kt = kv_rows(pb.k, b, hk, j0, nk, w.kbuf);  // (nk, D)
    // A(r = key, c = d) = kt[r * stride + c]
    gemm_panel<Ops, Store::overwrite>(nk, pb.D, {kt.ptr, kt.stride, 1}, w.qt, st, nullptr, Acc(1), hook);
  }

  /// The fast value product over keys j0 .. j0 + nk, P^T in pt (nk x Br): O (nq x Dv, a query per
  /// row) or O^T (Dv x Br), written as kStore says with factors per query.
  template <Store kStore, typename Hook = NoHook>
  static void values(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Index nq, const Acc* pt,
                     Operands& w, Acc* o, bool o_rows, const Acc* factors, Hook hook = {}) {
    const Rows<Acc> vt = kv_rows(pb.v, b, hk, j0, nk, w.vbuf);  // (nk, Dv)
    if (o_rows) {
      // O = α ∘ O + P · V_j: A(r = query, c = key) = pt[c * Br + r], B = V_j's rows in place
      gemm_rows<Ops, kStore>(nq, pb.Dv, nk, {pt, 1, Br}, vt.ptr, vt.stride, o, pb.Dv, factors, hook);
    } else {
      // O^T = α ∘ O^T + V_j^T · P^T: A(r = d, c = key) = vt[c * stride + r]
      gemm_panel<Ops, kStore>(pb.Dv, nk, {vt.ptr, 1, vt.stride}, pt, o, factors, Acc(1), hook);
    }
  }

  /// The careful value product on O^T: finite values only; returns whether any value was not.
  template <Store kStore>
  static bool careful_values(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, const Acc* pt, Operands& w,
                             Acc* ot, const Acc* factors) {
    const bool dirty = finite_value_rows(pb, b, hk, j0, nk, w.vbuf);
    gemm_panel<Ops, kStore>(pb.Dv, nk, {w.vbuf, 1, pb.Dv}, pt, ot, factors);
    return dirty;
  }
  /// The weight the value product gave key j for query ii.
  static Acc weight(const Operands&, const Acc* pt, Index j, Index ii) { return pt[j * Br + ii]; }
};

/// PairTiles needs Bf16PairOps, which exists only where the target has AVX512_BF16; the template is
/// instantiated only there (kBf16Dot<T>).
template <typename T, typename Pairs = Bf16PairOps>
struct PairTiles {
  using Acc = float;
  using Ops = Pairs;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;
  static std::size_t pair_words(Index n) { return static_cast<std::size_t>((n + 1) / 2); }
  /// A worker's last tile is done: nothing to give back.
  static void finish() {}

  struct Operands {
    std::uint32_t* qp;  // (D/2, Br)   Q^T by pairs of d
    std::uint32_t* pp;  // (Bc/2, Br)  P^T in bf16 by pairs of keys
    std::uint32_t* vp;  // (Bc/2, Dv)  V tile by pairs of keys
  };
  static Operands carve(ScratchLayout& l, Index D, Index Dv) {
    Operands o;
    o.qp = l.take<std::uint32_t>(pair_words(D) * Br);
    o.pp = l.take<std::uint32_t>(pair_words(Bc) * Br);
    o.vp = l.take<std::uint32_t>(pair_words(Bc) * static_cast<std::size_t>(Dv));
    return o;
  }

  static void pack_queries(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Operands& w) {
    // Rows from one base and stride (bytes), as in pack_transposed.
    const auto* rows = reinterpret_cast<const unsigned char*>(&pb.q(b, h, i0, 0));
    Pairs::template pack_query_pairs<static_cast<int>(Br)>(rows, pb.q.stride(2) * Index(sizeof(T)), nq, pb.D, w.qp);
  }

  static Index hook_calls_of(const Problem<T>& pb, Index nq, Index nk, bool o_rows) {
    const Index value_blocks = o_rows ? rows_blocks<Ops>(nq, pb.Dv) : panel_blocks<Ops>(pb.Dv);
    return hook_calls(panel_blocks<Ops>(nk), pb.D) + hook_calls(value_blocks, 2 * ((nk + 1) / 2));
  }

  /// st (nk x Br) = scale · K_j · Q^T over pairs of d: exact bf16 products summed in fp32, then scaled.
  template <typename Hook = NoHook>
  static void scores(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Operands& w, float* st,
                     Hook hook = {}) {
    // A(r = key, c = pair of d) at byte r·ks + 4c of K's rows
    const auto* kt = reinterpret_cast<const unsigned char*>(&pb.k(b, hk, j0, 0));
    const Index ks = pb.k.stride(2) * Index(sizeof(T));
    gemm_panel<Ops, Store::scaled>(nk, pb.D / 2, {kt, ks, 4}, w.qp, st, nullptr, pb.scale, hook);
  }

  template <Store kStore, typename Hook = NoHook>
  static void values(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Index nq, const float* pt,
                     Operands& w, float* o, bool o_rows, const float* factors, Hook hook = {}) {
    Pairs::template pack_probability_pairs<static_cast<int>(Br)>(pt, nk, w.pp);
    Pairs::pack_value_pairs(&pb.v(b, hk, j0, 0), pb.v.stride(2), nk, pb.Dv, w.vp, false);
    const Index nk2 = (nk + 1) / 2;
    if (o_rows) {
      // O = α ∘ O + P · V_j: A(r = query, c = pair of keys) at byte 4r + 4·Br·c of Pp, B = Vp
      const auto* pp = reinterpret_cast<const unsigned char*>(w.pp);
      gemm_rows<Ops, kStore>(nq, pb.Dv, nk2, {pp, 4, 4 * Br}, w.vp, pb.Dv, o, pb.Dv, factors, hook);
    } else {
      // O^T = α ∘ O^T + V_j^T · P^T: A(r = e, c = pair of keys) at byte 4e + 4·Dv·c of Vp
      const auto* vp = reinterpret_cast<const unsigned char*>(w.vp);
      gemm_panel<Ops, kStore>(pb.Dv, nk2, {vp, 4, 4 * pb.Dv}, w.pp, o, factors, 1.0f, hook);
    }
  }

  template <Store kStore>
  static bool careful_values(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, const float* pt,
                             Operands& w, float* ot, const float* factors) {
    Pairs::template pack_probability_pairs<static_cast<int>(Br)>(pt, nk, w.pp);
    const bool dirty = Pairs::pack_value_pairs(&pb.v(b, hk, j0, 0), pb.v.stride(2), nk, pb.Dv, w.vp, true);
    const auto* vp = reinterpret_cast<const unsigned char*>(w.vp);
    gemm_panel<Ops, kStore>(pb.Dv, (nk + 1) / 2, {vp, 4, 4 * pb.Dv}, w.pp, ot, factors, 1.0f);
    return dirty;
  }
  /// The weight the value product gave key j for query ii: P rounded to bf16.
  static float weight(const Operands& w, const float*, Index j, Index ii) {
    return Pairs::template unpack_probability<static_cast<int>(Br)>(w.pp, j, ii);
  }
};


#if ATTEND_HAVE_AMX_BF16
/// The products on AMX tiles (arch/amx.hpp), for bf16 with an even D: the same operands as PairTiles
/// (its packing, called from here: Q^T and P^T by pairs, the V tile by pairs of keys), zero-padded to
/// whole tiles, and the products computed 16 x 16 fp32 tiles at a time:
///   S^T (nk x Br)   = K_j · Q^T      A: K's rows in place (a zero-padded copy of a partial tile), B: Qp
///   O   (Br x Dv)  += P · V_j        A: Pp transposed by 32-bit words, B: Vp   (where the skeleton
///                                    keeps O by rows: Dv whole 64-float blocks, rows_fit)
///   O^T (Dv x Br)  += V_j^T · P^T    A: Vp transposed by 32-bit words, B: Pp   (any other Dv, and the
///                                    careful re-run); a partial last dv tile goes through ctail
/// Both transposes are pack_query_pairs' 16 x 16 one. The online softmax's rescale of the accumulator
/// runs on AVX-512 in memory before the tiles load it.
/// Numerics as PairTiles: exact bf16 products summed in fp32, the scale on the fp32 sums, P rounded to
/// bf16 for the value product (weight() gives it back); each element is the same chain of tdpbf16ps
/// whatever the thread count.
template <typename T>
struct AmxTiles {
  using Acc = float;
  using Ops = Bf16PairOps;  ///< for rows_fit, as PairTiles: the micro-kernel never runs here
  using Pairs = Bf16PairOps;
  static constexpr Index Br = TileTraits::kBlockQ;
  static constexpr Index Bc = TileTraits::kBlockK;
  static constexpr Index kRows = AmxTraits::kTileRows;
  static constexpr Index kKeyPairs = AmxTraits::kKeyPairs;
  static constexpr Index kQueryTiles = Br / AmxTraits::kTileCols;
  static_assert(amx::kRows == AmxTraits::kTileRows && amx::kPairsPerRow == AmxTraits::kTilePairs &&
                    amx::kPairsPerRow == AmxTraits::kTileCols,
                "AmxTraits describes the configured tiles (arch/amx.hpp)");
  static_assert(AmxTraits::kFits, "AmxTiles is offered only where the key tile is whole 16-key C tiles");

  struct Operands {
    std::uint32_t* qp;    // (Dp/2, Br)        Q^T by pairs of d, rows past D/2 zero (Dp = padded_d(D))
    std::uint32_t* pp;    // (kKeyPairs, Br)   P^T in bf16 by pairs of keys, rows past the tile's pairs zero
    std::uint32_t* pq;    // (Br, kKeyPairs)   P by pairs of keys: pq[i * kKeyPairs + c] = pp[c * Br + i]
    std::uint32_t* vp;    // (kKeyPairs, Dv)   V tile by pairs of keys, rows past the tile's pairs zero
    std::uint32_t* vt;    // (Dvp, kKeyPairs)  V^T by pairs of keys: vt[e * kKeyPairs + c] = vp[c * Dv + e]
    unsigned char* kpad;  // (16, Dp)          bf16 rows of K's last, partial 16-key tile, zero-padded
    float* ctail;         // (16, Br)          O^T's last dv tile where Dv is not whole 16-row tiles
  };
  static Operands carve(ScratchLayout& l, Index D, Index Dv) {
    const auto Dp = static_cast<std::size_t>(AmxTraits::padded_d(D));
    const auto Dvp = static_cast<std::size_t>(AmxTraits::padded_dv(Dv));
    Operands o;
    o.qp = l.take<std::uint32_t>(Dp / 2 * Br);
    o.pp = l.take<std::uint32_t>(static_cast<std::size_t>(kKeyPairs * Br));
    o.pq = l.take<std::uint32_t>(static_cast<std::size_t>(Br * kKeyPairs));
    o.vp = l.take<std::uint32_t>(static_cast<std::size_t>(kKeyPairs) * static_cast<std::size_t>(Dv));
    o.vt = l.take<std::uint32_t>(Dvp * kKeyPairs);
    o.kpad = l.take<unsigned char>(static_cast<std::size_t>(kRows) * Dp * sizeof(T));
    o.ctail = l.take<float>(static_cast<std::size_t>(kRows * Br));
    return o;
  }

  /// Q^T by pairs (PairTiles' packing), zero pairs up to whole 32-d steps. First call of every query
  /// tile, so it also loads this thread's tile configuration (arch/amx.hpp: another library on the
  /// thread may have changed it since the last tile).
  static void pack_queries(const Problem<T>& pb, Index b, Index h, Index i0, Index nq, Operands& w) {
    amx::configure();
    const auto* rows = reinterpret_cast<const unsigned char*>(&pb.q(b, h, i0, 0));
    Pairs::template pack_query_pairs<static_cast<int>(Br)>(rows, pb.q.stride(2) * Index(sizeof(T)), nq, pb.D, w.qp);
    std::fill(w.qp + pb.D / 2 * Br, w.qp + AmxTraits::padded_d(pb.D) / 2 * Br, 0u);
  }

  /// Hook calls per key tile: one after each 2 x 2 block of C tiles (amx::gemm) of both products.
  static Index hook_calls_of(const Problem<T>& pb, Index, Index nk, bool o_rows) {
    const Index key_tiles = (nk + kRows - 1) / kRows, in_place = in_place_key_tiles(pb.D, nk);
    const Index score_calls = amx::blocks(in_place, kQueryTiles) + (key_tiles - in_place) * amx::blocks(1, kQueryTiles);
    const Index full = pb.Dv / kRows, tail = pb.Dv % kRows > 0 ? 1 : 0;
    const Index value_calls = o_rows ? amx::blocks(kQueryTiles, full)
                                     : amx::blocks(full, kQueryTiles) + tail * amx::blocks(1, kQueryTiles);
    return score_calls + value_calls;
  }
  /// Whole 16-key tiles of K the scores read in place: all of them where D is whole 32-d steps.
  static Index in_place_key_tiles(Index D, Index nk) { return D == AmxTraits::padded_d(D) ? nk / kRows : 0; }

  /// st (nk x Br) = scale · K_j · Q^T: exact bf16 products summed in fp32 by the tiles, then scaled.
  template <typename Hook = NoHook>
  static void scores(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Operands& w, float* st,
                     Hook hook = {}) {
    const Index Dp = AmxTraits::padded_d(pb.D), steps = Dp / (2 * AmxTraits::kTilePairs);
    const auto* k = reinterpret_cast<const unsigned char*>(&pb.k(b, hk, j0, 0));
    const Index ks = pb.k.stride(2) * Index(sizeof(T));
    const auto* qp = reinterpret_cast<const unsigned char*>(w.qp);
    auto* c = reinterpret_cast<unsigned char*>(st);
    // A tile reads 16 whole rows of 32 d: past the last key or past D it would read other rows (or
    // past the tensor), whose Inf or NaN would reach the sums through 0 · Inf. So whole tiles of K
    // are read in place where D is whole steps, and the rest from a zero-padded copy.
    const Index in_place = in_place_key_tiles(pb.D, nk);
    amx::gemm<false>(in_place, kQueryTiles, steps, k, ks, qp, 4 * Br, c, 4 * Br, hook);
    for (Index m = in_place; m * kRows < nk; ++m) {
      const std::size_t row = static_cast<std::size_t>(pb.D) * sizeof(T), padded = static_cast<std::size_t>(Dp) * sizeof(T);
      for (Index r = 0; r < kRows; ++r) {
        unsigned char* dst = w.kpad + static_cast<std::size_t>(r) * padded;
        const Index key = m * kRows + r;
        if (key < nk) {
          std::memcpy(dst, k + key * ks, row);
          std::memset(dst + row, 0, padded - row);
        } else {
          std::memset(dst, 0, padded);
        }
      }
      amx::gemm<false>(1, kQueryTiles, steps, w.kpad, static_cast<Index>(padded), qp, 4 * Br,
                       c + m * kRows * 4 * Br, 4 * Br, hook);
    }
    amx::scale_rows(st, nk, Br, Br, pb.scale);
  }

  template <Store kStore, typename Hook = NoHook>
  static void values(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, Index, const float* pt, Operands& w,
                     float* o, bool o_rows, const float* factors, Hook hook = {}) {
    value_product<kStore>(pb, b, hk, j0, nk, pt, w, o, o_rows, factors, false, hook);
  }
  template <Store kStore>
  static bool careful_values(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, const float* pt,
                             Operands& w, float* ot, const float* factors) {
    return value_product<kStore>(pb, b, hk, j0, nk, pt, w, ot, false, factors, true, NoHook{});
  }
  /// The weight the value product gave key j for query ii: P rounded to bf16.
  static float weight(const Operands& w, const float*, Index j, Index ii) {
    return Pairs::template unpack_probability<static_cast<int>(Br)>(w.pp, j, ii);
  }

  /// The tiles are done on this worker's thread (tilerelease).
  static void finish() { amx::release(); }

 private:
  /// O (Br x Dv, o_rows) or O^T (Dv x Br) = [α ∘ O +] P · V_j over nk keys. With `finite_only` (the
  /// careful re-run, O^T), non-finite values count as 0; returns whether there were any.
  template <Store kStore, typename Hook>
  static bool value_product(const Problem<T>& pb, Index b, Index hk, Index j0, Index nk, const float* pt, Operands& w,
                            float* o, bool o_rows, const float* factors, bool finite_only, Hook hook) {
    static_assert(kStore == Store::overwrite || kStore == Store::rescale_add, "the skeleton's two value stores");
    constexpr bool kAccumulate = kStore == Store::rescale_add;
    const Index Dv = pb.Dv, nk2 = (nk + 1) / 2;
    const Index steps = (nk2 + AmxTraits::kTilePairs - 1) / AmxTraits::kTilePairs, padded_pairs = steps * AmxTraits::kTilePairs;
    // Pp and Vp, their pairs past the tile's zero up to whole steps: stale rows could hold NaN
    // patterns, and 0 · NaN is NaN.
    Pairs::template pack_probability_pairs<static_cast<int>(Br)>(pt, nk, w.pp);
    std::fill(w.pp + nk2 * Br, w.pp + padded_pairs * Br, 0u);
    const bool dirty = Pairs::pack_value_pairs(&pb.v(b, hk, j0, 0), pb.v.stride(2), nk, Dv, w.vp, finite_only);
    std::fill(w.vp + nk2 * Dv, w.vp + padded_pairs * Dv, 0u);
    auto* c = reinterpret_cast<unsigned char*>(o);

    if (o_rows) {
      // O = α ∘ O + P · V_j: A = Pp transposed (queries by pairs of keys), B = Vp in place. Dv is whole
      // 64-float blocks here (rows_fit), so every C tile is whole.
      Pairs::template pack_query_pairs<static_cast<int>(kKeyPairs)>(reinterpret_cast<const unsigned char*>(w.pp),
                                                                     4 * Br, nk2, 2 * Br, w.pq);
      if (kAccumulate) amx::scale_rows_by(o, Br, Dv, Dv, factors);
      amx::gemm<kAccumulate>(kQueryTiles, Dv / AmxTraits::kTileCols, steps, reinterpret_cast<const unsigned char*>(w.pq),
                             4 * kKeyPairs, reinterpret_cast<const unsigned char*>(w.vp), 4 * Dv, c, 4 * Dv, hook);
      return dirty;
    }
    // O^T = α ∘ O^T + V_j^T · P^T: A = Vp transposed (dv by pairs of keys), B = Pp.
    Pairs::template pack_query_pairs<static_cast<int>(kKeyPairs)>(reinterpret_cast<const unsigned char*>(w.vp), 4 * Dv,
                                                                   nk2, 2 * Dv, w.vt);
    std::fill(w.vt + Dv * kKeyPairs, w.vt + AmxTraits::padded_dv(Dv) * kKeyPairs, 0u);
    if (kAccumulate) amx::scale_columns(o, Dv, Br, Br, factors);
    const auto* a = reinterpret_cast<const unsigned char*>(w.vt);
    const auto* bp = reinterpret_cast<const unsigned char*>(w.pp);
    const Index full = Dv / kRows, tail = Dv % kRows;
    amx::gemm<kAccumulate>(full, kQueryTiles, steps, a, 4 * kKeyPairs, bp, 4 * Br, c, 4 * Br, hook);
    if (tail > 0) {
      // The last dv rows through a whole tile in ctail: a 16-row tile store would run past O^T.
      float* last = o + full * kRows * Br;  // (tail, Br)
      if (kAccumulate) std::copy(last, last + tail * Br, w.ctail);
      amx::gemm<kAccumulate>(1, kQueryTiles, steps, a + full * kRows * 4 * kKeyPairs, 4 * kKeyPairs, bp, 4 * Br,
                             reinterpret_cast<unsigned char*>(w.ctail), 4 * Br, hook);
      std::copy(w.ctail, w.ctail + tail * Br, last);
    }
    return dirty;
  }
};
#endif  // ATTEND_HAVE_AMX_BF16

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_PRODUCTS_HPP
