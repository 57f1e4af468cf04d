#ifndef ATTEND_CALL_OPTIONS_HPP
#define ATTEND_CALL_OPTIONS_HPP

/// @file
/// @brief attend::CallOptions: what may change from one attention call to the next: mask, causality,
/// the optional log-sum-exp output, the thread pool, the dropout offset, scratch memory and a place
/// to report the path taken.

#include <cstdint>  // std::uint32_t

#include "attend/config.hpp"
#include "attend/detail/abi.hpp"
#include "attend/mask.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"

ATTEND_BEGIN_NAMESPACE

class Workspace;

/// @brief Per-call arguments of attend::Attend<T>; every member is optional.
///
/// In C++17 assign the members you need: `attend::CallOptions<float> o; o.causal = Causal::top_left;`
/// (C++20 designated initialisers work too: `{.causal = attend::Causal::top_left}`).
///
/// An aggregate of plain values and non-owning pointers/views: everything it points to must stay
/// valid for the duration of the call. Every call validates it, and throws attend::Error for an
/// invalid mask, causal value or `lse` view before anything is written. The same options may be
/// passed to concurrent calls only if they share no output: `lse`, `workspace` and `dispatch` are
/// written by the call.
///
/// @tparam T the element type of the attend::Attend<T> it is passed to
template <typename T>
struct CallOptions {
  /// @brief A bool (keep) or additive mask broadcastable to (B, Hq, Nq, Nk). Combines with `causal`.
  /// Default: no mask.
  Mask<T> mask{};
  /// @brief Causal masking and its alignment when Nq != Nk. Default: Causal::none.
  Causal causal = Causal::none;
  /// @brief If set, receives the natural-log log-sum-exp of each query row's scaled, masked scores,
  /// shape (B, Hq, Nq), -inf for a row that sees no key. Dropout does not change it.
  ///
  /// In the accumulation type acc_t<T> (`double` for `double`, `float` otherwise). Any positive
  /// strides. attend::Error if its shape is not (B, Hq, Nq), a stride is not positive, its elements
  /// overlap each other, or it overlaps q, k, v, the mask or the output. Default: an empty view,
  /// meaning no lse output.
  TensorView<acc_t<T>, 3> lse{};
  /// @brief Threads: work is split over (b, h, query tile) on this pool. Null (the default) means the
  /// calling thread only.
  ///
  /// The result is bitwise the same for any number of threads. The call blocks until its work on the
  /// pool is done.
  const Eigen::ThreadPoolDevice* device = nullptr;
  /// @brief Dropout: the call's offset in the Philox counter, beside the attend::Attend's seed.
  ///
  /// Calls with the same (seed, offset) drop the same elements; a training loop passes its step
  /// number here. Ignored unless the module is in training mode with dropout > 0. Default: 0.
  std::uint32_t dropout_offset = 0;
  /// @brief Scratch memory sized by attend::Attend::workspace_bytes(). With one, a call allocates
  /// nothing; without one (null, the default), each call allocates its scratch once up front (never
  /// inside the tile loops).
  ///
  /// A workspace that is too small is not an error: the call grows it (one allocation) and it stays
  /// grown. One workspace serves one call at a time. The math path does not use it.
  Workspace* workspace = nullptr;
  /// @brief If set, receives the path the call took and why the paths before it were not taken.
  /// Default: null, and the reasons are not built (building them allocates).
  Dispatch* dispatch = nullptr;
};

ATTEND_END_NAMESPACE

#endif  // ATTEND_CALL_OPTIONS_HPP
