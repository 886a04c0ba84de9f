/* gemm_impl.h: the packed, register-tiled GEMM, written once and compiled once per
 * instruction set (gemm_avx512.c, gemm_avx2.c, gemm_generic.c each define GEMM_NAME, VW,
 * KC and include this file; kernels.c picks one at run time). See gemm.h for the contract.
 *
 * Structure of the general product (the Goto/BLIS scheme, simplified to what a dense
 * layer needs):
 *   for each k block of the summed dimension (at most KC deep, of equal depths), in
 *   increasing order:
 *     1. when op(A)'s rows make several groups of MC (a large batch, a wide layer's
 *        weight gradient): pack all of op(A)[:, block] into slivers of MR rows, k-major
 *        ([p][r]), in the caller's workspace (threads share it; zero rows pad the last
 *        sliver). Fewer rows are read in place, with no barrier between the threads;
 *     2. the output is a fixed grid of work items, one NR-wide column panel by MC rows;
 *        a thread takes whole items, packs the item's kc×NR panel of op(B) on its stack
 *        (zero columns pad the edge), where it stays in L1, and runs the MR×NR micro-kernel
 *        down the item's slivers, whose A data streams from L2.
 * The micro-kernel keeps an MR×NR tile of C in 2·MR vector registers: per step p it loads
 * two vectors of B, broadcasts MR values of A and issues 2·MR fused multiply-adds.
 * Shapes where packing or padding would cost more than it saves take other routes with
 * the same per-element arithmetic: a narrow output (n ≤ VW: gemm_narrow), a short product
 * (m ≤ SR rows against an unpacked B: gemm_short), a short sum (k ≤ KSHORT: operands
 * read in place).
 *
 * Padding makes every tile a full computation; only the loads and stores of C at the
 * edges are partial. Each element of C sums its k terms in increasing k, one fused
 * multiply-add each, from the same start, wherever it lies, whichever path, tile shape
 * or thread computes it: results are bit-identical for any thread count, and across the
 * builds (whose tiles differ). Epilogues (bias, activation, activation derivative) run in
 * registers before the final store. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nn/activation.h"
#include "nn/gemm.h"
#include "nn/kernels.h"

/* MR×NR register tiles: 2·MR accumulators, two vectors of B and a broadcast. AVX-512's 32
 * registers take 8 rows (a batch of 32 or 128 is whole tiles); 16 registers take 6.
 * SR: the most rows of a short product's tile (gemm_short), also two vectors wide. */
enum { MR = VW == 16 ? 8 : 6, NR = 2 * VW, MC = (256 + MR - 1) / MR * MR, SR = VW == 16 ? 12 : 6 };
enum { TR = SR > MR ? SR : MR }; /* the rows a struct tile holds */
enum { KSHORT = 16 };            /* a sum this short reads its operands in place */
/* kernels.c cuts weight-gradient rows at multiples of the row tile (overlap buckets). */
_Static_assert((int)KERNEL_ROW_TILE % (int)MR == 0, "row chunks are whole tiles");

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(float))));

static inline vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* x − 0 is x for every x (−0 included), so this folds to a plain broadcast; x + 0 would
 * not (−0 + 0 = +0) and costs an add per broadcast. */
static inline vf vsplat(float x) { return x - (vf){0}; }

/* Lanes where mask is all ones keep a, the others take b (mask from a comparison). */
static inline vf vselect(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }

/* A tile of C, or of any matrix with C's shape, of up to TR rows and NR columns, as two
 * vectors a row. The functions below take the tile's row count (MR, or a short product's),
 * a constant where they are inlined, so that the rows live in registers. */
struct tile {
    vf lo[TR], hi[TR];
};

/* rows rows from p (ld apart): the first mr of them, nr columns wide; zeros elsewhere. */
static inline void tile_load(struct tile *t, const float *p, size_t ld, size_t rows, size_t mr,
                             size_t nr)
{
    for (size_t r = 0; r < rows; r++) {
        if (r < mr && nr == NR) {
            t->lo[r] = vload(p + r * ld);
            t->hi[r] = vload(p + r * ld + VW);
        } else {
            float tmp[NR] = {0};
            if (r < mr)
                memcpy(tmp, p + r * ld, nr * sizeof(float));
            t->lo[r] = vload(tmp);
            t->hi[r] = vload(tmp + VW);
        }
    }
}

static inline void tile_store(float *p, size_t ld, const struct tile *t, size_t mr, size_t nr)
{
    for (size_t r = 0; r < mr; r++) {
        if (nr == NR) {
            vstore(p + r * ld, t->lo[r]);
            vstore(p + r * ld + VW, t->hi[r]);
        } else {
            float tmp[NR];
            vstore(tmp, t->lo[r]);
            vstore(tmp + VW, t->hi[r]);
            memcpy(p + r * ld, tmp, nr * sizeof(float));
        }
    }
}

/* g ⊙ f'(·) for one vector, given a = f(z) (activation.h). */
static inline __attribute__((always_inline)) vf
vec_dact(vf g, vf a, enum dmlp_activation act)
{
    const vf zero = {0}, one = vsplat(1.0f), leak = vsplat(DMLP_LEAKY_SLOPE);
    switch (act) {
    case DMLP_ACT_SIGMOID: return DMLP_SIGMOID_GRAD(g, a, one);
    case DMLP_ACT_TANH: return DMLP_TANH_GRAD(g, a, one);
    case DMLP_ACT_RELU: return DMLP_RELU_GRAD(g, a, zero, vselect);
    case DMLP_ACT_LEAKY_RELU: return DMLP_LEAKY_RELU_GRAD(g, a, zero, leak, vselect);
    case DMLP_ACT_LINEAR:
    case DMLP_ACT_SOFTMAX: break;
    }
    return g;
}

/* f(z) for one vector, for the activations that are a compare and a select; the others
 * (sigmoid, tanh) are applied by the caller to the stored tile. */
static inline __attribute__((always_inline)) vf vec_act(vf z, enum dmlp_activation act)
{
    const vf zero = {0}, leak = vsplat(DMLP_LEAKY_SLOPE);
    if (act == DMLP_ACT_RELU)
        return DMLP_RELU(z, zero, vselect);
    if (act == DMLP_ACT_LEAKY_RELU)
        return DMLP_LEAKY_RELU(z, zero, leak, vselect);
    return z;
}

/* C ⊙= f'(D), given D = f(Z). By value, element by element: a tile whose elements had
 * their addresses taken would live in memory rather than in registers. */
static inline void tile_dact(struct tile *c, const struct tile *d, size_t rows,
                             enum dmlp_activation act)
{
    for (size_t r = 0; r < rows; r++) {
        c->lo[r] = vec_dact(c->lo[r], d->lo[r], act);
        c->hi[r] = vec_dact(c->hi[r], d->hi[r], act);
    }
}

/* C = f(C) in registers, for relu and leaky_relu (vec_act). */
static inline void tile_act(struct tile *c, size_t rows, enum dmlp_activation act)
{
    for (size_t r = 0; r < rows; r++) {
        c->lo[r] = vec_act(c->lo[r], act);
        c->hi[r] = vec_act(c->hi[r], act);
    }
}

/* A tile's start: C (accumulating, or a later k block), the bias row, or zeros. */
static inline __attribute__((always_inline)) void
tile_start(struct tile *c, const float *C, size_t ldc, size_t rows, size_t mr, size_t nr,
           int first, const struct gemm_epilogue *e, size_t j)
{
    if (!first || e->accumulate) {
        tile_load(c, C, ldc, rows, mr, nr);
    } else if (e->bias) {
        struct tile b;
        tile_load(&b, e->bias + j, 0, 1, 1, nr);
        for (size_t r = 0; r < rows; r++) {
            c->lo[r] = b.lo[0];
            c->hi[r] = b.hi[0];
        }
    } else {
        for (size_t r = 0; r < rows; r++)
            c->lo[r] = c->hi[r] = (vf){0};
    }
}

/* A tile's end: the epilogue (mode: the product's after its last k block, else
 * GEMM_EPI_NONE; act: its activation), and the store of the tile's mr × nr part. */
static inline __attribute__((always_inline)) void
tile_finish(float *C, size_t ldc, struct tile *c, size_t rows, size_t mr, size_t nr,
            enum gemm_epi_mode mode, enum dmlp_activation act, const struct gemm_epilogue *e,
            size_t i, size_t j)
{
    if (mode == GEMM_EPI_ACT) {
        tile_act(c, rows, act);
    } else if (mode == GEMM_EPI_DACT) {
        struct tile d;
        tile_load(&d, e->D + i * e->ldd + j, e->ldd, rows, mr, nr);
        tile_dact(c, &d, rows, act);
    }
    tile_store(C, ldc, c, mr, nr);
}

/* One tile of rows × NR (rows: MR, or a short product's count; a constant where it is
 * inlined, so that the tile lives in registers): C (+)= Ap·Bp over kc steps, element (i,p)
 * of A at Ap[i·rs + p·cs] (packed: rs = 1, cs = MR), B's rows bs apart (NR when packed);
 * the first mr rows and nr columns are loaded and stored. first: the k block that starts
 * the sum (C starts as 0, as C, or as the bias row); mode and act: the epilogue to run
 * (GEMM_EPI_NONE but after the last k block). */
static inline __attribute__((always_inline)) void
micro_tile(float *restrict C, size_t ldc, const float *restrict Ap, size_t rs, size_t cs,
           const float *restrict Bp, size_t bs, size_t kc, size_t rows, size_t mr, size_t nr,
           int first, enum gemm_epi_mode mode, enum dmlp_activation act,
           const struct gemm_epilogue *e, size_t i, size_t j)
{
    struct tile c;
    tile_start(&c, C, ldc, rows, mr, nr, first, e, j);
    for (size_t p = 0; p < kc; p++) {
        const vf b0 = vload(Bp + p * bs), b1 = vload(Bp + p * bs + VW);
        for (size_t r = 0; r < rows; r++) {
            const vf a = vsplat(Ap[p * cs + r * rs]);
            c.lo[r] += a * b0;
            c.hi[r] += a * b1;
        }
    }
    tile_finish(C, ldc, &c, rows, mr, nr, mode, act, e, i, j);
}

/* micro_tile with the epilogue read at run time. last: the block that ends the sum. */
static inline __attribute__((always_inline)) void
micro_kernel(float *restrict C, size_t ldc, const float *restrict Ap, size_t rs, size_t cs,
             const float *restrict Bp, size_t bs, size_t kc, size_t rows, size_t mr,
             size_t nr, int first, int last, const struct gemm_epilogue *e, size_t i, size_t j)
{
    micro_tile(C, ldc, Ap, rs, cs, Bp, bs, kc, rows, mr, nr, first,
               last ? e->mode : GEMM_EPI_NONE, e->act, e, i, j);
}

/* micro_tile with its epilogue a constant in each copy, for full tiles read in place (every
 * demo product): with the epilogue chosen per row inside one copy, GCC keeps the tile and
 * its row addresses in memory around the branches, which a tile of a short sum (ten steps)
 * pays twice over. */
static inline __attribute__((always_inline)) void
micro_kernel_fixed(float *restrict C, size_t ldc, const float *restrict Ap, size_t rs,
                   size_t cs, const float *restrict Bp, size_t bs, size_t kc, size_t rows,
                   size_t mr, size_t nr, int first, int last, const struct gemm_epilogue *e,
                   size_t i, size_t j)
{
#if defined(GEMM_ONE_COPY)
    micro_kernel(C, ldc, Ap, rs, cs, Bp, bs, kc, rows, mr, nr, first, last, e, i, j);
#else
    const enum gemm_epi_mode mode = last ? e->mode : GEMM_EPI_NONE;
#define FIXED(M, F) micro_tile(C, ldc, Ap, rs, cs, Bp, bs, kc, rows, mr, nr, first, M, F, e, i, j)
    if (mode == GEMM_EPI_DACT) {
        switch (e->act) {
        case DMLP_ACT_SIGMOID: FIXED(GEMM_EPI_DACT, DMLP_ACT_SIGMOID); return;
        case DMLP_ACT_TANH: FIXED(GEMM_EPI_DACT, DMLP_ACT_TANH); return;
        case DMLP_ACT_RELU: FIXED(GEMM_EPI_DACT, DMLP_ACT_RELU); return;
        case DMLP_ACT_LEAKY_RELU: FIXED(GEMM_EPI_DACT, DMLP_ACT_LEAKY_RELU); return;
        case DMLP_ACT_LINEAR:
        case DMLP_ACT_SOFTMAX: break;
        }
    } else if (mode == GEMM_EPI_ACT) {
        switch (e->act) {
        case DMLP_ACT_RELU: FIXED(GEMM_EPI_ACT, DMLP_ACT_RELU); return;
        case DMLP_ACT_LEAKY_RELU: FIXED(GEMM_EPI_ACT, DMLP_ACT_LEAKY_RELU); return;
        default: break; /* the others are applied by the caller (tile_act) */
        }
    }
    FIXED(GEMM_EPI_NONE, DMLP_ACT_LINEAR);
#undef FIXED
#endif
}

/* micro_tile with a copy of its own for the product without an epilogue (a weight
 * gradient, and every k block but the last), the others through micro_kernel. */
static inline __attribute__((always_inline)) void
micro_kernel_plain(float *restrict C, size_t ldc, const float *restrict Ap, size_t rs,
                   size_t cs, const float *restrict Bp, size_t bs, size_t kc, size_t rows,
                   size_t mr, size_t nr, int first, int last, const struct gemm_epilogue *e,
                   size_t i, size_t j)
{
    if (!last || e->mode == GEMM_EPI_NONE)
        micro_tile(C, ldc, Ap, rs, cs, Bp, bs, kc, rows, mr, nr, first, GEMM_EPI_NONE,
                   DMLP_ACT_LINEAR, e, i, j);
    else
        micro_kernel(C, ldc, Ap, rs, cs, Bp, bs, kc, rows, mr, nr, first, last, e, i, j);
}

/* micro_kernel_plain on a tile of exactly rows rows (1 to most ≤ SR, at run time; all of
 * them loaded and stored), each row count its own inlined copy so that its rows stay in
 * registers: a short product's passes (most = SR), and the last rows of an unpacked op(A)
 * (most = MR − 1), where no read may pass row m. most is a constant where inlined: the
 * copies above it are never compiled. */
static inline __attribute__((always_inline)) void
micro_kernel_rows(float *restrict C, size_t ldc, const float *restrict Ap, size_t rs,
                  size_t cs, const float *restrict Bp, size_t bs, size_t kc, size_t rows,
                  size_t most, size_t nr, int first, int last, const struct gemm_epilogue *e,
                  size_t i, size_t j)
{
#if defined(GEMM_ONE_COPY)
    (void)most;
    micro_kernel(C, ldc, Ap, rs, cs, Bp, bs, kc, rows, rows, nr, first, last, e, i, j);
#else
    switch (rows < most ? rows : most) {
#define ROWS_CASE(R)                                                                          \
    case R:                                                                                   \
        if (R < most) {                                                                       \
            micro_kernel_plain(C, ldc, Ap, rs, cs, Bp, bs, kc, R, R, nr, first, last, e, i,   \
                               j);                                                            \
            return;                                                                           \
        }                                                                                     \
        break;
        ROWS_CASE(1)
        ROWS_CASE(2)
        ROWS_CASE(3)
        ROWS_CASE(4)
        ROWS_CASE(5)
#if VW == 16 /* SR = 12 */
        ROWS_CASE(6)
        ROWS_CASE(7)
        ROWS_CASE(8)
        ROWS_CASE(9)
        ROWS_CASE(10)
        ROWS_CASE(11)
#endif
#undef ROWS_CASE
    default:
        break;
    }
    micro_kernel_plain(C, ldc, Ap, rs, cs, Bp, bs, kc, most, most, nr, first, last, e, i, j);
#endif
}

#if VW >= 8
/* Eight floats: the transposes of pack_b work in 8×8 blocks in every build of 8 or more
 * lanes (AVX-512 has AVX2's 8-float shuffles too). */
typedef float vf8 __attribute__((vector_size(8 * sizeof(float))));

static inline vf8 vload8(const float *p)
{
    vf8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* r[q] = column q of the 8×8 block whose rows are r[0..7] (the unpack / shuffle / lane
 * permute sequence of an AVX 8×8 transpose, written with portable vector shuffles). */
static inline void transpose8(vf8 r[8])
{
    vf8 t[8], u[8];
    for (int q = 0; q < 8; q += 2) {
        t[q] = __builtin_shufflevector(r[q], r[q + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[q + 1] = __builtin_shufflevector(r[q], r[q + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int h = 0; h < 8; h += 4) {
        u[h] = __builtin_shufflevector(t[h], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[h + 1] = __builtin_shufflevector(t[h], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = __builtin_shufflevector(u[q], u[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[q + 4] = __builtin_shufflevector(u[q], u[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}
#endif

/* d[0 .. width) = s[0 .. n) and zeros (width a constant where inlined: the whole-width
 * copy is then a fixed-size one). */
static inline __attribute__((always_inline)) void
copy_padded(float *restrict d, const float *restrict s, size_t n, size_t width)
{
    if (n == width) {
        memcpy(d, s, width * sizeof(float));
        return;
    }
    memcpy(d, s, n * sizeof(float));
    memset(d + n, 0, (width - n) * sizeof(float));
}

/* Packs op(A)[i0 .. i0+MR, p0 .. p0+kc] as dst[p·MR + r], zero rows past m. */
static void pack_a(float *restrict dst, const struct gemm_operand *A, size_t m, size_t i0,
                   size_t p0, size_t kc)
{
    const size_t mr = m - i0 < MR ? m - i0 : MR;
    if (A->trans) { /* op(A)(i,p) = A[p·ld + i]: rows of the source are k steps */
        for (size_t p = 0; p < kc; p++) {
            const float *s = A->p + (p0 + p) * A->ld + i0;
            copy_padded(dst + p * MR, s, mr, MR);
        }
        return;
    }
    /* op(A)(i,p) = A[i·ld + p]: interleave MR source rows */
    size_t p = 0;
#if VW >= 8
    /* 8×8 blocks through registers (MR ≤ 8: rows past MR or m load as zeros), eight row
     * loads, a transpose, and MR floats of each column stored. */
    _Static_assert(MR <= 8, "a sliver's rows fit one 8×8 transpose");
    for (; p + 8 <= kc; p += 8) {
        vf8 r[8];
        for (size_t q = 0; q < 8; q++)
            r[q] = q < mr ? vload8(A->p + (i0 + q) * A->ld + p0 + p) : (vf8){0};
        transpose8(r);
        for (size_t q = 0; q < 8; q++)
            memcpy(dst + (p + q) * MR, &r[q], MR * sizeof(float));
    }
#endif
    for (size_t r = 0; r < MR; r++) {
        const float *s = A->p + (i0 + r) * A->ld + p0;
        for (size_t q = p; q < kc; q++)
            dst[q * MR + r] = r < mr ? s[q] : 0.0f;
    }
}

/* Packs op(B)[p0 .. p0+kc, j0 .. j0+w] as dst[p·w + c], zero columns past n (w: NR, or VW
 * for the narrow product; a constant where inlined). */
static inline __attribute__((always_inline)) void
pack_b_w(float *restrict dst, const struct gemm_operand *B, size_t n, size_t j0, size_t p0,
         size_t kc, size_t w)
{
    const size_t nr = n - j0 < w ? n - j0 : w;
    if (B->trans) { /* op(B)(p,j) = B[j·ld + p]: interleave w source rows */
        size_t p = 0;
#if VW >= 8
        /* 8×8 blocks through registers: eight row loads, a transpose, eight stores. */
        for (; w % 8 == 0 && p + 8 <= kc; p += 8)
            for (size_t c0 = 0; c0 < w; c0 += 8) {
                vf8 r[8];
                for (size_t q = 0; q < 8; q++)
                    r[q] = c0 + q < nr ? vload8(B->p + (j0 + c0 + q) * B->ld + p0 + p)
                                       : (vf8){0};
                transpose8(r);
                for (size_t q = 0; q < 8; q++)
                    memcpy(dst + (p + q) * w + c0, &r[q], sizeof r[q]);
            }
#endif
        for (size_t c = 0; c < w; c++) {
            const float *s = B->p + (j0 + c) * B->ld + p0;
            for (size_t q = p; q < kc; q++)
                dst[q * w + c] = c < nr ? s[q] : 0.0f;
        }
    } else { /* op(B)(p,j) = B[p·ld + j]: rows of the source are k steps */
        for (size_t q = 0; q < kc; q++) {
            const float *s = B->p + (p0 + q) * B->ld + j0;
            copy_padded(dst + q * w, s, nr, w);
        }
    }
}

/* Packs op(B)[p0 .. p0+kc, j0 .. j0+NR] as dst[p·NR + c], zero columns past n. */
static void pack_b(float *restrict dst, const struct gemm_operand *B, size_t n, size_t j0,
                   size_t p0, size_t kc)
{
    pack_b_w(dst, B, n, j0, p0, kc, NR);
}

/* ---- the narrow product: n ≤ VW, one vector of C per row -------------------------------- */

/* Two MR-row tiles of C of one vector each (the output layer's 10 classes fit one
 * AVX-512 vector; the wide tile would spend two thirds of its lanes on padding): 2·MR
 * accumulators, one vector of B and a broadcast per step. Each element sums the same terms
 * in the same order with the same instruction as in micro_kernel, from the same start, so
 * the two kernels give the same bits. A is read in place, rows rs apart. */
static inline __attribute__((always_inline)) void
micro_narrow(float *restrict C, size_t ldc, const float *restrict A, size_t rs,
             const float *restrict Bp, size_t kc, size_t nr, int first, int last,
             const struct gemm_epilogue *e, size_t i)
{
    struct tile c[2];
    for (int h = 0; h < 2; h++)
        tile_start(&c[h], C + h * MR * ldc, ldc, MR, MR, nr, first, e, 0);
    for (size_t p = 0; p < kc; p++) {
        const vf b0 = vload(Bp + p * VW);
        for (size_t r = 0; r < MR; r++) {
            c[0].lo[r] += vsplat(A[p + r * rs]) * b0;
            c[1].lo[r] += vsplat(A[p + (r + MR) * rs]) * b0;
        }
    }
    for (int h = 0; h < 2; h++)
        tile_finish(C + h * MR * ldc, ldc, &c[h], MR, MR, nr, last ? e->mode : GEMM_EPI_NONE,
                    e->act, e, i + h * MR, 0);
}

/* One MR-row tile of C of one vector a row, from packed slivers (rs = 1, cs = MR; zero rows
 * past m): the narrow product's last rows. The same bits as micro_narrow. */
static inline __attribute__((always_inline)) void
micro_narrow_one(float *restrict C, size_t ldc, const float *restrict Ap,
                 const float *restrict Bp, size_t kc, size_t mr, size_t nr, int first, int last,
                 const struct gemm_epilogue *e, size_t i)
{
    struct tile c;
    tile_start(&c, C, ldc, MR, mr, nr, first, e, 0);
    for (size_t p = 0; p < kc; p++) {
        const vf b0 = vload(Bp + p * VW);
        for (size_t r = 0; r < MR; r++)
            c.lo[r] += vsplat(Ap[p * MR + r]) * b0;
    }
    tile_finish(C, ldc, &c, MR, mr, nr, last ? e->mode : GEMM_EPI_NONE, e->act, e, i, 0);
}

/* The depth of the k blocks: as few blocks as KC allows, of equal depth (784 = 4 × 196,
 * not 6 × 128 + 16, whose last block would pay a tile's load and store for 16 steps).
 * A block boundary stores a partial sum to C and loads it back, which is exact: the
 * blocking never changes an element's bits. */
static inline size_t k_block(size_t k)
{
    const size_t blocks = (k + KC - 1) / KC;
    return (k + blocks - 1) / blocks;
}

/* The arguments of one product, for the functions that run its share on each thread. */
struct gemm_call {
    float *C;
    size_t ldc;
    const struct gemm_operand *A, *B;
    size_t m, n, k;
    const struct gemm_epilogue *e;
    float *ws;
};

/* C = op(A)·op(B) for n ≤ VW and A not transposed: items of 2·MR rows through
 * micro_narrow, the last m mod 2·MR rows MR at a time through micro_narrow_one (the same
 * bits either way). Every thread packs the one vector-wide panel of B for itself and keeps
 * the same items in every k block, so the blocks need no barrier between them. */
static void gemm_narrow(const struct gemm_call *g, int team)
{
    const struct gemm_operand *A = g->A;
    const size_t m = g->m, k = g->k, ldc = g->ldc, rs = A->ld;
    const size_t blocks = m / (2 * MR), rest = (m - blocks * 2 * MR + MR - 1) / MR;
    size_t lo, hi;
    gemm_share(blocks + rest, team, &lo, &hi);
    const size_t kb = k_block(k);
    for (size_t p0 = 0; p0 < k && lo < hi; p0 += kb) {
        const size_t kc = k - p0 < kb ? k - p0 : kb;
        const int first = p0 == 0, last = p0 + kc == k;
        float bp[KC * VW] __attribute__((aligned(64)));
        pack_b_w(bp, g->B, g->n, 0, p0, kc, VW); /* one vector of columns: n ≤ VW */
        for (size_t t = lo; t < hi; t++) {
            if (t < blocks) {
                const size_t i = t * 2 * MR;
                micro_narrow(g->C + i * ldc, ldc, A->p + i * rs + p0, rs, bp, kc, g->n, first,
                             last, g->e, i);
                continue;
            }
            const size_t i = blocks * 2 * MR + (t - blocks) * MR, mr = m - i < MR ? m - i : MR;
            float ap[KC * MR] __attribute__((aligned(64)));
            pack_a(ap, A, m, i, p0, kc); /* zero rows past m: no read passes row m */
            micro_narrow_one(g->C + i * ldc, ldc, ap, bp, kc, mr, g->n, first, last, g->e, i);
        }
    }
}

/* ---- the short product: m ≤ SR rows, op(B) not transposed ----------------------------- */

/* C = op(A)·op(B) for m ≤ SR and B not transposed: the weight gradient of a narrow layer
 * (m = its 10 outputs), where MR-row tiles would spend up to 3/8 of their multiply-adds on
 * padding rows and packing would copy more than the product reads. The rows go in equal
 * passes of at most SR (exact: no padding); A is read in place, and so is B, but for the
 * last column panel when it is partial, which is packed per k block. Threads take whole
 * column panels. */
static void gemm_short(const struct gemm_call *g, int team)
{
    const struct gemm_operand *A = g->A, *B = g->B;
    const size_t m = g->m, n = g->n, k = g->k, ldc = g->ldc;
    const size_t passes = (m + SR - 1) / SR, rows = (m + passes - 1) / passes;
    const size_t rs = A->trans ? 1 : A->ld, cs = A->trans ? A->ld : 1;
    /* With several passes, each reads the block of B again: 32 rows of it stay in L1 even
     * when B's row stride maps them onto a few cache sets. One pass takes the k blocks
     * every other route takes. */
    const size_t kb = passes > 1 ? 32 : k_block(k);
    size_t lo, hi;
    gemm_share((n + NR - 1) / NR, team, &lo, &hi);
    for (size_t t = lo; t < hi; t++) {
        const size_t j = t * NR, nr = n - j < NR ? n - j : NR;
        float bp[KC * NR] __attribute__((aligned(64)));
        for (size_t p0 = 0; p0 < k; p0 += kb) {
            const size_t kc = k - p0 < kb ? k - p0 : kb;
            const int first = p0 == 0, last = p0 + kc == k;
            const float *b = B->p + p0 * B->ld + j;
            size_t bs = B->ld;
            if (nr < NR) {
                pack_b(bp, B, n, j, p0, kc);
                b = bp;
                bs = NR;
            }
            for (size_t i = 0; i < m; i += rows) {
                const size_t mr = m - i < rows ? m - i : rows;
                float *c = g->C + i * ldc + j;
                const float *a = A->p + i * rs + p0 * cs;
                const struct gemm_epilogue *e = g->e;
                micro_kernel_rows(c, ldc, a, rs, cs, b, bs, kc, mr, SR, nr, first, last, e, i,
                                  j);
            }
        }
    }
}

size_t GEMM_WS_NAME(size_t m, size_t k)
{
    return (m + MR - 1) / MR * MR * (k < KC ? k : KC);
}

/* What one k block of a product is: the operands and where op(A) is read. */
struct kblock {
    float *C;
    size_t ldc, m, kc, p0, rs, cs;
    const struct gemm_operand *A;
    const float *ws;      /* the packed slivers, when packed */
    int packed, first, last;
    const struct gemm_epilogue *e;
};

/* Slivers [s0, s1) against one column panel of B (at column j, nr wide; rows bs apart). */
static inline __attribute__((always_inline)) void
run_slivers(const struct kblock *q, const float *b, size_t bs, size_t j, size_t nr, size_t s0,
            size_t s1)
{
    const size_t kc = q->kc, p0 = q->p0;
    for (size_t s = s0; s < s1; s++) {
        const size_t i = s * MR, mr = q->m - i < MR ? q->m - i : MR;
        float *c = q->C + i * q->ldc + j;
        /* An opaque c: otherwise GCC turns each row's address (c + r·ldc) into an
         * induction variable of its own across the slivers, which it keeps in memory. */
        __asm__("" : "+r"(c));
        if (q->packed) {
            const float *a = q->ws + s * MR * kc; /* zero rows pad the last sliver */
            /* Several row groups: long products, whose tiles amortise their ends. */
            if (mr == MR && nr == NR)
                micro_kernel(c, q->ldc, a, 1, MR, b, bs, kc, MR, MR, NR, q->first, q->last,
                             q->e, i, j);
            else
                micro_kernel(c, q->ldc, a, 1, MR, b, bs, kc, MR, mr, nr, q->first, q->last,
                             q->e, i, j);
            continue;
        }
        const float *a = q->A->p + i * q->rs + p0 * q->cs;
        const size_t rs = q->rs, cs = q->cs, ldc = q->ldc;
        const int first = q->first, last = q->last;
        const struct gemm_epilogue *e = q->e;
        if (mr == MR) {
            if (nr == NR)
                micro_kernel_fixed(c, ldc, a, rs, cs, b, bs, kc, MR, MR, NR, first, last, e, i,
                                   j);
            else
                micro_kernel(c, ldc, a, rs, cs, b, bs, kc, MR, MR, nr, first, last, e, i, j);
            continue;
        }
        /* The last rows, in place as a tile of exactly mr rows (no read passes row m). */
        micro_kernel_rows(c, ldc, a, rs, cs, b, bs, kc, mr, MR - 1, nr, first, last, e, i, j);
    }
}

/* The general product: every thread walks the k blocks; between its two phases (packing
 * op(A) into the shared workspace, and the items that read it) and at the end of a block
 * the team waits at a barrier, so no thread packs a block's slivers over slivers another
 * still reads. */
static void gemm_general(const struct gemm_call *g, int team)
{
    const struct gemm_operand *A = g->A, *B = g->B;
    const size_t m = g->m, n = g->n, k = g->k;
    const size_t slivers = (m + MR - 1) / MR, panels = (n + NR - 1) / NR;
    const size_t groups = (m + MC - 1) / MC, items = groups * panels;
    /* op(A) is packed only when its rows come in several groups (m > MC: a large batch,
     * or a wide layer's weight gradient), where its slivers are read across many panels
     * from far apart in memory. Otherwise the micro-kernel reads it in place, element
     * (i,p) at A->p[i·rs + p·cs], transposed or not: a group's slivers stay in L2, and the
     * threads need no barrier between packing op(A) and reading it, nor at the end of a k
     * block (measured on the demo's layers: the same speed on one thread, 5-20% faster on
     * two). Either way the arithmetic is the same. A short sum (k ≤ KSHORT: the input
     * gradient of a layer with 10 outputs) reads B in place too: a sliver is then a few
     * cache lines, and a copy would cost as much as the product. */
    const int short_k = k <= KSHORT;
    const int packed = groups > 1 && !short_k;
    const size_t rs = A->trans ? 1 : A->ld, cs = A->trans ? A->ld : 1;
    size_t s_lo, s_hi, t_lo, t_hi;
    gemm_share(slivers, team, &s_lo, &s_hi);
    gemm_share(items, team, &t_lo, &t_hi);
    const size_t kb = k_block(k);
    for (size_t p0 = 0; p0 < k; p0 += kb) {
        const size_t kc = k - p0 < kb ? k - p0 : kb;
        const struct kblock q = {g->C, g->ldc, m, kc, p0, rs, cs, A, g->ws, packed, p0 == 0,
                                 p0 + kc == k, g->e};
        if (packed) {
            for (size_t s = s_lo; s < s_hi; s++)
                pack_a(g->ws + s * MR * kc, A, m, s * MR, p0, kc);
            if (team) {
#pragma omp barrier
            }
        }
        for (size_t t = t_lo; t < t_hi; t++) {
            float bp[KC * NR] __attribute__((aligned(64)));
            const size_t j = (t / groups) * NR, gr = t % groups;
            const size_t nr = n - j < NR ? n - j : NR;
            /* A panel of B that only a few slivers read, or only a few rows long, is read
             * in place, rows ld apart, rather than copied. */
            const int in_place = !B->trans && nr == NR && (slivers <= 4 || short_k);
            const float *b = in_place ? B->p + p0 * B->ld + j : bp;
            const size_t bs = in_place ? B->ld : NR;
            if (!in_place)
                pack_b(bp, B, n, j, p0, kc);
            const size_t s_end = (gr + 1) * (MC / MR) < slivers ? (gr + 1) * (MC / MR) : slivers;
            run_slivers(&q, b, bs, j, nr, gr * (MC / MR), s_end);
        }
        if (team && packed && p0 + kc < k) {
#pragma omp barrier
        }
    }
}

void GEMM_NAME(float *restrict C, size_t ldc, const struct gemm_operand *A,
               const struct gemm_operand *B, size_t m, size_t n, size_t k,
               const struct gemm_epilogue *e, float *restrict ws)
{
    const struct gemm_call g = {C, ldc, A, B, m, n, k, e, ws};
    void (*run)(const struct gemm_call *, int) = gemm_general;
    if (m <= SR && !B->trans)
        run = gemm_short;
    else if (n <= VW && !A->trans)
        run = gemm_narrow;
    /* One parallel region for the whole product: waking a team costs more than a k block
     * of a small layer takes. Inside a caller's active region, or for a product below the
     * threshold, the calling thread does it all, outside any region (gemm_share). Either
     * way the bits are the same: the split never decides an element's arithmetic. */
    if (gemm_may_fork_for(m * n * k, GEMM_FORK_MACS)) {
#pragma omp parallel
        run(&g, 1);
    } else {
        run(&g, 0);
    }
}

/* ---- the few-row product, for inference ---------------------------------------------- */

/* Rows and vectors of columns per block of the few-row product: RB·CB accumulators, plus
 * CB vectors of Bt and one broadcast, fit the build's registers (32 for AVX-512, 16
 * otherwise). */
enum { GV_RB = 4, GV_CB = VW == 16 ? 4 : 2 };
_Static_assert(KERNEL_GEMV_PAD % (GV_CB * VW) == 0, "Bt's padding holds whole blocks");

/* One block: mr rows (a constant where it is inlined, 1 to GV_RB) and columns
 * j0 .. j0 + GV_CB·VW of C = epilogue(bias + A·Bt). Each element is the micro-kernel's: it
 * starts at its bias and adds a(i,p)·b(p,j) for p = 0, 1, ..., k−1 in one accumulator, so
 * the bits are the GEMM's. */
static inline __attribute__((always_inline)) void
gemv_block(float *restrict C, size_t ldc, const float *restrict A, size_t lda,
           const float *restrict Bt, size_t ldb, size_t mr, size_t j0, size_t n, size_t k,
           const struct gemm_epilogue *e)
{
    vf acc[GV_RB][GV_CB];
    for (size_t c = 0; c < GV_CB; c++) {
        const vf b = e->bias ? vload(e->bias + j0 + c * VW) : (vf){0};
        for (size_t r = 0; r < mr; r++)
            acc[r][c] = b;
    }
    for (size_t p = 0; p < k; p++) {
        vf b[GV_CB];
        for (size_t c = 0; c < GV_CB; c++)
            b[c] = vload(Bt + p * ldb + j0 + c * VW);
        for (size_t r = 0; r < mr; r++) {
            const vf x = vsplat(A[r * lda + p]);
            for (size_t c = 0; c < GV_CB; c++)
                acc[r][c] += x * b[c];
        }
    }
    const vf zero = {0}, leak = vsplat(DMLP_LEAKY_SLOPE);
    for (size_t r = 0; r < mr; r++)
        for (size_t c = 0; c < GV_CB && j0 + c * VW < n; c++) {
            vf v = acc[r][c];
            if (e->mode == GEMM_EPI_ACT && e->act == DMLP_ACT_RELU)
                v = DMLP_RELU(v, zero, vselect);
            else if (e->mode == GEMM_EPI_ACT && e->act == DMLP_ACT_LEAKY_RELU)
                v = DMLP_LEAKY_RELU(v, zero, leak, vselect);
            float *out = C + r * ldc + j0 + c * VW;
            if (j0 + (c + 1) * VW <= n) {
                vstore(out, v);
            } else {
                float tmp[VW];
                vstore(tmp, v);
                memcpy(out, tmp, (n - j0 - c * VW) * sizeof(float));
            }
        }
}

void GEMV_NAME(float *restrict C, size_t ldc, const float *restrict A, size_t lda,
               const float *restrict Bt, size_t ldb, size_t m, size_t n, size_t k,
               const struct gemm_epilogue *e)
{
    for (size_t i = 0; i < m; i += GV_RB) {
        const size_t mr = m - i < GV_RB ? m - i : GV_RB;
        float *c = C + i * ldc;
        const float *a = A + i * lda;
        for (size_t j = 0; j < n; j += GV_CB * VW) {
            /* Each row count its own inlined copy, so the loops over rows unroll. */
            switch (mr) {
            case 1: gemv_block(c, ldc, a, lda, Bt, ldb, 1, j, n, k, e); break;
            case 2: gemv_block(c, ldc, a, lda, Bt, ldb, 2, j, n, k, e); break;
            case 3: gemv_block(c, ldc, a, lda, Bt, ldb, 3, j, n, k, e); break;
            default: gemv_block(c, ldc, a, lda, Bt, ldb, GV_RB, j, n, k, e); break;
            }
        }
    }
}
