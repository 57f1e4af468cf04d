#ifndef ATTEND_DETAIL_KERNEL_PRODUCTS_HPP
#define ATTEND_DETAIL_KERNEL_PRODUCTS_HPP

// The two attention products of a query tile, as a policy of the tile skeleton (forward/flash.hpp,
// forward/mem_efficient.hpp): how Q is packed, how S^T = K · Q^T is computed, and how the value
// product O = α ∘ O + P · V (or its transpose) is. Two policies, differing only in the products:
//   FmaTiles<T>     acc_t<T> FMAs (FmaOps); 16-bit K and V tiles converted to float first
//   PairTiles<T>    bf16 pairs (Bf16PairOps, AVX512_BF16): K read in place by pairs of d, Q^T packed
//                   by pairs, P^T and the V tile packed by pairs of keys; needs an even D
// Each holds its operand buffers (Operands), carved with the rest of the tile's scratch.
//
// The value product has a fast form (any Store, either layout) and a careful one for the re-run of a
// tile whose accumulator came out with a NaN (kernel/zero_weights.hpp): O^T only, non-finite values
// replaced by 0, their own terms added by the caller through weight().

#include <cstdint>  // std::uint32_t

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

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_PRODUCTS_HPP
