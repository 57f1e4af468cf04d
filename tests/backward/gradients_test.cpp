// The backward pass on every path, in every element type, against the naive backward in double on the
// same T-rounded inputs (support/reference.hpp, naive_backward): dq, dk, dv and, for additive masks,
// dmask, each within grad_tolerance (support/attend_test.hpp).
//
// Shapes sit at the edges of the 64 x 64 tiles (TileTraits kBlockQ = kBlockK = 64): Nq and Nk in
// {1, 63, 64, 65} and primes (37, 61, 127, 131, 257), D != Dv, grouped- and multi-query heads, both
// causal alignments with Nq != Nk, bool and additive masks of every broadcast rank (dmask summed over
// the broadcast dimensions), rows that see no key (zero gradients, never NaN), Nq = 0 and Nk = 0,
// decode shapes, calls whose flash backward splits its keys (GradTraits: fewer than kMinItems
// (b, kv head) pairs, or a split bounded by kSplitBytes) run on several threads, logits in the
// hundreds, dropout (the naive backward with the documented keep-mask; p = 1 gives zeros), and
// gradients written through strided views, the packed (B, N, 3, H, D) buffer of a fused QKV projection
// among them.
//
// run_grad (support/calls.hpp) pre-fills every gradient with a sentinel, so an element a path leaves
// unwritten fails the comparison.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"
#include "support/reference.hpp"

namespace {

using attend::Causal;
using attend::ConstView;
using attend::Index;
using attend::Path;
using attend::TensorView;
using attend_test::Gradients;
using attend_test::Inputs;
using attend_test::kAllPaths;
using attend_test::MaskKind;
using attend_test::RunSpec;

constexpr Causal TL = Causal::top_left;
constexpr Causal BR = Causal::bottom_right;
constexpr Causal NC = Causal::none;

/// An upstream gradient for `in`: standard normal, from a seed of its own.
std::vector<double> dout_for(const Inputs& in, std::uint64_t seed) { return attend_test::randn(in.out_size(), seed); }

// ---- Shapes: tile edges, primes, D != Dv, GQA/MQA, causal alignments, decode ----

struct Shape {
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
  Causal causal = NC;
};

std::string name_of(const Shape& s) {
  std::string n = "B" + std::to_string(s.B) + "H" + std::to_string(s.Hq) + "Hkv" + std::to_string(s.Hkv) + "Nq" +
                  std::to_string(s.Nq) + "Nk" + std::to_string(s.Nk) + "D" + std::to_string(s.D) + "Dv" +
                  std::to_string(s.Dv);
  if (s.causal == TL) n += "_CausalTopLeft";
  if (s.causal == BR) n += "_CausalBottomRight";
  return n;
}

void PrintTo(const Shape& s, std::ostream* os) { *os << name_of(s); }

Inputs make_inputs(const Shape& s) {
  const std::uint64_t seed = static_cast<std::uint64_t>(s.B * 7 + s.Hq * 131 + s.Nq * 1009 + s.Nk * 9176 + s.D * 31 +
                                                        s.Dv * 17 + static_cast<int>(s.causal) * 3 + 5000);
  Inputs in = attend_test::random_inputs(s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.D, s.Dv, seed);
  in.causal = s.causal;
  return in;
}

class GradShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(GradShapes, EveryPathEveryTypeMatchesReference) {
  const Inputs in = make_inputs(GetParam());
  attend_test::expect_grad_paths_match_reference_all_types(in, dout_for(in, 77), name_of(GetParam()));
}

std::string shape_name(const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); }

// Each of Nq, Nk in {1, 63, 64, 65, 37, 61, 127, 131, 257} appears, not every pair. (1, 1, 1, 61, 257)
// has one (b, kv head) and five key tiles: the flash backward splits its keys five ways.
const Shape kPlain[] = {
    {1, 1, 1, 1, 1, 1, 1},       {1, 1, 1, 63, 63, 8, 8},      {1, 1, 1, 64, 64, 16, 16},  {1, 1, 1, 65, 65, 16, 8},
    {1, 2, 1, 37, 61, 8, 12},    {1, 2, 2, 127, 131, 16, 16},  {1, 1, 1, 257, 37, 8, 8},   {1, 1, 1, 61, 257, 16, 32},
    {2, 4, 2, 65, 130, 32, 16},  {1, 4, 1, 131, 127, 8, 8},    {1, 1, 1, 64, 1, 24, 8},    {1, 3, 3, 1, 65, 80, 16},
    {1, 2, 2, 37, 63, 128, 64},  {1, 1, 1, 63, 64, 1, 24},
};
INSTANTIATE_TEST_SUITE_P(TileEdges, GradShapes, ::testing::ValuesIn(kPlain), shape_name);

// Both causal alignments with Nq < Nk and Nq > Nk (bottom_right with Nq > Nk: rows that see no key;
// top_left with Nq < Nk: keys nobody sees, whose dk and dv are 0).
const Shape kCausal[] = {
    {1, 2, 1, 37, 61, 8, 8, TL},     {1, 2, 1, 37, 61, 8, 8, BR},     {1, 1, 1, 61, 37, 8, 16, TL},
    {1, 1, 1, 61, 37, 8, 16, BR},    {1, 2, 2, 65, 130, 16, 16, TL},  {1, 2, 2, 65, 130, 16, 16, BR},
    {1, 1, 1, 131, 64, 16, 8, TL},   {1, 1, 1, 131, 64, 16, 8, BR},   {1, 2, 1, 127, 127, 32, 32, TL},
    {1, 1, 1, 1, 257, 16, 16, TL},   {1, 1, 1, 1, 257, 16, 16, BR},   {2, 2, 1, 63, 65, 8, 8, BR},
};
INSTANTIATE_TEST_SUITE_P(Causal, GradShapes, ::testing::ValuesIn(kCausal), shape_name);

// Few queries per head against many keys (a decode step's shapes; the backward has no decode kernel,
// but every path must serve them): MQA and GQA, causal bottom_right.
const Shape kDecode[] = {
    {1, 8, 2, 1, 1100, 32, 32},
    {1, 4, 1, 4, 700, 16, 8, BR},
    {2, 2, 2, 2, 530, 8, 24},
};
INSTANTIATE_TEST_SUITE_P(Decode, GradShapes, ::testing::ValuesIn(kDecode), shape_name);

// ---- Masks of every rank, with dmask for the additive ones ----

using DeadRows = std::function<bool(Index b, Index h, Index i)>;

struct MaskRow {
  const char* name;
  std::vector<Index> dims;
  std::function<double(Index b, Index h, Index i, Index j)> value;
  DeadRows dead;  // the rows the mask leaves without a visible key (none if empty)
  Causal causal = NC;
};

void PrintTo(const MaskRow& r, std::ostream* os) { *os << r.name; }

std::string row_name(const ::testing::TestParamInfo<MaskRow>& i) { return i.param.name; }

/// Expects dq = 0 exactly (not NaN, not a sentinel) on every dead row, on every path, and that the
/// case has such rows.
template <typename T>
void expect_dead_rows_zero(const Inputs& in, const std::vector<double>& dout, const DeadRows& dead,
                           const std::string& what) {
  for (const Path p : kAllPaths) {
    const auto r = attend_test::run_grad<T>(in, dout, attend_test::on(p));
    const std::string w = what + " type=" + attend::type_name<T>() + " path=" + attend::path_name(p);
    int rows = 0;
    for (Index b = 0; b < in.B; ++b)
      for (Index h = 0; h < in.Hq; ++h)
        for (Index i = 0; i < in.Nq; ++i) {
          if (!dead(b, h, i)) continue;
          ++rows;
          const std::size_t row = static_cast<std::size_t>((b * in.Hq + h) * in.Nq + i);
          for (Index d = 0; d < in.D; ++d) {
            const double g = r.dq[row * static_cast<std::size_t>(in.D) + static_cast<std::size_t>(d)];
            ASSERT_TRUE(g == 0.0) << w << " dq row (" << b << ", " << h << ", " << i << ") d " << d << " = " << g;
          }
        }
    EXPECT_GT(rows, 0) << w << ": premise, the case has rows that see no key";
  }
}

// Bool masks over B = 2, Hq = 2, Hkv = 1, Nq = 70, Nk = 67 (two key tiles: the flash backward splits
// the keys of its two (b, kv head) pairs).
constexpr Index kMB = 2, kMH = 2, kMNq = 70, kMNk = 67;
const MaskRow kBoolMasks[] = {
    {"Rank1Keys", {kMNk}, [](Index, Index, Index, Index j) { return j % 3 != 0; }, {}},
    {"Rank2QueriesKeys",
     {kMNq, kMNk},
     [](Index, Index, Index i, Index j) { return i % 9 != 4 && attend_test::unit_hash(7, 0, 0, i, j) < 0.6; },
     [](Index, Index, Index i) { return i % 9 == 4; }},
    {"Rank3HeadsQueriesKeysTopLeft",
     {kMH, kMNq, kMNk},
     [](Index, Index h, Index i, Index j) { return !(h == 1 && i % 11 == 2) && attend_test::unit_hash(8, 0, h, i, j) < 0.6; },
     [](Index, Index h, Index i) { return h == 1 && i % 11 == 2; },
     TL},
    {"Rank4KeyPaddingBottomRight",  // (B, 1, 1, Nk): batch 1 has no valid key
     {kMB, 1, 1, kMNk},
     [](Index b, Index, Index, Index j) { return b == 0 && j != 5; },
     [](Index b, Index, Index) { return b == 1; },
     BR},
};

class GradBoolMask : public ::testing::TestWithParam<MaskRow> {};

TEST_P(GradBoolMask, EveryPathEveryTypeMatchesReference) {
  const MaskRow& row = GetParam();
  Inputs in = attend_test::random_inputs(kMB, kMH, 1, kMNq, kMNk, 16, 8, 5101);
  in.causal = row.causal;
  attend_test::set_keep_mask(in, row.dims, [&](Index b, Index h, Index i, Index j) { return row.value(b, h, i, j) != 0; });
  const std::vector<double> dout = dout_for(in, 5102);
  const std::string what = std::string("bool mask ") + row.name;
  attend_test::expect_grad_paths_match_reference_all_types(in, dout, what);
  if (row.dead) {
    expect_dead_rows_zero<double>(in, dout, row.dead, what);
    expect_dead_rows_zero<Eigen::half>(in, dout, row.dead, what);
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, GradBoolMask, ::testing::ValuesIn(kBoolMasks), row_name);

/// Biases in [-3, 3) with -inf entries at about 20%.
double bias(std::uint64_t seed, Index b, Index h, Index i, Index j) {
  const double u = attend_test::unit_hash(seed, b, h, i, j);
  return u < 0.2 ? -attend_test::kInf : 7.5 * (u - 0.6);
}

// Additive masks over B = 2, Hq = 4, Hkv = 2, Nq = 66, Nk = 71, with dmask: every broadcast pattern a
// dmask element can sum over (B, Hq, Nq, Nk, and all four), rows of -inf.
constexpr Index kAB = 2, kAH = 4, kANq = 66, kANk = 71;
const MaskRow kAdditiveMasks[] = {
    {"Rank1Keys", {kANk}, [](Index b, Index h, Index i, Index j) { return bias(10, b, h, i, j); }, {}},
    {"Rank1OneBiasBottomRight", {1}, [](Index, Index, Index, Index) { return 0.75; }, {}, BR},
    {"Rank2QueriesKeys",
     {kANq, kANk},
     [](Index b, Index h, Index i, Index j) { return i % 7 == 3 ? -attend_test::kInf : bias(11, b, h, i, j); },
     [](Index, Index, Index i) { return i % 7 == 3; }},
    {"Rank3HeadsBroadcastQueriesTopLeft",
     {kAH, 1, kANk},
     [](Index b, Index h, Index i, Index j) { return bias(12, b, h, i, j); },
     {},
     TL},
    {"Rank3HeadsQueriesBroadcastKeys",  // (Hq, Nq, 1): a sum over the keys, so the flash backward does not split them
     {kAH, kANq, 1},
     [](Index b, Index h, Index i, Index j) { return 3.0 * attend_test::unit_hash(14, b, h, i, j) - 1.0; },
     {}},
    {"Rank4Full",
     {kAB, kAH, kANq, kANk},
     [](Index b, Index h, Index i, Index j) { return i % 7 == 3 ? -attend_test::kInf : bias(13, b, h, i, j); },
     [](Index, Index, Index i) { return i % 7 == 3; }},
    {"Rank4KeyPadding",  // (B, 1, 1, Nk): a sum over heads of two kv heads and over queries
     {kAB, 1, 1, kANk},
     [](Index b, Index, Index, Index j) { return b == 1 || j % 4 == 1 ? -attend_test::kInf : 0.1 * j - 3.0; },
     [](Index b, Index, Index) { return b == 1; }},
    {"Rank4OneBiasPerQueryBottomRight",  // (B, 1, Nq, 1)
     {kAB, 1, kANq, 1},
     [](Index b, Index h, Index i, Index j) {
       return b == 1 && i % 5 == 0 ? -attend_test::kInf : 3.0 * attend_test::unit_hash(15, b, h, i, j);
     },
     [](Index b, Index, Index i) { return b == 1 && i % 5 == 0; },
     BR},
};

class GradAdditiveMask : public ::testing::TestWithParam<MaskRow> {};

TEST_P(GradAdditiveMask, EveryPathEveryTypeMatchesReferenceWithDmask) {
  const MaskRow& row = GetParam();
  Inputs in = attend_test::random_inputs(kAB, kAH, 2, kANq, kANk, 16, 24, 5201);
  in.causal = row.causal;
  attend_test::set_additive_mask(in, row.dims, row.value);
  const std::vector<double> dout = dout_for(in, 5202);
  const std::string what = std::string("additive mask ") + row.name;
  attend_test::expect_grad_paths_match_reference_all_types(in, dout, what, {}, /*want_dmask=*/true);
  // Premise: dmask is not trivially 0 where it need not be. A bias that is constant along the keys
  // (a mask of size 1 in Nk) does not change the softmax, so its gradient is 0 (Σ_j dS_ij = 0): the
  // comparison above holds the paths to that, within the rounding of the sum.
  const Gradients ref = attend_test::naive_backward(in, dout);
  if (row.dims.back() != 1) {
    EXPECT_GT(attend_test::max_abs_finite(ref.dmask), 1e-3) << what;
  }
  if (row.dead) expect_dead_rows_zero<float>(in, dout, row.dead, what);
}

INSTANTIATE_TEST_SUITE_P(Ranks, GradAdditiveMask, ::testing::ValuesIn(kAdditiveMasks), row_name);

// ---- Typed tests ----

template <typename T>
class Grad : public ::testing::Test {};
TYPED_TEST_SUITE(Grad, attend_test::AllTypes, attend_test::TypeNames);

// Dead rows and keys nobody sees: exactly 0 in dq, dk, dv and dmask, not NaN. A batch whose key
// padding hides every key (rows dead in every head), and keys that top_left causality hides from all
// queries (Nq < Nk): their dk and dv rows are 0 on every path.
TYPED_TEST(Grad, DeadRowsAndUnseenKeysHaveZeroGradients) {
  using T = TypeParam;
  Inputs in = attend_test::random_inputs(2, 2, 1, 20, 70, 8, 8, 5301);
  in.causal = TL;  // keys 20..69 are seen by nobody
  attend_test::set_additive_mask(in, {2, 1, 1, 70}, [](Index b, Index, Index, Index j) {
    return b == 1 ? -attend_test::kInf : 0.05 * static_cast<double>(j);
  });
  const std::vector<double> dout = dout_for(in, 5302);
  for (const Path p : kAllPaths) {
    const std::string w = std::string("type=") + attend::type_name<T>() + " path=" + attend::path_name(p);
    const auto r = attend_test::run_grad<T>(in, dout, attend_test::on(p), true);
    // Batch 1: every gradient element 0; batch 0: the keys 20..69 0 in dk and dv.
    for (std::size_t e = r.dq.size() / 2; e < r.dq.size(); ++e) ASSERT_TRUE(r.dq[e] == 0.0) << w << " dq[" << e << "]";
    for (std::size_t e = r.dk.size() / 2; e < r.dk.size(); ++e) ASSERT_TRUE(r.dk[e] == 0.0) << w << " dk[" << e << "]";
    for (std::size_t e = r.dv.size() / 2; e < r.dv.size(); ++e) ASSERT_TRUE(r.dv[e] == 0.0) << w << " dv[" << e << "]";
    for (std::size_t e = 70; e < 140; ++e) ASSERT_TRUE(r.dmask[e] == 0.0) << w << " dmask[" << e << "]";
    for (Index j = 20; j < 70; ++j) {
      for (Index d = 0; d < 8; ++d) {
        ASSERT_TRUE(r.dk[static_cast<std::size_t>(j * 8 + d)] == 0.0) << w << " dk key " << j;
        ASSERT_TRUE(r.dv[static_cast<std::size_t>(j * 8 + d)] == 0.0) << w << " dv key " << j;
      }
      ASSERT_TRUE(r.dmask[static_cast<std::size_t>(j)] == 0.0) << w << " dmask key " << j;
    }
    // Premise: batch 0's seen keys have gradients.
    EXPECT_NE(r.dv[0], 0.0) << w;
  }
  attend_test::expect_grad_paths_match_reference<T>(in, dout, "dead rows", {}, true);
}

// Nq = 0: dk and dv are 0 and dq has no element; Nk = 0: dq is 0 and dk, dv have none; B = 0: nothing.
// dmask (of a mask that broadcasts over the empty dimension) is 0. Every path.
TYPED_TEST(Grad, EmptyQueriesOrKeys) {
  using T = TypeParam;
  const Shape shapes[] = {{2, 2, 1, 0, 9, 8, 4}, {2, 2, 1, 5, 0, 8, 4}, {0, 2, 1, 5, 9, 8, 4}};
  for (const Shape& s : shapes) {
    Inputs in = make_inputs(s);
    attend_test::set_additive_mask(in, {1, 1}, [](Index, Index, Index, Index) { return 0.5; });
    const std::vector<double> dout = dout_for(in, 5401);
    for (const Path p : kAllPaths) {
      const std::string w = name_of(s) + " type=" + attend::type_name<T>() + " path=" + attend::path_name(p);
      attend_test::GradResult<T> r;
      ASSERT_NO_THROW(r = attend_test::run_grad<T>(in, dout, attend_test::on(p), true)) << w;
      ASSERT_EQ(r.dq.size(), static_cast<std::size_t>(in.q_size())) << w;
      for (double g : r.dq) ASSERT_TRUE(g == 0.0) << w << " dq";
      for (double g : r.dk) ASSERT_TRUE(g == 0.0) << w << " dk";
      for (double g : r.dv) ASSERT_TRUE(g == 0.0) << w << " dv";
      ASSERT_EQ(r.dmask.size(), 1u) << w;
      EXPECT_TRUE(r.dmask[0] == 0.0) << w << " dmask " << r.dmask[0];
    }
  }
}

// Logits in the hundreds (q, k ~ N(0, 15^2), D = 64): P recomputed from the forward's lse must not
// overflow; gradients finite and within tolerance of the double reference.
TYPED_TEST(Grad, LogitsInTheHundreds) {
  using T = TypeParam;
  const Inputs in = attend_test::random_inputs(1, 2, 1, 100, 130, 64, 32, 5501, 15.0);
  const std::vector<double> dout = dout_for(in, 5502);
  const auto fwd = attend_test::reference<T>(in);
  double max_lse = 0;
  for (double l : fwd.lse) max_lse = std::max(max_lse, std::abs(l));
  ASSERT_GT(max_lse, 200.0) << "premise: logits in the hundreds";
  for (const Path p : kAllPaths) {
    const auto r = attend_test::run_grad<T>(in, dout, attend_test::on(p));
    for (const auto* g : {&r.dq, &r.dk, &r.dv})
      for (double x : *g) ASSERT_TRUE(std::isfinite(x)) << attend::path_name(p);
  }
  attend_test::expect_grad_paths_match_reference<T>(in, dout, "large logits");
}

// The flash backward splits the keys of a (b, kv head) over several items when a call has fewer than
// GradTraits::kMinItems pairs, and sums dq over the splits in a fixed order: with one pair and 5 key
// tiles, each tile is a split; with 8 pairs and 5 tiles, splits of two tiles (the last ragged). On a
// 2-thread pool (the splits of one pair run side by side and wait for each other's dq adds) and
// without one, with causality (tiles that some splits do not see) and GQA.
TYPED_TEST(Grad, SplitKeysOnThreads) {
  using T = TypeParam;
  Eigen::ThreadPool pool(2);
  const Eigen::ThreadPoolDevice device(&pool, 2);
  const Shape shapes[] = {{1, 1, 1, 130, 300, 16, 8, NC}, {2, 8, 4, 70, 300, 8, 16, BR}, {1, 2, 1, 200, 200, 16, 16, TL}};
  for (const Shape& s : shapes) {
    const Inputs in = make_inputs(s);
    RunSpec spec;
    spec.device = &device;
    attend_test::expect_grad_paths_match_reference<T>(in, dout_for(in, 5601), name_of(s) + " threads=2", spec);
  }
}

// A split bounded by GradTraits::kSplitBytes rather than by kMinItems: D = 1024, Dv = 352 in double
// (a split's K, V, dK and dV rows take 2 · (1024 + 352) · 8 bytes per key, so 4 MiB holds 2 key
// tiles), 32 (b, kv head) pairs (so kMinItems asks for no split) and Nk = 129 keys (3 tiles): splits
// of 128 keys and of 1, on a 2-thread pool. f64 only: float's rows are half as wide, so the bound
// needs twice the keys for the same property.
TEST(GradSplitBytes, WideHeadsSplitByScratchBound) {
  Eigen::ThreadPool pool(2);
  const Eigen::ThreadPoolDevice device(&pool, 2);
  const Inputs in = attend_test::random_inputs(1, 32, 32, 1, 129, 1024, 352, 5701, 0.25);
  RunSpec spec;
  spec.device = &device;
  const std::vector<double> dout = dout_for(in, 5702);
  const Gradients ref = attend_test::grad_reference<double>(in, dout);
  for (const Path p : {Path::flash, Path::math}) {
    spec.route = attend_test::forced(p);
    const auto r = attend_test::run_grad<double>(in, dout, spec);
    attend_test::expect_grads_close(r, ref, in, std::string("wide heads path=") + attend::path_name(p));
  }
}

// 16-bit types accumulate dq, dk and dv in fp32 and round once at the end (docs/semantics.md,
// "Gradients"), where PyTorch's CPU kernel rounds to the input type after every tile. Sums that cancel
// across tiles tell the two apart: query rows 64..127 repeat rows 0..63 with dout negated (plus a
// little noise), so dk and dv sum to a little over the two query tiles while each tile's share is
// large; keys 64..127 repeat keys 0..63 with v negated, so dq's two key tiles (two splits of the flash
// backward: one (b, kv head) pair) cancel too. A share rounded to T costs eps(T) times the share, tens
// of times the tolerance (eps(T) times the result, plus fp32's error on the shares).
TYPED_TEST(Grad, SixteenBitTypesAccumulateInFp32) {
  using T = TypeParam;
  const Index N = 128, H = 64, D = 16, Dv = 16;
  Inputs in = attend_test::random_inputs(1, 1, 1, N, N, D, Dv, 6101);
  std::vector<double> dout = dout_for(in, 6102);
  const std::vector<double> noise = attend_test::randn(in.out_size(), 6103, 0.01);
  for (Index i = 0; i < H; ++i) {
    for (Index d = 0; d < D; ++d) {
      in.q[static_cast<std::size_t>((i + H) * D + d)] = in.q[static_cast<std::size_t>(i * D + d)];
      in.k[static_cast<std::size_t>((i + H) * D + d)] = in.k[static_cast<std::size_t>(i * D + d)];
    }
    for (Index d = 0; d < Dv; ++d) {
      const std::size_t a = static_cast<std::size_t>(i * Dv + d), b = static_cast<std::size_t>((i + H) * Dv + d);
      in.v[a] *= 8.0;
      in.v[b] = -in.v[a] + noise[a];
      dout[a] *= 8.0;
      dout[b] = -dout[a] + noise[b];
    }
  }
  attend_test::expect_grad_paths_match_reference<T>(in, dout, "cancelling tiles");
  // Premise: the shares are much larger than the sums.
  const Gradients ref = attend_test::grad_reference<T>(in, dout);
  EXPECT_GT(ref.terms.dv, 20 * attend_test::max_abs_finite(ref.dv));
  EXPECT_GT(ref.terms.dk, 20 * attend_test::max_abs_finite(ref.dk));
  EXPECT_GT(ref.terms.dq, 20 * attend_test::max_abs_finite(ref.dq));
}

// The tiled backwards allocate no Nq x Nk buffer (docs/semantics.md, "Memory"): at Nq = Nk = 8192
// (one (b, kv head) pair, so the flash backward splits its keys and keeps an fp32 dq accumulator of
// q's size), the workspace of either tiled path is under 1/8 of one fp32 Nq x Nk matrix, and doubling
// Nq and Nk less than triples it (a quadratic buffer would quadruple it). A query: nothing runs.
TEST(GradWorkspace, NoQueriesByKeysBuffer) {
  const Index H = 2, D = 64;
  const attend::Attend<float> flash = attend_test::make_attend<float>(attend_test::forced(Path::flash));
  const attend::Attend<float> mem = attend_test::make_attend<float>(attend_test::forced(Path::mem_efficient));
  const auto bytes = [&](const attend::Attend<float>& a, Index N) {
    const float* p = reinterpret_cast<const float*>(std::uintptr_t{64});  // never read: a query
    const ConstView<float, 4> q(p, {1, H, N, D}), k(p, {1, 1, N, D}), v(p, {1, 1, N, D});
    attend::CallOptions<float> o;
    o.causal = Causal::bottom_right;
    return static_cast<double>(a.backward_workspace_bytes(q, k, v, o));
  };
  const double quadratic = 8192.0 * 8192.0 * sizeof(float);
  for (const auto* a : {&flash, &mem}) {
    const std::string w = attend::path_name(a == &flash ? Path::flash : Path::mem_efficient);
    const double b1 = bytes(*a, 8192), b2 = bytes(*a, 16384);
    EXPECT_GT(b1, 0.0) << w;
    EXPECT_LT(b1, quadratic / 8) << w;
    EXPECT_LT(b2, 3 * b1) << w;
  }
}

// ---- Dropout ----

RunSpec training(double p, std::uint64_t seed, std::uint32_t offset) {
  RunSpec s;
  s.dropout = p;
  s.train = true;
  s.seed = seed;
  s.offset = offset;
  return s;
}

// The backward with dropout equals the naive backward with the documented keep-mask (Philox4x32-10
// at (seed, offset, b, h, i, j), drawn by the reference's own Philox) on every path: GQA, causal,
// an additive mask with dmask, Nk past a key tile (the flash backward's splits regenerate the mask
// from their own j), a seed above 2^32 and a non-zero offset. Premise: the dropout changes the
// gradients by far more than the tolerance (a path that ignored it, or drew another mask, fails).
TYPED_TEST(Grad, DropoutMatchesReferenceWithDocumentedKeepMask) {
  using T = TypeParam;
  Inputs in = attend_test::random_inputs(2, 4, 2, 37, 131, 16, 8, 5801);
  in.causal = BR;
  attend_test::set_additive_mask(in, {4, 1, 131}, [](Index b, Index h, Index i, Index j) { return bias(16, b, h, i, j); });
  const std::vector<double> dout = dout_for(in, 5802);
  for (const double p : {0.25, 0.9}) {
    const RunSpec spec = training(p, (std::uint64_t{3} << 32) + 17, 5);
    attend_test::expect_grad_paths_match_reference<T>(in, dout, "dropout p=" + std::to_string(p), spec, true);
    const Gradients with = attend_test::grad_reference<T>(in, dout, spec), without = attend_test::grad_reference<T>(in, dout);
    const auto d = attend_test::compare(with.dv, without.dv);
    EXPECT_GT(d.max_abs_err, 10 * attend_test::grad_tolerances<T>(in, with).dv) << "premise: the dropout shows";
  }
}

// p = 1 drops every weight: every gradient is exactly 0 (dmask too), on every path, even though the
// forward's lse is finite. Evaluation mode ignores the module's dropout: the gradients are those
// without dropout.
TYPED_TEST(Grad, DropoutOneGivesZerosAndEvalIgnoresDropout) {
  using T = TypeParam;
  Inputs in = attend_test::random_inputs(1, 2, 1, 65, 70, 8, 8, 5901);
  attend_test::set_additive_mask(in, {70}, [](Index, Index, Index, Index j) { return 0.01 * static_cast<double>(j); });
  const std::vector<double> dout = dout_for(in, 5902);
  for (const Path p : kAllPaths) {
    RunSpec spec = training(1.0, 99, 1);
    spec.route = attend_test::forced(p);
    const auto r = attend_test::run_grad<T>(in, dout, spec, true);
    const std::string w = std::string("p=1 path=") + attend::path_name(p);
    for (const auto* g : {&r.dq, &r.dk, &r.dv, &r.dmask})
      for (double x : *g) ASSERT_TRUE(x == 0.0) << w << ": " << x;
    for (double l : r.fwd.lse) ASSERT_TRUE(std::isfinite(l)) << w << ": premise, lse is not changed by dropout";
  }
  RunSpec eval = training(0.5, 99, 1);
  eval.train = false;
  attend_test::expect_grad_paths_match_reference<T>(in, dout, "eval mode with p=0.5", eval, true);
}

// ---- Strided views and the packed QKV gradient buffer ----

/// One packed (B, N, 3, H, D) buffer of q, k, v (a fused QKV projection's output) and one of their
/// gradients, with views of each third: (B, H, N, D) with strides (N·3·H·D, D, 3·H·D, 1).
template <typename T>
TensorView<T, 4> packed_view(T* base, Index B, Index N, Index H, Index D, Index which) {
  return TensorView<T, 4>(base + which * H * D, {B, H, N, D}, {N * 3 * H * D, D, 3 * H * D, 1});
}

// Gradients written through strided views are the same bits as into compact tensors, on every path
// and type: q, k, v read from one packed (B, N, 3, H, D) buffer and dq, dk, dv written into another
// (the fused QKV projection's layout, views that interleave without overlapping), and a dmask written
// through a view with padded rows. Nothing outside the views is written.
TYPED_TEST(Grad, PackedQkvBufferAndStridedViewsGiveTheSameBits) {
  using T = TypeParam;
  using Acc = attend::acc_t<T>;
  const Index B = 2, N = 67, H = 3, D = 8, Nd = N + 5;  // Nd: dmask's padded row
  std::vector<T> qkv(static_cast<std::size_t>(B * N * 3 * H * D));
  attend_test::fill(qkv.data(), static_cast<Index>(qkv.size()), 6001);
  std::vector<T> go(static_cast<std::size_t>(B * H * N * D)), bias(static_cast<std::size_t>(N * N));
  attend_test::fill(go.data(), static_cast<Index>(go.size()), 6002);
  attend_test::fill(bias.data(), static_cast<Index>(bias.size()), 6003, 0.5);
  const ConstView<T, 4> q = packed_view<const T>(qkv.data(), B, N, H, D, 0), k = packed_view<const T>(qkv.data(), B, N, H, D, 1),
                        v = packed_view<const T>(qkv.data(), B, N, H, D, 2);
  const ConstView<T, 4> dout(go.data(), {B, H, N, D});
  attend::CallOptions<T> o;
  o.mask = attend::Mask<T>::additive(ConstView<T, 2>(bias.data(), {N, N}));
  o.causal = BR;
  for (const Path p : kAllPaths) {
    const std::string w = std::string("type=") + attend::type_name<T>() + " path=" + attend::path_name(p);
    const attend::Attend<T> a = attend_test::make_attend<T>(attend_test::forced(p));
    std::vector<T> out(static_cast<std::size_t>(B * H * N * D));
    std::vector<Acc> lse(static_cast<std::size_t>(B * H * N));
    attend::CallOptions<T> fo = o;
    fo.lse = TensorView<Acc, 3>(lse.data(), {B, H, N});
    attend_test::forward(a, q, k, v, TensorView<T, 4>(out.data(), {B, H, N, D}), fo);
    const ConstView<T, 4> outv(out.data(), {B, H, N, D});
    const ConstView<Acc, 3> lsev(lse.data(), {B, H, N});

    // Compact: the returning form, and a compact dmask.
    const attend::Gradients<T> ref = attend_test::backward_returning(a, q, k, v, outv, lsev, dout, o);
    std::vector<T> dmask_ref(static_cast<std::size_t>(N * N));
    {
      attend::Tensor<T, 4> dq(B, H, N, D), dk(B, H, N, D), dv(B, H, N, D);
      attend::GradientViews<T> g{dq, dk, dv, attend::MaskGrad<T>::of(TensorView<T, 2>(dmask_ref.data(), {N, N}))};
      attend_test::backward(a, q, k, v, outv, lsev, dout, g, o);
      ASSERT_TRUE(attend_test::same_bits(dq, ref.dq)) << w << ": the two call forms differ";
    }
    // Packed: one (B, N, 3, H, D) gradient buffer, and dmask rows Nd apart; a sentinel everywhere.
    const T sentinel = static_cast<T>(-3.0);
    std::vector<T> dqkv(qkv.size() + 16, sentinel), dmask(static_cast<std::size_t>(N * Nd), sentinel);
    attend::GradientViews<T> g{packed_view(dqkv.data(), B, N, H, D, 0), packed_view(dqkv.data(), B, N, H, D, 1),
                               packed_view(dqkv.data(), B, N, H, D, 2),
                               attend::MaskGrad<T>::of(TensorView<T, 2>(dmask.data(), {N, N}, {Nd, 1}))};
    attend_test::backward(a, q, k, v, outv, lsev, dout, g, o);
    for (Index b = 0; b < B; ++b)
      for (Index h = 0; h < H; ++h)
        for (Index n = 0; n < N; ++n)
          for (Index d = 0; d < D; ++d) {
            ASSERT_EQ(std::memcmp(&g.dq(b, h, n, d), &ref.dq(b, h, n, d), sizeof(T)), 0) << w << " dq";
            ASSERT_EQ(std::memcmp(&g.dk(b, h, n, d), &ref.dk(b, h, n, d), sizeof(T)), 0) << w << " dk";
            ASSERT_EQ(std::memcmp(&g.dv(b, h, n, d), &ref.dv(b, h, n, d), sizeof(T)), 0) << w << " dv";
          }
    for (std::size_t e = qkv.size(); e < dqkv.size(); ++e) ASSERT_EQ(static_cast<double>(dqkv[e]), -3.0) << w;
    for (Index i = 0; i < N; ++i) {
      for (Index j = 0; j < N; ++j) {
        ASSERT_EQ(std::memcmp(&dmask[static_cast<std::size_t>(i * Nd + j)], &dmask_ref[static_cast<std::size_t>(i * N + j)],
                              sizeof(T)),
                  0)
            << w << " dmask (" << i << ", " << j << ")";
      }
      for (Index j = N; j < Nd; ++j) ASSERT_EQ(static_cast<double>(dmask[static_cast<std::size_t>(i * Nd + j)]), -3.0) << w;
    }
    // Premise: the gradients are not all zero.
    EXPECT_NE(static_cast<double>(ref.dk(0, 0, 0, 0)), 0.0) << w;
  }
}

}  // namespace
