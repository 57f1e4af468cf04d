#ifndef ATTEND_CALL_OPTIONS_HPP
#define ATTEND_CALL_OPTIONS_HPP

// What may change from one attention call to the next: mask, causality, the optional log-sum-exp
// output, the thread pool, the dropout offset and a place to report the path taken.

#include <cstdint>  // std::uint32_t

#include "attend/config.hpp"
#include "attend/mask.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"

namespace attend {

class Workspace;

/// Per-call arguments of `Attend<T>`; every member is optional.
///
/// In C++17 assign the members you need: `attend::CallOptions<float> o; o.causal = Causal::top_left;`
/// (C++20 designated initialisers work too: `{.causal = attend::Causal::top_left}`).
template <typename T>
struct CallOptions {
  /// A bool (keep) or additive mask broadcastable to (B, Hq, Nq, Nk). Combines with `causal`.
  Mask<T> mask{};
  /// Causal masking and its alignment when Nq != Nk.
  Causal causal = Causal::none;
  /// If set, receives the natural-log log-sum-exp of each query row's scaled, masked scores,
  /// shape (B, Hq, Nq), -inf for a row that sees no key. Dropout does not change it.
  TensorView<acc_t<T>, 3> lse{};
  /// Threads: work is split over (b, h, query tile) on this pool. Null means the calling thread only.
  /// The result is bitwise the same for any number of threads.
  const Eigen::ThreadPoolDevice* device = nullptr;
  /// Dropout: the call's offset in the Philox counter, beside the `Attend`'s seed. Calls with the same
  /// (seed, offset) drop the same elements; a training loop passes its step number here.
  std::uint32_t dropout_offset = 0;
  /// Scratch memory sized by `Attend<T>::workspace_bytes`. With one, a call allocates nothing;
  /// without one, each call allocates its scratch once up front (never inside the tile loops).
  Workspace* workspace = nullptr;
  /// If set, receives the path the call took and why the paths before it were not taken.
  Dispatch* dispatch = nullptr;
};

}  // namespace attend

#endif  // ATTEND_CALL_OPTIONS_HPP
