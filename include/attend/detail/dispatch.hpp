#ifndef ATTEND_DETAIL_DISPATCH_HPP
#define ATTEND_DETAIL_DISPATCH_HPP

// The one place that decides how a validated call runs: which path (FlashAttentionConfig, with the
// reasons the paths before it were passed over), which kernel inside the path, how much workspace it
// takes, and the run itself, including the calls with nothing to compute (B · Hq · Nq = 0) and those
// with no key (Nk = 0). attend::Attend validates and then asks here; nothing else chooses a kernel.
// The kernels are the ones compiled into this translation unit (local_*), or, with the attend::dispatch
// component, the ones of the variant chosen at run time (runtime.hpp), through the same functions.

#include <cstddef>  // std::size_t
#include <limits>   // std::numeric_limits
#include <string>   // std::string

#include "attend/config.hpp"
#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/detail/backward/common.hpp"
#include "attend/detail/backward/flash.hpp"
#include "attend/detail/backward/math.hpp"
#include "attend/detail/backward/mem_efficient.hpp"
#include "attend/detail/forward/decode.hpp"
#include "attend/detail/forward/flash.hpp"
#include "attend/detail/forward/math.hpp"
#include "attend/detail/forward/mem_efficient.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/kernel/products.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/runtime.hpp"
#include "attend/error.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Whether this translation unit runs kernels chosen at run time (linked with attend::dispatch:
/// ATTEND_DISPATCH), rather than the ones compiled into it. A variant of the component compiles the
/// kernels themselves (ATTEND_DISPATCH_VARIANT).
#if defined(ATTEND_DISPATCH) && !defined(ATTEND_DISPATCH_VARIANT)
constexpr bool kRuntimeDispatch = true;
#else
constexpr bool kRuntimeDispatch = false;
#endif

/// The instruction set of the kernels this translation unit's calls run (Dispatch::isa).
inline const char* kernels_isa() {
#if defined(ATTEND_DISPATCH) && !defined(ATTEND_DISPATCH_VARIANT)
  return runtime::table().isa;
#else
  return ATTEND_ISA_NAME;
#endif
}

/// Why a tiled path (enabled or not in the config) did not serve the call.
inline std::string why_not(const Settings& settings, Index D, Index Dv, bool enabled) {
  if (!settings.flash) return "Attend was constructed with flash = false";
  if (!enabled) return "disabled in FlashAttentionConfig";
  return "head dimensions D = " + std::to_string(D) + ", Dv = " + std::to_string(Dv) +
         " exceed the tiled kernels' limit of " + std::to_string(TileTraits::kMaxHeadDim);
}

/// The path a call takes: the first of flash, mem_efficient, math that the settings enable and that
/// can serve it; throws if none can. The reasons the paths before it were passed over are written to
/// `report` only if it is set: building them allocates, and a call with a Workspace allocates nothing.
inline Path choose_path(const Settings& settings, Index D, Index Dv, Dispatch* report) {
  const FlashAttentionConfig& config = settings.config;
  const bool fits = D <= TileTraits::kMaxHeadDim && Dv <= TileTraits::kMaxHeadDim;
  Path path = Path::math;
  if (!settings.flash) {
    path = Path::math;
  } else if (config.enable_flash && fits) {
    path = Path::flash;
  } else if (config.enable_mem_efficient && fits) {
    path = Path::mem_efficient;
  } else if (!config.enable_math) {
    throw Error("no enabled path can serve this call: flash: " + why_not(settings, D, Dv, config.enable_flash) +
                "; mem_efficient: " + why_not(settings, D, Dv, config.enable_mem_efficient) +
                "; math: disabled in FlashAttentionConfig");
  }
  if (report != nullptr) {
    report->path = path;
    report->flash_reason = path == Path::flash ? std::string() : why_not(settings, D, Dv, config.enable_flash);
    report->mem_efficient_reason =
        path != Path::math ? std::string() : why_not(settings, D, Dv, config.enable_mem_efficient);
    report->isa = kernels_isa();
  }
  return path;
}

/// The kernel a path runs for a forward call, with the kernels compiled here.
template <typename T>
Kernel local_forward_kernel(const Problem<T>& pb, Path path) {
  switch (path) {
    case Path::flash:
      if (use_decode_kernel(pb)) return Kernel::split_kv_decode;
      // AMX where the target has it and this process may run it; else as without AMX.
      if (kBf16Amx<T> && AmxTraits::kFits && pb.D % 2 == 0 && bf16_amx_pays()) return Kernel::query_tiles_bf16_amx;
      return kBf16Dot<T> && pb.D % 2 == 0 && bf16_pairs_pay() ? Kernel::query_tiles_bf16_dot : Kernel::query_tiles;
    case Path::mem_efficient: return Kernel::query_chunks;
    case Path::math: return Kernel::contraction;
  }
  return Kernel::contraction;
}

/// Calls f(Impl{}) with the forward kernel's implementation: a type with workspace_bytes(pb, workers)
/// and run(pb, pool, workspace). Kernel::contraction has none (math allocates its own temporaries).
template <typename T, typename F>
void with_forward_kernel(Kernel kernel, F&& f) {
  switch (kernel) {
    case Kernel::query_tiles: f(FlashForward<T, FmaTiles<T>>{}); return;
    case Kernel::query_tiles_bf16_dot:
      if constexpr (kBf16Dot<T>) f(FlashForward<T, PairTiles<T>>{});
      return;
    case Kernel::query_tiles_bf16_amx:
#if ATTEND_HAVE_AMX_BF16
      if constexpr (kBf16Amx<T> && AmxTraits::kFits) f(FlashForward<T, AmxTiles<T>>{});
#endif
      return;
    case Kernel::split_kv_decode: f(DecodeForward<T>{}); return;
    case Kernel::query_chunks: f(MemEfficientForward<T>{}); return;
    default: return;
  }
}

/// Scratch bytes a forward kernel compiled here needs (a call with something to compute).
template <typename T>
std::size_t local_forward_workspace_bytes(Kernel kernel, const Problem<T>& pb, int workers) {
  std::size_t bytes = 0;
  with_forward_kernel<T>(kernel, [&](auto impl) { bytes = decltype(impl)::workspace_bytes(pb, workers); });
  return bytes;
}

/// Runs a forward call with something to compute on a kernel compiled here.
template <typename T>
void local_run_forward(Kernel kernel, const Problem<T>& pb, const Pool& pool, void* workspace) {
  if (kernel == Kernel::contraction) {
    run_math(pb, pool);
    return;
  }
  with_forward_kernel<T>(kernel, [&](auto impl) { decltype(impl)::run(pb, pool, workspace); });
}

/// Whether a forward call has nothing for a kernel to compute: no output, or no key (0 and lse -inf).
template <typename T>
bool forward_is_trivial(const Problem<T>& pb) {
  return pb.B * pb.Hq * pb.Nq == 0 || pb.Nk == 0;
}

/// The kernel a path runs for a forward call.
template <typename T>
Kernel forward_kernel(const Problem<T>& pb, Path path) {
  if constexpr (kRuntimeDispatch) {
    return static_cast<Kernel>(runtime_kernels<T>().forward_kernel(to_call(pb), static_cast<int>(path)));
  } else {
    return local_forward_kernel(pb, path);
  }
}

/// Scratch bytes a forward kernel needs for `workers` workers (0 for math and for calls with nothing
/// to compute).
template <typename T>
std::size_t forward_workspace_bytes(Kernel kernel, const Problem<T>& pb, int workers) {
  if (forward_is_trivial(pb)) return 0;
  if constexpr (kRuntimeDispatch) {
    return runtime_kernels<T>().forward_workspace_bytes(static_cast<int>(kernel), to_call(pb), workers);
  } else {
    return local_forward_workspace_bytes(kernel, pb, workers);
  }
}

/// Runs a validated forward call with its kernel; `workspace` holds forward_workspace_bytes.
template <typename T>
void run_forward(Kernel kernel, const Problem<T>& pb, const Pool& pool, void* workspace) {
  if (pb.B * pb.Hq * pb.Nq == 0) return;
  if (pb.Nk == 0) {  // no key at all: every row sees nothing, so 0 and lse -inf, on every path
    for (Index b = 0; b < pb.B; ++b)
      for (Index h = 0; h < pb.Hq; ++h)
        for (Index i = 0; i < pb.Nq; ++i) {
          for (Index d = 0; d < pb.Dv; ++d) pb.out(b, h, i, d) = T(0);
          if (pb.lse.data() != nullptr) pb.lse(b, h, i) = -std::numeric_limits<acc_t<T>>::infinity();
        }
    return;
  }
  if constexpr (kRuntimeDispatch) {
    runtime_kernels<T>().run_forward(static_cast<int>(kernel), to_call(pb), to_runtime(pool), workspace);
  } else {
    local_run_forward(kernel, pb, pool, workspace);
  }
}

// ---- The backward table, beside the forward one ----

/// The kernel a path runs for a backward call.
inline Kernel backward_kernel(Path path) {
  switch (path) {
    case Path::flash: return Kernel::key_splits;
    case Path::mem_efficient: return Kernel::query_chunks;
    case Path::math: return Kernel::contraction;
  }
  return Kernel::contraction;
}

/// Whether a backward call has nothing to compute: every gradient is 0 (or empty).
template <typename T>
bool backward_is_trivial(const GradProblem<T>& pb) {
  return pb.B * pb.Hq * pb.Nq == 0 || pb.Nk == 0;
}

/// Scratch bytes a backward kernel compiled here needs (a call with something to compute).
template <typename T>
std::size_t local_backward_workspace_bytes(Kernel kernel, const GradProblem<T>& pb, int workers) {
  switch (kernel) {
    case Kernel::key_splits: return FlashBackward<T>::workspace_bytes(pb, workers);
    case Kernel::query_chunks: return MemEfficientBackward<T>::workspace_bytes(pb, workers);
    default: return 0;
  }
}

/// Runs a backward call with something to compute on a kernel compiled here.
template <typename T>
void local_run_backward(Kernel kernel, const GradProblem<T>& pb, const Pool& pool, void* workspace) {
  switch (kernel) {
    case Kernel::key_splits: FlashBackward<T>::run(pb, pool, workspace); return;
    case Kernel::query_chunks: MemEfficientBackward<T>::run(pb, pool, workspace); return;
    default: MathBackward<T>::run(pb, pool); return;
  }
}

/// Scratch bytes a backward kernel needs for `workers` workers (0 for math, which allocates its own
/// temporaries, and for calls with nothing to compute).
template <typename T>
std::size_t backward_workspace_bytes(Kernel kernel, const GradProblem<T>& pb, int workers) {
  if (backward_is_trivial(pb)) return 0;
  if constexpr (kRuntimeDispatch) {
    return runtime_kernels<T>().backward_workspace_bytes(static_cast<int>(kernel), to_call(pb), workers);
  } else {
    return local_backward_workspace_bytes(kernel, pb, workers);
  }
}

/// Runs a validated backward call with its kernel; `workspace` holds backward_workspace_bytes.
template <typename T>
void run_backward(Kernel kernel, const GradProblem<T>& pb, const Pool& pool, void* workspace) {
  if (backward_is_trivial(pb)) {  // no query or no key: every gradient is 0
    const auto zero = [](const TensorView<T, 4>& x) {
      for (Index a = 0; a < x.dimension(0); ++a)
        for (Index b = 0; b < x.dimension(1); ++b)
          for (Index c = 0; c < x.dimension(2); ++c)
            for (Index d = 0; d < x.dimension(3); ++d) x(a, b, c, d) = T(0);
    };
    zero(pb.dq);
    zero(pb.dk);
    zero(pb.dv);
    zero_dmask(pb);
    return;
  }
  if constexpr (kRuntimeDispatch) {
    runtime_kernels<T>().run_backward(static_cast<int>(kernel), to_call(pb), to_runtime(pool), workspace);
  } else {
    local_run_backward(kernel, pb, pool, workspace);
  }
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_DISPATCH_HPP
