#ifndef ATTEND_DETAIL_BACKWARD_MATH_HPP
#define ATTEND_DETAIL_BACKWARD_MATH_HPP

// The math path's backward: the einsum form of backward/common.hpp's formulas with Eigen tensor
// contractions, one (b, kv head) and its query heads at a time, materialising the (Nq, Nk) scores.
// It recomputes the softmax from the scores (it does not use the forward's lse) and sums D_i as
// Σ_j P_ij dP_ij (it does not use the forward's out), so it is the oracle the tiled paths are
// checked against, as the forward's math path is.

#include <cmath>   // std::exp, std::isnan, std::isfinite
#include <limits>  // std::numeric_limits
#include <vector>  // std::vector

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/backward/common.hpp"
#include "attend/detail/kernel/contraction.hpp"
#include "attend/detail/kernel/mask.hpp"
#include "attend/detail/kernel/zero_weights.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

template <typename T>
struct MathBackward {
  using Acc = acc_t<T>;
  using Mat = MathMatrix<Acc>;
  using Pairs = ContractPair;

  /// C = A ⊗ B over the index pair `over`, attend's zero-weight rule included: where the plain
  /// contraction leaves a NaN (0 · Inf from a zero weight of A against a non-finite entry of B), it
  /// is redone with B's non-finite entries zeroed and their own terms added where the weight is not
  /// 0. `weight(j, r)` reads A's entry that multiplies B's row j for C's row r. Finite entries take
  /// the same arithmetic either way.
  template <typename Weight>
  static Mat careful_contract(const Mat& a, const Pairs& over, const Mat& b, Weight weight) {
    const auto free_dim = [](const Mat& x, Index contracted) { return contracted == 0 ? x.cols() : x.rows(); };
    Mat c(free_dim(a, over[0].first), free_dim(b, over[0].second));
    contract(a, over, b, c);
    if (!any_nan(c.data(), c.size())) return c;
    Mat finite = b;
    for (Index i = 0; i < finite.size(); ++i) {
      if (!std::isfinite(finite.data()[i])) finite.data()[i] = Acc(0);
    }
    contract(a, over, finite, c);
    add_nonfinite_terms<Acc>(
        b.rows(), b.cols(), c.rows(), [&](Index j, Index d) { return b(j, d); }, weight,
        [&](Index r, Index d) -> Acc& { return c(r, d); });
    return c;
  }

  /// acc += x, element by element.
  static void add(Mat& acc, const Mat& x) {
    for (Index i = 0; i < acc.size(); ++i) acc.data()[i] += x.data()[i];
  }

  static void run(const GradProblem<T>& pb, const Pool& pool) {
    constexpr Acc kNegInf = -std::numeric_limits<Acc>::infinity();
    const Index Nq = pb.Nq, Nk = pb.Nk, D = pb.D, Dv = pb.Dv;
    const Acc keep_scale = static_cast<Acc>(pb.dropout.active ? pb.dropout.keep_scale : 1.0);
    std::vector<Acc> dmask_buffer(DmaskAccumulator<T>::size(pb), Acc(0));
    const DmaskAccumulator<T> dmask = DmaskAccumulator<T>::of(pb, dmask_buffer.data());
    const GradItems items = GradItems::of(pb);
    const Pairs rows_rows = {Eigen::IndexPair<Index>(1, 1)};  // X Yᵀ
    const Pairs rows_cols = {Eigen::IndexPair<Index>(1, 0)};  // X Y
    const Pairs cols_cols = {Eigen::IndexPair<Index>(0, 0)};  // Xᵀ Y

    parallel_for(pool, worker_count(pool), items.count(), [&](int, Index item) {
      items.for_each(item, [&](Index b, Index hk) {
        Mat k(Nk, D), v(Nk, Dv);  // (Nk, D), (Nk, Dv)
        for (Index j = 0; j < Nk; ++j) {
          for (Index d = 0; d < D; ++d) k(j, d) = static_cast<Acc>(pb.k(b, hk, j, d));
          for (Index d = 0; d < Dv; ++d) v(j, d) = static_cast<Acc>(pb.v(b, hk, j, d));
        }
        Mat dk(Nk, D), dv(Nk, Dv);  // sums over the kv head's query heads (zero-filled)
        for (Index h = hk * pb.group; h < (hk + 1) * pb.group; ++h) {
          Mat q(Nq, D), dout(Nq, Dv);  // (Nq, D), (Nq, Dv)
          for (Index i = 0; i < Nq; ++i) {
            for (Index d = 0; d < D; ++d) q(i, d) = static_cast<Acc>(pb.q(b, h, i, d));
            for (Index d = 0; d < Dv; ++d) dout(i, d) = static_cast<Acc>(pb.dout(b, h, i, d));
          }
          // P = softmax over j of (scale · q kᵀ + mask), as the forward's math path computes it.
          Mat p(Nq, Nk), dp(Nq, Nk);  // (Nq, Nk): scale · q kᵀ, then P; dout vᵀ
          contract(q, rows_rows, k, p);
          contract(dout, rows_rows, v, dp);
          Mat z(Nq, Nk), ds(Nq, Nk);                     // (Nq, Nk)
          for (Index i = 0; i < Nq; ++i) {
            for (Index j = 0; j < Nk; ++j) p(i, j) *= pb.scale;
            mask_row(pb, b, h, i, 0, Nk, &p(i, 0), 1);
            Acc m = kNegInf;
            for (Index j = 0; j < Nk; ++j) {
              const Acc s = p(i, j);
              if (s > m || std::isnan(s)) m = std::isnan(m) ? m : s;
            }
            if (m == kNegInf) {
              for (Index j = 0; j < Nk; ++j) p(i, j) = 0;
            } else {
              Acc l = 0;
              for (Index j = 0; j < Nk; ++j) {
                p(i, j) = std::exp(p(i, j) - m);
                l += p(i, j);
              }
              for (Index j = 0; j < Nk; ++j) p(i, j) /= l;
            }
            for (Index j = 0; j < Nk; ++j) z(i, j) = p(i, j);
            if (pb.dropout.active) {
              pb.dropout.apply_row(b, h, i, 0, Nk, &z(i, 0), 1);
              pb.dropout.apply_row(b, h, i, 0, Nk, &dp(i, 0), 1);
              for (Index j = 0; j < Nk; ++j) {
                z(i, j) *= keep_scale;
                dp(i, j) *= keep_scale;
              }
            }
            Acc d_i = 0;  // D_i = Σ_j P_ij dP_ij
            for (Index j = 0; j < Nk; ++j) {
              if (p(i, j) != Acc(0)) d_i += p(i, j) * dp(i, j);
            }
            for (Index j = 0; j < Nk; ++j) {
              ds(i, j) = grad_score(p(i, j), dp(i, j), d_i);
              if (dmask.acc != nullptr) dmask.at(b, h, i, j) += ds(i, j);
            }
          }
          add(dv, careful_contract(z, cols_cols, dout, [&](Index i, Index j) { return z(i, j); }));
          const Mat dq = careful_contract(ds, rows_cols, k, [&](Index j, Index i) { return ds(i, j); });
          add(dk, careful_contract(ds, cols_cols, q, [&](Index i, Index j) { return ds(i, j); }));
          for (Index i = 0; i < Nq; ++i)
            for (Index d = 0; d < D; ++d) pb.dq(b, h, i, d) = static_cast<T>(pb.scale * dq(i, d));
        }
        for (Index j = 0; j < Nk; ++j) {
          for (Index d = 0; d < D; ++d) pb.dk(b, hk, j, d) = static_cast<T>(pb.scale * dk(j, d));
          for (Index d = 0; d < Dv; ++d) pb.dv(b, hk, j, d) = static_cast<T>(dv(j, d));
        }
      });
    });
    write_dmask(pb, dmask);
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_BACKWARD_MATH_HPP
