/* The AVX-512 build of gemm_impl.h (compiled with -mavx512f -mfma on x86-64): 16-wide
 * vectors, an 8×32 tile in 16 of the 32 zmm registers, B panels of at most 256×32 floats
 * (32 KiB; k blocks are balanced, so the demo's 784 inputs go as 4 × 196, 25 KiB: fewer
 * tile loads and stores, and fewer barriers between threads, than 128-deep blocks).
 * Elsewhere this file compiles to nothing and the backend is not offered. */
#if defined(__x86_64__) && defined(__AVX512F__)
#define GEMM_NAME gemm_avx512
#define GEMM_WS_NAME gemm_avx512_ws
#define GEMV_NAME gemv_avx512
#define VW 16
#define KC 256
#include "nn/gemm_impl.h"
#endif
