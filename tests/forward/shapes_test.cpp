// Every path, in every element type, against the naive reference in double on the same T-rounded inputs,
// over shapes at the edges of the 64 x 64 tiles (KernelTraits kBlockQ = kBlockK = 64): sequence
// lengths 1, 63, 64, 65, 113 (prime), 130, 194 (3 * 64 + 2) for Nq and Nk independently, head
// dimensions 1, 8, 16, 64, 80, 128 with Dv != D, grouped-query heads, causal alignments and masks;
// and decode shapes (few queries per kv head, Nk past the 512-key splits of the decode kernel).

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::Causal;
using attend::Index;
using attend_test::Inputs;
using attend_test::MaskKind;

struct Shape {
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
  Causal causal = Causal::none;
  MaskKind mask = MaskKind::none;
};

std::string name_of(const Shape& s) {
  std::string n = "B" + std::to_string(s.B) + "H" + std::to_string(s.Hq) + "Hkv" + std::to_string(s.Hkv) + "Nq" +
                  std::to_string(s.Nq) + "Nk" + std::to_string(s.Nk) + "D" + std::to_string(s.D) + "Dv" +
                  std::to_string(s.Dv);
  if (s.causal == Causal::top_left) n += "_CausalTopLeft";
  if (s.causal == Causal::bottom_right) n += "_CausalBottomRight";
  if (s.mask == MaskKind::keep) n += "_BoolMask";
  if (s.mask == MaskKind::additive) n += "_AdditiveMask";
  return n;
}

// GoogleTest prints a failing parameter with PrintTo; without it, a Shape is a 64-byte hex dump.
void PrintTo(const Shape& s, std::ostream* os) { *os << name_of(s); }

Inputs make_inputs(const Shape& s) {
  const std::uint64_t seed = static_cast<std::uint64_t>(s.B * 7 + s.Hq * 131 + s.Nq * 1009 + s.Nk * 9176 + s.D * 31 +
                                                        s.Dv * 17 + static_cast<int>(s.causal) * 3 +
                                                        static_cast<int>(s.mask) * 5);
  Inputs in = attend_test::random_inputs(s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.D, s.Dv, seed);
  in.causal = s.causal;
  if (s.mask == MaskKind::keep) {
    // Per-batch (B, 1, Nq, Nk): 70% kept; every 17th query row of batch 0 fully masked.
    attend_test::set_keep_mask(in, {s.B, 1, s.Nq, s.Nk}, [&](Index b, Index h, Index i, Index j) {
      if (b == 0 && i % 17 == 3) return false;
      return attend_test::unit_hash(seed, b, h, i, j) < 0.7;
    });
  } else if (s.mask == MaskKind::additive) {
    // Per-head (Hq, Nq, Nk): a N(0,1)-like bias, -inf at 20%; every 13th row of head 0 all -inf.
    attend_test::set_additive_mask(in, {s.Hq, s.Nq, s.Nk}, [&](Index b, Index h, Index i, Index j) {
      const double u = attend_test::unit_hash(seed, b, h, i, j);
      if ((h == 0 && i % 13 == 5) || u < 0.2) return -attend_test::kInf;
      return 4.0 * (u - 0.6);
    });
  }
  return in;
}

class Shapes : public ::testing::TestWithParam<Shape> {};

TEST_P(Shapes, EveryPathEveryTypeMatchesReference) {
  const Inputs in = make_inputs(GetParam());
  attend_test::expect_paths_match_reference_all_types(in, name_of(GetParam()));
}

constexpr Causal TL = Causal::top_left;
constexpr Causal BR = Causal::bottom_right;
constexpr Causal NC = Causal::none;

// Plain shapes: each length in {1, 63, 64, 65, 113, 194} appears as Nq and as Nk, but not all pairs.
const Shape kPlain[] = {
    {1, 1, 1, 1, 1, 1, 1},         {1, 2, 1, 1, 194, 64, 64},    {1, 1, 1, 63, 63, 8, 8},
    {1, 1, 1, 64, 64, 64, 64},     {1, 1, 1, 65, 65, 64, 64},    {2, 4, 2, 65, 130, 64, 32},
    {1, 2, 2, 113, 113, 80, 80},   {1, 1, 1, 194, 194, 128, 128}, {1, 3, 3, 64, 65, 8, 16},
    {1, 2, 1, 65, 64, 128, 8},     {1, 4, 2, 113, 1, 16, 8},     {1, 1, 1, 194, 63, 1, 24},
    {2, 2, 1, 63, 113, 80, 16},    {1, 2, 2, 1, 65, 128, 64},    {1, 1, 1, 113, 194, 1, 1},
    {1, 6, 3, 194, 113, 8, 8},
};
// An f32 output of 32 MiB (8193 x 1024 floats), the size from which the tiled kernels write it with
// non-temporal stores (KernelTraits::kStreamOutputBytes); Dv = 1024 also has partial 16-lane blocks
// nowhere, Nk = 17 and D = 8 keep the call cheap.
const Shape kStreamed[] = {{1, 1, 1, 8193, 17, 8, 1024}};
INSTANTIATE_TEST_SUITE_P(StreamedOutput, Shapes, ::testing::ValuesIn(kStreamed),
                         [](const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); });

INSTANTIATE_TEST_SUITE_P(TileEdges, Shapes, ::testing::ValuesIn(kPlain),
                         [](const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); });

// Causal, both alignments, with Nq < Nk and Nq > Nk around the tile edges (bottom_right with Nq > Nk
// has rows that see no key; a tile that the diagonal crosses takes the masking branch).
const Shape kCausal[] = {
    {1, 2, 1, 63, 65, 16, 16, TL},   {1, 2, 1, 63, 65, 16, 16, BR},   {1, 1, 1, 65, 63, 16, 8, TL},
    {1, 1, 1, 65, 63, 16, 8, BR},    {1, 2, 2, 64, 194, 64, 64, TL},  {1, 2, 2, 64, 194, 64, 64, BR},
    {1, 1, 1, 194, 64, 8, 8, TL},    {1, 1, 1, 194, 64, 8, 8, BR},    {1, 2, 1, 113, 113, 80, 80, TL},
    {1, 2, 1, 113, 113, 80, 80, BR}, {1, 1, 1, 1, 194, 64, 64, TL},   {1, 1, 1, 1, 194, 64, 64, BR},
    {1, 1, 1, 194, 1, 8, 8, TL},     {1, 1, 1, 194, 1, 8, 8, BR},     {2, 2, 2, 130, 65, 32, 16, TL},
    {2, 2, 2, 130, 65, 32, 16, BR},  {1, 1, 1, 65, 130, 128, 128, BR},
};
INSTANTIATE_TEST_SUITE_P(Causal, Shapes, ::testing::ValuesIn(kCausal),
                         [](const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); });

// Masks (with fully masked rows), alone and combined with causality.
const Shape kMasked[] = {
    {2, 2, 1, 65, 113, 64, 64, NC, MaskKind::keep},     {1, 1, 1, 194, 63, 8, 8, NC, MaskKind::keep},
    {1, 2, 2, 1, 65, 16, 16, NC, MaskKind::keep},       {1, 3, 3, 113, 65, 80, 16, NC, MaskKind::additive},
    {2, 2, 2, 63, 194, 8, 8, NC, MaskKind::additive},   {1, 2, 2, 65, 130, 16, 16, BR, MaskKind::keep},
    {1, 2, 1, 130, 65, 16, 16, TL, MaskKind::additive},
};
INSTANTIATE_TEST_SUITE_P(Masked, Shapes, ::testing::ValuesIn(kMasked),
                         [](const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); });

// The edges of AMX's 16 x 16 tiles (bf16 on AMX, AmxTraits): key counts 1, 15, 16, 17, 31, 33 and 37
// (prime) around the 16-key C tiles and 32-key reduction steps, D = 16, 40, 64, 80, 128 around the
// 32-d steps (40 and 80 end mid-step), Dv around the 16-row tiles of O^T. Query counts stay above the
// decode kernel's limit (8 + (D + Dv) / 8 with AVX-512) so that the query tiles serve them.
const Shape kAmxEdges[] = {
    {1, 2, 1, 15, 17, 16, 16},        {1, 1, 1, 16, 31, 16, 8},          {1, 2, 2, 17, 16, 16, 24},
    {1, 1, 1, 31, 15, 40, 40},        {1, 2, 1, 33, 1, 40, 16},          {1, 1, 1, 31, 33, 64, 64},
    {1, 2, 2, 33, 37, 64, 40},        {1, 1, 1, 37, 16, 80, 80},         {1, 2, 1, 41, 17, 80, 64},
    {1, 1, 1, 47, 33, 128, 128},      {1, 1, 1, 47, 31, 128, 16},        {1, 2, 2, 97, 15, 64, 64},
    {1, 1, 1, 33, 37, 64, 64, BR},    {1, 1, 1, 37, 33, 40, 40, TL},     {1, 2, 1, 33, 31, 80, 80, NC, MaskKind::keep},
};
INSTANTIATE_TEST_SUITE_P(AmxEdges, Shapes, ::testing::ValuesIn(kAmxEdges),
                         [](const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); });

// Few queries per head (Nq <= (D + Dv) / 8, or 8 more with AVX-512), which the flash path serves
// with a split-KV decode kernel: several 512-key splits merged by log-sum-exp, ragged last split,
// causal rows whose later splits see no key, masks that empty a whole split.
const Shape kDecode[] = {
    {1, 4, 1, 1, 1100, 64, 64},                         {2, 8, 2, 2, 1030, 128, 64},
    {1, 16, 1, 1, 1500, 8, 8},                          {1, 2, 2, 1, 513, 80, 24},
    {1, 4, 4, 4, 600, 16, 16, BR},                      {1, 2, 1, 8, 1025, 32, 32, TL},
    {1, 4, 2, 3, 1100, 16, 8, NC, MaskKind::keep},      {1, 2, 1, 2, 1040, 16, 16, NC, MaskKind::additive},
    // The AVX-512 kernel's blocks: 3 rows (a block of 3), D past a packet (20, 36: masked tails),
    // Dv past 64 (72, 100: a second, partly masked block of value columns), Nk not a multiple of 4.
    {1, 3, 1, 1, 701, 20, 72},                          {1, 6, 2, 1, 530, 36, 100},
};
INSTANTIATE_TEST_SUITE_P(Decode, Shapes, ::testing::ValuesIn(kDecode),
                         [](const ::testing::TestParamInfo<Shape>& i) { return name_of(i.param); });

}  // namespace
