// Shared by odr_a.cpp and odr_b.cpp: one attention call on a given path, with a mask, causality,
// the lse output and a two-thread pool, so that each TU instantiates every kernel.
#ifndef ATTEND_TESTS_ODR_HPP
#define ATTEND_TESTS_ODR_HPP

#include <attend/attend.hpp>

#include <vector>  // std::vector

#include "support/attend_test.hpp"  // attend_test::only

namespace attend_odr {

template <typename T>
std::vector<T> run(attend::Path path) {
  const attend::Index B = 2, Hq = 4, Hkv = 2, Nq = 70, Nk = 67, D = 16;  // GQA, a ragged tile edge
  attend::Tensor<T, 4> q(B, Hq, Nq, D), k(B, Hkv, Nk, D), v(B, Hkv, Nk, D);
  for (attend::Index i = 0; i < q.size(); ++i) q.data()[i] = T(0.01) * T(i % 97) - T(0.5);
  for (attend::Index i = 0; i < k.size(); ++i) k.data()[i] = T(0.02) * T(i % 53) - T(0.5);
  for (attend::Index i = 0; i < v.size(); ++i) v.data()[i] = T(0.03) * T(i % 31) - T(0.4);
  attend::Tensor<bool, 2> keep(Nq, Nk);
  for (attend::Index i = 0; i < Nq; ++i)
    for (attend::Index j = 0; j < Nk; ++j) keep(i, j) = (i + j) % 5 != 0;

  attend::Attend<T> attn(/*dropout=*/0.25, /*flash=*/true, /*scale=*/{}, attend_test::only(path), /*seed=*/7);
  attn.train();

  Eigen::ThreadPool pool(2);
  Eigen::ThreadPoolDevice device(&pool, 2);
  attend::Tensor<attend::acc_t<T>, 3> lse(B, Hq, Nq);
  attend::CallOptions<T> options;
  options.mask = attend::Mask<T>::keep(attend::ConstView<bool, 2>(keep));
  options.causal = attend::Causal::bottom_right;
  options.lse = lse;
  options.device = &device;
  options.dropout_offset = 3;
  const attend::Tensor<T, 4> out = attn(q, k, v, options);

  std::vector<T> result(out.data(), out.data() + out.size());
  result.insert(result.end(), lse.data(), lse.data() + lse.size());
  return result;
}

std::vector<float> run_b_float(attend::Path path);    // defined in odr_b.cpp
std::vector<double> run_b_double(attend::Path path);  // defined in odr_b.cpp

}  // namespace attend_odr

#endif  // ATTEND_TESTS_ODR_HPP
