#ifndef ATTEND_MODULE_HPP
#define ATTEND_MODULE_HPP

/// @file
/// @brief attend::Attend<T>: the C++ counterpart of BS-RoFormer's `Attend(dropout, flash, scale)`
/// module.

#include <cmath>     // std::isnan
#include <cstddef>   // std::size_t
#include <cstdint>   // std::uint64_t
#include <limits>    // std::numeric_limits
#include <optional>  // std::optional
#include <string>    // std::string

#include "attend/call_options.hpp"
#include "attend/config.hpp"
#include "attend/detail/abi.hpp"
#include "attend/detail/dispatch.hpp"
#include "attend/detail/kernel/kernel_traits.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/detail/validate.hpp"
#include "attend/error.hpp"
#include "attend/gradients.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"
#include "attend/workspace.hpp"

ATTEND_BEGIN_NAMESPACE

/// @brief Scaled dot-product attention, `softmax(scale · q kᵀ + mask) v`, with dropout on the
/// probabilities in training, exactly as PyTorch's `scaled_dot_product_attention` defines it.
///
/// Shapes (row-major, last dimension contiguous):
///
///     q (B, Hq, Nq, D), k (B, Hkv, Nk, D), v (B, Hkv, Nk, Dv)  ->  out (B, Hq, Nq, Dv)
///
/// with Hq a multiple of Hkv (query head h reads key/value head h / (Hq / Hkv); Hkv = 1 is
/// multi-query attention). Nothing is repeated or copied. Nk = 0 gives zeros in out and -inf in
/// `lse`; B, Hq or Nq = 0 writes nothing; D = 0 is an error.
///
/// Calls: `out = attn(q, k, v, options)` returns a new tensor; `attn(q, k, v, out, options)`, also
/// spelled forward(), writes into an existing tensor, map or strided view. dispatch() and
/// workspace_bytes() validate like a call but compute nothing. Per-call arguments (mask, causal,
/// lse, threads, dropout offset, workspace, dispatch report) are in attend::CallOptions.
///
/// Errors: every refused call throws attend::Error before anything is written. A call refuses q, k,
/// v whose batch sizes, head dimensions D, head counts Hkv or lengths Nk disagree, Hq not a multiple
/// of Hkv, D = 0, negative sizes, non-positive strides, a last dimension that is not contiguous, a
/// null pointer with a non-empty shape, an output of the wrong shape or that overlaps itself or an
/// input, an invalid mask or `lse`, a scale that is 0 or not finite in acc_t<T>, active dropout with
/// Nq, Nk / 4 or B · Hq of 2³² or more (the Philox counter's 32-bit words), and a call that no
/// enabled path can serve. docs/errors.md lists every case with its message.
///
/// @tparam T double, float, Eigen::bfloat16 or Eigen::half. 16-bit types are stored in 16 bits and
///           computed in float; the output is rounded to T once, at the end.
///
/// Thread safety: an `Attend` holds only its settings. Calls are const, so one object may serve
/// many threads at once, and the same inputs always give the same bits. The setters (train(),
/// eval(), set_seed(), set_config()) must not run concurrently with calls on the same object.
template <typename T>
class Attend {
  static_assert(is_supported_scalar_v<T>, "attend::Attend<T>: T must be double, float, Eigen::bfloat16 or Eigen::half");

 public:
  /// @brief The element type of q, k, v, out and an additive mask.
  using Scalar = T;
  /// @brief The accumulation type, acc_t<T>: also the element type of the `lse` output.
  using Accum = acc_t<T>;

  /// @brief Largest D or Dv the flash and mem_efficient paths take (1024).
  ///
  /// Their per-worker scratch grows with D + Dv (a tile's rows). Larger heads (the cross-covariance
  /// attention of Mel-RoFormer has D = T·F, tens of thousands) are better served by the math path's
  /// blocked GEMMs, which a call with `flash = true` falls back to if FlashAttentionConfig allows.
  static constexpr Index kMaxTiledHeadDim = detail::TileTraits::kMaxHeadDim;

  /// @brief A module with the given settings, in evaluation mode (dropout off until train()).
  /// @param dropout probability of zeroing an attention weight in training, in [0, 1]; default 0.
  ///                Kept weights are scaled by 1/(1 - p); p = 1 gives zeros.
  /// @param flash   false (the default): always the math path; true: the first of flash,
  ///                mem_efficient, math that `config` enables and that can serve the call
  /// @param scale   multiplies q kᵀ; default (std::nullopt) 1/sqrt(D), computed per call
  /// @param config  which paths `flash = true` may use (all by default, as PyTorch's CPU config)
  /// @param seed    key of the dropout generator (see CallOptions::dropout_offset); default 0
  /// @throws attend::Error if dropout is NaN or outside [0, 1], or scale is NaN, infinite or 0.
  ///         (A scale that is finite in double but 0 or infinite in acc_t<T>, e.g. 1e300 for float,
  ///         is refused by each call instead.)
  explicit Attend(double dropout = 0.0, bool flash = false, std::optional<double> scale = std::nullopt,
                  FlashAttentionConfig config = {}, std::uint64_t seed = 0)
      : settings_{dropout, flash, scale, config, seed, false} {
    if (std::isnan(dropout) || dropout < 0.0 || dropout > 1.0) {
      throw Error("dropout must be a probability in [0, 1], got " + std::to_string(dropout));
    }
    if (scale && (!std::isfinite(*scale) || *scale == 0.0)) {
      throw Error("scale must be finite and non-zero, got " + std::to_string(*scale));
    }
  }

  /// @brief Training mode: dropout acts. Like `nn.Module.train()`.
  ///
  /// Not thread-safe against concurrent calls on this object.
  /// @param mode true (the default) for training, false for evaluation
  /// @return `*this`
  Attend& train(bool mode = true) {
    settings_.training = mode;
    return *this;
  }
  /// @brief Evaluation mode (the default): dropout is the identity and results are deterministic.
  ///
  /// Same as `train(false)`; not thread-safe against concurrent calls on this object.
  /// @return `*this`
  Attend& eval() { return train(false); }
  /// @brief Whether the module is in training mode.
  /// @return true after train(), false after eval() and on construction
  bool training() const { return settings_.training; }

  /// @brief The dropout probability given to the constructor.
  /// @return p in [0, 1]; it acts only in training mode
  double dropout() const { return settings_.dropout; }
  /// @brief Whether the module may use the tiled paths.
  /// @return the constructor's `flash`: false means the math path always
  bool flash() const { return settings_.flash; }
  /// @brief The scale given to the constructor.
  /// @return the scale, or std::nullopt for the default 1/sqrt(D) of each call
  std::optional<double> scale() const { return settings_.scale; }
  /// @brief Which paths `flash = true` may use.
  /// @return a reference to the module's config, valid as long as the module
  const FlashAttentionConfig& config() const { return settings_.config; }
  /// @brief The key of the dropout generator.
  /// @return the seed given to the constructor or to set_seed()
  std::uint64_t seed() const { return settings_.seed; }
  /// @brief Changes the key of the dropout generator (another way to get a new dropout mask besides
  /// CallOptions::dropout_offset). Not thread-safe against concurrent calls on this object.
  /// @param seed the new key
  void set_seed(std::uint64_t seed) { settings_.seed = seed; }
  /// @brief Changes which paths `flash = true` may use. Checks nothing: a config that leaves no path
  /// able to serve a call makes that call throw attend::Error. Not thread-safe against concurrent
  /// calls on this object.
  /// @param config the new config
  void set_config(const FlashAttentionConfig& config) { settings_.config = config; }

  /// @brief Attention into a new (B, Hq, Nq, Dv) tensor.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param options mask, causal, lse, threads, dropout offset, workspace, dispatch report
  /// @return out (B, Hq, Nq, Dv), row-major
  /// @throws attend::Error for a call it refuses (see the class description), before allocating the
  ///         result or writing anything
  Tensor<T, 4> operator()(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                          const CallOptions<T>& options = {}) const {
    const detail::Problem<T> pb = problem(q, k, v, nullptr, options);  // validate before sizing a tensor by them
    detail::choose_path(settings_, pb.D, pb.Dv, nullptr);
    Tensor<T, 4> out(q.dimension(0), q.dimension(1), q.dimension(2), v.dimension(3));
    forward(q, k, v, TensorView<T, 4>(out), options);
    return out;
  }

  /// @brief Attention written into @p out (B, Hq, Nq, Dv): a tensor, a map, or a strided view such as
  /// the (B, N, H·Dv) input of the output projection. On any error nothing is written.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param out     the result (B, Hq, Nq, Dv); any positive strides with the last dimension
  ///                contiguous, not overlapping itself, q, k, v, the mask or `lse`
  /// @param options mask, causal, lse, threads, dropout offset, workspace, dispatch report
  /// @throws attend::Error for a call it refuses (see the class description), before writing anything
  void operator()(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                  const TensorView<T, 4>& out, const CallOptions<T>& options = {}) const {
    forward(q, k, v, out, options);
  }

  /// @brief Same as the writing operator(): attention written into @p out.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param out     the result (B, Hq, Nq, Dv); any positive strides with the last dimension
  ///                contiguous, not overlapping itself, q, k, v, the mask or `lse`
  /// @param options mask, causal, lse, threads, dropout offset, workspace, dispatch report
  /// @throws attend::Error for a call it refuses (see the class description), before writing anything
  /// @throws std::bad_alloc if the scratch memory (or the grown workspace) cannot be allocated
  void forward(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
               const TensorView<T, 4>& out, const CallOptions<T>& options = {}) const {
    const detail::Problem<T> pb = problem(q, k, v, &out, options);
    const Kernel kernel = choose(pb, options.dispatch);  // reasons are built only when asked for
    const detail::Pool pool = detail::pool_of(options.device);
    const int workers = detail::worker_count(pool);
    Workspace local;
    Workspace& ws = options.workspace != nullptr ? *options.workspace : local;
    ws.reserve(detail::forward_workspace_bytes(kernel, pb, workers));
    detail::run_forward(kernel, pb, pool, ws.data());
  }

  /// @brief The path a call with these arguments takes and why the paths before it were passed over,
  /// without computing anything.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param options the call's options (`options.dispatch` is not written; `lse` is checked but not
  ///                written)
  /// @return the path and the reasons, as a call would report them in CallOptions::dispatch
  /// @throws attend::Error like a call (everything but the output is checked): for bad arguments and
  ///         for a config that leaves no path able to serve the call
  Dispatch dispatch(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                    const CallOptions<T>& options = {}) const {
    Dispatch report;
    choose(problem(q, k, v, nullptr, options), &report);
    return report;
  }

  /// @brief Scratch bytes a call with these arguments uses (0 for the math path, which allocates its
  /// own Eigen temporaries). Pass a Workspace of this size in CallOptions::workspace and the call
  /// allocates nothing.
  ///
  /// The size depends on the shapes, the path and the number of threads of `options.device`: size
  /// the workspace with the options (device included) of the calls it will serve.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param options the call's options (nothing in them is written)
  /// @return the number of bytes
  /// @throws attend::Error like a call (everything but the output is checked)
  std::size_t workspace_bytes(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                              const CallOptions<T>& options = {}) const {
    const detail::Problem<T> pb = problem(q, k, v, nullptr, options);
    return detail::forward_workspace_bytes(choose(pb, nullptr), pb, detail::worker_count(detail::pool_of(options.device)));
  }

  /// @name Training: the backward pass
  /// The gradients of `L = sum(out ∘ dout)` with respect to q, k and v (and, on request, an
  /// additive mask): what PyTorch's autograd gives for the same `scaled_dot_product_attention` call.
  /// A training step is two calls: the forward with CallOptions::lse set, then backward() with the
  /// forward's q, k, v, out and lse, the upstream gradient dout, and the same options (mask, causal,
  /// device, dropout offset; `lse` and `workspace` may differ). With dropout in training, the backward
  /// regenerates the forward's keep-mask from (seed, offset, b, h, i, j): nothing is stored. dk and dv
  /// of a kv head are the sums over its query heads; a query row that saw no key gets zero
  /// gradients. 16-bit types accumulate in fp32 and round once. The result is bitwise the same for
  /// any thread count. docs/semantics.md has the rules for NaN and Inf and the numbers.
  /// @{

  /// @brief The gradients into new (B, Hq, Nq, D), (B, Hkv, Nk, D) and (B, Hkv, Nk, Dv) tensors.
  /// @param q       queries (B, Hq, Nq, D), as given to the forward
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param out     the forward's output (B, Hq, Nq, Dv)
  /// @param lse     the forward's log-sum-exp (B, Hq, Nq) (CallOptions::lse of the forward call)
  /// @param dout    the gradient of the loss with respect to out (B, Hq, Nq, Dv)
  /// @param options the forward's mask, causal, device and dropout offset; workspace and dispatch
  ///                report as for a forward call (`lse` is not read: the backward's lse is @p lse)
  /// @return dq, dk and dv
  /// @throws attend::Error for a call it refuses (docs/errors.md), before allocating anything
  Gradients<T> backward(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                        const ConstView<T, 4>& out, const ConstView<Accum, 3>& lse, const ConstView<T, 4>& dout,
                        const CallOptions<T>& options = {}) const {
    const detail::GradProblem<T> pb = grad_problem(q, k, v, &out, &lse, &dout, nullptr, options);
    detail::choose_path(settings_, pb.D, pb.Dv, nullptr);  // validate before sizing tensors by the inputs
    Gradients<T> g{Tensor<T, 4>(pb.B, pb.Hq, pb.Nq, pb.D), Tensor<T, 4>(pb.B, pb.Hkv, pb.Nk, pb.D),
                   Tensor<T, 4>(pb.B, pb.Hkv, pb.Nk, pb.Dv)};
    backward(q, k, v, out, lse, dout, GradientViews<T>{g.dq, g.dk, g.dv, {}}, options);
    return g;
  }

  /// @brief The gradients written into @p grads: tensors, maps or strided views (for instance three
  /// views into one packed (B, N, 3, H, D) buffer), and dmask if @p grads asks for it. On any error
  /// nothing is written.
  /// @param q       queries (B, Hq, Nq, D), as given to the forward
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param out     the forward's output (B, Hq, Nq, Dv)
  /// @param lse     the forward's log-sum-exp (B, Hq, Nq)
  /// @param dout    the gradient of the loss with respect to out (B, Hq, Nq, Dv)
  /// @param grads   where dq, dk, dv (and dmask) go: not overlapping each other or any input
  /// @param options the forward's mask, causal, device and dropout offset, and workspace and dispatch
  ///                report
  /// @throws attend::Error for a call it refuses (docs/errors.md), before writing anything
  /// @throws std::bad_alloc if the scratch memory (or the grown workspace) cannot be allocated
  void backward(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                const ConstView<T, 4>& out, const ConstView<Accum, 3>& lse, const ConstView<T, 4>& dout,
                const GradientViews<T>& grads, const CallOptions<T>& options = {}) const {
    const detail::GradProblem<T> pb = grad_problem(q, k, v, &out, &lse, &dout, &grads, options);
    const Kernel kernel = choose_backward(pb, options.dispatch);
    const detail::Pool pool = detail::pool_of(options.device);
    const int workers = detail::worker_count(pool);
    Workspace local;
    Workspace& ws = options.workspace != nullptr ? *options.workspace : local;
    ws.reserve(detail::backward_workspace_bytes(kernel, pb, workers));
    detail::run_backward(kernel, pb, pool, ws.data());
  }

  /// @brief The path and kernel a backward call with these arguments takes, without computing
  /// anything.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param options the call's options (nothing in them is written)
  /// @return the path, kernel and reasons, as a backward call would report them
  /// @throws attend::Error like a call (everything but out, lse, dout and the gradients is checked)
  Dispatch backward_dispatch(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                             const CallOptions<T>& options = {}) const {
    Dispatch report;
    choose_backward(grad_problem(q, k, v, nullptr, nullptr, nullptr, nullptr, options), &report);
    return report;
  }

  /// @brief Scratch bytes a backward call with these arguments uses (0 for the math path). Pass a
  /// Workspace of this size and the call allocates nothing.
  /// @param q       queries (B, Hq, Nq, D)
  /// @param k       keys (B, Hkv, Nk, D)
  /// @param v       values (B, Hkv, Nk, Dv)
  /// @param options the call's options, device included (nothing in them is written)
  /// @param dmask   the dmask output the call will write, if any (it changes the scratch)
  /// @return the number of bytes
  /// @throws attend::Error like a call
  std::size_t backward_workspace_bytes(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                                       const CallOptions<T>& options = {}, const MaskGrad<T>& dmask = {}) const {
    GradientViews<T> only_dmask;
    only_dmask.dmask = dmask;
    const detail::GradProblem<T> pb = grad_problem(q, k, v, nullptr, nullptr, nullptr, &only_dmask, options, true);
    return detail::backward_workspace_bytes(choose_backward(pb, nullptr), pb, detail::worker_count(detail::pool_of(options.device)));
  }
  /// @}

 private:
  /// Validates a call (an output of nullptr: a query that writes nothing) and builds its Problem.
  detail::Problem<T> problem(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                             const TensorView<T, 4>* out, const CallOptions<T>& options) const {
    return detail::make_problem<T>(q, k, v, out, options, settings_);
  }

  /// The kernel a call runs (and its path); fills `report` if set. Throws if no enabled path can
  /// serve the call.
  Kernel choose(const detail::Problem<T>& pb, Dispatch* report) const {
    const Kernel kernel = detail::forward_kernel(pb, detail::choose_path(settings_, pb.D, pb.Dv, report));
    if (report != nullptr) report->kernel = kernel;
    return kernel;
  }

  /// Validates a backward call (null pointers: a query that does not take them) and builds its
  /// GradProblem.
  detail::GradProblem<T> grad_problem(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                                      const ConstView<T, 4>* out, const ConstView<Accum, 3>* lse,
                                      const ConstView<T, 4>* dout, const GradientViews<T>* grads,
                                      const CallOptions<T>& options, bool query = false) const {
    return detail::make_grad_problem<T>(q, k, v, out, lse, dout, grads, options, settings_, query);
  }

  /// The kernel a backward call runs (and its path); fills `report` if set.
  Kernel choose_backward(const detail::GradProblem<T>& pb, Dispatch* report) const {
    const Kernel kernel = detail::backward_kernel(detail::choose_path(settings_, pb.D, pb.Dv, report));
    if (report != nullptr) report->kernel = kernel;
    return kernel;
  }

  detail::Settings settings_;
};

ATTEND_END_NAMESPACE

#endif  // ATTEND_MODULE_HPP
