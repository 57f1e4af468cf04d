#ifndef ATTEND_CONFIG_HPP
#define ATTEND_CONFIG_HPP

// The knobs that choose how attention is computed: which paths may run, and how causality aligns.

#include <string>  // std::string

namespace attend {

/// Which kernels `Attend` may use when it was built with `flash = true`, tried in the order
/// flash, mem_efficient, math. Mirrors PyTorch's `FlashAttentionConfig` (BS-RoFormer's `attend.py`),
/// whose CPU setting is all three on, which is the default here. Turning exactly one on asks for
/// that path: a call it cannot serve is then an `attend::Error`, never a silent fallback.
struct FlashAttentionConfig {
  bool enable_flash = true;          ///< fused, tiled kernel with an online softmax: O(tile) scratch
  bool enable_math = true;           ///< the naive reference path: O(Nq * Nk) scratch per (b, h)
  bool enable_mem_efficient = true;  ///< query chunks, one chunk's scores at a time: O(chunk * Nk)
};

/// The three ways to compute attention.
enum class Path {
  flash,          ///< fused tiles, online softmax (FlashAttention-2 loop order)
  mem_efficient,  ///< query chunks with a full-row softmax per chunk (Rabe & Staats)
  math,           ///< the einsum formulation with Eigen tensor contractions: the oracle
};

/// "flash", "mem_efficient" or "math".
inline const char* path_name(Path p) {
  switch (p) {
    case Path::flash: return "flash";
    case Path::mem_efficient: return "mem_efficient";
    case Path::math: return "math";
  }
  return "unknown";
}

/// Causal masking and, when Nq != Nk, how the causal diagonal aligns.
enum class Causal {
  none,          ///< no causal mask
  top_left,      ///< query i sees key j iff j <= i: PyTorch's `is_causal=True`
  bottom_right,  ///< query i sees key j iff j <= i + (Nk - Nq): FlashAttention-2, a KV-cache step
};

/// "none", "top_left" or "bottom_right".
inline const char* causal_name(Causal c) {
  switch (c) {
    case Causal::none: return "none";
    case Causal::top_left: return "top_left";
    case Causal::bottom_right: return "bottom_right";
  }
  return "unknown";
}

/// Which path a call takes, and why each path before it in the priority order was passed over.
/// An empty reason means that path was not considered (it comes after the chosen one).
struct Dispatch {
  Path path = Path::math;
  std::string flash_reason;          ///< why flash did not run ("" if it ran or was not considered)
  std::string mem_efficient_reason;  ///< why mem_efficient did not run
};

}  // namespace attend

#endif  // ATTEND_CONFIG_HPP
