// digest: one line per attention call of a fixed battery, with a 64-bit hash of the bits of out and
// lse, so that two builds of attend (two commits, or two sets of compile flags) can be compared bit
// for bit: `scripts/bitcompare.sh` builds this file against two checkouts and diffs the outputs.
//
// The battery covers every path (flash, mem_efficient, math), element type (f64, f32, bf16, f16),
// mask kind and rank, causal alignment, dropout, thread count (1, 2, 3), tile edges (1, 63, 64, 65,
// 113, 194 and primes), decode shapes with GQA, D != Dv (both layouts of the output accumulator), odd
// D (bf16 products need even D), strided views into a packed (B, N, 3, H, D) buffer, NaN and Inf in
// q, k and v (the careful re-run), logits in the hundreds, fully masked rows, and outputs large
// enough to be written with non-temporal stores. It uses only the public API that every version
// since 0.1.0 has, so the same source builds against an old commit and a new one.
//
//   digest [filter]     prints "<case> <hash of out> <hash of lse>" for each case whose name
//                       contains `filter` (all by default)

#include <attend/attend.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using attend::Index;

std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Uniform in [-gain, gain).
double uniform(std::uint64_t& s, double gain) {
  return gain * (2.0 * static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53 - 1.0);
}

enum class MaskKind { none, keep, additive };
enum class Hostile { none, nan_q, inf_k, inf_v, nan_v, dead_rows, big_logits };

struct Case {
  std::string name;
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
  MaskKind mask = MaskKind::none;
  int mask_rank = 4;  // 1..4; broadcast over the leading dimensions
  attend::Causal causal = attend::Causal::none;
  double dropout = 0.0;
  Hostile hostile = Hostile::none;
  bool packed = false;  // q, k, v as strided views into one (B, N, 3, H, D) buffer (Nq = Nk, Hq = Hkv, D = Dv)
};

const char* const kThreads[] = {"t1", "t2", "t3"};

template <typename T>
void run_case(const Case& c, attend::Path path, int threads, const Eigen::ThreadPoolDevice* device) {
  using Acc = attend::acc_t<T>;
  std::uint64_t seed = fnv1a(c.name.data(), c.name.size());
  const double gain = c.hostile == Hostile::big_logits ? 12.0 : 1.5;

  // q, k, v: contiguous, or views into one packed projection buffer.
  const Index qn = c.B * c.Hq * c.Nq * c.D, kn = c.B * c.Hkv * c.Nk * c.D, vn = c.B * c.Hkv * c.Nk * c.Dv;
  std::vector<T> packed, qb, kb, vb;
  attend::ConstView<T, 4> q, k, v;
  if (c.packed) {
    const Index N = c.Nq, H = c.Hq, D = c.D;
    packed.resize(static_cast<std::size_t>(c.B * N * 3 * H * D));
    for (auto& x : packed) x = static_cast<T>(uniform(seed, gain));
    const std::array<Index, 4> dims = {c.B, H, N, D}, strides = {N * 3 * H * D, D, 3 * H * D, 1};
    q = attend::ConstView<T, 4>(packed.data(), dims, strides);
    k = attend::ConstView<T, 4>(packed.data() + H * D, dims, strides);
    v = attend::ConstView<T, 4>(packed.data() + 2 * H * D, dims, strides);
  } else {
    qb.resize(static_cast<std::size_t>(qn));
    kb.resize(static_cast<std::size_t>(kn));
    vb.resize(static_cast<std::size_t>(vn));
    for (auto& x : qb) x = static_cast<T>(uniform(seed, gain));
    for (auto& x : kb) x = static_cast<T>(uniform(seed, gain));
    for (auto& x : vb) x = static_cast<T>(uniform(seed, 1.0));
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    switch (c.hostile) {
      case Hostile::nan_q: qb[static_cast<std::size_t>(3 * c.D + 1)] = static_cast<T>(nan); break;
      case Hostile::inf_k: kb[static_cast<std::size_t>((c.Nk / 2) * c.D)] = static_cast<T>(inf); break;
      case Hostile::inf_v:
        vb[static_cast<std::size_t>((c.Nk - 1) * c.Dv + 2)] = static_cast<T>(inf);
        vb[static_cast<std::size_t>((c.Nk / 3) * c.Dv)] = static_cast<T>(-inf);
        break;
      case Hostile::nan_v: vb[static_cast<std::size_t>((c.Nk / 2) * c.Dv + 1)] = static_cast<T>(nan); break;
      default: break;
    }
    q = attend::ConstView<T, 4>(qb.data(), {c.B, c.Hq, c.Nq, c.D});
    k = attend::ConstView<T, 4>(kb.data(), {c.B, c.Hkv, c.Nk, c.D});
    v = attend::ConstView<T, 4>(vb.data(), {c.B, c.Hkv, c.Nk, c.Dv});
  }

  // The mask: full dimensions from the right, size 1 on the left (broadcast).
  std::array<Index, 4> full = {c.B, c.Hq, c.Nq, c.Nk}, mdims{};
  for (int r = 0; r < 4; ++r) mdims[static_cast<std::size_t>(r)] = r >= 4 - c.mask_rank ? full[static_cast<std::size_t>(r)] : 1;
  const Index mn = mdims[0] * mdims[1] * mdims[2] * mdims[3];
  std::unique_ptr<bool[]> keep(new bool[static_cast<std::size_t>(mn) + 1]);
  std::vector<T> bias(static_cast<std::size_t>(mn) + 1);
  for (Index b = 0; b < mdims[0]; ++b)
    for (Index h = 0; h < mdims[1]; ++h)
      for (Index i = 0; i < mdims[2]; ++i)
        for (Index j = 0; j < mdims[3]; ++j) {
          const Index at = ((b * mdims[1] + h) * mdims[2] + i) * mdims[3] + j;
          // Dead rows: every third query row of the mask sees nothing.
          const bool dead = c.hostile == Hostile::dead_rows && i % 3 == 1;
          const std::uint64_t r = splitmix(seed);
          keep[static_cast<std::size_t>(at)] = !dead && (r % 5 != 0);
          const double bv = dead || r % 7 == 0 ? -std::numeric_limits<double>::infinity() : uniform(seed, 2.0);
          bias[static_cast<std::size_t>(at)] = static_cast<T>(bv);
        }
  attend::CallOptions<T> o;
  auto as_rank = [&](auto tag, auto* data) {
    constexpr int R = decltype(tag)::value;
    std::array<Index, R> d{};
    for (int r = 0; r < R; ++r) d[static_cast<std::size_t>(r)] = mdims[static_cast<std::size_t>(4 - R + r)];
    using V = std::remove_pointer_t<decltype(data)>;
    return attend::ConstView<V, R>(data, d);
  };
  auto set_mask = [&](auto tag) {
    if (c.mask == MaskKind::keep) o.mask = attend::Mask<T>::keep(as_rank(tag, static_cast<const bool*>(keep.get())));
    if (c.mask == MaskKind::additive) o.mask = attend::Mask<T>::additive(as_rank(tag, static_cast<const T*>(bias.data())));
  };
  switch (c.mask_rank) {
    case 1: set_mask(std::integral_constant<int, 1>{}); break;
    case 2: set_mask(std::integral_constant<int, 2>{}); break;
    case 3: set_mask(std::integral_constant<int, 3>{}); break;
    default: set_mask(std::integral_constant<int, 4>{}); break;
  }
  o.causal = c.causal;
  o.device = device;
  o.dropout_offset = 5;
  std::vector<Acc> lse(static_cast<std::size_t>(c.B * c.Hq * c.Nq), Acc(-7));
  o.lse = attend::TensorView<Acc, 3>(lse.data(), {c.B, c.Hq, c.Nq});
  std::vector<T> out(static_cast<std::size_t>(c.B * c.Hq * c.Nq * c.Dv), T(-3));

  attend::FlashAttentionConfig only;
  only.enable_flash = path == attend::Path::flash;
  only.enable_mem_efficient = path == attend::Path::mem_efficient;
  only.enable_math = path == attend::Path::math;
  attend::Attend<T> attn(c.dropout, /*flash=*/true, std::nullopt, only, /*seed=*/0x1234567890ull);
  attn.train(c.dropout > 0);
  attn(q, k, v, attend::TensorView<T, 4>(out.data(), {c.B, c.Hq, c.Nq, c.Dv}), o);
  std::printf("%s/%s/%s/%s %016llx %016llx\n", c.name.c_str(), attend::type_name<T>(), attend::path_name(path),
              kThreads[threads - 1], static_cast<unsigned long long>(fnv1a(out.data(), out.size() * sizeof(T))),
              static_cast<unsigned long long>(fnv1a(lse.data(), lse.size() * sizeof(Acc))));
}

std::vector<Case> battery() {
  std::vector<Case> cs;
  auto add = [&cs](Case c) { cs.push_back(std::move(c)); };
  // Tile edges, square and cross lengths, D = Dv.
  for (Index n : {1, 7, 63, 64, 65, 113, 194}) {
    add({"edge_n" + std::to_string(n), 1, 2, 2, n, n, 32, 32});
    add({"edge_cross_n" + std::to_string(n), 1, 2, 1, n, (n * 7) % 150 + 1, 64, 64});
  }
  // Head dimensions: odd (bf16 products need even D), not a packet multiple, Dv != D both ways
  // (O with a query per row needs Dv a multiple of 64 with AVX-512).
  for (Index d : {7, 16, 80, 128}) add({"head_d" + std::to_string(d), 2, 2, 2, 70, 90, d, d});
  add({"dv_wide", 1, 2, 2, 67, 75, 32, 128});
  add({"dv_narrow", 1, 2, 2, 67, 75, 64, 48});
  add({"dv_odd", 1, 2, 2, 67, 75, 33, 19});
  // Masks of every kind and rank, with both causal alignments.
  for (MaskKind m : {MaskKind::keep, MaskKind::additive})
    for (int rank : {1, 2, 3, 4})
      for (attend::Causal cz : {attend::Causal::none, attend::Causal::top_left, attend::Causal::bottom_right}) {
        Case c{std::string(m == MaskKind::keep ? "keep" : "add") + "_r" + std::to_string(rank) + "_c" +
                   std::to_string(static_cast<int>(cz)),
               2, 4, 2, 77, 69, 32, 32};
        c.mask = m, c.mask_rank = rank, c.causal = cz;
        add(c);
      }
  for (attend::Causal cz : {attend::Causal::top_left, attend::Causal::bottom_right}) {
    Case tall{"causal_tall_c" + std::to_string(static_cast<int>(cz)), 1, 2, 2, 150, 70, 64, 64};
    tall.causal = cz;
    add(tall);
    Case wide{"causal_wide_c" + std::to_string(static_cast<int>(cz)), 1, 2, 2, 70, 150, 64, 64};
    wide.causal = cz;
    add(wide);
  }
  // Dropout, with and without masks and causality, GQA.
  for (double p : {0.1, 0.5, 1.0}) {
    Case c{"dropout_p" + std::to_string(static_cast<int>(p * 100)), 2, 4, 2, 70, 66, 32, 32};
    c.dropout = p;
    add(c);
  }
  {
    Case c{"dropout_masked_causal", 1, 4, 1, 100, 130, 64, 64};
    c.dropout = 0.3, c.mask = MaskKind::keep, c.mask_rank = 2, c.causal = attend::Causal::bottom_right;
    add(c);
  }
  // Decode shapes: few queries per kv head, GQA, with and without masks/dropout.
  for (Index nq : {1, 2, 5, 9, 16, 17, 24, 25, 32, 33}) add({"decode_nq" + std::to_string(nq), 2, 8, 2, nq, 600, 64, 64});
  add({"decode_d128", 1, 8, 2, 1, 1100, 128, 128});
  add({"decode_dv", 1, 4, 1, 3, 517, 40, 24});
  {
    Case c{"decode_masked", 1, 8, 2, 4, 700, 64, 64};
    c.mask = MaskKind::additive, c.mask_rank = 4, c.causal = attend::Causal::bottom_right, c.dropout = 0.2;
    add(c);
  }
  // Hostile values.
  const std::pair<const char*, Hostile> hostile[] = {{"nan_q", Hostile::nan_q},         {"inf_k", Hostile::inf_k},
                                                     {"inf_v", Hostile::inf_v},         {"nan_v", Hostile::nan_v},
                                                     {"dead_rows", Hostile::dead_rows}, {"big_logits", Hostile::big_logits}};
  for (const auto& [name, h] : hostile) {
    Case c{std::string("hostile_") + name, 1, 2, 2, 130, 140, 64, 64};
    c.hostile = h;
    if (h == Hostile::dead_rows) c.mask = MaskKind::keep;
    if (h == Hostile::inf_v) c.causal = attend::Causal::top_left;
    add(c);
    Case d = c;
    d.name += "_decode", d.Nq = 3, d.Hq = 4, d.Hkv = 1;
    add(d);
    Case e = c;
    e.name += "_dv48", e.Dv = 48;
    add(e);
  }
  {
    Case c{"hostile_inf_v_masked_dropout", 1, 2, 2, 70, 140, 64, 64};
    c.hostile = Hostile::inf_v, c.mask = MaskKind::additive, c.dropout = 0.25;
    add(c);
  }
  // Strided views into a packed QKV buffer.
  {
    Case c{"packed_qkv", 2, 4, 4, 97, 97, 32, 32};
    c.packed = true, c.causal = attend::Causal::top_left;
    add(c);
  }
  // Outputs of 32 MiB or more are streamed (non-temporal stores): bsr_freq-like.
  add({"streamed", 270, 8, 8, 62, 62, 64, 64});
  return cs;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  Eigen::ThreadPool pool2(2), pool3(3);
  Eigen::ThreadPoolDevice dev2(&pool2, 2), dev3(&pool3, 3);
  const Eigen::ThreadPoolDevice* devices[] = {nullptr, &dev2, &dev3};
  for (const Case& c : battery()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    const bool big = c.name == "streamed";
    for (attend::Path path : {attend::Path::flash, attend::Path::mem_efficient, attend::Path::math}) {
      if (big && path == attend::Path::math) continue;  // seconds per call, and no streamed stores
      for (int t = 1; t <= 3; ++t) {
        if (big && t == 3) continue;
        const auto* dev = devices[t - 1];
        run_case<double>(c, path, t, dev);
        run_case<float>(c, path, t, dev);
        run_case<Eigen::bfloat16>(c, path, t, dev);
        run_case<Eigen::half>(c, path, t, dev);
      }
    }
  }
  return 0;
}
