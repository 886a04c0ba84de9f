/* gemm_impl.h: the packed, register-tiled GEMM, written once and compiled once per
 * instruction set (gemm_avx512.c, gemm_avx2.c, gemm_generic.c each define GEMM_NAME, VW,
 * KC and include this file; kernels.c picks one at run time). See gemm.h for the contract.
 *
 * Structure (the Goto/BLIS scheme, simplified to what a dense layer needs):
 *   for each KC-deep block of the summed dimension, in increasing order:
 *     1. pack all of op(A)[:, block] into slivers of MR rows, k-major ([p][r]), in the
 *        caller's workspace (threads share it; zero rows pad the last sliver);
 *     2. the output is a fixed grid of work items, one NR-wide column panel by MC rows;
 *        a thread takes whole items, packs the item's KC×NR panel of op(B) on its stack
 *        (zero columns pad the edge), where it stays in L1, and runs the MR×NR micro-kernel
 *        down the item's slivers, whose A data streams from L2.
 * The micro-kernel keeps an MR×NR tile of C in 2·MR vector registers: per step p it loads
 * two vectors of B, broadcasts MR values of A and issues 2·MR fused multiply-adds.
 *
 * Padding makes every tile a full MR×NR computation; only the loads and stores of C at
 * the edges are partial. Each element of C therefore sums its k terms in increasing k
 * with the same instructions wherever it lies and whichever thread computes it: results
 * are bit-identical for any thread count. Epilogues (bias, activation, activation
 * derivative) run in registers before the final store. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nn/activation.h"
#include "nn/gemm.h"
#include "nn/kernels.h"

enum { MR = 6, NR = 2 * VW, MC = 24 * MR };
/* kernels.c cuts weight-gradient rows at multiples of the row tile (overlap buckets). */
_Static_assert((int)MR == (int)KERNEL_ROW_TILE, "the GEMM's row tile is KERNEL_ROW_TILE");

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

/* An MR×NR tile of C, or of any matrix with C's shape, as 2·MR vectors. */
struct tile {
    vf lo[MR], hi[MR];
};

static inline void tile_load(struct tile *t, const float *p, size_t ld, size_t mr, size_t nr)
{
    for (size_t r = 0; r < MR; r++) {
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

/* C ⊙= f'(D), given D = f(Z) (activation.h). */
static inline void tile_dact(struct tile *c, const struct tile *d, enum dmlp_activation act)
{
    const vf zero = {0}, one = vsplat(1.0f), leak = vsplat(DMLP_LEAKY_SLOPE);
    for (size_t r = 0; r < MR; r++) {
        vf *v[2] = {&c->lo[r], &c->hi[r]};
        const vf a[2] = {d->lo[r], d->hi[r]};
        for (int h = 0; h < 2; h++) {
            switch (act) {
            case DMLP_ACT_SIGMOID: *v[h] = DMLP_SIGMOID_GRAD(*v[h], a[h], one); break;
            case DMLP_ACT_TANH: *v[h] = DMLP_TANH_GRAD(*v[h], a[h], one); break;
            case DMLP_ACT_RELU: *v[h] = DMLP_RELU_GRAD(*v[h], a[h], zero, vselect); break;
            case DMLP_ACT_LEAKY_RELU:
                *v[h] = DMLP_LEAKY_RELU_GRAD(*v[h], a[h], zero, leak, vselect);
                break;
            case DMLP_ACT_LINEAR:
            case DMLP_ACT_SOFTMAX: break;
            }
        }
    }
}

/* Forward activations that are a compare and a select run in registers; the others
 * (sigmoid, tanh) are applied by the caller to the stored tile. */
static inline void tile_act(struct tile *c, enum dmlp_activation act)
{
    const vf zero = {0}, leak = vsplat(DMLP_LEAKY_SLOPE);
    for (size_t r = 0; r < MR; r++) {
        vf *v[2] = {&c->lo[r], &c->hi[r]};
        for (int h = 0; h < 2; h++) {
            if (act == DMLP_ACT_RELU)
                *v[h] = DMLP_RELU(*v[h], zero, vselect);
            else if (act == DMLP_ACT_LEAKY_RELU)
                *v[h] = DMLP_LEAKY_RELU(*v[h], zero, leak, vselect);
        }
    }
}

/* One MR×NR tile: C (+)= Ap·Bp over kc steps, B's rows bs apart (NR when packed).
 * first: the k block that starts the sum (C starts as 0, as C, or as the bias row); last:
 * the block that ends it (epilogue). */
static inline __attribute__((always_inline)) void
micro_kernel(float *restrict C, size_t ldc, const float *restrict Ap, size_t rs, size_t cs,
             const float *restrict Bp, size_t bs, size_t kc, size_t mr, size_t nr, int first,
             int last, const struct gemm_epilogue *e, size_t i, size_t j)
{
    struct tile c;
    if (!first || e->accumulate) {
        tile_load(&c, C, ldc, mr, nr);
    } else if (e->bias) {
        struct tile b;
        tile_load(&b, e->bias + j, 0, 1, nr);
        for (size_t r = 0; r < MR; r++) {
            c.lo[r] = b.lo[0];
            c.hi[r] = b.hi[0];
        }
    } else {
        for (size_t r = 0; r < MR; r++)
            c.lo[r] = c.hi[r] = (vf){0};
    }
    for (size_t p = 0; p < kc; p++) {
        const vf b0 = vload(Bp + p * bs), b1 = vload(Bp + p * bs + VW);
        for (size_t r = 0; r < MR; r++) {
            const vf a = vsplat(Ap[p * cs + r * rs]);
            c.lo[r] += a * b0;
            c.hi[r] += a * b1;
        }
    }
    if (last && e->mode == GEMM_EPI_ACT) {
        tile_act(&c, e->act);
    } else if (last && e->mode == GEMM_EPI_DACT) {
        struct tile d;
        tile_load(&d, e->D + i * e->ldd + j, e->ldd, mr, nr);
        tile_dact(&c, &d, e->act);
    }
    tile_store(C, ldc, &c, mr, nr);
}

/* Packs op(A)[i0 .. i0+MR, p0 .. p0+kc] as dst[p·MR + r], zero rows past m. */
static void pack_a(float *restrict dst, const struct gemm_operand *A, size_t m, size_t i0,
                   size_t p0, size_t kc)
{
    const size_t mr = m - i0 < MR ? m - i0 : MR;
    if (A->trans) { /* op(A)(i,p) = A[p·ld + i]: rows of the source are k steps */
        for (size_t p = 0; p < kc; p++) {
            const float *s = A->p + (p0 + p) * A->ld + i0;
            float *d = dst + p * MR;
            for (size_t r = 0; r < MR; r++)
                d[r] = r < mr ? s[r] : 0.0f;
        }
    } else { /* op(A)(i,p) = A[i·ld + p]: interleave MR source rows */
        for (size_t r = 0; r < MR; r++) {
            const float *s = A->p + (i0 + r) * A->ld + p0;
            for (size_t p = 0; p < kc; p++)
                dst[p * MR + r] = r < mr ? s[p] : 0.0f;
        }
    }
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

/* Packs op(B)[p0 .. p0+kc, j0 .. j0+NR] as dst[p·NR + c], zero columns past n. */
static void pack_b(float *restrict dst, const struct gemm_operand *B, size_t n, size_t j0,
                   size_t p0, size_t kc)
{
    const size_t nr = n - j0 < NR ? n - j0 : NR;
    if (B->trans) { /* op(B)(p,j) = B[j·ld + p]: interleave NR source rows */
        size_t p = 0;
#if VW >= 8
        /* 8×8 blocks through registers: eight row loads, a transpose, eight stores. */
        for (; p + 8 <= kc; p += 8)
            for (size_t c0 = 0; c0 < NR; c0 += 8) {
                vf8 r[8];
                for (size_t q = 0; q < 8; q++)
                    r[q] = c0 + q < nr ? vload8(B->p + (j0 + c0 + q) * B->ld + p0 + p)
                                       : (vf8){0};
                transpose8(r);
                for (size_t q = 0; q < 8; q++)
                    memcpy(dst + (p + q) * NR + c0, &r[q], sizeof r[q]);
            }
#endif
        for (size_t c = 0; c < NR; c++) {
            const float *s = B->p + (j0 + c) * B->ld + p0;
            for (size_t q = p; q < kc; q++)
                dst[q * NR + c] = c < nr ? s[q] : 0.0f;
        }
    } else { /* op(B)(p,j) = B[p·ld + j]: rows of the source are k steps */
        for (size_t q = 0; q < kc; q++) {
            const float *s = B->p + (p0 + q) * B->ld + j0;
            float *d = dst + q * NR;
            if (nr == NR) {
                memcpy(d, s, NR * sizeof(float));
            } else {
                memcpy(d, s, nr * sizeof(float));
                memset(d + nr, 0, (NR - nr) * sizeof(float));
            }
        }
    }
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
    for (int h = 0; h < 2; h++) {
        if (!first || e->accumulate) {
            tile_load(&c[h], C + h * MR * ldc, ldc, MR, nr);
        } else {
            struct tile b = {0};
            if (e->bias)
                tile_load(&b, e->bias, 0, 1, nr);
            for (size_t r = 0; r < MR; r++) {
                c[h].lo[r] = b.lo[0];
                c[h].hi[r] = b.hi[0];
            }
        }
    }
    for (size_t p = 0; p < kc; p++) {
        const vf b0 = vload(Bp + p * NR);
        for (size_t r = 0; r < MR; r++) {
            c[0].lo[r] += vsplat(A[p + r * rs]) * b0;
            c[1].lo[r] += vsplat(A[p + (r + MR) * rs]) * b0;
        }
    }
    for (int h = 0; h < 2; h++) {
        if (last && e->mode == GEMM_EPI_ACT) {
            tile_act(&c[h], e->act);
        } else if (last && e->mode == GEMM_EPI_DACT) {
            struct tile d;
            tile_load(&d, e->D + (i + h * MR) * e->ldd, e->ldd, MR, nr);
            tile_dact(&c[h], &d, e->act);
        }
        tile_store(C + h * MR * ldc, ldc, &c[h], MR, nr);
    }
}

/* C = op(A)·op(B) for n ≤ VW and A not transposed: items of 2·MR rows through
 * micro_narrow, the last m mod 2·MR rows MR at a time through micro_kernel (the same
 * bits either way). Every thread packs the one column panel of B for itself. */
static void gemm_narrow(float *restrict C, size_t ldc, const struct gemm_operand *A,
                        const struct gemm_operand *B, size_t m, size_t n, size_t k,
                        const struct gemm_epilogue *e)
{
    const size_t blocks = m / (2 * MR), rest = (m - blocks * 2 * MR + MR - 1) / MR;
    const size_t rs = A->ld;
#pragma omp parallel if (gemm_may_fork_for(m * n * k, GEMM_FORK_MACS))
    for (size_t p0 = 0; p0 < k; p0 += KC) {
        const size_t kc = k - p0 < KC ? k - p0 : KC;
        const int first = p0 == 0, last = p0 + kc == k;
        float bp[KC * NR] __attribute__((aligned(64)));
        pack_b(bp, B, n, 0, p0, kc);
#pragma omp for schedule(static)
        for (size_t t = 0; t < blocks + rest; t++) {
            if (t < blocks) {
                const size_t i = t * 2 * MR;
                micro_narrow(C + i * ldc, ldc, A->p + i * rs + p0, rs, bp, kc, n, first,
                             last, e, i);
                continue;
            }
            const size_t i = blocks * 2 * MR + (t - blocks) * MR, mr = m - i < MR ? m - i : MR;
            float ap[KC * MR] __attribute__((aligned(64)));
            pack_a(ap, A, m, i, p0, kc); /* zero rows past m: no read passes row m */
            micro_kernel(C + i * ldc, ldc, ap, 1, MR, bp, NR, kc, mr, n, first, last, e, i, 0);
        }
        /* (the implicit barrier: the k block is done everywhere before the next) */
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
        if (q->packed || mr < MR) {
            float ap[KC * MR] __attribute__((aligned(64)));
            const float *a = q->ws + s * MR * kc;
            if (!q->packed) { /* the last rows: a zero-padded copy, so that no read passes
                               * row m */
                pack_a(ap, q->A, q->m, i, p0, kc);
                a = ap;
            }
            if (mr == MR && nr == NR)
                micro_kernel(c, q->ldc, a, 1, MR, b, bs, kc, MR, NR, q->first, q->last, q->e,
                             i, j);
            else
                micro_kernel(c, q->ldc, a, 1, MR, b, bs, kc, mr, nr, q->first, q->last, q->e,
                             i, j);
        } else {
            const float *a = q->A->p + i * q->rs + p0 * q->cs;
            if (nr == NR)
                micro_kernel(c, q->ldc, a, q->rs, q->cs, b, bs, kc, MR, NR, q->first, q->last,
                             q->e, i, j);
            else
                micro_kernel(c, q->ldc, a, q->rs, q->cs, b, bs, kc, MR, nr, q->first, q->last,
                             q->e, i, j);
        }
    }
}

void GEMM_NAME(float *restrict C, size_t ldc, const struct gemm_operand *A,
               const struct gemm_operand *B, size_t m, size_t n, size_t k,
               const struct gemm_epilogue *e, float *restrict ws)
{
    if (n <= VW && !A->trans) {
        gemm_narrow(C, ldc, A, B, m, n, k, e);
        return;
    }
    const size_t slivers = (m + MR - 1) / MR, panels = (n + NR - 1) / NR;
    const size_t groups = (m + MC - 1) / MC, items = groups * panels;
    /* op(A) is packed when it is read across enough column panels to repay the copy, or
     * when its rows are strided (a transposed A); otherwise the micro-kernel reads it in
     * place, element (i,p) at A->p[i·rs + p·cs]. Either way the arithmetic is the same. */
    const int packed = A->trans || panels > 2;
    const size_t rs = A->trans ? 1 : A->ld, cs = A->trans ? A->ld : 1;
    /* One parallel region for the whole product: waking a team costs more than a k block
     * of a small layer takes. Every thread walks the k blocks; the work-sharing loops'
     * barriers keep them in step. Inside a caller's active region, the calling thread does
     * it all (no nested team; the same bits, as for any thread count). */
#pragma omp parallel if (gemm_may_fork_for(m * n * k, GEMM_FORK_MACS))
    for (size_t p0 = 0; p0 < k; p0 += KC) {
        const size_t kc = k - p0 < KC ? k - p0 : KC;
        const struct kblock q = {C, ldc, m, kc, p0, rs, cs, A, ws, packed, p0 == 0,
                                 p0 + kc == k, e};
        if (packed) {
#pragma omp for schedule(static)
            for (size_t s = 0; s < slivers; s++)
                pack_a(ws + s * MR * kc, A, m, s * MR, p0, kc);
            /* (the implicit barrier: every sliver is packed before any item runs) */
        }
#pragma omp for schedule(static)
        for (size_t t = 0; t < items; t++) {
            float bp[KC * NR] __attribute__((aligned(64)));
            const size_t j = (t / groups) * NR, g = t % groups;
            const size_t nr = n - j < NR ? n - j : NR;
            /* A panel of B that only a few slivers read (a weight gradient of a narrow
             * layer: m = 10) is read in place, rows ld apart, rather than copied. */
            const int in_place = !B->trans && nr == NR && slivers <= 4;
            const float *b = in_place ? B->p + p0 * B->ld + j : bp;
            const size_t bs = in_place ? B->ld : NR;
            if (!in_place)
                pack_b(bp, B, n, j, p0, kc);
            const size_t s_end = (g + 1) * (MC / MR) < slivers ? (g + 1) * (MC / MR) : slivers;
            run_slivers(&q, b, bs, j, nr, g * (MC / MR), s_end);
        }
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
