// The smallest full use of attend: build q, k and v as Eigen tensors, run attention, print a slice
// of the output and the path that computed it.
//
//   attend_example_basic [B H N D]     (default 2 4 128 64)
#include <attend/attend.hpp>

#include <algorithm>  // std::max
#include <cmath>      // std::abs
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atol

int main(int argc, char** argv) {
  // Sizes: batch B, heads H, sequence length N, head dimension D (PyTorch's (B, H, N, D) layout).
  attend::Index B = 2, H = 4, N = 128, D = 64;
  if (argc == 5) {
    B = std::atol(argv[1]);
    H = std::atol(argv[2]);
    N = std::atol(argv[3]);
    D = std::atol(argv[4]);
  }

  // Row-major Eigen tensors (attend::Tensor is Eigen::Tensor<T, 4, Eigen::RowMajor>).
  attend::Tensor<float, 4> q(B, H, N, D), k(B, H, N, D), v(B, H, N, D);
  q.setRandom();
  k.setRandom();
  v.setRandom();

  // The module, as BS-RoFormer builds it: Attend(dropout, flash, scale). flash = true lets it pick
  // the fastest enabled path that can serve the call; scale defaults to 1/sqrt(D).
  const attend::Attend<float> attn(/*dropout=*/0.0, /*flash=*/true);

  attend::Dispatch dispatch;  // receives the path the call took
  attend::CallOptions<float> options;
  options.causal = attend::Causal::top_left;  // PyTorch's is_causal=True
  options.dispatch = &dispatch;

  const attend::Tensor<float, 4> out = attn(q, k, v, options);  // (B, H, N, D)

  std::printf("attend %d.%d.%d: out is (%ld, %ld, %ld, %ld), computed by the %s path\n", ATTEND_VERSION_MAJOR,
              ATTEND_VERSION_MINOR, ATTEND_VERSION_PATCH, static_cast<long>(out.dimension(0)),
              static_cast<long>(out.dimension(1)), static_cast<long>(out.dimension(2)),
              static_cast<long>(out.dimension(3)), attend::path_name(dispatch.path));
  std::printf("out(0, 0, 0..3, 0..3):\n");
  for (attend::Index i = 0; i < 4 && i < N; ++i) {
    for (attend::Index d = 0; d < 4 && d < D; ++d) std::printf(" % .5f", static_cast<double>(out(0, 0, i, d)));
    std::printf("\n");
  }
  // With causality, query 0 sees only key 0, so its output row is v's first row.
  float max_diff = 0;
  for (attend::Index b = 0; b < B; ++b)
    for (attend::Index h = 0; h < H; ++h)
      for (attend::Index d = 0; d < D; ++d) max_diff = std::max(max_diff, std::abs(out(b, h, 0, d) - v(b, h, 0, d)));
  std::printf("max |out(:, :, 0, :) - v(:, :, 0, :)| = %g\n", static_cast<double>(max_diff));
  return max_diff <= 1e-6f ? 0 : 1;
}
