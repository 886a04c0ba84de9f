#include "par/dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/vec.h"

struct dist {
    MPI_Comm comm;
    int rank, size;
};

int dist_init(int *argc, char ***argv, struct dmlp_error *err)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited)
        return DMLP_OK;
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "MPI_Init_thread failed");
    if (provided < MPI_THREAD_FUNNELED)
        return dmlp_fail(err, DMLP_ERR_RUNTIME,
                         "the MPI library does not provide MPI_THREAD_FUNNELED");
    return DMLP_OK;
}

int dist_is_initialized(void)
{
    int inited = 0;
    MPI_Initialized(&inited);
    return inited;
}

void dist_finalize(void)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized)
        MPI_Finalize();
}

static int create(struct dist **out, MPI_Comm base, struct dmlp_error *err)
{
    struct dist *d = calloc(1, sizeof *d);
    if (!d)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    MPI_Comm_dup(base, &d->comm);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    *out = d;
    return DMLP_OK;
}

int dist_create_world(struct dist **out, struct dmlp_error *err)
{
    return create(out, MPI_COMM_WORLD, err);
}

int dist_create_self(struct dist **out, struct dmlp_error *err)
{
    return create(out, MPI_COMM_SELF, err);
}

void dist_free(struct dist **d)
{
    if (!*d)
        return;
    MPI_Comm_free(&(*d)->comm);
    free(*d);
    *d = NULL;
}

static void allreduce_op(const struct dist *d, void *buf, size_t n, MPI_Datatype type,
                         size_t elem, MPI_Op op);

int dist_split(const struct dist *d, int color, struct dist **out, struct dmlp_error *err)
{
    MPI_Comm sub;
    MPI_Comm_split(d->comm, color, d->rank, &sub);
    const int rc = create(out, sub, err);
    MPI_Comm_free(&sub);
    return rc;
}

struct dist_counter {
    MPI_Win win;
    int64_t *value; /* rank 0's */
};

/* calloc(1, size) on every rank of d, agreed: NULL everywhere (and err set) when any rank
 * could not have it, so that no rank goes on alone into the collectives that follow. */
static void *agreed_calloc(const struct dist *d, size_t size, struct dmlp_error *err)
{
    void *p = calloc(1, size);
    int ok = p != NULL;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
    if (!ok) {
        free(p);
        dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
        return NULL;
    }
    return p;
}

int dist_counter_create(struct dist_counter **out, const struct dist *d,
                        struct dmlp_error *err)
{
    struct dist_counter *c = agreed_calloc(d, sizeof *c, err);
    if (!c)
        return err->code;
    MPI_Win_allocate(d->rank == 0 ? (MPI_Aint)sizeof(int64_t) : 0, sizeof(int64_t),
                     MPI_INFO_NULL, d->comm, &c->value, &c->win);
    if (d->rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, c->win);
        *c->value = 0;
        MPI_Win_unlock(0, c->win);
    }
    MPI_Barrier(d->comm);
    *out = c;
    return DMLP_OK;
}

uint64_t dist_counter_next(struct dist_counter *c)
{
    const int64_t one = 1;
    int64_t got = 0;
    MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, c->win);
    MPI_Fetch_and_op(&one, &got, MPI_INT64_T, 0, 0, MPI_SUM, c->win);
    MPI_Win_unlock(0, c->win);
    return (uint64_t)got;
}

void dist_counter_free(struct dist_counter **cp)
{
    if (!*cp)
        return;
    MPI_Win_free(&(*cp)->win);
    free(*cp);
    *cp = NULL;
}

void dist_allreduce_max_bytes(const struct dist *d, unsigned char *buf, size_t n)
{
    allreduce_op(d, buf, n, MPI_UNSIGNED_CHAR, 1, MPI_MAX);
}

int dist_rank(const struct dist *d) { return d->rank; }
int dist_size(const struct dist *d) { return d->size; }

/* MPI counts are int: a count of n elements goes out in pieces of at most INT_MAX. */
static int chunk_of(size_t n) { return n > (size_t)INT_MAX ? INT_MAX : (int)n; }

/* In-place reduction of n elements, in as many calls as INT_MAX-element pieces it takes. */
static void allreduce_op(const struct dist *d, void *buf, size_t n, MPI_Datatype type,
                         size_t elem, MPI_Op op)
{
    char *p = buf;
    do {
        const int chunk = chunk_of(n);
        MPI_Allreduce(MPI_IN_PLACE, p, chunk, type, op, d->comm);
        p += (size_t)chunk * elem;
        n -= (size_t)chunk;
    } while (n > 0);
}

static void allreduce_sum(const struct dist *d, void *buf, size_t n, MPI_Datatype type,
                          size_t elem)
{
    allreduce_op(d, buf, n, type, elem, MPI_SUM);
}

struct dist_sum {
    MPI_Comm comm;      /* all ranks (the dist's) */
    MPI_Comm node;      /* the ranks sharing this node's memory; MPI_COMM_NULL: plain */
    MPI_Comm cross;     /* the ranks with this node rank, one per node */
    MPI_Win win;
    float **peer;       /* [node size]: each node rank's two buffers of `capacity` floats */
    int node_rank, node_size, nodes, flip;
    size_t capacity;
    char method[128];
};

/* Floats summed at a time: 4 KiB, a block that stays in L1 beside its inputs. */
#define SUM_BLOCK 1024

/* The part of n floats that node rank q adds: 16-float (cache-line) aligned bounds. */
static size_t sum_bound(size_t n, int q, int k)
{
    const size_t lines = (n + 15) / 16, b = lines * (size_t)q / (size_t)k * 16;
    return b < n ? b : n;
}

/* This rank's node size *k and node rank *nr; whether every node runs the same number
 * of ranks (the min and max of the node sizes, in one reduction over all ranks). */
static int node_sizes_even(const struct dist *d, MPI_Comm node, int *k, int *nr)
{
    int kk[2], agreed[2];
    MPI_Comm_size(node, k);
    MPI_Comm_rank(node, nr);
    kk[0] = *k, kk[1] = -*k;
    MPI_Allreduce(kk, agreed, 2, MPI_INT, MPI_MIN, d->comm);
    return agreed[0] == -agreed[1];
}

/* The node's shared window, two buffers of s->capacity floats per rank, so that a rank
 * may start the next sum while a slower one still copies results out of the last. Every
 * rank enters or none; a failed allocation (a small /dev/shm in a container) is agreed,
 * and leaves s->node null so that every rank falls back to MPI. */
static void open_shared_window(struct dist_sum *s, const struct dist *d, MPI_Comm node, int k,
                               int nr)
{
    float *base;
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    const int ok = MPI_Win_allocate_shared((MPI_Aint)(2 * s->capacity * sizeof(float)),
                                           sizeof(float), MPI_INFO_NULL, node, &base,
                                           &s->win) == MPI_SUCCESS;
    s->peer = malloc((size_t)k * sizeof *s->peer);
    int all = ok && s->peer;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, d->comm);
    if (!all) {
        if (ok)
            MPI_Win_free(&s->win);
        free(s->peer);
        s->peer = NULL;
        return;
    }
    for (int q = 0; q < k; q++) {
        MPI_Aint size;
        int unit;
        MPI_Win_shared_query(s->win, q, &size, &unit, &s->peer[q]);
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    MPI_Comm_split(d->comm, nr, d->rank, &s->cross);
    s->node = node;
    s->node_rank = nr;
    s->node_size = k;
    s->nodes = d->size / k;
}

/* s->method: how the sum runs, and why not through shared memory when it does not. */
static void describe_method(struct dist_sum *s, int shared_memory, int k, int even)
{
    if (s->node == MPI_COMM_NULL)
        snprintf(s->method, sizeof s->method, "MPI_Allreduce%s",
                 !shared_memory ? " (comm.shared_memory off)"
                 : k == 1 ? "" : !even ? " (nodes run different rank counts)"
                 : " (no shared-memory window)");
    else
        snprintf(s->method, sizeof s->method, "shared memory (%d ranks on each of %d "
                 "node%s)%s", k, s->nodes, s->nodes == 1 ? "" : "s",
                 s->nodes > 1 ? " + MPI_Allreduce across nodes" : "");
}

void dist_sum_create(struct dist_sum **out, const struct dist *d, size_t capacity,
                     int shared_memory)
{
    struct dist_sum *s = calloc(1, sizeof *s);
    if (!s) /* the other ranks are about to enter collectives: end the job instead */
        dist_abort(d, DMLP_ERR_RUNTIME, "out of memory for the gradient sum");
    s->comm = d->comm;
    s->node = s->cross = MPI_COMM_NULL;
    s->win = MPI_WIN_NULL;
    s->capacity = capacity;
    MPI_Comm node;
    MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    int k, nr;
    const int even = node_sizes_even(d, node, &k, &nr);
    /* Shared memory where every node has the same ranks and the window stays small;
     * agreed, so that every rank takes the same path through the collectives below. */
    int ok = shared_memory && k > 1 && even && capacity <= ((size_t)1 << 28);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
    if (ok)
        open_shared_window(s, d, node, k, nr);
    if (s->node == MPI_COMM_NULL)
        MPI_Comm_free(&node);
    describe_method(s, shared_memory, k, even);
    *out = s;
}

/* Adds the node's k copies of [lo, hi) (this rank's own from buf, the others' from the
 * window at offset off) in node-rank order. The slice's total goes where the other ranks
 * read it, [lo, hi) of this rank's buffer, and (on one node) into buf, from a block that
 * stays in L1. */
static inline void sum_own_slice(const struct dist_sum *s, float *buf, size_t off, size_t lo,
                                 size_t hi)
{
    const int k = s->node_size, me = s->node_rank;
    float *restrict total = s->peer[me] + off + lo;
    float block[SUM_BLOCK];
    void (*add)(float *restrict, const float *restrict, size_t) = kernel_vec()->add;
    for (size_t b = lo; b < hi; b += SUM_BLOCK) {
        const size_t m = hi - b < SUM_BLOCK ? hi - b : SUM_BLOCK;
        for (int q = 0; q < k; q++) { /* node-rank order, the same for every element */
            const float *restrict in = q == me ? buf + b : s->peer[q] + off + b;
            if (q == 0)
                memcpy(block, in, m * sizeof(float));
            else
                add(block, in, m);
        }
        memcpy(total + (b - lo), block, m * sizeof(float));
        if (s->nodes == 1)
            memcpy(buf + b, block, m * sizeof(float));
    }
}

/* Copies into buf the totals of the slices the other node ranks summed. */
static inline void take_others_totals(const struct dist_sum *s, float *buf, size_t n,
                                      size_t off)
{
    const int k = s->node_size, me = s->node_rank;
    for (int q = 0; q < k; q++) {
        if (q == me)
            continue;
        const size_t a = sum_bound(n, q, k), b = sum_bound(n, q + 1, k);
        memcpy(buf + a, s->peer[q] + off + a, (b - a) * sizeof(float));
    }
}

double dist_sum_float(struct dist_sum *s, float *buf, size_t n)
{
    if (s->node == MPI_COMM_NULL) {
        allreduce_sum(&(struct dist){.comm = s->comm}, buf, n, MPI_FLOAT, sizeof(float));
        return 0.0;
    }
    const int k = s->node_size, me = s->node_rank;
    const size_t off = (size_t)s->flip * s->capacity;
    const size_t lo = sum_bound(n, me, k), hi = sum_bound(n, me + 1, k);
    float *mine = s->peer[me] + off;
    /* Only what the other ranks add goes into the window: this rank adds its own slice
     * straight from buf. A step thus copies (k-1)/k of the gradient in, not all of it,
     * and writes each total once, where the others read it. Measured at 2 ranks: 15-20%
     * off the sum when the cores share a cache, the same when they do not. */
    memcpy(mine, buf, lo * sizeof(float));
    memcpy(mine + hi, buf + hi, (n - hi) * sizeof(float));
    MPI_Win_sync(s->win);
    const double t_wait = MPI_Wtime();
    MPI_Barrier(s->node); /* every copy is in */
    const double waited = MPI_Wtime() - t_wait;
    MPI_Win_sync(s->win);
    sum_own_slice(s, buf, off, lo, hi);
    if (s->nodes > 1) {
        allreduce_sum(&(struct dist){.comm = s->cross}, mine + lo, hi - lo, MPI_FLOAT,
                      sizeof(float));
        memcpy(buf + lo, mine + lo, (hi - lo) * sizeof(float));
    }
    MPI_Win_sync(s->win);
    MPI_Barrier(s->node); /* every slice's total is in */
    MPI_Win_sync(s->win);
    take_others_totals(s, buf, n, off);
    s->flip ^= 1;
    return waited;
}

struct dist_shm {
    MPI_Comm node;
    MPI_Win win;
    int node_rank, node_size;
};

int dist_shm_alloc(struct dist_shm **out, const struct dist *d, size_t bytes, void **base,
                   struct dmlp_error *err)
{
    *out = NULL;
    *base = NULL;
    struct dist_shm *s = agreed_calloc(d, sizeof *s, err);
    if (!s)
        return err->code;
    MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &s->node);
    MPI_Comm_rank(s->node, &s->node_rank);
    MPI_Comm_size(s->node, &s->node_size);
    MPI_Comm_set_errhandler(s->node, MPI_ERRORS_RETURN);
    /* A whole number of cache lines, and 64 bytes of room to align the start. */
    const size_t mine = s->node_rank == 0 ? (bytes + 127) / 64 * 64 : 0;
    char *at = NULL;
    int ok = mine <= (size_t)PTRDIFF_MAX &&
         MPI_Win_allocate_shared((MPI_Aint)mine, 1, MPI_INFO_NULL, s->node, &at, &s->win) ==
             MPI_SUCCESS;
    int all = ok;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, d->comm);
    if (!all) {
        if (ok)
            MPI_Win_free(&s->win);
        MPI_Comm_free(&s->node);
        free(s);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "a shared-memory window of %zu bytes could "
                         "not be had on every node (is /dev/shm large enough?)", bytes);
    }
    MPI_Aint size;
    int unit;
    MPI_Win_shared_query(s->win, 0, &size, &unit, &at);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    *base = at + (64 - (uintptr_t)at % 64) % 64;
    *out = s;
    return DMLP_OK;
}

int dist_shm_node_rank(const struct dist_shm *s)
{
    return s->node_rank;
}

int dist_shm_node_size(const struct dist_shm *s)
{
    return s->node_size;
}

void dist_shm_sync(const struct dist_shm *s)
{
    MPI_Win_sync(s->win);
    MPI_Barrier(s->node);
    MPI_Win_sync(s->win);
}

void dist_shm_free(struct dist_shm **sp)
{
    struct dist_shm *s = *sp;
    if (!s)
        return;
    MPI_Win_unlock_all(s->win);
    MPI_Win_free(&s->win);
    MPI_Comm_free(&s->node);
    free(s);
    *sp = NULL;
}

void dist_sum_free(struct dist_sum **sp)
{
    struct dist_sum *s = *sp;
    if (!s)
        return;
    if (s->node != MPI_COMM_NULL) {
        MPI_Win_unlock_all(s->win);
        MPI_Win_free(&s->win);
        MPI_Comm_free(&s->cross);
        MPI_Comm_free(&s->node);
    }
    free(s->peer);
    free(s);
    *sp = NULL;
}

const char *dist_sum_method(const struct dist_sum *s) { return s->method; }

struct dist_pending {
    MPI_Comm comm;
    size_t capacity;
    int count;
    MPI_Request *req;
};

int dist_pending_create(struct dist_pending **out, const struct dist *d, size_t capacity,
                        struct dmlp_error *err)
{
    struct dist_pending *p = calloc(1, sizeof *p);
    if (p && capacity <= INT_MAX)
        p->req = malloc((capacity ? capacity : 1) * sizeof *p->req);
    if (!p || !p->req) {
        free(p);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for %zu MPI requests",
                         capacity);
    }
    p->comm = d->comm;
    p->capacity = capacity;
    *out = p;
    return DMLP_OK;
}

void dist_pending_free(struct dist_pending **pp)
{
    if (!*pp)
        return;
    free((*pp)->req);
    free(*pp);
    *pp = NULL;
}

void dist_pending_start(struct dist_pending *p, float *buf, size_t n)
{
    if ((size_t)p->count >= p->capacity || n > INT_MAX) /* a caller's sizing bug */
        MPI_Abort(p->comm, 70);
    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, p->comm, &p->req[p->count++]);
}

void dist_pending_test(struct dist_pending *p)
{
    int done;
    if (p->count)
        MPI_Testall(p->count, p->req, &done, MPI_STATUSES_IGNORE);
}

void dist_pending_wait(struct dist_pending *p)
{
    MPI_Waitall(p->count, p->req, MPI_STATUSES_IGNORE);
    p->count = 0;
}

void dist_allreduce_sum_double(const struct dist *d, double *buf, size_t n)
{
    allreduce_sum(d, buf, n, MPI_DOUBLE, sizeof(double));
}

void dist_allreduce_sum_u64(const struct dist *d, uint64_t *buf, size_t n)
{
    allreduce_sum(d, buf, n, MPI_UINT64_T, sizeof(uint64_t));
}

int dist_agree(const struct dist *d, struct dmlp_error *err)
{
    int mine = err->code != DMLP_OK ? d->rank : d->size, first = d->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm);
    if (first == d->size) {
        dmlp_error_clear(err);
        return DMLP_OK;
    }
    MPI_Bcast(err, (int)sizeof *err, MPI_BYTE, first, d->comm);
    if (d->size > 1)
        dmlp_error_prefix(err, "rank %d", first);
    return err->code;
}

void dist_spread(const struct dist *d, const double *local, size_t n, double *min,
                 double *mean, double *max, int *max_rank)
{
    struct {
        double v;
        int rank;
    } in[16], out[16];
    double sums[16];
    while (n > 0) {
        const size_t k = n < 16 ? n : 16;
        for (size_t i = 0; i < k; i++) {
            in[i].v = local[i];
            in[i].rank = d->rank;
        }
        MPI_Allreduce(in, out, (int)k, MPI_DOUBLE_INT, MPI_MAXLOC, d->comm);
        for (size_t i = 0; i < k; i++) {
            max[i] = out[i].v;
            max_rank[i] = out[i].rank;
        }
        MPI_Allreduce(local, min, (int)k, MPI_DOUBLE, MPI_MIN, d->comm);
        MPI_Allreduce(local, sums, (int)k, MPI_DOUBLE, MPI_SUM, d->comm);
        for (size_t i = 0; i < k; i++)
            mean[i] = sums[i] / d->size;
        local += k, min += k, mean += k, max += k, max_rank += k, n -= k;
    }
}

void dist_gather_bytes(const struct dist *d, const void *mine, size_t n, void *all, int root)
{
    MPI_Gather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, root, d->comm);
}

void dist_bcast(const struct dist *d, void *buf, size_t n, int root)
{
    char *p = buf;
    do {
        const int chunk = chunk_of(n);
        MPI_Bcast(p, chunk, MPI_BYTE, root, d->comm);
        p += chunk;
        n -= (size_t)chunk;
    } while (n > 0);
}

/* One message per INT_MAX floats: MPI counts are int, and a message split into pieces
 * arrives in order between one pair of ranks on one tag. */
enum { DIST_TAG_GATHER = 0x646d };

void dist_gatherv_float(const struct dist *d, const float *send, size_t n, float *recv,
                        const size_t *counts, int root)
{
    if (d->rank != root) {
        for (size_t done = 0; done < n;) {
            const int chunk = chunk_of(n - done);
            MPI_Send(send + done, chunk, MPI_FLOAT, root, DIST_TAG_GATHER, d->comm);
            done += (size_t)chunk;
        }
        return;
    }
    size_t at = 0;
    for (int r = 0; r < d->size; r++) {
        if (r == root) {
            if (n)
                memcpy(recv + at, send, n * sizeof *send);
        } else {
            for (size_t done = 0; done < counts[r];) {
                const int chunk = chunk_of(counts[r] - done);
                MPI_Recv(recv + at + done, chunk, MPI_FLOAT, r, DIST_TAG_GATHER, d->comm,
                         MPI_STATUS_IGNORE);
                done += (size_t)chunk;
            }
        }
        at += counts[r];
    }
}

void dist_barrier(const struct dist *d) { MPI_Barrier(d->comm); }

_Noreturn void dist_abort(const struct dist *d, int code, const char *msg)
{
    fprintf(stderr, "dmlp: rank %d: fatal: %s (aborting the job)\n", d ? d->rank : -1, msg);
    fflush(stderr);
    MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code ? code : 1);
    abort();
}

void dist_library_version(char *out, size_t n)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    size_t end = 0;
    while (end < (size_t)len && v[end] && v[end] != '\n' && v[end] != ',')
        end++;
    snprintf(out, n, "%.*s (MPI %d.%d)", (int)end, v, MPI_VERSION, MPI_SUBVERSION);
}

void dist_hostname(char *out, size_t n)
{
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    snprintf(out, n, "%.*s", len, name);
}

void dist_allreduce_max_u64(const struct dist *d, uint64_t *buf, size_t n)
{
    allreduce_op(d, buf, n, MPI_UINT64_T, sizeof(uint64_t), MPI_MAX);
}

const void *dist_mpi_comm(const struct dist *d) { return &d->comm; }
