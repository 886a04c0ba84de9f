/* The AVX-512 build's source (gemm_impl.h with 16-wide vectors, 8×32 tiles, KC = 256)
 * compiled for AVX2 + FMA: the compiler splits each 16-wide operation in two. It is never
 * the default and never faster than gemm_avx2.c; it exists so that the 8×32 tiling, its
 * packing and its edges are tested (against the reference and bit for bit against the
 * AVX2 build) on machines without AVX-512, where gemm_avx512.c cannot run. */
#if defined(__x86_64__)
/* GCC warns that 64-byte vectors passed without AVX-512 use another calling convention
 * than with it: true, and harmless here, where they never cross this file. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
/* One copy of the tile code where the other builds inline one per epilogue or row count
 * (GCC takes minutes over 16-wide vectors split for AVX2): the same arithmetic in every
 * copy, and this build's speed does not matter. */
#define GEMM_ONE_COPY 1
#define GEMM_NAME gemm_wide16
#define GEMM_WS_NAME gemm_wide16_ws
#define GEMV_NAME gemv_wide16
#define VW 16
#define KC 256
#include "nn/gemm_impl.h"
#endif
