/* The AVX2 + FMA build of gemm_impl.h (compiled with -mavx2 -mfma on x86-64): 8-wide
 * vectors, a 6×16 tile in 12 of the 16 ymm registers, B panels of 256×16 floats (16 KiB,
 * half an L1). Elsewhere this file compiles to nothing and the backend is not offered. */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define GEMM_NAME gemm_avx2
#define GEMM_WS_NAME gemm_avx2_ws
#define GEMV_NAME gemv_avx2
#define VW 8
#define KC 256
#include "nn/gemm_impl.h"
#endif
