#ifndef ATTEND_DETAIL_FORWARD_MATH_HPP
#define ATTEND_DETAIL_FORWARD_MATH_HPP

// The math path: attention exactly as BS-RoFormer's naive `Attend` writes it,
//   sim  = einsum('b h i d, b h j d -> b h i j', q, k) * scale
//   attn = softmax(sim + mask, dim = j);  attn = dropout(attn)
//   out  = einsum('b h i j, b h j d -> b h i d', attn, v)
// one (b, h) at a time with Eigen tensor contractions. It materialises the (Nq, Nk) scores, so it
// needs O(Nq * Nk) memory per worker; it is the readable oracle the other paths are tested against.

#include <cmath>   // std::exp, std::log, std::isnan, std::isfinite
#include <limits>  // std::numeric_limits

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/kernel/contraction.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

template <typename T>
void run_math(const Problem<T>& pb, const Pool& pool) {
  using Acc = acc_t<T>;
  using Mat = MathMatrix<Acc>;
  constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Index B = pb.B, Hq = pb.Hq, Nq = pb.Nq, Nk = pb.Nk, D = pb.D, Dv = pb.Dv;

  parallel_for(pool, worker_count(pool), B * Hq, [&](int, Index bh) {
    const Index b = bh / Hq, h = bh % Hq, hk = pb.kv_head(h);

    Mat q(Nq, D);   // (Nq, D)
    Mat k(Nk, D);   // (Nk, D)
    Mat v(Nk, Dv);  // (Nk, Dv)
    for (Index i = 0; i < Nq; ++i)
      for (Index d = 0; d < D; ++d) q(i, d) = static_cast<Acc>(pb.q(b, h, i, d));
    for (Index j = 0; j < Nk; ++j) {
      for (Index d = 0; d < D; ++d) k(j, d) = static_cast<Acc>(pb.k(b, hk, j, d));
      for (Index d = 0; d < Dv; ++d) v(j, d) = static_cast<Acc>(pb.v(b, hk, j, d));
    }

    // sim = einsum('i d, j d -> i j', q, k) * scale
    const ContractPair over_d = {Eigen::IndexPair<Index>(1, 1)};
    Mat attn(Nq, Nk);  // (Nq, Nk): sim, then softmax'ed in place
    contract(q, over_d, k, attn);

    // attn = softmax over j of (sim + mask); a row with no visible key becomes 0 (PyTorch's
    // _safe_softmax), a NaN anywhere in a row makes the whole row NaN.
    for (Index i = 0; i < Nq; ++i) {
      for (Index j = 0; j < Nk; ++j) attn(i, j) *= pb.scale;
      mask_row(pb, b, h, i, 0, Nk, &attn(i, 0), 1);
      Acc m = kNegInf;
      for (Index j = 0; j < Nk; ++j) {
        const Acc s = attn(i, j);
        if (s > m || std::isnan(s)) m = std::isnan(m) ? m : s;
      }
      Acc l = 0;
      if (m == kNegInf) {
        for (Index j = 0; j < Nk; ++j) attn(i, j) = 0;
      } else {
        for (Index j = 0; j < Nk; ++j) {
          attn(i, j) = std::exp(attn(i, j) - m);
          l += attn(i, j);
        }
        for (Index j = 0; j < Nk; ++j) attn(i, j) /= l;
      }
      if (pb.lse.data() != nullptr) pb.lse(b, h, i) = m == kNegInf ? kNegInf : m + std::log(l);
      if (pb.dropout.active) {
        pb.dropout.apply_row(b, h, i, 0, Nk, &attn(i, 0), 1);
        const Acc keep_scale = static_cast<Acc>(pb.dropout.keep_scale);
        for (Index j = 0; j < Nk; ++j) attn(i, j) *= keep_scale;
      }
    }

    // out = einsum('i j, j d -> i d', attn, v)
    const ContractPair over_j = {Eigen::IndexPair<Index>(1, 0)};
    Mat o(Nq, Dv);  // (Nq, Dv)
    contract(attn, over_j, v, o);
    // attend's rule for zero weights (zero_weights.hpp): a weight of exactly 0 contributes nothing,
    // even against an Inf or NaN value, where the product above gives 0 · Inf = NaN. Such a NaN means
    // v has a non-finite entry: redo the product with those entries zeroed and add their terms where
    // the weight is not 0. Finite entries keep the same arithmetic, so nothing else changes.
    if (any_nan(o.data(), Nq * Dv)) {
      for (Index j = 0; j < Nk; ++j)
        for (Index d = 0; d < Dv; ++d) {
          if (!std::isfinite(v(j, d))) v(j, d) = Acc(0);
        }
      contract(attn, over_j, v, o);
      add_nonfinite_value_terms(
          pb, b, hk, 0, Nk, Nq, [&](Index j, Index i) { return attn(i, j); },
          [&](Index i, Index d) -> Acc& { return o(i, d); });
    }
    for (Index i = 0; i < Nq; ++i)
      for (Index d = 0; d < Dv; ++d) pb.out(b, h, i, d) = static_cast<T>(o(i, d));
  });
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_FORWARD_MATH_HPP
