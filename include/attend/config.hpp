#ifndef ATTEND_CONFIG_HPP
#define ATTEND_CONFIG_HPP

/// @file
/// @brief The knobs that choose how attention is computed: which paths may run
/// (attend::FlashAttentionConfig), how causality aligns (attend::Causal), and the report of the path
/// a call took (attend::Dispatch).

#include <string>  // std::string

namespace attend {

/// @brief Which kernels attend::Attend may use when it was built with `flash = true`, tried in the
/// order flash, mem_efficient, math.
///
/// Mirrors PyTorch's `FlashAttentionConfig` (BS-RoFormer's `attend.py`), whose CPU setting is all
/// three on, which is the default here. Turning exactly one on asks for that path: a call it cannot
/// serve is then an attend::Error, never a silent fallback. The tiled paths (flash and
/// mem_efficient) serve a call when D and Dv are at most attend::Attend::kMaxTiledHeadDim (1024);
/// math serves every call. A call for which no enabled path qualifies throws attend::Error ("no
/// enabled path can serve this call"), as does every call when all three are off. With
/// `flash = false` the config is ignored and math always runs, even when `enable_math` is false.
struct FlashAttentionConfig {
  bool enable_flash = true;          ///< fused, tiled kernel with an online softmax: O(tile) scratch
  bool enable_math = true;           ///< the naive reference path: O(Nq * Nk) scratch per (b, h)
  bool enable_mem_efficient = true;  ///< query chunks, one chunk's scores at a time: O(chunk * Nk)
};

/// @brief The three ways to compute attention. All give the same result up to rounding; dropout
/// drops the same elements on each.
enum class Path {
  flash,          ///< fused tiles, online softmax (FlashAttention-2 loop order)
  mem_efficient,  ///< query chunks with a full-row softmax per chunk (Rabe & Staats)
  math,           ///< the einsum formulation with Eigen tensor contractions: the oracle
};

/// @brief The name of a path, for messages and logs.
/// @param p the path
/// @return `"flash"`, `"mem_efficient"` or `"math"` (a string literal); `"unknown"` for a value that
///         is not one of the enumerators
inline const char* path_name(Path p) {
  switch (p) {
    case Path::flash: return "flash";
    case Path::mem_efficient: return "mem_efficient";
    case Path::math: return "math";
  }
  return "unknown";
}

/// @brief Causal masking and, when Nq != Nk, how the causal diagonal aligns.
///
/// Combines with attend::CallOptions::mask. A call with a value that is not one of the enumerators
/// throws attend::Error. With `bottom_right` and Nq > Nk, the first Nq - Nk query rows see no key:
/// they give 0 in the output and -inf in `lse`.
enum class Causal {
  none,          ///< no causal mask
  top_left,      ///< query i sees key j iff j <= i: PyTorch's `is_causal=True`
  bottom_right,  ///< query i sees key j iff j <= i + (Nk - Nq): FlashAttention-2, a KV-cache step
};

/// @brief The name of a causal setting, for messages and logs.
/// @param c the setting
/// @return `"none"`, `"top_left"` or `"bottom_right"` (a string literal); `"unknown"` for a value
///         that is not one of the enumerators
inline const char* causal_name(Causal c) {
  switch (c) {
    case Causal::none: return "none";
    case Causal::top_left: return "top_left";
    case Causal::bottom_right: return "bottom_right";
  }
  return "unknown";
}

/// @brief Which path a call takes, and why each path before it in the priority order was passed
/// over.
///
/// An empty reason means that path ran or was not considered (it comes after the chosen one). Filled
/// in by a call through attend::CallOptions::dispatch, or returned by attend::Attend::dispatch()
/// without computing anything. math has no reason field: it is last in the order, and a call that it
/// cannot serve (math disabled and the tiled paths unable) throws attend::Error instead.
struct Dispatch {
  /// @brief The path the call took (math until a call fills it in).
  Path path = Path::math;
  std::string flash_reason;          ///< why flash did not run ("" if it ran or was not considered)
  std::string mem_efficient_reason;  ///< why mem_efficient did not run
  /// @brief The kernel inside the path, a string literal (never allocated): for flash
  /// `"query_tiles"` (64-query tiles, fp32 products), `"query_tiles_bf16_dot"` (the same with bf16
  /// products, for bf16 on CPUs with AVX512_BF16 and an even D) or `"split_kv_decode"` (few queries
  /// per head: Nq <= 8 + (D + Dv) / 8 and at most 32 where the kernel has its AVX-512 form, float,
  /// bf16 and f16; Nq <= (D + Dv) / 8 and at most 24 otherwise); for mem_efficient `"query_chunks"`; for math
  /// `"contraction"`. Empty until a call fills it in.
  const char* kernel = "";
};

}  // namespace attend

#endif  // ATTEND_CONFIG_HPP
