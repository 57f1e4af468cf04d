// Bad calls throw attend::Error and leave the pre-filled output (and lse) bitwise untouched.
// Table-driven: each row edits a valid call into an invalid one; add rows to grow it.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "support/attend_test.hpp"

namespace {

using attend::Index;
using attend::Path;
using attend_test::MaskKind;
using T = float;
using Acc = attend::acc_t<T>;

/// The arguments of one call; the defaults make a valid call.
struct Call {
  std::array<Index, 4> q{2, 4, 5, 8}, k{2, 2, 7, 8}, v{2, 2, 7, 6}, out{2, 4, 5, 6};
  std::optional<std::array<Index, 4>> out_strides;  // default: row-major
  std::array<Index, 3> lse{2, 4, 5};
  MaskKind mask = MaskKind::none;
  std::vector<Index> mask_dims;
  bool out_aliases_q = false;
  // The module.
  double dropout = 0.0;
  bool flash = true;
  std::optional<double> scale;
  attend::FlashAttentionConfig config{};
};

struct Row {
  const char* name;
  std::function<void(Call&)> edit;
  bool out_only = false;  // an error about `out` alone: dispatch() and workspace_bytes() accept the call
};

attend::FlashAttentionConfig only(Path p) { return attend_test::only(p); }

const Row kRows[] = {
    {"BatchOfKDiffers", [](Call& c) { c.k[0] = 3; }},
    {"BatchOfVDiffers", [](Call& c) { c.v[0] = 1; }},
    {"HeadDimOfKDiffers", [](Call& c) { c.k[3] = 9; }},
    {"HeadsOfVDiffer", [](Call& c) { c.v[1] = 4; }},
    {"LengthOfVDiffers", [](Call& c) { c.v[2] = 8; }},
    {"HqNotAMultipleOfHkv", [](Call& c) { c.q[1] = c.out[1] = c.lse[1] = 3; }},
    {"HeadDimZero", [](Call& c) { c.q[3] = c.k[3] = 0; }},
    {"NegativeQueryLength", [](Call& c) { c.q[2] = -1; }},
    {"OutBatchWrong", [](Call& c) { c.out[0] = 1; }, true},
    {"OutHeadsWrong", [](Call& c) { c.out[1] = 2; }, true},
    {"OutLengthWrong", [](Call& c) { c.out[2] = 6; }, true},
    {"OutValueDimWrong", [](Call& c) { c.out[3] = 8; }, true},
    {"OutNotContiguousInLastDim", [](Call& c) { c.out_strides = std::array<Index, 4>{240, 60, 12, 2}; }, true},
    {"OutSelfOverlapping", [](Call& c) { c.out_strides = std::array<Index, 4>{120, 6, 6, 1}; }, true},  // heads and rows overlap
    {"OutAliasesQ", [](Call& c) { c.out_aliases_q = true; }, true},
    {"LseShapeWrong", [](Call& c) { c.lse[2] = 4; }},
    {"BoolMaskKeyLengthWrong",
     [](Call& c) {
       c.mask = MaskKind::keep;
       c.mask_dims = {8};
     }},
    {"BoolMaskBatchWrong",
     [](Call& c) {
       c.mask = MaskKind::keep;
       c.mask_dims = {3, 1, 5, 7};
     }},
    {"AdditiveMaskQueryLengthWrong",
     [](Call& c) {
       c.mask = MaskKind::additive;
       c.mask_dims = {4, 4, 7};
     }},
    {"AdditiveMaskHeadsWrong",
     [](Call& c) {
       c.mask = MaskKind::additive;
       c.mask_dims = {2, 2, 5, 7};
     }},
    {"NoPathEnabled", [](Call& c) { c.config = {false, false, false}; }},
    {"OnlyFlashButHeadDimTooBig",
     [](Call& c) {
       c.config = only(Path::flash);
       c.q[3] = c.k[3] = attend::Attend<T>::kMaxTiledHeadDim + 1;
     }},
    {"OnlyMemEfficientButValueDimTooBig",
     [](Call& c) {
       c.config = only(Path::mem_efficient);
       c.v[3] = c.out[3] = attend::Attend<T>::kMaxTiledHeadDim + 1;
     }},
    {"ScaleUnderflowsInFloat", [](Call& c) { c.scale = 1e-50; }},
    {"ScaleOverflowsInFloat", [](Call& c) { c.scale = 1e300; }},
};

Index count(const std::array<Index, 4>& d) { return std::max<Index>(0, d[0] * d[1] * d[2] * d[3]); }

class BadCall : public ::testing::TestWithParam<Row> {};

TEST_P(BadCall, ThrowsAndLeavesOutputUntouched) {
  Call c;
  GetParam().edit(c);
  auto sized = [](Index n) { return static_cast<std::size_t>(std::max<Index>(n, 1)); };
  std::vector<T> q(sized(count(c.q) + count(c.out) + 64), T(0.5)), k(sized(count(c.k)), T(0.25)),
      v(sized(count(c.v)), T(1));
  // out and lse hold a byte pattern that no write of a float result would leave behind.
  const Index out_span = count(c.out) * 4 + 64;  // room for the strided views of the table
  std::vector<T> out(sized(out_span));
  std::vector<Acc> lse(sized(c.lse[0] * c.lse[1] * c.lse[2]));
  std::memset(out.data(), 0x5A, out.size() * sizeof(T));
  std::memset(lse.data(), 0xA5, lse.size() * sizeof(Acc));
  const std::vector<T> q0 = q, out0 = out;
  const std::vector<Acc> lse0 = lse;

  const std::size_t mask_n = [&] {
    Index n = 1;
    for (Index d : c.mask_dims) n *= d;
    return sized(n);
  }();
  std::unique_ptr<bool[]> keep(new bool[mask_n]);
  for (std::size_t i = 0; i < mask_n; ++i) keep[i] = true;
  std::vector<T> bias(mask_n, T(0));

  attend::CallOptions<T> o;
  if (c.mask == MaskKind::keep) o.mask = attend_test::make_mask<T, bool>(keep.get(), c.mask_dims);
  if (c.mask == MaskKind::additive) o.mask = attend_test::make_mask<T, T>(bias.data(), c.mask_dims);
  o.lse = attend::TensorView<Acc, 3>(lse.data(), c.lse);

  T* out_ptr = c.out_aliases_q ? q.data() : out.data();
  const attend::TensorView<T, 4> outv = c.out_strides ? attend::TensorView<T, 4>(out_ptr, c.out, *c.out_strides)
                                                      : attend::TensorView<T, 4>(out_ptr, c.out);
  const attend::ConstView<T, 4> qv(q.data(), c.q), kv(k.data(), c.k), vv(v.data(), c.v);

  const attend::Attend<T> a(c.dropout, c.flash, c.scale, c.config);
  EXPECT_THROW(a(qv, kv, vv, outv, o), attend::Error);
  EXPECT_THROW(a.forward(qv, kv, vv, outv, o), attend::Error);
  if (!GetParam().out_only) {
    EXPECT_THROW(a.dispatch(qv, kv, vv, o), attend::Error);
    EXPECT_THROW((void)a.workspace_bytes(qv, kv, vv, o), attend::Error);
  }
  EXPECT_EQ(std::memcmp(out.data(), out0.data(), out.size() * sizeof(T)), 0) << "out was written";
  EXPECT_EQ(std::memcmp(lse.data(), lse0.data(), lse.size() * sizeof(Acc)), 0) << "lse was written";
  EXPECT_EQ(std::memcmp(q.data(), q0.data(), q.size() * sizeof(T)), 0) << "q was written";
}

INSTANTIATE_TEST_SUITE_P(Table, BadCall, ::testing::ValuesIn(kRows),
                         [](const ::testing::TestParamInfo<Row>& i) { return std::string(i.param.name); });

// The unedited call is valid: the table's rows fail because of their edit, not the base.
TEST(BadCallTable, BaseCallIsValid) {
  Call c;
  std::vector<T> q(static_cast<std::size_t>(count(c.q)), T(0.5)), k(static_cast<std::size_t>(count(c.k)), T(0.25)),
      v(static_cast<std::size_t>(count(c.v)), T(1)), out(static_cast<std::size_t>(count(c.out)));
  std::vector<Acc> lse(static_cast<std::size_t>(c.lse[0] * c.lse[1] * c.lse[2]));
  attend::CallOptions<T> o;
  o.lse = attend::TensorView<Acc, 3>(lse.data(), c.lse);
  const attend::Attend<T> a(c.dropout, c.flash, c.scale, c.config);
  EXPECT_NO_THROW(a(attend::ConstView<T, 4>(q.data(), c.q), attend::ConstView<T, 4>(k.data(), c.k),
                    attend::ConstView<T, 4>(v.data(), c.v), attend::TensorView<T, 4>(out.data(), c.out), o));
  // uniform keys: every output is the mean of v = 1
  for (T x : out) EXPECT_FLOAT_EQ(x, 1.0f);
}

/// Constructor arguments Attend refuses.
struct BadModule {
  const char* name;
  double dropout;
  std::optional<double> scale;
};

const BadModule kBadModules[] = {
    {"DropoutNegative", -0.1, std::nullopt},
    {"DropoutAboveOne", 1.0000001, std::nullopt},
    {"DropoutNaN", std::numeric_limits<double>::quiet_NaN(), std::nullopt},
    {"DropoutInf", std::numeric_limits<double>::infinity(), std::nullopt},
    {"ScaleNaN", 0.0, std::numeric_limits<double>::quiet_NaN()},
    {"ScalePlusInf", 0.0, std::numeric_limits<double>::infinity()},
    {"ScaleMinusInf", 0.0, -std::numeric_limits<double>::infinity()},
    {"ScaleZero", 0.0, 0.0},
    {"ScaleMinusZero", 0.0, -0.0},
};

class BadConstruction : public ::testing::TestWithParam<BadModule> {};

TEST_P(BadConstruction, Throws) {
  const BadModule& m = GetParam();
  EXPECT_THROW(attend::Attend<float>(m.dropout, true, m.scale), attend::Error);
  EXPECT_THROW(attend::Attend<double>(m.dropout, false, m.scale), attend::Error);
}

INSTANTIATE_TEST_SUITE_P(Table, BadConstruction, ::testing::ValuesIn(kBadModules),
                         [](const ::testing::TestParamInfo<BadModule>& i) { return std::string(i.param.name); });

TEST(BadConstructionTable, EdgesAreValid) {
  EXPECT_NO_THROW(attend::Attend<float>(0.0));
  EXPECT_NO_THROW(attend::Attend<float>(1.0));
  EXPECT_NO_THROW(attend::Attend<float>(0.5, true, -0.125));  // a negative scale is a valid scale
  EXPECT_NO_THROW(attend::Attend<float>(0.5, true, 1e-30));
}

TEST(ErrorType, IsInvalidArgumentWithPrefix) {
  try {
    attend::Attend<float> a(2.0);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("attend: ", 0), 0u) << e.what();
    EXPECT_NE(dynamic_cast<const attend::Error*>(&e), nullptr);
  }
}

}  // namespace
