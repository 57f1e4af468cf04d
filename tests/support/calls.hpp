#ifndef ATTEND_TESTS_SUPPORT_CALLS_HPP
#define ATTEND_TESTS_SUPPORT_CALLS_HPP

// The definitions of attend_test.hpp's helpers that call attend::Attend<T> (run, forward, call,
// run_grad, backward, backward_returning).
// Included only by support/calls_<type>.cpp, which instantiate them for one element type each: the
// only translation units of the test suite that compile attend's kernels (besides the allocation
// test, which must compile them under its own Eigen settings, and the packaging tests).

#include <memory>
#include <vector>

#include "support/attend_test.hpp"

namespace attend_test {

template <typename T>
Result<T> run(const Inputs& in, const RunSpec& spec) {
  using Acc = attend::acc_t<T>;
  const std::vector<T> q = to_t<T>(in.q), k = to_t<T>(in.k), v = to_t<T>(in.v);
  const std::vector<T> madd = to_t<T>(in.mask_add);
  std::unique_ptr<bool[]> mkeep(new bool[in.mask_keep.size() + 1]);
  for (std::size_t i = 0; i < in.mask_keep.size(); ++i) mkeep[i] = in.mask_keep[i] != 0;

  Result<T> r;
  r.raw.assign(static_cast<std::size_t>(in.out_size()), T(0));
  r.raw_lse.assign(static_cast<std::size_t>(in.lse_size()), Acc(0));
  attend::CallOptions<T> o;
  if (in.mask == MaskKind::keep) o.mask = make_mask<T, bool>(mkeep.get(), in.mask_dims);
  if (in.mask == MaskKind::additive) o.mask = make_mask<T, T>(madd.data(), in.mask_dims);
  o.causal = in.causal;
  o.lse = attend::TensorView<Acc, 3>(r.raw_lse.data(), {in.B, in.Hq, in.Nq});
  o.device = spec.device;
  o.dropout_offset = spec.offset;
  o.dispatch = &r.dispatch;
  const attend::Attend<T> a = make_attend<T>(spec, in.scale);
  a(attend::ConstView<T, 4>(q.data(), {in.B, in.Hq, in.Nq, in.D}),
    attend::ConstView<T, 4>(k.data(), {in.B, in.Hkv, in.Nk, in.D}),
    attend::ConstView<T, 4>(v.data(), {in.B, in.Hkv, in.Nk, in.Dv}),
    attend::TensorView<T, 4>(r.raw.data(), {in.B, in.Hq, in.Nq, in.Dv}), o);
  r.out = to_double(r.raw.data(), r.raw.size());
  r.lse = to_double(r.raw_lse.data(), r.raw_lse.size());
  return r;
}

template <typename T>
void forward(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
             const attend::ConstView<nondeduced<T>, 4>& k, const attend::ConstView<nondeduced<T>, 4>& v,
             const attend::TensorView<nondeduced<T>, 4>& out, const attend::CallOptions<nondeduced<T>>& options) {
  a.forward(q, k, v, out, options);
}

template <typename T>
attend::Tensor<T, 4> call(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
                          const attend::ConstView<nondeduced<T>, 4>& k, const attend::ConstView<nondeduced<T>, 4>& v,
                          const attend::CallOptions<nondeduced<T>>& options) {
  return a(q, k, v, options);
}

/// The value gradients are pre-filled with: one no correct gradient of these tests has (they are of
/// order 1 to 100), finite in every T, so an element a call fails to write shows, NaN rules included.
constexpr double kGradSentinel = 4096.0;

template <typename T>
GradResult<T> run_grad(const Inputs& in, const std::vector<double>& dout, const RunSpec& spec, bool want_dmask) {
  using Acc = attend::acc_t<T>;
  const std::vector<T> q = to_t<T>(in.q), k = to_t<T>(in.k), v = to_t<T>(in.v), go = to_t<T>(dout);
  const std::vector<T> madd = to_t<T>(in.mask_add);
  std::unique_ptr<bool[]> mkeep(new bool[in.mask_keep.size() + 1]);
  for (std::size_t i = 0; i < in.mask_keep.size(); ++i) mkeep[i] = in.mask_keep[i] != 0;

  GradResult<T> r;
  r.fwd.raw.assign(static_cast<std::size_t>(in.out_size()), T(0));
  r.fwd.raw_lse.assign(static_cast<std::size_t>(in.lse_size()), Acc(0));
  attend::CallOptions<T> o;
  if (in.mask == MaskKind::keep) o.mask = make_mask<T, bool>(mkeep.get(), in.mask_dims);
  if (in.mask == MaskKind::additive) o.mask = make_mask<T, T>(madd.data(), in.mask_dims);
  o.causal = in.causal;
  o.device = spec.device;
  o.dropout_offset = spec.offset;
  const attend::Attend<T> a = make_attend<T>(spec, in.scale);
  const attend::ConstView<T, 4> Q(q.data(), {in.B, in.Hq, in.Nq, in.D}), K(k.data(), {in.B, in.Hkv, in.Nk, in.D}),
      V(v.data(), {in.B, in.Hkv, in.Nk, in.Dv}), DO(go.data(), {in.B, in.Hq, in.Nq, in.Dv});

  attend::CallOptions<T> fo = o;
  fo.lse = attend::TensorView<Acc, 3>(r.fwd.raw_lse.data(), {in.B, in.Hq, in.Nq});
  fo.dispatch = &r.fwd.dispatch;
  a(Q, K, V, attend::TensorView<T, 4>(r.fwd.raw.data(), {in.B, in.Hq, in.Nq, in.Dv}), fo);
  r.fwd.out = to_double(r.fwd.raw.data(), r.fwd.raw.size());
  r.fwd.lse = to_double(r.fwd.raw_lse.data(), r.fwd.raw_lse.size());

  const T sentinel = static_cast<T>(kGradSentinel);
  r.raw_dq.assign(q.size(), sentinel);
  r.raw_dk.assign(k.size(), sentinel);
  r.raw_dv.assign(v.size(), sentinel);
  attend::GradientViews<T> g{attend::TensorView<T, 4>(r.raw_dq.data(), {in.B, in.Hq, in.Nq, in.D}),
                             attend::TensorView<T, 4>(r.raw_dk.data(), {in.B, in.Hkv, in.Nk, in.D}),
                             attend::TensorView<T, 4>(r.raw_dv.data(), {in.B, in.Hkv, in.Nk, in.Dv}),
                             {}};
  if (want_dmask) {
    r.raw_dmask.assign(static_cast<std::size_t>(in.mask_size()), sentinel);
    g.dmask = make_mask_grad<T>(r.raw_dmask.data(), in.mask_dims);
  }
  o.dispatch = &r.dispatch;
  a.backward(Q, K, V, attend::ConstView<T, 4>(r.fwd.raw.data(), {in.B, in.Hq, in.Nq, in.Dv}),
             attend::ConstView<Acc, 3>(r.fwd.raw_lse.data(), {in.B, in.Hq, in.Nq}), DO, g, o);
  r.dq = to_double(r.raw_dq.data(), r.raw_dq.size());
  r.dk = to_double(r.raw_dk.data(), r.raw_dk.size());
  r.dv = to_double(r.raw_dv.data(), r.raw_dv.size());
  r.dmask = to_double(r.raw_dmask.data(), r.raw_dmask.size());
  return r;
}

template <typename T>
void backward(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
              const attend::ConstView<nondeduced<T>, 4>& k, const attend::ConstView<nondeduced<T>, 4>& v,
              const attend::ConstView<nondeduced<T>, 4>& out, const attend::ConstView<attend::acc_t<nondeduced<T>>, 3>& lse,
              const attend::ConstView<nondeduced<T>, 4>& dout, const attend::GradientViews<nondeduced<T>>& grads,
              const attend::CallOptions<nondeduced<T>>& options) {
  a.backward(q, k, v, out, lse, dout, grads, options);
}

template <typename T>
attend::Gradients<T> backward_returning(const attend::Attend<T>& a, const attend::ConstView<nondeduced<T>, 4>& q,
                                        const attend::ConstView<nondeduced<T>, 4>& k,
                                        const attend::ConstView<nondeduced<T>, 4>& v,
                                        const attend::ConstView<nondeduced<T>, 4>& out,
                                        const attend::ConstView<attend::acc_t<nondeduced<T>>, 3>& lse,
                                        const attend::ConstView<nondeduced<T>, 4>& dout,
                                        const attend::CallOptions<nondeduced<T>>& options) {
  return a.backward(q, k, v, out, lse, dout, options);
}

}  // namespace attend_test

/// Explicit instantiations of the helpers for element type T (at namespace scope).
#define ATTEND_TEST_INSTANTIATE_CALLS(T)                                                                      \
  template attend_test::Result<T> attend_test::run<T>(const attend_test::Inputs&, const attend_test::RunSpec&); \
  template void attend_test::forward<T>(const attend::Attend<T>&, const attend::ConstView<T, 4>&,              \
                                        const attend::ConstView<T, 4>&, const attend::ConstView<T, 4>&,        \
                                        const attend::TensorView<T, 4>&, const attend::CallOptions<T>&);       \
  template attend::Tensor<T, 4> attend_test::call<T>(const attend::Attend<T>&, const attend::ConstView<T, 4>&, \
                                                     const attend::ConstView<T, 4>&, const attend::ConstView<T, 4>&, \
                                                     const attend::CallOptions<T>&);                     \
  template attend_test::GradResult<T> attend_test::run_grad<T>(const attend_test::Inputs&,                     \
                                                               const std::vector<double>&,                     \
                                                               const attend_test::RunSpec&, bool);             \
  template void attend_test::backward<T>(const attend::Attend<T>&, const attend::ConstView<T, 4>&,             \
                                         const attend::ConstView<T, 4>&, const attend::ConstView<T, 4>&,       \
                                         const attend::ConstView<T, 4>&,                                       \
                                         const attend::ConstView<attend::acc_t<T>, 3>&,                        \
                                         const attend::ConstView<T, 4>&, const attend::GradientViews<T>&,      \
                                         const attend::CallOptions<T>&);                                       \
  template attend::Gradients<T> attend_test::backward_returning<T>(                                           \
      const attend::Attend<T>&, const attend::ConstView<T, 4>&, const attend::ConstView<T, 4>&,               \
      const attend::ConstView<T, 4>&, const attend::ConstView<T, 4>&,                                         \
      const attend::ConstView<attend::acc_t<T>, 3>&, const attend::ConstView<T, 4>&,                          \
      const attend::CallOptions<T>&);

#endif  // ATTEND_TESTS_SUPPORT_CALLS_HPP
