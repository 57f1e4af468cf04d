// Shared by odr_a.cpp and odr_b.cpp, which are compiled with different target flags (odr_a.cpp with
// attend::native, odr_b.cpp for the baseline of the architecture) and linked into one program: one
// attention call on a given path, type and thread count, with a mask, causality, dropout, the lse
// output and a Workspace sized by workspace_bytes() in the same translation unit, as a user would
// write it. Each TU must run its own kernels with its own scratch layout (detail/abi.hpp).
#ifndef ATTEND_TESTS_ODR_HPP
#define ATTEND_TESTS_ODR_HPP

#include <attend/attend.hpp>

#include <cstddef>  // std::size_t
#include <memory>   // std::unique_ptr
#include <vector>   // std::vector

#include "support/attend_test.hpp"  // attend_test::only

namespace attend_odr {

/// out and lse of one call, in double, and the instruction set, kernel and ABI tag of the TU that
/// ran it. Nothing of attend's crosses between the two TUs: their attend::Path, attend::Kernel and
/// every other attend type are different types (a declaration shared with one would not link), so
/// the interface is plain values.
struct Result {
  std::vector<double> values;
  const char* isa;
  const char* abi;
  const char* kernel;
};

// In an unnamed namespace, so that each TU's instantiation is its own: a template of the test's own,
// instantiated in both TUs with the same name, would be the same ODR trap one level up (the linker
// would keep one TU's copy, with that TU's attend inside).
namespace {

template <typename T>
Result run(int path_index) {
  const auto path = static_cast<attend::Path>(path_index);
  const attend::Index B = 2, Hq = 4, Hkv = 2, Nq = 70, Nk = 67, D = 64;  // GQA, a ragged tile edge
  // Plain vectors seen through attend's views, not attend::Tensor: an Eigen::Tensor's storage is
  // Eigen's inline code, outside attend's tagged namespace, whose allocation depends on the target
  // flags (EIGEN_MAX_ALIGN_BYTES: 16 here, 64 in the AVX-512 TU). A program that shares Eigen
  // objects between such TUs must define it to one value in all of them, as Eigen documents; this
  // one checks attend's own code, which needs no such rule (detail/kernel/contraction.hpp).
  std::vector<T> q(static_cast<std::size_t>(B * Hq * Nq * D)), k(static_cast<std::size_t>(B * Hkv * Nk * D)),
      v(static_cast<std::size_t>(B * Hkv * Nk * D));
  // Inputs that every target computes exactly (small integers over a power of two): an expression such
  // as 0.01f * x - 0.5f would be one FMA in a TU built with -march=native and two roundings in one
  // built for the baseline, and the two TUs would start from different inputs.
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<T>(double(int(i % 97) - 48) / 64.0);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<T>(double(int(i % 53) - 26) / 32.0);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(double(int(i % 31) - 13) / 16.0);
  std::unique_ptr<bool[]> keep(new bool[static_cast<std::size_t>(Nq * Nk)]);  // (Nq, Nk)
  for (attend::Index i = 0; i < Nq; ++i)
    for (attend::Index j = 0; j < Nk; ++j) keep[static_cast<std::size_t>(i * Nk + j)] = (i + j) % 5 != 0;
  const attend::ConstView<T, 4> qv(q.data(), {B, Hq, Nq, D}), kv(k.data(), {B, Hkv, Nk, D}),
      vv(v.data(), {B, Hkv, Nk, D});

  attend::Attend<T> attn(/*dropout=*/0.25, /*flash=*/true, /*scale=*/{}, attend_test::only(path), /*seed=*/7);
  attn.train();

  Eigen::ThreadPool pool(2);
  Eigen::ThreadPoolDevice device(&pool, 2);
  std::vector<attend::acc_t<T>> lse(static_cast<std::size_t>(B * Hq * Nq));  // (B, Hq, Nq)
  attend::Dispatch report;
  attend::CallOptions<T> options;
  options.mask = attend::Mask<T>::keep(attend::ConstView<bool, 2>(keep.get(), {Nq, Nk}));
  options.causal = attend::Causal::bottom_right;
  options.lse = attend::TensorView<attend::acc_t<T>, 3>(lse.data(), {B, Hq, Nq});
  options.device = &device;
  options.dropout_offset = 3;
  options.dispatch = &report;
  // The workspace is sized here, by this TU's workspace_bytes: with a shared symbol, another TU's
  // kernel could write past its end.
  attend::Workspace workspace(attn.workspace_bytes(qv, kv, vv, options));
  options.workspace = &workspace;
  std::vector<T> out(static_cast<std::size_t>(B * Hq * Nq * D));  // (B, Hq, Nq, Dv = D)
  attn(qv, kv, vv, attend::TensorView<T, 4>(out.data(), {B, Hq, Nq, D}), options);

  Result r{{}, report.isa, ATTEND_ABI_NAME, attend::kernel_name(report.kernel)};
  for (const T x : out) r.values.push_back(static_cast<double>(x));
  for (const attend::acc_t<T> x : lse) r.values.push_back(static_cast<double>(x));
  return r;
}

}  // namespace

// Defined in odr_b.cpp; `path` is the index of an attend::Path.
Result run_b_float(int path);
Result run_b_double(int path);
Result run_b_bf16(int path);

}  // namespace attend_odr

#endif  // ATTEND_TESTS_ODR_HPP
