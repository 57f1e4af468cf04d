// One axial transformer layer as BS-RoFormer runs it, attention over time and then over frequency,
// with random weights, Eigen and attend only. It shows how to feed attend without a single copy:
// q, k and v are read in place from the packed QKV projection, and the attention output is written
// straight into the buffer that the output projection reads.
//
//   attend_example_bs_roformer_block [--real] [--threads N] [--batch N] [--frames T] [--bands F]
//                                    [--heads H] [--dim-head D]
//
//   default   batch 2, T 70, F 5, H 2, D 32: small enough for the ctest run (and a Debug build)
//   --real    the shapes of one 8-second chunk: batch 1, T 801 STFT frames, F 62 bands, H 8, D 64
//             (dim = H·D = 512). Time-axis attention is then B 62, N 801; frequency-axis attention
//             is B 801, N 62: the two `bsr_time` and `bsr_freq` rows of attend's benchmark.
//   --threads the size of the Eigen thread pool used by attention and by the projections (default 1)
//
// The PyTorch module this follows (bs_roformer.py, `Attention.forward`):
//
//   x = self.norm(x)                                                  # RMSNorm
//   q, k, v = rearrange(self.to_qkv(x), 'b n (qkv h d) -> qkv b h n d', qkv = 3, h = self.heads)
//   q = self.rotary_embed.rotate_queries_or_keys(q)                   # interleaved rotary
//   k = self.rotary_embed.rotate_queries_or_keys(k)
//   out = self.attend(q, k, v)                                        # <- attend::Attend
//   gates = self.to_gates(x)                                          # Linear(dim -> heads)
//   out = out * rearrange(gates, 'b n h -> b h n 1').sigmoid()
//   out = rearrange(out, 'b h n d -> b n (h d)')
//   return self.to_out(out)                                           # and the caller adds x
//
// The feed-forward half of the transformer layer is left out: it has nothing to do with attention.
//
// What it checks (exit status 1 if any check fails):
//   1. the three paths (flash, mem_efficient, math) give the same layer output, within a tolerance
//      derived from float's epsilon;
//   2. attention read through strided views of the packed buffer equals, bit for bit, attention over
//      contiguous copies of q, k and v;
//   3. each call ran on the path that was asked for (options.dispatch).
//
// Dimension names: batch, T (time frames), F (frequency bands), dim (model width = H·D); for one
// attention call B (batch of sequences), H = Hq = Hkv (heads), N = Nq = Nk (sequence length), D = Dv.
#include <attend/attend.hpp>

#include <algorithm>  // std::max
#include <chrono>     // std::chrono::steady_clock
#include <cmath>      // std::sqrt, std::exp, std::cos, std::sin, std::pow, std::abs
#include <cstdio>     // std::printf, std::fopen
#include <cstdlib>    // std::atoi, std::atol
#include <cstring>    // std::strcmp, std::strncmp, std::strlen
#include <limits>     // std::numeric_limits
#include <optional>   // std::nullopt
#include <string>     // std::string

namespace {

using attend::Index;
using Tensor1 = attend::Tensor<float, 1>;
using Tensor2 = attend::Tensor<float, 2>;  // (tokens, features), row-major: one token per row

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

struct Shape {
  Index batch = 2, T = 70, F = 5, H = 2, D = 32;
  Index dim() const { return H * D; }  // BS-RoFormer: dim 512 = heads 8 × dim_head 64
  Index tokens() const { return batch * T * F; }
};

// The tokens of the (batch, T, F, dim) input are stored as rows of one (tokens, dim) matrix, in
// (b, t, f) order: token (b, t, f) is row (b·T + t)·F + f. Every per-token operation (norm,
// projections, gates) ignores the order; only attention cares which tokens form a sequence.
enum class Axis { time, freq };

const char* axis_name(Axis a) { return a == Axis::time ? "time" : "freq"; }

// How one axis's attention sees the token rows. PyTorch transposes: for the time axis
// `rearrange(x, 'b t f d -> b f t d')` then packs to ((b f), t, d), a 100 MiB copy at the real
// shapes. Here the transpose is only a choice of strides, counted in token rows:
//   time axis: sequences are (b, f), positions are t. Within one b, sequence f starts at row f and
//              steps F rows per position; b cannot be folded into the same stride (b steps T·F rows,
//              f steps 1), so there is one attention call per batch element, each with B = F.
//   freq axis: sequences are (b, t), positions are f. Sequence (b, t) starts at row (b·T + t)·F,
//              so b and t fold into one batch dimension of stride F rows: one call, B = batch·T.
struct AxisLayout {
  Index calls;          // attention calls per layer
  Index call_step;      // first token row of call c is c·call_step
  Index B;              // sequences per call
  Index N;              // positions per sequence (Nq = Nk)
  Index seq_stride;     // token rows between consecutive sequences
  Index pos_stride;     // token rows between consecutive positions of one sequence
};

AxisLayout layout(const Shape& s, Axis axis) {
  if (axis == Axis::time) return {s.batch, s.T * s.F, s.F, s.T, 1, s.F};
  return {1, 0, s.batch * s.T, s.F, s.F, 1};
}

// The position of token row r along the axis: t for the time axis, f for the frequency axis.
Index axis_position(const Shape& s, Axis axis, Index r) { return axis == Axis::time ? (r / s.F) % s.T : r % s.F; }

// ---------------------------------------------------------------------------------------------
// Weights, in PyTorch's state_dict layout, so that real weights can be copied in unchanged
// ---------------------------------------------------------------------------------------------

struct LayerWeights {
  Tensor1 gamma;   // (dim)            norm.gamma
  Tensor2 w_qkv;   // (3·H·D, dim)     to_qkv.weight (nn.Linear stores (out, in); no bias)
  Tensor2 w_gate;  // (H, dim)         to_gates.weight
  Tensor1 b_gate;  // (H)              to_gates.bias
  Tensor2 w_out;   // (dim, H·D)       to_out[0].weight (no bias)
};

// Fills t with U(-bound, bound). (Eigen's Tensor::setRandom draws from U(0, 1), unlike Matrix::Random's
// U(-1, 1).) Deterministic: Eigen uses std::rand, which is never seeded here.
template <int Rank>
void uniform(attend::Tensor<float, Rank>& t, float bound) {
  t.setRandom();
  t = (t - t.constant(0.5f)) * t.constant(2 * bound);
}

// nn.Linear's default initialisation: weight and bias from U(-1/sqrt(in), 1/sqrt(in)).
Tensor2 linear_weight(Index out, Index in) {
  Tensor2 w(out, in);
  uniform(w, 1.0f / std::sqrt(static_cast<float>(in)));
  return w;
}

LayerWeights random_weights(const Shape& s) {
  LayerWeights w;
  w.gamma = Tensor1(s.dim());
  w.gamma.setConstant(1.0f);  // RMSNorm's gamma starts at ones
  w.w_qkv = linear_weight(3 * s.H * s.D, s.dim());
  w.w_gate = linear_weight(s.H, s.dim());
  w.b_gate = Tensor1(s.H);
  uniform(w.b_gate, 1.0f / std::sqrt(static_cast<float>(s.dim())));
  w.w_out = linear_weight(s.dim(), s.H * s.D);
  return w;
}

// y = x Wᵀ, nn.Linear without bias: contract x's feature dimension (1) with W's input dimension (1).
// An Eigen tensor contraction on the thread pool, so the projections use the same threads as attention.
void linear(const Tensor2& x, const Tensor2& w, Tensor2& y, const Eigen::ThreadPoolDevice& dev) {
  const Eigen::array<Eigen::IndexPair<Index>, 1> dims{Eigen::IndexPair<Index>(1, 1)};
  y.device(dev) = x.contract(w, dims);  // (tokens, out)
}

// ---------------------------------------------------------------------------------------------
// The layer, in three stages: before attention, attention, after attention
// ---------------------------------------------------------------------------------------------

// What the stage before attention leaves for the others. Allocated once and reused, as an inference
// engine would: attention itself allocates only its small per-worker tiles.
struct PreAttention {
  Tensor2 xn;     // (tokens, dim)       RMSNorm(x)
  Tensor2 qkv;    // (tokens, 3·H·D)     = (batch, T, F, 3, H, D): q, k, v of each token side by side
  Tensor2 gates;  // (tokens, H)         sigmoid(to_gates(xn))
};

// BS-RoFormer's RMSNorm: F.normalize(x, dim=-1) · sqrt(dim) · gamma, i.e. x / max(||x||, 1e-12) ·
// sqrt(dim) · gamma. (Not x / rms(x) with an epsilon inside the root, as LLaMA's RMSNorm.)
void rms_norm(const Tensor2& x, const Tensor1& gamma, Tensor2& y) {
  const Index tokens = x.dimension(0), dim = x.dimension(1);
  const float scale = std::sqrt(static_cast<float>(dim));
  for (Index r = 0; r < tokens; ++r) {
    float ss = 0;
    for (Index c = 0; c < dim; ++c) ss += x(r, c) * x(r, c);
    const float inv = scale / std::max(std::sqrt(ss), 1e-12f);
    for (Index c = 0; c < dim; ++c) y(r, c) = x(r, c) * inv * gamma(c);
  }
}

// Rotary embedding as rotate_queries_or_keys of rotary_embedding_torch (RotaryEmbedding(dim = D),
// theta 10000): the pairs (x[2i], x[2i+1]) of each head are rotated by the angle pos · theta^(-2i/D),
// pos being the token's position along the attention axis (0 ... N-1). Interleaved pairs, not the
// two halves of the head as in GPT-NeoX/LLaMA's rotate_half: ported weights only work with the right
// one. Applied in place to the q and k thirds of the packed buffer; v is not rotated.
void rotary_in_place(Tensor2& qkv, const Shape& s, Axis axis) {
  const Index N = axis == Axis::time ? s.T : s.F, half = s.D / 2;
  // The table is computed in float, as rotary_embedding_torch does: freqs = 1 / theta^(2i/D), then
  // pos · freq and its cos and sin in float32.
  Tensor2 cos_t(N, half), sin_t(N, half);  // (N, D/2)
  for (Index i = 0; i < half; ++i) {
    const float freq = 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / static_cast<float>(s.D));
    for (Index p = 0; p < N; ++p) {
      const float angle = static_cast<float>(p) * freq;
      cos_t(p, i) = std::cos(angle);
      sin_t(p, i) = std::sin(angle);
    }
  }
  for (Index r = 0; r < qkv.dimension(0); ++r) {
    const Index p = axis_position(s, axis, r);
    for (Index part = 0; part < 2; ++part)  // q, then k
      for (Index h = 0; h < s.H; ++h) {
        float* x = &qkv(r, (part * s.H + h) * s.D);  // one head's D values, contiguous
        for (Index i = 0; i < half; ++i) {
          const float x0 = x[2 * i], x1 = x[2 * i + 1], c = cos_t(p, i), sn = sin_t(p, i);
          x[2 * i] = x0 * c - x1 * sn;
          x[2 * i + 1] = x1 * c + x0 * sn;
        }
      }
  }
}

void pre_attention(const Tensor2& x, const LayerWeights& w, const Shape& s, Axis axis, PreAttention& pre,
                   const Eigen::ThreadPoolDevice& dev) {
  rms_norm(x, w.gamma, pre.xn);
  linear(pre.xn, w.w_qkv, pre.qkv, dev);  // (tokens, 3·H·D): 'b n (qkv h d)'
  rotary_in_place(pre.qkv, s, axis);
  linear(pre.xn, w.w_gate, pre.gates, dev);  // (tokens, H)
  for (Index r = 0; r < pre.gates.dimension(0); ++r)
    for (Index h = 0; h < s.H; ++h) pre.gates(r, h) = 1.0f / (1.0f + std::exp(-(pre.gates(r, h) + w.b_gate(h))));
}

// The views of one attention call, all into buffers that already exist.
struct CallViews {
  attend::ConstView<float, 4> q, k, v;  // (B, H, N, D), inside the packed (tokens, 3·H·D) buffer
  attend::TensorView<float, 4> out;     // (B, H, N, D), inside the (tokens, H·D) buffer
};

CallViews views(const Tensor2& qkv, Tensor2& attn_out, const Shape& s, const AxisLayout& L, Index call) {
  const Index row = call * L.call_step;  // first token row of this call
  const Index in_row = 3 * s.H * s.D;    // floats per token row of the packed buffer
  const Index out_row = s.H * s.D;       // floats per token row of the output buffer
  // Strides in floats of (B, H, N, D): the head h of one token sits h·D floats into the q (or k, or v)
  // third of its row; the last dimension is contiguous, as attend requires. At the real shapes
  // (F 62, H·D 512) q's strides are {1536, 64, 95232, 1} on the time axis (sequence = band: next
  // token row; position = frame: 62 rows on) and {95232, 64, 1536, 1} on the frequency axis.
  const attend::ConstView<float, 4>::Dims dims{L.B, s.H, L.N, s.D};
  const attend::ConstView<float, 4>::Dims in_strides{L.seq_stride * in_row, s.D, L.pos_stride * in_row, 1};
  const attend::TensorView<float, 4>::Dims out_strides{L.seq_stride * out_row, s.D, L.pos_stride * out_row, 1};
  const float* base = qkv.data() + row * in_row;
  return {attend::ConstView<float, 4>(base, dims, in_strides),                      // q: first third
          attend::ConstView<float, 4>(base + s.H * s.D, dims, in_strides),          // k: second third
          attend::ConstView<float, 4>(base + 2 * s.H * s.D, dims, in_strides),      // v: last third
          attend::TensorView<float, 4>(attn_out.data() + row * out_row, dims, out_strides)};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Peak memory (Linux: /proc/self/status; elsewhere "n/a")
// ---------------------------------------------------------------------------------------------

long proc_status_kib(const char* key) {  // -1 where unavailable
#ifdef __linux__
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long value = -1;
  const std::size_t len = std::strlen(key);
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, key, len) == 0 && line[len] == ':') value = std::atol(line + len + 1);
  std::fclose(f);
  return value;
#else
  (void)key;
  return -1;
#endif
}

// Resets VmHWM to the current VmRSS (Linux >= 4.0), so that the next reading is the peak of what
// ran in between. Returns false where that is not possible.
bool reset_peak_memory() {
#ifdef __linux__
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
#else
  return false;
#endif
}

std::string mib(long kib) {
  if (kib < 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(kib) / 1024.0);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// The three paths
// ---------------------------------------------------------------------------------------------

struct PathUnderTest {
  attend::Path path;
  attend::Attend<float> attn;
};

// Forcing a path: with flash = true, enable only that path in the FlashAttentionConfig (a call it
// cannot serve then throws rather than falling back). The math path is simply flash = false.
attend::Attend<float> forced(attend::Path p) {
  if (p == attend::Path::math) return attend::Attend<float>(/*dropout=*/0.0, /*flash=*/false);
  attend::FlashAttentionConfig config;
  config.enable_flash = p == attend::Path::flash;
  config.enable_mem_efficient = p == attend::Path::mem_efficient;
  config.enable_math = false;
  return attend::Attend<float>(/*dropout=*/0.0, /*flash=*/true, /*scale=*/std::nullopt, config);
}

float max_abs(const float* p, Index n) {
  float m = 0;
  for (Index i = 0; i < n; ++i) m = std::max(m, std::abs(p[i]));
  return m;
}

float max_abs_diff(const Tensor2& a, const Tensor2& b) {
  float m = 0;
  for (Index i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.data()[i] - b.data()[i]));
  return m;
}

// Max row sum of |W|: the most a linear layer can amplify a uniform error in its input (∞-norm).
float inf_norm(const Tensor2& w) {
  float m = 0;
  for (Index r = 0; r < w.dimension(0); ++r) {
    float sum = 0;
    for (Index c = 0; c < w.dimension(1); ++c) sum += std::abs(w(r, c));
    m = std::max(m, sum);
  }
  return m;
}

// Check 2: the same attention over contiguous (B, H, N, D) copies of q, k and v. The kernels read
// a row of D values at a time wherever it lies, so the strides change nothing: bit-for-bit equal.
// Also adds the time of that call (not of the copies) to *seconds.
bool equals_contiguous_copy(const attend::Attend<float>& attn, const CallViews& cv, const attend::CallOptions<float>& o,
                            double* seconds) {
  const Index B = cv.q.dimension(0), H = cv.q.dimension(1), N = cv.q.dimension(2), D = cv.q.dimension(3);
  attend::Tensor<float, 4> q(B, H, N, D), k(B, H, N, D), v(B, H, N, D);  // (B, H, N, D) each
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index n = 0; n < N; ++n)
        for (Index d = 0; d < D; ++d) {
          q(b, h, n, d) = cv.q(b, h, n, d);
          k(b, h, n, d) = cv.k(b, h, n, d);
          v(b, h, n, d) = cv.v(b, h, n, d);
        }
  attend::CallOptions<float> options = o;
  options.dispatch = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  const attend::Tensor<float, 4> out = attn(q, k, v, options);  // (B, H, N, D)
  *seconds += seconds_since(t0);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index n = 0; n < N; ++n)
        for (Index d = 0; d < D; ++d)
          if (!(out(b, h, n, d) == cv.out(b, h, n, d))) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Shape s;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (std::strcmp(argv[i], "--real") == 0) {
      s = Shape{1, 801, 62, 8, 64};  // 8 s at 44.1 kHz, hop 441: 801 frames; 62 bands; dim 512
    } else if (std::strcmp(argv[i], "--threads") == 0 && has_value) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--batch") == 0 && has_value) {
      s.batch = std::atol(argv[++i]);
    } else if (std::strcmp(argv[i], "--frames") == 0 && has_value) {
      s.T = std::atol(argv[++i]);
    } else if (std::strcmp(argv[i], "--bands") == 0 && has_value) {
      s.F = std::atol(argv[++i]);
    } else if (std::strcmp(argv[i], "--heads") == 0 && has_value) {
      s.H = std::atol(argv[++i]);
    } else if (std::strcmp(argv[i], "--dim-head") == 0 && has_value) {
      s.D = std::atol(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--real] [--threads N] [--batch N] [--frames T] [--bands F] [--heads H] "
                   "[--dim-head D]\n",
                   argv[0]);
      return 2;
    }
  }
  if (threads < 1 || s.batch < 1 || s.T < 1 || s.F < 1 || s.H < 1 || s.D < 2 || s.D % 2 != 0) {
    std::fprintf(stderr, "sizes and threads must be positive, and the head dimension even (rotary pairs)\n");
    return 2;
  }

  // One pool for everything: attention (options.device) and the projections (tensor contractions).
  Eigen::ThreadPool pool(threads);
  const Eigen::ThreadPoolDevice dev(&pool, threads);

  std::printf("BS-RoFormer axial layer: batch %ld, T %ld frames, F %ld bands, H %ld heads, D %ld (dim %ld), "
              "%d thread(s)\n",
              static_cast<long>(s.batch), static_cast<long>(s.T), static_cast<long>(s.F), static_cast<long>(s.H),
              static_cast<long>(s.D), static_cast<long>(s.dim()), threads);

  // The input, (batch, T, F, dim) as (tokens, dim), and the two layers' weights.
  Tensor2 x(s.tokens(), s.dim());
  uniform(x, 1.0f);
  const LayerWeights w_time = random_weights(s), w_freq = random_weights(s);

  // Buffers, allocated once and reused by both axes and all paths. At the real shapes one
  // (tokens, dim) float buffer is 49662 · 512 · 4 B = 97 MiB and the packed QKV 291 MiB.
  PreAttention pre{Tensor2(s.tokens(), s.dim()), Tensor2(s.tokens(), 3 * s.H * s.D), Tensor2(s.tokens(), s.H)};
  Tensor2 attn_out(s.tokens(), s.H * s.D);  // (tokens, H·D) = (batch, T, F, H·D): attention's output
  Tensor2 attn_ref(s.tokens(), s.H * s.D);  // (tokens, H·D): the math path's, for check 1
  Tensor2 proj(s.tokens(), s.dim());        // (tokens, dim): to_out(gated attention)
  Tensor2 y_ref(s.tokens(), s.dim());       // (tokens, dim): the layer's output on the math path
  Tensor2 y(s.tokens(), s.dim());           // (tokens, dim): the layer's output on the path under test
  // Touch every buffer once, so that the memory readings below count only what attention adds.
  for (Tensor2* t : {&pre.xn, &pre.qkv, &pre.gates, &attn_out, &attn_ref, &proj, &y_ref, &y}) t->setZero();
  const double buffer_mib = 4.0 * static_cast<double>(s.tokens()) *
                            static_cast<double>(5 * s.dim() + 3 * s.H * s.D + s.H + 2 * s.H * s.D) / (1 << 20);

  const float eps = std::numeric_limits<float>::epsilon();
  bool ok = true;
  std::printf("layer buffers (x, xn, qkv, gates, attention out, projection, outputs): %.1f MiB\n\n", buffer_mib);
  std::printf("%-5s %-14s %5s %5s %5s %12s %9s %12s %12s %13s %12s %9s %8s\n", "axis", "path", "B", "N", "calls",
              "attention", "GFLOP/s", "contiguous", "whole layer", "attn +memory", "|dattn|/tol", "|dy|/tol",
              "strided");

  // Math first: it is the oracle the other two are compared with. Flash last: its output is the one
  // the next axis reads, as production (all paths enabled) would run flash.
  const attend::Path order[] = {attend::Path::math, attend::Path::mem_efficient, attend::Path::flash};
  for (Axis axis : {Axis::time, Axis::freq}) {
    const LayerWeights& w = axis == Axis::time ? w_time : w_freq;
    const AxisLayout L = layout(s, axis);

    // Norm, QKV projection, rotary and gates do not depend on the attention path: once per axis.
    const auto t_pre = std::chrono::steady_clock::now();
    pre_attention(x, w, s, axis, pre, dev);
    const double pre_s = seconds_since(t_pre);

    // Check 1's tolerances. Each attention output is a convex combination of rows of v, computed in
    // float in a different order on each path (online softmax with rescaling, a chunk's full-row
    // softmax, or the plain softmax), so two paths differ by a few roundings of values up to max|v|:
    // c · eps · max|v|, with c = 16 for the exp, the rescales, the final division and the sum over N
    // keys (measured: below 1). Through the gate (below 1) and to_out this grows by at most to_out's
    // ∞-norm, and the residual add rounds once more, at the size of y.
    float max_v = 0;
    for (Index r = 0; r < s.tokens(); ++r) max_v = std::max(max_v, max_abs(&pre.qkv(r, 2 * s.H * s.D), s.H * s.D));
    const float attn_tol = 16 * eps * max_v;

    for (attend::Path p : order) {
      const attend::Attend<float> attn = forced(p);
      attend::Dispatch dispatch;
      attend::CallOptions<float> options;
      options.device = &dev;
      options.dispatch = &dispatch;

      // Attention: one call per batch element on the time axis, one call on the frequency axis. The
      // peak-memory reading covers only these calls: what attention allocates on top of the buffers
      // above (flash: a few tiles per worker; math: the (N, N) scores of one (b, h) per worker).
      const long rss_before = proc_status_kib("VmRSS");
      const bool peak_reset = reset_peak_memory();
      double attention_s = 0;
      for (Index c = 0; c < L.calls; ++c) {
        const CallViews cv = views(pre.qkv, attn_out, s, L, c);
        const auto t0 = std::chrono::steady_clock::now();
        attn(cv.q, cv.k, cv.v, cv.out, options);  // reads the packed buffer, writes (tokens, H·D)
        attention_s += seconds_since(t0);
      }
      const long peak_added = peak_reset && rss_before >= 0 ? proc_status_kib("VmHWM") - rss_before : -1;
      if (dispatch.path != p) {  // check 3
        std::printf("FAIL: asked for the %s path, ran %s\n", attend::path_name(p), attend::path_name(dispatch.path));
        ok = false;
      }

      // Check 2, before the gate overwrites attn_out: strided in place == contiguous copies.
      bool strided_ok = true;
      double contiguous_s = 0;
      for (Index c = 0; c < L.calls; ++c)
        strided_ok = strided_ok && equals_contiguous_copy(attn, views(pre.qkv, attn_out, s, L, c), options, &contiguous_s);
      ok = ok && strided_ok;

      // Check 1, on attention's output (before the gate).
      if (p == attend::Path::math) attn_ref = attn_out;
      const float d_attn = max_abs_diff(attn_out, attn_ref);

      // After attention: the per-head sigmoid gate, to_out, the residual.
      const auto t_post = std::chrono::steady_clock::now();
      for (Index r = 0; r < s.tokens(); ++r)
        for (Index h = 0; h < s.H; ++h)
          for (Index d = 0; d < s.D; ++d) attn_out(r, h * s.D + d) *= pre.gates(r, h);
      linear(attn_out, w.w_out, proj, dev);  // (tokens, dim)
      Tensor2& out = p == attend::Path::math ? y_ref : y;
      out.device(dev) = x + proj;            // (tokens, dim)
      const double whole_s = pre_s + attention_s + seconds_since(t_post);  // the checks are not timed

      // Check 1, on the layer's output.
      const float dy = p == attend::Path::math ? 0.0f : max_abs_diff(y, y_ref);
      const float y_tol = attn_tol * inf_norm(w.w_out) + eps * max_abs(y_ref.data(), y_ref.size());
      if (d_attn > attn_tol || dy > y_tol) {
        std::printf("FAIL: %s differs from math by %g in attention (tolerance %g), %g in the layer (tolerance %g)\n",
                    attend::path_name(p), static_cast<double>(d_attn), static_cast<double>(attn_tol),
                    static_cast<double>(dy), static_cast<double>(y_tol));
        ok = false;
      }
      // 4·B·H·N²·D: two (N, N, D) matrix products per (b, h), 2 flops per multiply-add.
      const double gflop = 4.0 * double(L.calls * L.B * s.H) * double(L.N) * double(L.N) * double(s.D) * 1e-9;
      std::printf("%-5s %-14s %5ld %5ld %5ld %9.2f ms %9.1f %9.2f ms %9.2f ms %13s %12.3f %9.3f %8s\n",
                  axis_name(axis), attend::path_name(dispatch.path), static_cast<long>(L.B), static_cast<long>(L.N),
                  static_cast<long>(L.calls), attention_s * 1e3, gflop / attention_s, contiguous_s * 1e3,
                  whole_s * 1e3, mib(peak_added).c_str(),
                  static_cast<double>(d_attn / attn_tol), static_cast<double>(dy / y_tol),
                  strided_ok ? "bitwise" : "DIFFERS");
    }
    // The next axis reads this axis's output (the flash path's, as production would run it).
    x = y;
  }

  std::printf("\nVmHWM (peak resident memory of the whole run, checks included): %s\n",
              mib(proc_status_kib("VmHWM")).c_str());
  std::printf("attention: the call on strided views of the packed buffer; contiguous: the same call on\n"
              "contiguous copies of q, k and v (copying not timed); whole layer: norm, projections, rotary,\n"
              "attention, gate and residual. |dattn|, |dy|: largest difference from the math path, as a\n"
              "fraction of its tolerance (pass: <= 1)\n");
  std::printf("%s\n", ok ? "all checks passed" : "CHECKS FAILED");
  return ok ? 0 : 1;
}
