// 64-bit sizes: no index arithmetic overflows 32 bits.
//
// q, k, v, an additive mask, out and lse are strided views inside one mmap(MAP_NORESERVE) reservation
// of tens of GiB, with one stride (batch, head or row) so large that the elements lie more than 2^32
// elements (and bytes) apart; only the pages holding elements are ever touched, so the test needs a
// few MiB of memory. Each call must give bit for bit what the same call gives on compact copies, on
// every path, with and without causality and dropout.

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "support/attend_test.hpp"
#include "support/check.hpp"

namespace {

using attend::ConstView;
using attend::Index;
using attend::Tensor;
using attend::TensorView;
using attend_test::Route;

/// Past 2^32 elements, and not a multiple of a page, a cache line or a packet.
constexpr Index kBig = (Index(1) << 32) + 4099;

/// One anonymous reservation; pages are backed only once written.
class Reservation {
 public:
  explicit Reservation(std::size_t bytes) : bytes_(bytes) {
    p_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p_ == MAP_FAILED) p_ = nullptr;
  }
  ~Reservation() {
    if (p_ != nullptr) munmap(p_, bytes_);
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  unsigned char* data() const { return static_cast<unsigned char*>(p_); }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Row-major strides, except that dimension `big` (if in range) gets a stride of at least kBig.
template <int R>
std::array<Index, R> strides_with(const std::array<Index, R>& dims, int big) {
  std::array<Index, R> s{};
  Index acc = 1;
  for (int r = R - 1; r >= 0; --r) {
    if (r == big) acc = std::max(acc, kBig);
    s[static_cast<std::size_t>(r)] = acc;
    acc *= dims[static_cast<std::size_t>(r)];
  }
  return s;
}

/// Elements from the first to the last of a view, plus one.
template <int R>
Index extent(const std::array<Index, R>& dims, const std::array<Index, R>& strides) {
  Index last = 0;
  for (int r = 0; r < R; ++r) last += (dims[static_cast<std::size_t>(r)] - 1) * strides[static_cast<std::size_t>(r)];
  return last + 1;
}

template <typename T, int R>
void copy_to(const ConstView<T, R>& from, Tensor<T, R>& to) {
  static_assert(R == 4 || R == 3, "");
  if constexpr (R == 4) {
    for (Index a = 0; a < from.dimension(0); ++a)
      for (Index b = 0; b < from.dimension(1); ++b)
        for (Index c = 0; c < from.dimension(2); ++c)
          for (Index d = 0; d < from.dimension(3); ++d) to(a, b, c, d) = from(a, b, c, d);
  } else {
    for (Index a = 0; a < from.dimension(0); ++a)
      for (Index b = 0; b < from.dimension(1); ++b)
        for (Index c = 0; c < from.dimension(2); ++c) to(a, b, c) = from(a, b, c);
  }
}

struct Layout {
  const char* name;
  Index B, Hq, Hkv, Nq, Nk, D, Dv;
  int big;  // the dimension (0: batch, 1: heads, for lse too) whose stride is huge; -1: none
};

// batch stride, head stride (GQA), and row stride: 66 rows of stride 2^26 + 3 take i * stride past 2^32
// in the second query tile.
constexpr Layout kLayouts[] = {
    {"batch stride > 2^32", 2, 2, 1, 67, 66, 8, 8, 0},
    {"head stride > 2^32", 1, 4, 2, 5, 9, 8, 4, 1},
};

template <typename T>
class LargeIndex : public ::testing::Test {};
TYPED_TEST_SUITE(LargeIndex, attend_test::AllTypes, attend_test::TypeNames);

template <typename T>
void check_layout(const Layout& L, int big_row_shift) {
  using Acc = attend::acc_t<T>;
  const std::array<Index, 4> qd = {L.B, L.Hq, L.Nq, L.D}, kd = {L.B, L.Hkv, L.Nk, L.D}, vd = {L.B, L.Hkv, L.Nk, L.Dv},
                             md = {L.B, L.Hq, L.Nq, L.Nk}, od = {L.B, L.Hq, L.Nq, L.Dv};
  const std::array<Index, 3> ld = {L.B, L.Hq, L.Nq};
  std::array<Index, 4> qs = strides_with<4>(qd, L.big), ks = strides_with<4>(kd, L.big),
                       vs = strides_with<4>(vd, L.big), ms = strides_with<4>(md, L.big),
                       os = strides_with<4>(od, L.big);
  std::array<Index, 3> ls = strides_with<3>(ld, L.big);
  if (big_row_shift > 0) {  // a huge row stride instead: i * stride passes 2^32 at i = 2^(32 - shift)
    const Index row = (Index(1) << big_row_shift) + 3;
    qs = {qd[1] * qd[2] * row, qd[2] * row, row, 1};
    ks = {kd[1] * kd[2] * row, kd[2] * row, row, 1};
    vs = {vd[1] * vd[2] * row, vd[2] * row, row, 1};
    ms = {md[1] * md[2] * row, md[2] * row, row, 1};
    os = {od[1] * od[2] * row, od[2] * row, row, 1};
    ls = {ld[1] * ld[2] * row, ld[2] * row, row};
  }
  // Inputs interleave (aliasing among inputs is allowed); out and lse each get their own range.
  const Index in_span = std::max({extent<4>(qd, qs), extent<4>(kd, ks), extent<4>(vd, vs), extent<4>(md, ms)}) + (4 << 16);
  const Index out_span = extent<4>(od, os);
  const std::size_t in_bytes = sizeof(T) * static_cast<std::size_t>(in_span);
  const std::size_t out_at = (in_bytes + 4095) / 4096 * 4096 + 4096 * 3 + sizeof(T);  // odd page offset
  const std::size_t lse_at = (out_at + sizeof(T) * static_cast<std::size_t>(out_span) + 4095) / 4096 * 4096;
  const std::size_t total = lse_at + sizeof(Acc) * static_cast<std::size_t>(extent<3>(ld, ls)) + 4096;
  ASSERT_GT(total, std::size_t(1) << 33) << "the layout must span more than 2^33 bytes";
  Reservation res(total);
  ASSERT_NE(res.data(), nullptr) << "mmap of " << total << " bytes (MAP_NORESERVE) failed";

  T* in = reinterpret_cast<T*>(res.data());
  // Interleaved at 2^16 elements: every layout's contiguous blocks are shorter than that.
  T* q = in;
  T* k = in + (1 << 16);
  T* v = in + (2 << 16);
  T* m = in + (3 << 16);
  T* o = reinterpret_cast<T*>(res.data() + out_at);
  Acc* l = reinterpret_cast<Acc*>(res.data() + lse_at);
  const ConstView<T, 4> qv(q, qd, qs), kv(k, kd, ks), vv(v, vd, vs), mv(m, md, ms);
  const TensorView<T, 4> ov(o, od, os);
  const TensorView<Acc, 3> lv(l, ld, ls);

  // Values through the views (this backs the touched pages), and compact copies of them.
  Tensor<T, 4> qc(qd), kc(kd), vc(vd), mc(md);
  attend_test::fill(qc, 21);
  attend_test::fill(kc, 22);
  attend_test::fill(vc, 23);
  attend_test::fill(mc, 24);
  for (Index i = 0; i < mc.size(); i += 7) mc.data()[i] = T(-std::numeric_limits<float>::infinity());
  auto scatter = [](const Tensor<T, 4>& from, const ConstView<T, 4>& to) {
    for (Index a = 0; a < from.dimension(0); ++a)
      for (Index b = 0; b < from.dimension(1); ++b)
        for (Index c = 0; c < from.dimension(2); ++c)
          for (Index d = 0; d < from.dimension(3); ++d) const_cast<T&>(to(a, b, c, d)) = from(a, b, c, d);
  };
  scatter(qc, qv);
  scatter(kc, kv);
  scatter(vc, vv);
  scatter(mc, mv);

  struct Variant {
    const char* name;
    attend::Causal causal;
    bool mask;
    double dropout;
  };
  const Variant variants[] = {{"plain", attend::Causal::none, false, 0.0},
                              {"causal + additive mask", attend::Causal::bottom_right, true, 0.0},
                              {"dropout 0.2 + mask", attend::Causal::top_left, true, 0.2}};
  for (const Variant& var : variants) {
    for (const Route& route : attend_test::routes()) {
      SCOPED_TRACE(std::string(L.name) + (big_row_shift ? " (row stride)" : "") + ", " + var.name + ", " + route.name);
      attend::Attend<T> a = attend_test::make_attend<T>(route, var.dropout, std::nullopt, /*seed=*/7);
      a.train(var.dropout > 0);
      attend::CallOptions<T> opt, opt_c;
      opt.causal = opt_c.causal = var.causal;
      opt.dropout_offset = opt_c.dropout_offset = 3;
      Tensor<T, 4> oc(od);
      Tensor<Acc, 3> lc(ld);
      if (var.mask) {
        opt.mask = attend::Mask<T>::additive(mv);
        opt_c.mask = attend::Mask<T>::additive(ConstView<T, 4>(mc));
      }
      opt.lse = lv;
      opt_c.lse = lc;
      ASSERT_NO_THROW(attend_test::forward(a, qv, kv, vv, ov, opt));
      ASSERT_NO_THROW(attend_test::forward(a, qc, kc, vc, oc, opt_c));
      Tensor<T, 4> og(od);
      Tensor<Acc, 3> lg(ld);
      copy_to<T, 4>(ov, og);
      copy_to<Acc, 3>(lv, lg);
      const Index bad = attend_test::first_diff(og, oc);
      EXPECT_EQ(bad, -1) << "out differs from the compact call at flat index " << bad;
      EXPECT_EQ(attend_test::first_diff(lg, lc), -1) << "lse differs from the compact call";
    }
  }
}

TYPED_TEST(LargeIndex, BatchStridePast2To32) { check_layout<TypeParam>(kLayouts[0], 0); }
TYPED_TEST(LargeIndex, HeadStridePast2To32) { check_layout<TypeParam>(kLayouts[1], 0); }
// Row stride 2^26 + 3: row 64 (the second query tile) is past 2^32 elements.
TYPED_TEST(LargeIndex, RowStridePast2To32) {
  check_layout<TypeParam>({"row stride 2^26 + 3", 1, 2, 1, 67, 66, 8, 8, -1}, 26);
}

}  // namespace
