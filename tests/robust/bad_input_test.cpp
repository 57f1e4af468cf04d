// Bad input gets a clear error, and the output is untouched.
//
// One table row per bad call. Each row starts from a valid call (B = 2, Hq = 4, Hkv = 2, Nq = 5,
// Nk = 7, D = 8, Dv = 6, with an lse output), breaks one thing, and is run on every route (the three
// forced paths, flash = false and the default config) and every entry point that sees the broken
// argument (forward into a view, the returning operator(), dispatch(), workspace_bytes()). Each must
// throw attend::Error whose message names the argument and the shapes, and leave every byte of the
// output, lse and inputs as it was. Mistakes the types make unrepresentable are checked at compile
// time at the end of this file (and by the compile-fail tests in tests/robust/CMakeLists.txt).
//
// The table is docs/errors.md; the DocsTable test checks that each row's message excerpt is in it.

#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::ConstView;
using attend::Index;
using attend::TensorView;
using attend_test::Route;

constexpr Index kB = 2, kHq = 4, kHkv = 2, kNq = 5, kNk = 7, kD = 8, kDv = 6;
constexpr Index kInSize = 16384, kOutSize = 8192, kLseSize = 256, kKeepSize = 256;
constexpr Index kOffK = 4096, kOffV = 8192, kOffMask = 12288;  // q at 0

/// A valid call whose pieces a row may break. Inputs lie in one arena (so an output can be aimed
/// at them); out and lse lie in arenas pre-filled with a pattern that the call must not change.
template <typename T>
struct Call {
  using Acc = attend::acc_t<T>;
  std::vector<T> in = std::vector<T>(kInSize);
  std::vector<T> outbuf = std::vector<T>(kOutSize);
  std::vector<Acc> lsebuf = std::vector<Acc>(kLseSize);
  std::unique_ptr<bool[]> keepbuf = std::make_unique<bool[]>(kKeepSize);

  ConstView<T, 4> q{in.data(), {kB, kHq, kNq, kD}};
  ConstView<T, 4> k{in.data() + kOffK, {kB, kHkv, kNk, kD}};
  ConstView<T, 4> v{in.data() + kOffV, {kB, kHkv, kNk, kDv}};
  TensorView<T, 4> out{outbuf.data(), {kB, kHq, kNq, kDv}};
  attend::CallOptions<T> opt;

  // Constructor arguments.
  double dropout = 0.0;
  std::optional<double> scale;
  bool training = false;

  Call() {
    attend_test::fill(in.data(), kInSize, 1);
    // A pattern no call writes: alternating bytes, so a 0, a NaN or a copy of an input shows.
    std::memset(static_cast<void*>(outbuf.data()), 0xA5, sizeof(T) * kOutSize);
    std::memset(static_cast<void*>(lsebuf.data()), 0x5A, sizeof(Acc) * kLseSize);
    for (Index i = 0; i < kKeepSize; ++i) keepbuf[i] = (i % 3) != 0;
    opt.lse = TensorView<Acc, 3>(lsebuf.data(), {kB, kHq, kNq});
  }
  T* mask_data() { return in.data() + kOffMask; }
};

enum Entry : unsigned { kForward = 1, kReturning = 2, kDispatch = 4, kWorkspace = 8, kAll = 15 };

template <typename T>
struct Row {
  std::string argument;               // docs: the argument at fault
  std::string condition;              // docs: what is wrong with it
  std::function<void(Call<T>&)> setup;
  std::vector<std::string> expect;    // substrings of the message; the first is the docs excerpt
  unsigned entries = kAll;            // the entry points that see the argument
  std::optional<Route> route{};       // a row about the config runs on this route only
};

template <typename T>
ConstView<T, 4> view(const T* p, attend::Index b, Index h, Index n, Index d) {
  return ConstView<T, 4>(p, {b, h, n, d});
}

template <typename T>
std::vector<Row<T>> rows() {
  using Acc = attend::acc_t<T>;
  using C = Call<T>;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::string tn = attend::type_name<T>();
  std::vector<Row<T>> r;

  // ---- q, k, v sizes ----
  r.push_back({"k", "batch size differs from q's (dimension 0)",
               [](C& c) { c.k = view<T>(c.in.data() + kOffK, 3, kHkv, kNk, kD); },
               {"q, k and v must have the same batch size B", "q (2, 4, 5, 8), k (3, 2, 7, 8), v (2, 2, 7, 6)"}});
  r.push_back({"v", "batch size differs from q's (dimension 0)",
               [](C& c) { c.v = view<T>(c.in.data() + kOffV, 1, kHkv, kNk, kDv); },
               {"q, k and v must have the same batch size B", "v (1, 2, 7, 6)"}});
  r.push_back({"q, k", "head dimension D differs (dimension 3)",
               [](C& c) { c.k = view<T>(c.in.data() + kOffK, kB, kHkv, kNk, 9); },
               {"q and k must have the same head dimension D", "q (2, 4, 5, 8), k (2, 2, 7, 9)"}});
  r.push_back({"k, v", "number of heads Hkv differs (dimension 1)",
               [](C& c) { c.v = view<T>(c.in.data() + kOffV, kB, 1, kNk, kDv); },
               {"k and v must have the same number of heads Hkv", "k (2, 2, 7, 8), v (2, 1, 7, 6)"}});
  r.push_back({"k, v", "sequence length Nk differs (dimension 2)",
               [](C& c) { c.v = view<T>(c.in.data() + kOffV, kB, kHkv, 8, kDv); },
               {"k and v must have the same sequence length Nk", "k (2, 2, 7, 8), v (2, 2, 8, 6)"}});
  r.push_back({"q, k", "Hq is not a multiple of Hkv",
               [](C& c) { c.q = view<T>(c.in.data(), kB, 3, kNq, kD); },
               {"the query heads Hq = 3 must be a multiple of the key/value heads Hkv = 2", "q (2, 3, 5, 8)"}});
  r.push_back({"q, k", "Hq < Hkv (Hq = 2, Hkv = 4)",
               [](C& c) {
                 c.q = view<T>(c.in.data(), kB, 2, kNq, kD);
                 c.k = view<T>(c.in.data() + kOffK, kB, 4, kNk, kD);
                 c.v = view<T>(c.in.data() + kOffV, kB, 4, kNk, kDv);
               },
               {"the query heads Hq = 2 must be a multiple of the key/value heads Hkv = 4", "k (2, 4, 7, 8)"}});
  r.push_back({"k, v", "no heads (Hkv = 0) while Hq > 0",
               [](C& c) {
                 c.k = view<T>(c.in.data() + kOffK, kB, 0, kNk, kD);
                 c.v = view<T>(c.in.data() + kOffV, kB, 0, kNk, kDv);
               },
               {"k and v have no heads (Hkv = 0) but q has Hq = 4", "k (2, 0, 7, 8)"}});
  r.push_back({"q, k", "head dimension D = 0",
               [](C& c) {
                 c.q = view<T>(c.in.data(), kB, kHq, kNq, 0);
                 c.k = view<T>(c.in.data() + kOffK, kB, kHkv, kNk, 0);
               },
               {"the head dimension D must be at least 1", "q (2, 4, 5, 0), k (2, 2, 7, 0)"}});
  r.push_back({"q", "a negative size",
               [](C& c) { c.q = view<T>(c.in.data(), kB, kHq, -5, kD); },
               {"q has a negative size: shape (2, 4, -5, 8)"}});
  r.push_back({"k", "a shape but a null data pointer",
               [](C& c) { c.k = view<T>(nullptr, kB, kHkv, kNk, kD); },
               {"k has shape (2, 2, 7, 8) but no data (null pointer)"}});

  // ---- q, k, v strides ----
  r.push_back({"q", "zero stride",
               [](C& c) { c.q = ConstView<T, 4>(c.in.data(), {kB, kHq, kNq, kD}, {160, 0, 8, 1}); },
               {"q has stride 0 in dimension 1 (strides (160, 0, 8, 1), shape (2, 4, 5, 8)): strides must be positive"}});
  r.push_back({"k", "negative stride",
               [](C& c) { c.k = ConstView<T, 4>(c.in.data() + kOffK + 48, {kB, kHkv, kNk, kD}, {112, 56, -8, 1}); },
               {"k has stride -8 in dimension 2", "strides must be positive"}});
  r.push_back({"v", "last dimension not contiguous (stride 2)",
               [](C& c) { c.v = ConstView<T, 4>(c.in.data() + kOffV, {kB, kHkv, kNk, kDv}, {168, 84, 12, 2}); },
               {"v must be contiguous in its last dimension, but has strides (168, 84, 12, 2) for shape (2, 2, 7, 6)"}});
  r.push_back({"q", "last dimension with stride 0",
               [](C& c) { c.q = ConstView<T, 4>(c.in.data(), {kB, kHq, kNq, kD}, {40, 10, 1, 0}); },
               {"q has stride 0 in dimension 3"}});

  // ---- out ----
  r.push_back({"out", "wrong shape (Dv of k's D instead of v's)",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {kB, kHq, kNq, kD}); },
               {"out has shape (2, 4, 5, 8) but must be (B, Hq, Nq, Dv) = (2, 4, 5, 6)", "v (2, 2, 7, 6)"},
               kForward});
  r.push_back({"out", "wrong shape (Nq)",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {kB, kHq, kNk, kDv}); },
               {"out has shape (2, 4, 7, 6) but must be (B, Hq, Nq, Dv) = (2, 4, 5, 6)"}, kForward});
  r.push_back({"out", "wrong shape (B)",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {1, kHq, kNq, kDv}); },
               {"but must be (B, Hq, Nq, Dv) = (2, 4, 5, 6)", "out has shape (1, 4, 5, 6)"}, kForward});
  r.push_back({"out", "wrong shape (Hq)",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {kB, kHkv, kNq, kDv}); },
               {"but must be (B, Hq, Nq, Dv) = (2, 4, 5, 6)", "out has shape (2, 2, 5, 6)"}, kForward});
  r.push_back({"out", "zero stride",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {kB, kHq, kNq, kDv}, {120, 30, 0, 1}); },
               {"out has stride 0 in dimension 2", "strides must be positive"}, kForward});
  r.push_back({"out", "negative stride",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data() + 200, {kB, kHq, kNq, kDv}, {-120, 30, 6, 1}); },
               {"out has stride -120 in dimension 0"}, kForward});
  r.push_back({"out", "last dimension not contiguous",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {kB, kHq, kNq, kDv}, {480, 120, 24, 2}); },
               {"out must be contiguous in its last dimension, but has strides (480, 120, 24, 2)"}, kForward});
  r.push_back({"out", "a shape but a null data pointer",
               [](C& c) { c.out = TensorView<T, 4>(nullptr, {kB, kHq, kNq, kDv}); },
               {"out has shape (2, 4, 5, 6) but no data (null pointer)"}, kForward});
  r.push_back({"out", "elements overlap each other (row stride 3 < Dv = 6)",
               [](C& c) { c.out = TensorView<T, 4>(c.outbuf.data(), {kB, kHq, kNq, kDv}, {120, 30, 3, 1}); },
               {"out has strides (120, 30, 3, 1) for shape (2, 4, 5, 6): two of its elements share memory"},
               kForward});
  r.push_back({"out", "overlaps q's memory",
               [](C& c) { c.out = TensorView<T, 4>(c.in.data() + 100, {kB, kHq, kNq, kDv}); },
               {"out overlaps the memory of q", "the output must not alias an input"}, kForward});
  r.push_back({"out", "overlaps k's memory",
               [](C& c) { c.out = TensorView<T, 4>(c.in.data() + kOffK + 100, {kB, kHq, kNq, kDv}); },
               {"out overlaps the memory of k"}, kForward});
  r.push_back({"out", "is v (in place)",
               [](C& c) {
                 c.v = view<T>(c.in.data() + kOffV, kB, kHq, kNq, kDv);
                 c.k = view<T>(c.in.data() + kOffK, kB, kHq, kNq, kD);
                 c.out = TensorView<T, 4>(c.in.data() + kOffV, {kB, kHq, kNq, kDv});
               },
               {"out overlaps the memory of v"}, kForward});
  r.push_back({"out", "overlaps the additive mask",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::additive(ConstView<T, 2>(c.mask_data(), {kNq, kNk}));
                 c.out = TensorView<T, 4>(c.mask_data() - 200, {kB, kHq, kNq, kDv});
               },
               {"the output overlaps the memory of the additive mask"}, kForward});
  r.push_back({"out", "overlaps the bool mask",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::keep(
                     ConstView<bool, 2>(reinterpret_cast<const bool*>(c.outbuf.data()) + 3, {kNq, kNk}));
               },
               {"the output overlaps the memory of the bool mask"}, kForward});

  // ---- lse ----
  r.push_back({"lse", "wrong shape",
               [](C& c) { c.opt.lse = TensorView<Acc, 3>(c.lsebuf.data(), {kB, kHq, kNq + 1}); },
               {"lse has shape (2, 4, 6) but must be (B, Hq, Nq) = (2, 4, 5)"}});
  r.push_back({"lse", "zero stride",
               [](C& c) { c.opt.lse = TensorView<Acc, 3>(c.lsebuf.data(), {kB, kHq, kNq}, {20, 5, 0}); },
               {"lse has strides (20, 5, 0): strides must be positive"}});
  r.push_back({"lse", "elements overlap each other",
               [](C& c) { c.opt.lse = TensorView<Acc, 3>(c.lsebuf.data(), {kB, kHq, kNq}, {8, 2, 1}); },
               {"lse has strides (8, 2, 1) for shape (2, 4, 5): two of its elements share memory"}});
  r.push_back({"lse", "a shape but a null data pointer",
               [](C& c) { c.opt.lse = TensorView<Acc, 3>(nullptr, {kB, kHq, kNq}); },
               {"lse has a shape but no data (null pointer)"}});
  r.push_back({"lse", "overlaps q's memory",
               [](C& c) { c.opt.lse = TensorView<Acc, 3>(reinterpret_cast<Acc*>(c.in.data()), {kB, kHq, kNq}); },
               {"lse overlaps the memory of q"}});
  r.push_back({"lse", "overlaps out's memory",
               [](C& c) { c.opt.lse = TensorView<Acc, 3>(reinterpret_cast<Acc*>(c.outbuf.data()) + 4, {kB, kHq, kNq}); },
               {"lse overlaps the memory of out"}, kForward});

  // ---- masks ----
  r.push_back({"mask", "bool mask, a dimension neither full nor 1",
               [](C& c) { c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 2>(c.keepbuf.get(), {kNq, 6})); },
               {"bool mask of shape (1, 1, 5, 6) (rank 2, padded on the left to 4) does not broadcast to (B, Hq, Nq, Nk) = "
                "(2, 4, 5, 7): dimension Nk is 6, must be 7 or 1"}});
  r.push_back({"mask", "additive rank-4 mask with Hkv heads instead of Hq",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::additive(ConstView<T, 4>(c.mask_data(), {kB, kHkv, kNq, kNk}));
               },
               {"additive mask of shape (2, 2, 5, 7) (rank 4, padded on the left to 4) does not broadcast",
                "dimension Hq is 2, must be 4 or 1"}});
  r.push_back({"mask", "rank-3 mask whose first dimension is not Hq",
               [](C& c) { c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 3>(c.keepbuf.get(), {3, kNq, kNk})); },
               {"bool mask of shape (1, 3, 5, 7) (rank 3", "dimension Hq is 3, must be 4 or 1"}});
  r.push_back({"mask", "rank-1 mask of the wrong length",
               [](C& c) { c.opt.mask = attend::Mask<T>::additive(ConstView<T, 1>(c.mask_data(), {kNq})); },
               {"additive mask of shape (1, 1, 1, 5) (rank 1", "dimension Nk is 5, must be 7 or 1"}});
  r.push_back({"mask", "a (B, 1, Nq, Nk) mask with a Q/K mix-up (B, 1, Nk, Nq)",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 4>(c.keepbuf.get(), {kB, 1, kNk, kNq}));
               },
               {"dimension Nq is 7, must be 5 or 1"}});
  r.push_back({"mask", "negative stride",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 2>(c.keepbuf.get() + 6, {kNq, kNk}, {kNk, -1}));
               },
               {"bool mask has stride -1 in its dimension Nk of size 7", "must be positive"}});
  r.push_back({"mask", "zero stride on a dimension of size > 1 (use size 1 to broadcast)",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::additive(ConstView<T, 2>(c.mask_data(), {kNq, kNk}, {0, 1}));
               },
               {"additive mask has stride 0 in its dimension Nq of size 5"}});
  r.push_back({"mask", "a shape but a null data pointer",
               [](C& c) { c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 2>(nullptr, {kNq, kNk})); },
               {"bool mask has shape (1, 1, 5, 7) but no data"}});

  // ---- causal ----
  r.push_back({"causal", "not one of the enumerators",
               [](C& c) { c.opt.causal = static_cast<attend::Causal>(7); },
               {"causal must be Causal::none, Causal::top_left or Causal::bottom_right"}});

  // ---- dropout and scale (constructor) ----
  r.push_back({"dropout", "p < 0", [](C& c) { c.dropout = -0.25; },
               {"dropout must be a probability in [0, 1], got -0.250000"}});
  r.push_back({"dropout", "p > 1", [](C& c) { c.dropout = 1.5; },
               {"dropout must be a probability in [0, 1], got 1.500000"}});
  r.push_back({"dropout", "p just above 1", [](C& c) { c.dropout = 1.0000001; },
               {"dropout must be a probability in [0, 1]", "got 1.000000"}});
  r.push_back({"dropout", "p is NaN", [nan](C& c) { c.dropout = nan; },
               {"dropout must be a probability in [0, 1], got nan"}});
  r.push_back({"dropout", "p is +inf", [inf](C& c) { c.dropout = inf; },
               {"dropout must be a probability in [0, 1], got inf"}});
  r.push_back({"scale", "NaN", [nan](C& c) { c.scale = nan; }, {"scale must be finite and non-zero, got nan"}});
  r.push_back({"scale", "+inf", [inf](C& c) { c.scale = inf; }, {"scale must be finite and non-zero, got inf"}});
  r.push_back({"scale", "-inf", [inf](C& c) { c.scale = -inf; }, {"scale must be finite and non-zero, got -inf"}});
  r.push_back({"scale", "0", [](C& c) { c.scale = 0.0; }, {"scale must be finite and non-zero, got 0.000000"}});
  r.push_back({"scale", "-0", [](C& c) { c.scale = -0.0; }, {"scale must be finite and non-zero, got -0.000000"}});
  if constexpr (!std::is_same_v<Acc, double>) {
    r.push_back({"scale", "finite in double but infinite in the accumulation type (1e300)",
                 [](C& c) { c.scale = 1e300; }, {"is not usable in " + tn, "it must be finite and non-zero"}});
    r.push_back({"scale", "non-zero in double but 0 in the accumulation type (1e-60)",
                 [](C& c) { c.scale = 1e-60; }, {"is not usable in " + tn}});
  }

  // ---- dropout's 32-bit Philox counter words (never read: the views are checked, not touched) ----
  r.push_back({"q", "dropout with Nq >= 2^32 (Philox counter word)",
               [](C& c) {
                 const Index n = Index(1) << 32;
                 c.q = ConstView<T, 4>(c.in.data(), {1, 2, n, kD}, {2 * n * kD, n * kD, kD, 1});
                 c.k = view<T>(c.in.data() + kOffK, 1, 2, kNk, kD);
                 c.v = view<T>(c.in.data() + kOffV, 1, 2, kNk, kDv);
                 c.opt.lse = {};
                 c.dropout = 0.5;
                 c.training = true;
               },
               {"dropout's Philox counter holds i, j / 4 and b * Hq + h in 32 bits each", "q (1, 2, 4294967296, 8)"},
               kReturning | kDispatch | kWorkspace});

  // ---- paths: a requested path that is disabled or cannot serve the call ----
  const Route flash_only = attend_test::forced_routes()[0];
  const Route mem_only = attend_test::forced_routes()[1];
  Route tiled_only = {"flash+mem_efficient", true, attend_test::only(attend::Path::flash), attend::Path::flash};
  tiled_only.config.enable_mem_efficient = true;
  Route none = {"none enabled", true, attend_test::only(attend::Path::flash), attend::Path::flash};
  none.config.enable_flash = false;
  auto big_d = [](C& c) {  // D = 1025 > kMaxTiledHeadDim
    c.q = view<T>(c.in.data(), 1, 1, 3, 1025);
    c.k = view<T>(c.in.data() + kOffK, 1, 1, 4, 1025);
    c.v = view<T>(c.in.data() + kOffV, 1, 1, 4, kDv);
    c.out = TensorView<T, 4>(c.outbuf.data(), {1, 1, 3, kDv});
    c.opt.lse = {};
  };
  r.push_back({"config", "only flash enabled, D > kMaxTiledHeadDim", big_d,
               {"no enabled path can serve this call: flash: head dimensions D = 1025, Dv = 6 exceed the tiled kernels' "
                "limit of 1024; mem_efficient: disabled in FlashAttentionConfig; math: disabled in FlashAttentionConfig"},
               kAll, flash_only});
  r.push_back({"config", "only mem_efficient enabled, Dv > kMaxTiledHeadDim",
               [](C& c) {
                 c.q = view<T>(c.in.data(), 1, 1, 3, kD);
                 c.v = view<T>(c.in.data() + kOffV, 1, 1, 2, 2000);
                 c.k = view<T>(c.in.data() + kOffK, 1, 1, 2, kD);
                 c.out = TensorView<T, 4>(c.outbuf.data(), {1, 1, 3, 2000});
                 c.opt.lse = {};
               },
               {"flash: disabled in FlashAttentionConfig; mem_efficient: head dimensions D = 8, Dv = 2000 exceed"},
               kAll, mem_only});
  r.push_back({"config", "flash and mem_efficient enabled, math disabled, D > kMaxTiledHeadDim", big_d,
               {"flash: head dimensions D = 1025, Dv = 6 exceed the tiled kernels' limit of 1024; mem_efficient: head "
                "dimensions D = 1025"},
               kAll, tiled_only});
  r.push_back({"config", "every path disabled (flash = true)", [](C&) {},
               {"no enabled path can serve this call: flash: disabled in FlashAttentionConfig; mem_efficient: disabled "
                "in FlashAttentionConfig; math: disabled in FlashAttentionConfig"},
               kAll, none});
  return r;
}

const char* entry_name(Entry e) {
  switch (e) {
    case kForward: return "forward(out)";
    case kReturning: return "operator() returning";
    case kDispatch: return "dispatch()";
    case kWorkspace: return "workspace_bytes()";
    default: return "?";
  }
}

/// Runs one entry point of a call; returns the message of the attend::Error it threw, or sets
/// `what` to describe another outcome.
template <typename T>
bool throws_error(const Route& route, Call<T>& c, Entry e, std::string& message) {
  try {
    attend::Attend<T> a(c.dropout, route.flash, c.scale, route.config, /*seed=*/42);
    a.train(c.training);
    switch (e) {
      case kForward: attend_test::forward(a, c.q, c.k, c.v, c.out, c.opt); break;
      case kReturning: (void)attend_test::call(a, c.q, c.k, c.v, c.opt); break;
      case kDispatch: (void)a.dispatch(c.q, c.k, c.v, c.opt); break;
      case kWorkspace: (void)a.workspace_bytes(c.q, c.k, c.v, c.opt); break;
      default: break;
    }
    message = "no exception";
    return false;
  } catch (const attend::Error& err) {
    message = err.what();
    return true;
  } catch (const std::exception& err) {
    message = std::string("a std::exception that is not attend::Error: ") + err.what();
    return false;
  } catch (...) {
    message = "an exception that is not a std::exception";
    return false;
  }
}

template <typename T>
class BadInput : public ::testing::Test {};
TYPED_TEST_SUITE(BadInput, attend_test::AllTypes, attend_test::TypeNames);

// The unbroken call works on every route and entry point: each row fails for its own reason.
TYPED_TEST(BadInput, ValidCallIsAccepted) {
  using T = TypeParam;
  for (const Route& route : attend_test::routes()) {
    for (Entry e : {kForward, kReturning, kDispatch, kWorkspace}) {
      Call<T> c;
      std::string message;
      EXPECT_FALSE(throws_error(route, c, e, message)) << route.name << ", " << entry_name(e) << ": " << message;
      EXPECT_EQ(message, "no exception") << route.name << ", " << entry_name(e);
    }
  }
}

TYPED_TEST(BadInput, EveryRowThrowsAndWritesNothing) {
  using T = TypeParam;
  using Acc = attend::acc_t<T>;
  int checked = 0;
  for (const Row<T>& row : rows<T>()) {
    std::vector<Route> routes;
    if (row.route) {
      routes.push_back(*row.route);
    } else {
      routes.assign(attend_test::routes().begin(), attend_test::routes().end());
    }
    for (const Route& route : routes) {
      for (Entry e : {kForward, kReturning, kDispatch, kWorkspace}) {
        if ((row.entries & e) == 0) continue;
        SCOPED_TRACE(row.argument + ": " + row.condition + " [" + route.name + ", " + entry_name(e) + "]");
        Call<T> c;
        row.setup(c);
        const std::vector<T> in0 = c.in;
        const std::vector<T> out0 = c.outbuf;
        const std::vector<Acc> lse0 = c.lsebuf;
        std::string message;
        ASSERT_TRUE(throws_error(route, c, e, message)) << message;
        EXPECT_EQ(message.rfind("attend: ", 0), 0u) << message;
        for (const std::string& part : row.expect) {
          EXPECT_NE(message.find(part), std::string::npos) << "message: " << message << "\nmissing: " << part;
        }
        EXPECT_EQ(std::memcmp(c.outbuf.data(), out0.data(), sizeof(T) * out0.size()), 0) << "out was written";
        EXPECT_EQ(std::memcmp(c.lsebuf.data(), lse0.data(), sizeof(Acc) * lse0.size()), 0) << "lse was written";
        EXPECT_EQ(std::memcmp(c.in.data(), in0.data(), sizeof(T) * in0.size()), 0) << "an input was written";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 300);
}

// A Workspace that is too small is grown, not an error; one that is big enough is used as is.
TYPED_TEST(BadInput, SmallWorkspaceIsGrown) {
  using T = TypeParam;
  for (const Route& route : attend_test::forced_routes()) {
    Call<T> c;
    attend::Workspace ws(1);
    c.opt.workspace = &ws;
    attend::Attend<T> a = attend_test::make_attend<T>(route);
    ASSERT_NO_THROW(attend_test::forward(a, c.q, c.k, c.v, c.out, c.opt)) << route.name;
    EXPECT_GE(ws.size(), a.workspace_bytes(c.q, c.k, c.v, c.opt)) << route.name;
  }
}

// The edges of the valid range are accepted on every route and entry point: dropout 0 and 1 (in
// training), a negative scale, a scale of 1e-30 (finite and non-zero in every accumulation type).
TYPED_TEST(BadInput, EdgesOfTheValidRangeAreAccepted) {
  using T = TypeParam;
  const std::pair<double, std::optional<double>> edges[] = {{0.0, std::nullopt}, {1.0, std::nullopt}, {0.5, -0.125},
                                                            {0.5, 1e-30}};
  for (const auto& edge : edges) {
    for (const Route& route : attend_test::routes()) {
      for (Entry e : {kForward, kReturning, kDispatch, kWorkspace}) {
        Call<T> c;
        c.dropout = edge.first;
        c.scale = edge.second;
        c.training = true;
        std::string message;
        EXPECT_FALSE(throws_error(route, c, e, message))
            << "dropout " << edge.first << ", scale " << edge.second.value_or(0.0) << " [" << route.name << ", "
            << entry_name(e) << "]: " << message;
      }
    }
  }
}

// ---- The backward pass: its own table (docs/errors.md, "The backward pass") ----
//
// A valid backward call of the same shapes: q, k, v, the forward's out and the upstream gradient
// dout in the input arena, the forward's lse in its own buffer, and dq, dk, dv (and dmask, where a
// row asks for one) in a gradient arena pre-filled with a pattern that no refused call may change.

constexpr Index kOffOut = 13312, kOffDout = 14336;           // in the input arena
constexpr Index kGradSize = 8192, kOffDk = 1024, kOffDv = 2048, kOffDmask = 4096;  // dq at 0

template <typename T>
struct BackwardCall {
  using Acc = attend::acc_t<T>;
  std::vector<T> in = std::vector<T>(kInSize);
  std::vector<T> gradbuf = std::vector<T>(kGradSize);
  std::vector<Acc> lsebuf = std::vector<Acc>(kLseSize);
  std::unique_ptr<bool[]> keepbuf = std::make_unique<bool[]>(kKeepSize);

  ConstView<T, 4> q{in.data(), {kB, kHq, kNq, kD}};
  ConstView<T, 4> k{in.data() + kOffK, {kB, kHkv, kNk, kD}};
  ConstView<T, 4> v{in.data() + kOffV, {kB, kHkv, kNk, kDv}};
  ConstView<T, 4> out{in.data() + kOffOut, {kB, kHq, kNq, kDv}};
  ConstView<T, 4> dout{in.data() + kOffDout, {kB, kHq, kNq, kDv}};
  ConstView<Acc, 3> lse{lsebuf.data(), {kB, kHq, kNq}};
  attend::GradientViews<T> g{TensorView<T, 4>(gradbuf.data(), {kB, kHq, kNq, kD}),
                             TensorView<T, 4>(gradbuf.data() + kOffDk, {kB, kHkv, kNk, kD}),
                             TensorView<T, 4>(gradbuf.data() + kOffDv, {kB, kHkv, kNk, kDv}),
                             {}};
  attend::CallOptions<T> opt;

  double dropout = 0.0;
  std::optional<double> scale;
  bool training = false;

  BackwardCall() {
    attend_test::fill(in.data(), kInSize, 2, 0.5);
    std::memset(static_cast<void*>(gradbuf.data()), 0xA5, sizeof(T) * kGradSize);
    for (Acc& l : lsebuf) l = Acc(2);  // a plausible lse: every weight exp(s - 2) is finite
    for (Index i = 0; i < kKeepSize; ++i) keepbuf[i] = (i % 3) != 0;
  }
  T* mask_data() { return in.data() + kOffMask; }
  /// An additive (Nq, Nk) mask in the input arena.
  void additive_mask() { opt.mask = attend::Mask<T>::additive(ConstView<T, 2>(mask_data(), {kNq, kNk})); }
  /// dmask of shape `dims` in the gradient arena.
  template <int R>
  void dmask(const std::array<Index, R>& dims) {
    g.dmask = attend::MaskGrad<T>::of(TensorView<T, R>(gradbuf.data() + kOffDmask, dims));
  }
};

/// The backward's entry points: backward() into views, the returning backward(), backward_dispatch(),
/// backward_workspace_bytes() (which takes the dmask output too).
enum BackwardEntry : unsigned { kBackward = 1, kBackwardReturning = 2, kBackwardDispatch = 4, kBackwardWorkspace = 8,
                                kBackwardAll = 15 };

template <typename T>
struct BackwardRow {
  std::string argument;
  std::string condition;
  std::function<void(BackwardCall<T>&)> setup;
  std::vector<std::string> expect;
  unsigned entries = kBackwardAll;
  std::optional<Route> route{};
};

/// Views of one third of a packed (B, N, 3, H, D) buffer: (B, H, N, D) with strides (N·3·H·D, D, 3·H·D, 1).
template <typename T>
TensorView<T, 4> packed(T* base, Index B, Index N, Index H, Index D, Index which) {
  return TensorView<T, 4>(base + which * H * D, {B, H, N, D}, {N * 3 * H * D, D, 3 * H * D, 1});
}

/// The packed-buffer call: q, k, v from one (B, N, 3, H, D) buffer in the input arena and dq, dk, dv
/// into another in the gradient arena (B 2, N 5, H 2, D = Dv 8: a fused QKV projection's layout).
template <typename T>
void packed_call(BackwardCall<T>& c) {
  constexpr Index B = 2, N = 5, H = 2, D = 8;
  c.q = packed<const T>(c.in.data(), B, N, H, D, 0);
  c.k = packed<const T>(c.in.data(), B, N, H, D, 1);
  c.v = packed<const T>(c.in.data(), B, N, H, D, 2);
  c.out = ConstView<T, 4>(c.in.data() + kOffOut, {B, H, N, D});
  c.dout = ConstView<T, 4>(c.in.data() + kOffDout, {B, H, N, D});
  c.lse = ConstView<attend::acc_t<T>, 3>(c.lsebuf.data(), {B, H, N});
  c.g.dq = packed(c.gradbuf.data(), B, N, H, D, 0);
  c.g.dk = packed(c.gradbuf.data(), B, N, H, D, 1);
  c.g.dv = packed(c.gradbuf.data(), B, N, H, D, 2);
}

template <typename T>
std::vector<BackwardRow<T>> backward_rows() {
  using Acc = attend::acc_t<T>;
  using C = BackwardCall<T>;
  constexpr unsigned kViews = kBackward | kBackwardReturning;  // the calls that take out, lse and dout
  std::vector<BackwardRow<T>> r;

  // ---- q, k, v, the mask and causality: the forward's checks, on every backward entry point ----
  r.push_back({"k", "batch size differs from q's (dimension 0)",
               [](C& c) { c.k = view<T>(c.in.data() + kOffK, 3, kHkv, kNk, kD); },
               {"q, k and v must have the same batch size B", "q (2, 4, 5, 8), k (3, 2, 7, 8), v (2, 2, 7, 6)"}});
  r.push_back({"q, k", "Hq is not a multiple of Hkv",
               [](C& c) { c.q = view<T>(c.in.data(), kB, 3, kNq, kD); },
               {"the query heads Hq = 3 must be a multiple of the key/value heads Hkv = 2"}});
  r.push_back({"mask", "bool mask, a dimension neither full nor 1",
               [](C& c) { c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 2>(c.keepbuf.get(), {kNq, 6})); },
               {"bool mask of shape (1, 1, 5, 6) (rank 2, padded on the left to 4) does not broadcast to (B, Hq, Nq, Nk) = "
                "(2, 4, 5, 7): dimension Nk is 6, must be 7 or 1"}});
  r.push_back({"causal", "not one of the enumerators",
               [](C& c) { c.opt.causal = static_cast<attend::Causal>(7); },
               {"causal must be Causal::none, Causal::top_left or Causal::bottom_right"}});

  // ---- out, lse and dout: the forward's results and the upstream gradient ----
  r.push_back({"out", "wrong shape (D instead of Dv)",
               [](C& c) { c.out = view<T>(c.in.data() + kOffOut, kB, kHq, kNq, kD); },
               {"out has shape (2, 4, 5, 8) but must be (B, Hq, Nq, Dv) = (2, 4, 5, 6)"}, kViews});
  r.push_back({"out", "a shape but a null data pointer",
               [](C& c) { c.out = view<T>(nullptr, kB, kHq, kNq, kDv); },
               {"out has shape (2, 4, 5, 6) but no data (null pointer)"}, kViews});
  r.push_back({"dout", "wrong shape (Nk instead of Nq)",
               [](C& c) { c.dout = view<T>(c.in.data() + kOffDout, kB, kHq, kNk, kDv); },
               {"dout has shape (2, 4, 7, 6) but must be (B, Hq, Nq, Dv) = (2, 4, 5, 6)"}, kViews});
  r.push_back({"dout", "zero stride",
               [](C& c) { c.dout = ConstView<T, 4>(c.in.data() + kOffDout, {kB, kHq, kNq, kDv}, {120, 30, 0, 1}); },
               {"dout has stride 0 in dimension 2", "strides must be positive"}, kViews});
  r.push_back({"dout", "last dimension not contiguous",
               [](C& c) { c.dout = ConstView<T, 4>(c.in.data() + kOffDout, {kB, kHq, kNq, kDv}, {240, 60, 12, 2}); },
               {"dout must be contiguous in its last dimension, but has strides (240, 60, 12, 2)"}, kViews});
  r.push_back({"lse", "missing (the forward was run without CallOptions::lse)",
               [](C& c) { c.lse = ConstView<Acc, 3>(); },
               {"the backward needs the forward's lse", "shape (B, Hq, Nq) = (2, 4, 5)"}, kViews});
  r.push_back({"lse", "wrong shape (Nk instead of Nq)",
               [](C& c) { c.lse = ConstView<Acc, 3>(c.lsebuf.data(), {kB, kHq, kNk}); },
               {"lse has shape (2, 4, 7) but must be (B, Hq, Nq) = (2, 4, 5)"}, kViews});
  r.push_back({"lse", "negative stride",
               [](C& c) { c.lse = ConstView<Acc, 3>(c.lsebuf.data() + 40, {kB, kHq, kNq}, {-20, 5, 1}); },
               {"lse has strides (-20, 5, 1): strides must be positive"}, kViews});

  // ---- dq, dk, dv ----
  r.push_back({"dq", "wrong shape (Dv instead of D)",
               [](C& c) { c.g.dq = TensorView<T, 4>(c.gradbuf.data(), {kB, kHq, kNq, kDv}); },
               {"dq has shape (2, 4, 5, 6) but must be (B, Hq, Nq, D) = (2, 4, 5, 8)"}, kBackward});
  r.push_back({"dk", "wrong shape (Hq heads instead of Hkv)",
               [](C& c) { c.g.dk = TensorView<T, 4>(c.gradbuf.data() + kOffDk, {kB, kHq, kNk, kD}); },
               {"dk has shape (2, 4, 7, 8) but must be (B, Hkv, Nk, D) = (2, 2, 7, 8)"}, kBackward});
  r.push_back({"dv", "wrong shape (D instead of Dv)",
               [](C& c) { c.g.dv = TensorView<T, 4>(c.gradbuf.data() + kOffDv, {kB, kHkv, kNk, kD}); },
               {"dv has shape (2, 2, 7, 8) but must be (B, Hkv, Nk, Dv) = (2, 2, 7, 6)"}, kBackward});
  r.push_back({"dq", "a shape but a null data pointer",
               [](C& c) { c.g.dq = TensorView<T, 4>(nullptr, {kB, kHq, kNq, kD}); },
               {"dq has shape (2, 4, 5, 8) but no data (null pointer)"}, kBackward});
  r.push_back({"dk", "negative stride",
               [](C& c) { c.g.dk = TensorView<T, 4>(c.gradbuf.data() + kOffDk + 48, {kB, kHkv, kNk, kD}, {112, 56, -8, 1}); },
               {"dk has stride -8 in dimension 2"}, kBackward});
  r.push_back({"dv", "last dimension not contiguous",
               [](C& c) { c.g.dv = TensorView<T, 4>(c.gradbuf.data() + kOffDv, {kB, kHkv, kNk, kDv}, {168, 84, 12, 2}); },
               {"dv must be contiguous in its last dimension, but has strides (168, 84, 12, 2)"}, kBackward});
  r.push_back({"dq", "elements overlap each other (row stride 4 < D = 8)",
               [](C& c) { c.g.dq = TensorView<T, 4>(c.gradbuf.data(), {kB, kHq, kNq, kD}, {160, 40, 4, 1}); },
               {"dq has strides (160, 40, 4, 1) for shape (2, 4, 5, 8): two of its elements share memory"}, kBackward});

  // ---- overlaps: the gradients with each other and with every input ----
  r.push_back({"dq, dk", "overlap each other",
               [](C& c) { c.g.dk = TensorView<T, 4>(c.gradbuf.data() + 100, {kB, kHkv, kNk, kD}); },
               {"dq overlaps the memory of dk: the gradients must not share memory"}, kBackward});
  r.push_back({"dk, dv", "overlap each other",
               [](C& c) { c.g.dv = TensorView<T, 4>(c.gradbuf.data() + kOffDk + 8, {kB, kHkv, kNk, kDv}); },
               {"dk overlaps the memory of dv"}, kBackward});
  r.push_back({"dq, dmask", "overlap each other",
               [](C& c) {
                 c.additive_mask();
                 c.g.dmask = attend::MaskGrad<T>::of(TensorView<T, 2>(c.gradbuf.data() + 10, {kNq, kNk}));
               },
               {"dq overlaps the memory of dmask"}, kBackward});
  r.push_back({"dq, dk, dv", "views into one packed (B, N, 3, H, D) buffer whose dk starts half a head into dq's",
               [](C& c) {
                 packed_call(c);
                 c.g.dk = TensorView<T, 4>(c.g.dq.data() + 4, c.g.dq.dims(), c.g.dq.strides());
               },
               {"dq overlaps the memory of dk", "the gradients must not share memory"}, kBackward});
  r.push_back({"dq", "overlaps q's memory",
               [](C& c) { c.g.dq = TensorView<T, 4>(c.in.data() + 100, {kB, kHq, kNq, kD}); },
               {"dq overlaps the memory of q: an output must not alias an input"}, kBackward});
  r.push_back({"dk", "is k (in place)",
               [](C& c) { c.g.dk = TensorView<T, 4>(c.in.data() + kOffK, {kB, kHkv, kNk, kD}); },
               {"dk overlaps the memory of k"}, kBackward});
  r.push_back({"dv", "overlaps v's memory",
               [](C& c) { c.g.dv = TensorView<T, 4>(c.in.data() + kOffV + 7, {kB, kHkv, kNk, kDv}); },
               {"dv overlaps the memory of v"}, kBackward});
  r.push_back({"dq", "overlaps out's memory",
               [](C& c) { c.g.dq = TensorView<T, 4>(c.in.data() + kOffOut + 200, {kB, kHq, kNq, kD}); },
               {"dq overlaps the memory of out"}, kBackward});
  r.push_back({"dv", "is dout (in place)",
               [](C& c) { c.g.dv = TensorView<T, 4>(c.in.data() + kOffDout, {kB, kHkv, kNk, kDv}); },
               {"dv overlaps the memory of dout"}, kBackward});
  r.push_back({"dk", "overlaps lse's memory",
               [](C& c) { c.g.dk = TensorView<T, 4>(reinterpret_cast<T*>(c.lsebuf.data()), {kB, kHkv, kNk, kD}); },
               {"dk overlaps the memory of lse"}, kBackward});
  r.push_back({"dq", "overlaps the bool mask",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::keep(
                     ConstView<bool, 2>(reinterpret_cast<const bool*>(c.gradbuf.data()) + 3, {kNq, kNk}));
               },
               {"dq overlaps the memory of the mask"}, kBackward});
  r.push_back({"dmask", "is the additive mask (in place)",
               [](C& c) {
                 c.additive_mask();
                 c.g.dmask = attend::MaskGrad<T>::of(TensorView<T, 2>(c.mask_data(), {kNq, kNk}));
               },
               {"dmask overlaps the memory of the mask"}, kBackward | kBackwardWorkspace});

  // ---- dmask ----
  r.push_back({"dmask", "requested without a mask",
               [](C& c) { c.template dmask<2>({kNq, kNk}); },
               {"dmask needs an additive mask in CallOptions::mask (Mask<T>::additive); this call has no mask"},
               kBackward | kBackwardWorkspace});
  r.push_back({"dmask", "requested with a bool mask",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::keep(ConstView<bool, 2>(c.keepbuf.get(), {kNq, kNk}));
                 c.template dmask<2>({kNq, kNk});
               },
               {"dmask needs an additive mask in CallOptions::mask (Mask<T>::additive); this call has a bool mask"},
               kBackward | kBackwardWorkspace});
  r.push_back({"dmask", "shape differs from the mask's",
               [](C& c) {
                 c.additive_mask();
                 c.template dmask<2>({kNq, 6});
               },
               {"dmask has shape (1, 1, 5, 6) (padded on the left to 4) but must have the mask's shape (1, 1, 5, 7)"},
               kBackward | kBackwardWorkspace});
  r.push_back({"dmask", "full where the mask broadcasts ((B, 1, Nq, Nk) for a (B, 1, 1, Nk) mask)",
               [](C& c) {
                 c.opt.mask = attend::Mask<T>::additive(ConstView<T, 4>(c.mask_data(), {kB, 1, 1, kNk}));
                 c.template dmask<4>({kB, 1, kNq, kNk});
               },
               {"dmask has shape (2, 1, 5, 7) (padded on the left to 4) but must have the mask's shape (2, 1, 1, 7)"},
               kBackward | kBackwardWorkspace});
  r.push_back({"dmask", "a shape but a null data pointer",
               [](C& c) {
                 c.additive_mask();
                 c.g.dmask = attend::MaskGrad<T>::of(TensorView<T, 2>(nullptr, {kNq, kNk}));
               },
               {"dmask has shape (1, 1, 5, 7) but no data (null pointer)"}, kBackward | kBackwardWorkspace});
  r.push_back({"dmask", "zero stride on a dimension of size > 1",
               [](C& c) {
                 c.additive_mask();
                 c.g.dmask = attend::MaskGrad<T>::of(TensorView<T, 2>(c.gradbuf.data() + kOffDmask, {kNq, kNk}, {0, 1}));
               },
               {"dmask has stride 0 in dimension 2 of its padded shape (1, 1, 5, 7)"}, kBackward | kBackwardWorkspace});
  r.push_back({"dmask", "elements overlap each other (row stride 3 < Nk = 7)",
               [](C& c) {
                 c.additive_mask();
                 c.g.dmask = attend::MaskGrad<T>::of(TensorView<T, 2>(c.gradbuf.data() + kOffDmask, {kNq, kNk}, {3, 1}));
               },
               {"dmask has strides (0, 0, 3, 1) for shape (1, 1, 5, 7): two of its elements share memory"},
               kBackward | kBackwardWorkspace});

  // ---- dropout's counter words and the paths, as for the forward ----
  r.push_back({"q", "dropout with Nq >= 2^32 (Philox counter word)",
               [](C& c) {
                 const Index n = Index(1) << 32;
                 c.q = ConstView<T, 4>(c.in.data(), {1, 2, n, kD}, {2 * n * kD, n * kD, kD, 1});
                 c.k = view<T>(c.in.data() + kOffK, 1, 2, kNk, kD);
                 c.v = view<T>(c.in.data() + kOffV, 1, 2, kNk, kDv);
                 c.dropout = 0.5;
                 c.training = true;
               },
               {"dropout's Philox counter holds i, j / 4 and b * Hq + h in 32 bits each", "q (1, 2, 4294967296, 8)"},
               kBackwardDispatch | kBackwardWorkspace});
  const Route flash_only = attend_test::forced_routes()[0];
  Route none = {"none enabled", true, attend_test::only(attend::Path::flash), attend::Path::flash};
  none.config.enable_flash = false;
  r.push_back({"config", "only flash enabled, D > kMaxTiledHeadDim",
               [](C& c) {
                 c.q = view<T>(c.in.data(), 1, 1, 3, 1025);
                 c.k = view<T>(c.in.data() + kOffK, 1, 1, 3, 1025);
                 c.v = view<T>(c.in.data() + kOffV, 1, 1, 3, kDv);
                 c.out = view<T>(c.in.data() + kOffOut, 1, 1, 3, kDv);
                 c.dout = view<T>(c.in.data() + kOffDout, 1, 1, 3, kDv);
                 c.lse = ConstView<Acc, 3>(c.lsebuf.data(), {1, 1, 3});
                 c.g.dq = TensorView<T, 4>(c.gradbuf.data(), {1, 1, 3, 1025});
                 c.g.dk = TensorView<T, 4>(c.gradbuf.data() + 3075, {1, 1, 3, 1025});
                 c.g.dv = TensorView<T, 4>(c.gradbuf.data() + 6150, {1, 1, 3, kDv});
               },
               {"no enabled path can serve this call: flash: head dimensions D = 1025, Dv = 6 exceed the tiled kernels' "
                "limit of 1024; mem_efficient: disabled in FlashAttentionConfig; math: disabled in FlashAttentionConfig"},
               kBackwardAll, flash_only});
  r.push_back({"config", "every path disabled (flash = true)", [](C&) {},
               {"no enabled path can serve this call: flash: disabled in FlashAttentionConfig; mem_efficient: disabled "
                "in FlashAttentionConfig; math: disabled in FlashAttentionConfig"},
               kBackwardAll, none});
  return r;
}

const char* backward_entry_name(BackwardEntry e) {
  switch (e) {
    case kBackward: return "backward(grads)";
    case kBackwardReturning: return "backward() returning";
    case kBackwardDispatch: return "backward_dispatch()";
    case kBackwardWorkspace: return "backward_workspace_bytes()";
    default: return "?";
  }
}

template <typename T>
bool backward_throws_error(const Route& route, BackwardCall<T>& c, BackwardEntry e, std::string& message) {
  try {
    attend::Attend<T> a(c.dropout, route.flash, c.scale, route.config, /*seed=*/42);
    a.train(c.training);
    switch (e) {
      case kBackward: attend_test::backward(a, c.q, c.k, c.v, c.out, c.lse, c.dout, c.g, c.opt); break;
      case kBackwardReturning: (void)attend_test::backward_returning(a, c.q, c.k, c.v, c.out, c.lse, c.dout, c.opt); break;
      case kBackwardDispatch: (void)a.backward_dispatch(c.q, c.k, c.v, c.opt); break;
      case kBackwardWorkspace: (void)a.backward_workspace_bytes(c.q, c.k, c.v, c.opt, c.g.dmask); break;
      default: break;
    }
    message = "no exception";
    return false;
  } catch (const attend::Error& err) {
    message = err.what();
    return true;
  } catch (const std::exception& err) {
    message = std::string("a std::exception that is not attend::Error: ") + err.what();
    return false;
  } catch (...) {
    message = "an exception that is not a std::exception";
    return false;
  }
}

constexpr BackwardEntry kBackwardEntries[] = {kBackward, kBackwardReturning, kBackwardDispatch, kBackwardWorkspace};

// The unbroken backward call works on every route and entry point, with and without dmask; so do
// views into one packed (B, N, 3, H, D) gradient buffer (interleaved, not overlapping), and gradients
// interleaved with the inputs in one (B, N, 6, H, D) buffer (q, k, v, dq, dk, dv: disjoint elements).
TYPED_TEST(BadInput, BackwardValidCallsAreAccepted) {
  using T = TypeParam;
  const std::pair<const char*, std::function<void(BackwardCall<T>&)>> valid[] = {
      {"plain", [](BackwardCall<T>&) {}},
      {"dmask", [](BackwardCall<T>& c) {
         c.additive_mask();
         c.template dmask<2>({kNq, kNk});
       }},
      {"packed (B, N, 3, H, D) gradients", packed_call<T>},
      {"gradients interleaved with the inputs (B, N, 6, H, D)", [](BackwardCall<T>& c) {
         packed_call(c);
         constexpr Index B = 2, N = 5, H = 2, D = 8;  // thirds of a (B, N, 6, H, D) buffer: strides of 6 heads
         T* base = c.gradbuf.data();
         const std::array<Index, 4> dims{B, H, N, D}, st{N * 6 * H * D, D, 6 * H * D, 1};
         c.q = ConstView<T, 4>(base, dims, st);
         c.k = ConstView<T, 4>(base + H * D, dims, st);
         c.v = ConstView<T, 4>(base + 2 * H * D, dims, st);
         c.g.dq = TensorView<T, 4>(base + 3 * H * D, dims, st);
         c.g.dk = TensorView<T, 4>(base + 4 * H * D, dims, st);
         c.g.dv = TensorView<T, 4>(base + 5 * H * D, dims, st);
         attend_test::fill(base, B * N * 6 * H * D, 3, 0.5);
       }},
  };
  for (const auto& call : valid) {
    for (const Route& route : attend_test::routes()) {
      for (BackwardEntry e : kBackwardEntries) {
        BackwardCall<T> c;
        call.second(c);
        std::string message;
        EXPECT_FALSE(backward_throws_error(route, c, e, message))
            << call.first << " [" << route.name << ", " << backward_entry_name(e) << "]: " << message;
        if (e == kBackward && std::string(call.first) != "plain") {  // premise: the call wrote its gradients
          EXPECT_NE(std::memcmp(&c.g.dq(0, 0, 0, 0), &c.g.dq(0, 0, 1, 0), sizeof(T)), 0) << call.first;
          EXPECT_TRUE(attend_test::is_finite(c.g.dv(1, 1, 4, 5))) << call.first << " [" << route.name << "]";
        }
      }
    }
  }
}

TYPED_TEST(BadInput, EveryBackwardRowThrowsAndWritesNothing) {
  using T = TypeParam;
  using Acc = attend::acc_t<T>;
  int checked = 0;
  for (const BackwardRow<T>& row : backward_rows<T>()) {
    std::vector<Route> routes;
    if (row.route) {
      routes.push_back(*row.route);
    } else {
      routes.assign(attend_test::routes().begin(), attend_test::routes().end());
    }
    for (const Route& route : routes) {
      for (BackwardEntry e : kBackwardEntries) {
        if ((row.entries & e) == 0) continue;
        SCOPED_TRACE(row.argument + ": " + row.condition + " [" + route.name + ", " + backward_entry_name(e) + "]");
        BackwardCall<T> c;
        row.setup(c);
        const std::vector<T> in0 = c.in, grad0 = c.gradbuf;
        const std::vector<Acc> lse0 = c.lsebuf;
        std::string message;
        ASSERT_TRUE(backward_throws_error(route, c, e, message)) << message;
        EXPECT_EQ(message.rfind("attend: ", 0), 0u) << message;
        for (const std::string& part : row.expect) {
          EXPECT_NE(message.find(part), std::string::npos) << "message: " << message << "\nmissing: " << part;
        }
        EXPECT_EQ(std::memcmp(c.gradbuf.data(), grad0.data(), sizeof(T) * grad0.size()), 0) << "a gradient was written";
        EXPECT_EQ(std::memcmp(c.lsebuf.data(), lse0.data(), sizeof(Acc) * lse0.size()), 0) << "lse was written";
        EXPECT_EQ(std::memcmp(c.in.data(), in0.data(), sizeof(T) * in0.size()), 0) << "an input was written";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 200);
}

// docs/errors.md is the tables above (their one copy): every row's first message excerpt appears in it.
TEST(DocsTable, ListsEveryRow) {
  for (const char* path : {ATTEND_ROBUST_ERRORS_MD}) {
    std::ifstream f(path);
    ASSERT_TRUE(f) << "cannot read " << path;
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string doc = ss.str();
    for (const Row<float>& row : rows<float>()) {
      EXPECT_NE(doc.find(row.expect.front()), std::string::npos)
          << path << " lacks the row " << row.argument << ": " << row.condition << " (" << row.expect.front() << ")";
    }
    const std::string::size_type backward_section = doc.find("## The backward pass");
    ASSERT_NE(backward_section, std::string::npos) << path << " lacks the backward's table";
    for (const BackwardRow<float>& row : backward_rows<float>()) {
      EXPECT_NE(doc.find(row.expect.front(), backward_section), std::string::npos)
          << path << " lacks the backward row " << row.argument << ": " << row.condition << " (" << row.expect.front()
          << ")";
    }
  }
}

// ATTEND_ROBUST_PRINT_TABLE=1 prints the table as markdown, the source of docs/errors.md.
TEST(DocsTable, Print) {
  if (std::getenv("ATTEND_ROBUST_PRINT_TABLE") == nullptr) GTEST_SKIP() << "set ATTEND_ROBUST_PRINT_TABLE=1";
  std::cout << "| Argument | Condition | Entry points | Message excerpt |\n|---|---|---|---|\n";
  for (const Row<float>& row : rows<float>()) {
    std::string entries = row.entries == kAll ? "all" : "";
    for (Entry e : {kForward, kReturning, kDispatch, kWorkspace}) {
      if (row.entries != kAll && (row.entries & e)) entries += std::string(entries.empty() ? "" : ", ") + entry_name(e);
    }
    std::string cond = row.condition + (row.route ? std::string(" [") + row.route->name + " route]" : "");
    std::cout << "| `" << row.argument << "` | " << cond << " | " << entries << " | `" << row.expect.front() << "` |\n";
  }
  std::cout << "\n| Argument | Condition | Entry points | Message excerpt |\n|---|---|---|---|\n";
  for (const BackwardRow<float>& row : backward_rows<float>()) {
    std::string entries = row.entries == kBackwardAll ? "all" : "";
    for (BackwardEntry e : kBackwardEntries) {
      if (row.entries != kBackwardAll && (row.entries & e)) {
        entries += std::string(entries.empty() ? "" : ", ") + backward_entry_name(e);
      }
    }
    std::string cond = row.condition + (row.route ? std::string(" [") + row.route->name + " route]" : "");
    std::cout << "| `" << row.argument << "` | " << cond << " | " << entries << " | `" << row.expect.front() << "` |\n";
  }
}

// ---- Mistakes the API makes unrepresentable: checked at compile time ----

template <class M, class V, class = void>
struct can_keep : std::false_type {};
template <class M, class V>
struct can_keep<M, V, std::void_t<decltype(M::keep(std::declval<V>()))>> : std::true_type {};
template <class M, class V, class = void>
struct can_additive : std::false_type {};
template <class M, class V>
struct can_additive<M, V, std::void_t<decltype(M::additive(std::declval<V>()))>> : std::true_type {};

using MaskF = attend::Mask<float>;
// A mask is one of keep (bool) or additive (T), never both: the two factories take disjoint element
// types, the class has no constructor or setter that takes both, and kind() is a single value.
static_assert(can_keep<MaskF, ConstView<bool, 2>>::value, "control: keep takes a bool view");
static_assert(can_additive<MaskF, ConstView<float, 2>>::value, "control: additive takes a T view");
static_assert(!can_keep<MaskF, ConstView<float, 2>>::value, "keep must not take values");
static_assert(!can_additive<MaskF, ConstView<bool, 2>>::value, "additive must not take bools");
static_assert(!can_additive<MaskF, ConstView<double, 2>>::value, "additive takes T, not another type");
static_assert(!std::is_constructible_v<MaskF, ConstView<bool, 2>, ConstView<float, 2>>, "no mask with both forms");
static_assert(!std::is_constructible_v<MaskF, ConstView<bool, 2>>, "a mask says which form it is");
static_assert(!std::is_constructible_v<MaskF, ConstView<float, 2>>, "a mask says which form it is");
static_assert(std::is_same_v<decltype(std::declval<MaskF>().kind()), MaskF::Kind>, "one kind per mask");
// Errors are std::invalid_argument (docs/errors.md), so a caller may catch either.
static_assert(std::is_base_of_v<std::invalid_argument, attend::Error>, "attend::Error is a std::invalid_argument");
// q, k, v and out are rank 4 by type: a rank-3 tensor or view does not convert.
static_assert(!std::is_convertible_v<attend::Tensor<float, 3>&, ConstView<float, 4>>, "q must be rank 4");
static_assert(!std::is_convertible_v<ConstView<float, 5>, ConstView<float, 4>>, "q must be rank 4");
static_assert(!std::is_convertible_v<attend::Tensor<float, 3>&, TensorView<float, 4>>, "out must be rank 4");
// Element types must match the module's: a double tensor is not a float input, and a const view is
// not an output.
static_assert(!std::is_convertible_v<attend::Tensor<double, 4>&, ConstView<float, 4>>, "no silent conversion");
static_assert(!std::is_convertible_v<ConstView<float, 4>, TensorView<float, 4>>, "inputs are not outputs");
// Column-major tensors are refused at compile time (attend reads row-major strides).
static_assert(!std::is_convertible_v<Eigen::Tensor<float, 4>&, ConstView<float, 4>>, "column-major is refused");

}  // namespace
