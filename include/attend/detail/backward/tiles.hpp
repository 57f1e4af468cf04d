#ifndef ATTEND_DETAIL_BACKWARD_TILES_HPP
#define ATTEND_DETAIL_BACKWARD_TILES_HPP

// Tile-level steps of the tiled backward paths (backward/flash.hpp, backward/mem_efficient.hpp). The
// score-shaped tiles are transposed as in the forward, keys by queries (x[jj * Br + ii]), so that a
// query's constants (its lse, its D_i) are one packet across the lanes. The five products are the
// forward's two micro-kernel forms:
//   S^T  = K · (scale Q)^T    gemm_panel   A = K rows,  B = Q^T packed
//   dP^T = V · dO^T           gemm_panel   A = V rows,  B = dO^T packed
//   dV  += Z^T · dO           gemm_rows    A = Z^T,     B = dO rows
//   dK  += dS^T · Q           gemm_rows    A = dS^T,    B = Q rows
//   dQ  += dS · K             gemm_rows    A = dS (read from dS^T), B = K rows
// gemm_rows needs whole column blocks, so the row operands and accumulators are padded to Dp, a
// multiple of the micro-kernel's column block, with zero columns.

#include <algorithm>  // std::fill, std::min
#include <cmath>      // std::isfinite
#include <cstdint>    // std::uint16_t, std::uint32_t, std::uint64_t
#include <cstring>    // std::memcpy
#include <limits>     // std::numeric_limits
#include <type_traits>  // std::conditional_t

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/backward/common.hpp"
#include "attend/detail/kernel/epilogue.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/microkernel.hpp"
#include "attend/detail/problem.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// n rounded up to whole micro-kernel column blocks for Acc (gemm_rows' n).
template <typename Acc>
constexpr Index padded_cols(Index n) {
  constexpr Index c = RegisterBlocking<FmaOps<Acc>>::kColsPerBlock;
  return (n + c - 1) / c * c;
}

/// dst (rows x ld, ld >= n) = rows of src (n values each, `stride` apart) converted to acc_t<T>, the
/// columns n .. ld zero.
template <typename T>
void copy_rows_padded(const T* src, Index stride, Index rows, Index n, acc_t<T>* dst, Index ld) {
  for (Index r = 0; r < rows; ++r) {
    const T* s = src + r * stride;
    acc_t<T>* d = dst + r * ld;
    if constexpr (std::is_same_v<T, acc_t<T>>) {
      std::copy(s, s + n, d);
    } else {
      convert_row(s, d, n);
    }
    std::fill(d + n, d + ld, acc_t<T>(0));
  }
}

/// Whether a rows x n block of Acc (rows ld apart) holds an Inf or NaN: a packed operand, checked
/// after conversion (a 16-bit Inf or NaN stays one). Packets over whole rows, the tail scalar: at
/// N = 62 and D = 64, checking the views' rows once per (b, h) before the products, a value at a time,
/// was a fifth of the flash backward's time.
template <typename Acc>
bool any_nonfinite(const Acc* x, Index rows, Index n, Index ld) {
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  // x - x is 0 for a finite x and NaN for Inf and NaN: one NaN test over the accumulated differences.
  Packet acc = pset1<Packet>(Acc(0));
  Acc tail = 0;
  for (Index r = 0; r < rows; ++r) {
    const Acc* row = x + r * ld;
    Index e = 0;
    for (; e + L <= n; e += L) {
      const Packet v = ploadu<Packet>(row + e);
      acc = padd(acc, psub(v, v));
    }
    for (; e < n; ++e) tail += row[e] - row[e];
  }
  alignas(64) Acc lanes[L];
  pstore(lanes, acc);
  return any_nan(lanes, L) || !(tail == tail);
}

/// Replaces the non-finite values of a rows x n block (rows ld apart) by 0: the careful products'
/// operands (backward/common.hpp). Their own terms are added by add_nonfinite_terms.
template <typename Acc>
void zero_nonfinite(Acc* x, Index rows, Index n, Index ld) {
  for (Index r = 0; r < rows; ++r)
    for (Index e = 0; e < n; ++e) {
      if (!std::isfinite(x[r * ld + e])) x[r * ld + e] = Acc(0);
    }
}

/// P^T = exp(S^T - lse) in place over nk rows of Br queries: `sub` is each query's
/// lse_subtrahend (+inf for a query that sees no key and for the padding queries), so hidden scores
/// (-inf) and dead rows give exactly 0.
template <typename Acc, int Br>
void probabilities_from_lse(Acc* st, Index nk, const Acc* sub) {
  using Packet = PacketOf<Acc>;
  constexpr int L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  for (int c = 0; c < Br; c += L) {
    const Packet m = pload<Packet>(sub + c);
    for (Index j = 0; j < nk; ++j) {
      Acc* s = st + j * Br + c;
      pstore(s, exp_or_zero(psub(pload<Packet>(s), m)));
    }
  }
}

/// dS^T = P^T ∘ (keep · dP^T − D) in place of dP^T, exactly 0 where P is 0 (backward/common.hpp);
/// `keep` is the dropout's 1/(1 - p) (1 without dropout; the dropped entries of dP^T are already 0).
template <typename Acc, int Br>
void grad_scores(const Acc* pt, Acc* dpt, Index nk, const Acc* d, Acc keep) {
  using Packet = PacketOf<Acc>;
  constexpr int L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  const Packet zero = pset1<Packet>(Acc(0)), k = pset1<Packet>(keep);
  for (int c = 0; c < Br; c += L) {
    const Packet dc = pload<Packet>(d + c);
    for (Index j = 0; j < nk; ++j) {
      const Packet p = pload<Packet>(pt + j * Br + c);
      Acc* x = dpt + j * Br + c;
      const Packet ds = pmul(p, psub(pmul(k, pload<Packet>(x)), dc));
      pstore(x, pselect(pcmp_eq(p, zero), zero, ds));
    }
  }
}

/// D_i = Σ_d dout[i][d] · out[i][d] for a query tile, from dO^T and O^T packed (Dv x Br, as
/// pack_transposed makes them), into d (Br; the padding queries' columns are zero, so their D is 0).
/// Lanes across queries, one multiply-add chain per query in the order of d: the chain that makes
/// dP_ij = dO_i · v_j in the products (gemm_panel), so where out_i is exactly v_j (all of a row's
/// weight on one key) dP_ij − D_i is exactly 0, as it is in exact arithmetic. (A sum over d in
/// packets instead doubled the f32 gradient errors at logits in the hundreds; a scalar chain per row
/// took 4 cycles a term, half a 62-query tile's products at Dv = 64.)
template <typename Acc, int Br>
void dout_dot_out(const Acc* dot, const Acc* ot, Index Dv, Acc* d) {
  using Packet = PacketOf<Acc>;
  constexpr int L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  for (int c = 0; c < Br; c += L) {
    Packet s = pset1<Packet>(Acc(0));
    for (Index e = 0; e < Dv; ++e) s = pmadd(pload<Packet>(dot + e * Br + c), pload<Packet>(ot + e * Br + c), s);
    pstore(d + c, s);
  }
}

/// The dmask contributions of a dS^T tile (keys j0 + jj, queries i0 + ii): summed into the Acc
/// accumulator (a mask that broadcasts) or, where each element gets exactly one contribution,
/// rounded once and stored in dmask directly.
template <typename T, int Br>
void add_dmask_tile(const GradProblem<T>& pb, const DmaskAccumulator<T>& acc, Index b, Index h, Index i0, Index nq,
                    Index j0, Index nk, const acc_t<T>* dst) {
  if (pb.dmask == nullptr) return;
  for (Index jj = 0; jj < nk; ++jj)
    for (Index ii = 0; ii < nq; ++ii) {
      const acc_t<T> x = dst[jj * Br + ii];
      if (acc.acc != nullptr) {
        acc.at(b, h, i0 + ii, j0 + jj) += x;
      } else {
        pb.dmask[pb.dmask_offset(b, h, i0 + ii, j0 + jj)] = static_cast<T>(x);
      }
    }
}

/// Whether each dmask element receives exactly one dS (the mask broadcasts over nothing), so it can be
/// stored directly without an accumulator.
template <typename T>
bool dmask_direct(const GradProblem<T>& pb) {
  for (int r = 0; r < 4; ++r) {
    if (pb.dmask_reduces(r)) return false;
  }
  return true;
}

/// Whether the backward writes its gradients with non-temporal stores (streams_results): at bsr_freq
/// the three 101 MB gradients' ordinary stores, each first reading its line from memory, were 40% of
/// the flash backward's own code outside the products.
template <typename T>
bool gradients_are_streamed(const GradProblem<T>& pb) {
  return streams_results(static_cast<std::size_t>(pb.B * (pb.Hq * pb.Nq * pb.D + pb.Hkv * pb.Nk * (pb.D + pb.Dv))) *
                         sizeof(T));
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_BACKWARD_TILES_HPP
