// The naive reference in double (see reference.hpp for the semantics it implements).

#include "support/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace attend_test {

std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {  // the key schedule: Weyl sequences of the golden ratio and sqrt(3) - 1
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * counter[0];
    const std::uint64_t p1 = std::uint64_t{0xCD9E8D57u} * counter[2];
    counter = {static_cast<std::uint32_t>(p1 >> 32) ^ counter[1] ^ key[0], static_cast<std::uint32_t>(p1),
               static_cast<std::uint32_t>(p0 >> 32) ^ counter[3] ^ key[1], static_cast<std::uint32_t>(p0)};
  }
  return counter;
}

bool DropoutSpec::keeps(Index Hq, Index b, Index h, Index i, Index j) const {
  const std::array<std::uint32_t, 4> counter = {static_cast<std::uint32_t>(j / 4), static_cast<std::uint32_t>(i),
                                                static_cast<std::uint32_t>(b * Hq + h), offset};
  const std::array<std::uint32_t, 2> key = {static_cast<std::uint32_t>(seed & 0xFFFFFFFFu),
                                            static_cast<std::uint32_t>(seed >> 32)};
  const std::uint64_t threshold = static_cast<std::uint64_t>(std::llround(p * 4294967296.0));
  return philox4x32_10(counter, key)[static_cast<std::size_t>(j % 4)] >= threshold;
}

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// Where things are: flat indices of q, k, v, out and the mask, and what a query sees.
struct Layout {
  const Inputs& in;
  Index group;                        // query heads per kv head
  std::array<Index, 4> mask{1, 1, 1, 1};  // the mask's dims, padded on the left to rank 4

  explicit Layout(const Inputs& inputs) : in(inputs), group(inputs.Hkv > 0 ? inputs.Hq / inputs.Hkv : 1) {
    const std::size_t pad = 4 - in.mask_dims.size();
    for (std::size_t r = 0; r < in.mask_dims.size(); ++r) mask[pad + r] = in.mask_dims[r];
  }
  std::size_t q_at(Index b, Index h, Index i, Index d) const {
    return static_cast<std::size_t>(((b * in.Hq + h) * in.Nq + i) * in.D + d);
  }
  std::size_t k_at(Index b, Index h, Index j, Index d) const {  // h: the query head
    return static_cast<std::size_t>(((b * in.Hkv + h / group) * in.Nk + j) * in.D + d);
  }
  std::size_t v_at(Index b, Index h, Index j, Index d) const {  // h: the query head
    return static_cast<std::size_t>(((b * in.Hkv + h / group) * in.Nk + j) * in.Dv + d);
  }
  std::size_t row_at(Index b, Index h, Index i) const { return static_cast<std::size_t>((b * in.Hq + h) * in.Nq + i); }
  /// The mask element that (b, h, i, j) reads: index 0 along each dimension of size 1.
  std::size_t mask_at(Index b, Index h, Index i, Index j) const {
    const Index bb = mask[0] == 1 ? 0 : b, hh = mask[1] == 1 ? 0 : h, ii = mask[2] == 1 ? 0 : i,
                jj = mask[3] == 1 ? 0 : j;
    return static_cast<std::size_t>(((bb * mask[1] + hh) * mask[2] + ii) * mask[3] + jj);
  }
  bool causal_visible(Index i, Index j) const {
    switch (in.causal) {
      case attend::Causal::top_left: return j <= i;
      case attend::Causal::bottom_right: return j <= i + (in.Nk - in.Nq);
      default: return true;
    }
  }
};

/// One query row's softmax: P (0 where hidden; all 0 if the row sees no key, all NaN if a score is
/// NaN), the dropout factor of each weight (w = P · factor), and lse.
struct Row {
  std::vector<double> P, factor;
  double lse = kNegInf;
  bool dead = true;  // sees no key
};

void softmax_row(const Layout& L, const DropoutSpec& drop, Index b, Index h, Index i, Row& r) {
  const Inputs& in = L.in;
  const std::size_t Nk = static_cast<std::size_t>(in.Nk);
  const double scale = in.scale_value();
  r.P.assign(Nk, 0.0);
  r.factor.assign(Nk, 1.0);
  double m = kNegInf;
  bool nan = false;
  for (Index j = 0; j < in.Nk; ++j) {
    double s = kNegInf;
    const bool hidden = !L.causal_visible(i, j) ||
                        (in.mask == MaskKind::keep && in.mask_keep[L.mask_at(b, h, i, j)] == 0);
    if (!hidden) {
      double dot = 0;
      for (Index d = 0; d < in.D; ++d) dot += in.q[L.q_at(b, h, i, d)] * in.k[L.k_at(b, h, j, d)];
      s = scale * dot;
      if (in.mask == MaskKind::additive) s += in.mask_add[L.mask_at(b, h, i, j)];
    }
    r.P[static_cast<std::size_t>(j)] = s;
    if (std::isnan(s)) {
      nan = true;
    } else {
      m = std::max(m, s);
    }
    if (drop.active()) r.factor[static_cast<std::size_t>(j)] = drop.keeps(in.Hq, b, h, i, j) ? drop.keep_scale() : 0.0;
  }
  r.dead = !nan && m == kNegInf;
  if (nan) {
    std::fill(r.P.begin(), r.P.end(), std::numeric_limits<double>::quiet_NaN());
    r.lse = std::numeric_limits<double>::quiet_NaN();
  } else if (r.dead) {
    std::fill(r.P.begin(), r.P.end(), 0.0);
    r.lse = kNegInf;
  } else {
    double l = 0;
    for (double& p : r.P) {
      p = std::exp(p - m);
      l += p;
    }
    for (double& p : r.P) p /= l;
    r.lse = m + std::log(l);
  }
}

/// out_i = Σ_j w_ij v_j over the non-zero weights.
void output_row(const Layout& L, const Row& r, Index b, Index h, double* out) {
  const Inputs& in = L.in;
  for (Index d = 0; d < in.Dv; ++d) {
    double o = 0;
    for (Index j = 0; j < in.Nk; ++j) {
      const double w = r.P[static_cast<std::size_t>(j)] * r.factor[static_cast<std::size_t>(j)];
      if (w != 0) o += w * in.v[L.v_at(b, h, j, d)];
    }
    out[d] = o;
  }
}

double max_of(const std::vector<double>& x) {
  double m = 0;
  for (double e : x) m = std::max(m, e);
  return m;
}

}  // namespace

Forward naive_forward(const Inputs& in, const DropoutSpec& dropout) {
  const Layout L(in);
  Forward f;
  f.out.assign(static_cast<std::size_t>(in.out_size()), 0.0);
  f.lse.assign(static_cast<std::size_t>(in.lse_size()), kNegInf);
  Row r;
  for (Index b = 0; b < in.B; ++b)
    for (Index h = 0; h < in.Hq; ++h)
      for (Index i = 0; i < in.Nq; ++i) {
        softmax_row(L, dropout, b, h, i, r);
        const std::size_t row = L.row_at(b, h, i);
        f.lse[row] = r.lse;
        output_row(L, r, b, h, f.out.data() + row * static_cast<std::size_t>(in.Dv));
      }
  return f;
}

Gradients naive_backward(const Inputs& in, const std::vector<double>& dout, const DropoutSpec& dropout) {
  const Layout L(in);
  const double scale = in.scale_value();
  const bool additive = in.mask == MaskKind::additive;
  Gradients g;
  g.dq.assign(in.q.size(), 0.0);
  g.dk.assign(in.k.size(), 0.0);
  g.dv.assign(in.v.size(), 0.0);
  if (additive) g.dmask.assign(in.mask_add.size(), 0.0);
  // The same sums over the absolute values of their terms.
  std::vector<double> adq(g.dq.size(), 0.0), adk(g.dk.size(), 0.0), adv(g.dv.size(), 0.0), adm(g.dmask.size(), 0.0);
  // The sums of |∂term/∂D_i| · |D_i's own terms| (Gradients::rowsum_terms), and with |out| for the
  // terms of out (Gradients::rowsum_values).
  std::vector<double> rdq(g.dq.size(), 0.0), rdk(g.dk.size(), 0.0), rdm(g.dmask.size(), 0.0);
  std::vector<double> vdq(g.dq.size(), 0.0), vdk(g.dk.size(), 0.0), vdm(g.dmask.size(), 0.0);
  std::vector<double> out(static_cast<std::size_t>(in.Dv));
  Row r;
  for (Index b = 0; b < in.B; ++b)
    for (Index h = 0; h < in.Hq; ++h)
      for (Index i = 0; i < in.Nq; ++i) {
        softmax_row(L, dropout, b, h, i, r);
        if (r.dead) continue;  // sees no key: out 0, and every gradient term 0
        output_row(L, r, b, h, out.data());
        const double* go = dout.data() + L.row_at(b, h, i) * static_cast<std::size_t>(in.Dv);
        double rowsum = 0;  // rowsum(dout ∘ out)
        for (Index d = 0; d < in.Dv; ++d) rowsum += go[d] * out[static_cast<std::size_t>(d)];
        double rowsum_abs = 0;  // Σ_d |dout_id| · Σ_j |w_ij v_jd|: the size of rowsum's terms
        double rowsum_val = 0;  // Σ_d |dout_id| · |out_id|
        for (Index d = 0; d < in.Dv; ++d) {
          double a = 0;
          for (Index j = 0; j < in.Nk; ++j) {
            const double w = r.P[static_cast<std::size_t>(j)] * r.factor[static_cast<std::size_t>(j)];
            if (w != 0) a += std::abs(w * in.v[L.v_at(b, h, j, d)]);
          }
          rowsum_abs += std::abs(go[d]) * a;
          rowsum_val += std::abs(go[d] * out[static_cast<std::size_t>(d)]);
        }
        for (Index j = 0; j < in.Nk; ++j) {
          const double P = r.P[static_cast<std::size_t>(j)], factor = r.factor[static_cast<std::size_t>(j)];
          const double w = P * factor;
          if (w != 0) {  // dv_j += w_ij dout_i
            for (Index d = 0; d < in.Dv; ++d) {
              g.dv[L.v_at(b, h, j, d)] += w * go[d];
              adv[L.v_at(b, h, j, d)] += std::abs(w * go[d]);
            }
          }
          if (P == 0) continue;  // dS_ij = P_ij (...) = 0
          double dP = 0;  // (dout_i · v_j) · M_ij
          for (Index d = 0; d < in.Dv; ++d) dP += go[d] * in.v[L.v_at(b, h, j, d)];
          dP *= factor;
          const double dS = P * (dP - rowsum);
          for (Index d = 0; d < in.D; ++d) {
            const double tq = scale * dS * in.k[L.k_at(b, h, j, d)], tk = scale * dS * in.q[L.q_at(b, h, i, d)];
            g.dq[L.q_at(b, h, i, d)] += tq;
            adq[L.q_at(b, h, i, d)] += std::abs(tq);
            rdq[L.q_at(b, h, i, d)] += std::abs(scale * P * in.k[L.k_at(b, h, j, d)]) * rowsum_abs;
            vdq[L.q_at(b, h, i, d)] += std::abs(scale * P * in.k[L.k_at(b, h, j, d)]) * rowsum_val;
            g.dk[L.k_at(b, h, j, d)] += tk;
            adk[L.k_at(b, h, j, d)] += std::abs(tk);
            rdk[L.k_at(b, h, j, d)] += std::abs(scale * P * in.q[L.q_at(b, h, i, d)]) * rowsum_abs;
            vdk[L.k_at(b, h, j, d)] += std::abs(scale * P * in.q[L.q_at(b, h, i, d)]) * rowsum_val;
          }
          if (additive) {
            g.dmask[L.mask_at(b, h, i, j)] += dS;
            adm[L.mask_at(b, h, i, j)] += std::abs(dS);
            rdm[L.mask_at(b, h, i, j)] += std::abs(P) * rowsum_abs;
            vdm[L.mask_at(b, h, i, j)] += std::abs(P) * rowsum_val;
          }
        }
      }
  g.terms.dq = max_of(adq);
  g.terms.dk = max_of(adk);
  g.terms.dv = max_of(adv);
  g.terms.dmask = max_of(adm);
  g.rowsum_terms.dq = max_of(rdq);
  g.rowsum_terms.dk = max_of(rdk);
  g.rowsum_terms.dmask = max_of(rdm);
  g.rowsum_values.dq = max_of(vdq);
  g.rowsum_values.dk = max_of(vdk);
  g.rowsum_values.dmask = max_of(vdm);
  return g;
}

}  // namespace attend_test
