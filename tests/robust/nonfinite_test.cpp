// NaN and Inf in q, k and v are not errors: they propagate to exactly the rows they touch, on every
// path and for every element type. Rows that see no key give 0 (lse -inf).
//
// Each test runs a clean call and the same call with one poisoned element, and compares bit for bit:
// rows the poison cannot reach must be identical to the clean run, rows it reaches must be NaN/Inf.
// Shapes cross tile edges (Nq = Nk = 130: tiles of 64, 64 and 2) and use grouped-query attention
// (Hq = 2 query heads reading one kv head), so a poisoned key reaches both heads.

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::Causal;
using attend::ConstView;
using attend::Index;
using attend::Tensor;
using attend::TensorView;
using attend_test::Route;

constexpr Index kB = 1, kD = 16, kDv = 12;

/// Two shapes: query tiles (the tiled flash and mem_efficient kernels), and a decode step whose
/// Hq/Hkv * Nq query rows take the flash path's split-KV kernel (three splits of up to 512 keys).
struct Shape {
  const char* name;
  Index Hq, Hkv, Nq, Nk;
  Index hit_i;          // a query row to poison
  Index hit_j;          // a key row to poison
  attend::Causal hide;  // the causal kind that hides hit_j from some queries
};
constexpr Shape kShapes[] = {
    {"tiles", 2, 1, 130, 130, 70, 100, Causal::top_left},
    {"decode", 4, 1, 3, 1100, 1, 1099, Causal::bottom_right},
};

template <typename T>
struct Run {
  using Acc = attend::acc_t<T>;
  Tensor<T, 4> out;
  Tensor<Acc, 3> lse;
};

template <typename T>
struct Inputs {
  Tensor<T, 4> q, k, v;
  explicit Inputs(const Shape& s = kShapes[0])
      : q(kB, s.Hq, s.Nq, kD), k(kB, s.Hkv, s.Nk, kD), v(kB, s.Hkv, s.Nk, kDv) {
    attend_test::fill(q, 11);
    attend_test::fill(k, 12);
    attend_test::fill(v, 13);
  }
};

template <typename T>
Run<T> run(const Route& route, const Inputs<T>& in, attend::CallOptions<T> opt) {
  Run<T> r{Tensor<T, 4>(in.q.dimension(0), in.q.dimension(1), in.q.dimension(2), in.v.dimension(3)),
           Tensor<attend::acc_t<T>, 3>(in.q.dimension(0), in.q.dimension(1), in.q.dimension(2))};
  opt.lse = r.lse;
  attend::Dispatch d;
  opt.dispatch = &d;
  attend_test::forward(attend_test::make_attend<T>(route), in.q, in.k, in.v, r.out, opt);
  EXPECT_EQ(d.path, route.expect);
  return r;
}

template <typename T>
class NonFinite : public ::testing::Test {};
TYPED_TEST_SUITE(NonFinite, attend_test::AllTypes, attend_test::TypeNames);

/// Loops over every shape and path with a trace naming them.
#define FOR_EACH_SHAPE_AND_PATH(shape, route)              \
  for (const Shape& shape : kShapes)                       \
    for (const Route& route : attend_test::forced_routes())

// NaN in q row i: row i of that head is NaN (out and lse); every other element is unchanged.
TYPED_TEST(NonFinite, NanInQueryRowReachesOnlyThatRow) {
  using T = TypeParam;
  FOR_EACH_SHAPE_AND_PATH(sh, route) {
    for (Causal causal : {Causal::none, Causal::top_left, Causal::bottom_right}) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name + ", causal " + attend::causal_name(causal));
      const Index hit_h = 1, hit_i = sh.hit_i;
      Inputs<T> in(sh);
      attend::CallOptions<T> opt;
      opt.causal = causal;
      const Run<T> clean = run(route, in, opt);
      in.q(0, hit_h, hit_i, 3) = T(std::numeric_limits<float>::quiet_NaN());
      const Run<T> dirty = run(route, in, opt);
      for (Index h = 0; h < sh.Hq; ++h) {
        for (Index i = 0; i < sh.Nq; ++i) {
          const bool hit = h == hit_h && i == hit_i;
          EXPECT_EQ(attend_test::is_nan(dirty.lse(0, h, i)), hit) << "lse h=" << h << " i=" << i;
          if (!hit) {
            EXPECT_EQ(std::memcmp(&dirty.lse(0, h, i), &clean.lse(0, h, i), sizeof(dirty.lse(0, h, i))), 0);
          }
          for (Index d = 0; d < kDv; ++d) {
            if (hit) {
              EXPECT_TRUE(attend_test::is_nan(dirty.out(0, h, i, d))) << "i=" << i << " d=" << d;
            } else {
              ASSERT_EQ(std::memcmp(&dirty.out(0, h, i, d), &clean.out(0, h, i, d), sizeof(T)), 0)
                  << "h=" << h << " i=" << i << " d=" << d << " changed";
            }
          }
        }
      }
    }
  }
}

// Inf in q row i: that row is non-finite (an Inf score against keys of either sign gives Inf - Inf),
// the others are unchanged.
TYPED_TEST(NonFinite, InfInQueryRowReachesOnlyThatRow) {
  using T = TypeParam;
  FOR_EACH_SHAPE_AND_PATH(sh, route) {
    SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
    const Index hit_i = sh.Nq > 64 ? 64 : sh.hit_i;  // tiles: the first row of the second tile
    Inputs<T> in(sh);
    const Run<T> clean = run(route, in, {});
    in.q(0, 0, hit_i, 0) = T(std::numeric_limits<float>::infinity());
    const Run<T> dirty = run(route, in, {});
    for (Index h = 0; h < sh.Hq; ++h) {
      for (Index i = 0; i < sh.Nq; ++i) {
        for (Index d = 0; d < kDv; ++d) {
          if (h == 0 && i == hit_i) continue;  // the poisoned row: its value is arithmetic's business
          ASSERT_EQ(std::memcmp(&dirty.out(0, h, i, d), &clean.out(0, h, i, d), sizeof(T)), 0)
              << "h=" << h << " i=" << i << " d=" << d << " changed";
        }
      }
    }
    bool any_nonfinite = false;
    for (Index d = 0; d < kDv; ++d) any_nonfinite |= !attend_test::is_finite(dirty.out(0, 0, hit_i, d));
    EXPECT_TRUE(any_nonfinite);
  }
}

enum class Hide { causal, keep_mask };

// NaN in k row j: the queries that see key j are NaN (every head of the group); the queries from
// which j is hidden, by causality or by a bool mask, are bit-for-bit unchanged.
TYPED_TEST(NonFinite, NanInKeyReachesOnlyQueriesThatSeeIt) {
  using T = TypeParam;
  FOR_EACH_SHAPE_AND_PATH(sh, route) {
    const Index hit_j = sh.hit_j, empty_row = sh.Nq > 7 ? 7 : 0;
    Tensor<bool, 2> keep(sh.Nq, sh.Nk);  // even queries do not see hit_j; empty_row sees nothing
    keep.setConstant(true);
    for (Index i = 0; i < sh.Nq; i += 2) keep(i, hit_j) = false;
    for (Index j = 0; j < sh.Nk; ++j) keep(empty_row, j) = false;
    for (Hide hide : {Hide::causal, Hide::keep_mask}) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name + (hide == Hide::causal ? ", causal" : ", bool mask"));
      Inputs<T> in(sh);
      attend::CallOptions<T> opt;
      if (hide == Hide::causal) opt.causal = sh.hide;
      if (hide == Hide::keep_mask) opt.mask = attend::Mask<T>::keep(ConstView<bool, 2>(keep));
      const Index offset = sh.hide == Causal::bottom_right ? sh.Nk - sh.Nq : 0;
      auto sees = [&](Index i) {
        return hide == Hide::causal ? hit_j <= i + offset : static_cast<bool>(keep(i, hit_j));
      };
      const Run<T> clean = run(route, in, opt);
      in.k(0, 0, hit_j, 5) = T(std::numeric_limits<float>::quiet_NaN());
      const Run<T> dirty = run(route, in, opt);
      int hidden_rows = 0;
      for (Index h = 0; h < sh.Hq; ++h) {
        for (Index i = 0; i < sh.Nq; ++i) {
          if (sees(i)) {
            EXPECT_TRUE(attend_test::is_nan(dirty.lse(0, h, i))) << "i=" << i;
            for (Index d = 0; d < kDv; ++d) EXPECT_TRUE(attend_test::is_nan(dirty.out(0, h, i, d))) << "i=" << i;
          } else {
            ++hidden_rows;
            for (Index d = 0; d < kDv; ++d) {
              ASSERT_EQ(std::memcmp(&dirty.out(0, h, i, d), &clean.out(0, h, i, d), sizeof(T)), 0)
                  << "h=" << h << " i=" << i << " d=" << d << " does not see key " << hit_j << " but changed";
            }
          }
        }
      }
      EXPECT_GE(hidden_rows, sh.Hq);
      if (hide == Hide::keep_mask) {  // empty_row sees no key at all: 0 and lse -inf, NaN key or not
        for (Index d = 0; d < kDv; ++d) EXPECT_EQ(static_cast<double>(dirty.out(0, 0, empty_row, d)), 0.0);
        EXPECT_EQ(static_cast<double>(dirty.lse(0, 0, empty_row)), -std::numeric_limits<double>::infinity());
      }
    }
  }
}

// An additive mask adds: -inf + NaN is NaN, so an additive -inf does not hide a NaN key (as in
// PyTorch). Every path agrees: every query row is NaN.
TYPED_TEST(NonFinite, AdditiveMinusInfDoesNotHideNanKey) {
  using T = TypeParam;
  FOR_EACH_SHAPE_AND_PATH(sh, route) {
    SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
    Tensor<T, 2> bias(sh.Nq, sh.Nk);
    bias.setZero();
    for (Index i = 0; i < sh.Nq; i += 2) bias(i, sh.hit_j) = T(-std::numeric_limits<float>::infinity());
    Inputs<T> in(sh);
    in.k(0, 0, sh.hit_j, 5) = T(std::numeric_limits<float>::quiet_NaN());
    attend::CallOptions<T> opt;
    opt.mask = attend::Mask<T>::additive(ConstView<T, 2>(bias));
    const Run<T> dirty = run(route, in, opt);
    for (Index i = 0; i < sh.Nq; ++i) EXPECT_TRUE(attend_test::is_nan(dirty.out(0, 1, i, 0))) << "i=" << i;
  }
}

// Inf in v row j, column d: the rows that give key j a non-zero weight get +Inf in column d; every
// other column of every row is bit-for-bit unchanged.
TYPED_TEST(NonFinite, InfInValueReachesOnlyItsColumn) {
  using T = TypeParam;
  const Index hit_d = 4;
  FOR_EACH_SHAPE_AND_PATH(sh, route) {
    for (Causal causal : {Causal::none, sh.hide}) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name + ", causal " + attend::causal_name(causal));
      const Index hit_j = sh.hit_j;
      const Index offset = causal == Causal::bottom_right ? sh.Nk - sh.Nq : 0;
      Inputs<T> in(sh);
      attend::CallOptions<T> opt;
      opt.causal = causal;
      const Run<T> clean = run(route, in, opt);
      in.v(0, 0, hit_j, hit_d) = T(std::numeric_limits<float>::infinity());
      const Run<T> dirty = run(route, in, opt);
      for (Index h = 0; h < sh.Hq; ++h) {
        for (Index i = 0; i < sh.Nq; ++i) {
          const bool sees = causal == Causal::none || hit_j <= i + offset;
          if (sees) {
            EXPECT_EQ(static_cast<double>(dirty.out(0, h, i, hit_d)), std::numeric_limits<double>::infinity())
                << "i=" << i;
          }
          for (Index d = 0; d < kDv; ++d) {
            if (d == hit_d) continue;
            ASSERT_EQ(std::memcmp(&dirty.out(0, h, i, d), &clean.out(0, h, i, d), sizeof(T)), 0)
                << "h=" << h << " i=" << i << " d=" << d << " changed";
          }
          // lse does not read v.
          ASSERT_EQ(std::memcmp(&dirty.lse(0, h, i), &clean.lse(0, h, i), sizeof(dirty.lse(0, h, i))), 0);
        }
      }
    }
  }
}

// Inf or NaN in a row of v that a query does not see does not reach that query: a weight of exactly
// 0 contributes nothing, even against a non-finite value (attend's rule, include/attend/detail/
// kernel/zero_weights.hpp), where a plain P·V gives 0 · Inf = NaN. Before the rule, the math path turned
// every query of the head NaN, the tiled kernels every query of each tile visiting the key (causal
// top_left, key 100 of 130: rows 64..99), the decode kernel the rows of its split: the paths disagreed.
TYPED_TEST(NonFinite, NonFiniteHiddenValueDoesNotReachRowsThatDoNotSeeIt) {
  using T = TypeParam;
  const Index hit_d = 4;
  for (const double poison : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    FOR_EACH_SHAPE_AND_PATH(sh, route) {
      SCOPED_TRACE(std::string(sh.name) + ", " + route.name + ", v = " + std::to_string(poison));
      const Index offset = sh.hide == Causal::bottom_right ? sh.Nk - sh.Nq : 0;
      Inputs<T> in(sh);
      attend::CallOptions<T> opt;
      opt.causal = sh.hide;
      const Run<T> clean = run(route, in, opt);
      in.v(0, 0, sh.hit_j, hit_d) = T(poison);
      const Run<T> dirty = run(route, in, opt);
      int hidden = 0;
      for (Index h = 0; h < sh.Hq; ++h) {
        for (Index i = 0; i < sh.Nq; ++i) {
          if (sh.hit_j <= i + offset) {  // sees the key: the poison arrives, in its column only
            EXPECT_EQ(attend_test::is_nan(dirty.out(0, h, i, hit_d)), std::isnan(poison)) << "i=" << i;
            EXPECT_FALSE(attend_test::is_finite(dirty.out(0, h, i, hit_d))) << "i=" << i;
            continue;
          }
          ++hidden;
          for (Index d = 0; d < kDv; ++d) {
            ASSERT_EQ(std::memcmp(&dirty.out(0, h, i, d), &clean.out(0, h, i, d), sizeof(T)), 0)
                << "h=" << h << " i=" << i << " d=" << d << " does not see key " << sh.hit_j << " but changed";
          }
        }
      }
      EXPECT_GE(hidden, sh.Hq);
    }
  }
}

// A visible Inf value whose weight underflows to exactly 0 contributes nothing either: a bias of
// +800 on a later key puts every other key's weight at exp(-800) = 0, in double too. The tiled
// kernels meet the Inf first, in an earlier key tile (decode: an earlier split), and must drop it when
// the rescale factor becomes 0 instead of computing Inf · 0 = NaN; every path gives the clean result.
TYPED_TEST(NonFinite, InfValueWhoseWeightUnderflowsContributesNothing) {
  using T = TypeParam;
  const Index hit_d = 2;
  FOR_EACH_SHAPE_AND_PATH(sh, route) {
    SCOPED_TRACE(std::string(sh.name) + ", " + route.name);
    const Index big_j = sh.Nk - 30;  // tiles: key 100 (third tile), decode: key 1070 (third split)
    Tensor<T, 2> bias(sh.Nq, sh.Nk);
    bias.setZero();
    for (Index i = 0; i < sh.Nq; ++i) bias(i, big_j) = T(800.0f);
    Inputs<T> in(sh);
    attend::CallOptions<T> opt;
    opt.mask = attend::Mask<T>::additive(ConstView<T, 2>(bias));
    const Run<T> clean = run(route, in, opt);
    in.v(0, 0, 0, hit_d) = T(std::numeric_limits<float>::infinity());
    in.v(0, 0, 1, hit_d + 1) = T(-std::numeric_limits<float>::infinity());
    const Run<T> dirty = run(route, in, opt);
    for (Index h = 0; h < sh.Hq; ++h) {
      for (Index i = 0; i < sh.Nq; ++i) {
        for (Index d = 0; d < kDv; ++d) {
          ASSERT_TRUE(attend_test::is_finite(dirty.out(0, h, i, d))) << "h=" << h << " i=" << i << " d=" << d;
          ASSERT_EQ(std::memcmp(&dirty.out(0, h, i, d), &clean.out(0, h, i, d), sizeof(T)), 0)
              << "h=" << h << " i=" << i << " d=" << d << " changed";
        }
      }
    }
  }
}

// A row made NaN by its scores, whose every key is dropped, is NaN on every path: PyTorch multiplies
// the probabilities by the keep-mask (0 * NaN = NaN). Found by fuzz/attend_fuzz.cpp when the math
// path still assigned 0 to dropped probabilities. q row 0 NaN, Nk = 1, p = 0.5, seed 1, offset 1.
TYPED_TEST(NonFinite, NanRowWithEveryKeyDroppedAgreesOnEveryPath) {
  using T = TypeParam;
  Tensor<T, 4> q(1, 1, 1, 4), k(1, 1, 1, 4), v(1, 1, 1, 4);
  q.setConstant(T(0.5f));
  k.setConstant(T(0.25f));
  v.setConstant(T(1.0f));
  q(0, 0, 0, 0) = T(std::numeric_limits<float>::quiet_NaN());
  attend::CallOptions<T> opt;
  opt.dropout_offset = 1;  // drops key 0 of row 0 with seed 1
  for (const Route& route : attend_test::forced_routes()) {
    attend::Attend<T> a = attend_test::make_attend<T>(route, 0.5, std::nullopt, /*seed=*/1);
    a.train();
    const Tensor<T, 4> out = attend_test::call(a, q, k, v, opt);
    EXPECT_TRUE(attend_test::is_nan(out(0, 0, 0, 0))) << route.name << ": " << static_cast<double>(out(0, 0, 0, 0));
  }
}

constexpr Index kHq = kShapes[0].Hq, kHkv = kShapes[0].Hkv, kN = kShapes[0].Nq;

// Rows that see no key give 0 and lse -inf: causal bottom_right with Nq > Nk, a bool mask row of
// false, an additive row of -inf, and Nk = 0.
TYPED_TEST(NonFinite, RowsWithoutVisibleKeysAreZero) {
  using T = TypeParam;
  const double ninf = -std::numeric_limits<double>::infinity();
  for (const Route& route : attend_test::forced_routes()) {
    SCOPED_TRACE(route.name);
    {  // bottom_right, Nq = 70 > Nk = 5: rows 0..64 see nothing, rows 65..69 see 1..5 keys.
      Inputs<T> in;
      in.q = Tensor<T, 4>(1, 2, 70, kD);
      in.k = Tensor<T, 4>(1, 1, 5, kD);
      in.v = Tensor<T, 4>(1, 1, 5, kDv);
      attend_test::fill(in.q, 1);
      attend_test::fill(in.k, 2);
      attend_test::fill(in.v, 3);
      attend::CallOptions<T> opt;
      opt.causal = Causal::bottom_right;
      const Run<T> r = run(route, in, opt);
      for (Index h = 0; h < 2; ++h) {
        for (Index i = 0; i < 70; ++i) {
          const bool none = i < 65;
          EXPECT_EQ(static_cast<double>(r.lse(0, h, i)) == ninf, none) << "i=" << i;
          for (Index d = 0; d < kDv; ++d) {
            if (none) {
              EXPECT_EQ(static_cast<double>(r.out(0, h, i, d)), 0.0) << "i=" << i;
            } else {
              EXPECT_TRUE(attend_test::is_finite(r.out(0, h, i, d)));
            }
          }
        }
      }
    }
    {  // masks: row 3 all false (bool) / all -inf (additive)
      Inputs<T> in;
      Tensor<bool, 2> keep(kN, kN);
      keep.setConstant(true);
      Tensor<T, 2> bias(kN, kN);
      bias.setZero();
      for (Index j = 0; j < kN; ++j) {
        keep(3, j) = false;
        bias(3, j) = T(-std::numeric_limits<float>::infinity());
      }
      for (int form = 0; form < 2; ++form) {
        attend::CallOptions<T> opt;
        opt.mask = form == 0 ? attend::Mask<T>::keep(ConstView<bool, 2>(keep))
                             : attend::Mask<T>::additive(ConstView<T, 2>(bias));
        const Run<T> r = run(route, in, opt);
        for (Index d = 0; d < kDv; ++d) EXPECT_EQ(static_cast<double>(r.out(0, 1, 3, d)), 0.0);
        EXPECT_EQ(static_cast<double>(r.lse(0, 1, 3)), ninf);
        EXPECT_TRUE(attend_test::is_finite(r.out(0, 1, 4, 0)));
      }
    }
    {  // Nk = 0
      Inputs<T> in;
      in.k = Tensor<T, 4>(kB, kHkv, 0, kD);
      in.v = Tensor<T, 4>(kB, kHkv, 0, kDv);
      const Run<T> r = run(route, in, {});
      for (Index i = 0; i < r.out.size(); ++i) EXPECT_EQ(static_cast<double>(r.out.data()[i]), 0.0);
      for (Index i = 0; i < r.lse.size(); ++i) EXPECT_EQ(static_cast<double>(r.lse.data()[i]), ninf);
    }
  }
}

// Dropout p = 1 in training drops every weight: out is 0; lse is what it is without dropout.
TYPED_TEST(NonFinite, DropoutOneGivesZero) {
  using T = TypeParam;
  for (const Route& route : attend_test::forced_routes()) {
    SCOPED_TRACE(route.name);
    Inputs<T> in;
    Tensor<T, 4> out(kB, kHq, kN, kDv);
    Tensor<attend::acc_t<T>, 3> lse(kB, kHq, kN), lse_eval(kB, kHq, kN);
    attend::CallOptions<T> opt;
    opt.lse = lse_eval;
    attend::Attend<T> a = attend_test::make_attend<T>(route, 1.0);
    attend_test::forward(a, in.q, in.k, in.v, out, opt);  // eval: dropout off
    a.train();
    opt.lse = lse;
    attend_test::forward(a, in.q, in.k, in.v, out, opt);
    for (Index i = 0; i < out.size(); ++i) ASSERT_EQ(static_cast<double>(out.data()[i]), 0.0) << i;
    EXPECT_TRUE(attend_test::same_bits(lse, lse_eval));
  }
}

}  // namespace
