#ifndef ATTEND_DETAIL_ONLINE_SOFTMAX_HPP
#define ATTEND_DETAIL_ONLINE_SOFTMAX_HPP

// The online softmax of FlashAttention-2 (and Milakov & Gimelshein, 2018), for a tile of kCols query
// rows whose scores arrive a block of keys at a time, transposed: s[j * kCols + i] is the score of
// key j for query i, so every step below is a vertical SIMD operation across the queries.
//
// Invariant after each update, for each query i over the keys seen so far:
//   row_max[i] = max_j s_ij                      (-inf while no key is visible)
//   row_sum[i] = Σ_j exp(s_ij - row_max[i])
// and the caller's output accumulator must be multiplied by rescale[i] = exp(old max - new max)
// before the new block's exp(s - max) · V is added. The division by row_sum happens once, at the end.

#include <cmath>   // std::log
#include <limits>  // std::numeric_limits

#include <Eigen/Core>

#include "attend/detail/kernel_traits.hpp"

namespace attend {
namespace detail {

/// exp(x) for a packet, and exactly 0 for x = -inf (a masked score must contribute exactly nothing,
/// or a fully masked row would average V instead of returning 0). NaN stays NaN.
/// Generic version: Eigen's pexp clamps its argument, so for x = -inf it may return the smallest
/// normal instead of 0 (double: 5.6e-309); it is zeroed below the last normal result. The AVX-512
/// float version below returns the true, subnormal exp down to x = -138.6 and exactly 0 beneath.
template <typename Packet>
EIGEN_ALWAYS_INLINE Packet exp_or_zero(const Packet& x) {
  using Scalar = typename Eigen::internal::unpacket_traits<Packet>::type;
  // exp(-87) = 1.6e-38 (float), exp(-708) = 3.3e-308 (double): the last normal results.
  const Packet cutoff = Eigen::internal::pset1<Packet>(std::is_same<Scalar, float>::value ? Scalar(-87) : Scalar(-708));
  const Packet e = Eigen::internal::pexp(x);
  // pcmp_le(cutoff, x) is all-ones where cutoff <= x; NaN compares false, so the NaN lanes of e are
  // put back with pandnot (NaN must propagate, never turn into 0).
  const Packet keep = Eigen::internal::pcmp_le(cutoff, x);
  const Packet nan = Eigen::internal::pcmp_eq(x, x);  // all-ones where x is not NaN
  return Eigen::internal::por(Eigen::internal::pand(e, keep), Eigen::internal::pandnot(e, nan));
}

#if defined(EIGEN_VECTORIZE_AVX512)
/// AVX-512 float: exp(x) = 2^n · e^r with n = round(x · log2 e) and r = x - n · ln 2 in [-ln2/2, ln2/2],
/// reduced with ln 2 split in two (Cody & Waite) so r stays exact for |x| up to ~100; e^r from Cephes'
/// expf minimax polynomial (about 1 ulp); 2^n applied by vscalefps, which also rounds 2^-200 to
/// exactly 0. About 13 instructions against about 25 for pexp with the masking above: the exp is a
/// third of the softmax, and the softmax 15% of a flash tile at D = 64.
template <>
EIGEN_ALWAYS_INLINE Eigen::internal::Packet16f exp_or_zero(const Eigen::internal::Packet16f& x) {
  // max(-138.6, x): vmaxps returns its second operand when one is NaN, so NaN survives; -inf and
  // anything below -138.6 = -200 · ln 2 lands on n = -200, which vscalefps turns into exactly 0.
  const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-138.6f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);  // ln 2, high part (exact in n·hi)
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);       // ln 2, low part
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}
#endif

template <typename Acc, int kCols>
struct OnlineSoftmax {
  using Packet = typename KernelTraits<Acc>::Packet;
  static constexpr int kLanes = KernelTraits<Acc>::kLanes;
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
}  // namespace attend

#endif  // ATTEND_DETAIL_ONLINE_SOFTMAX_HPP
