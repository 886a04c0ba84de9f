/* The portable build of gemm_impl.h: 4-wide vectors (SSE2 on x86-64, NEON on arm64), a
 * 6×8 tile. Used when the CPU has neither AVX2 + FMA nor AVX-512. */
#define GEMM_NAME gemm_generic
#define GEMM_WS_NAME gemm_generic_ws
#define GEMV_NAME gemv_generic
#define VW 4
#define KC 256
#include "nn/gemm_impl.h"
