// Every element type (double, float, bfloat16, half) on every path against the naive reference in
// double on the same T-rounded inputs: masks of every rank with rows that see no key (a table of
// rows), the split-KV decode kernel with emptied splits, causal alignments, logits in the hundreds.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"
#include "support/reference.hpp"

namespace {

using attend::Causal;
using attend::Index;
using attend::Path;
using attend_test::Inputs;
using attend_test::kAllPaths;

/// Rows of (b, h, i) that see no key.
using DeadRows = std::function<bool(Index b, Index h, Index i)>;

/// Expects out = 0 exactly and lse = -inf on every row that `dead` names, on every path.
template <typename T>
void expect_dead_rows(const Inputs& in, const DeadRows& dead, const std::string& what) {
  for (const Path p : kAllPaths) {
    const auto r = attend_test::run<T>(in, attend_test::on(p));
    const std::string w = what + " type=" + attend::type_name<T>() + " path=" + attend::path_name(p);
    int rows = 0;
    for (Index b = 0; b < in.B; ++b)
      for (Index h = 0; h < in.Hq; ++h)
        for (Index i = 0; i < in.Nq; ++i) {
          if (!dead(b, h, i)) continue;
          ++rows;
          const std::size_t row = static_cast<std::size_t>((b * in.Hq + h) * in.Nq + i);
          EXPECT_EQ(r.lse[row], -attend_test::kInf) << w << " row (" << b << ", " << h << ", " << i << ")";
          for (Index d = 0; d < in.Dv; ++d) {
            const double o = r.out[row * static_cast<std::size_t>(in.Dv) + static_cast<std::size_t>(d)];
            EXPECT_TRUE(o == 0.0) << w << " row (" << b << ", " << h << ", " << i << ") d " << d << " = " << o;
          }
        }
    EXPECT_GT(rows, 0) << w << ": premise, the case has rows that see no key";
  }
}

void expect_dead_rows_all_types(const Inputs& in, const DeadRows& dead, const std::string& what) {
  expect_dead_rows<double>(in, dead, what);
  expect_dead_rows<float>(in, dead, what);
  expect_dead_rows<Eigen::bfloat16>(in, dead, what);
  expect_dead_rows<Eigen::half>(in, dead, what);
}

// ---- Masks of every rank: one row per mask, each checked on every path and type ----

/// A mask of shape `dims` (broadcast against (B, Hq, Nq, Nk)) whose value at (b, h, i, j) is
/// `value` (bool masks: keep if non-zero; additive masks: the bias), and the rows it leaves without
/// a visible key (none if empty), which must come out exactly 0 with lse -inf.
struct MaskRow {
  const char* name;
  std::vector<Index> dims;
  std::function<double(Index b, Index h, Index i, Index j)> value;
  DeadRows dead;
};

void PrintTo(const MaskRow& r, std::ostream* os) { *os << r.name; }

std::string row_name(const ::testing::TestParamInfo<MaskRow>& i) { return i.param.name; }

// Bool masks over B = 2, H = 2, Nq = 70, Nk = 67.
constexpr Index kBoolB = 2, kBoolH = 2, kBoolNq = 70, kBoolNk = 67;
const MaskRow kBoolMasks[] = {
    {"Rank1Keys", {kBoolNk}, [](Index, Index, Index, Index j) { return j % 3 != 0; }, {}},
    {"Rank2QueriesKeys",
     {kBoolNq, kBoolNk},
     [](Index, Index, Index i, Index j) { return i % 9 != 4 && attend_test::unit_hash(7, 0, 0, i, j) < 0.6; },
     [](Index, Index, Index i) { return i % 9 == 4; }},
    {"Rank3HeadsQueriesKeys",
     {kBoolH, kBoolNq, kBoolNk},
     [](Index, Index h, Index i, Index j) { return !(h == 1 && i % 11 == 2) && attend_test::unit_hash(8, 0, h, i, j) < 0.6; },
     [](Index, Index h, Index i) { return h == 1 && i % 11 == 2; }},
    {"Rank4KeyPadding",  // (B, 1, 1, Nk): batch 1 has no valid key
     {kBoolB, 1, 1, kBoolNk},
     [](Index b, Index, Index, Index) { return b == 0; },
     [](Index b, Index, Index) { return b == 1; }},
};

class BoolMask : public ::testing::TestWithParam<MaskRow> {};

TEST_P(BoolMask, EveryPathEveryTypeMatchesReference) {
  const MaskRow& row = GetParam();
  Inputs in = attend_test::random_inputs(kBoolB, kBoolH, kBoolH, kBoolNq, kBoolNk, 16, 8, 101);
  attend_test::set_keep_mask(in, row.dims, [&](Index b, Index h, Index i, Index j) { return row.value(b, h, i, j) != 0; });
  const std::string what = std::string("bool mask ") + row.name;
  attend_test::expect_paths_match_reference_all_types(in, what);
  if (row.dead) expect_dead_rows_all_types(in, row.dead, what);
}

INSTANTIATE_TEST_SUITE_P(Ranks, BoolMask, ::testing::ValuesIn(kBoolMasks), row_name);

// Additive masks over B = 2, H = 2 (one kv head), Nq = 66, Nk = 71: biases in [-3, 3) with -inf
// entries, and rows of -inf.
constexpr Index kAddB = 2, kAddH = 2, kAddNq = 66, kAddNk = 71;
double bias(std::uint64_t seed, Index b, Index h, Index i, Index j) {
  const double u = attend_test::unit_hash(seed, b, h, i, j);
  return u < 0.25 ? -attend_test::kInf : 6.0 * (u - 0.5);
}
const MaskRow kAdditiveMasks[] = {
    {"Rank1Keys", {kAddNk}, [](Index b, Index h, Index i, Index j) { return bias(10, b, h, i, j); }, {}},
    {"Rank2QueriesKeys",
     {kAddNq, kAddNk},
     [](Index b, Index h, Index i, Index j) { return i % 7 == 3 ? -attend_test::kInf : bias(11, b, h, i, j); },
     [](Index, Index, Index i) { return i % 7 == 3; }},
    {"Rank3HeadsBroadcastQueries",  // (H, 1, Nk): no query dimension, so no row of -inf
     {kAddH, 1, kAddNk},
     [](Index b, Index h, Index i, Index j) { return bias(12, b, h, i, j); },
     {}},
    {"Rank4Full",
     {kAddB, kAddH, kAddNq, kAddNk},
     [](Index b, Index h, Index i, Index j) { return i % 7 == 3 ? -attend_test::kInf : bias(13, b, h, i, j); },
     [](Index, Index, Index i) { return i % 7 == 3; }},
    {"Rank4OneBiasPerQuery",  // (B, 1, Nq, 1): a -inf bias kills its row
     {kAddB, 1, kAddNq, 1},
     [](Index b, Index h, Index i, Index j) {
       return b == 1 && i % 5 == 0 ? -attend_test::kInf : 3.0 * attend_test::unit_hash(13, b, h, i, j);
     },
     [](Index b, Index, Index i) { return b == 1 && i % 5 == 0; }},
};

class AdditiveMask : public ::testing::TestWithParam<MaskRow> {};

TEST_P(AdditiveMask, EveryPathEveryTypeMatchesReference) {
  const MaskRow& row = GetParam();
  Inputs in = attend_test::random_inputs(kAddB, kAddH, 1, kAddNq, kAddNk, 32, 16, 102);
  attend_test::set_additive_mask(in, row.dims, row.value);
  const std::string what = std::string("additive mask ") + row.name;
  attend_test::expect_paths_match_reference_all_types(in, what);
  if (row.dead) expect_dead_rows_all_types(in, row.dead, what);
}

INSTANTIATE_TEST_SUITE_P(Ranks, AdditiveMask, ::testing::ValuesIn(kAdditiveMasks), row_name);

// ---- Typed tests ----

template <typename T>
class Typed : public ::testing::Test {};
TYPED_TEST_SUITE(Typed, attend_test::AllTypes, attend_test::TypeNames);

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
  expect_dead_rows<T>(in, [](Index b, Index, Index) { return b == 2; }, "decode");
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
      if (c == Causal::bottom_right && Nq > Nk) {
        expect_dead_rows<T>(in, [&](Index, Index, Index i) { return i < Nq - Nk; }, what);
      }
      for (const Path p : kAllPaths) {
        const auto r = attend_test::run<T>(in, attend_test::on(p));
        const std::string w = what + " path " + attend::path_name(p);
        if (!(c == Causal::bottom_right && Nq > Nk)) {
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

}  // namespace
