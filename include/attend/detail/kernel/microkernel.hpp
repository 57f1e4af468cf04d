#ifndef ATTEND_DETAIL_KERNEL_MICROKERNEL_HPP
#define ATTEND_DETAIL_KERNEL_MICROKERNEL_HPP

// The one register-blocked product every attention GEMM uses, for any multiply-add policy Ops
// (arch/primitives.hpp: FmaOps<float|double>, Bf16PairOps), in two forms:
//   gemm_panel:  C (m x Br) = store(A (m x kc) · B (kc x Br), C)
//     B and C are packed row-major panels with Br = TileTraits::kBlockQ columns, the query index
//     running along the lanes.
//       S^T = K · Q^T:             A = K tile (keys x D, read in place),    B = Q^T (D x Br)
//       O^T = α ∘ O^T + V^T · P^T: A = V^T (Dv x keys, read from V's rows), B = P^T (keys x Br)
//   gemm_rows:   C (m x n)  = store(A (m x kc) · B (kc x n), C)
//     B is read in place (rows of any stride and alignment), C has one row per query.
//       O = α ∘ O + P · V:         A = P (queries x keys, read from P^T),    B = V tile (keys x Dv)
//     O comes out with a query per row, as the output is laid out: its epilogue needs no transpose.
// In both, A is read in place through strides (Ops::AUnit apart), so it is never packed: one broadcast
// per row and step of the reduction, or, where the policy multiplies by lanes (Ops::kLaneFma:
// AArch64's fmla by element), a load of Ops::kALanes values used lane by lane (ARead below). With
// FmaOps each C element is the same chain of FMAs over k in both forms and every way of reading A
// (the product's operands are swapped, which an FMA does not see), so O and O^T hold the same bits.
// A step of the reduction is Ops::kValuesPerStep values of k (2 for bf16 pairs).
//
// How C is written is a template parameter (Store), so each form compiles to branch-free stores.

#include <type_traits>  // std::integral_constant
#include <utility>      // std::integer_sequence

#include <Eigen/Core>

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/macros.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// How a product writes C.
enum class Store {
  overwrite,    ///< C = A·B
  add,          ///< C = C + A·B
  rescale_add,  ///< C = factor ∘ C + A·B, one explicit FMA (factor per column or per row: ScaleBy)
  scaled,       ///< C = scale · (A·B)
};

/// Where rescale_add takes the factor for the old C: one per column (a packet: O^T's rescale, one per
/// query) or one per row (a broadcast: O's, one per query).
enum class ScaleBy { column, row };

/// How the micro-kernel reads A (element (r, k) at a[r · a_rs + k · a_cs]). Lanes need Ops::kLaneFma.
///   broadcast   any strides: one broadcast per row and step of k. With NEON's 6 x 4 block a step is
///               4 B loads, 6 ld1r and 24 FMAs (ld1r takes no offset, so each also needs an address).
///   k_lanes     a_cs == 1 (S^T = K · Q^T with K's rows read in place; the backward's dV and dK):
///               one load of kALanes steps of k per row, then kALanes steps multiply by its lanes
///               in turn: 6 loads per 4 steps instead of 24 broadcasts (floats). Steps past a
///               multiple of kALanes are broadcast.
///   row_lanes   a_rs == 1 (P read from P^T; V^T from V's rows; the backward's dQ): the block's
///               rows of one step are consecutive, so 2 loads (4 rows and 2) per step instead of 6.
enum class ARead { broadcast, k_lanes, row_lanes };

/// Calls f(std::integral_constant<ARead, how>{}) with how an A of strides (rs, cs) is best read.
template <class Ops, typename F>
EIGEN_ALWAYS_INLINE void with_a_read([[maybe_unused]] Index rs, [[maybe_unused]] Index cs, F&& f) {
  if constexpr (Ops::kLaneFma) {
    if (cs == 1) return f(std::integral_constant<ARead, ARead::k_lanes>{});
    if (rs == 1) return f(std::integral_constant<ARead, ARead::row_lanes>{});
  }
  f(std::integral_constant<ARead, ARead::broadcast>{});
}

/// Calls f(std::integral_constant<int, i>{}) for i = 0 .. N-1: loops whose index must be a constant
/// (a lane number).
template <typename F, int... I>
EIGEN_ALWAYS_INLINE void static_for_each(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
EIGEN_ALWAYS_INLINE void static_for(F&& f) {
  static_for_each(f, std::make_integer_sequence<int, N>{});
}

/// What gemm_panel and gemm_rows do inside their register blocks by default: nothing.
struct NoHook {
  EIGEN_ALWAYS_INLINE void operator()() const {}
};

/// A hook runs inside each full register block once every kHookSteps values of k. The flash path
/// hands out the next tile's prefetches there: at N = 62 from DRAM, one thread, a tile took 12.9-13.1
/// us with them handed out after each block (about 38 lines at once) and 11.5-11.9 us at every 8
/// steps (5 lines); 4 and 16 steps measured the same as 8.
constexpr Index kHookSteps = 8;
static_assert(kHookSteps >= 2 && (kHookSteps & (kHookSteps - 1)) == 0, "the hook interval must be a power of two");

/// How many times a product runs its hook: kc / kHookSteps times (kc counted in values of k) in each
/// of its `full_blocks` full register blocks (tail blocks run none).
constexpr Index hook_calls(Index full_blocks, Index kc) { return full_blocks * (kc / kHookSteps); }

/// One MR x NR-packet block: acc[r][n] = Σ_k A(r, k) · B(k, n-th packet) over kc steps; then C =
/// store(acc, C). Every loop bound is a compile-time constant, so the accumulators live in registers.
/// With ScaleBy::column, B is a packed, aligned panel and `factors` points at the block's first
/// column; with ScaleBy::row, B may have any alignment and `factors` points at the block's first row.
/// `scale` serves Store::scaled. `step()` runs after every kHookSteps values of k. kRead: how A is
/// read (ARead; its strides must allow it).
template <class Ops, int MR, int NR, Store kStore, ScaleBy kScale = ScaleBy::column, ARead kRead = ARead::broadcast,
          typename Hook = NoHook>
EIGEN_ALWAYS_INLINE void micro_block(Index kc, const typename Ops::AUnit* a, Index a_rs, Index a_cs,
                                     const typename Ops::BUnit* b, Index ldb, typename Ops::Scalar* c, Index ldc,
                                     const typename Ops::Scalar* factors, typename Ops::Scalar scale,
                                     const Hook& step = {}) {
  using Packet = typename Ops::Packet;
  using Scalar = typename Ops::Scalar;
  constexpr int L = Ops::kLanes;
  constexpr Index kHookEvery = kHookSteps / Ops::kValuesPerStep;  // steps of the reduction
  static_assert(kHookEvery >= 1 && (kHookEvery & (kHookEvery - 1)) == 0, "the hook interval must be a power of two");
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  using Eigen::internal::pmadd;
  using Eigen::internal::pmul;
  using Eigen::internal::pset1;
  using Eigen::internal::pstore;

  Packet acc[MR][NR];
  ATTEND_UNROLL
  for (int r = 0; r < MR; ++r)
    ATTEND_UNROLL
    for (int n = 0; n < NR; ++n) acc[r][n] = Ops::zero();

  // Every accumulator is the chain k = 0, 1, .., kc-1 whatever kRead: the lane forms change how A
  // reaches the FMAs, never their order or rounding.
  const auto load_b = [&](Index k, int n) ATTEND_INLINE_LAMBDA {
    if constexpr (Ops::kPinB) {
      return in_register(Ops::template load_b<kScale == ScaleBy::column>(b + k * ldb + n * L));
    } else {
      return Ops::template load_b<kScale == ScaleBy::column>(b + k * ldb + n * L);
    }
  };
  const auto hook_after = [&](Index k) ATTEND_INLINE_LAMBDA {
    if ((k & (kHookEvery - 1)) == kHookEvery - 1) step();
  };

  Index k = 0;
  if constexpr (kRead == ARead::k_lanes) {
    // 4 steps (floats) per load of each row: ar[r] holds A(r, k .. k+G-1). B is loaded a packet at a
    // time beside its 6 FMAs: 24 accumulators, 6 rows of A and the B packet take 31 of NEON's 32
    // registers, where 4 B packets at once would need 34 and spill.
    constexpr int G = Ops::kALanes;
    for (; k + G <= kc; k += G) {
      typename Ops::ALanes ar[MR];  // (MR) row r: A(r, k .. k+G-1)
      ATTEND_UNROLL
      for (int r = 0; r < MR; ++r) ar[r] = Ops::template load_a_lanes<G>(a + r * a_rs + k);
      static_for<G>([&](auto lane) ATTEND_INLINE_LAMBDA {
        constexpr int l = decltype(lane)::value;
        ATTEND_UNROLL
        for (int n = 0; n < NR; ++n) {
          const typename Ops::BPacket bn = load_b(k + l, n);
          ATTEND_UNROLL
          for (int r = 0; r < MR; ++r) acc[r][n] = Ops::template madd_lane<l>(ar[r], bn, acc[r][n]);
          schedule_fence();  // one B packet live at a time (arch/neon.hpp)
        }
        // k is a multiple of G, so with kHookEvery >= G (both powers of two) only the last lane can
        // end a hook interval: the hook runs after the same values of k as in the broadcast form.
        if constexpr (kHookEvery < G || l == G - 1) hook_after(k + l);
      });
    }
  } else if constexpr (kRead == ARead::row_lanes) {
    // The block's rows of one step are consecutive: kChunks loads of up to G rows (floats: 4 and 2).
    // 4 steps per trip of the loop, with one hook test: at one step per trip, loop, loads and test
    // took 13 instructions per 24 FMAs (O = α ∘ O + P · V at Nq = Nk = 1024, D = 64: gemm_rows 1.59
    // instructions per FMA; 1.41 with 4).
    constexpr int G = Ops::kALanes;
    constexpr int kChunks = (MR + G - 1) / G;
    constexpr int kSteps = 4;
    const auto row_step = [&](Index kk) ATTEND_INLINE_LAMBDA {
      typename Ops::BPacket bk[NR];  // (NR) B(kk, packet n)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) bk[n] = load_b(kk, n);
      const typename Ops::AUnit* ak = a + kk * a_cs;
      typename Ops::ALanes ar[kChunks];  // (kChunks) chunk c: A(c·G .. c·G+G-1, kk), 0 past row MR-1
      static_for<kChunks>([&](auto chunk) ATTEND_INLINE_LAMBDA {
        constexpr int c = decltype(chunk)::value;
        constexpr int rows = MR - c * G < G ? MR - c * G : G;
        ar[c] = Ops::template load_a_lanes<rows>(ak + c * G);
      });
      static_for<MR>([&](auto row) ATTEND_INLINE_LAMBDA {
        constexpr int r = decltype(row)::value;
        ATTEND_UNROLL
        for (int n = 0; n < NR; ++n) acc[r][n] = Ops::template madd_lane<r % G>(ar[r / G], bk[n], acc[r][n]);
      });
      schedule_fence();  // one step's B and A live at a time (arch/neon.hpp)
    };
    for (; k + kSteps <= kc; k += kSteps) {
      static_for<kSteps>([&](auto s) ATTEND_INLINE_LAMBDA {
        constexpr int i = decltype(s)::value;
        row_step(k + i);
        if constexpr (kHookEvery < kSteps || i == kSteps - 1) hook_after(k + i);  // as in k_lanes
      });
    }
    for (; k < kc; ++k) {
      row_step(k);
      hook_after(k);
    }
  }
  // The broadcast form: any strides, and the steps of k_lanes past a multiple of G.
  for (; k < kc; ++k) {
    typename Ops::BPacket bk[NR];  // (NR) B(k, packet n)
    ATTEND_UNROLL
    for (int n = 0; n < NR; ++n) bk[n] = load_b(k, n);
    const typename Ops::AUnit* ak = a + k * a_cs;
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r) {
      const typename Ops::APacket ar = Ops::broadcast_a(ak + r * a_rs);
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) acc[r][n] = Ops::madd(ar, bk[n], acc[r][n]);
    }
    hook_after(k);
  }

  // Each way of writing C is a branch-free loop that the compiler unrolls completely, so the
  // accumulators stay in registers. With the tests inside one loop, GCC 12 kept the loop rolled and
  // acc[][] on the stack: zeroed there, spilled after the k loop and read back, about 100
  // instructions per block of 1500 FMAs.
  if constexpr (kStore == Store::overwrite) {
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) pstore(c + r * ldc + n * L, acc[r][n]);
  } else if constexpr (kStore == Store::add) {
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) pstore(c + r * ldc + n * L, padd(pload<Packet>(c + r * ldc + n * L), acc[r][n]));
  } else if constexpr (kStore == Store::scaled) {
    const Packet s = pset1<Packet>(scale);
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r)
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) pstore(c + r * ldc + n * L, pmul(acc[r][n], s));
  } else {
    // One explicit FMA, not a multiply and an add that the compiler may or may not contract: the
    // careful re-run (kernel/zero_weights.hpp) goes through another instantiation of this code and
    // must round exactly as the fast path did.
    ATTEND_UNROLL
    for (int r = 0; r < MR; ++r) {
      ATTEND_UNROLL
      for (int n = 0; n < NR; ++n) {
        Scalar* cp = c + r * ldc + n * L;
        const Packet factor = kScale == ScaleBy::column ? pload<Packet>(factors + n * L) : pset1<Packet>(factors[r]);
        pstore(cp, pmadd(pload<Packet>(cp), factor, acc[r][n]));
      }
    }
  }
}

/// Calls f(std::integral_constant<int, R>{}, r0) over rows [0, m): R = MR for each whole block of MR
/// rows, then once with R = m mod MR for the rows left. The register-blocked kernels take R as a
/// template argument, so a ragged edge runs a narrower block of the same kind, never scalar code, and
/// at most MR - 1 narrower shapes are instantiated.
template <int MR, typename F>
EIGEN_ALWAYS_INLINE void for_register_rows(Index m, F&& f) {
  static_assert(MR >= 1 && MR <= 6, "for_register_rows: 1 to 6 rows per block");
  Index r0 = 0;
  for (; r0 + MR <= m; r0 += MR) f(std::integral_constant<int, MR>{}, r0);
  switch (m - r0) {
    case 1: if constexpr (MR > 1) f(std::integral_constant<int, 1>{}, r0); break;
    case 2: if constexpr (MR > 2) f(std::integral_constant<int, 2>{}, r0); break;
    case 3: if constexpr (MR > 3) f(std::integral_constant<int, 3>{}, r0); break;
    case 4: if constexpr (MR > 4) f(std::integral_constant<int, 4>{}, r0); break;
    case 5: if constexpr (MR > 5) f(std::integral_constant<int, 5>{}, r0); break;
    default: break;
  }
}

/// A matrix operand read through strides: element (r, c) at ptr[r * rs + c * cs], in Ops::AUnit.
template <typename Unit>
struct Strided {
  const Unit* ptr;
  Index rs, cs;
};

/// C (m x Br) = store(A (m x kc) · B (kc x Br), C), with C and B of leading dimension Br
/// (TileTraits::kBlockQ). `factors` (one per column) serves Store::rescale_add, `scale`
/// Store::scaled. Rows past a multiple of MR go through a narrower block of the same kind, so no row
/// is computed twice or with scalar code. `step()` runs inside each full register block (see
/// kHookSteps; the flash path hands out prefetches there).
template <class Ops, Store kStore, typename Hook = NoHook>
void gemm_panel(Index m, Index kc, Strided<typename Ops::AUnit> a, const typename Ops::BUnit* b,
                typename Ops::Scalar* c, const typename Ops::Scalar* factors = nullptr,
                typename Ops::Scalar scale = 1, Hook step = {}) {
  using Blocking = RegisterBlocking<Ops>;
  constexpr int MR = Blocking::kRegM;
  constexpr int NR = Blocking::kRegNUsed;
  constexpr int kCols = NR * Blocking::kLanes;
  constexpr Index ld = TileTraits::kBlockQ;
  with_a_read<Ops>(a.rs, a.cs, [&](auto read) ATTEND_INLINE_LAMBDA {
    constexpr ARead kRead = decltype(read)::value;
    for (int nb = 0; nb < Blocking::kColBlocks; ++nb) {
      const auto* bn = b + nb * kCols;
      auto* cn = c + nb * kCols;
      const auto* fn = factors == nullptr ? nullptr : factors + nb * kCols;
      for_register_rows<MR>(m, [&](auto rows, Index r0) ATTEND_INLINE_LAMBDA {
        constexpr int R = decltype(rows)::value;
        const auto* ar = a.ptr + r0 * a.rs;
        if constexpr (R == MR) {
          micro_block<Ops, R, NR, kStore, ScaleBy::column, kRead>(kc, ar, a.rs, a.cs, bn, ld, cn + r0 * ld, ld, fn,
                                                                  scale, step);
        } else {
          micro_block<Ops, R, NR, kStore, ScaleBy::column, kRead>(kc, ar, a.rs, a.cs, bn, ld, cn + r0 * ld, ld, fn,
                                                                  scale);
        }
      });
    }
  });
}

/// Whether gemm_rows takes n columns: whole micro-kernel column blocks (64 floats with AVX-512, 32
/// with AVX2), so that every B load and C store is a full packet.
template <class Ops>
constexpr bool rows_fit(Index n) {
  return n > 0 && n % RegisterBlocking<Ops>::kColsPerBlock == 0;
}

/// C (m x n) = store(A (m x kc) · B (kc x n), C), B with leading dimension ldb (any alignment), C
/// with ldc (packet-aligned rows). n must satisfy rows_fit. `factors` (one per row) serves
/// Store::rescale_add. Rows past a multiple of MR go through a narrower block, as in gemm_panel, and
/// so does `step()`.
template <class Ops, Store kStore, typename Hook = NoHook>
void gemm_rows(Index m, Index n, Index kc, Strided<typename Ops::AUnit> a, const typename Ops::BUnit* b, Index ldb,
               typename Ops::Scalar* c, Index ldc, const typename Ops::Scalar* factors = nullptr, Hook step = {}) {
  using Blocking = RegisterBlocking<Ops>;
  constexpr int MR = Blocking::kRegM;
  constexpr int NR = Blocking::kRegN;
  constexpr Index kCols = Blocking::kColsPerBlock;
  with_a_read<Ops>(a.rs, a.cs, [&](auto read) ATTEND_INLINE_LAMBDA {
    constexpr ARead kRead = decltype(read)::value;
    for (Index n0 = 0; n0 < n; n0 += kCols) {
      for_register_rows<MR>(m, [&](auto rows, Index r0) ATTEND_INLINE_LAMBDA {
        constexpr int R = decltype(rows)::value;
        const auto* ar = a.ptr + r0 * a.rs;
        auto* cr = c + r0 * ldc + n0;
        const auto* fr = factors == nullptr ? nullptr : factors + r0;
        if constexpr (R == MR) {
          micro_block<Ops, R, NR, kStore, ScaleBy::row, kRead>(kc, ar, a.rs, a.cs, b + n0, ldb, cr, ldc, fr, 1, step);
        } else {
          micro_block<Ops, R, NR, kStore, ScaleBy::row, kRead>(kc, ar, a.rs, a.cs, b + n0, ldb, cr, ldc, fr, 1);
        }
      });
    }
  });
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_MICROKERNEL_HPP
