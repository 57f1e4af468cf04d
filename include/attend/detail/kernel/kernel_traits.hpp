#ifndef ATTEND_DETAIL_KERNEL_KERNEL_TRAITS_HPP
#define ATTEND_DETAIL_KERNEL_KERNEL_TRAITS_HPP

// Every compile-time tiling constant of the kernels, derived in one place from the target's SIMD
// width and register count, with the constraints checked beside each number (FlashAttention's
// kernel_traits.h):
//   TileTraits          the tiles of the flash and mem_efficient paths (queries and keys per tile)
//   RegisterBlocking    the micro-kernel's register block for a multiply-add policy
//   DecodeTraits        the split-KV decode kernel: when it serves a call, its splits and chunks

#include <cstddef>  // std::size_t

#include "attend/detail/abi.hpp"
#include "attend/detail/arch/primitives.hpp"
#include "attend/tensor.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

struct TileTraits {
  /// Queries per tile (Br). The query index runs along the SIMD lanes of the score product (scores
  /// are kept transposed, keys by queries), so the row max, the exp and the row sum of the online
  /// softmax are vertical vector operations with no horizontal reductions. 64 queries fill four
  /// AVX-512 float packets, and a tile's transposed Q (D x 64 floats: 16 KiB at D = 64) stays in L1.
  static constexpr int kBlockQ = 64;

  /// Keys per tile (Bc). The score tile S^T (Bc x Br floats) is 16 KiB at 64, so Q^T, S^T and the
  /// output accumulator (D, Bc and Dv times 64 floats) together take 48 KiB at D = Dv = 64: Zen 5's
  /// and Sapphire Rapids' L1D (Zen 4 has 32 KiB, so there one of them lives in L2 and the long shapes
  /// still reach 0.82-0.84 of the FMA peak). Larger tiles amortise the per-tile rescale of O but spill
  /// the score tile to L2.
  static constexpr int kBlockK = ATTEND_KERNEL_BLOCK_K;
  static_assert(kBlockK >= 1, "ATTEND_KERNEL_BLOCK_K must be positive");

  /// Outputs of at least this many bytes are written with non-temporal stores (output_is_streamed):
  /// 32 MiB is the L3 of one Zen 4 CCD and more than most chips' L3 per socket slice, so such an
  /// output leaves the caches before a consumer reads it anyway.
  static constexpr std::size_t kStreamOutputBytes = std::size_t(32) << 20;

  /// Largest D or Dv the tiled paths (flash, mem_efficient) take: a worker's scratch grows as 64 · (D +
  /// Dv) values, 0.5 MiB at 1024. Larger heads (the cross-covariance attention of Mel-RoFormer has D =
  /// T·F, tens of thousands) are better served by the math path's blocked GEMMs. The public name is
  /// attend::Attend::kMaxTiledHeadDim.
  static constexpr Index kMaxHeadDim = 1024;

  /// Scratch alignment in bytes: a cache line, and enough for aligned loads of any packet.
  static constexpr std::size_t kAlign = 64;
  static_assert(kBlockQ * sizeof(float) % kAlign == 0, "a row of a packed tile must keep the next row aligned");
};

/// The register block of the micro-kernel (kernel/microkernel.hpp) for a multiply-add policy Ops
/// (arch/primitives.hpp: FmaOps, Bf16PairOps): kRegM rows by kRegN packets of accumulators.
template <class Ops>
struct RegisterBlocking {
  static constexpr int kLanes = Ops::kLanes;
  /// With 32 vector registers (AVX-512, NEON): 6 x 4 = 24 accumulators, 4 B-packets and a broadcast.
  /// With 16 and a fused multiply-add (AVX2): 6 x 2 = 12 accumulators, 2 B-packets and a broadcast,
  /// 15 registers (BLIS's Haswell sgemm block). Per step of k it loads 2 packets and broadcasts 6
  /// values for 12 FMAs, where the 2 x 4 block below loads 4 and broadcasts 2 for 8, and its 8
  /// chains only just cover the FMA's latency (4 cycles at 2 per cycle). One Sapphire Rapids
  /// thread at x86-64-v3: a flash tile's two products (64 queries, D = Dv = 64, 4096 keys
  /// streamed) reach 0.62-0.64 of the FMA peak with 2 x 4 and 0.76 with 6 x 2; flash f32 long4k
  /// 0.40-0.46 and 0.58-0.60 (attend_bench, the AVX2 primitives included).
  /// With 16 and a multiply and an add (SSE): 2 x 4 = 8 accumulators; each multiply-add needs a
  /// temporary there, and 3 x 4 would need 17 registers.
  /// Each choice keeps enough independent chains to cover the multiply-add's latency
  /// (Ops::kMinChains), and every accumulator is the same chain over k whatever the block, so the
  /// blocking never changes a result's bits.
  static constexpr bool kWide = Ops::kRegisters >= 32;
  static constexpr int kRegN = kWide ? 4 : Ops::kFusedMadd ? 2 : 4;
  static constexpr int kRegM = kWide ? 6 : Ops::kFusedMadd ? 6 : 2;
  static constexpr int kTemporaries = Ops::kFusedMadd ? 0 : 1;  // the product before its add
  static_assert(kRegM * kRegN + kRegN + 1 + kTemporaries <= Ops::kRegisters,
                "accumulators, B packets, a broadcast (and a product) must fit in registers");
  static_assert(kRegM * kRegN >= Ops::kMinChains, "too few independent chains to hide the multiply-add's latency");

  /// Columns one micro-kernel call covers; a panel of TileTraits::kBlockQ columns is kColBlocks of
  /// them (with 4-lane packets, 16 columns: 4 blocks), or one narrower block of kRegNUsed packets.
  static constexpr int kColsPerBlock = kRegN * kLanes;
  static_assert(TileTraits::kBlockQ % kColsPerBlock == 0 || kColsPerBlock > TileTraits::kBlockQ,
                "the query tile must be a whole number of micro-kernel column blocks");
  static_assert(TileTraits::kBlockQ % kLanes == 0, "the query tile must be a whole number of packets");
  static constexpr int kColBlocks = kColsPerBlock > TileTraits::kBlockQ ? 1 : TileTraits::kBlockQ / kColsPerBlock;
  static constexpr int kRegNUsed = kColsPerBlock > TileTraits::kBlockQ ? TileTraits::kBlockQ / kLanes : kRegN;
};

/// The AMX tiles of the flash forward's AmxTiles policy (kernel/products.hpp, arch/amx.hpp). A tile
/// register holds 16 rows of 64 bytes: a C tile is 16 x 16 fp32, an A or B tile 16 rows of 16 bf16
/// pairs, so a tdpbf16ps reduces over 32 values (d for the scores, keys for the values). Operands are
/// zero-padded to whole tiles instead of configuring partial ones, so one configuration serves all.
struct AmxTraits {
  static constexpr int kTileRows = 16;   ///< keys of an S^T tile, dv of an O^T tile
  static constexpr int kTileCols = 16;   ///< queries of a C tile (16 fp32 = 64 bytes)
  static constexpr int kTilePairs = 16;  ///< pairs a tile reduces over: 32 d, or 32 keys
  /// The products take C tiles two query tiles at a time (amx::gemm's 2 x 2 blocks): 64 queries are 2
  /// such pairs.
  static_assert(TileTraits::kBlockQ % (2 * kTileCols) == 0, "the query tile must be whole pairs of 16-query C tiles");
  /// S^T's last 16-key C tile must end inside the score tile (Bc x Br floats), which it overwrites.
  /// Otherwise (an ATTEND_KERNEL_BLOCK_K that is not a multiple of 16) the kernel is not offered.
  static constexpr bool kFits = TileTraits::kBlockK % kTileRows == 0;
  /// Key pairs of a key tile padded to whole reduction steps: the rows of Pp and the columns of V^T
  /// by pairs (32 at Bc = 64: two steps).
  static constexpr Index kKeyPairs = ((TileTraits::kBlockK + 1) / 2 + kTilePairs - 1) / kTilePairs * kTilePairs;
  static_assert(kKeyPairs % kTilePairs == 0 && 2 * kKeyPairs >= TileTraits::kBlockK, "whole steps over a key tile");
  /// Head dimensions padded to whole tiles: d to whole reduction steps (32), dv to whole C tile rows.
  static constexpr Index padded_d(Index D) { return (D + 2 * kTilePairs - 1) / (2 * kTilePairs) * (2 * kTilePairs); }
  static constexpr Index padded_dv(Index Dv) { return (Dv + kTileRows - 1) / kTileRows * kTileRows; }
};

/// The backward's work decomposition (backward/flash.hpp). An item computes dk and dv of a range of
/// keys of one (b, kv head) completely, looping over all its query heads and query tiles, and adds its
/// share of each query tile's dq in the split order (parallel.hpp, in_turn).
struct GradTraits {
  /// Items a call aims for, at least, by splitting the keys: enough for 16 threads with room to
  /// balance. Calls with at least this many (b, kv head) pairs are not split (bsr_time has 496), so
  /// they need no dq accumulator and no ordered adds.
  static constexpr Index kMinItems = 32;
  /// A worker's scratch holds its split's K, V, dK and dV rows in fp32 (padded to whole column blocks):
  /// at most this many bytes, which bounds a split's length for wide heads (256 keys at D = Dv = 1024).
  static constexpr std::size_t kSplitBytes = std::size_t(4) << 20;
};

/// The split-KV decode kernel (forward/decode.hpp). `blocked` is whether the target has its register
/// blocks of scores and values (forward/decode_blocks.hpp, shapes below: AVX-512 and AVX2 float
/// accumulation); elsewhere it is the row-at-a-time form.
struct DecodeTraits {
  /// Queries per head (Nq) up to which a call takes this kernel, whatever Hq/Hkv: both kernels'
  /// costs grow with the number of query heads, so the choice depends on Nq and the head sizes only.
  /// A 64-query tile costs the same for 1 query as for 64; this kernel's cost grows with Nq.
  ///
  /// Blocked: Nq <= 8 + (D + Dv) / 8, at most 32. It costs 4.5 ns per (query row, key) at D = Dv =
  /// 16 and 8.4 at 128, one Zen 4 thread. Measured crossovers against the tiles (Hq 8, Hkv 2, Nk 1200,
  /// bottom_right): Nq 12-16 at D = Dv = 16, 16-24 at 32, 24-32 at 64, 32-40 at 128, 40-48 at 256. At
  /// the limit the kernel is 11-20% faster than the tiles (D = 16: 506 against 569 us; 64: 1249
  /// against 1669; 128: 2544 against 3147).
  ///
  /// Row at a time: Nq <= (D + Dv) / 8, at most 24. It costs 9-11 ns per (query row, key), almost
  /// whatever D; crossovers Nq 4-8 at D = Dv = 16, 24-28 at 64, 28-32 at 128 (Hq 8 or 32, Hkv 2 or 8
  /// alike).
  static constexpr Index kHeadDimsPerQuery = 8;
  static constexpr Index kBlockedBaseQueries = 8;
  static constexpr Index kBlockedMaxQueries = 32;
  static constexpr Index kMaxQueries = 24;
  /// Keys per split: 512 keys of D = 128 floats are 256 KiB of K and V, a few microseconds of
  /// streaming, so a 4096-key cache gives 8 items per kv head to spread over threads, and the merge
  /// (a few multiply-adds per row and split) stays negligible.
  static constexpr Index kSplitKeys = 512;
  /// Keys scored at a time: the exp and the max run over one packet of 16 scores per row.
  static constexpr Index kChunk = 16;
  /// How far ahead K and V rows are requested (prefetcht1). The kernel streams K and V once, so it
  /// waits on memory unless loads are in flight ahead of it; at (Hkv 8, Nk 4096, D 128, 4 rows) on
  /// one Zen 4 thread, from DRAM:
  ///   no prefetch                                                    112-118 ns per key
  ///   16 keys' rows (256 lines) in one burst per chunk, 64 keys ahead  88-92
  ///   the same with prefetcht0 or prefetchnta                          121-125
  ///   4 keys' rows (64 lines) before each 4-key score block, 64 ahead  70-72
  ///   the same, 32 or 128 keys ahead                                   71-83
  /// A burst of 256 prefetches fills the core's miss buffers and stalls everything behind it;
  /// spread over the chunk's four score blocks they overlap with the products. With K and V in
  /// cache the kernel takes 32 ns per key, so the rest is memory.
  static constexpr Index kPrefetchKeys = 64;
  static_assert(kChunk % 4 == 0, "a chunk is whole 4-key score blocks");

  /// The blocked kernel's register blocks (forward/decode_blocks.hpp), by the target's registers.
  /// Score block: up to kScoreRows query rows by 4 keys of accumulators, plus the 4 key packets and
  /// a query packet: 4 x 4 + 5 = 21 of 32 registers (AVX-512), 2 x 4 + 5 = 13 of 16 (AVX2; 4 x 4
  /// would spill). Value block: 4 rows by kValuePackets packets of Dv, plus the value packets and a
  /// broadcast: 4 x 4 + 5 = 21 of 32, 4 x 2 + 3 = 11 of 16.
  static constexpr int kRegisters = FmaOps<float>::kRegisters;
  static constexpr int kScoreRows = kRegisters >= 32 ? 4 : 2;
  static constexpr int kValueRows = 4;
  static constexpr int kValuePackets = kRegisters >= 32 ? 4 : 2;
  static_assert(kScoreRows * 4 + 4 + 1 <= kRegisters, "a score block must fit in registers");
  static_assert(kValueRows * kValuePackets + kValuePackets + 1 <= kRegisters, "a value block must fit in registers");
};

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_KERNEL_TRAITS_HPP
