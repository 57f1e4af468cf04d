#ifndef ATTEND_DETAIL_KERNEL_TRAITS_HPP
#define ATTEND_DETAIL_KERNEL_TRAITS_HPP

// Compile-time tiling of the flash and mem_efficient kernels, derived in one place from the SIMD
// width and register count of the target, with the constraints checked beside each number.

#include <cstddef>  // std::size_t

#include <Eigen/Core>

#include "attend/tensor.hpp"

/// Keys per tile (see KernelTraits::kBlockK). A tuning knob for benchmarking only, not part of the API.
#ifndef ATTEND_KERNEL_BLOCK_K
#define ATTEND_KERNEL_BLOCK_K 64
#endif

/// Unrolls the next loop completely: loops over a register block's rows and packets, so that the
/// accumulator arrays they index stay in registers. GCC 12 peels at most 16 iterations on its own
/// (max-completely-peel-times), and a 6 x 4 block has 24: it then kept the accumulators on the stack,
/// about 100 extra loads and stores per block of 1500 multiply-adds.
#if defined(__clang__)
#define ATTEND_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define ATTEND_UNROLL _Pragma("GCC unroll 16")
#else
#define ATTEND_UNROLL
#endif

/// Forces a lambda to be inlined: `[&](auto r) ATTEND_INLINE_LAMBDA { ... }`. The register-block
/// drivers (for_register_rows) hand each block to a lambda, and GCC 12 otherwise keeps the full
/// block's lambda as a call: its captures then come through a pointer, 1.5% of a 62-query tile.
#if defined(__GNUC__) || defined(__clang__)
#define ATTEND_INLINE_LAMBDA __attribute__((always_inline))
#else
#define ATTEND_INLINE_LAMBDA
#endif

namespace attend {
namespace detail {

template <typename Acc>
struct KernelTraits {
  /// Eigen's widest packet for Acc on this target: Packet16f with AVX-512, Packet8f with AVX2,
  /// Packet4f with SSE or NEON (and the double counterparts).
  using Packet = typename Eigen::internal::packet_traits<Acc>::type;
  static constexpr int kLanes = Eigen::internal::unpacket_traits<Packet>::size;

  /// Queries per tile (Br). The query index runs along the SIMD lanes of both products (scores are
  /// kept transposed, keys by queries), so the row max, the exp and the row sum of the online
  /// softmax are vertical vector operations with no horizontal reductions. 64 queries fill four
  /// AVX-512 float packets, and a tile's transposed Q (D x 64 floats: 16 KiB at D = 64) stays in L1.
  static constexpr int kBlockQ = 64;
  static_assert(kBlockQ % kLanes == 0, "the query tile must be a whole number of packets");

  /// Keys per tile (Bc). The score tile S^T (Bc x Br floats) is 16 KiB at 64, so Q^T, S^T and the
  /// output accumulator (D, Bc and Dv times 64 floats) together take 48 KiB at D = Dv = 64: Zen 5's and Sapphire
  /// Rapids' L1D (Zen 4 has 32 KiB, so there one of them lives in L2 and the long shapes still reach
  /// 0.82-0.84 of the FMA peak). Larger tiles amortise the per-tile rescale of O but spill the score
  /// tile to L2.
  static constexpr int kBlockK = ATTEND_KERNEL_BLOCK_K;
  static_assert(kBlockK >= 1, "ATTEND_KERNEL_BLOCK_K must be positive");

  /// Register blocking of the micro-kernel: kRegM rows by kRegN packets of accumulators.
  /// With 32 vector registers (AVX-512, NEON): 6 x 4 = 24 accumulators, 4 B-packets and a broadcast.
  /// With 16 (AVX2, SSE): 2 x 4 = 8 accumulators (3 x 4 would need 17 registers). Either way there
  /// are at least 8 independent FMA chains, enough to cover 2 FMA ports x 4 cycles of latency.
  static constexpr int kRegisters = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;
  static constexpr int kRegN = 4;
  static constexpr int kRegM = kRegisters >= 32 ? 6 : 2;
  static_assert(kRegM * kRegN + kRegN + 1 <= kRegisters, "accumulators, B packets and a broadcast must fit in registers");
  static_assert(kRegM * kRegN >= 8, "too few independent FMA chains to hide FMA latency");
  static constexpr int kColsPerBlock = kRegN * kLanes;  ///< queries one micro-kernel call covers
  static_assert(kBlockQ % kColsPerBlock == 0 || kColsPerBlock > kBlockQ,
                "the query tile must be a whole number of micro-kernel column blocks");
  static constexpr int kColBlocks = kColsPerBlock > kBlockQ ? 1 : kBlockQ / kColsPerBlock;
  static constexpr int kRegNUsed = kColsPerBlock > kBlockQ ? kBlockQ / kLanes : kRegN;

  /// Query chunk of the mem_efficient path: the same width as a flash query tile, so both paths
  /// share the micro-kernels; its scores take Nk x 64 Acc values per worker.
  static constexpr int kChunkQ = kBlockQ;

  /// Outputs of at least this many bytes are written with non-temporal stores (tiles.hpp,
  /// output_is_streamed): 32 MiB is the L3 of one Zen 4 CCD and more than most chips' L3 per socket
  /// slice, so such an output leaves the caches before a consumer reads it anyway.
  static constexpr std::size_t kStreamOutputBytes = std::size_t(32) << 20;

  /// Scratch alignment in bytes: a cache line, and enough for aligned packet loads.
  static constexpr int kAlign = 64;
  static_assert(kAlign % (kLanes * static_cast<int>(sizeof(Acc))) == 0 || kLanes * sizeof(Acc) > 64,
                "scratch rows must stay packet-aligned");
};

}  // namespace detail
}  // namespace attend

#endif  // ATTEND_DETAIL_KERNEL_TRAITS_HPP
