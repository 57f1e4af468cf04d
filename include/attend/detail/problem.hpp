#ifndef ATTEND_DETAIL_PROBLEM_HPP
#define ATTEND_DETAIL_PROBLEM_HPP

// One validated attention call, as every path and kernel sees it: the views, the sizes under their
// names, the mask reduced to pointers and strides with broadcast dimensions at stride 0, and the
// dropout. Plain data and index helpers; validate.hpp builds it.

#include <array>     // std::array
#include <cstdint>   // std::uint64_t
#include <optional>  // std::optional

#include "attend/config.hpp"
#include "attend/detail/abi.hpp"
#include "attend/detail/kernel/dropout.hpp"
#include "attend/mask.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// A module's settings, as attend::Attend holds them (its constructor's arguments and the mode).
struct Settings {
  double dropout = 0.0;
  bool flash = false;
  std::optional<double> scale;  ///< nullopt: 1/sqrt(D) per call
  FlashAttentionConfig config;
  std::uint64_t seed = 0;
  bool training = false;
};

template <typename T>
struct Problem {
  using Acc = acc_t<T>;

  ConstView<T, 4> q;       // (B, Hq, Nq, D)
  ConstView<T, 4> k;       // (B, Hkv, Nk, D)
  ConstView<T, 4> v;       // (B, Hkv, Nk, Dv)
  TensorView<T, 4> out;    // (B, Hq, Nq, Dv)
  TensorView<Acc, 3> lse;  // (B, Hq, Nq), or empty

  Index B = 0, Hq = 0, Hkv = 0, Nq = 0, Nk = 0, D = 0, Dv = 0;
  Index group = 1;  // Hq / Hkv: query head h reads kv head h / group

  Acc scale = 1;
  Causal causal = Causal::none;
  Index causal_offset = 0;  // query i sees key j iff j <= i + causal_offset

  typename Mask<T>::Kind mask_kind = Mask<T>::Kind::none;
  const bool* keep = nullptr;  // mask data; a broadcast dimension has stride 0
  const T* bias = nullptr;
  std::array<Index, 4> mask_strides{};

  Dropout dropout;

  bool has_mask() const { return mask_kind != Mask<T>::Kind::none; }
  Index kv_head(Index h) const { return h / group; }

  /// Whether key j is visible to query i under causality alone.
  bool causal_visible(Index i, Index j) const { return causal == Causal::none || j <= i + causal_offset; }

  /// The mask's offset for (b, h, i, j).
  Index mask_offset(Index b, Index h, Index i, Index j) const {
    return b * mask_strides[0] + h * mask_strides[1] + i * mask_strides[2] + j * mask_strides[3];
  }
};

/// One validated backward call: the forward's problem (q, k, v, mask, causality, scale, dropout; its
/// `out` and `lse` views are unused) and the backward's own inputs and outputs.
template <typename T>
struct GradProblem : Problem<T> {
  using Acc = acc_t<T>;

  ConstView<T, 4> o;           // (B, Hq, Nq, Dv)  the forward's output
  ConstView<Acc, 3> lse_in;    // (B, Hq, Nq)      the forward's log-sum-exp
  ConstView<T, 4> dout;        // (B, Hq, Nq, Dv)
  TensorView<T, 4> dq;         // (B, Hq, Nq, D)
  TensorView<T, 4> dk;         // (B, Hkv, Nk, D)
  TensorView<T, 4> dv;         // (B, Hkv, Nk, Dv)
  T* dmask = nullptr;          // the mask's padded shape (mask_dims), or null: not requested
  std::array<Index, 4> dmask_strides{};  // a broadcast (size-1) dimension has stride 0
  std::array<Index, 4> mask_dims{};      // (B|1, Hq|1, Nq|1, Nk|1)

  /// The dmask offset for (b, h, i, j): broadcast dimensions read index 0.
  Index dmask_offset(Index b, Index h, Index i, Index j) const {
    return b * dmask_strides[0] + h * dmask_strides[1] + i * dmask_strides[2] + j * dmask_strides[3];
  }
  /// Whether the mask (and so dmask) broadcasts over dimension r of (B, Hq, Nq, Nk) that has more
  /// than one index.
  bool dmask_reduces(int r) const {
    const Index full[4] = {this->B, this->Hq, this->Nq, this->Nk};
    return dmask != nullptr && mask_dims[static_cast<std::size_t>(r)] == 1 && full[r] > 1;
  }
};

/// A work item of the query-tiled kernels: query tile `tile` of (b, h), numbered b-major, then h.
struct QueryTile {
  Index b, h, i0;
};

/// Item `item` of B · Hq · tiles, each tile `rows` queries.
inline QueryTile query_tile(Index item, Index Hq, Index tiles, Index rows) {
  const Index bh = item / tiles;
  return {bh / Hq, bh % Hq, (item % tiles) * rows};
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_PROBLEM_HPP
