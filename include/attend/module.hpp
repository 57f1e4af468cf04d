#ifndef ATTEND_MODULE_HPP
#define ATTEND_MODULE_HPP

// attend::Attend<T>: the C++ counterpart of BS-RoFormer's `Attend(dropout, flash, scale)` module.

#include <cmath>     // std::isnan
#include <cstddef>   // std::size_t
#include <cstdint>   // std::uint64_t
#include <limits>    // std::numeric_limits
#include <optional>  // std::optional
#include <string>    // std::string

#include "attend/call_options.hpp"
#include "attend/config.hpp"
#include "attend/detail/decode_path.hpp"
#include "attend/detail/flash_path.hpp"
#include "attend/detail/math_path.hpp"
#include "attend/detail/mem_efficient_path.hpp"
#include "attend/detail/problem.hpp"
#include "attend/error.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"
#include "attend/workspace.hpp"

namespace attend {

/// Scaled dot-product attention, `softmax(scale · q kᵀ + mask) v`, with dropout on the probabilities
/// in training, exactly as PyTorch's `scaled_dot_product_attention` defines it.
///
/// Shapes (row-major, last dimension contiguous):
///   q (B, Hq, Nq, D), k (B, Hkv, Nk, D), v (B, Hkv, Nk, Dv)  ->  out (B, Hq, Nq, Dv)
/// with Hq a multiple of Hkv (query head h reads key/value head h / (Hq / Hkv)).
///
/// @tparam T double, float, Eigen::bfloat16 or Eigen::half. 16-bit types are stored in 16 bits and
///           computed in float; the output is rounded to T once, at the end.
///
/// An `Attend` holds only its settings: calls are const, so one object may serve many threads at
/// once, and the same inputs always give the same bits.
template <typename T>
class Attend {
  static_assert(is_supported_scalar_v<T>, "attend::Attend<T>: T must be double, float, Eigen::bfloat16 or Eigen::half");

 public:
  using Scalar = T;
  using Accum = acc_t<T>;

  /// Largest D or Dv the flash and mem_efficient paths take; their per-worker scratch grows as
  /// 64 · (D + Dv) values. Larger heads (the cross-covariance attention of Mel-RoFormer has
  /// D = T·F, tens of thousands) are better served by the math path's blocked GEMMs.
  static constexpr Index kMaxTiledHeadDim = 1024;

  /// @param dropout probability of zeroing an attention weight in training, in [0, 1]
  /// @param flash   false: always the math path; true: the first of flash, mem_efficient, math
  ///                that `config` enables and that can serve the call
  /// @param scale   multiplies q kᵀ; default 1/sqrt(D)
  /// @param config  which paths `flash = true` may use (all by default, as PyTorch's CPU config)
  /// @param seed    key of the dropout generator (see CallOptions::dropout_offset)
  /// @throws attend::Error if dropout is NaN or outside [0, 1], or scale is NaN, infinite or 0.
  explicit Attend(double dropout = 0.0, bool flash = false, std::optional<double> scale = std::nullopt,
                  FlashAttentionConfig config = {}, std::uint64_t seed = 0)
      : dropout_(dropout), flash_(flash), scale_(scale), config_(config), seed_(seed) {
    if (std::isnan(dropout) || dropout < 0.0 || dropout > 1.0) {
      throw Error("dropout must be a probability in [0, 1], got " + std::to_string(dropout));
    }
    if (scale && (!std::isfinite(*scale) || *scale == 0.0)) {
      throw Error("scale must be finite and non-zero, got " + std::to_string(*scale));
    }
  }

  /// Training mode: dropout acts. Returns *this, like nn.Module.train().
  Attend& train(bool mode = true) {
    training_ = mode;
    return *this;
  }
  /// Evaluation mode (the default): dropout is the identity and results are deterministic.
  Attend& eval() { return train(false); }
  bool training() const { return training_; }

  double dropout() const { return dropout_; }
  bool flash() const { return flash_; }
  std::optional<double> scale() const { return scale_; }
  const FlashAttentionConfig& config() const { return config_; }
  std::uint64_t seed() const { return seed_; }
  void set_seed(std::uint64_t seed) { seed_ = seed; }
  void set_config(const FlashAttentionConfig& config) { config_ = config; }

  /// Attention into a new (B, Hq, Nq, Dv) tensor.
  Tensor<T, 4> operator()(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                          const CallOptions<T>& options = {}) const {
    choose(problem(q, k, v, nullptr, options), nullptr);  // validate before sizing a tensor by the inputs
    Tensor<T, 4> out(q.dimension(0), q.dimension(1), q.dimension(2), v.dimension(3));
    forward(q, k, v, TensorView<T, 4>(out), options);
    return out;
  }

  /// Attention written into `out` (B, Hq, Nq, Dv): a tensor, a map, or a strided view such as the
  /// (B, N, H·Dv) input of the output projection. On any error nothing is written.
  void operator()(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                  const TensorView<T, 4>& out, const CallOptions<T>& options = {}) const {
    forward(q, k, v, out, options);
  }

  /// Same as operator(): writes attention into `out`.
  void forward(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
               const TensorView<T, 4>& out, const CallOptions<T>& options = {}) const {
    const detail::Problem<T> pb = problem(q, k, v, &out, options);
    const Path path = choose(pb, options.dispatch);  // reasons are built only when asked for
    if (pb.B * pb.Hq * pb.Nq == 0) return;
    if (pb.Nk == 0) {  // no key at all: every row sees nothing, so 0 and lse -inf, on every path
      for (Index b = 0; b < pb.B; ++b)
        for (Index h = 0; h < pb.Hq; ++h)
          for (Index i = 0; i < pb.Nq; ++i) {
            for (Index d2 = 0; d2 < pb.Dv; ++d2) pb.out(b, h, i, d2) = T(0);
            if (pb.lse.data() != nullptr) pb.lse(b, h, i) = -std::numeric_limits<Accum>::infinity();
          }
      return;
    }
    if (path == Path::math) {
      detail::run_math(pb, options.device);
      return;
    }
    const int workers = detail::worker_count(options.device);
    const std::size_t bytes = scratch_bytes(pb, path, workers);
    Workspace local;
    Workspace& ws = options.workspace != nullptr ? *options.workspace : local;
    ws.reserve(bytes);
    if (path == Path::flash && detail::use_decode_kernel(pb)) {
      detail::run_decode(pb, options.device, ws.data());  // few queries per kv head: split-KV
    } else if (path == Path::flash) {
      detail::run_flash(pb, options.device, ws.data());
    } else {
      detail::run_mem_efficient(pb, options.device, ws.data());
    }
  }

  /// The path a call with these arguments takes and why the paths before it were passed over,
  /// without computing anything. Validates like a call: throws attend::Error for bad arguments and
  /// for a config that leaves no path able to serve the call.
  Dispatch dispatch(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                    const CallOptions<T>& options = {}) const {
    return select(problem(q, k, v, nullptr, options));
  }

  /// Scratch bytes a call with these arguments uses (0 for the math path, which allocates its own
  /// Eigen temporaries). Pass a `Workspace` of this size in `CallOptions::workspace` and the call
  /// allocates nothing.
  std::size_t workspace_bytes(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                              const CallOptions<T>& options = {}) const {
    const detail::Problem<T> pb = problem(q, k, v, nullptr, options);
    return scratch_bytes(pb, choose(pb, nullptr), detail::worker_count(options.device));
  }

 private:
  /// Validates a call (an output of nullptr: a query that writes nothing) and builds its Problem.
  detail::Problem<T> problem(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                             const TensorView<T, 4>* out, const CallOptions<T>& options) const {
    return detail::make_problem<T>(q, k, v, out, options, scale_.value_or(0.0), !scale_.has_value(), dropout_,
                                   training_, seed_);
  }

  Dispatch select(const detail::Problem<T>& pb) const {
    Dispatch d;
    choose(pb, &d);
    return d;
  }

  /// The path a call takes; throws if no enabled path can serve it. The reasons the paths before it
  /// were passed over are written to `reasons` only if it is set: building them allocates, and a call
  /// with a Workspace must allocate nothing.
  Path choose(const detail::Problem<T>& pb, Dispatch* reasons) const {
    const bool fits = pb.D <= kMaxTiledHeadDim && pb.Dv <= kMaxTiledHeadDim;
    Path path = Path::math;
    if (!flash_) {
      path = Path::math;
    } else if (config_.enable_flash && fits) {
      path = Path::flash;
    } else if (config_.enable_mem_efficient && fits) {
      path = Path::mem_efficient;
    } else if (config_.enable_math) {
      path = Path::math;
    } else {
      throw Error("no enabled path can serve this call: flash: " + why_not(pb, config_.enable_flash) +
                  "; mem_efficient: " + why_not(pb, config_.enable_mem_efficient) +
                  "; math: disabled in FlashAttentionConfig");
    }
    if (reasons != nullptr) {
      reasons->path = path;
      reasons->flash_reason = path == Path::flash ? std::string() : why_not(pb, config_.enable_flash);
      reasons->mem_efficient_reason =
          path != Path::math ? std::string() : why_not(pb, config_.enable_mem_efficient);
    }
    return path;
  }

  /// Why a tiled path (enabled or not in the config) did not serve the call.
  std::string why_not(const detail::Problem<T>& pb, bool enabled) const {
    if (!flash_) return "Attend was constructed with flash = false";
    if (!enabled) return "disabled in FlashAttentionConfig";
    return "head dimensions D = " + std::to_string(pb.D) + ", Dv = " + std::to_string(pb.Dv) +
           " exceed the tiled kernels' limit of " + std::to_string(kMaxTiledHeadDim);
  }

  static std::size_t scratch_bytes(const detail::Problem<T>& pb, Path path, int workers) {
    switch (path) {
      case Path::flash:
        return detail::use_decode_kernel(pb) ? detail::decode_workspace_bytes(pb, workers)
                                             : detail::flash_workspace_bytes<T>(pb.D, pb.Dv, workers);
      case Path::mem_efficient: return detail::mem_efficient_workspace_bytes<T>(pb.Nk, pb.D, pb.Dv, workers);
      case Path::math: return 0;
    }
    return 0;
  }

  double dropout_ = 0.0;
  bool flash_ = false;
  std::optional<double> scale_;
  FlashAttentionConfig config_;
  std::uint64_t seed_ = 0;
  bool training_ = false;
};

}  // namespace attend

#endif  // ATTEND_MODULE_HPP
