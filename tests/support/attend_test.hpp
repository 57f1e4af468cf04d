#ifndef ATTEND_TESTS_SUPPORT_ATTEND_TEST_HPP
#define ATTEND_TESTS_SUPPORT_ATTEND_TEST_HPP

// Shared helpers of attend's tests: a problem held in double, the ways to run a call (routes), one
// random source, running a problem through any path in any T, element-wise and bitwise comparison,
// and the one tolerance formula every numerical test uses (derived below). The oracle, a naive
// reference in double, is in support/reference.hpp; GoogleTest checks are in support/check.hpp.
// Nothing here depends on GoogleTest, so the golden runner, the fuzzer and the unit tests share it.
//
// The helpers that call attend::Attend<T> (run, forward, call) are only declared here. They are
// defined once per element type in the attend_test_support library (support/calls.hpp and
// support/calls_<type>.cpp), so that a test which calls the library through them compiles none of
// attend's kernels: the suite compiles the kernels once per type instead of once per test file.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <attend/attend.hpp>

namespace attend_test {

using attend::Index;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Machine epsilon of T (2^-52, 2^-23, 2^-7, 2^-10): the spacing of T's numbers at 1, from T's
/// precision in bits. Not Eigen::NumTraits<T>::epsilon() for every T: Eigen 3.4.0 returns 2^-13
/// (raw 0x0800) for Eigen::half, 8 times too small (it agrees for double, float and bfloat16;
/// EpsilonMatchesEigen in forward/typed_test.cpp checks both statements).
template <typename T>
double eps() {
  return std::ldexp(1.0, 1 - std::numeric_limits<T>::digits);
}

// ---------------------------------------------------------------------------------------------
// Routes: how a call reaches a path.

inline constexpr attend::Path kAllPaths[] = {attend::Path::flash, attend::Path::mem_efficient, attend::Path::math};

/// A config with only `p` enabled: together with flash = true this forces that path.
inline attend::FlashAttentionConfig only(attend::Path p) {
  attend::FlashAttentionConfig c;
  c.enable_flash = p == attend::Path::flash;
  c.enable_mem_efficient = p == attend::Path::mem_efficient;
  c.enable_math = p == attend::Path::math;
  return c;
}

/// A way to run a call: the module's `flash` and config, and the path the dispatcher must pick.
/// The default is flash = false, which always takes the math path.
struct Route {
  const char* name = "flash=false";
  bool flash = false;
  attend::FlashAttentionConfig config{};
  attend::Path expect = attend::Path::math;
};

/// Path `p` forced: flash = true and only `p` enabled.
inline Route forced(attend::Path p) { return {attend::path_name(p), true, only(p), p}; }

/// The three paths, each forced.
inline const std::array<Route, 3>& forced_routes() {
  static const std::array<Route, 3> r = {
      {forced(attend::Path::flash), forced(attend::Path::mem_efficient), forced(attend::Path::math)}};
  return r;
}

/// The three forced paths, plus flash = false (the module's naive route) and the default config.
inline const std::array<Route, 5>& routes() {
  static const std::array<Route, 5> r = {{
      forced_routes()[0],
      forced_routes()[1],
      forced_routes()[2],
      Route{},
      {"default", true, attend::FlashAttentionConfig{}, attend::Path::flash},
  }};
  return r;
}

/// A module on `route` (constructing one compiles no kernel; calling it does: see run/forward/call).
template <typename T>
attend::Attend<T> make_attend(const Route& route, double dropout = 0.0, std::optional<double> scale = std::nullopt,
                              std::uint64_t seed = 0) {
  return attend::Attend<T>(dropout, route.flash, scale, route.config, seed);
}

// ---------------------------------------------------------------------------------------------
// Problems

enum class MaskKind { none, keep, additive };

/// One attention problem, all values held in double (row-major, shapes as in attend).
struct Inputs {
  Index B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 1, Dv = 1;
  std::vector<double> q, k, v;
  MaskKind mask = MaskKind::none;
  std::vector<Index> mask_dims;           // rank 1..4, broadcastable to (B, Hq, Nq, Nk)
  std::vector<double> mask_add;           // additive mask values
  std::vector<unsigned char> mask_keep;   // bool mask, 1 = may attend
  attend::Causal causal = attend::Causal::none;
  std::optional<double> scale;            // nullopt: 1/sqrt(D)

  Index q_size() const { return B * Hq * Nq * D; }
  Index k_size() const { return B * Hkv * Nk * D; }
  Index v_size() const { return B * Hkv * Nk * Dv; }
  Index out_size() const { return B * Hq * Nq * Dv; }
  Index lse_size() const { return B * Hq * Nq; }
  Index mask_size() const {
    Index n = 1;
    for (Index d : mask_dims) n *= d;
    return n;
  }
  double scale_value() const { return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(D)); }
};

/// Standard-normal values times `gain`, from a fixed seed: the one source of random test data.
inline std::vector<double> randn(Index n, std::uint64_t seed, double gain = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> r(static_cast<std::size_t>(n));
  for (auto& x : r) x = gain * nd(g);
  return r;
}

/// Fills p[0, n) with randn(n, seed, gain), rounded to T.
template <typename T>
void fill(T* p, Index n, std::uint64_t seed, double gain = 1.0) {
  const std::vector<double> r = randn(n, seed, gain);
  for (Index i = 0; i < n; ++i) p[i] = static_cast<T>(r[static_cast<std::size_t>(i)]);
}

/// Fills a tensor with randn(size, seed, gain), rounded to T.
template <typename T, int R>
void fill(attend::Tensor<T, R>& t, std::uint64_t seed, double gain = 1.0) {
  fill(t.data(), t.size(), seed, gain);
}

/// Random inputs of the given shape (no mask, no causality).
inline Inputs random_inputs(Index B, Index Hq, Index Hkv, Index Nq, Index Nk, Index D, Index Dv, std::uint64_t seed,
                            double gain = 1.0) {
  Inputs in;
  in.B = B, in.Hq = Hq, in.Hkv = Hkv, in.Nq = Nq, in.Nk = Nk, in.D = D, in.Dv = Dv;
  in.q = randn(in.q_size(), seed * 3 + 1, gain);
  in.k = randn(in.k_size(), seed * 3 + 2, gain);
  in.v = randn(in.v_size(), seed * 3 + 3);
  return in;
}

/// Fills a mask of shape `dims` (rank 1..4) with fn(b, h, i, j), the indices of the left-padded
/// (B|1, H|1, Nq|1, Nk|1) shape (0 along a broadcast dimension).
template <typename Fn>
void for_each_mask_index(const std::vector<Index>& dims, Fn&& fn) {
  std::array<Index, 4> d = {1, 1, 1, 1};
  const std::size_t pad = 4 - dims.size();
  for (std::size_t r = 0; r < dims.size(); ++r) d[pad + r] = dims[r];
  for (Index b = 0; b < d[0]; ++b)
    for (Index h = 0; h < d[1]; ++h)
      for (Index i = 0; i < d[2]; ++i)
        for (Index j = 0; j < d[3]; ++j) fn(b, h, i, j);
}

/// A bool mask of shape `dims`, keep(b, h, i, j) = true where the query may attend the key.
template <typename Fn>
void set_keep_mask(Inputs& in, std::vector<Index> dims, Fn&& keep) {
  in.mask = MaskKind::keep;
  in.mask_dims = std::move(dims);
  in.mask_keep.clear();
  for_each_mask_index(in.mask_dims,
                      [&](Index b, Index h, Index i, Index j) { in.mask_keep.push_back(keep(b, h, i, j) ? 1 : 0); });
}

/// An additive mask of shape `dims` with values bias(b, h, i, j).
template <typename Fn>
void set_additive_mask(Inputs& in, std::vector<Index> dims, Fn&& bias) {
  in.mask = MaskKind::additive;
  in.mask_dims = std::move(dims);
  in.mask_add.clear();
  for_each_mask_index(in.mask_dims, [&](Index b, Index h, Index i, Index j) { in.mask_add.push_back(bias(b, h, i, j)); });
}

/// A deterministic hash of indices to [0, 1), for random-looking masks.
inline double unit_hash(std::uint64_t seed, Index b, Index h, Index i, Index j) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(b) * 0xBF58476D1CE4E5B9ull +
                    static_cast<std::uint64_t>(h) * 0x94D049BB133111EBull + static_cast<std::uint64_t>(i) * 0x2545F4914F6CDD1Dull +
                    static_cast<std::uint64_t>(j) * 0xD6E8FEB86659FD93ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

/// x rounded to T and back: the value a T computation actually sees.
template <typename T>
double round_to(double x) {
  return static_cast<double>(static_cast<T>(x));
}

template <typename T>
std::vector<double> round_all(const std::vector<double>& x) {
  std::vector<double> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = round_to<T>(x[i]);
  return r;
}

/// The inputs as a T computation sees them (q, k, v and an additive mask rounded to T), in double.
template <typename T>
Inputs rounded(const Inputs& in) {
  Inputs r = in;
  r.q = round_all<T>(in.q);
  r.k = round_all<T>(in.k);
  r.v = round_all<T>(in.v);
  r.mask_add = round_all<T>(in.mask_add);
  return r;
}

template <typename T>
std::vector<T> to_t(const std::vector<double>& x) {
  std::vector<T> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = static_cast<T>(x[i]);
  return r;
}

template <typename T>
std::vector<double> to_double(const T* x, std::size_t n) {
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = static_cast<double>(x[i]);
  return r;
}

/// A mask view of runtime rank 1..4 over `data`.
template <typename T, typename V>
attend::Mask<T> make_mask(const V* data, const std::vector<Index>& dims) {
  auto arr = [&](auto rank_tag) {
    constexpr int R = decltype(rank_tag)::value;
    std::array<Index, R> a{};
    for (int r = 0; r < R; ++r) a[static_cast<std::size_t>(r)] = dims[static_cast<std::size_t>(r)];
    return attend::ConstView<V, R>(data, a);
  };
  auto mk = [&](const auto& view) {
    if constexpr (std::is_same_v<V, bool>) {
      return attend::Mask<T>::keep(view);
    } else {
      return attend::Mask<T>::additive(view);
    }
  };
  switch (dims.size()) {
    case 1: return mk(arr(std::integral_constant<int, 1>{}));
    case 2: return mk(arr(std::integral_constant<int, 2>{}));
    case 3: return mk(arr(std::integral_constant<int, 3>{}));
    case 4: return mk(arr(std::integral_constant<int, 4>{}));
    default: throw std::invalid_argument("attend_test::make_mask: rank must be 1..4");
  }
}

// ---------------------------------------------------------------------------------------------
// Running a problem

/// How to run a problem: the route, dropout in training or not, threads.
struct RunSpec {
  Route route;  // default: flash = false (always math)
  double dropout = 0.0;
  bool train = false;
  std::uint64_t seed = 0;
  std::uint32_t offset = 0;
  const Eigen::ThreadPoolDevice* device = nullptr;
};

/// Path `p` forced, no dropout.
inline RunSpec on(attend::Path p) {
  RunSpec s;
  s.route = forced(p);
  return s;
}

/// The module a RunSpec describes, in training mode if it says so.
template <typename T>
attend::Attend<T> make_attend(const RunSpec& s, std::optional<double> scale) {
  attend::Attend<T> a = make_attend<T>(s.route, s.dropout, scale, s.seed);
  a.train(s.train);
  return a;
}

/// Output of one run: out and lse in double, and their raw values for bitwise comparisons.
template <typename T>
struct Result {
  std::vector<double> out, lse;
  std::vector<T> raw;
  std::vector<attend::acc_t<T>> raw_lse;
  attend::Dispatch dispatch;
};

/// T itself, in a context that does not deduce it: the Attend argument alone decides T, and the
/// views convert from tensors and maps as they do for Attend's own operator().
template <typename T>
struct type_identity {
  using type = T;
};
template <typename T>
using nondeduced = typename type_identity<T>::type;

/// Runs `in` (converted to T) through Attend<T> as `spec` says, with lse and the dispatch report.
/// Defined in the attend_test_support library for double, float, bfloat16 and half.
template <typename T>
Result<T> run(const Inputs& in, const RunSpec& spec);

/// a.forward(q, k, v, out, options). Defined in the attend_test_support library for each T.
template <typename T>
void forward(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
             const attend::ConstView<nondeduced<T>, 4>& k, const attend::ConstView<nondeduced<T>, 4>& v,
             const attend::TensorView<nondeduced<T>, 4>& out, const attend::CallOptions<nondeduced<T>>& options = {});

/// a(q, k, v, options), the operator() that returns a new tensor. Defined in the attend_test_support
/// library for each T.
template <typename T>
attend::Tensor<T, 4> call(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
                          const attend::ConstView<nondeduced<T>, 4>& k, const attend::ConstView<nondeduced<T>, 4>& v,
                          const attend::CallOptions<nondeduced<T>>& options = {});

// ---------------------------------------------------------------------------------------------
// The backward pass

/// A training step of one problem: the forward (out, lse) and the gradients of L = Σ out ∘ dout, in
/// double and raw (for bitwise comparisons). dmask is empty unless it was asked for.
template <typename T>
struct GradResult {
  Result<T> fwd;
  std::vector<double> dq, dk, dv, dmask;
  std::vector<T> raw_dq, raw_dk, raw_dv, raw_dmask;
  attend::Dispatch dispatch;  // the backward's
};

/// Runs `in` (converted to T) forward with lse, then backward with `dout` (converted to T), both
/// through one Attend<T> as `spec` says (route, dropout in training, seed, offset, device), the
/// gradients into compact tensors; with `want_dmask` (an additive mask only) dmask too, in the
/// mask's own shape. Defined in the attend_test_support library for each T.
template <typename T>
GradResult<T> run_grad(const Inputs& in, const std::vector<double>& dout, const RunSpec& spec, bool want_dmask = false);

/// a.backward(q, k, v, out, lse, dout, grads, options). Defined in the attend_test_support library for
/// each T.
template <typename T>
void backward(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
              const attend::ConstView<nondeduced<T>, 4>& k, const attend::ConstView<nondeduced<T>, 4>& v,
              const attend::ConstView<nondeduced<T>, 4>& out, const attend::ConstView<attend::acc_t<nondeduced<T>>, 3>& lse,
              const attend::ConstView<nondeduced<T>, 4>& dout, const attend::GradientViews<nondeduced<T>>& grads,
              const attend::CallOptions<nondeduced<T>>& options = {});

/// a.backward(q, k, v, out, lse, dout, options), the form that returns new tensors. Defined in the
/// attend_test_support library for each T.
template <typename T>
attend::Gradients<T> backward_returning(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
                                        const attend::ConstView<nondeduced<T>, 4>& k,
                                        const attend::ConstView<nondeduced<T>, 4>& v,
                                        const attend::ConstView<nondeduced<T>, 4>& out,
                                        const attend::ConstView<attend::acc_t<nondeduced<T>>, 3>& lse,
                                        const attend::ConstView<nondeduced<T>, 4>& dout,
                                        const attend::CallOptions<nondeduced<T>>& options = {});

/// A MaskGrad of runtime rank 1..4 over `data` (row-major, shape `dims`).
template <typename T>
attend::MaskGrad<T> make_mask_grad(T* data, const std::vector<Index>& dims) {
  auto arr = [&](auto rank_tag) {
    constexpr int R = decltype(rank_tag)::value;
    std::array<Index, R> a{};
    for (int r = 0; r < R; ++r) a[static_cast<std::size_t>(r)] = dims[static_cast<std::size_t>(r)];
    return attend::MaskGrad<T>::template of<R>(attend::TensorView<T, R>(data, a));
  };
  switch (dims.size()) {
    case 1: return arr(std::integral_constant<int, 1>{});
    case 2: return arr(std::integral_constant<int, 2>{});
    case 3: return arr(std::integral_constant<int, 3>{});
    case 4: return arr(std::integral_constant<int, 4>{});
    default: throw std::invalid_argument("attend_test::make_mask_grad: rank must be 1..4");
  }
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/// Largest |x| over the finite entries.
inline double max_abs_finite(const std::vector<double>& x) {
  double m = 0;
  for (double e : x)
    if (std::isfinite(e)) m = std::max(m, std::abs(e));
  return m;
}

/// Element-wise distance: |got - ref| for finite refs; a NaN ref must be NaN and an infinite ref
/// must be the same infinity, else the distance is +inf; a non-finite got with a finite ref is +inf.
struct Diff {
  double max_abs_err = 0;
  std::size_t worst = 0;  // index of the largest error
};

inline Diff compare(const std::vector<double>& got, const std::vector<double>& ref) {
  Diff d;
  if (got.size() != ref.size()) {
    d.max_abs_err = kInf;
    return d;
  }
  for (std::size_t i = 0; i < ref.size(); ++i) {
    double e;
    if (std::isnan(ref[i])) {
      e = std::isnan(got[i]) ? 0.0 : kInf;
    } else if (std::isinf(ref[i])) {
      e = got[i] == ref[i] ? 0.0 : kInf;
    } else {
      e = std::isfinite(got[i]) ? std::abs(got[i] - ref[i]) : kInf;
    }
    if (e > d.max_abs_err) {
      d.max_abs_err = e;
      d.worst = i;
    }
  }
  return d;
}

template <typename T>
bool is_nan(T x) {
  return std::isnan(static_cast<double>(x));
}
template <typename T>
bool is_finite(T x) {
  return std::isfinite(static_cast<double>(x));
}

/// The first element whose bits differ between two containers of the same type (std::vector,
/// attend::Tensor: anything with data() and size()), NaN payloads included; -1 if none, 0 if the
/// sizes differ.
template <typename C>
Index first_diff(const C& a, const C& b) {
  if (a.size() != b.size()) return 0;
  using E = std::remove_cv_t<std::remove_reference_t<decltype(*a.data())>>;
  const Index n = static_cast<Index>(a.size());
  for (Index i = 0; i < n; ++i) {
    if (std::memcmp(a.data() + i, b.data() + i, sizeof(E)) != 0) return i;
  }
  return -1;
}

/// Bitwise equality of two containers (see first_diff).
template <typename C>
bool same_bits(const C& a, const C& b) {
  return first_diff(a, b) < 0;
}

// ---------------------------------------------------------------------------------------------
// Tolerance: one formula for every comparison of a result against a reference.
//
// Let u = eps(acc_t<T>) (the arithmetic's precision: double for f64, float otherwise), and, over the
// inputs as they are fed to the computation (already rounded to T),
//   S = max over (b, h, i, j) of scale · Σ_d |q_id k_jd|, plus max |finite additive mask|: the size of
//       the terms each logit sums (its rounding errors scale with it, not with the logit itself),
//   V = max |v| (times 1/(1-p) under dropout: the weights sum to at most 1/(1-p)).
// Error budget of out_i = Σ_j softmax(s)_ij v_j:
//   * each logit s_ij is a D-term dot product: |δs| ≲ sqrt(D)·u·S (rounding errors of a sum grow
//     like the square root of its length; the worst case D·u·S is not reached by these kernels,
//     whose fused/blocked sums are better than recursive summation). An error δ in a logit changes
//     the weights relatively by ~δ and the output by ≤ 2δ·V (softmax Jacobian: p_j(δ_j - Σ p δ)).
//     This is the term that makes logits in the hundreds (S ~ 10^3) cost accuracy: |s|·u per logit.
//   * the row sum and the weighted sum over Nk keys: ≲ sqrt(Nk)·u·V; exp, division, scale: a few u·V.
//   * the final rounding of out to T: eps(T)/2 · |out| ≤ eps(T)/2 · max|ref| (counted twice: eps(T)).
// So  tol_out = eps(T)·max|ref| + C·u·V·(1 + sqrt(D)·S + sqrt(Nk)),
// and the log-sum-exp, kept in acc_t<T> (never rounded to T), is its max logit plus log of the row sum:
//     tol_lse = C·u·(max(1, max|lse|) + sqrt(D)·S + sqrt(Nk)).
// C = 4 covers the constant factors above (2 from the softmax Jacobian, 2 for the reference's
// own rounding).
// Measured on the golden cases (ATTEND_GOLDEN_VERBOSE=1 prints them): f64 and f32 errors are at most
// 1.3% of tol_out and 4.5% of tol_lse; bf16 and f16 reach 47% of tol_out, which is the output
// rounding itself (eps(T)/2·|out|, at most half of the eps(T)·max|ref| term), and 5% of tol_lse.
// Yet they catch real bugs (checked by mutating a copy of the headers): a scale off by 1e-5
// relative (f64 out and lse, every type's lse), an off-by-one causal diagonal, an additive mask
// skipped on one key per tile, a missing online-softmax rescale, a wrong GQA head mapping.
// For f64/f32 the reference may be PyTorch's (golden, on unrounded double inputs): rounding q, k, v
// to float perturbs logits by ≤ 2u·S and v by u·V, inside the same budget.
// For 16-bit T the reference must be the double computation on the same T-rounded inputs: rounding
// q and k to 8 or 11 bits moves a logit of size 100 by ~eps(T)·100 ≈ 1, i.e. changes the softmax
// at O(1), which no tolerance derived from eps(T)·|out| could absorb (nor should: it is the input).
//
// Gradients (of L = Σ out ∘ dout; see support/reference.hpp) follow the same derivation. Each element
// of dq, dk, dv and dmask is a sum of terms, and its error is that of its terms plus that of the sum:
//   * the terms carry the weights' relative error (sqrt(D)·u·S, as above) and, through
//     dP_ij = dout_i · v_j and rowsum(dout ∘ out), the error of Dv-term dot products (sqrt(Dv)·u);
//   * the sum over n terms adds ≲ sqrt(n)·u, with n = Nk for dq, Nq·Hq/Hkv (the query rows that read
//     one kv head) for dk and dv, and the number of (b, h, i, j) a mask element stands for in dmask;
// all relative to A, the largest sum of the absolute values of one element's terms (what V is for
// out; the reference reports it, Gradients::terms, because it needs the softmax: a column of P may
// sum to anything from 0 to n). With the same C and the final rounding to T:
//     tol_grad = eps(T)·max|ref| + C·u·A·(1 + sqrt(D)·S + sqrt(Dv) + sqrt(n)).
// Measured on the golden cases with the reference's own double computation (reference_test.cpp,
// ATTEND_GOLDEN_VERBOSE=1): at most 2.5% of tol_grad against PyTorch's gradients.
// A backward that reads D_i = rowsum(dout_i ∘ out_i) from the forward's out (the flash path, as
// FlashAttention-2 does) inherits out's error: its kernel error (C·u·(1 + growth) relative to the size
// of out's terms) and its rounding to T (eps(T)/2 relative to out's value). Through
// dS_ij = P_ij (dP_ij − D_i) it moves dq, dk and dmask by up to those relative errors times
//   R_terms  = the largest sum over an element's terms of |∂term/∂D_i| · Σ_d |dout_id| Σ_j |w_ij v_jd|,
//   R_values = the same with |out_id| for Σ_j |w_ij v_jd|     (Gradients::rowsum_terms, rowsum_values).
// So the gradients that depend on D_i add (eps(T)/2, counted twice as above)
//     eps(T)·R_values + C·u·(1 + sqrt(D)·S + sqrt(Dv) + sqrt(n))·R_terms.
// The term matters where dq, dk or dmask is small beside its terms: with one key (dq = 0 exactly: dP_i
// = D_i) and for 16-bit T with logits in the hundreds (P nearly one-hot, |k| ~ 15), where the flash
// path's bf16 and f16 gradients measured 2.2 and 3.9 times tol_grad without it.
// ---------------------------------------------------------------------------------------------

constexpr double kTolC = 4.0;

struct Magnitudes {
  double S = 0;  // logit magnitude bound
  double V = 0;  // value magnitude bound
};

inline Magnitudes magnitudes(const Inputs& in, double keep_scale = 1.0) {
  Magnitudes m;
  const Index group = in.Hkv > 0 ? std::max<Index>(1, in.Hq / in.Hkv) : 1;
  double dot = 0;  // max over (b, h, i, j) of Σ_d |q_d k_d|
  for (Index b = 0; b < in.B; ++b)
    for (Index h = 0; h < in.Hq; ++h)
      for (Index i = 0; i < in.Nq; ++i) {
        const double* q = in.q.data() + ((b * in.Hq + h) * in.Nq + i) * in.D;
        for (Index j = 0; j < in.Nk; ++j) {
          const double* k = in.k.data() + ((b * in.Hkv + h / group) * in.Nk + j) * in.D;
          double a = 0;
          for (Index d = 0; d < in.D; ++d) a += std::abs(q[d] * k[d]);
          dot = std::max(dot, a);
        }
      }
  m.S = std::abs(in.scale_value()) * dot;
  if (in.mask == MaskKind::additive) m.S += max_abs_finite(in.mask_add);
  m.V = max_abs_finite(in.v) * keep_scale;
  return m;
}

struct Tolerance {
  double out = 0;
  double lse = 0;
};

/// The tolerance of a T computation of `in_as_fed` against a reference whose output has max |.|
/// `ref_max_abs` and whose lse has max finite |.| `lse_max_abs` (see the derivation above).
template <typename T>
Tolerance tolerance(const Inputs& in_as_fed, double ref_max_abs, double lse_max_abs, double keep_scale = 1.0) {
  const double u = eps<attend::acc_t<T>>();
  const Magnitudes m = magnitudes(in_as_fed, keep_scale);
  const double growth = std::sqrt(static_cast<double>(in_as_fed.D)) * m.S +
                        std::sqrt(static_cast<double>(std::max<Index>(in_as_fed.Nk, 1)));
  Tolerance t;
  t.out = eps<T>() * ref_max_abs + kTolC * u * m.V * (1.0 + growth);
  t.lse = kTolC * u * (std::max(1.0, lse_max_abs) + growth);
  return t;
}

/// The tolerance of one gradient of a T computation of `in_as_fed` against a reference whose
/// gradient has max |.| `ref_max_abs`, whose elements sum at most `terms` in absolute value
/// (Gradients::terms) over `n` terms each (see the derivation above). `rowsum_terms` and
/// `rowsum_values` (Gradients::rowsum_terms and rowsum_values; 0 for dv) add the error a D_i read from
/// the forward's out inherits.
template <typename T>
double grad_tolerance(const Inputs& in_as_fed, double ref_max_abs, double terms, Index n, double rowsum_terms = 0.0,
                      double rowsum_values = 0.0) {
  const double u = eps<attend::acc_t<T>>();
  const Magnitudes m = magnitudes(in_as_fed);
  const double growth = std::sqrt(static_cast<double>(in_as_fed.D)) * m.S +
                        std::sqrt(static_cast<double>(in_as_fed.Dv)) +
                        std::sqrt(static_cast<double>(std::max<Index>(n, 1)));
  return eps<T>() * ref_max_abs + kTolC * u * (terms + rowsum_terms) * (1.0 + growth) + eps<T>() * rowsum_values;
}

/// Where a flat (B, H, N, X) index points, for messages.
inline std::string where4(std::size_t flat, Index H, Index N, Index X) {
  const Index f = static_cast<Index>(flat);
  const Index x = f % X, n = (f / X) % N, h = (f / X / N) % H, b = f / X / N / H;
  return "(b=" + std::to_string(b) + ", h=" + std::to_string(h) + ", i=" + std::to_string(n) +
         ", d=" + std::to_string(x) + ")";
}

}  // namespace attend_test

#endif  // ATTEND_TESTS_SUPPORT_ATTEND_TEST_HPP
