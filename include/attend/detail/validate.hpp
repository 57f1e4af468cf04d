#ifndef ATTEND_DETAIL_VALIDATE_HPP
#define ATTEND_DETAIL_VALIDATE_HPP

// The API's contract: every check a call goes through before anything is written, as named checks
// that follow the sections of docs/errors.md, and make_problem, which runs them and builds the
// Problem. Every failure throws attend::Error with a message naming the argument and the shapes.

#include <array>    // std::array
#include <cmath>    // std::isfinite, std::sqrt
#include <cstdint>  // std::uint32_t, std::uintptr_t
#include <initializer_list>  // std::initializer_list
#include <limits>   // std::numeric_limits
#include <sstream>  // std::ostringstream
#include <string>   // std::string
#include <utility>  // std::pair, std::swap

#include "attend/call_options.hpp"
#include "attend/config.hpp"
#include "attend/detail/abi.hpp"
#include "attend/detail/kernel/dropout.hpp"
#include "attend/detail/problem.hpp"
#include "attend/error.hpp"
#include "attend/gradients.hpp"
#include "attend/mask.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

inline std::string shape_str(const Index* dims, int rank) {
  std::ostringstream s;
  s << '(';
  for (int r = 0; r < rank; ++r) s << (r ? ", " : "") << dims[r];
  s << ')';
  return s.str();
}

template <typename V, int Rank>
std::string shape_str(const TensorView<V, Rank>& t) {
  return shape_str(t.dims().data(), Rank);
}

template <typename V, int Rank>
std::string strides_str(const TensorView<V, Rank>& t) {
  return shape_str(t.strides().data(), Rank);
}

/// The byte range [lo, hi) a view can touch, or an empty range for an empty view.
template <typename V, int Rank>
std::pair<std::uintptr_t, std::uintptr_t> byte_span(const TensorView<V, Rank>& t) {
  if (t.data() == nullptr || t.size() == 0) return {0, 0};
  Index last = 0;
  for (int r = 0; r < Rank; ++r) last += (t.dimension(r) - 1) * t.stride(r);
  const auto lo = reinterpret_cast<std::uintptr_t>(t.data());
  return {lo, lo + static_cast<std::uintptr_t>(last + 1) * sizeof(V)};
}

inline bool spans_overlap(std::pair<std::uintptr_t, std::uintptr_t> a, std::pair<std::uintptr_t, std::uintptr_t> b) {
  return a.first < a.second && b.first < b.second && a.first < b.second && b.first < a.second;
}

/// Checks a q, k, v or output view: rank-4 sizes are given by the caller; strides must be positive
/// and the last one 1, and the data pointer set unless the view is empty.
template <typename V, int Rank>
void check_view(const char* name, const TensorView<V, Rank>& t) {
  if (t.size() > 0 && t.data() == nullptr) {
    throw Error(std::string(name) + " has shape " + shape_str(t) + " but no data (null pointer)");
  }
  for (int r = 0; r < Rank; ++r) {
    if (t.dimension(r) < 0) {
      throw Error(std::string(name) + " has a negative size: shape " + shape_str(t));
    }
  }
  if (t.size() == 0) return;
  for (int r = 0; r < Rank; ++r) {
    if (t.stride(r) <= 0) {
      throw Error(std::string(name) + " has stride " + std::to_string(t.stride(r)) + " in dimension " +
                  std::to_string(r) + " (strides " + strides_str(t) + ", shape " + shape_str(t) +
                  "): strides must be positive");
    }
  }
  if (t.stride(Rank - 1) != 1) {
    throw Error(std::string(name) + " must be contiguous in its last dimension, but has strides " + strides_str(t) +
                " for shape " + shape_str(t));
  }
}

/// Whether two different indices of a view (positive strides) may reach the same element. False when,
/// with the dimensions of size > 1 ordered by stride, each stride exceeds the largest offset the smaller
/// ones reach: a sufficient condition for distinct elements that every tensor, map and packed-buffer
/// view (such as the (B, N, H * Dv) input of an output projection) meets.
template <typename V, int Rank>
bool may_self_overlap(const TensorView<V, Rank>& t) {
  if (t.size() == 0) return false;  // no element, no overlap (a row-major (B, H, 0, D) has strides 0)
  std::array<std::pair<Index, Index>, Rank> ds{};  // (stride, size) of the dimensions of size > 1
  int n = 0;
  for (int r = 0; r < Rank; ++r) {
    if (t.dimension(r) > 1) ds[static_cast<std::size_t>(n++)] = {t.stride(r), t.dimension(r)};
  }
  // Insertion sort of at most Rank entries. Not std::sort: inlined at -O2/-O3, GCC 12 warns
  // (-Warray-bounds) about its 16-element insertion-sort branch, which n <= 4 never takes, and a
  // consumer building with -Werror would fail on our header.
  for (int a = 1; a < n; ++a) {
    for (int b = a; b > 0 && ds[static_cast<std::size_t>(b)] < ds[static_cast<std::size_t>(b - 1)]; --b) {
      std::swap(ds[static_cast<std::size_t>(b)], ds[static_cast<std::size_t>(b - 1)]);
    }
  }
  Index reach = 0;  // the largest offset the dimensions so far reach
  for (int r = 0; r < n; ++r) {
    const auto& sd = ds[static_cast<std::size_t>(r)];
    if (sd.first <= reach) return true;
    reach += (sd.second - 1) * sd.first;
  }
  return false;
}

/// A byte range [lo, hi), empty when lo == hi.
using ByteSpan = std::pair<std::uintptr_t, std::uintptr_t>;

/// Whether two views share an element. Exact for views with the same strides, element size and
/// aligned bases whose dimensions, ordered by stride, each step over everything the smaller ones
/// reach (the interleaved views into one packed (B, N, 3, H, D) buffer: dq, dk and dv of a fused QKV
/// projection's gradient); otherwise whether their byte ranges overlap (a sufficient condition).
/// The exact test: an element is shared iff the bases' difference is Σ_r c_r · stride_r with
/// -(a_r - 1) <= c_r <= b_r - 1; the ordering leaves at most two candidates for each c_r, found
/// from the largest stride down.
template <typename A, typename B, int Rank>
bool views_overlap(const TensorView<A, Rank>& a, const TensorView<B, Rank>& b) {
  const ByteSpan sa = byte_span(a), sb = byte_span(b);
  if (!spans_overlap(sa, sb)) return false;
  if (sizeof(A) != sizeof(B) || a.strides() != b.strides()) return true;
  const auto delta_bytes = static_cast<long long>(reinterpret_cast<std::uintptr_t>(b.data()) -
                                                  reinterpret_cast<std::uintptr_t>(a.data()));
  if (delta_bytes % static_cast<long long>(sizeof(A)) != 0) return true;
  // Dimensions of size > 1 in either view, ordered by stride; each stride must exceed the reach of
  // the smaller ones (over the larger of the two sizes), or the test is not exact.
  struct Dim {
    Index stride, lo, hi;  // c ranges over [lo, hi]
  };
  std::array<Dim, Rank> ds{};
  int n = 0;
  for (int r = 0; r < Rank; ++r) {
    if (a.dimension(r) > 1 || b.dimension(r) > 1) {
      ds[static_cast<std::size_t>(n++)] = {a.stride(r), -(a.dimension(r) - 1), b.dimension(r) - 1};
    }
  }
  for (int x = 1; x < n; ++x) {  // insertion sort, as in may_self_overlap
    for (int y = x; y > 0 && ds[static_cast<std::size_t>(y)].stride < ds[static_cast<std::size_t>(y - 1)].stride; --y) {
      std::swap(ds[static_cast<std::size_t>(y)], ds[static_cast<std::size_t>(y - 1)]);
    }
  }
  Index reach = 0;
  for (int r = 0; r < n; ++r) {
    const Dim& d = ds[static_cast<std::size_t>(r)];
    if (d.stride <= reach) return true;
    reach += std::max(-d.lo, d.hi) * d.stride;
  }
  // Is delta = Σ c_r · stride_r with c_r in [lo_r, hi_r]? From the largest stride down, the lower
  // dimensions reach less than one stride, so c_r is floor(delta / stride) or the one above it.
  const auto representable = [&](auto& self, int r, Index delta) -> bool {
    if (r < 0) return delta == 0;
    const Dim& d = ds[static_cast<std::size_t>(r)];
    const Index f = delta >= 0 ? delta / d.stride : -((-delta + d.stride - 1) / d.stride);
    for (Index c = f; c <= f + 1; ++c) {
      if (c >= d.lo && c <= d.hi && self(self, r - 1, delta - c * d.stride)) return true;
    }
    return false;
  };
  return representable(representable, n - 1, static_cast<Index>(delta_bytes / static_cast<long long>(sizeof(A))));
}

/// q, k and v: views, consistent shapes, a head dimension, and query heads a multiple of the kv heads.
/// Fills the sizes of pb.
template <typename T>
void check_qkv(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v, Problem<T>& pb) {
  check_view("q", q);
  check_view("k", k);
  check_view("v", v);

  pb.B = q.dimension(0);
  pb.Hq = q.dimension(1);
  pb.Nq = q.dimension(2);
  pb.D = q.dimension(3);
  pb.Hkv = k.dimension(1);
  pb.Nk = k.dimension(2);
  pb.Dv = v.dimension(3);
  // Built only when an error is thrown: a valid call must not allocate (see CallOptions::workspace).
  const auto shapes = [&q, &k, &v] { return "q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v); };

  if (k.dimension(0) != pb.B || v.dimension(0) != pb.B) {
    throw Error("q, k and v must have the same batch size B (dimension 0): " + shapes());
  }
  if (k.dimension(3) != pb.D) {
    throw Error("q and k must have the same head dimension D (dimension 3): " + shapes());
  }
  if (v.dimension(1) != pb.Hkv) {
    throw Error("k and v must have the same number of heads Hkv (dimension 1): " + shapes());
  }
  if (v.dimension(2) != pb.Nk) {
    throw Error("k and v must have the same sequence length Nk (dimension 2): " + shapes());
  }
  if (pb.D == 0) throw Error("the head dimension D must be at least 1: " + shapes());
  if (pb.Hkv == 0 && pb.Hq != 0) {
    throw Error("k and v have no heads (Hkv = 0) but q has Hq = " + std::to_string(pb.Hq) + ": " + shapes());
  }
  if (pb.Hkv > 0 && pb.Hq % pb.Hkv != 0) {
    throw Error("the query heads Hq = " + std::to_string(pb.Hq) + " must be a multiple of the key/value heads Hkv = " +
                std::to_string(pb.Hkv) + " (grouped-query attention): " + shapes());
  }
  pb.group = pb.Hkv > 0 ? pb.Hq / pb.Hkv : 1;
  pb.q = q;
  pb.k = k;
  pb.v = v;
}

/// "q (..), k (..), v (..)" for messages; allocates, so only when an error is thrown.
template <typename T>
std::string qkv_shapes(const Problem<T>& pb) {
  return "q " + shape_str(pb.q) + ", k " + shape_str(pb.k) + ", v " + shape_str(pb.v);
}

/// out: a valid view of shape (B, Hq, Nq, Dv) whose elements do not overlap each other.
template <typename T>
void check_out(const TensorView<T, 4>& out, const Problem<T>& pb) {
  check_view("out", out);
  if (may_self_overlap(out)) {
    throw Error("out has strides " + strides_str(out) + " for shape " + shape_str(out) +
                ": two of its elements share memory, so the result would depend on the order of the writes");
  }
  const Index want_out[4] = {pb.B, pb.Hq, pb.Nq, pb.Dv};
  for (int r = 0; r < 4; ++r) {
    if (out.dimension(r) != want_out[r]) {
      throw Error("out has shape " + shape_str(out) + " but must be (B, Hq, Nq, Dv) = " + shape_str(want_out, 4) +
                  " for " + qkv_shapes(pb));
    }
  }
}

/// lse, where given: shape (B, Hq, Nq), any positive strides, elements not overlapping each other.
template <typename T>
void check_lse(const TensorView<acc_t<T>, 3>& lse, const Problem<T>& pb) {
  if (lse.empty_view() && lse.size() == 0) return;
  const Index want_lse[3] = {pb.B, pb.Hq, pb.Nq};
  for (int r = 0; r < 3; ++r) {
    if (lse.dimension(r) != want_lse[r]) {
      throw Error("lse has shape " + shape_str(lse) + " but must be (B, Hq, Nq) = " + shape_str(want_lse, 3) + " for " +
                  qkv_shapes(pb));
    }
  }
  if (lse.size() > 0 && lse.data() == nullptr) throw Error("lse has a shape but no data (null pointer)");
  for (int r = 0; r < 3; ++r) {
    if (lse.size() > 0 && lse.stride(r) <= 0) {
      throw Error("lse has strides " + strides_str(lse) + ": strides must be positive");
    }
  }
  if (may_self_overlap(lse)) {
    throw Error("lse has strides " + strides_str(lse) + " for shape " + shape_str(lse) +
                ": two of its elements share memory");
  }
}

/// The outputs (out, lse) must not alias q, k, v or each other: the kernels read the inputs after
/// writing outputs.
template <typename T>
void check_no_alias(const Problem<T>& pb, ByteSpan out_span, ByteSpan lse_span) {
  const std::pair<const char*, ByteSpan> inputs[] = {{"q", byte_span(pb.q)}, {"k", byte_span(pb.k)}, {"v", byte_span(pb.v)}};
  for (const auto& in : inputs) {
    if (spans_overlap(out_span, in.second)) {
      throw Error(std::string("out overlaps the memory of ") + in.first + " (" + qkv_shapes(pb) + ", out " +
                  shape_str(pb.out) + "): the output must not alias an input");
    }
    if (spans_overlap(lse_span, in.second)) {
      throw Error(std::string("lse overlaps the memory of ") + in.first + ": the output must not alias an input");
    }
  }
  if (spans_overlap(out_span, lse_span)) throw Error("lse overlaps the memory of out");
}

/// The mask: each dimension full or 1 (broadcast, read at stride 0), positive strides on the others,
/// data where it has elements. Fills pb's mask fields and returns the bytes it can touch (empty for
/// no mask).
template <typename T>
ByteSpan reduce_mask(const Mask<T>& m, Problem<T>& pb) {
  pb.mask_kind = m.kind();
  if (m.empty()) return {0, 0};
  const char* kind = m.kind() == Mask<T>::Kind::keep ? "bool mask" : "additive mask";
  const Index full[4] = {pb.B, pb.Hq, pb.Nq, pb.Nk};
  const char* names[4] = {"B", "Hq", "Nq", "Nk"};
  const auto mshape = [&m] { return shape_str(m.dims().data(), 4); };  // only for messages: no allocation
  if (m.rank() < 1 || m.rank() > 4) throw Error(std::string(kind) + " must have rank 1 to 4");
  bool any = true;
  for (int r = 0; r < 4; ++r) {
    const Index d = m.dims()[static_cast<std::size_t>(r)];
    if (d != full[r] && d != 1) {
      throw Error(std::string(kind) + " of shape " + mshape() + " (rank " + std::to_string(m.rank()) +
                  ", padded on the left to 4) does not broadcast to (B, Hq, Nq, Nk) = " + shape_str(full, 4) +
                  ": dimension " + names[r] + " is " + std::to_string(d) + ", must be " + std::to_string(full[r]) +
                  " or 1");
    }
    any = any && d > 0;
  }
  const void* data = m.kind() == Mask<T>::Kind::keep ? static_cast<const void*>(m.keep_data())
                                                     : static_cast<const void*>(m.additive_data());
  const bool nonempty = any && pb.B * pb.Hq * pb.Nq * pb.Nk > 0;
  if (nonempty && data == nullptr) throw Error(std::string(kind) + " has shape " + mshape() + " but no data");
  for (int r = 0; r < 4; ++r) {
    const Index d = m.dims()[static_cast<std::size_t>(r)];
    const Index s = m.strides()[static_cast<std::size_t>(r)];
    if (d > 1 && s <= 0) {
      throw Error(std::string(kind) + " has stride " + std::to_string(s) + " in its dimension " + names[r] +
                  " of size " + std::to_string(d) + ": strides of non-broadcast dimensions must be positive");
    }
    pb.mask_strides[static_cast<std::size_t>(r)] = d == 1 ? 0 : s;
  }
  pb.keep = m.keep_data();
  pb.bias = m.additive_data();
  if (!nonempty) return {0, 0};
  const std::size_t elem = m.kind() == Mask<T>::Kind::keep ? sizeof(bool) : sizeof(T);
  const TensorView<const unsigned char, 4> bytes(static_cast<const unsigned char*>(data), m.dims(),
                                                 {pb.mask_strides[0] * Index(elem), pb.mask_strides[1] * Index(elem),
                                                  pb.mask_strides[2] * Index(elem), pb.mask_strides[3] * Index(elem)});
  const ByteSpan span = byte_span(bytes);
  return {span.first, span.second + elem - 1};
}

/// The mask must not be written: no output may overlap it.
template <typename T>
void check_mask_not_written(const Mask<T>& m, ByteSpan mask_span, std::initializer_list<ByteSpan> outputs) {
  for (const ByteSpan& out : outputs) {
    if (spans_overlap(out, mask_span)) {
      const char* kind = m.kind() == Mask<T>::Kind::keep ? "bool mask" : "additive mask";
      throw Error(std::string("the output overlaps the memory of the ") + kind + ": the output must not alias an input");
    }
  }
}

/// Causality: one of the enumerators; the offset of the diagonal for bottom_right.
template <typename T>
void check_causal(Causal causal, Problem<T>& pb) {
  pb.causal = causal;
  if (causal != Causal::none && causal != Causal::top_left && causal != Causal::bottom_right) {
    throw Error("causal must be Causal::none, Causal::top_left or Causal::bottom_right");
  }
  pb.causal_offset = causal == Causal::bottom_right ? pb.Nk - pb.Nq : 0;
}

/// The scale of this call (the module's, or 1/sqrt(D)) must be finite and non-zero in acc_t<T>.
template <typename T>
void resolve_scale(const Settings& settings, Problem<T>& pb) {
  using Acc = acc_t<T>;
  const double scale = settings.scale ? *settings.scale : 1.0 / std::sqrt(static_cast<double>(pb.D));
  pb.scale = static_cast<Acc>(scale);
  if (!std::isfinite(static_cast<double>(pb.scale)) || pb.scale == Acc(0)) {
    throw Error("the scale " + std::to_string(scale) + " is not usable in " + type_name<T>() +
                ": it must be finite and non-zero");
  }
}

/// Active dropout: the Philox counter holds i, j / 4 and b · Hq + h in 32-bit words.
template <typename T>
void check_dropout_counter(const Settings& settings, std::uint32_t offset, Problem<T>& pb) {
  pb.dropout = Dropout::make(settings.dropout, settings.training, settings.seed, offset, pb.Hq);
  if (pb.dropout.active) {
    constexpr Index kWord = Index(1) << 32;
    if (pb.Nq >= kWord || pb.Nk / 4 >= kWord || pb.B * pb.Hq >= kWord) {
      throw Error("dropout's Philox counter holds i, j / 4 and b * Hq + h in 32 bits each; " + qkv_shapes(pb) +
                  " exceeds that");
    }
  }
}

/// Validates a forward call and builds its Problem; throws attend::Error before anything is written.
/// A null output means a query (dispatch, workspace size): everything but the output is checked.
template <typename T>
Problem<T> make_problem(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                        const TensorView<T, 4>* out_or_null, const CallOptions<T>& opt, const Settings& settings) {
  Problem<T> pb;
  check_qkv(q, k, v, pb);
  if (out_or_null != nullptr) {
    check_out(*out_or_null, pb);
    pb.out = *out_or_null;
  }
  check_lse(opt.lse, pb);
  pb.lse = opt.lse;
  const ByteSpan out_span = byte_span(pb.out), lse_span = byte_span(opt.lse);
  check_no_alias(pb, out_span, lse_span);
  const ByteSpan mask_span = reduce_mask(opt.mask, pb);
  check_mask_not_written(opt.mask, mask_span, {out_span, lse_span});
  check_causal(opt.causal, pb);
  resolve_scale(settings, pb);
  check_dropout_counter(settings, opt.dropout_offset, pb);
  return pb;
}

/// A rank-4 view named `name` that must have shape `want` (named by `want_name`, e.g. "(B, Hq, Nq,
/// Dv)"), a valid view, and (for an output) elements not overlapping each other.
template <typename V, typename T>
void check_shaped(const char* name, const TensorView<V, 4>& t, const std::array<Index, 4>& want,
                  const char* want_name, bool output, const Problem<T>& pb) {
  check_view(name, t);
  if (output && may_self_overlap(t)) {
    throw Error(std::string(name) + " has strides " + strides_str(t) + " for shape " + shape_str(t) +
                ": two of its elements share memory, so the result would depend on the order of the writes");
  }
  for (int r = 0; r < 4; ++r) {
    if (t.dimension(r) != want[static_cast<std::size_t>(r)]) {
      throw Error(std::string(name) + " has shape " + shape_str(t) + " but must be " + want_name + " = " +
                  shape_str(want.data(), 4) + " for " + qkv_shapes(pb));
    }
  }
}

/// The forward's lse as the backward's input: shape (B, Hq, Nq), positive strides, data.
template <typename T>
void check_lse_input(const ConstView<acc_t<T>, 3>& lse, const Problem<T>& pb) {
  const Index want[3] = {pb.B, pb.Hq, pb.Nq};
  if (lse.empty_view() && pb.B * pb.Hq * pb.Nq > 0) {
    throw Error("the backward needs the forward's lse (pass the view the forward call filled through "
                "CallOptions::lse), shape (B, Hq, Nq) = " + shape_str(want, 3));
  }
  for (int r = 0; r < 3; ++r) {
    if (lse.dimension(r) != want[r]) {
      throw Error("lse has shape " + shape_str(lse) + " but must be (B, Hq, Nq) = " + shape_str(want, 3) + " for " +
                  qkv_shapes(pb));
    }
  }
  for (int r = 0; r < 3; ++r) {
    if (lse.size() > 0 && lse.stride(r) <= 0) {
      throw Error("lse has strides " + strides_str(lse) + ": strides must be positive");
    }
  }
}

/// dmask: requested only with an additive mask, and then with the mask's padded shape, positive
/// strides on its dimensions of size > 1 and elements not overlapping each other. Fills pb's dmask
/// fields.
template <typename T>
void reduce_dmask(const MaskGrad<T>& g, const Mask<T>& m, GradProblem<T>& pb) {
  pb.mask_dims = m.dims();
  if (g.empty()) return;
  if (m.kind() != Mask<T>::Kind::additive) {
    throw Error("dmask needs an additive mask in CallOptions::mask (Mask<T>::additive); this call has " +
                std::string(m.empty() ? "no mask" : "a bool mask"));
  }
  const auto gshape = [&g] { return shape_str(g.dims().data(), 4); };
  for (int r = 0; r < 4; ++r) {
    if (g.dims()[static_cast<std::size_t>(r)] != m.dims()[static_cast<std::size_t>(r)]) {
      throw Error("dmask has shape " + gshape() + " (padded on the left to 4) but must have the mask's shape " +
                  shape_str(m.dims().data(), 4));
    }
  }
  Index n = 1;
  for (int r = 0; r < 4; ++r) n *= g.dims()[static_cast<std::size_t>(r)];
  if (n > 0 && g.data() == nullptr) throw Error("dmask has shape " + gshape() + " but no data (null pointer)");
  for (int r = 0; r < 4; ++r) {
    const Index d = g.dims()[static_cast<std::size_t>(r)], st = g.strides()[static_cast<std::size_t>(r)];
    if (d > 1 && st <= 0) {
      throw Error("dmask has stride " + std::to_string(st) + " in dimension " + std::to_string(r) +
                  " of its padded shape " + gshape() + ": strides of dimensions of size > 1 must be positive");
    }
    pb.dmask_strides[static_cast<std::size_t>(r)] = d == 1 ? 0 : st;
  }
  const TensorView<T, 4> view(g.data(), g.dims(), pb.dmask_strides);
  if (may_self_overlap(view)) {
    throw Error("dmask has strides " + shape_str(g.strides().data(), 4) + " for shape " + gshape() +
                ": two of its elements share memory");
  }
  pb.dmask = n > 0 ? g.data() : nullptr;
}

/// Validates a backward call and builds its GradProblem; throws attend::Error before anything is
/// written. Null inputs mean a query (dispatch, workspace size), which does not take them; a query
/// passes `grads` only for its dmask (`query` true: dq, dk and dv are not checked).
template <typename T>
GradProblem<T> make_grad_problem(const ConstView<T, 4>& q, const ConstView<T, 4>& k, const ConstView<T, 4>& v,
                                 const ConstView<T, 4>* out, const ConstView<acc_t<T>, 3>* lse,
                                 const ConstView<T, 4>* dout, const GradientViews<T>* grads,
                                 const CallOptions<T>& opt, const Settings& settings, bool query = false) {
  GradProblem<T> pb;
  check_qkv(q, k, v, pb);
  const std::array<Index, 4> o_shape = {pb.B, pb.Hq, pb.Nq, pb.Dv};
  if (out != nullptr) {
    check_shaped("out", *out, o_shape, "(B, Hq, Nq, Dv)", false, pb);
    pb.o = *out;
  }
  if (lse != nullptr) {
    check_lse_input(*lse, pb);
    pb.lse_in = *lse;
  }
  if (dout != nullptr) {
    check_shaped("dout", *dout, o_shape, "(B, Hq, Nq, Dv)", false, pb);
    pb.dout = *dout;
  }
  if (grads != nullptr && !query) {
    check_shaped("dq", grads->dq, {pb.B, pb.Hq, pb.Nq, pb.D}, "(B, Hq, Nq, D)", true, pb);
    check_shaped("dk", grads->dk, {pb.B, pb.Hkv, pb.Nk, pb.D}, "(B, Hkv, Nk, D)", true, pb);
    check_shaped("dv", grads->dv, {pb.B, pb.Hkv, pb.Nk, pb.Dv}, "(B, Hkv, Nk, Dv)", true, pb);
    pb.dq = grads->dq;
    pb.dk = grads->dk;
    pb.dv = grads->dv;
  }
  const ByteSpan mask_span = reduce_mask(opt.mask, pb);
  if (grads != nullptr) reduce_dmask(grads->dmask, opt.mask, pb);
  pb.mask_dims = opt.mask.dims();

  // No output may overlap another output or any input. The rank-4 views are compared element by
  // element where views_overlap can (dq, dk and dv interleaved in one packed buffer do not overlap).
  const TensorView<T, 4> dmask_view(pb.dmask, pb.mask_dims, pb.dmask_strides);
  const std::pair<const char*, TensorView<const T, 4>> outputs[] = {
      {"dq", pb.dq}, {"dk", pb.dk}, {"dv", pb.dv}, {"dmask", pb.dmask != nullptr ? dmask_view : TensorView<T, 4>()}};
  const std::pair<const char*, TensorView<const T, 4>> inputs[] = {
      {"q", pb.q}, {"k", pb.k}, {"v", pb.v}, {"out", pb.o}, {"dout", pb.dout}};
  const std::pair<const char*, ByteSpan> other_inputs[] = {{"lse", byte_span(pb.lse_in)}, {"the mask", mask_span}};
  for (std::size_t a = 0; a < 4; ++a) {
    const auto& out = outputs[a];
    for (std::size_t b = a + 1; b < 4; ++b) {
      if (views_overlap(out.second, outputs[b].second)) {
        throw Error(std::string(out.first) + " overlaps the memory of " + outputs[b].first +
                    ": the gradients must not share memory");
      }
    }
    for (const auto& in : inputs) {
      if (views_overlap(out.second, in.second)) {
        throw Error(std::string(out.first) + " overlaps the memory of " + in.first + ": an output must not alias an input");
      }
    }
    for (const auto& in : other_inputs) {
      if (spans_overlap(byte_span(out.second), in.second)) {
        throw Error(std::string(out.first) + " overlaps the memory of " + in.first + ": an output must not alias an input");
      }
    }
  }
  check_causal(opt.causal, pb);
  resolve_scale(settings, pb);
  check_dropout_counter(settings, opt.dropout_offset, pb);
  return pb;
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_VALIDATE_HPP
