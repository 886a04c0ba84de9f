/* The AVX-512 build of vec_impl.h (compiled with -mavx512f -mavx512dq -mavx512vl -mavx2
 * -mfma on x86-64), used with the avx512 GEMM build. Elsewhere this file compiles to
 * nothing. */
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512DQ__) &&                  \
    defined(__AVX512VL__)
#define VEC_NAME vec_avx512
#define VEC_ISA "avx512"
#include "nn/vec_impl.h"
#endif
