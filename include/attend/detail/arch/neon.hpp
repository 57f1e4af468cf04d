#ifndef ATTEND_DETAIL_ARCH_NEON_HPP
#define ATTEND_DETAIL_ARCH_NEON_HPP

// The AArch64 NEON forms of the primitives (arch/primitives.hpp declares each one and holds its
// generic form). Included by primitives.hpp; empty unless the target is AArch64 with NEON
// (ATTEND_ARCH_NEON).
//
// The multiply-add by lane of FmaOps (kLaneFma: load_lanes, madd_lane) and the scheduling fence its
// loops need (schedule_fence). AArch64's `fmla v.4s, v.4s, v.s[lane]` multiplies a packet of B by
// one lane of another register, so one `ldr q` of 4 values of A (4 steps of k of one row, or 4 rows
// of one step) serves what took 4 `ld1r` (each with its own address: ld1r takes no offset). The FMA
// is the same fused multiply-add as `fmla v.4s, v.4s, v.4s` on a broadcast (vfmaq_f32, Eigen's
// pmadd), so every result keeps its bits.

#include "attend/detail/arch/isa.hpp"

#if ATTEND_ARCH_NEON
#include <arm_neon.h>

#include <type_traits>  // std::is_same_v

#include <Eigen/Core>

#include "attend/detail/abi.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {
namespace neon {

/// The register that holds lanes of A: the packet itself (Packet4f is float32x4_t, Packet2d
/// float64x2_t on AArch64).
template <typename Acc>
using Lanes = std::conditional_t<std::is_same_v<Acc, float>, float32x4_t, float64x2_t>;

/// The first N values at p (any alignment) in the low lanes, 0 in the others; reads nothing past
/// p + N. N = 4 (2 for double) is one `ldr q`; 2 floats one `ldr d`, 1 value one `ldr s` / `ldr d`
/// (a scalar load zeroes the rest of the register).
template <int N>
EIGEN_ALWAYS_INLINE float32x4_t load_lanes(const float* p) {
  static_assert(N >= 1 && N <= 4, "1 to 4 lanes of floats");
  if constexpr (N == 4) {
    return vld1q_f32(p);
  } else if constexpr (N == 3) {
    return vld1q_lane_f32(p + 2, vcombine_f32(vld1_f32(p), vdup_n_f32(0.0f)), 2);
  } else if constexpr (N == 2) {
    return vcombine_f32(vld1_f32(p), vdup_n_f32(0.0f));
  } else {
    return vsetq_lane_f32(*p, vdupq_n_f32(0.0f), 0);
  }
}
template <int N>
EIGEN_ALWAYS_INLINE float64x2_t load_lanes(const double* p) {
  static_assert(N >= 1 && N <= 2, "1 or 2 lanes of doubles");
  if constexpr (N == 2) {
    return vld1q_f64(p);
  } else {
    return vsetq_lane_f64(*p, vdupq_n_f64(0.0), 0);
  }
}

/// acc + b · a[kLane], fused: one `fmla v.4s, v.4s, v.s[kLane]` (`v.2d, ..., v.d[kLane]`).
/// Written as asm, not vfmaq_laneq_f32: GCC 12 represents that intrinsic as an FMA of a duplicated
/// lane, and CSE then shares one `dup` of each lane among the FMAs that use it, 6 more registers
/// beside the micro-kernel's 24 accumulators and 6 rows of A: it spilled, and S^T = K · Q^T
/// (gemm_panel, Nq = Nk = 1024, D = 64) ran 1.92 instructions per FMA, as many as with broadcasts
/// (1.93); with the asm, 1.38.
template <int kLane>
EIGEN_ALWAYS_INLINE float32x4_t madd_lane(float32x4_t a, float32x4_t b, float32x4_t acc) {
  static_assert(kLane >= 0 && kLane < 4, "a lane of 4 floats");
  __asm__("fmla %0.4s, %1.4s, %2.s[%3]" : "+w"(acc) : "w"(b), "w"(a), "i"(kLane));
  return acc;
}
template <int kLane>
EIGEN_ALWAYS_INLINE float64x2_t madd_lane(float64x2_t a, float64x2_t b, float64x2_t acc) {
  static_assert(kLane >= 0 && kLane < 2, "a lane of 2 doubles");
  __asm__("fmla %0.2d, %1.2d, %2.d[%3]" : "+w"(acc) : "w"(b), "w"(a), "i"(kLane));
  return acc;
}

/// An empty volatile asm: GCC's instruction schedulers move nothing across one (sched-deps treats
/// it as a barrier). The micro-kernel's lane loops have room for one step's B packets (row_lanes) or
/// one B packet (k_lanes: 24 accumulators and 6 rows of A take 30 of the 32 registers), but GCC 12's
/// scheduler before register allocation hoists the next loads above the FMAs, and they spill. S^T =
/// K · Q^T at Nq = Nk = 1024, D = 64: gemm_panel 1.44 instructions per FMA (547 k stores) without
/// the fences, 1.38 (217 k stores: C alone) with one after each B packet's FMAs, as with
/// -fno-schedule-insns (1.40). An out-of-order core reorders the loads itself.
EIGEN_ALWAYS_INLINE void schedule_fence() { __asm__ __volatile__(""); }

}  // namespace neon
}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_ARCH_NEON
#endif  // ATTEND_DETAIL_ARCH_NEON_HPP
