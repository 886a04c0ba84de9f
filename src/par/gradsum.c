/* gradsum: the three gradient-sum strategies of gradsum.h, side by side. */
#include "par/gradsum.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/kernels.h"
#include "nn/vec.h"
#include "core/partition.h"

enum gradsum_kind { GRADSUM_BLOCKING, GRADSUM_OVERLAPPED, GRADSUM_EXACT };

struct gradsum {
    enum gradsum_kind kind;
    const struct dist *d;
    struct model *m;
    /* blocking */
    struct dist_sum *sum;
    /* overlapped: the buckets in flight, the start of the part of the buffer not yet sent
     * (sent from the top down, as backward produces it) and the bucket size in floats */
    struct dist_pending *pending;
    size_t unsent, bucket;
    /* exact: the accumulator (P values, then the overflow, stop and per-layer non-finite
     * flags), the binary point, and this step's piece count and per-piece limit */
    uint64_t *acc;
    int fx_shift;
    uint64_t pieces;
    double limit;
    unsigned flags;
    int stop_request;
};

/* The most buckets one step can start: one per call of gradsum_ready (one per layer's
 * bias, one per chunk of its weights: model_backward_chunked). */
static size_t max_buckets(const struct model *m, size_t chunk_floats)
{
    size_t calls = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t rows = chunk_floats / m->layers[l].in / KERNEL_ROW_TILE * KERNEL_ROW_TILE;
        rows = rows ? rows : KERNEL_ROW_TILE;
        calls += 1 + (m->layers[l].out + rows - 1) / rows;
    }
    return calls;
}

int gradsum_create(struct gradsum **out, const struct dist *d, struct model *m,
                   const struct config *cfg, struct dmlp_error *err)
{
    struct gradsum *g = calloc(1, sizeof *g);
    *out = g;
    if (!g) /* the blocking sum's create is collective: others would wait for this rank */
        dist_abort(d, DMLP_ERR_RUNTIME, "out of memory for the gradient sum");
    g->d = d;
    g->m = m;
    if (cfg->training.reproducible) {
        g->kind = GRADSUM_EXACT;
        g->fx_shift = 40;
        if (!(g->acc = calloc(m->n_params + 2 + m->n_layers, sizeof *g->acc)))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "cannot allocate the fixed-point "
                             "gradient accumulator (%zu values)", m->n_params);
    } else if (cfg->comm.overlap) {
        g->kind = GRADSUM_OVERLAPPED;
        g->bucket = (size_t)cfg->comm.bucket_kb * 1024 / sizeof(float);
        return dist_pending_create(&g->pending, d, max_buckets(m, g->bucket), err);
    } else {
        g->kind = GRADSUM_BLOCKING;
        dist_sum_create(&g->sum, d, m->n_params + 1, cfg->comm.shared_memory);
    }
    return DMLP_OK;
}

void gradsum_free(struct gradsum **gp)
{
    struct gradsum *g = *gp;
    if (!g)
        return;
    dist_sum_free(&g->sum);
    dist_pending_free(&g->pending);
    free(g->acc);
    free(g);
    *gp = NULL;
}

const char *gradsum_method(const struct gradsum *g)
{
    switch (g->kind) {
    case GRADSUM_EXACT:
        return "MPI_Allreduce of 64-bit fixed point (training.reproducible)";
    case GRADSUM_OVERLAPPED:
        return "MPI_Iallreduce in buckets during backward (comm.overlap)";
    default:
        return dist_sum_method(g->sum);
    }
}

void gradsum_rows(const struct gradsum *g, uint64_t count, uint64_t *begin, uint64_t *end)
{
    const int n = dist_size(g->d), rank = dist_rank(g->d);
    uint64_t off, len;
    if (g->kind != GRADSUM_EXACT) {
        dmlp_slice(count, n, rank, &off, &len);
        *begin = off;
        *end = off + len;
        return;
    }
    const uint64_t P = GRADSUM_EXACT_PIECE;
    dmlp_slice((count + P - 1) / P, n, rank, &off, &len);
    *begin = off * P < count ? off * P : count;
    *end = (off + len) * P < count ? (off + len) * P : count;
}

size_t gradsum_piece_rows(const struct gradsum *g)
{
    return g->kind == GRADSUM_EXACT ? GRADSUM_EXACT_PIECE : 0;
}

size_t gradsum_bucket(const struct gradsum *g)
{
    return g->kind == GRADSUM_OVERLAPPED ? g->bucket : 0;
}

void gradsum_begin(struct gradsum *g, uint64_t count, int stop_request)
{
    const size_t P = g->m->n_params;
    g->stop_request = stop_request != 0;
    /* Before backward: the overlapped sum sends the top of the buffer first. */
    g->m->grads[P] = stop_request ? 1.0f : 0.0f;
    switch (g->kind) {
    case GRADSUM_EXACT:
        memset(g->acc, 0, (P + 2 + g->m->n_layers) * sizeof *g->acc);
        g->pieces = (count + GRADSUM_EXACT_PIECE - 1) / GRADSUM_EXACT_PIECE;
        /* No total of `pieces` values below the limit can overflow 2^62. */
        g->limit = ldexp(1.0, 62) / (double)g->pieces;
        g->flags = 0;
        break;
    case GRADSUM_OVERLAPPED:
        g->unsent = P + 1; /* the gradient and the control slot */
        break;
    case GRADSUM_BLOCKING:
        break;
    }
}

/* comm.overlap: backward says the gradient from `from` up is final. Once a bucket's worth
 * is, its sum starts; every call also lets MPI progress the ones in flight. The sequence of
 * sizes depends only on the network and bucket_kb, so every rank starts the same buckets in
 * the same order, as MPI requires (an empty slice computes zeros and starts them too). */
void gradsum_ready(void *ctx, size_t from)
{
    struct gradsum *g = ctx;
    if (g->unsent - from >= g->bucket) {
        dist_pending_start(g->pending, g->m->grads + from, g->unsent - from);
        g->unsent = from;
    }
    dist_pending_test(g->pending);
}

/* exact: adds the piece's float gradient to the accumulator as x·2^shift, truncated. A
 * non-finite value marks its layer; the flags ride in the integer sum. */
void gradsum_piece(struct gradsum *g)
{
    if (g->kind != GRADSUM_EXACT)
        return;
    struct model *m = g->m;
    const size_t P = m->n_params;
    const unsigned fx = kernel_vec()->fx_add(g->acc, m->grads, P, ldexp(1.0, g->fx_shift),
                                             g->limit);
    g->flags |= fx;
    size_t layer;
    const char *what;
    if ((fx & VEC_FX_NONFINITE) && model_find_nonfinite(m, m->grads, &layer, &what))
        g->acc[P + 2 + layer] = 1;
}

/* The allreduce adds integers, which is exact and order-free (in unsigned arithmetic,
 * where wrap-around is defined and cancels out because the true total fits). The binary
 * point follows the previous step's largest summed gradient with 8 bits of headroom; a
 * piece value beyond the limit makes every rank redo the step with 16 bits less, a
 * decision that depends only on the pieces, not on the rank count. */
static void finish_exact(struct gradsum *g, struct gradsum_status *st)
{
    struct model *m = g->m;
    const size_t P = m->n_params, L = m->n_layers;
    g->acc[P] = (g->flags & VEC_FX_OVERFLOW) != 0;
    g->acc[P + 1] = (uint64_t)g->stop_request;
    dist_allreduce_sum_u64(g->d, g->acc, P + 2 + L);
    st->signalled = g->acc[P + 1] > 0;
    for (size_t l = 0; l < L; l++)
        if (g->acc[P + 2 + l]) {
            st->bad = 1;
            st->bad_layer = l;
            st->bad_what = "weight or bias";
            return;
        }
    if (g->acc[P]) {
        g->fx_shift -= 16; /* every rank saw the same count: all retry alike */
        st->retry = 1;
        return;
    }
    /* Multiplying by a power of two is exact, and much cheaper than ldexp per value. */
    const float maxg = kernel_vec()->fx_load(m->grads, g->acc, P, ldexp(1.0, -g->fx_shift));
    int e = 0;
    frexp(maxg > 0 ? (double)maxg : 1.0, &e);
    int bits = 0;
    while (bits < 62 && ((uint64_t)1 << bits) < g->pieces)
        bits++;
    g->fx_shift = 61 - bits - 8 - e; /* the largest sum then sits 8 bits below the limit */
}

void gradsum_finish(struct gradsum *g, struct gradsum_status *st)
{
    memset(st, 0, sizeof *st);
    if (g->kind == GRADSUM_EXACT) {
        finish_exact(g, st);
        return;
    }
    struct model *m = g->m;
    if (g->kind == GRADSUM_OVERLAPPED) {
        if (g->unsent)
            dist_pending_start(g->pending, m->grads, g->unsent);
        dist_pending_wait(g->pending);
    } else {
        st->waited = dist_sum_float(g->sum, m->grads, m->n_params + 1);
    }
    st->signalled = m->grads[m->n_params] > 0.0f;
}

void gradsum_check_finite(const struct gradsum *g, struct gradsum_status *st)
{
    const struct model *m = g->m;
    if (g->kind != GRADSUM_EXACT && !st->bad)
        st->bad = kernel_vec()->nonfinite(m->grads, m->n_params) &&
                  model_find_nonfinite(m, m->grads, &st->bad_layer, &st->bad_what);
}

int gradsum_fx_shift(const struct gradsum *g)
{
    return g->kind == GRADSUM_EXACT ? g->fx_shift : 0;
}

void gradsum_set_fx_shift(struct gradsum *g, int shift)
{
    if (g->kind == GRADSUM_EXACT && shift)
        g->fx_shift = shift;
}
