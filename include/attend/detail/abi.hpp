#ifndef ATTEND_DETAIL_ABI_HPP
#define ATTEND_DETAIL_ABI_HPP

// The versioned, instruction-set-tagged inline namespace that holds all of attend.
//
// attend is header-only: every function is inline or a template, and the linker keeps one copy of
// each. Two translation units compiled with different target flags would otherwise define the same
// symbols with different code and scratch layouts (a -march=native TU's bf16 kernel writing buffers
// that a baseline TU's workspace size never laid out), and the linker would pick one copy for both.
// With the tag in every mangled name, each TU links its own kernels (PyTorch's CPU_CAPABILITY
// namespace, Highway's HWY_NAMESPACE, fmt's and nlohmann's versioned inline namespaces). Users still
// write attend::Attend: the namespace is inline.
//
// The tag holds everything that changes attend's code or layout: the version, the instruction set
// (arch/isa.hpp, which includes bf16 products), the tuning macro ATTEND_KERNEL_BLOCK_K and dispatch
// mode, e.g. v0_2_0_avx512_bf16_k64. A consequence: attend's types differ between TUs built with different
// flags, so passing an attend object (an Attend, a Workspace, a view) from one such TU to another
// through a shared declaration fails to link, rather than running the other TU's kernels.

#include "attend/version.hpp"
#include "attend/detail/arch/isa.hpp"
#include "attend/detail/macros.hpp"

#define ATTEND_ABI_CAT_(a, b) a##b
#define ATTEND_ABI_CAT(a, b) ATTEND_ABI_CAT_(a, b)

/// Dispatch mode (the attend::dispatch component: ATTEND_DISPATCH, set by linking it) routes calls
/// to kernels chosen at run time, so its inline code differs from the header-only build's: `_rt`.
#if defined(ATTEND_DISPATCH) && !defined(ATTEND_DISPATCH_VARIANT)
#define ATTEND_ABI_MODE _rt
#else
#define ATTEND_ABI_MODE
#endif

#define ATTEND_ABI_VERSION                                                                             \
  ATTEND_ABI_CAT(ATTEND_ABI_CAT(ATTEND_ABI_CAT(ATTEND_ABI_CAT(ATTEND_ABI_CAT(v, ATTEND_VERSION_MAJOR), _), \
                                               ATTEND_VERSION_MINOR),                                  \
                                _),                                                                    \
                 ATTEND_VERSION_PATCH)

/// The inline namespace's name, e.g. v0_2_0_avx512_bf16_k64 (v0_2_0_sse2_k64_rt in dispatch mode).
#define ATTEND_ABI_TAG                                                                                   \
  ATTEND_ABI_CAT(ATTEND_ABI_CAT(ATTEND_ABI_CAT(ATTEND_ABI_VERSION, ATTEND_ABI_CAT(_, ATTEND_ISA)),           \
                                ATTEND_ABI_CAT(_k, ATTEND_KERNEL_BLOCK_K)),                              \
                 ATTEND_ABI_MODE)

#define ATTEND_ABI_STR_(x) #x
#define ATTEND_ABI_STR(x) ATTEND_ABI_STR_(x)
/// The tag as a string literal, for messages and tests.
#define ATTEND_ABI_NAME ATTEND_ABI_STR(ATTEND_ABI_TAG)

/// Opens namespace attend and its tagged inline namespace; every attend header's code sits between
/// ATTEND_BEGIN_NAMESPACE and ATTEND_END_NAMESPACE.
#define ATTEND_BEGIN_NAMESPACE \
  namespace attend {           \
  inline namespace ATTEND_ABI_TAG {
#define ATTEND_END_NAMESPACE \
  }                          \
  }

#endif  // ATTEND_DETAIL_ABI_HPP
