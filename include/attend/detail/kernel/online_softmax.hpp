#ifndef ATTEND_DETAIL_KERNEL_ONLINE_SOFTMAX_HPP
#define ATTEND_DETAIL_KERNEL_ONLINE_SOFTMAX_HPP

// The online softmax of FlashAttention-2 (and Milakov & Gimelshein, 2018), for a tile of kCols query
// rows whose scores arrive a block of keys at a time, transposed: s[j * kCols + i] is the score of
// key j for query i, so every step below is a vertical SIMD operation across the queries.
//
// Invariant after each update, for each query i over the keys seen so far:
//   row_max[i] = max_j s_ij                      (-inf while no key is visible)
//   row_sum[i] = Σ_j exp(s_ij - row_max[i])
// and the caller's output accumulator must be multiplied by rescale[i] = exp(old max - new max)
// before the new block's exp(s - max) · V is added. The division by row_sum happens once, at the end.
// The exp is arch/primitives.hpp's exp_or_zero: exactly 0 for a masked score.

#include <cmath>   // std::log
#include <limits>  // std::numeric_limits

#include <Eigen/Core>

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

template <typename Acc, int kCols>
struct OnlineSoftmax {
  using Packet = PacketOf<Acc>;
  static constexpr int kLanes = kLanesOf<Acc>;
  static_assert(kCols % kLanes == 0, "OnlineSoftmax: the query tile must be a whole number of packets");

  alignas(64) Acc row_max[kCols];
  alignas(64) Acc row_sum[kCols];
  alignas(64) Acc rescale[kCols];

  void reset() {
    using namespace Eigen::internal;
    for (int i = 0; i < kCols; i += kLanes) {
      pstore(row_max + i, pset1<Packet>(-std::numeric_limits<Acc>::infinity()));
      pstore(row_sum + i, pset1<Packet>(Acc(0)));
      pstore(rescale + i, pset1<Packet>(Acc(1)));
    }
  }

  /// Folds in `rows` keys: s (rows x kCols) is replaced by exp(s - new max), row_sum and row_max are
  /// updated and rescale is set for the caller's accumulator. A NaN score makes its query's max,
  /// sum and rescale NaN (it propagates); a query with no visible key yet keeps max -inf, sum 0.
  void update(Acc* s, Index rows) {
    using namespace Eigen::internal;
    const Packet neg_inf = pset1<Packet>(-std::numeric_limits<Acc>::infinity());
    const Packet zero = pset1<Packet>(Acc(0));
    for (int c = 0; c < kCols; c += kLanes) {
      // Max over the block's keys. The plain (fast) max may skip a NaN score, but that score's exp is
      // NaN and so is the row sum, so the NaN still reaches the output and the lse; a NaN-propagating
      // max costs a compare and a blend per packet, half the time of this whole update.
      // Two chains of maxes: one chain waits for each max's latency (2 cycles on Zen 4).
      Packet m = neg_inf, m2 = neg_inf;
      Index j = 0;
      for (; j + 2 <= rows; j += 2) {
        m = pmax(m, pload<Packet>(s + j * kCols + c));
        m2 = pmax(m2, pload<Packet>(s + (j + 1) * kCols + c));
      }
      if (j < rows) m = pmax(m, pload<Packet>(s + j * kCols + c));
      m = pmax(m, m2);
      const Packet m_old = pload<Packet>(row_max + c);
      const Packet m_new = pmax(m_old, m);
      // A query that has seen no key has max -inf; subtract 0 instead so exp(-inf - -inf) = NaN
      // never appears and its exps stay exactly 0 (FlashAttention's Check_inf).
      const Packet m_sub = pselect(pcmp_eq(m_new, neg_inf), zero, m_new);
      const Packet alpha = exp_or_zero(psub(m_old, m_sub));  // exp(-inf) = 0 when nothing was seen
      Packet sum = zero;
      for (Index j = 0; j < rows; ++j) {
        Acc* sj = s + j * kCols + c;
        const Packet p = exp_or_zero(psub(pload<Packet>(sj), m_sub));
        pstore(sj, p);
        sum = padd(sum, p);
      }
      pstore(row_sum + c, pmadd(alpha, pload<Packet>(row_sum + c), sum));
      pstore(row_max + c, m_new);
      pstore(rescale + c, alpha);
    }
  }

  /// The factor that turns query i's accumulator into its output: extra / row_sum, or 0 for a row
  /// that saw no key (row_sum = 0). NaN stays NaN.
  Acc inv_sum(int i, Acc extra) const { return row_sum[i] == Acc(0) ? Acc(0) : extra / row_sum[i]; }

  /// Natural-log log-sum-exp of query i's scores: row_max + log(row_sum), -inf with no visible key.
  Acc lse(int i) const {
    return row_sum[i] == Acc(0) ? -std::numeric_limits<Acc>::infinity() : row_max[i] + std::log(row_sum[i]);
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_ONLINE_SOFTMAX_HPP
