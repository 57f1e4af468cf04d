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

// docs/errors.md is the table above (its one copy): every row's first message excerpt appears in it.
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
