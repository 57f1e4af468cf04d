#ifndef ATTEND_DETAIL_ARCH_PRIMITIVES_HPP
#define ATTEND_DETAIL_ARCH_PRIMITIVES_HPP

// The instruction-set primitives the kernels are written against, each with its generic form over
// Eigen's packets beside the choice of a specialised one (Highway's layout: algorithms written once,
// ops per target). arch/ is the only place with intrinsics or instruction-set #ifs; a kernel that
// needs something an Eigen packet op does not give adds a primitive here, generic form first.
//
//   exp_or_zero(x)              exp of a packet, exactly 0 at -inf, NaN kept
//   transpose_block(block)      square register transpose of a PacketBlock
//   kPacketIO<T>                whether T moves to and from acc_t<T> packets a packet at a time
//   load_packet<T>(p)           a packet of T converted to acc_t<T>      (where kPacketIO<T>)
//   store_packet<T>(p, x, nt)   a packet of acc_t<T> stored as T, non-temporally if asked and aligned
//                               (where kPacketIO<T> or T is acc_t<T>)
//   convert_row(src, dst, n)    n values of a 16-bit T to float
//   any_nan(x, n)               whether x[0, n) holds a NaN
//   load_partial / store_partial   the first n lanes of a packet (decode tails)
//   keep_in_registers(a..d)     pins loaded packets in registers (decode blocks; one packet:
//                               the micro-kernel's B packets where FmaOps::kPinB)
//   stream_fence()              orders non-temporal stores before a hand-off to another thread
//   schedule_fence()            keeps the compiler's scheduler from moving code across it (the
//                               micro-kernel's lane steps on NEON; a no-op elsewhere)
//   prefetch_l2(p)              requests a cache line into L2
//   FmaOps<Acc>, Bf16PairOps    multiply-add policies of the products (Bf16PairOps: AVX512_BF16
//                               pairs, arch/avx512_bf16.hpp), kBf16Dot<T> where the latter serves T;
//                               FmaOps' multiply-add by lane of A (kLaneFma: AArch64, arch/neon.hpp)
//   kBf16Amx<T>, bf16_amx_pays()   whether T's flash tiles can, and on this CPU do, take AMX tile
//                               products (arch/amx.hpp; the policy is AmxTiles, kernel/products.hpp)

#include <cmath>        // std::isnan
#include <cstring>      // std::memcpy
#include <type_traits>  // std::is_same_v

#include <Eigen/Core>

#include "attend/detail/abi.hpp"
#include "attend/tensor.hpp"
#include "attend/types.hpp"

#if ATTEND_ARCH_AVX512
#include "attend/detail/arch/avx512.hpp"
#endif
#if ATTEND_HAVE_BF16_DOT
#include "attend/detail/arch/avx512_bf16.hpp"
#endif
#if ATTEND_HAVE_AMX_BF16
#include "attend/detail/arch/amx.hpp"
#endif
#if ATTEND_ARCH_AVX2
#include "attend/detail/arch/avx2.hpp"
#endif
#if ATTEND_ARCH_NEON
#include "attend/detail/arch/neon.hpp"
#endif
#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>  // _mm_prefetch, _mm_sfence
#endif

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

ATTEND_BEGIN_NAMESPACE
namespace detail {

/// Eigen's widest packet for Acc on this target: Packet16f with AVX-512, Packet8f with AVX2,
/// Packet4f with SSE or NEON (and the double counterparts).
template <typename Acc>
using PacketOf = typename Eigen::internal::packet_traits<Acc>::type;
/// Lanes of PacketOf<Acc>.
template <typename Acc>
constexpr int kLanesOf = Eigen::internal::unpacket_traits<PacketOf<Acc>>::size;

// ---- multiply-add policies ----

/// The multiply-add policy of Acc FMAs over Eigen packets, for the micro-kernel (kernel/microkernel.hpp)
/// and the decode blocks: one value of the reduction per step, A broadcast from a scalar, B a packet.
/// Its members are what every policy provides (Bf16PairOps, for one, multiplies pairs of bf16).
template <typename Acc>
struct FmaOps {
  using Scalar = Acc;             ///< the accumulator's lanes
  using Packet = PacketOf<Acc>;   ///< the accumulator
  using APacket = Packet;         ///< a broadcast element of A
  using BPacket = Packet;         ///< a packet of B
  using AUnit = Acc;              ///< A's strides count these
  using BUnit = Acc;              ///< B's strides count these
  static constexpr int kLanes = kLanesOf<Acc>;
  static constexpr int kValuesPerStep = 1;
  static constexpr int kRegisters = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;
  /// An FMA has about 4 cycles of latency at 2 per cycle: 8 independent chains hide it.
  static constexpr int kMinChains = 8;
  /// Whether the micro-kernel pins its B packets in registers (keep_in_registers) rather than let
  /// the compiler fold a load into every FMA that uses one: AVX2, where GCC folds them and the
  /// 6 x 2 block then needs 18 loads per 12 FMAs (arch/avx2.hpp) instead of 8, more than the two
  /// load ports of Haswell to Skylake serve in its 6 cycles. Sapphire Rapids, with three, measured
  /// the same either way (0.72-0.74 of the peak for a flash tile's two products over 4096 keys).
  static constexpr bool kPinB = ATTEND_ARCH_AVX2 != 0;
  /// Whether madd is one fused instruction (else a multiply and an add, with a temporary).
#if defined(EIGEN_VECTORIZE_FMA) || defined(EIGEN_VECTORIZE_NEON) || defined(EIGEN_VECTORIZE_SVE)
  static constexpr bool kFusedMadd = true;
#else
  static constexpr bool kFusedMadd = false;
#endif

  static EIGEN_ALWAYS_INLINE Packet zero() { return Eigen::internal::pset1<Packet>(Acc(0)); }
  static EIGEN_ALWAYS_INLINE APacket broadcast_a(const AUnit* p) { return Eigen::internal::pset1<Packet>(*p); }
  /// kAligned: B is a packed, packet-aligned panel; else any alignment.
  template <bool kAligned>
  static EIGEN_ALWAYS_INLINE BPacket load_b(const BUnit* p) {
    if constexpr (kAligned) return Eigen::internal::pload<Packet>(p);
    else return Eigen::internal::ploadu<Packet>(p);
  }
  /// The first n (< kLanes · kValuesPerStep) values at p, the rest 0.
  static EIGEN_ALWAYS_INLINE BPacket load_b_partial(const BUnit* p, Index n);
  static EIGEN_ALWAYS_INLINE Packet madd(const APacket& a, const BPacket& b, const Packet& acc) {
    return Eigen::internal::pmadd(a, b, acc);
  }

  // ---- multiply-add by lane of A ----
  // Where kLaneFma, the micro-kernel loads kALanes consecutive values of A at once (load_a_lanes: 4
  // steps of k of one row where A is contiguous along k, or 4 rows of one step where it is contiguous
  // along rows) and multiplies B by each lane (madd_lane), instead of one broadcast per value: with
  // NEON's 6 x 4 block, 6 loads per 4 steps of k instead of 24. madd_lane rounds as madd does (one
  // fused multiply-add), so which form runs never changes a bit. The generic form (a register of
  // values, each broadcast when used) serves any target, for tests of the micro-kernel's lane forms;
  // the kernels take it only where it is one instruction.

  /// Whether the micro-kernel multiplies by lanes of A (AArch64: `fmla v.4s, v.4s, v.s[lane]`).
  static constexpr bool kLaneFma = ATTEND_ARCH_NEON && (std::is_same_v<Acc, float> || std::is_same_v<Acc, double>);
  /// Values of A per ALanes: a packet's.
  static constexpr int kALanes = kLanes;
#if ATTEND_ARCH_NEON
  using ALanes = std::conditional_t<kLaneFma, neon::Lanes<Acc>, Packet>;  ///< kALanes values of A
#else
  using ALanes = Packet;  ///< kALanes values of A
#endif
  /// The N (1 <= N <= kALanes) values of A at p (any alignment) in the low lanes; reads nothing past
  /// p + N.
  template <int N>
  static EIGEN_ALWAYS_INLINE ALanes load_a_lanes(const AUnit* p) {
    static_assert(N >= 1 && N <= kALanes, "load_a_lanes: 1 to kALanes values");
#if ATTEND_ARCH_NEON
    if constexpr (kLaneFma) return neon::load_lanes<N>(p);
    else
#endif
    {
      alignas(64) Acc buf[kALanes] = {};
      for (int i = 0; i < N; ++i) buf[i] = p[i];
      return Eigen::internal::pload<Packet>(buf);
    }
  }
  /// acc + b · a[kLane], rounded as madd(broadcast of a[kLane], b, acc).
  template <int kLane>
  static EIGEN_ALWAYS_INLINE Packet madd_lane(const ALanes& a, const BPacket& b, const Packet& acc) {
    static_assert(kLane >= 0 && kLane < kALanes, "madd_lane: a lane of ALanes");
#if ATTEND_ARCH_NEON
    if constexpr (kLaneFma) return neon::madd_lane<kLane>(a, b, acc);
    else
#endif
    {
      alignas(64) Acc buf[kALanes];
      Eigen::internal::pstore(buf, a);
      return madd(Eigen::internal::pset1<Packet>(buf[kLane]), b, acc);
    }
  }
};

/// The multiply-add policy of bf16 pairs on AVX512_BF16 (arch/avx512_bf16.hpp), or an incomplete type
/// where the target has no bf16 products: kernels name it only under kBf16Dot.
#if ATTEND_HAVE_BF16_DOT
using Bf16PairOps = avx512::Bf16Pairs;
#else
struct Bf16PairOps;
/// Whether this CPU runs bf16 pair products faster than fp32 ones (arch/avx512_bf16.hpp): never,
/// where the target has none.
inline bool bf16_pairs_pay() { return false; }
#endif

/// Whether T's products run on bf16 pairs (Bf16PairOps): T is bf16 and the target has AVX512_BF16.
template <typename T>
constexpr bool kBf16Dot = ATTEND_HAVE_BF16_DOT && std::is_same_v<T, Eigen::bfloat16>;

/// Whether T's flash tiles can take AMX tile products (AmxTiles): T is bf16 and the target has AMX-TILE
/// and AMX-BF16 (with AVX512_BF16, whose pair packing they share). Whether they do is bf16_amx_pays().
template <typename T>
constexpr bool kBf16Amx = ATTEND_HAVE_AMX_BF16 && std::is_same_v<T, Eigen::bfloat16>;
#if !ATTEND_HAVE_AMX_BF16
/// Whether the flash tiles take AMX products on this CPU (arch/amx.hpp): never, where the target has
/// no AMX.
inline bool bf16_amx_pays() { return false; }
#endif

// ---- exp ----

/// exp(x) for a packet, and exactly 0 for x = -inf (a masked score must contribute exactly nothing,
/// or a fully masked row would average V instead of returning 0). NaN stays NaN.
/// Generic form: Eigen's pexp clamps its argument, so for x = -inf it may return the smallest normal
/// instead of 0 (double: 5.6e-309); it is zeroed below the last normal result. The AVX-512 float form
/// returns the true, subnormal exp down to x = -138.6 and exactly 0 beneath; the AVX2 float form is
/// zeroed below -87 like the generic one (and serves x <= 88: the softmax's arguments are <= 0).
template <typename Packet>
EIGEN_ALWAYS_INLINE Packet exp_or_zero(const Packet& x) {
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Packet, Eigen::internal::Packet16f>) return avx512::exp_or_zero(x);
  else
#endif
#if ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Packet, Eigen::internal::Packet8f>) return avx2::exp_or_zero(x);
  else
#endif
  {
    using Scalar = typename Eigen::internal::unpacket_traits<Packet>::type;
    // exp(-87) = 1.6e-38 (float), exp(-708) = 3.3e-308 (double): the last normal results.
    const Packet cutoff = Eigen::internal::pset1<Packet>(std::is_same_v<Scalar, float> ? Scalar(-87) : Scalar(-708));
    const Packet e = Eigen::internal::pexp(x);
    // pcmp_le(cutoff, x) is all-ones where cutoff <= x; NaN compares false, so the NaN lanes of e are
    // put back with pandnot (NaN must propagate, never turn into 0).
    const Packet keep = Eigen::internal::pcmp_le(cutoff, x);
    const Packet nan = Eigen::internal::pcmp_eq(x, x);  // all-ones where x is not NaN
    return Eigen::internal::por(Eigen::internal::pand(e, keep), Eigen::internal::pandnot(e, nan));
  }
}

// ---- transposes ----

/// A square register transpose of one block of packets: 64 shuffles for AVX-512 floats, Eigen's
/// ptranspose otherwise.
template <typename Packet, int N>
EIGEN_ALWAYS_INLINE void transpose_block(Eigen::internal::PacketBlock<Packet, N>& b) {
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Packet, __m512> && N == 16) {
    avx512::transpose16(b);
    return;
  }
#endif
  Eigen::internal::ptranspose(b);
}

// ---- conversions between T and its accumulation type ----

/// Whether a packet of T converts to and from a packet of acc_t<T> at once, which the query pack and
/// the transposed epilogue need (they move whole L x L blocks): float everywhere; with AVX-512 also
/// bf16 and half (exact widening; rounding bit-identical to Eigen's scalar conversions), and so with
/// AVX2 (F16C for half).
template <typename T>
constexpr bool kPacketIO =
    std::is_same_v<T, float> || ((ATTEND_ARCH_AVX512 || ATTEND_ARCH_AVX2) && std::is_same_v<acc_t<T>, float>);

/// A packet of acc_t<T> from kLanesOf<acc_t<T>> values of T at p (any alignment); kPacketIO<T>.
template <typename T>
EIGEN_ALWAYS_INLINE PacketOf<acc_t<T>> load_packet(const T* p) {
  static_assert(kPacketIO<T>, "load_packet: no packet conversion for this T on this target");
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    return Eigen::internal::ploadu<PacketOf<acc_t<T>>>(p);
  } else {
#if ATTEND_ARCH_AVX512
    return avx512::load16_as_float(p);
#elif ATTEND_ARCH_AVX2
    return avx2::load8_as_float(p);
#endif
  }
}

/// Whether store_packet<T> exists: kPacketIO<T>, or T is its own accumulation type.
template <typename T>
constexpr bool kStorePacket = kPacketIO<T> || std::is_same_v<T, acc_t<T>>;

/// Stores a packet of acc_t<T> at p as T (any alignment). `stream`: a non-temporal store where the
/// target has one for T and p is aligned for it (AVX-512 and AVX2, float and 16-bit), else an
/// ordinary store.
template <typename T>
EIGEN_ALWAYS_INLINE void store_packet(T* p, const PacketOf<acc_t<T>>& x, [[maybe_unused]] bool stream) {
  static_assert(kStorePacket<T>, "store_packet: no packet conversion for this T on this target");
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<T, float>) {
    avx512::store16_float(p, x, stream);
    return;
  } else if constexpr (std::is_same_v<acc_t<T>, float>) {
    avx512::store16_from_float(p, x, stream);
    return;
  }
#elif ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<T, float>) {
    avx2::store8_float(p, x, stream);
    return;
  } else if constexpr (std::is_same_v<acc_t<T>, float>) {
    avx2::store8_from_float(p, x, stream);
    return;
  }
#endif
  if constexpr (std::is_same_v<T, acc_t<T>>) Eigen::internal::pstoreu(p, x);
}

/// dst[0, n) = src[0, n) converted to float, a packet at a time: with AVX-512 and AVX2 by vcvtph2ps
/// or a shift, elsewhere where Eigen has a 16-bit packet as wide as the float one. A scalar bf16 or
/// half conversion costs as much as the FMAs that use the value.
template <typename T>
EIGEN_ALWAYS_INLINE void convert_row(const T* src, float* dst, Index n) {
  using namespace Eigen::internal;
  constexpr Index L = kLanesOf<float>;
  Index d = 0;
#if ATTEND_ARCH_AVX512
  for (; d + L <= n; d += L) pstoreu(dst + d, avx512::load16_as_float(src + d));
#elif ATTEND_ARCH_AVX2
  for (; d + L <= n; d += L) pstoreu(dst + d, avx2::load8_as_float(src + d));
#else
  using Packet16 = typename packet_traits<T>::type;
  // Only where Eigen has the vectorised cast: NEON's Packet4bf has none (Eigen 3.4), and the generic
  // pcast, a static_cast of the packet, does not compile there.
  if constexpr (packet_traits<T>::Vectorizable && unpacket_traits<Packet16>::size == L &&
                type_casting_traits<T, float>::VectorizedCast) {
    for (; d + L <= n; d += L) pstoreu(dst + d, pcast<Packet16, PacketOf<float>>(ploadu<Packet16>(src + d)));
  }
#endif
  for (; d < n; ++d) dst[d] = static_cast<float>(src[d]);
}

// ---- scans ----

/// Whether any of x[0, n) is NaN (any pointer, any n). A packet at a time: the decode kernel scans 4 x
/// 128 outputs per 512 keys, and a scalar scan of them was 4% of its time with K and V in cache.
template <typename Acc>
bool any_nan(const Acc* x, Index n) {
  using Packet = PacketOf<Acc>;
  constexpr Index L = kLanesOf<Acc>;
  using namespace Eigen::internal;
  Index i = 0;
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Acc, float> || std::is_same_v<Acc, double>) {
    if (avx512::any_nan_pairs(x, n, i)) return true;
  }
#elif ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Acc, float> || std::is_same_v<Acc, double>) {
    if (avx2::any_nan_pairs(x, n, i)) return true;
  }
#endif
  const Packet one = pset1<Packet>(Acc(1));
  // pcmp_eq(p, p) is all-ones except in NaN lanes; pandnot(one, that) is 1 exactly in NaN lanes.
  Packet nan_lanes = pset1<Packet>(Acc(0));
  for (; i + L <= n; i += L) {
    const Packet p = ploadu<Packet>(x + i);
    nan_lanes = padd(nan_lanes, pandnot(one, pcmp_eq(p, p)));
  }
  bool nan = predux(nan_lanes) != Acc(0);
  for (; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

// ---- partial packets ----

/// The first n (0 < n < lanes) values at p in the low lanes of a packet, 0 in the others; reads
/// nothing past p + n.
template <typename Packet>
EIGEN_ALWAYS_INLINE Packet load_partial(const typename Eigen::internal::unpacket_traits<Packet>::type* p, Index n) {
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Packet, __m512>) return avx512::load_partial(p, n);
  else
#endif
#if ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Packet, __m256>) return avx2::load_partial(p, n);
  else
#endif
  {
    using Scalar = typename Eigen::internal::unpacket_traits<Packet>::type;
    alignas(64) Scalar buf[Eigen::internal::unpacket_traits<Packet>::size] = {};
    std::memcpy(buf, p, sizeof(Scalar) * static_cast<std::size_t>(n));
    return Eigen::internal::pload<Packet>(buf);
  }
}

/// Stores the low n (0 < n < lanes) lanes of x at p; writes nothing past p + n.
template <typename Packet>
EIGEN_ALWAYS_INLINE void store_partial(typename Eigen::internal::unpacket_traits<Packet>::type* p, const Packet& x,
                                       Index n) {
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Packet, __m512>) {
    avx512::store_partial(p, x, n);
    return;
  }
#endif
#if ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Packet, __m256>) {
    avx2::store_partial(p, x, n);
    return;
  }
#endif
  using Scalar = typename Eigen::internal::unpacket_traits<Packet>::type;
  alignas(64) Scalar buf[Eigen::internal::unpacket_traits<Packet>::size];
  Eigen::internal::pstore(buf, x);
  std::memcpy(p, buf, sizeof(Scalar) * static_cast<std::size_t>(n));
}

template <typename Acc>
EIGEN_ALWAYS_INLINE typename FmaOps<Acc>::BPacket FmaOps<Acc>::load_b_partial(const BUnit* p, Index n) {
  return load_partial<Packet>(p, n);
}

// ---- reductions ----

/// Whether the target reduces a decode score block in registers (reduce_score_block below), so that
/// the decode kernel's register blocks pay off (forward/decode_blocks.hpp): AVX-512 (4 x 4 blocks)
/// and AVX2 (2 x 4).
constexpr bool kBlockedDecodeTarget = ATTEND_ARCH_AVX512 || ATTEND_ARCH_AVX2;

/// The R x 4 accumulators of a decode score block, acc[r][c] (row r, key c, partial sums along the
/// lanes), reduced to scores s[r * lds + c] for rows r < RB, times `scale` unless it is 1.
template <int RB, typename Packet, int R>
EIGEN_ALWAYS_INLINE void reduce_score_block(Packet (&acc)[R][4], typename Eigen::internal::unpacket_traits<Packet>::type scale,
                                            typename Eigen::internal::unpacket_traits<Packet>::type* s, Index lds) {
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Packet, __m512> && R == 4) {
    avx512::store_score_block<RB>(acc, scale, s, lds);
    return;
  }
#endif
#if ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Packet, __m256> && R == 2) {
    avx2::store_score_block<RB>(acc, scale, s, lds);
    return;
  }
#endif
  using Scalar = typename Eigen::internal::unpacket_traits<Packet>::type;
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < 4; ++c) {
      const Scalar x = Eigen::internal::predux(acc[r][c]);
      s[r * lds + c] = scale != Scalar(1) ? x * scale : x;
    }
}

// ---- registers, stores, prefetch ----

/// Pins four loaded packets in registers, so that the compiler does not fold one load into several
/// instructions as a memory operand (arch/avx512.hpp says why; a no-op where that does not happen).
template <typename Packet>
EIGEN_ALWAYS_INLINE void keep_in_registers([[maybe_unused]] Packet& a, [[maybe_unused]] Packet& b,
                                           [[maybe_unused]] Packet& c, [[maybe_unused]] Packet& d) {
#if ATTEND_ARCH_AVX512
  if constexpr (std::is_same_v<Packet, __m512>) avx512::keep_in_registers(a, b, c, d);
#endif
#if ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Packet, __m256>) {
    avx2::keep_in_registers(a), avx2::keep_in_registers(b);
    avx2::keep_in_registers(c), avx2::keep_in_registers(d);
  }
#endif
}
/// x, pinned in a register (the micro-kernel's B packets where FmaOps::kPinB).
template <typename Packet>
EIGEN_ALWAYS_INLINE Packet in_register(Packet x) {
#if ATTEND_ARCH_AVX2
  if constexpr (std::is_same_v<Packet, __m256>) avx2::keep_in_registers(x);
#endif
  return x;
}

/// Orders a worker's non-temporal stores before whatever tells another thread that it is done.
EIGEN_ALWAYS_INLINE void stream_fence() {
#if ATTEND_ARCH_AVX512 || ATTEND_ARCH_AVX2
  _mm_sfence();
#endif
}

/// Keeps the compiler's instruction scheduler from moving code across this point: arch/neon.hpp says
/// why the micro-kernel's lane steps need it there. Elsewhere a no-op: x86 loads fold into the FMAs.
EIGEN_ALWAYS_INLINE void schedule_fence() {
#if ATTEND_ARCH_NEON
  neon::schedule_fence();
#endif
}

/// Requests the cache line at p into L2 (prefetcht1 on x86; a plain prefetch elsewhere).
EIGEN_ALWAYS_INLINE void prefetch_l2(const void* p) {
#if defined(__SSE__) || defined(_M_X64)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#else
  Eigen::internal::prefetch(static_cast<const char*>(p));
#endif
}

}  // namespace detail
ATTEND_END_NAMESPACE

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTEND_DETAIL_ARCH_PRIMITIVES_HPP
