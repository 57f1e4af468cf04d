#ifndef ATTEND_DETAIL_ARCH_ISA_HPP
#define ATTEND_DETAIL_ARCH_ISA_HPP

// The instruction set this translation unit's kernels are compiled for, read from the macros Eigen
// sets from the compiler's target flags (Eigen/src/Core/util/ConfigureVectorization.h): Eigen picks
// one packet family per translation unit, and attend's kernels are written over Eigen's packets, so
// theirs is the same.
//
//   ATTEND_ISA             a token naming the instruction set, pasted into the ABI tag (abi.hpp)
//   ATTEND_ISA_NAME        the same as a string literal ("avx512_bf16", "avx2", "neon", ...)
//   ATTEND_ARCH_AVX512     1 where the AVX-512 forms of the primitives (arch/avx512.hpp) are used
//   ATTEND_ARCH_AVX2       1 where the AVX2 forms (arch/avx2.hpp) are: AVX2, FMA and F16C (x86-64-v3)
//                          without AVX-512
//   ATTEND_HAVE_BF16_DOT   1 where bf16 products run on AVX512_BF16's vdpbf16ps (arch/avx512_bf16.hpp)
//   ATTEND_HAVE_AMX_BF16   1 where bf16 products may also run on AMX tiles (arch/amx.hpp): AVX512_BF16
//                          with AMX-TILE and AMX-BF16 (-march=sapphirerapids, -march=native there)
//   ATTEND_ARCH_NEON       1 where the AArch64 NEON forms (arch/neon.hpp) are: Eigen's NEON packets
//                          (not SVE's) with fused multiply-adds on AArch64
//
// Every name distinguishes code that differs: two translation units with the same name compile
// attend's inline functions to the same instructions, and two with different names to different
// symbols (abi.hpp).

#include <Eigen/Core>

#if defined(EIGEN_VECTORIZE_AVX512)
#define ATTEND_ARCH_AVX512 1
#else
#define ATTEND_ARCH_AVX512 0
#endif

#if !ATTEND_ARCH_AVX512 && defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA) && defined(__F16C__)
#define ATTEND_ARCH_AVX2 1
#else
#define ATTEND_ARCH_AVX2 0
#endif

#if ATTEND_ARCH_AVX512 && defined(__AVX512BF16__) && defined(__AVX512BW__)
#define ATTEND_HAVE_BF16_DOT 1
#else
#define ATTEND_HAVE_BF16_DOT 0
#endif

#if ATTEND_HAVE_BF16_DOT && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define ATTEND_HAVE_AMX_BF16 1
#else
#define ATTEND_HAVE_AMX_BF16 0
#endif

#if defined(EIGEN_VECTORIZE_NEON) && !defined(EIGEN_VECTORIZE_SVE) && defined(__aarch64__) && \
    defined(__ARM_FEATURE_FMA)
#define ATTEND_ARCH_NEON 1
#else
#define ATTEND_ARCH_NEON 0
#endif

// x86: the x86-64 levels (v4 = AVX-512 F, BW, DQ, VL, CD; v3 = AVX2, FMA; v2 = SSE4.2) and what lies
// between them; everything else by Eigen's packet family.
#if ATTEND_HAVE_AMX_BF16
#define ATTEND_ISA avx512_bf16_amx
#elif ATTEND_HAVE_BF16_DOT
#define ATTEND_ISA avx512_bf16
#elif ATTEND_ARCH_AVX512 && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define ATTEND_ISA avx512
#elif ATTEND_ARCH_AVX512
#define ATTEND_ISA avx512f
#elif ATTEND_ARCH_AVX2
#define ATTEND_ISA avx2
#elif defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA)
#define ATTEND_ISA avx2_nof16c
#elif defined(EIGEN_VECTORIZE_AVX2)
#define ATTEND_ISA avx2_nofma
#elif defined(EIGEN_VECTORIZE_AVX) && defined(EIGEN_VECTORIZE_FMA)
#define ATTEND_ISA avx_fma
#elif defined(EIGEN_VECTORIZE_AVX)
#define ATTEND_ISA avx
#elif defined(EIGEN_VECTORIZE_SSE4_2)
#define ATTEND_ISA sse4_2
#elif defined(EIGEN_VECTORIZE_SSE4_1)
#define ATTEND_ISA sse4_1
#elif defined(EIGEN_VECTORIZE_SSSE3)
#define ATTEND_ISA ssse3
#elif defined(EIGEN_VECTORIZE_SSE3)
#define ATTEND_ISA sse3
#elif defined(EIGEN_VECTORIZE_SSE2)
#define ATTEND_ISA sse2
#elif defined(EIGEN_VECTORIZE_SVE)
#define ATTEND_ISA sve
#elif defined(EIGEN_VECTORIZE_NEON) && defined(EIGEN_HAS_ARM64_FP16_VECTOR_ARITHMETIC) && \
    EIGEN_HAS_ARM64_FP16_VECTOR_ARITHMETIC
#define ATTEND_ISA neon_fp16
#elif defined(EIGEN_VECTORIZE_NEON)
#define ATTEND_ISA neon
#elif defined(EIGEN_VECTORIZE_VSX)
#define ATTEND_ISA vsx
#elif defined(EIGEN_VECTORIZE_ALTIVEC)
#define ATTEND_ISA altivec
#elif defined(EIGEN_VECTORIZE_ZVECTOR)
#define ATTEND_ISA zvector
#elif defined(EIGEN_VECTORIZE_MSA)
#define ATTEND_ISA msa
#elif defined(EIGEN_VECTORIZE)
#define ATTEND_ISA vectorized
#else
#define ATTEND_ISA scalar
#endif

#define ATTEND_ISA_STR_(x) #x
#define ATTEND_ISA_STR(x) ATTEND_ISA_STR_(x)
#define ATTEND_ISA_NAME ATTEND_ISA_STR(ATTEND_ISA)

#endif  // ATTEND_DETAIL_ARCH_ISA_HPP
