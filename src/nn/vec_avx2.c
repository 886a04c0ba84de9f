/* The AVX2 + FMA build of vec_impl.h (compiled with -mavx2 -mfma on x86-64), used with the
 * avx2 and wide16 GEMM builds. Elsewhere this file compiles to nothing. */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define VEC_NAME vec_avx2
#define VEC_ISA "avx2"
#include "nn/vec_impl.h"
#endif
