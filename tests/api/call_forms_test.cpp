// The forms a call takes, in every element type and on every path: q, k, v as strided views into one
// packed buffer and out into a padded one; results through views at any alignment; masks and lse through non-contiguous views; Eigen tensors
// and maps as arguments; the operator() that returns a tensor; a caller's Workspace full of garbage;
// the empty sizes Nk = 0, Nq = 0, B = 0 and Hq = 0. Each gives bitwise what the plain call gives.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::Causal;
using attend::Index;
using attend::Path;
using attend_test::Inputs;
using attend_test::kAllPaths;

template <typename T>
class CallForms : public ::testing::Test {};
TYPED_TEST_SUITE(CallForms, attend_test::AllTypes, attend_test::TypeNames);

// q, k and v as strided views into one packed (B, N, 3, H, D) projection buffer, and the output written
// through a view into a (B, N, H * Dv + pad) buffer: bitwise the result of contiguous tensors, with
// the padding untouched.
TYPED_TEST(CallForms, StridedViewsIntoPackedBuffers) {
  using T = TypeParam;
  const Index B = 2, N = 70, H = 3, D = 16, pad = 3, row = H * D + pad;
  const Inputs in = attend_test::random_inputs(B, H, H, N, N, D, D, 105);
  // Pack: buf[b, n, s, h, d] with s = 0, 1, 2 for q, k, v.
  std::vector<T> buf(static_cast<std::size_t>(B * N * 3 * H * D));
  auto at = [&](Index b, Index n, Index s, Index h, Index d) {
    return static_cast<std::size_t>((((b * N + n) * 3 + s) * H + h) * D + d);
  };
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index n = 0; n < N; ++n)
        for (Index d = 0; d < D; ++d) {
          const std::size_t src = static_cast<std::size_t>(((b * H + h) * N + n) * D + d);
          buf[at(b, n, 0, h, d)] = static_cast<T>(in.q[src]);
          buf[at(b, n, 1, h, d)] = static_cast<T>(in.k[src]);
          buf[at(b, n, 2, h, d)] = static_cast<T>(in.v[src]);
        }
  const std::array<Index, 4> dims = {B, H, N, D}, strides = {N * 3 * H * D, D, 3 * H * D, 1};
  const attend::ConstView<T, 4> q(buf.data(), dims, strides), k(buf.data() + H * D, dims, strides),
      v(buf.data() + 2 * H * D, dims, strides);
  const T sentinel = static_cast<T>(-777.0);
  for (const Causal c : {Causal::none, Causal::top_left}) {
    for (const Path p : kAllPaths) {
      std::vector<T> outbuf(static_cast<std::size_t>(B * N * row), sentinel);
      const attend::TensorView<T, 4> out(outbuf.data(), dims, {N * row, D, row, 1});
      std::vector<attend::acc_t<T>> lse(static_cast<std::size_t>(B * H * N));
      attend::CallOptions<T> o;
      o.causal = c;
      o.lse = attend::TensorView<attend::acc_t<T>, 3>(lse.data(), {B, H, N});
      attend_test::forward(attend_test::make_attend<T>(attend_test::forced(p)), q, k, v, out, o);

      Inputs cin = in;
      cin.causal = c;
      const auto want = attend_test::run<T>(cin, attend_test::on(p));
      const std::string w = std::string("path ") + attend::path_name(p) + " causal " + attend::causal_name(c);
      int mismatches = 0;
      for (Index b = 0; b < B; ++b)
        for (Index n = 0; n < N; ++n)
          for (Index x = 0; x < row; ++x) {
            const T got = outbuf[static_cast<std::size_t>((b * N + n) * row + x)];
            if (x >= H * D) {
              mismatches += std::memcmp(&got, &sentinel, sizeof(T)) != 0;
              continue;
            }
            const Index h = x / D, d = x % D;
            const T expected = want.raw[static_cast<std::size_t>(((b * H + h) * N + n) * D + d)];
            mismatches += std::memcmp(&got, &expected, sizeof(T)) != 0;
          }
      EXPECT_EQ(mismatches, 0) << w << ": strided result differs from the contiguous one (or padding written)";
      EXPECT_TRUE(attend_test::same_bits(lse, want.raw_lse)) << w;
    }
  }
}

// A result buffer whose view starts `offset` elements past a 64-byte boundary, with sentinels on
// both sides of the view.
template <typename T>
class OffsetBuffer {
 public:
  static constexpr Index kGuard = 64;  // sentinel elements on each side (at least one 64-byte line)
  OffsetBuffer(Index n, Index offset) : raw_(static_cast<std::size_t>(n + 3 * kGuard)), n_(n) {
    std::memset(static_cast<void*>(raw_.data()), 0xA5, raw_.size() * sizeof(T));
    const auto addr = reinterpret_cast<std::uintptr_t>(raw_.data() + kGuard);
    const Index to_line = static_cast<Index>((64 - addr % 64) % 64 / sizeof(T));
    begin_ = kGuard + to_line + offset;
  }
  T* data() { return raw_.data() + begin_; }
  std::vector<T> values() const { return {raw_.begin() + begin_, raw_.begin() + begin_ + n_}; }
  /// Elements outside the view that are no longer the sentinel's bytes.
  int touched_outside() const {
    int n = 0;
    for (Index i = 0; i < static_cast<Index>(raw_.size()); ++i) {
      if (i >= begin_ && i < begin_ + n_) continue;
      const auto* b = reinterpret_cast<const unsigned char*>(&raw_[static_cast<std::size_t>(i)]);
      for (std::size_t j = 0; j < sizeof(T); ++j) n += b[j] != 0xA5;
    }
    return n;
  }

 private:
  std::vector<T> raw_;
  Index n_, begin_ = 0;
};

// The forward's out and the backward's dq, dk and dv written through views at the offsets given
// from a 64-byte boundary, on every path: bitwise the results at offset 0, nothing written around
// the views. A program built for the baseline hands attend Eigen's 16-byte-aligned tensors, and a
// view may start anywhere. D = Dv = 64 sends the flash and mem_efficient results through the row
// writer (kernel/epilogue.hpp, write_rows), whose aligned route then has packets straddling two
// rows; N = 70 ends in partial tiles.
template <typename T>
void expect_same_bits_at_offsets(Index B, Index H, Index N, const std::vector<Index>& offsets,
                                 const std::vector<Path>& paths) {
  const Index D = 64;
  const Inputs in = attend_test::random_inputs(B, H, H, N, N, D, D, 611);
  const std::vector<T> q = attend_test::to_t<T>(in.q), k = attend_test::to_t<T>(in.k), v = attend_test::to_t<T>(in.v);
  const std::vector<T> dout = attend_test::to_t<T>(attend_test::randn(B * H * N * D, 612));
  const std::array<Index, 4> dims = {B, H, N, D};
  const attend::ConstView<T, 4> qv(q.data(), dims), kv(k.data(), dims), vv(v.data(), dims), dv(dout.data(), dims);
  const Index n = B * H * N * D;
  for (const Path p : paths) {
    const auto a = attend_test::make_attend<T>(attend_test::forced(p));
    std::vector<T> out0, dq0, dk0, dv0;
    for (const Index offset : offsets) {
      OffsetBuffer<T> out(n, offset), dq(n, offset), dk(n, offset), dvb(n, offset);
      std::vector<attend::acc_t<T>> lse(static_cast<std::size_t>(B * H * N));
      attend::CallOptions<T> o;
      o.lse = attend::TensorView<attend::acc_t<T>, 3>(lse.data(), {B, H, N});
      attend_test::forward(a, qv, kv, vv, attend::TensorView<T, 4>(out.data(), dims), o);
      const attend::GradientViews<T> grads{attend::TensorView<T, 4>(dq.data(), dims),
                                           attend::TensorView<T, 4>(dk.data(), dims),
                                           attend::TensorView<T, 4>(dvb.data(), dims), {}};
      attend_test::backward(a, qv, kv, vv, attend::ConstView<T, 4>(out.data(), dims),
                            attend::ConstView<attend::acc_t<T>, 3>(lse.data(), {B, H, N}), dv, grads);
      const std::string w = std::string("path ") + attend::path_name(p) + " offset " + std::to_string(offset);
      EXPECT_EQ(out.touched_outside() + dq.touched_outside() + dk.touched_outside() + dvb.touched_outside(), 0)
          << w << ": written outside a view";
      if (out0.empty()) {
        out0 = out.values(), dq0 = dq.values(), dk0 = dk.values(), dv0 = dvb.values();
        continue;
      }
      EXPECT_TRUE(attend_test::same_bits(out.values(), out0)) << w << ": out";
      EXPECT_TRUE(attend_test::same_bits(dq.values(), dq0)) << w << ": dq";
      EXPECT_TRUE(attend_test::same_bits(dk.values(), dk0)) << w << ": dk";
      EXPECT_TRUE(attend_test::same_bits(dvb.values(), dv0)) << w << ": dv";
    }
  }
}

// Every offset from a 64-byte boundary, every path.
TYPED_TEST(CallForms, ResultsAtAnyAlignment) {
  using T = TypeParam;
  std::vector<Index> offsets;
  for (Index o = 0; o < 64 / static_cast<Index>(sizeof(T)); ++o) offsets.push_back(o);
  expect_same_bits_at_offsets<T>(2, 2, 70, offsets, {std::begin(kAllPaths), std::end(kAllPaths)});
}

// Results of 32 MiB and more (TileTraits::kStreamOutputBytes), which the tiled paths write with
// non-temporal stores where a packet is aligned for them: the same bits at 0, 1, and half a packet.
TEST(CallFormsStreamed, ResultsAtAnyAlignment) {
  const std::vector<Path> tiled = {Path::flash, Path::mem_efficient};
  expect_same_bits_at_offsets<float>(1024, 4, 32, {0, 1, 7}, tiled);           // 32 MiB each
  expect_same_bits_at_offsets<Eigen::bfloat16>(2048, 4, 32, {0, 1, 9}, tiled);  // 32 MiB each
}

// Masks and lse read and written through non-contiguous views: an additive (Nq, Nk) mask that is
// the transpose of an (Nk, Nq) buffer, a bool (B, 1, Nq, Nk) mask with padded rows, and lse written
// into a (B, Nq, Hq) buffer. Bitwise the results of contiguous masks and lse.
TYPED_TEST(CallForms, StridedMaskAndLseViews) {
  using T = TypeParam;
  using Acc = attend::acc_t<T>;
  const Index B = 2, H = 2, Nq = 67, Nk = 70, pad = 5;
  Inputs add = attend_test::random_inputs(B, H, H, Nq, Nk, 16, 8, 113);
  attend_test::set_additive_mask(add, {Nq, Nk}, [](Index, Index, Index i, Index j) {
    return (i * 7 + j) % 11 == 0 ? -attend_test::kInf : 0.1 * static_cast<double>((i + 2 * j) % 9);
  });
  Inputs keep = add;
  attend_test::set_keep_mask(keep, {B, 1, Nq, Nk}, [](Index b, Index, Index i, Index j) { return (b + i + j) % 3 != 0; });
  const auto q = attend_test::to_t<T>(add.q), k = attend_test::to_t<T>(add.k), v = attend_test::to_t<T>(add.v);
  const attend::ConstView<T, 4> qv(q.data(), {B, H, Nq, 16}), kv(k.data(), {B, H, Nk, 16}), vv(v.data(), {B, H, Nk, 8});

  std::vector<T> transposed(static_cast<std::size_t>(Nk * Nq));  // buffer (Nk, Nq)
  for (Index i = 0; i < Nq; ++i)
    for (Index j = 0; j < Nk; ++j)
      transposed[static_cast<std::size_t>(j * Nq + i)] = static_cast<T>(add.mask_add[static_cast<std::size_t>(i * Nk + j)]);
  std::unique_ptr<bool[]> padded(new bool[static_cast<std::size_t>(B * Nq * (Nk + pad))]);
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < Nq; ++i)
      for (Index j = 0; j < Nk + pad; ++j)
        padded[static_cast<std::size_t>((b * Nq + i) * (Nk + pad) + j)] =
            j < Nk && keep.mask_keep[static_cast<std::size_t>((b * Nq + i) * Nk + j)] != 0;

  for (const Path p : kAllPaths) {
    const auto a = attend_test::make_attend<T>(attend_test::forced(p));
    for (int which = 0; which < 2; ++which) {
      const Inputs& in = which == 0 ? add : keep;
      const auto want = attend_test::run<T>(in, attend_test::on(p));
      attend::CallOptions<T> o;
      if (which == 0) {
        o.mask = attend::Mask<T>::additive(attend::ConstView<T, 2>(transposed.data(), {Nq, Nk}, {1, Nq}));
      } else {
        o.mask = attend::Mask<T>::keep(
            attend::ConstView<bool, 4>(padded.get(), {B, 1, Nq, Nk}, {Nq * (Nk + pad), 0, Nk + pad, 1}));
      }
      std::vector<Acc> lse(static_cast<std::size_t>(B * Nq * H));  // (B, Nq, Hq) buffer
      o.lse = attend::TensorView<Acc, 3>(lse.data(), {B, H, Nq}, {Nq * H, 1, H});
      std::vector<T> out(static_cast<std::size_t>(in.out_size()));
      attend_test::forward(a, qv, kv, vv, attend::TensorView<T, 4>(out.data(), {B, H, Nq, 8}), o);
      const std::string w = std::string(which == 0 ? "transposed additive" : "padded bool") + " mask, path " +
                            attend::path_name(p);
      EXPECT_TRUE(attend_test::same_bits(out, want.raw)) << w;
      int lse_wrong = 0;
      for (Index b = 0; b < B; ++b)
        for (Index h = 0; h < H; ++h)
          for (Index i = 0; i < Nq; ++i) {
            const Acc got = lse[static_cast<std::size_t>((b * Nq + i) * H + h)];
            const Acc exp_l = want.raw_lse[static_cast<std::size_t>((b * H + h) * Nq + i)];
            lse_wrong += std::memcmp(&got, &exp_l, sizeof(Acc)) != 0;
          }
      EXPECT_EQ(lse_wrong, 0) << w << ": lse through a strided view";
    }
  }
}

// Eigen TensorMap arguments (over the caller's memory), and Tensor arguments with the operator()
// that returns a new tensor, give bitwise the result of the view-based call.
TYPED_TEST(CallForms, TensorMapAndTensorArguments) {
  using T = TypeParam;
  using Map = Eigen::TensorMap<Eigen::Tensor<const T, 4, Eigen::RowMajor, Index>>;
  using MutMap = Eigen::TensorMap<Eigen::Tensor<T, 4, Eigen::RowMajor, Index>>;
  const Inputs in = attend_test::random_inputs(2, 4, 2, 65, 66, 8, 12, 106);
  const std::vector<T> q = attend_test::to_t<T>(in.q), k = attend_test::to_t<T>(in.k), v = attend_test::to_t<T>(in.v);
  for (const Path p : kAllPaths) {
    const auto want = attend_test::run<T>(in, attend_test::on(p));
    const auto a = attend_test::make_attend<T>(attend_test::forced(p));
    const Map qm(q.data(), in.B, in.Hq, in.Nq, in.D), km(k.data(), in.B, in.Hkv, in.Nk, in.D),
        vm(v.data(), in.B, in.Hkv, in.Nk, in.Dv);
    std::vector<T> out(static_cast<std::size_t>(in.out_size()), T(0));
    MutMap om(out.data(), in.B, in.Hq, in.Nq, in.Dv);
    attend_test::forward(a, qm, km, vm, om);
    EXPECT_TRUE(attend_test::same_bits(out, want.raw)) << "TensorMap, path " << attend::path_name(p);

    attend::Tensor<T, 4> qt(in.B, in.Hq, in.Nq, in.D), kt(in.B, in.Hkv, in.Nk, in.D), vt(in.B, in.Hkv, in.Nk, in.Dv);
    std::copy(q.begin(), q.end(), qt.data());
    std::copy(k.begin(), k.end(), kt.data());
    std::copy(v.begin(), v.end(), vt.data());
    const attend::Tensor<T, 4> ot = attend_test::call(a, qt, kt, vt);
    ASSERT_EQ(ot.dimension(0), in.B);
    ASSERT_EQ(ot.dimension(1), in.Hq);
    ASSERT_EQ(ot.dimension(2), in.Nq);
    ASSERT_EQ(ot.dimension(3), in.Dv);
    // Sized, then copied: GCC 12 at -O3 flags the (pointer, pointer) constructor's operator delete
    // for 16-bit T with a false -Wfree-nonheap-object.
    std::vector<T> got(static_cast<std::size_t>(ot.size()));
    std::copy(ot.data(), ot.data() + ot.size(), got.begin());
    EXPECT_TRUE(attend_test::same_bits(got, want.raw)) << "Tensor, path " << attend::path_name(p);
  }
}

// A caller's Workspace full of garbage (all bits set: NaN in every float lane) must not leak into the
// result: the kernels must initialise every scratch value they read. Bitwise the result without one,
// for tiled and decode shapes, with a mask and causality, reusing (and growing) one workspace.
TYPED_TEST(CallForms, GarbageWorkspaceDoesNotLeak) {
  using T = TypeParam;
  using Acc = attend::acc_t<T>;
  std::vector<Inputs> problems = {attend_test::random_inputs(2, 2, 1, 70, 130, 24, 8, 110),
                                  attend_test::random_inputs(1, 4, 2, 2, 1100, 16, 40, 111),
                                  attend_test::random_inputs(1, 1, 1, 194, 65, 80, 16, 112)};
  problems[0].causal = Causal::bottom_right;
  attend_test::set_keep_mask(problems[2], {problems[2].Nq, problems[2].Nk},
                             [](Index, Index, Index i, Index j) { return (i + j) % 5 != 0; });
  attend::Workspace ws;
  for (const Path p : kAllPaths) {
    for (const Inputs& in : problems) {
      const auto want = attend_test::run<T>(in, attend_test::on(p));
      const auto q = attend_test::to_t<T>(in.q), k = attend_test::to_t<T>(in.k), v = attend_test::to_t<T>(in.v);
      std::unique_ptr<bool[]> keep(new bool[in.mask_keep.size() + 1]);
      for (std::size_t e = 0; e < in.mask_keep.size(); ++e) keep[e] = in.mask_keep[e] != 0;
      std::vector<T> out(static_cast<std::size_t>(in.out_size()));
      std::vector<Acc> lse(static_cast<std::size_t>(in.lse_size()));
      attend::CallOptions<T> o;
      if (in.mask == attend_test::MaskKind::keep) o.mask = attend_test::make_mask<T, bool>(keep.get(), in.mask_dims);
      o.causal = in.causal;
      o.lse = attend::TensorView<Acc, 3>(lse.data(), {in.B, in.Hq, in.Nq});
      o.workspace = &ws;
      const attend::ConstView<T, 4> qv(q.data(), {in.B, in.Hq, in.Nq, in.D}), kv(k.data(), {in.B, in.Hkv, in.Nk, in.D}),
          vv(v.data(), {in.B, in.Hkv, in.Nk, in.Dv});
      const auto a = attend_test::make_attend<T>(attend_test::forced(p));
      ws.reserve(a.workspace_bytes(qv, kv, vv, o));
      if (ws.size() > 0) std::memset(ws.data(), 0xFF, ws.size());
      attend_test::forward(a, qv, kv, vv, attend::TensorView<T, 4>(out.data(), {in.B, in.Hq, in.Nq, in.Dv}), o);
      const std::string w = std::string("path ") + attend::path_name(p) + " Nq " + std::to_string(in.Nq) + " Nk " +
                            std::to_string(in.Nk);
      EXPECT_TRUE(attend_test::same_bits(out, want.raw)) << w;
      EXPECT_TRUE(attend_test::same_bits(lse, want.raw_lse)) << w;
    }
  }
}

// Nk = 0: every row sees no key: out exactly 0 (overwriting whatever was there) and lse -inf.
TYPED_TEST(CallForms, NoKeysGivesZerosAndLseMinusInf) {
  using T = TypeParam;
  const Index B = 2, H = 2, Nq = 5, D = 8, Dv = 4;
  std::vector<T> q(static_cast<std::size_t>(B * H * Nq * D), T(1)), k, v;
  for (const Path p : kAllPaths) {
    std::vector<T> out(static_cast<std::size_t>(B * H * Nq * Dv), T(7));
    std::vector<attend::acc_t<T>> lse(static_cast<std::size_t>(B * H * Nq), attend::acc_t<T>(3));
    attend::CallOptions<T> o;
    o.lse = attend::TensorView<attend::acc_t<T>, 3>(lse.data(), {B, H, Nq});
    attend_test::forward(attend_test::make_attend<T>(attend_test::forced(p)),
                         attend::ConstView<T, 4>(q.data(), {B, H, Nq, D}), attend::ConstView<T, 4>(k.data(), {B, H, 0, D}),
                         attend::ConstView<T, 4>(v.data(), {B, H, 0, Dv}),
                         attend::TensorView<T, 4>(out.data(), {B, H, Nq, Dv}), o);
    for (const T& x : out) EXPECT_EQ(static_cast<double>(x), 0.0) << attend::path_name(p);
    for (const auto& l : lse) EXPECT_EQ(l, -std::numeric_limits<attend::acc_t<T>>::infinity()) << attend::path_name(p);
  }
}

// Nq = 0 (and B = 0, Hq = 0): a valid call that writes nothing, through both call forms.
TYPED_TEST(CallForms, NoQueriesWorks) {
  using T = TypeParam;
  const Index B = 2, H = 2, Nk = 9, D = 8, Dv = 4;
  std::vector<T> q, k(static_cast<std::size_t>(B * H * Nk * D), T(1)), v(static_cast<std::size_t>(B * H * Nk * Dv), T(1));
  for (const Path p : kAllPaths) {
    const auto a = attend_test::make_attend<T>(attend_test::forced(p));
    const attend::ConstView<T, 4> qv(q.data(), {B, H, 0, D}), kv(k.data(), {B, H, Nk, D}), vv(v.data(), {B, H, Nk, Dv});
    attend::Tensor<T, 4> out;
    ASSERT_NO_THROW(out = attend_test::call(a, qv, kv, vv)) << attend::path_name(p);
    EXPECT_EQ(out.dimension(2), 0);
    EXPECT_EQ(out.dimension(3), Dv);
    attend::CallOptions<T> o;
    o.lse = attend::TensorView<attend::acc_t<T>, 3>(nullptr, {B, H, 0});
    std::vector<T> none;
    EXPECT_NO_THROW(attend_test::forward(a, qv, kv, vv, attend::TensorView<T, 4>(none.data(), {B, H, 0, Dv}), o))
        << attend::path_name(p);
    // B = 0, and Hq = Hkv = 0: nothing to compute either.
    EXPECT_NO_THROW(attend_test::call(a, attend::ConstView<T, 4>(q.data(), {0, H, 3, D}),
                                      attend::ConstView<T, 4>(k.data(), {0, H, Nk, D}),
                                      attend::ConstView<T, 4>(v.data(), {0, H, Nk, Dv})))
        << attend::path_name(p);
    EXPECT_NO_THROW(attend_test::call(a, attend::ConstView<T, 4>(q.data(), {B, 0, 3, D}),
                                      attend::ConstView<T, 4>(k.data(), {B, 0, Nk, D}),
                                      attend::ConstView<T, 4>(v.data(), {B, 0, Nk, Dv})))
        << attend::path_name(p);
  }
}

}  // namespace
