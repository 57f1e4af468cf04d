// libFuzzer target: bytes -> a random but valid attention call (or an invalid one), run on every path
// and compared with the math path in double (itself checked against a naive loop on small calls).
//
// A valid call draws: the element type (double, float, bfloat16, half); B, Hkv, the GQA ratio Hq/Hkv,
// Nq, Nk, D and Dv (1s, primes, tile edges 63/64/65, Nk = 0); strided layouts for q, k, v, out, lse
// and the mask (padded rows/heads/batches, a (B, N, H, D) packed order) whose padding holds NaN
// (or invalid bools, for UBSan) so that any read outside a view shows; a bool or additive mask of
// rank 1 to 4 with broadcast dimensions and fully masked rows; causal none/top_left/bottom_right;
// a scale; dropout in training with a seed and offset; 1 to 4 threads; a Workspace or none; NaN in
// q or k. Each of the flash, mem_efficient and math paths, flash = false and a random config must
// match the double reference within a tolerance derived from T's and the accumulator's epsilon
// (NaN exactly where the reference has NaN, exact 0 and lse -inf for rows that see no key), never
// write outside out and lse, and give the same bits with and without threads.
//
// An invalid call (about one input in eight) breaks one thing in a valid call; it must throw
// attend::Error and leave out and lse (and their padding) untouched.
//
// Any failure prints the call and aborts. See fuzz/README.md.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <attend/attend.hpp>

#include "support/attend_test.hpp"  // attend_test::only, shared with the tests

namespace {

using attend::Index;
using attend::TensorView;

// ---------------------------------------------------------------------------------------------
// Failure reporting

std::string g_call;  // a description of the current call, printed on failure

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\n==== attend_fuzz: FAILURE ====\n%s\ncall: %s\n", what.c_str(), g_call.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---------------------------------------------------------------------------------------------
// Thread pools, made once

const Eigen::ThreadPoolDevice* device_for(int threads) {
  struct Pool {
    Eigen::ThreadPool pool;
    Eigen::ThreadPoolDevice device;
    explicit Pool(int n) : pool(n), device(&pool, n) {}
  };
  static std::array<std::unique_ptr<Pool>, 5> pools;
  if (threads <= 1) return nullptr;
  auto& p = pools[static_cast<std::size_t>(threads)];
  if (!p) p = std::make_unique<Pool>(threads);
  return &p->device;
}

// ---------------------------------------------------------------------------------------------
// Strided buffers: a view of dims over a buffer with padding between rows, heads and batches.

template <int R>
using Dims = std::array<Index, R>;

template <int R>
Index extent(const Dims<R>& dims, const Dims<R>& strides) {
  Index last = 0;
  for (int r = 0; r < R; ++r) {
    if (dims[static_cast<std::size_t>(r)] == 0) return 0;
    last += (dims[static_cast<std::size_t>(r)] - 1) * strides[static_cast<std::size_t>(r)];
  }
  return last + 1;
}

/// Strides for a layout kind: 0 compact, 1 padded, 2 (B, N, H, D) order (rank 4 only), with `pad`
/// elements of padding (0..3) and `last` as the last dimension's stride (1 except for masks).
template <int R>
Dims<R> layout(const Dims<R>& d, int kind, Index pad, Index last = 1) {
  Dims<R> s{};
  if (kind == 2 && R == 4) {
    s[3] = last;
    s[1] = d[3] * last + pad;                 // heads: one row apart
    s[2] = std::max<Index>(d[1], 1) * s[1];   // rows: a row of all heads apart
    s[0] = std::max<Index>(d[2], 1) * s[2] + pad;
    return s;
  }
  Index acc = last;
  for (int r = R - 1; r >= 0; --r) {
    s[static_cast<std::size_t>(r)] = acc;
    acc = acc * std::max<Index>(d[static_cast<std::size_t>(r)], 1) + (kind == 1 ? pad * (R - r) : 0);
  }
  return s;
}

template <typename E, int R>
struct Strided {
  std::vector<E> buf;
  Dims<R> dims{}, strides{};
  Strided() = default;
  Strided(const Dims<R>& d, const Dims<R>& s, E pad_value) : buf(static_cast<std::size_t>(extent<R>(d, s)) + 1, pad_value), dims(d), strides(s) {}
  TensorView<E, R> view() { return TensorView<E, R>(buf.data(), dims, strides); }
  attend::ConstView<E, R> cview() const { return attend::ConstView<E, R>(buf.data(), dims, strides); }
  Index offset(const Dims<R>& ix) const {
    Index o = 0;
    for (int r = 0; r < R; ++r) o += ix[static_cast<std::size_t>(r)] * strides[static_cast<std::size_t>(r)];
    return o;
  }
  E& at(const Dims<R>& ix) { return buf[static_cast<std::size_t>(offset(ix))]; }
  const E& at(const Dims<R>& ix) const { return buf[static_cast<std::size_t>(offset(ix))]; }
};

/// Calls f(index) for every index of dims, row-major.
template <int R, typename F>
void for_each_index(const Dims<R>& dims, F&& f) {
  for (int r = 0; r < R; ++r) {
    if (dims[static_cast<std::size_t>(r)] <= 0) return;
  }
  Dims<R> ix{};
  while (true) {
    f(ix);
    int r = R - 1;
    while (r >= 0 && ++ix[static_cast<std::size_t>(r)] == dims[static_cast<std::size_t>(r)]) {
      ix[static_cast<std::size_t>(r)] = 0;
      --r;
    }
    if (r < 0) return;
  }
}

// A bool mask's storage: bools in unsigned char bytes (std::vector<bool> has no data()), so that
// padding can hold the byte 2, which is not a valid bool: UBSan reports any load of it.
struct BoolStrided {
  std::unique_ptr<bool[]> buf;
  std::size_t n = 0;
  Dims<4> dims{}, strides{};  // padded to rank 4
  int rank = 4;
};

// ---------------------------------------------------------------------------------------------
// The call

struct Shape {
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
};

template <typename T>
struct Call {
  using Acc = attend::acc_t<T>;
  Shape s{};
  Strided<T, 4> q, k, v, out;
  Strided<Acc, 3> lse;
  bool want_lse = false;
  int mask_kind = 0;  // 0 none, 1 keep, 2 additive
  int mask_rank = 4;
  BoolStrided keep;
  Strided<T, 4> bias;  // additive mask, padded to rank 4 (its rank-R view drops leading 1s)
  attend::Causal causal = attend::Causal::none;
  std::optional<double> scale;
  double dropout = 0.0;
  bool training = false;
  std::uint64_t seed = 0;
  std::uint32_t offset = 0;
  int threads = 1;
  bool workspace = false;

  template <int R>
  attend::Mask<T> mask_r() const {
    Dims<R> d{}, st{};
    for (int r = 0; r < R; ++r) {
      d[static_cast<std::size_t>(r)] = (mask_kind == 1 ? keep.dims : bias.dims)[static_cast<std::size_t>(4 - R + r)];
      st[static_cast<std::size_t>(r)] = (mask_kind == 1 ? keep.strides : bias.strides)[static_cast<std::size_t>(4 - R + r)];
    }
    if (mask_kind == 1) return attend::Mask<T>::keep(attend::ConstView<bool, R>(keep.buf.get(), d, st));
    return attend::Mask<T>::additive(attend::ConstView<T, R>(bias.buf.data(), d, st));
  }
  attend::Mask<T> mask() const {
    if (mask_kind == 0) return {};
    switch (mask_rank) {
      case 1: return mask_r<1>();
      case 2: return mask_r<2>();
      case 3: return mask_r<3>();
      default: return mask_r<4>();
    }
  }
  attend::CallOptions<T> options() {
    attend::CallOptions<T> o;
    o.mask = mask();
    o.causal = causal;
    if (want_lse) o.lse = lse.view();
    o.dropout_offset = offset;
    o.device = device_for(threads);
    return o;
  }
};

template <typename T>
std::string describe(const Call<T>& c) {
  std::ostringstream o;
  o << attend::type_name<T>() << " B=" << c.s.B << " Hq=" << c.s.Hq << " Hkv=" << c.s.Hkv << " Nq=" << c.s.Nq
    << " Nk=" << c.s.Nk << " D=" << c.s.D << " Dv=" << c.s.Dv << " causal=" << attend::causal_name(c.causal)
    << " mask=" << (c.mask_kind == 0 ? "none" : c.mask_kind == 1 ? "keep" : "additive") << "/rank" << c.mask_rank
    << " scale=" << (c.scale ? std::to_string(*c.scale) : "default") << " dropout=" << c.dropout
    << (c.training ? "(train)" : "(eval)") << " seed=" << c.seed << " offset=" << c.offset << " threads=" << c.threads
    << " lse=" << c.want_lse << " workspace=" << c.workspace;
  auto st = [&o](const char* n, const auto& x) {
    o << " " << n << "_strides=(";
    for (std::size_t r = 0; r < x.strides.size(); ++r) o << (r ? "," : "") << x.strides[r];
    o << ")";
  };
  st("q", c.q);
  st("k", c.k);
  st("v", c.v);
  st("out", c.out);
  return o.str();
}

Index pick(FuzzedDataProvider& fdp, std::initializer_list<Index> special, Index lo, Index hi) {
  if (fdp.ConsumeBool()) {
    const std::size_t i = fdp.ConsumeIntegralInRange<std::size_t>(0, special.size() - 1);
    return *(special.begin() + i);
  }
  return fdp.ConsumeIntegralInRange<Index>(lo, hi);
}

template <typename T>
T nan_t() {
  return T(std::numeric_limits<float>::quiet_NaN());
}

/// Draws a valid call; `nonempty` keeps B, Nq and Nk at least 1 (for invalid calls, where an empty
/// view would hide the broken stride or size).
template <typename T>
Call<T> draw(FuzzedDataProvider& fdp, bool nonempty) {
  using Acc = attend::acc_t<T>;
  Call<T> c;
  Shape& s = c.s;
  s.B = fdp.ConsumeIntegralInRange<Index>(0, 12) == 0 ? 0 : fdp.ConsumeIntegralInRange<Index>(1, 3);
  s.Hkv = fdp.ConsumeIntegralInRange<Index>(1, 3);
  s.Hq = s.Hkv * fdp.ConsumeIntegralInRange<Index>(1, 4);
  s.Nq = pick(fdp, {1, 2, 3, 4, 7, 8, 13, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129}, 0, 140);
  s.Nk = pick(fdp, {0, 1, 2, 3, 5, 16, 17, 31, 63, 64, 65, 127, 129, 513, 1031}, 0, 140);
  s.D = pick(fdp, {1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 31, 32, 63, 64, 65}, 1, 72);
  s.Dv = fdp.ConsumeBool() ? s.D : pick(fdp, {1, 2, 3, 5, 8, 16, 17, 63, 64, 65}, 1, 72);
  if (nonempty) {
    s.B = std::max<Index>(s.B, 1);
    s.Nq = std::max<Index>(s.Nq, 1);
    s.Nk = std::max<Index>(s.Nk, 1);
  }
  // Keep one execution in the milliseconds: shrink the largest of Nq, Nk until the work fits.
  const Index budget = 150000;
  auto work = [&s] { return s.B * s.Hq * std::max<Index>(s.Nq, 1) * std::max<Index>(s.Nk, 1) * (s.D + s.Dv); };
  while (work() > budget) {
    if (s.Nk >= s.Nq && s.Nk > 1) s.Nk = s.Nk / 2 + (s.Nk % 3 == 0);
    else if (s.Nq > 1) s.Nq = s.Nq / 2 + (s.Nq % 3 == 0);
    else if (s.D > 1 || s.Dv > 1) { s.D = std::max<Index>(1, s.D / 2); s.Dv = std::max<Index>(1, s.Dv / 2); }
    else break;
  }

  auto lay4 = [&fdp](const Dims<4>& d, bool packed_ok) {
    const int kind = fdp.ConsumeIntegralInRange<int>(0, packed_ok ? 2 : 1);
    const Index pad = fdp.ConsumeIntegralInRange<Index>(0, 3);
    return layout<4>(d, kind, pad);
  };
  const T nan = nan_t<T>();
  c.q = Strided<T, 4>({s.B, s.Hq, s.Nq, s.D}, lay4({s.B, s.Hq, s.Nq, s.D}, true), nan);
  c.k = Strided<T, 4>({s.B, s.Hkv, s.Nk, s.D}, lay4({s.B, s.Hkv, s.Nk, s.D}, true), nan);
  c.v = Strided<T, 4>({s.B, s.Hkv, s.Nk, s.Dv}, lay4({s.B, s.Hkv, s.Nk, s.Dv}, true), nan);
  T sentinel;
  std::memset(static_cast<void*>(&sentinel), 0xA5, sizeof(T));
  c.out = Strided<T, 4>({s.B, s.Hq, s.Nq, s.Dv}, lay4({s.B, s.Hq, s.Nq, s.Dv}, true), sentinel);
  c.want_lse = fdp.ConsumeBool();
  {
    Acc ls;
    std::memset(static_cast<void*>(&ls), 0x5A, sizeof(Acc));
    const Dims<3> ld = {s.B, s.Hq, s.Nq};
    c.lse = Strided<Acc, 3>(ld, layout<3>(ld, fdp.ConsumeIntegralInRange<int>(0, 1), fdp.ConsumeIntegralInRange<Index>(0, 2)), ls);
  }

  // Values: a seeded generator (cheap), a magnitude, and optional special patterns.
  std::mt19937 gen(fdp.ConsumeIntegral<std::uint32_t>());
  const double mags[] = {0.5, 1.0, 3.0, 8.0};
  const double qmag = mags[fdp.ConsumeIntegralInRange<int>(0, 3)];
  const double kmag = mags[fdp.ConsumeIntegralInRange<int>(0, 3)];
  const double vmag = mags[fdp.ConsumeIntegralInRange<int>(0, 3)];
  auto fill = [&gen](Strided<T, 4>& x, double mag) {
    std::uniform_real_distribution<double> u(-mag, mag);
    for_each_index<4>(x.dims, [&](const Dims<4>& ix) { x.at(ix) = static_cast<T>(u(gen)); });
  };
  fill(c.q, qmag);
  fill(c.k, kmag);
  fill(c.v, vmag);
  if (fdp.ConsumeIntegralInRange<int>(0, 7) == 0 && s.Nk > 1) {  // repeated keys: ties in the max
    for_each_index<4>(c.k.dims, [&](const Dims<4>& ix) { c.k.at(ix) = c.k.at({ix[0], ix[1], 0, ix[3]}); });
  }

  // Mask: kind, rank, broadcast pattern, layout, contents.
  c.mask_kind = fdp.ConsumeIntegralInRange<int>(0, 2);
  if (c.mask_kind != 0) {
    c.mask_rank = fdp.ConsumeIntegralInRange<int>(1, 4);
    const Dims<4> full = {s.B, s.Hq, s.Nq, s.Nk};
    Dims<4> md = {1, 1, 1, 1};
    for (int r = 4 - c.mask_rank; r < 4; ++r) md[static_cast<std::size_t>(r)] = fdp.ConsumeBool() ? full[static_cast<std::size_t>(r)] : 1;
    const int kind = fdp.ConsumeIntegralInRange<int>(0, 1);
    const Index pad = fdp.ConsumeIntegralInRange<Index>(0, 3);
    const Index last = fdp.ConsumeIntegralInRange<Index>(1, 2);
    const Dims<4> ms = layout<4>(md, kind, pad, last);
    const double p_hide = fdp.ConsumeIntegralInRange<int>(0, 9) / 10.0;
    const int empty_rows = fdp.ConsumeIntegralInRange<int>(0, 2);  // rows (of the mask's Nq) with no key
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    if (c.mask_kind == 1) {
      c.keep.n = static_cast<std::size_t>(extent<4>(md, ms)) + 1;
      c.keep.buf = std::make_unique<bool[]>(c.keep.n);
      std::memset(static_cast<void*>(c.keep.buf.get()), 2, c.keep.n);  // invalid bools in the padding
      c.keep.dims = md;
      c.keep.strides = ms;
      for_each_index<4>(md, [&](const Dims<4>& ix) {
        Index o = 0;
        for (int r = 0; r < 4; ++r) o += ix[static_cast<std::size_t>(r)] * ms[static_cast<std::size_t>(r)];
        c.keep.buf[static_cast<std::size_t>(o)] = !(u01(gen) < p_hide) && ix[2] >= empty_rows;
      });
    } else {
      c.bias = Strided<T, 4>(md, ms, nan);
      const double amag = mags[fdp.ConsumeIntegralInRange<int>(0, 3)] * (fdp.ConsumeBool() ? 1.0 : 10.0);
      std::uniform_real_distribution<double> u(-amag, amag);
      const T ninf = T(-std::numeric_limits<float>::infinity());
      for_each_index<4>(md, [&](const Dims<4>& ix) {
        c.bias.at(ix) = (u01(gen) < p_hide || ix[2] < empty_rows) ? ninf : static_cast<T>(u(gen));
      });
    }
  }

  c.causal = static_cast<attend::Causal>(fdp.ConsumeIntegralInRange<int>(0, 2));
  if (fdp.ConsumeBool()) {
    const double scales[] = {0.01, 0.125, 0.5, 1.0, 2.0, -0.3};
    c.scale = scales[fdp.ConsumeIntegralInRange<int>(0, 5)];
  }
  if (fdp.ConsumeBool()) {
    const double ps[] = {0.0, 0.1, 0.2, 0.5, 0.9, 1.0, 1e-9};
    c.dropout = ps[fdp.ConsumeIntegralInRange<int>(0, 6)];
    c.training = fdp.ConsumeIntegralInRange<int>(0, 4) != 0;
    c.seed = fdp.ConsumeIntegral<std::uint64_t>();
    c.offset = fdp.ConsumeIntegral<std::uint32_t>();
  }
  c.threads = fdp.ConsumeIntegralInRange<int>(1, 4);
  c.workspace = fdp.ConsumeBool();

  // Poison: NaN in q or k. v is left finite: under attend's rule that a zero weight contributes
  // nothing (include/attend/detail/kernel/zero_weights.hpp), whether an Inf value arrives depends on whether
  // its weight underflows to exactly 0, which differs between T's accumulation type and the double
  // reference; tests/robust/nonfinite_test.cpp checks non-finite values bit for bit on every path.
  // With dropout too: a NaN row stays NaN on every path even when every key is dropped
  // (tests/robust/nonfinite_test.cpp, NanRowWithEveryKeyDroppedAgreesOnEveryPath).
  const int poison = fdp.ConsumeIntegralInRange<int>(0, 15);
  if (poison == 1 && s.B * s.Hq * s.Nq > 0) {
    c.q.at({fdp.ConsumeIntegralInRange<Index>(0, s.B - 1), fdp.ConsumeIntegralInRange<Index>(0, s.Hq - 1),
            fdp.ConsumeIntegralInRange<Index>(0, s.Nq - 1), fdp.ConsumeIntegralInRange<Index>(0, s.D - 1)}) = nan;
  } else if (poison == 2 && s.B * s.Hkv * s.Nk > 0) {
    c.k.at({fdp.ConsumeIntegralInRange<Index>(0, s.B - 1), fdp.ConsumeIntegralInRange<Index>(0, s.Hkv - 1),
            fdp.ConsumeIntegralInRange<Index>(0, s.Nk - 1), fdp.ConsumeIntegralInRange<Index>(0, s.D - 1)}) = nan;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// References

struct Ref {
  std::vector<double> out;  // (B, Hq, Nq, Dv) compact
  std::vector<double> lse;  // (B, Hq, Nq)
};

/// The math path in double, on the T-rounded inputs (compact copies), with the same mask, causality,
/// scale and dropout (the keep-mask depends only on seed, offset and indices, not on the type).
template <typename T>
Ref reference(const Call<T>& c) {
  const Shape& s = c.s;
  using DT = attend::Tensor<double, 4>;
  DT q(s.B, s.Hq, s.Nq, s.D), k(s.B, s.Hkv, s.Nk, s.D), v(s.B, s.Hkv, s.Nk, s.Dv), out(s.B, s.Hq, s.Nq, s.Dv);
  attend::Tensor<double, 3> lse(s.B, s.Hq, s.Nq);
  for_each_index<4>(c.q.dims, [&](const Dims<4>& i) { q(i[0], i[1], i[2], i[3]) = static_cast<double>(c.q.at(i)); });
  for_each_index<4>(c.k.dims, [&](const Dims<4>& i) { k(i[0], i[1], i[2], i[3]) = static_cast<double>(c.k.at(i)); });
  for_each_index<4>(c.v.dims, [&](const Dims<4>& i) { v(i[0], i[1], i[2], i[3]) = static_cast<double>(c.v.at(i)); });
  attend::CallOptions<double> o;
  std::vector<double> bias;
  if (c.mask_kind == 1) {
    o.mask = attend::Mask<double>::keep(attend::ConstView<bool, 4>(c.keep.buf.get(), c.keep.dims, c.keep.strides));
  } else if (c.mask_kind == 2) {
    bias.resize(c.bias.buf.size());
    for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<double>(c.bias.buf[i]);
    o.mask = attend::Mask<double>::additive(attend::ConstView<double, 4>(bias.data(), c.bias.dims, c.bias.strides));
  }
  o.causal = c.causal;
  o.lse = lse;
  o.dropout_offset = c.offset;
  attend::Attend<double> a(c.dropout, false, c.scale, {}, c.seed);
  a.train(c.training);
  a.forward(q, k, v, out, o);
  return {std::vector<double>(out.data(), out.data() + out.size()), std::vector<double>(lse.data(), lse.data() + lse.size())};
}

bool same_value(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= tol;
}

/// A naive loop in double, independent of the library's kernels (it shares only the Philox draws),
/// for small calls: checks the math path that serves as the reference.
template <typename T>
void check_reference_naive(const Call<T>& c, const Ref& ref) {
  const Shape& s = c.s;
  const double scale = c.scale ? *c.scale : 1.0 / std::sqrt(static_cast<double>(s.D));
  const attend::detail::Dropout drop = attend::detail::Dropout::make(c.dropout, c.training, c.seed, c.offset, s.Hq);
  const Index off = c.causal == attend::Causal::bottom_right ? s.Nk - s.Nq : 0;
  std::vector<double> sc(static_cast<std::size_t>(std::max<Index>(s.Nk, 1)));
  for (Index b = 0; b < s.B; ++b)
    for (Index h = 0; h < s.Hq; ++h)
      for (Index i = 0; i < s.Nq; ++i) {
        const Index hk = h / (s.Hq / s.Hkv);
        double m = -INFINITY;
        bool nan = false;
        for (Index j = 0; j < s.Nk; ++j) {
          double x = 0;
          for (Index d = 0; d < s.D; ++d) x += static_cast<double>(c.q.at({b, h, i, d})) * static_cast<double>(c.k.at({b, hk, j, d}));
          x *= scale;
          const Dims<4> mi = {b, h, i, j};
          auto midx = [&](const Dims<4>& dims) {
            Dims<4> r{};
            for (int t = 0; t < 4; ++t) r[static_cast<std::size_t>(t)] = dims[static_cast<std::size_t>(t)] == 1 ? 0 : mi[static_cast<std::size_t>(t)];
            return r;
          };
          if (c.causal != attend::Causal::none && j > i + off) {
            x = -INFINITY;
          } else if (c.mask_kind == 1) {
            const Dims<4> r = midx(c.keep.dims);
            Index o = 0;
            for (int t = 0; t < 4; ++t) o += r[static_cast<std::size_t>(t)] * c.keep.strides[static_cast<std::size_t>(t)];
            if (!c.keep.buf[static_cast<std::size_t>(o)]) x = -INFINITY;
          } else if (c.mask_kind == 2) {
            x += static_cast<double>(c.bias.at(midx(c.bias.dims)));
          }
          sc[static_cast<std::size_t>(j)] = x;
          nan = nan || std::isnan(x);
          if (x > m) m = x;
        }
        const std::size_t row = static_cast<std::size_t>((b * s.Hq + h) * s.Nq + i);
        const double scale_v = drop.active ? drop.keep_scale : 1.0;
        double l = 0;
        if (!nan && m != -INFINITY) {
          for (Index j = 0; j < s.Nk; ++j) l += std::exp(sc[static_cast<std::size_t>(j)] - m);
        }
        const double want_lse = nan ? NAN : m == -INFINITY ? -INFINITY : m + std::log(l);
        double mag = 0;  // the largest finite |score|
        for (Index j = 0; j < s.Nk; ++j) {
          const double x = std::fabs(sc[static_cast<std::size_t>(j)]);
          if (std::isfinite(x)) mag = std::max(mag, x);
        }
        if (!same_value(ref.lse[row], want_lse, 1e-9 * (1 + mag))) {
          fail("the double math path's lse differs from the naive loop at row " + std::to_string(row) + ": " +
               std::to_string(ref.lse[row]) + " vs " + std::to_string(want_lse));
        }
        for (Index d = 0; d < s.Dv; ++d) {
          double o = 0, vmax = 0;
          if (nan) {
            o = NAN;
          } else if (m != -INFINITY) {
            for (Index j = 0; j < s.Nk; ++j) {
              double p = std::exp(sc[static_cast<std::size_t>(j)] - m) / l;
              if (drop.active && !drop.keep(b, h, i, j)) p = 0;
              o += p * static_cast<double>(c.v.at({b, hk, j, d}));
              vmax = std::max(vmax, std::fabs(static_cast<double>(c.v.at({b, hk, j, d}))));
            }
            o *= scale_v;
          }
          const double got = ref.out[row * static_cast<std::size_t>(s.Dv) + static_cast<std::size_t>(d)];
          if (!same_value(got, o, 1e-9 * (1 + vmax * scale_v) * (1 + mag))) {
            fail("the double math path differs from the naive loop at row " + std::to_string(row) + ", d " +
                 std::to_string(d) + ": " + std::to_string(got) + " vs " + std::to_string(o));
          }
        }
      }
}

// ---------------------------------------------------------------------------------------------
// Running and checking one path

struct Route {
  const char* name;
  bool flash;
  attend::FlashAttentionConfig config;
};

/// A config with exactly the given paths enabled (attend_test::only(p) enables one).
attend::FlashAttentionConfig enabled(bool flash, bool mem_efficient, bool math) {
  attend::FlashAttentionConfig c;
  c.enable_flash = flash;
  c.enable_mem_efficient = mem_efficient;
  c.enable_math = math;
  return c;
}

template <typename T>
struct Result {
  std::vector<T> out;                      // the whole out buffer, padding included
  std::vector<attend::acc_t<T>> lse;       // the whole lse buffer
};

template <typename T>
Result<T> run_route(Call<T>& c, const Route& r, int threads, bool workspace) {
  Strided<T, 4> out = c.out;  // fresh copies of the sentinel-filled buffers
  Strided<attend::acc_t<T>, 3> lse = c.lse;
  attend::CallOptions<T> o = c.options();
  o.device = device_for(threads);
  if (c.want_lse) o.lse = lse.view();
  attend::Workspace ws;
  if (workspace) o.workspace = &ws;
  try {
    attend::Attend<T> a(c.dropout, r.flash, c.scale, r.config, c.seed);
    a.train(c.training);
    a.forward(c.q.cview(), c.k.cview(), c.v.cview(), out.view(), o);
  } catch (const std::exception& e) {
    fail(std::string("a valid call threw on route ") + r.name + ": " + e.what());
  }
  return {std::move(out.buf), std::move(lse.buf)};
}

/// The distance from 1 to the next value of T (Eigen's NumTraits<half>::epsilon() is 2^-13, not
/// half's 2^-10, so it is spelled out here).
template <typename T>
double epsilon_of() {
  if constexpr (std::is_same_v<T, double>) return std::ldexp(1.0, -52);
  else if constexpr (std::is_same_v<T, float>) return std::ldexp(1.0, -23);
  else if constexpr (std::is_same_v<T, Eigen::bfloat16>) return std::ldexp(1.0, -7);
  else return std::ldexp(1.0, -10);
}

template <typename T>
void check_against(const Call<T>& c, const Route& r, const Result<T>& got, const Ref& ref) {
  using Acc = attend::acc_t<T>;
  const Shape& s = c.s;
  const double eps_t = epsilon_of<T>();
  const double eps_a = epsilon_of<Acc>();
  auto maxabs = [](const Strided<T, 4>& x) {
    double m = 0;
    for_each_index<4>(x.dims, [&](const Dims<4>& i) {
      const double a = std::fabs(static_cast<double>(x.at(i)));
      if (std::isfinite(a)) m = std::max(m, a);
    });
    return m;
  };
  double bmax = 0;
  if (c.mask_kind == 2) bmax = maxabs(c.bias);
  const double scale = std::fabs(c.scale ? *c.scale : 1.0 / std::sqrt(static_cast<double>(s.D)));
  const double smax = scale * static_cast<double>(s.D) * maxabs(c.q) * maxabs(c.k) + bmax;  // |score| bound
  const double ks = (c.training && c.dropout > 0 && c.dropout < 1) ? 1.0 / (1.0 - c.dropout) : 1.0;
  const double err = 64.0 * eps_a * (smax + static_cast<double>(s.D + s.Nk) + 1.0);
  const double tol_out = ks * maxabs(c.v) * (2.0 * eps_t + err) + 1e-30;
  const double tol_lse = err + 4.0 * eps_a * std::fabs(smax);

  // Every element of out; every byte of its padding unchanged.
  T sentinel;
  std::memset(static_cast<void*>(&sentinel), 0xA5, sizeof(T));
  std::vector<char> inside(got.out.size(), 0);
  for_each_index<4>(c.out.dims, [&](const Dims<4>& i) {
    const std::size_t at = static_cast<std::size_t>(c.out.offset(i));
    inside[at] = 1;
    const std::size_t row = static_cast<std::size_t>((i[0] * s.Hq + i[1]) * s.Nq + i[2]);
    const double want = ref.out[row * static_cast<std::size_t>(s.Dv) + static_cast<std::size_t>(i[3])];
    const double have = static_cast<double>(got.out[at]);
    const bool empty_row = ref.lse[row] == -INFINITY;
    if (empty_row ? have != 0.0 : !same_value(have, want, tol_out)) {
      std::ostringstream m;
      m << "route " << r.name << ": out(" << i[0] << "," << i[1] << "," << i[2] << "," << i[3] << ") = " << have
        << ", reference " << want << ", tolerance " << tol_out << (empty_row ? " (row sees no key: must be 0)" : "");
      fail(m.str());
    }
  });
  for (std::size_t at = 0; at < got.out.size(); ++at) {
    if (!inside[at] && std::memcmp(&got.out[at], &sentinel, sizeof(T)) != 0) {
      fail(std::string("route ") + r.name + ": out's padding was written at element " + std::to_string(at));
    }
  }
  Acc lsent;
  std::memset(static_cast<void*>(&lsent), 0x5A, sizeof(Acc));
  std::vector<char> lin(got.lse.size(), 0);
  if (c.want_lse) {
    for_each_index<3>(c.lse.dims, [&](const Dims<3>& i) {
      const std::size_t at = static_cast<std::size_t>(c.lse.offset(i));
      lin[at] = 1;
      const std::size_t row = static_cast<std::size_t>((i[0] * s.Hq + i[1]) * s.Nq + i[2]);
      const double have = static_cast<double>(got.lse[at]);
      if (!same_value(have, ref.lse[row], tol_lse)) {
        std::ostringstream m;
        m << "route " << r.name << ": lse(" << i[0] << "," << i[1] << "," << i[2] << ") = " << have << ", reference "
          << ref.lse[row] << ", tolerance " << tol_lse;
        fail(m.str());
      }
    });
  }
  for (std::size_t at = 0; at < got.lse.size(); ++at) {
    if (!lin[at] && std::memcmp(&got.lse[at], &lsent, sizeof(Acc)) != 0) {
      fail(std::string("route ") + r.name + ": lse's buffer was written outside the view at " + std::to_string(at));
    }
  }
}

template <typename T>
void run_valid(FuzzedDataProvider& fdp) {
  Call<T> c = draw<T>(fdp, false);
  g_call = describe(c);
  const Ref ref = reference(c);
  if (c.s.B * c.s.Hq * c.s.Nq * c.s.Nk * (c.s.D + c.s.Dv) <= 40000) check_reference_naive(c, ref);

  const bool rf = fdp.ConsumeBool(), rm = fdp.ConsumeBool(), rma = fdp.ConsumeBool();
  const Route routes[] = {
      {"flash", true, attend_test::only(attend::Path::flash)},
      {"mem_efficient", true, attend_test::only(attend::Path::mem_efficient)},
      {"math", true, attend_test::only(attend::Path::math)},
      {"flash=false", false, {}},
      {"random config", true, enabled(rf, rm, rma || !(rf || rm))},
  };
  const int again = fdp.ConsumeIntegralInRange<int>(0, 4);  // a route rerun without threads, bitwise
  for (int ri = 0; ri < 5; ++ri) {
    const Result<T> got = run_route(c, routes[ri], c.threads, c.workspace);
    check_against(c, routes[ri], got, ref);
    if (ri == again && c.threads > 1) {
      const Result<T> one = run_route(c, routes[ri], 1, !c.workspace);
      if (got.out.size() != one.out.size() ||
          std::memcmp(got.out.data(), one.out.data(), sizeof(T) * got.out.size()) != 0 ||
          std::memcmp(got.lse.data(), one.lse.data(), sizeof(attend::acc_t<T>) * got.lse.size()) != 0) {
        fail(std::string("route ") + routes[ri].name + ": " + std::to_string(c.threads) +
             " threads and 1 thread give different bits");
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Invalid calls: one thing broken, attend::Error expected, nothing written.

template <typename T>
void run_invalid(FuzzedDataProvider& fdp) {
  using Acc = attend::acc_t<T>;
  Call<T> c = draw<T>(fdp, true);
  const Shape& s = c.s;
  const int what = fdp.ConsumeIntegralInRange<int>(0, 19);
  const Route routes[] = {{"flash", true, attend_test::only(attend::Path::flash)},
                          {"mem_efficient", true, attend_test::only(attend::Path::mem_efficient)},
                          {"math", true, attend_test::only(attend::Path::math)},
                          {"flash=false", false, {}},
                          {"default", true, {}}};
  Route route = routes[fdp.ConsumeIntegralInRange<int>(0, 4)];
  const Index bump = fdp.ConsumeIntegralInRange<Index>(1, 3);
  const int dim = fdp.ConsumeIntegralInRange<int>(0, 3);
  // The views a call sees; corrupted below. Their buffers stay those of the valid call: a call that
  // is refused reads nothing, and one that is wrongly accepted reads out of bounds (ASan).
  attend::ConstView<T, 4> q = c.q.cview(), k = c.k.cview(), v = c.v.cview();
  TensorView<T, 4> out = c.out.view();
  attend::CallOptions<T> o = c.options();
  o.lse = c.lse.view();
  auto with_dim = [](auto view, int d, Index value) {
    auto dims = view.dims();
    dims[static_cast<std::size_t>(d)] = value;
    return decltype(view)(view.data(), dims, view.strides());
  };
  auto with_stride = [](auto view, int d, Index value) {
    auto st = view.strides();
    st[static_cast<std::size_t>(d)] = value;
    return decltype(view)(view.data(), view.dims(), st);
  };
  std::string expect;
  switch (what) {
    case 0: k = with_dim(k, 0, s.B + bump); expect = "batch size B"; break;
    case 1: v = with_dim(v, 0, s.B + bump); expect = "batch size B"; break;
    case 2: k = with_dim(k, 3, s.D + bump); expect = "head dimension D"; break;
    case 3: v = with_dim(v, 1, s.Hkv + bump); expect = "number of heads Hkv"; break;
    case 4: v = with_dim(v, 2, s.Nk + bump); expect = "sequence length Nk"; break;
    case 5:
      q = with_dim(q, 1, s.Hkv * (s.Hq / s.Hkv) + s.Hkv + 1);
      k = with_dim(k, 1, s.Hkv + 1);
      v = with_dim(v, 1, s.Hkv + 1);
      if (q.dimension(1) % k.dimension(1) == 0) q = with_dim(q, 1, q.dimension(1) + 1);
      expect = "must be a multiple of the key/value heads";
      break;
    case 6:
      q = with_dim(q, 2, std::max<Index>(q.dimension(2), 1));
      q = with_dim(q, 3, std::max<Index>(q.dimension(3), 1));
      q = with_stride(q, dim, fdp.ConsumeBool() ? 0 : -bump);
      expect = "strides must be positive";
      break;
    case 7:
      if (s.Nk == 0) k = with_dim(k, 2, 1), v = with_dim(v, 2, 1);
      k = with_stride(k, dim, -k.stride(dim) - bump);
      expect = "strides must be positive";
      break;
    case 8:
      if (s.Nk == 0) k = with_dim(k, 2, 1), v = with_dim(v, 2, 1);
      v = with_stride(v, 3, 1 + bump);
      expect = "contiguous in its last dimension";
      break;
    case 9:  // a larger size may also make out's elements overlap under its old strides
      out = with_dim(out, dim, out.dimension(dim) + bump);
      expect = "out has shape|two of its elements share memory";
      break;
    case 10:  // out aimed at q's memory
      q = with_dim(q, 2, std::max<Index>(q.dimension(2), 1));
      out = with_dim(out, 2, std::max<Index>(out.dimension(2), 1));
      q = attend::ConstView<T, 4>(c.out.buf.data(), q.dims(), q.strides());
      o.lse = {};
      expect = "out overlaps the memory of q";
      break;
    case 11:  // out rows overlap each other
      out = with_dim(out, 2, std::max<Index>(out.dimension(2), 2));
      out = with_dim(out, 3, std::max<Index>(out.dimension(3), 2));
      out = with_stride(out, 2, out.dimension(3) - 1);
      out = with_stride(out, 1, out.dimension(2) * out.dimension(3));
      out = with_stride(out, 0, out.dimension(1) * out.stride(1));
      q = with_dim(q, 2, out.dimension(2));
      v = with_dim(v, 3, out.dimension(3));
      o.lse = {};  // its shape follows Nq, which may have changed
      expect = "two of its elements share memory";
      break;
    case 12: o.lse = with_dim(c.lse.view(), dim % 3, c.lse.dims[static_cast<std::size_t>(dim % 3)] + bump); expect = "lse has shape"; break;
    case 13: {  // a mask dimension neither full nor 1
      const Dims<4> full = {s.B, s.Hq, s.Nq, s.Nk};
      const Index bad = full[static_cast<std::size_t>(dim)] + 1 + bump;
      static bool keep_data[1] = {true};
      Dims<4> md = {1, 1, 1, 1};
      md[static_cast<std::size_t>(dim)] = bad;
      o.mask = attend::Mask<T>::keep(attend::ConstView<bool, 4>(keep_data, md, {0, 0, 0, 0}));
      expect = "does not broadcast";
      break;
    }
    case 14: {
      const double bad[] = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(), 0.0, -0.0};
      c.scale = bad[fdp.ConsumeIntegralInRange<int>(0, 3)];
      expect = "scale must be finite and non-zero";
      break;
    }
    case 15: {
      const double bad[] = {std::numeric_limits<double>::quiet_NaN(), -1e-9, 1.0000001, -2.0};
      c.dropout = bad[fdp.ConsumeIntegralInRange<int>(0, 3)];
      expect = "dropout must be a probability";
      break;
    }
    case 16: route = {"none enabled", true, enabled(false, false, false)}; expect = "no enabled path"; break;
    case 17: o.causal = static_cast<attend::Causal>(3 + bump); expect = "causal must be"; break;
    case 18: {  // a negative mask stride on a full dimension
      static bool keep_data[64] = {};
      Dims<4> md = {1, 1, 1, 1};
      md[3] = std::max<Index>(s.Nk, 2);
      k = with_dim(k, 2, md[3]);
      v = with_dim(v, 2, md[3]);
      o.mask = attend::Mask<T>::keep(attend::ConstView<bool, 4>(keep_data + 63, md, {0, 0, 0, -1}));
      expect = "strides of non-broadcast dimensions must be positive";
      break;
    }
    default:
      q = with_dim(q, 3, 0);
      k = with_dim(k, 3, 0);
      expect = "head dimension D must be at least 1";
      break;
  }
  g_call = describe(c) + " | invalid #" + std::to_string(what) + " on route " + route.name;
  const std::vector<T> out0 = c.out.buf;
  const std::vector<Acc> lse0 = c.lse.buf;
  const std::vector<T> q0 = c.q.buf;
  std::string message;
  bool threw = false;
  try {
    attend::Attend<T> a(c.dropout, route.flash, c.scale, route.config, c.seed);
    a.train(c.training);
    if (fdp.ConsumeBool()) {
      a.forward(q, k, v, out, o);
    } else {
      (void)a.dispatch(q, k, v, o);
      if (what == 9 || what == 10 || what == 11) threw = true, message = expect;  // dispatch sees no out
    }
  } catch (const attend::Error& e) {
    threw = true;
    message = e.what();
  } catch (const std::exception& e) {
    fail(std::string("an invalid call threw something other than attend::Error: ") + e.what());
  }
  if (!threw) fail("an invalid call was accepted (expected an error containing \"" + expect + "\")");
  bool named = false;  // expect: alternatives separated by '|'
  for (std::size_t at = 0; at <= expect.size();) {
    const std::size_t bar = std::min(expect.find('|', at), expect.size());
    named = named || message.find(expect.substr(at, bar - at)) != std::string::npos;
    at = bar + 1;
  }
  if (!named) fail("an invalid call's message \"" + message + "\" lacks \"" + expect + "\"");
  if (std::memcmp(out0.data(), c.out.buf.data(), sizeof(T) * out0.size()) != 0) fail("a refused call wrote out");
  if (std::memcmp(lse0.data(), c.lse.buf.data(), sizeof(Acc) * lse0.size()) != 0) fail("a refused call wrote lse");
  if (std::memcmp(q0.data(), c.q.buf.data(), sizeof(T) * q0.size()) != 0) fail("a refused call wrote q");
}

template <typename T>
void one(FuzzedDataProvider& fdp, bool invalid) {
  if (invalid) {
    run_invalid<T>(fdp);
  } else {
    run_valid<T>(fdp);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const std::uint8_t head = fdp.ConsumeIntegral<std::uint8_t>();
  const bool invalid = (head >> 2) % 8 == 7;
  switch (head & 3) {
    case 0: one<float>(fdp, invalid); break;
    case 1: one<double>(fdp, invalid); break;
    case 2: one<Eigen::bfloat16>(fdp, invalid); break;
    default: one<Eigen::half>(fdp, invalid); break;
  }
  return 0;
}
