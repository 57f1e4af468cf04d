#ifndef ATTEND_DETAIL_KERNEL_DROPOUT_HPP
#define ATTEND_DETAIL_KERNEL_DROPOUT_HPP

// Dropout on the attention probabilities, keyed by (seed, offset, b, h, i, j) through Philox so that
// every path, tile size and thread count keeps and drops exactly the same elements.

#include <cmath>    // std::llround
#include <cstdint>  // std::uint32_t, std::uint64_t

#include "attend/detail/abi.hpp"
#include "attend/detail/kernel/philox.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// The dropout of one call. Element (b, h, i, j) is kept iff its 32-bit Philox draw u satisfies
/// u >= threshold, with threshold = round(p * 2^32): P(drop) = p to within 2^-33. p = 1 gives
/// threshold 2^32, which no draw reaches, so everything is dropped (as nn.Dropout(1.0) does).
struct Dropout {
  bool active = false;            ///< training with p > 0
  std::uint64_t threshold = 0;    ///< keep iff draw >= threshold
  double keep_scale = 1.0;        ///< 1 / (1 - p), or 0 for p = 1
  PhiloxKey key{};                ///< the seed, split in two words
  std::uint32_t offset = 0;       ///< the per-call offset, the counter's last word
  Index heads = 1;                ///< Hq, to fold (b, h) into one counter word

  static Dropout make(double p, bool training, std::uint64_t seed, std::uint32_t offset, Index heads) {
    Dropout d;
    d.active = training && p > 0.0;
    if (!d.active) return d;
    d.threshold = static_cast<std::uint64_t>(std::llround(p * 4294967296.0));
    d.keep_scale = p >= 1.0 ? 0.0 : 1.0 / (1.0 - p);
    d.key = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
    d.offset = offset;
    d.heads = heads;
    return d;
  }

  /// Draws for keys j4*4 .. j4*4+3 of query row i of (b, h): one Philox block serves four keys.
  /// The counter is (j / 4, i, b * Hq + h, offset); validation keeps each word below 2^32.
  PhiloxBlock draws(Index b, Index h, Index i, Index j4) const {
    const PhiloxBlock ctr = {static_cast<std::uint32_t>(j4), static_cast<std::uint32_t>(i),
                             static_cast<std::uint32_t>(b * heads + h), offset};
    return philox4x32_10(ctr, key);
  }

  /// Whether element (b, h, i, j) is kept.
  bool keep(Index b, Index h, Index i, Index j) const {
    return draws(b, h, i, j >> 2)[static_cast<std::size_t>(j & 3)] >= threshold;
  }

  /// Multiplies row `i`'s probabilities for keys [j0, j0 + n) by their keep bit (0 or 1), reading and
  /// writing p[t * stride] for t in [0, n). The 1/(1-p) factor is applied once, at normalisation.
  template <typename Acc>
  void apply_row(Index b, Index h, Index i, Index j0, Index n, Acc* p, Index stride) const {
    Index t = 0;
    while (t < n) {
      const Index j = j0 + t;
      const PhiloxBlock u = draws(b, h, i, j >> 2);
      for (Index w = j & 3; w < 4 && t < n; ++w, ++t) {
        // Multiplied, not assigned: as in PyTorch (attn * keep_mask), a NaN probability stays NaN.
        if (u[static_cast<std::size_t>(w)] < threshold) p[t * stride] *= Acc(0);
      }
    }
  }
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_DROPOUT_HPP
