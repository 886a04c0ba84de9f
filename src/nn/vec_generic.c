/* The portable build of vec_impl.h: whatever the baseline instruction set gives (SSE2 on
 * x86-64). Used with the generic GEMM, and where the CPU has neither AVX2 + FMA nor
 * AVX-512. */
#define VEC_NAME vec_generic
#define VEC_ISA "generic"
#include "nn/vec_impl.h"
