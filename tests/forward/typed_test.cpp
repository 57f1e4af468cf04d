// Typed tests over the four element types (double, float, bfloat16, half): masks of every rank with
// fully masked rows, causal alignments, logits in the hundreds, strided views into packed buffers,
// TensorMap arguments, NaN propagation, and the empty sizes Nk = 0 and Nq = 0. Every path is checked,
// against the math path in double on the same T-rounded inputs unless a stronger (bitwise) statement holds.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
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
class Typed : public ::testing::Test {};
TYPED_TEST_SUITE(Typed, attend_test::AllTypes, attend_test::TypeNames);

/// Expects out = 0 exactly and lse = -inf on every row of (b, h) whose index satisfies `dead`.
template <typename T, typename Dead>
void expect_dead_rows(const attend_test::Result<T>& r, const Inputs& in, Dead dead, const std::string& what) {
  int rows = 0;
  for (Index b = 0; b < in.B; ++b)
    for (Index h = 0; h < in.Hq; ++h)
      for (Index i = 0; i < in.Nq; ++i) {
        if (!dead(b, h, i)) continue;
        ++rows;
        const std::size_t row = static_cast<std::size_t>((b * in.Hq + h) * in.Nq + i);
        EXPECT_EQ(r.lse[row], -attend_test::kInf) << what << " row (" << b << ", " << h << ", " << i << ")";
        for (Index d = 0; d < in.Dv; ++d) {
          const double o = r.out[row * static_cast<std::size_t>(in.Dv) + static_cast<std::size_t>(d)];
          EXPECT_TRUE(o == 0.0) << what << " row (" << b << ", " << h << ", " << i << ") d " << d << " = " << o;
        }
      }
  EXPECT_GT(rows, 0) << what << ": premise, the case has fully masked rows";
}

TYPED_TEST(Typed, EpsilonMatchesEigen) {
  using T = TypeParam;
  const double e = attend_test::eps<T>();
  // eps is the spacing of T at 1: 1 + eps is representable, 1 + eps/2 rounds back to 1 (ties to even).
  EXPECT_NE(static_cast<double>(static_cast<T>(1.0 + e)), 1.0);
  EXPECT_EQ(static_cast<double>(static_cast<T>(1.0 + e / 2)), 1.0);
  if constexpr (std::is_same_v<T, Eigen::half>) {
    // Eigen 3.4.0's NumTraits<half>::epsilon() is 2^-13, not half's machine epsilon 2^-10.
    EXPECT_LE(static_cast<double>(Eigen::NumTraits<T>::epsilon()), e);
  } else {
    EXPECT_EQ(static_cast<double>(Eigen::NumTraits<T>::epsilon()), e);
  }
}

// Bool masks of rank 1 (Nk), 2 (Nq, Nk), 3 (Hq, Nq, Nk) and 4 (B, 1, 1, Nk: key padding), each with
// rows that see no key, which must come out exactly 0 with lse -inf.
TYPED_TEST(Typed, BoolMaskOfEveryRank) {
  using T = TypeParam;
  const Index B = 2, H = 2, Nq = 70, Nk = 67;
  Inputs in = attend_test::random_inputs(B, H, H, Nq, Nk, 16, 8, 101);
  const std::vector<std::vector<Index>> shapes = {{Nk}, {Nq, Nk}, {H, Nq, Nk}, {B, 1, 1, Nk}};
  for (const auto& dims : shapes) {
    const std::size_t rank = dims.size();
    attend_test::set_keep_mask(in, dims, [&](Index b, Index h, Index i, Index j) {
      switch (rank) {
        case 1: return j % 3 != 0;                                  // no dead row possible; see below
        case 2: return i % 9 != 4 && attend_test::unit_hash(7, 0, 0, i, j) < 0.6;
        case 3: return !(h == 1 && i % 11 == 2) && attend_test::unit_hash(8, 0, h, i, j) < 0.6;
        default: return b == 0 ? j < Nk : j < 0;                      // batch 1 has no valid key
      }
    });
    const std::string what = "bool mask rank " + std::to_string(rank);
    attend_test::expect_paths_match_reference<T>(in, what);
    if (rank == 1) continue;
    for (const Path p : kAllPaths) {
      const auto r = attend_test::run<T>(in, attend_test::on(p));
      expect_dead_rows(
          r, in,
          [&](Index b, Index h, Index i) {
            return rank == 2 ? i % 9 == 4 : rank == 3 ? (h == 1 && i % 11 == 2) : b == 1;
          },
          what + " path " + attend::path_name(p));
    }
  }
}

// Additive masks of every rank, with -inf entries and fully -inf rows.
TYPED_TEST(Typed, AdditiveMaskOfEveryRank) {
  using T = TypeParam;
  const Index B = 2, H = 2, Nq = 66, Nk = 71;
  Inputs in = attend_test::random_inputs(B, H, 1, Nq, Nk, 32, 16, 102);
  const std::vector<std::vector<Index>> shapes = {{Nk}, {Nq, Nk}, {H, 1, Nk}, {B, H, Nq, Nk}, {B, 1, Nq, 1}};
  for (const auto& dims : shapes) {
    const std::size_t rank = dims.size();
    const bool column = dims.back() == 1;  // (B, 1, Nq, 1): one bias per query row, -inf kills the row
    const bool rows = rank >= 2 && dims[rank - 2] == Nq;  // the mask has a query dimension
    attend_test::set_additive_mask(in, dims, [&](Index b, Index h, Index i, Index j) {
      const double u = attend_test::unit_hash(9 + rank, b, h, i, j);
      if (column) return (b == 1 && i % 5 == 0) ? -attend_test::kInf : 3.0 * u;
      if (rows && i % 7 == 3) return -attend_test::kInf;
      return u < 0.25 ? -attend_test::kInf : 6.0 * (u - 0.5);
    });
    const std::string what = "additive mask rank " + std::to_string(rank) + (column ? " (column)" : "");
    attend_test::expect_paths_match_reference<T>(in, what);
    if (!rows) continue;
    for (const Path p : kAllPaths) {
      const auto r = attend_test::run<T>(in, attend_test::on(p));
      expect_dead_rows(
          r, in, [&](Index b, Index, Index i) { return column ? (b == 1 && i % 5 == 0) : i % 7 == 3; },
          what + " path " + attend::path_name(p));
    }
  }
}

// Decode shapes (the flash path's split-KV kernel, 512-key splits): a key-padding mask that empties
// the first split, one that empties every split after the first, and a batch that sees no key at all.
TYPED_TEST(Typed, DecodeSplitsEmptiedByMask) {
  using T = TypeParam;
  const Index B = 3, Nk = 1300;
  Inputs in = attend_test::random_inputs(B, 4, 2, 2, Nk, 32, 16, 108);
  attend_test::set_keep_mask(in, {B, 1, 1, Nk}, [&](Index b, Index, Index, Index j) {
    return b == 0 ? j >= 600 : b == 1 ? j < 300 : false;
  });
  attend_test::expect_paths_match_reference<T>(in, "decode, split-emptying key padding");
  for (const Path p : kAllPaths) {
    const auto r = attend_test::run<T>(in, attend_test::on(p));
    expect_dead_rows(r, in, [&](Index b, Index, Index) { return b == 2; }, std::string("path ") + attend::path_name(p));
  }
}

// Causal top_left and bottom_right with Nq < Nk and Nq > Nk. bottom_right with Nq > Nk leaves the
// first Nq - Nk rows without keys (0, lse -inf); top_left with Nq < Nk hides the last Nk - Nq keys
// from everyone (changing them must not change the output).
TYPED_TEST(Typed, CausalAlignments) {
  using T = TypeParam;
  const std::pair<Index, Index> lens[] = {{40, 100}, {100, 40}, {65, 129}, {129, 65}};
  for (const auto& len : lens) {
    const Index Nq = len.first, Nk = len.second;  // (structured bindings cannot be captured in C++17)
    for (const Causal c : {Causal::top_left, Causal::bottom_right}) {
      Inputs in = attend_test::random_inputs(1, 2, 2, Nq, Nk, 16, 16, 103 + static_cast<std::uint64_t>(Nq));
      in.causal = c;
      const std::string what = std::string("causal ") + attend::causal_name(c) + " Nq " + std::to_string(Nq) +
                               " Nk " + std::to_string(Nk);
      attend_test::expect_paths_match_reference<T>(in, what);
      for (const Path p : kAllPaths) {
        const auto r = attend_test::run<T>(in, attend_test::on(p));
        const std::string w = what + " path " + attend::path_name(p);
        if (c == Causal::bottom_right && Nq > Nk) {
          expect_dead_rows(r, in, [&](Index, Index, Index i) { return i < Nq - Nk; }, w);
        } else {
          for (double l : r.lse) EXPECT_TRUE(std::isfinite(l)) << w << ": every row sees a key";
        }
        if (c == Causal::top_left && Nq < Nk) {
          Inputs hidden = in;  // keys j >= Nq are invisible to every query: scramble them
          for (Index h = 0; h < in.Hkv; ++h)
            for (Index j = Nq; j < Nk; ++j)
              for (Index d = 0; d < in.D; ++d) {
                hidden.k[static_cast<std::size_t>((h * Nk + j) * in.D + d)] = 1e3;
                hidden.v[static_cast<std::size_t>((h * Nk + j) * in.Dv + d)] = -1e3;
              }
          const auto r2 = attend_test::run<T>(hidden, attend_test::on(p));
          EXPECT_TRUE(attend_test::same_bits(r.raw, r2.raw)) << w << ": a hidden key changed the output";
        }
      }
    }
  }
}

// Logits in the hundreds (q, k ~ N(0, 15^2), D = 64: scores ~ N(0, 225^2)): exp without subtracting the
// max overflows every type. Outputs must be finite and match the double reference.
TYPED_TEST(Typed, LogitsInTheHundreds) {
  using T = TypeParam;
  const Inputs in = attend_test::random_inputs(1, 2, 1, 100, 130, 64, 32, 104, 15.0);
  const auto ref = attend_test::reference<T>(in);
  double max_lse = 0;
  for (double l : ref.lse) max_lse = std::max(max_lse, std::abs(l));
  ASSERT_GT(max_lse, 200.0) << "premise: logits in the hundreds";
  for (const Path p : kAllPaths) {
    const auto r = attend_test::run<T>(in, attend_test::on(p));
    for (double o : r.out) ASSERT_TRUE(std::isfinite(o)) << attend::path_name(p);
  }
  attend_test::expect_paths_match_reference<T>(in, "large logits");
}

// q, k and v as strided views into one packed (B, N, 3, H, D) projection buffer, and the output written
// through a view into a (B, N, H * Dv + pad) buffer: bitwise the result of contiguous tensors, with
// the padding untouched.
TYPED_TEST(Typed, StridedViewsIntoPackedBuffers) {
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

// Masks and lse read and written through non-contiguous views: an additive (Nq, Nk) mask that is
// the transpose of an (Nk, Nq) buffer, a bool (B, 1, Nq, Nk) mask with padded rows, and lse written
// into a (B, Nq, Hq) buffer. Bitwise the results of contiguous masks and lse.
TYPED_TEST(Typed, StridedMaskAndLseViews) {
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

// Eigen TensorMap arguments (over the caller's memory) and Tensor arguments with the returning
// operator() give bitwise the result of the view-based call.
TYPED_TEST(Typed, TensorMapAndTensorArguments) {
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

// A NaN in one query element makes exactly that query's output row and lse NaN; every other element
// of out and lse is bitwise what it is without the NaN.
TYPED_TEST(Typed, NaNInQueryPropagatesToItsRowOnly) {
  using T = TypeParam;
  struct Where {
    Inputs clean;
    Index b, h, i, d;
  };
  const Where cases[] = {
      {attend_test::random_inputs(2, 2, 1, 70, 75, 16, 8, 107), 1, 0, 66, 5},     // second query tile
      {attend_test::random_inputs(1, 4, 1, 2, 1100, 16, 8, 109), 0, 2, 1, 3},    // split-KV decode rows
  };
  for (const Where& at : cases) {
    const Inputs& clean = at.clean;
    Inputs dirty = clean;
    dirty.q[static_cast<std::size_t>(((at.b * clean.Hq + at.h) * clean.Nq + at.i) * clean.D + at.d)] = attend_test::kNaN;
    const std::size_t row = static_cast<std::size_t>((at.b * clean.Hq + at.h) * clean.Nq + at.i);
    for (const Causal c : {Causal::none, Causal::bottom_right}) {
      Inputs cc = clean, dc = dirty;
      cc.causal = dc.causal = c;
      for (const Path p : kAllPaths) {
        const auto a = attend_test::run<T>(cc, attend_test::on(p));
        const auto r = attend_test::run<T>(dc, attend_test::on(p));
        const std::string w = std::string("path ") + attend::path_name(p) + " causal " + attend::causal_name(c) +
                              " Nq " + std::to_string(clean.Nq) + " Nk " + std::to_string(clean.Nk);
        int wrong = 0;
        for (std::size_t e = 0; e < r.out.size(); ++e) {
          if (e / static_cast<std::size_t>(clean.Dv) == row) {
            wrong += !std::isnan(r.out[e]);
          } else {
            wrong += std::memcmp(&r.raw[e], &a.raw[e], sizeof(T)) != 0;
          }
        }
        EXPECT_EQ(wrong, 0) << w << ": NaN must fill row " << row << " and nothing else";
        for (std::size_t e = 0; e < r.lse.size(); ++e) {
          if (e == row) {
            EXPECT_TRUE(std::isnan(r.lse[e])) << w;
          } else {
            EXPECT_EQ(std::memcmp(&r.raw_lse[e], &a.raw_lse[e], sizeof(r.raw_lse[e])), 0) << w << " lse " << e;
          }
        }
      }
    }
  }
}

// A caller's Workspace full of garbage (all bits set: NaN in every float lane) must not leak into the
// result: the kernels must initialise every scratch value they read. Bitwise the result without one,
// for tiled and decode shapes, with a mask and causality, reusing (and growing) one workspace.
TYPED_TEST(Typed, GarbageWorkspaceDoesNotLeak) {
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
TYPED_TEST(Typed, NoKeysGivesZerosAndLseMinusInf) {
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

// Nq = 0 (and B = 0, Hq = 0): a valid call that writes nothing, through both operator() forms.
TYPED_TEST(Typed, NoQueriesWorks) {
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
