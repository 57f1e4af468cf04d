#ifndef ATTEND_DETAIL_MACROS_HPP
#define ATTEND_DETAIL_MACROS_HPP

// attend's macros, all of them: compiler portability and the one tuning knob. The instruction-set
// macros live in arch/isa.hpp, the namespace macros in abi.hpp.

/// Keys per tile (KernelTraits::kBlockK). A tuning knob for benchmarking, not part of the API. It
/// changes every scratch size, so it is part of the ABI tag (abi.hpp): it must be a plain integer
/// literal, since the tag pastes it into the namespace name.
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

#endif  // ATTEND_DETAIL_MACROS_HPP
