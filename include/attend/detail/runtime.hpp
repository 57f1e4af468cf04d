#ifndef ATTEND_DETAIL_RUNTIME_HPP
#define ATTEND_DETAIL_RUNTIME_HPP

// The interface between a program and kernels chosen at run time (the attend::dispatch component,
// src/dispatch/): plain values and function pointers, in a namespace tagged with the version only, so
// that code compiled for the baseline and kernels compiled for another instruction set agree on it.
// No Eigen object and no attend type crosses it: a call is described by pointers, sizes and strides
// (Call), its thread pool by a fork function (Pool), and each element type's kernels by a table
// (Kernels). A consumer compiled with ATTEND_DISPATCH validates a call as usual, then asks table()
// (src/dispatch/select.cpp: the CPU's best variant, or the one ATTEND_ISA names) for the kernel, the
// workspace size and the run; each variant (src/dispatch/variant.cpp) rebuilds its own Problem from
// the Call and runs its own kernels.

#include <cstddef>  // std::size_t
#include <cstdint>  // std::uint32_t, std::uint64_t

#include "attend/detail/abi.hpp"
#include "attend/detail/parallel.hpp"
#include "attend/detail/problem.hpp"
#include "attend/tensor.hpp"

namespace attend {
namespace ATTEND_ABI_CAT(runtime_, ATTEND_ABI_VERSION) {

/// A rank-4 (or rank-3: the last entries unused) view.
struct View {
  const void* data;
  long long dims[4];
  long long strides[4];
};

/// A validated call, forward or backward (the backward's fields unused by the forward).
struct Call {
  View q, k, v, out, lse;
  long long B, Hq, Hkv, Nq, Nk, D, Dv, group;
  double scale;
  int causal;
  long long causal_offset;
  int mask_kind;
  const void* keep;
  const void* bias;
  long long mask_strides[4];
  int dropout_active;
  std::uint64_t dropout_threshold;
  double dropout_keep_scale;
  std::uint32_t dropout_key[2];
  std::uint32_t dropout_offset;
  long long dropout_heads;
  // The backward's.
  View o, lse_in, dout, dq, dk, dv;
  void* dmask;
  long long dmask_strides[4];
  long long mask_dims[4];
};

/// A thread pool: run task(arg, w) for w in [0, n), w = 0 on the calling thread (detail::Pool).
struct Pool {
  int threads;
  void* context;
  void (*fork)(void* context, int n, void (*task)(void*, int), void* arg);
};

/// One element type's kernels in one variant. Kernels and paths travel as their enumerators' values.
struct Kernels {
  int (*forward_kernel)(const Call& call, int path);
  std::size_t (*forward_workspace_bytes)(int kernel, const Call& call, int workers);
  void (*run_forward)(int kernel, const Call& call, const Pool& pool, void* workspace);
  std::size_t (*backward_workspace_bytes)(int kernel, const Call& call, int workers);
  void (*run_backward)(int kernel, const Call& call, const Pool& pool, void* workspace);
};

/// A variant: the instruction set its kernels were compiled for, and its kernels per element type.
struct Table {
  const char* isa;    ///< as Dispatch::isa reports it: "sse2", "avx2", "avx512", "avx512_bf16", ...
  const char* level;  ///< as ATTEND_ISA names it: "x86-64", "x86-64-v3", "x86-64-v4", "x86-64-v4-bf16"
  Kernels f64, f32, bf16, f16;
};

/// The variant this process runs: the best the CPU and OS support, or the one the environment variable
/// ATTEND_ISA names (src/dispatch/select.cpp). Chosen once, on first use.
const Table& table();

}  // namespace runtime_...
}  // namespace attend

ATTEND_BEGIN_NAMESPACE
namespace runtime = ::attend::ATTEND_ABI_CAT(runtime_, ATTEND_ABI_VERSION);
namespace detail {

template <typename V, int Rank>
runtime::View to_view(const TensorView<V, Rank>& t) {
  runtime::View r{t.data(), {0, 0, 0, 0}, {0, 0, 0, 0}};
  for (int d = 0; d < Rank; ++d) {
    r.dims[d] = t.dimension(d);
    r.strides[d] = t.stride(d);
  }
  return r;
}

template <typename V, int Rank>
TensorView<V, Rank> from_view(const runtime::View& r) {
  typename TensorView<V, Rank>::Dims dims{}, strides{};
  for (int d = 0; d < Rank; ++d) {
    dims[static_cast<std::size_t>(d)] = r.dims[d];
    strides[static_cast<std::size_t>(d)] = r.strides[d];
  }
  return TensorView<V, Rank>(static_cast<V*>(const_cast<void*>(r.data)), dims, strides);
}

/// A forward Problem as a Call.
template <typename T>
runtime::Call to_call(const Problem<T>& pb) {
  runtime::Call c{};
  c.q = to_view(pb.q);
  c.k = to_view(pb.k);
  c.v = to_view(pb.v);
  c.out = to_view(pb.out);
  c.lse = to_view(pb.lse);
  c.B = pb.B, c.Hq = pb.Hq, c.Hkv = pb.Hkv, c.Nq = pb.Nq, c.Nk = pb.Nk, c.D = pb.D, c.Dv = pb.Dv, c.group = pb.group;
  c.scale = static_cast<double>(pb.scale);
  c.causal = static_cast<int>(pb.causal);
  c.causal_offset = pb.causal_offset;
  c.mask_kind = static_cast<int>(pb.mask_kind);
  c.keep = pb.keep;
  c.bias = pb.bias;
  for (int d = 0; d < 4; ++d) c.mask_strides[d] = pb.mask_strides[static_cast<std::size_t>(d)];
  c.dropout_active = pb.dropout.active ? 1 : 0;
  c.dropout_threshold = pb.dropout.threshold;
  c.dropout_keep_scale = pb.dropout.keep_scale;
  c.dropout_key[0] = pb.dropout.key[0];
  c.dropout_key[1] = pb.dropout.key[1];
  c.dropout_offset = pb.dropout.offset;
  c.dropout_heads = pb.dropout.heads;
  return c;
}

/// A backward GradProblem as a Call.
template <typename T>
runtime::Call to_call(const GradProblem<T>& pb) {
  runtime::Call c = to_call(static_cast<const Problem<T>&>(pb));
  c.o = to_view(pb.o);
  c.lse_in = to_view(pb.lse_in);
  c.dout = to_view(pb.dout);
  c.dq = to_view(pb.dq);
  c.dk = to_view(pb.dk);
  c.dv = to_view(pb.dv);
  c.dmask = pb.dmask;
  for (int d = 0; d < 4; ++d) {
    c.dmask_strides[d] = pb.dmask_strides[static_cast<std::size_t>(d)];
    c.mask_dims[d] = pb.mask_dims[static_cast<std::size_t>(d)];
  }
  return c;
}

/// A Call back as this translation unit's Problem (the variants' side).
template <typename T>
void fill_problem(const runtime::Call& c, Problem<T>& pb) {
  using Acc = acc_t<T>;
  pb.q = from_view<const T, 4>(c.q);
  pb.k = from_view<const T, 4>(c.k);
  pb.v = from_view<const T, 4>(c.v);
  pb.out = from_view<T, 4>(c.out);
  pb.lse = from_view<Acc, 3>(c.lse);
  pb.B = c.B, pb.Hq = c.Hq, pb.Hkv = c.Hkv, pb.Nq = c.Nq, pb.Nk = c.Nk, pb.D = c.D, pb.Dv = c.Dv, pb.group = c.group;
  pb.scale = static_cast<Acc>(c.scale);
  pb.causal = static_cast<Causal>(c.causal);
  pb.causal_offset = c.causal_offset;
  pb.mask_kind = static_cast<typename Mask<T>::Kind>(c.mask_kind);
  pb.keep = static_cast<const bool*>(c.keep);
  pb.bias = static_cast<const T*>(c.bias);
  for (int d = 0; d < 4; ++d) pb.mask_strides[static_cast<std::size_t>(d)] = c.mask_strides[d];
  pb.dropout.active = c.dropout_active != 0;
  pb.dropout.threshold = c.dropout_threshold;
  pb.dropout.keep_scale = c.dropout_keep_scale;
  pb.dropout.key = {c.dropout_key[0], c.dropout_key[1]};
  pb.dropout.offset = c.dropout_offset;
  pb.dropout.heads = c.dropout_heads;
}

template <typename T>
Problem<T> problem_of(const runtime::Call& c) {
  Problem<T> pb;
  fill_problem(c, pb);
  return pb;
}

template <typename T>
GradProblem<T> grad_problem_of(const runtime::Call& c) {
  GradProblem<T> pb;
  fill_problem(c, pb);
  pb.o = from_view<const T, 4>(c.o);
  pb.lse_in = from_view<const acc_t<T>, 3>(c.lse_in);
  pb.dout = from_view<const T, 4>(c.dout);
  pb.dq = from_view<T, 4>(c.dq);
  pb.dk = from_view<T, 4>(c.dk);
  pb.dv = from_view<T, 4>(c.dv);
  pb.dmask = static_cast<T*>(c.dmask);
  for (int d = 0; d < 4; ++d) {
    pb.dmask_strides[static_cast<std::size_t>(d)] = c.dmask_strides[d];
    pb.mask_dims[static_cast<std::size_t>(d)] = c.mask_dims[d];
  }
  return pb;
}

inline runtime::Pool to_runtime(const Pool& p) { return {p.threads, p.context, p.fork}; }
inline Pool from_runtime(const runtime::Pool& p) {
  Pool r;
  r.threads = p.threads, r.context = p.context, r.fork = p.fork;
  return r;
}

/// This element type's kernels in the variant the process runs.
template <typename T>
const runtime::Kernels& runtime_kernels() {
  const runtime::Table& t = runtime::table();
  if constexpr (std::is_same_v<T, double>) return t.f64;
  else if constexpr (std::is_same_v<T, float>) return t.f32;
  else if constexpr (std::is_same_v<T, Eigen::bfloat16>) return t.bf16;
  else return t.f16;
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_RUNTIME_HPP
