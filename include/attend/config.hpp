#ifndef ATTEND_CONFIG_HPP
#define ATTEND_CONFIG_HPP

/// @file
/// @brief The knobs that choose how attention is computed: which paths may run
/// (attend::FlashAttentionConfig), how causality aligns (attend::Causal), and the report of the path
/// a call took (attend::Dispatch).

#include <string>  // std::string

#include "attend/detail/abi.hpp"

ATTEND_BEGIN_NAMESPACE

/// @brief Which kernels attend::Attend may use when it was built with `flash = true`, tried in the
/// order flash, mem_efficient, math.
///
/// Mirrors PyTorch's `FlashAttentionConfig` (BS-RoFormer's `attend.py`), whose CPU setting is all
/// three on, which is the default here. Turning exactly one on asks for that path: a call it cannot
/// serve is then an attend::Error, never a silent fallback. The tiled paths (flash and
/// mem_efficient) serve a call when D and Dv are at most attend::Attend::kMaxTiledHeadDim;
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

/// @brief The kernel a path runs for a call, as reported in attend::Dispatch::kernel.
///
/// Which kernel serves a call depends on the path, the element type, the shapes and the instruction
/// set the kernels were compiled for (attend::Dispatch::isa); attend::Attend::dispatch() and
/// attend::Attend::backward_dispatch() tell without computing anything. The backward runs
/// `contraction` (math), `query_chunks` (mem_efficient) or `key_splits` (flash).
enum class Kernel {
  none,                  ///< not filled in: no call has written this report
  contraction,           ///< math: the einsum form with Eigen tensor contractions
  query_chunks,          ///< mem_efficient: 64-query chunks, a full-row softmax each
  query_tiles,           ///< flash: 64-query tiles with an online softmax, fp32 (f64 for double) products
  query_tiles_bf16_dot,  ///< flash: the same with bf16 products (bf16, an even D, AVX512_BF16 where it pays)
  split_kv_decode,       ///< flash: few queries per kv head, keys split across threads (a decode step);
                         ///< the query counts it serves are DecodeTraits' in detail/kernel/kernel_traits.hpp
  key_splits,            ///< flash backward: 64 x 64 tiles over splits of the keys, dq summed in split order
  query_tiles_bf16_amx,  ///< flash: query tiles with bf16 products on AMX tiles (bf16, an even D, compiled
                         ///< for AMX-TILE and AMX-BF16, on a CPU and OS that allow them)
};

/// @brief The name of a kernel, for messages and logs.
/// @param k the kernel
/// @return its enumerator's name (`"query_tiles"`, ...), a string literal; `"unknown"` for a value
///         that is not one of the enumerators
inline const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::none: return "none";
    case Kernel::contraction: return "contraction";
    case Kernel::query_chunks: return "query_chunks";
    case Kernel::query_tiles: return "query_tiles";
    case Kernel::query_tiles_bf16_dot: return "query_tiles_bf16_dot";
    case Kernel::split_kv_decode: return "split_kv_decode";
    case Kernel::key_splits: return "key_splits";
    case Kernel::query_tiles_bf16_amx: return "query_tiles_bf16_amx";
  }
  return "unknown";
}

/// @brief Which path a call takes, which kernel serves it, and why each path before it in the
/// priority order was passed over.
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
  /// @brief The kernel inside the path (Kernel::none until a call fills it in).
  Kernel kernel = Kernel::none;
  /// @brief The instruction set the kernels that served the call were compiled for, a string literal
  /// naming the caller's target flags as Eigen sees them: `"avx512_bf16_amx"` (AVX-512 with AVX512_BF16,
  /// AMX-TILE and AMX-BF16), `"avx512_bf16"` (AVX-512 with AVX512_BF16),
  /// `"avx512"`, `"avx2"` (AVX2 and FMA: x86-64-v3), `"sse2"` (x86-64's baseline), `"neon"`, ... ("" until
  /// a call fills it in). A program built without `-march` flags reports `"sse2"` on x86-64: link
  /// `attend::native` (or build with `-march=native`) for the kernels of the machine that builds it.
  const char* isa = "";
};

ATTEND_END_NAMESPACE

#endif  // ATTEND_CONFIG_HPP
