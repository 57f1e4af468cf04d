// Incremental decoding with a key/value cache and grouped-query attention (GQA), as an LLM decoder
// runs it: a prompt is prefilled in one call, then new tokens come one at a time, or a few at once
// (speculative decoding's verification, chunked prefill). The cache is one preallocated buffer of
// capacity Nmax; each call sees its first n positions through views with the full buffer's strides,
// so nothing is copied or re-laid-out as the cache grows.
//
//   attend_example_kv_cache_decode [--threads N] [--prompt P] [--capacity Nmax]
//
//   default   B 2 sequences, Hq 8 query heads sharing Hkv 2 key/value heads (groups of 4), D 64,
//             a prompt of 37 tokens, then the steps 1 1 1 1 3 1 1 5 1 1 (new tokens per call)
//   --prompt  the prompt length (e.g. 1000, long enough for the split-KV decode kernel to split the
//             keys in several parts); --capacity defaults to prompt + 64
//
// Every step is checked against attention recomputed from scratch: the math path (flash = false)
// over contiguous copies of the whole prefix, Nq = Nk = n, causal. Exit status 1 on a mismatch.
//
// Dimension names: B (batch), Hq (query heads), Hkv (key/value heads), Nq (new tokens in this call),
// Nk (tokens in the cache, the new ones included), D (head dimension, Dv = D), Nmax (capacity).
#include <attend/attend.hpp>

#include <algorithm>  // std::max, std::min
#include <chrono>     // std::chrono::steady_clock
#include <cmath>      // std::abs
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atoi, std::atol
#include <cstring>    // std::strcmp
#include <limits>     // std::numeric_limits
#include <vector>     // std::vector

namespace {

using attend::Index;
using Tensor4 = attend::Tensor<float, 4>;
using Dims4 = Eigen::array<Index, 4>;

// A view of positions [first, first + count) of a (B, H, Nmax, D) buffer: same strides as the buffer,
// so the view's position stride is D and its head stride is Nmax·D, not count·D.
attend::TensorView<float, 4> positions(Tensor4& buf, Index first, Index count) {
  const Index B = buf.dimension(0), H = buf.dimension(1), Nmax = buf.dimension(2), D = buf.dimension(3);
  return attend::TensorView<float, 4>(buf.data() + first * D, {B, H, count, D}, {H * Nmax * D, Nmax * D, D, 1});
}

// Uniform in (-1, 1): Eigen's Tensor::setRandom draws from [0, 1).
void uniform(Tensor4& t) {
  t.setRandom();
  t = (t - t.constant(0.5f)) * t.constant(2.0f);
}

}  // namespace

int main(int argc, char** argv) {
  const Index B = 2, Hq = 8, Hkv = 2, D = 64;
  Index prompt = 37, capacity = -1;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (std::strcmp(argv[i], "--threads") == 0 && has_value) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--prompt") == 0 && has_value) {
      prompt = std::atol(argv[++i]);
    } else if (std::strcmp(argv[i], "--capacity") == 0 && has_value) {
      capacity = std::atol(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--prompt P] [--capacity Nmax]\n", argv[0]);
      return 2;
    }
  }
  // New tokens per call: the prompt, single tokens, and short chunks. Hq/Hkv · Nq query rows share
  // each key/value head (4 for one token, 20 for 5). The flash path serves a few new tokens per head
  // with its split-KV decode kernel, up to a limit that grows with D + Dv and depends on the
  // instruction set (DecodeTraits in include/attend/detail/kernel/kernel_traits.hpp), and more (the
  // prompt) with query tiles; each step below prints which.
  const std::vector<Index> schedule = {prompt, 1, 1, 1, 1, 3, 1, 1, 5, 1, 1, 20, 1};
  Index total = 0;
  for (Index m : schedule) total += m;
  if (capacity < 0) capacity = prompt + 64;
  if (threads < 1 || prompt < 1 || capacity < total) {
    std::fprintf(stderr, "need threads >= 1, prompt >= 1 and capacity >= %ld (prompt + new tokens)\n",
                 static_cast<long>(total));
    return 2;
  }

  Eigen::ThreadPool pool(threads);
  const Eigen::ThreadPoolDevice dev(&pool, threads);

  // What the model's projections produce at each position, generated up front so that the check can
  // recompute any prefix. A decoder computes q, k and v of the new tokens only, at each step.
  Tensor4 q_all(B, Hq, capacity, D), k_all(B, Hkv, capacity, D), v_all(B, Hkv, capacity, D);
  uniform(q_all);  // (B, Hq, Nmax, D)
  uniform(k_all);  // (B, Hkv, Nmax, D)
  uniform(v_all);  // (B, Hkv, Nmax, D)

  // The cache: (B, Hkv, Nmax, D), the layout of Hugging Face's StaticCache. Allocated once; only the
  // first n positions are ever valid (the rest is not even initialised). A (B, Nmax, Hkv, D) layout
  // works the same way with strides {Nmax·Hkv·D, D, Hkv·D, 1}.
  Tensor4 k_cache(B, Hkv, capacity, D), v_cache(B, Hkv, capacity, D);
  Tensor4 out_all(B, Hq, capacity, D);  // (B, Hq, Nmax, D): each step writes its rows here

  // flash = true with every path enabled (the default config): attend picks flash, and within it the
  // kernel that suits the call. GQA needs nothing special: query head h reads kv head h / (Hq / Hkv).
  const attend::Attend<float> attn(/*dropout=*/0.0, /*flash=*/true);
  const attend::Attend<float> oracle(/*dropout=*/0.0, /*flash=*/false);  // the math path

  attend::Dispatch dispatch;
  attend::CallOptions<float> options;
  options.causal = attend::Causal::bottom_right;  // new token i sees the cache and new tokens 0..i
  options.device = &dev;
  options.dispatch = &dispatch;

  // Scratch memory, sized once for the largest calls, so that no step allocates: the query tiles'
  // scratch depends only on D and the threads (the prefill stands for every tiled call), the decode
  // kernel's grows with its rows (Hq/Hkv · Nq) and key splits, so ask for every chunk size it may
  // serve over a full cache (32 is at least the most new tokens it takes, whatever D and the target:
  // DecodeTraits). A call that finds the workspace too small would grow it, once.
  attend::Workspace workspace;
  options.workspace = &workspace;
  std::size_t largest = attn.workspace_bytes(positions(q_all, 0, prompt), positions(k_all, 0, prompt),
                                             positions(v_all, 0, prompt), options);
  for (Index tokens = 1; tokens <= 32; ++tokens) {
    largest = std::max(largest, attn.workspace_bytes(positions(q_all, capacity - tokens, tokens),
                                                     positions(k_all, 0, capacity), positions(v_all, 0, capacity),
                                                     options));
  }
  workspace.reserve(largest);
  const std::size_t workspace_bytes = workspace.size();

  std::printf("KV-cache decoding: B %ld, Hq %ld, Hkv %ld (GQA groups of %ld), D %ld, capacity Nmax %ld, "
              "%d thread(s), workspace %.1f KiB\n\n",
              static_cast<long>(B), static_cast<long>(Hq), static_cast<long>(Hkv), static_cast<long>(Hq / Hkv),
              static_cast<long>(D), static_cast<long>(capacity), threads,
              static_cast<double>(workspace.size()) / 1024.0);
  std::printf("%4s %5s %5s %6s  %-14s %-18s %10s %12s\n", "step", "Nq", "Nk", "rows", "path", "kernel", "time",
              "|err|/tol");

  // Step outputs agree with the recomputation to a few roundings of values up to max|v|: each output
  // is a convex combination of rows of v, computed in a different order (online softmax over key
  // splits and tiles vs one plain softmax). 16 eps covers the exp, the rescales, the final division
  // and the merge of splits.
  const float eps = std::numeric_limits<float>::epsilon();
  float max_v = 0;
  for (Index i = 0; i < v_all.size(); ++i) max_v = std::max(max_v, std::abs(v_all.data()[i]));
  const float tol = 16 * eps * max_v;

  bool ok = true;
  Index n = 0;  // tokens in the cache before this step
  for (std::size_t step = 0; step < schedule.size(); ++step) {
    const Index m = schedule[step];  // new tokens

    // 1. The model appends the new tokens' k and v to the cache (here: copied from k_all, v_all).
    const Dims4 at{0, 0, n, 0}, extent{B, Hkv, m, D};
    k_cache.slice(at, extent) = k_all.slice(at, extent);
    v_cache.slice(at, extent) = v_all.slice(at, extent);

    // 2. Attention of the m new queries over all n + m cached positions, read in place.
    const attend::ConstView<float, 4> q = positions(q_all, n, m);        // (B, Hq, Nq = m, D)
    const attend::ConstView<float, 4> k = positions(k_cache, 0, n + m);  // (B, Hkv, Nk = n + m, D)
    const attend::ConstView<float, 4> v = positions(v_cache, 0, n + m);  // (B, Hkv, Nk, D)
    const attend::TensorView<float, 4> out = positions(out_all, n, m);   // (B, Hq, Nq, D)
    // Timed as the best of 5 identical calls: one call of a few microseconds is at the mercy of the
    // thread pool's wake-up and of whatever evicted the cache (here: the previous step's check).
    double us = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      attn(q, k, v, out, options);
      us = std::min(us, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }

    // Dispatch names the path and the kernel inside it: split_kv_decode for a few new tokens (up to
    // the limit in DecodeTraits), query_tiles for the prefill.
    const char* kernel = attend::kernel_name(dispatch.kernel);
    const Index rows = (Hq / Hkv) * m;

    // 3. The check: from scratch over the whole prefix, on the math path and contiguous copies.
    //    With Nq = Nk the two causal alignments coincide, so this does not depend on bottom_right;
    //    rows n .. n+m-1 of the full causal result are what this step must have produced.
    const Dims4 zero{0, 0, 0, 0};
    const Tensor4 q_ref = q_all.slice(zero, Dims4{B, Hq, n + m, D});  // (B, Hq, n + m, D)
    const Tensor4 k_ref = k_all.slice(zero, Dims4{B, Hkv, n + m, D});  // (B, Hkv, n + m, D)
    const Tensor4 v_ref = v_all.slice(zero, Dims4{B, Hkv, n + m, D});  // (B, Hkv, n + m, D)
    attend::CallOptions<float> ref_options;
    ref_options.causal = attend::Causal::top_left;
    ref_options.device = &dev;
    const Tensor4 ref = oracle(q_ref, k_ref, v_ref, ref_options);  // (B, Hq, n + m, D)
    float err = 0;
    for (Index b = 0; b < B; ++b)
      for (Index h = 0; h < Hq; ++h)
        for (Index i = 0; i < m; ++i)
          for (Index d = 0; d < D; ++d) err = std::max(err, std::abs(out(b, h, i, d) - ref(b, h, n + i, d)));
    const bool step_ok = err <= tol && dispatch.path == attend::Path::flash;
    ok = ok && step_ok;

    std::printf("%4zu %5ld %5ld %6ld  %-14s %-18s %7.1f us %12.3f%s\n", step, static_cast<long>(m),
                static_cast<long>(n + m), static_cast<long>(rows), attend::path_name(dispatch.path), kernel, us,
                static_cast<double>(err / tol), step_ok ? "" : "  FAIL");
    n += m;
  }

  const bool no_growth = workspace.size() == workspace_bytes;
  std::printf("\nworkspace %s (%.1f KiB): %s\n", no_growth ? "never grew" : "GREW",
              static_cast<double>(workspace.size()) / 1024.0,
              no_growth ? "no step allocated scratch memory" : "a step needed more than workspace_bytes() said");
  ok = ok && no_growth;
  std::printf("|err|/tol: largest difference from the recomputation, as a fraction of 16 eps max|v| = %.3g "
              "(pass: <= 1)\n%s\n",
              static_cast<double>(tol), ok ? "all steps match" : "MISMATCH");
  return ok ? 0 : 1;
}
