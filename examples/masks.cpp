// Masks, causality and dispatch, one fact at a time. Each fact is computed by attend on all three paths
// (flash, mem_efficient, math), checked in code against a plain double-precision reference written
// out below, and printed. The program exits with status 1 if any fact does not hold.
//
//   attend_example_masks
//
//   1. key padding: a (B, 1, 1, Nk) bool keep mask (and nn.MultiheadAttention's opposite polarity)
//   2. a bool (Nq, Nk) mask, broadcast to every batch and head, and the same mask as an additive one
//   3. an additive mask: ALiBi's per-head linear bias, combined with causal masking
//   4. the two causal alignments when Nq != Nk: which keys the first and the last query see
//   5. a fully masked row: output 0 and log-sum-exp -inf (PyTorch's math path gives NaN)
//   6. which path ran and why: attend::Dispatch, attn.dispatch(q, k, v, options), a forced path and
//      the attend::Error it throws when it cannot serve a call
//
// Dimension names: B (batch), Hq = Hkv = H (heads), Nq (queries), Nk (keys), D = Dv (head dimension).
#include <attend/attend.hpp>

#include <algorithm>   // std::max
#include <cmath>       // std::abs, std::exp, std::log, std::pow, std::isinf, std::sqrt
#include <cstdio>      // std::printf
#include <functional>  // std::function
#include <limits>      // std::numeric_limits
#include <optional>    // std::nullopt
#include <string>      // std::string
#include <vector>      // std::vector

namespace {

using attend::Index;
using Tensor4 = attend::Tensor<float, 4>;
using Path = attend::Path;

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kEps = std::numeric_limits<float>::epsilon();

bool g_ok = true;

// Prints one checked fact; a false one makes the program fail.
void fact(bool holds, const std::string& text) {
  std::printf("  [%s] %s\n", holds ? "ok" : "FAIL", text.c_str());
  g_ok = g_ok && holds;
}

void uniform(Tensor4& t) {  // U(-1, 1); Eigen's Tensor::setRandom draws from [0, 1)
  t.setRandom();
  t = (t - t.constant(0.5f)) * t.constant(2.0f);
}

// One Attend per path, each forced: with flash = true, a config that enables only that path (so a
// call it cannot serve throws instead of falling back); the math path is simply flash = false.
attend::Attend<float> forced(Path p) {
  if (p == Path::math) return attend::Attend<float>(/*dropout=*/0.0, /*flash=*/false);
  attend::FlashAttentionConfig config;
  config.enable_flash = p == Path::flash;
  config.enable_mem_efficient = p == Path::mem_efficient;
  config.enable_math = false;
  return attend::Attend<float>(/*dropout=*/0.0, /*flash=*/true, /*scale=*/std::nullopt, config);
}
const Path kPaths[] = {Path::flash, Path::mem_efficient, Path::math};

// The definition of masked attention, in double, with the mask given as two functions of (b, h, i, j):
// whether query i may see key j, and what is added to its scaled score. A row that sees no key is 0,
// with lse -inf (attend's rule; PyTorch's math path gives NaN there).
using Visible = std::function<bool(Index, Index, Index, Index)>;
using Bias = std::function<double(Index, Index, Index, Index)>;

struct Reference {
  attend::Tensor<double, 4> out;  // (B, H, Nq, Dv)
  attend::Tensor<double, 3> lse;  // (B, H, Nq)
};

Reference reference(const Tensor4& q, const Tensor4& k, const Tensor4& v, const Visible& visible, const Bias& bias) {
  const Index B = q.dimension(0), H = q.dimension(1), Nq = q.dimension(2), D = q.dimension(3);
  const Index Nk = k.dimension(2), Dv = v.dimension(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Reference r{attend::Tensor<double, 4>(B, H, Nq, Dv), attend::Tensor<double, 3>(B, H, Nq)};
  r.out.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index i = 0; i < Nq; ++i) {
        double m = -std::numeric_limits<double>::infinity(), sum = 0;
        std::vector<double> s(static_cast<std::size_t>(Nk), -std::numeric_limits<double>::infinity());
        for (Index j = 0; j < Nk; ++j) {
          if (!visible(b, h, i, j)) continue;
          double dot = 0;
          for (Index d = 0; d < D; ++d) dot += double(q(b, h, i, d)) * double(k(b, h, j, d));
          s[static_cast<std::size_t>(j)] = dot * scale + bias(b, h, i, j);
          m = std::max(m, s[static_cast<std::size_t>(j)]);
        }
        if (m == -std::numeric_limits<double>::infinity()) {  // no visible key
          r.lse(b, h, i) = m;
          continue;
        }
        for (Index j = 0; j < Nk; ++j) sum += std::exp(s[static_cast<std::size_t>(j)] - m);
        for (Index j = 0; j < Nk; ++j)
          for (Index d = 0; d < Dv; ++d)
            r.out(b, h, i, d) += std::exp(s[static_cast<std::size_t>(j)] - m) / sum * double(v(b, h, j, d));
        r.lse(b, h, i) = m + std::log(sum);
      }
  return r;
}

const Bias kNoBias = [](Index, Index, Index, Index) { return 0.0; };

// Runs the call on all three paths and compares out and lse with the reference. Each output is a
// convex combination of rows of v, so float paths are within a few roundings of max|v|: 16 eps·max|v|.
// lse is a log of a sum of at most Nk terms: within 16 eps·(1 + |lse|).
bool matches_reference(const Tensor4& q, const Tensor4& k, const Tensor4& v, attend::CallOptions<float> options,
                       const Reference& ref, float* worst = nullptr) {
  const Index B = q.dimension(0), H = q.dimension(1), Nq = q.dimension(2), Dv = v.dimension(3);
  float max_v = 0;
  for (Index i = 0; i < v.size(); ++i) max_v = std::max(max_v, std::abs(v.data()[i]));
  const double tol = 16 * kEps * max_v;
  bool ok = true;
  double worst_ratio = 0;
  for (Path p : kPaths) {
    attend::Tensor<float, 3> lse(B, H, Nq);  // (B, H, Nq), in acc_t<float> = float
    options.lse = lse;
    const Tensor4 out = forced(p)(q, k, v, options);  // (B, H, Nq, Dv)
    for (Index b = 0; b < B; ++b)
      for (Index h = 0; h < H; ++h)
        for (Index i = 0; i < Nq; ++i) {
          const double want = ref.lse(b, h, i), got = lse(b, h, i);
          if (std::isinf(want)) {
            ok = ok && got == want;
          } else {
            ok = ok && std::abs(got - want) <= 16 * kEps * (1 + std::abs(want));
          }
          for (Index d = 0; d < Dv; ++d) {
            const double err = std::abs(double(out(b, h, i, d)) - ref.out(b, h, i, d));
            worst_ratio = std::max(worst_ratio, err / tol);
            ok = ok && err <= tol;
          }
        }
  }
  if (worst != nullptr) *worst = static_cast<float>(worst_ratio);
  return ok;
}

std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, a, b, c);
  return buf;
}

}  // namespace

int main() {
  const Index B = 2, H = 4, Nq = 5, Nk = 7, D = 16;
  Tensor4 q(B, H, Nq, D), k(B, H, Nk, D), v(B, H, Nk, D);  // (B, H, Nq, D), (B, H, Nk, D), (B, H, Nk, D)
  uniform(q);
  uniform(k);
  uniform(v);
  std::printf("q (B %ld, H %ld, Nq %ld, D %ld), k and v (B, H, Nk %ld, D); every fact is checked on the flash, "
              "mem_efficient and math paths against a double-precision reference\n",
              static_cast<long>(B), static_cast<long>(H), static_cast<long>(Nq), static_cast<long>(D),
              static_cast<long>(Nk));
  float worst = 0;

  // ---- 1. Key padding --------------------------------------------------------------------------
  std::printf("\n1. Key padding: sequence 0 has 7 real keys, sequence 1 has 4 (keys 4..6 are padding)\n");
  {
    const Index length[B] = {7, 4};
    // nn.MultiheadAttention's key_padding_mask is (B, Nk) and true where a key is PADDING (ignored).
    // attend, like F.scaled_dot_product_attention, wants true where a key may be SEEN: invert it.
    attend::Tensor<bool, 2> key_padding_mask(B, Nk);  // (B, Nk), true = padding (PyTorch MHA)
    attend::Tensor<bool, 4> keep(B, 1, 1, Nk);        // (B, 1, 1, Nk), true = may attend (attend, SDPA)
    for (Index b = 0; b < B; ++b)
      for (Index j = 0; j < Nk; ++j) {
        key_padding_mask(b, j) = j >= length[b];
        keep(b, 0, 0, j) = !key_padding_mask(b, j);
      }
    // The size-1 head and query dimensions broadcast: one row of Nk flags serves every head and query.
    attend::CallOptions<float> options;
    options.mask = attend::Mask<float>::keep(keep);
    const Reference ref =
        reference(q, k, v, [&](Index b, Index, Index, Index j) { return j < length[b]; }, kNoBias);
    const bool holds = matches_reference(q, k, v, options, ref, &worst);
    fact(holds,
         fmt("a (B, 1, 1, Nk) keep mask equals attention over each sequence's real keys only (worst error "
             "%.3f of the tolerance)",
             worst));
  }

  // ---- 2. A bool (Nq, Nk) mask, and the same mask as an additive one ---------------------------
  std::printf("\n2. A bool (Nq, Nk) mask: a local window, query i sees keys i .. i + 2\n");
  {
    attend::Tensor<bool, 2> window(Nq, Nk);     // (Nq, Nk): broadcast to every batch and head
    attend::Tensor<float, 2> additive(Nq, Nk);  // (Nq, Nk): the same mask as 0 / -inf
    for (Index i = 0; i < Nq; ++i)
      for (Index j = 0; j < Nk; ++j) {
        window(i, j) = j >= i && j <= i + 2;
        additive(i, j) = window(i, j) ? 0.0f : -kInf;
      }
    attend::CallOptions<float> as_bool, as_additive;
    as_bool.mask = attend::Mask<float>::keep(window);
    as_additive.mask = attend::Mask<float>::additive(additive);
    const Reference ref =
        reference(q, k, v, [&](Index, Index, Index i, Index j) { return j >= i && j <= i + 2; }, kNoBias);
    const bool bool_holds = matches_reference(q, k, v, as_bool, ref, &worst);
    fact(bool_holds, fmt("Mask<float>::keep(window) matches the reference (worst error %.3f of the tolerance)", worst));
    const bool additive_holds = matches_reference(q, k, v, as_additive, ref, &worst);
    fact(additive_holds,
         fmt("Mask<float>::additive(window ? 0 : -inf) gives the same (worst error %.3f of the tolerance)", worst));
  }

  // ---- 3. An additive mask: ALiBi --------------------------------------------------------------
  std::printf("\n3. An additive mask: ALiBi, bias -slope_h * (distance from query to key), with causal\n");
  {
    // ALiBi (Press et al. 2022): head h adds -m_h · (i' - j) to the score of query i at position
    // i' = i + (Nk - Nq), key j, with slopes m_h = 2^(-8 (h + 1) / H): 1/4, 1/16, 1/64, 1/256 for H = 4.
    // A rank-3 (H, Nq, Nk) mask: the batch dimension is missing, so it counts as 1 and broadcasts.
    attend::Tensor<float, 3> alibi(H, Nq, Nk);  // (H, Nq, Nk)
    auto slope = [&](Index h) { return std::pow(2.0, -8.0 * static_cast<double>(h + 1) / static_cast<double>(H)); };
    for (Index h = 0; h < H; ++h)
      for (Index i = 0; i < Nq; ++i)
        for (Index j = 0; j < Nk; ++j) alibi(h, i, j) = static_cast<float>(-slope(h) * double(i + (Nk - Nq) - j));
    attend::CallOptions<float> options;
    options.mask = attend::Mask<float>::additive(alibi);
    options.causal = attend::Causal::bottom_right;  // the mask combines with causal masking
    const Reference ref = reference(
        q, k, v, [&](Index, Index, Index i, Index j) { return j <= i + (Nk - Nq); },
        [&](Index, Index h, Index i, Index j) { return double(alibi(h, i, j)); });
    const bool holds = matches_reference(q, k, v, options, ref, &worst);
    fact(holds,
         fmt("a (H, Nq, Nk) additive ALiBi bias with Causal::bottom_right matches the reference (worst error %.3f "
             "of the tolerance)",
             worst));
  }

  // ---- 4. Causal alignment when Nq != Nk ---------------------------------------------------------
  {
    const Index nq = 3, nk = 5;
    std::printf("\n4. Causal alignment with Nq %ld < Nk %ld: which keys each query sees\n", static_cast<long>(nq),
                static_cast<long>(nk));
    // A probe that makes visibility visible: with q = 0 every visible key scores the same, so the
    // weights are uniform over the visible keys; with v = the identity (Dv = Nk), output row i is
    // exactly those weights: 1/count where query i sees key j, 0 elsewhere.
    Tensor4 zero_q(1, 1, nq, 4), any_k(1, 1, nk, 4), identity_v(1, 1, nk, nk);  // (1, 1, Nq, 4), (1, 1, Nk, 4), (1, 1, Nk, Nk)
    zero_q.setZero();
    uniform(any_k);
    identity_v.setZero();
    for (Index j = 0; j < nk; ++j) identity_v(0, 0, j, j) = 1.0f;

    for (attend::Causal causal : {attend::Causal::top_left, attend::Causal::bottom_right}) {
      attend::CallOptions<float> options;
      options.causal = causal;
      const Index offset = causal == attend::Causal::top_left ? 0 : nk - nq;  // query i sees j <= i + offset
      std::printf("   %s (%s):\n", attend::causal_name(causal),
                  causal == attend::Causal::top_left ? "PyTorch's is_causal=True, j <= i"
                                                     : "FlashAttention-2's, a KV-cache step, j <= i + (Nk - Nq)");
      bool pattern_ok = true;
      for (Path p : kPaths) {
        const Tensor4 w = forced(p)(zero_q, any_k, identity_v, options);  // (1, 1, Nq, Nk): the weights
        for (Index i = 0; i < nq; ++i) {
          const Index count = std::min(i + offset + 1, nk);
          for (Index j = 0; j < nk; ++j) {
            const float want = j <= i + offset ? 1.0f / static_cast<float>(count) : 0.0f;
            pattern_ok = pattern_ok && std::abs(w(0, 0, i, j) - want) <= 4 * kEps;
          }
          if (p == Path::flash) {
            std::printf("     query %ld sees ", static_cast<long>(i));
            for (Index j = 0; j < nk; ++j) std::printf("%c", w(0, 0, i, j) > 0 ? 'x' : '.');
            std::printf("   (keys 0..%ld)\n", static_cast<long>(count - 1));
          }
        }
      }
      fact(pattern_ok, causal == attend::Causal::top_left
                           ? "top_left: the first query sees key 0 only, the last sees keys 0..2; keys 3 and 4 "
                             "are seen by no query"
                           : "bottom_right: the first query sees keys 0..2, the last sees all 5 keys");
    }
  }

  // ---- 5. A fully masked row -------------------------------------------------------------------
  std::printf("\n5. A fully masked row: query 1 may see no key\n");
  {
    attend::Tensor<bool, 2> keep(Nq, Nk);  // (Nq, Nk)
    keep.setConstant(true);
    for (Index j = 0; j < Nk; ++j) keep(1, j) = false;
    attend::CallOptions<float> options;
    options.mask = attend::Mask<float>::keep(keep);
    const Reference ref = reference(q, k, v, [&](Index, Index, Index i, Index) { return i != 1; }, kNoBias);
    const bool holds = matches_reference(q, k, v, options, ref, &worst);
    fact(holds,
         "every path gives the row 0 and lse -inf, and the other rows are unchanged (PyTorch's math path: NaN)");
    // The same, looked at directly on the default (flash) path.
    attend::Tensor<float, 3> lse(B, H, Nq);  // (B, H, Nq)
    options.lse = lse;
    const Tensor4 out = attend::Attend<float>(0.0, true)(q, k, v, options);
    float row_max = 0;
    for (Index d = 0; d < D; ++d) row_max = std::max(row_max, std::abs(out(0, 0, 1, d)));
    std::printf("     out(0, 0, 1, :) max |x| = %g, lse(0, 0, 1) = %g, lse(0, 0, 0) = %g\n",
                static_cast<double>(row_max), static_cast<double>(lse(0, 0, 1)), static_cast<double>(lse(0, 0, 0)));
  }

  // ---- 6. Which path ran, and why ----------------------------------------------------------------
  std::printf("\n6. Dispatch: which path a call takes and why the others were passed over\n");
  {
    auto show = [](const char* what, const attend::Dispatch& d) {
      std::printf("     %-44s -> %-13s flash: \"%s\"  mem_efficient: \"%s\"\n", what, attend::path_name(d.path),
                  d.flash_reason.c_str(), d.mem_efficient_reason.c_str());
    };
    // attn.dispatch(q, k, v, options) validates like a call and answers without computing anything.
    const attend::Attend<float> all_paths(/*dropout=*/0.0, /*flash=*/true);  // PyTorch's CPU default
    const attend::Dispatch d1 = all_paths.dispatch(q, k, v);
    show("flash = true, all paths enabled", d1);
    fact(d1.path == Path::flash && d1.flash_reason.empty(), "flash = true with every path enabled runs flash");

    attend::FlashAttentionConfig no_flash;
    no_flash.enable_flash = false;
    const attend::Dispatch d2 = attend::Attend<float>(0.0, true, std::nullopt, no_flash).dispatch(q, k, v);
    show("flash = true, enable_flash = false", d2);
    fact(d2.path == Path::mem_efficient && !d2.flash_reason.empty(),
         "with flash disabled it runs mem_efficient, and says why flash did not run");

    const attend::Dispatch d3 = attend::Attend<float>(0.0, false).dispatch(q, k, v);
    show("flash = false", d3);
    fact(d3.path == Path::math && !d3.flash_reason.empty() && !d3.mem_efficient_reason.empty(),
         "flash = false always runs math");

    // A call's options.dispatch receives the same answer as the call runs.
    attend::Dispatch d4;
    attend::CallOptions<float> options;
    options.dispatch = &d4;
    (void)all_paths(q, k, v, options);
    fact(d4.path == d1.path, "options.dispatch reports the path a call took: the one attn.dispatch() predicted");

    // Heads larger than the tiled kernels take (D > Attend<float>::kMaxTiledHeadDim = 1024, as in
    // Mel-RoFormer's cross-covariance attention): with every path enabled, math serves the call.
    const Index big_d = attend::Attend<float>::kMaxTiledHeadDim + 76;
    Tensor4 bq(1, 1, 2, big_d), bk(1, 1, 3, big_d), bv(1, 1, 3, big_d);  // (1, 1, 2, 1100), (1, 1, 3, 1100) x2
    uniform(bq);
    uniform(bk);
    uniform(bv);
    const attend::Dispatch d5 = all_paths.dispatch(bq, bk, bv);
    show("D = 1100, all paths enabled", d5);
    fact(d5.path == Path::math, "with D = 1100 the tiled paths pass and math runs; the reasons say why");

    // Forcing a path (enable only it) turns that fallback into an error, thrown before anything is
    // written: attend::Error, a std::invalid_argument whose message starts with "attend: ".
    Tensor4 out(1, 1, 2, big_d);  // (1, 1, 2, 1100)
    out.setConstant(42.0f);
    bool threw = false;
    try {
      forced(Path::flash)(bq, bk, bv, out);
    } catch (const attend::Error& e) {
      threw = true;
      std::printf("     forced flash, D = 1100: attend::Error: %s\n", e.what());
    }
    bool untouched = true;
    for (Index i = 0; i < out.size(); ++i) untouched = untouched && out.data()[i] == 42.0f;
    fact(threw && untouched, "a forced path that cannot serve the call throws attend::Error and leaves out untouched");
  }

  std::printf("\n%s\n", g_ok ? "all facts hold" : "SOME FACTS DO NOT HOLD");
  return g_ok ? 0 : 1;
}
