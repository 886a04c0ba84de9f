#define _POSIX_C_SOURCE 200809L
/* stream: the streamed placement's reader (stream.h). HDF5 is used once, to validate the
 * files and find where each array lies; after that the reader thread uses pread alone, so
 * it never calls HDF5 (which is not thread-safe here) while the main thread writes
 * checkpoints. */
#include "data/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "data/dataset_internal.h"
#include "nn/vec.h"

/* One file of the set: where its rows sit in the concatenation and its arrays in the file,
 * and what it looked like when opened (a file that changes under a run is an error). */
struct sfile {
    char *path;
    size_t row0, n;
    off_t off_x, off_y, off_w; /* byte offsets of /features, /labels or /targets, /weights
                                  (-1: none) */
    int has_nc;
    int64_t nc;
    off_t size;
    struct timespec mtime;
};

enum slot_state { SLOT_EMPTY, SLOT_PENDING, SLOT_LOADING, SLOT_READY, SLOT_FAILED };

struct slot {
    uint64_t *perm;            /* [cap]: position in the window -> resident row */
    size_t rows;               /* rows of the window it holds */
    uint64_t g;                /* the global window (epoch × windows + window) it holds or
                                  is getting */
    enum slot_state state;
    struct dmlp_error err;
};

struct stream {
    struct stream_params p;
    struct stream_stats st;
    struct sfile *file;
    size_t nfiles;
    size_t ycols;              /* 1 (labels) or k (targets) */
    /* the geometry: blocks, windows, slots of cap rows */
    size_t nb, nfull, cap, nslots;
    uint64_t nw;
    struct dataset *res;       /* the resident rows: nslots × cap, one allocation (mem) */
    void *mem;
    struct slot slot[2];
    /* stream_weigh's */
    const double *class_w;
    float *w;
    /* the reader: its own copy of an epoch's block order */
    uint64_t *sigma, sigma_epoch;
    uint64_t perm_epoch;       /* one window: the epoch whose order slot 0's perm holds */
    pthread_t thread;
    int started, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* ---- the order ------------------------------------------------------------------------ */

/* Rows of block j (the last may be short). */
static size_t block_len(const struct stream_params *p, size_t n, uint64_t j)
{
    const size_t a = (size_t)j * p->block_rows;
    return n - a < p->block_rows ? n - a : p->block_rows;
}

/* Epoch e's block order: the full blocks permuted (identity without shuffle, or with one
 * window), the short block last. */
static void block_order(uint64_t *sigma, const struct stream_params *p, size_t n, uint64_t nw,
                        uint64_t e)
{
    const size_t nfull = n / p->block_rows, nb = (n + p->block_rows - 1) / p->block_rows;
    if (p->shuffle && nw > 1) {
        struct rng r;
        rng_seed(&r, p->seed, STREAM_BLOCKS + e);
        rng_permutation(&r, sigma, nfull);
    } else {
        for (size_t i = 0; i < nfull; i++)
            sigma[i] = i;
    }
    if (nb > nfull)
        sigma[nfull] = nfull;
}

/* The order of the m rows of window w of epoch e, as indices into the window's rows. */
static void window_perm(uint64_t *perm, size_t m, const struct stream_params *p, uint64_t nw,
                        uint64_t e, uint64_t w)
{
    if (!p->shuffle) {
        for (size_t i = 0; i < m; i++)
            perm[i] = i;
        return;
    }
    struct rng r;
    rng_seed(&r, p->seed, nw == 1 ? p->epoch_stream + e : STREAM_WINDOW + (e << 32) + w);
    rng_permutation(&r, perm, m);
}

static uint64_t windows_of(const struct stream_params *p, size_t n)
{
    const size_t nb = (n + p->block_rows - 1) / p->block_rows;
    return (nb + p->window_blocks - 1) / p->window_blocks;
}

int stream_order(uint64_t *order, size_t n, const struct stream_params *p, uint64_t epoch,
                 struct dmlp_error *err)
{
    const uint64_t nw = windows_of(p, n);
    const size_t nb = (n + p->block_rows - 1) / p->block_rows;
    const size_t cap = nw == 1 ? n : p->window_blocks * p->block_rows;
    uint64_t *sigma = malloc((nb ? nb : 1) * sizeof *sigma);
    uint64_t *rows = malloc((cap ? cap : 1) * sizeof *rows), *perm = malloc((cap ? cap : 1) *
                                                                             sizeof *perm);
    if (!sigma || !rows || !perm) {
        free(sigma);
        free(rows);
        free(perm);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for the order of %zu rows", n);
    }
    block_order(sigma, p, n, nw, epoch);
    size_t pos = 0;
    for (uint64_t w = 0; w < nw; w++) {
        size_t m = 0;
        for (uint64_t b = w * p->window_blocks; b < nb && b < (w + 1) * p->window_blocks; b++)
            for (size_t i = 0; i < block_len(p, n, sigma[b]); i++)
                rows[m++] = sigma[b] * p->block_rows + i;
        window_perm(perm, m, p, nw, epoch, w);
        for (size_t j = 0; j < m; j++)
            order[pos++] = rows[perm[j]];
    }
    free(sigma);
    free(rows);
    free(perm);
    return DMLP_OK;
}

/* ---- reading rows with pread ------------------------------------------------------------ */

static int pread_all(int fd, void *buf, size_t bytes, off_t at, const char *path,
                     const char *name, struct dmlp_error *err)
{
    char *p = buf;
    while (bytes > 0) {
        const ssize_t got = pread(fd, p, bytes, at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: %s", path, name,
                             got < 0 ? strerror(errno) : "the file ends early (was it cut "
                             "short while training?)");
        p += got;
        at += got;
        bytes -= (size_t)got;
    }
    return DMLP_OK;
}

/* Rows [a, b) of file f (its own row numbers) into resident row at. */
static int read_file_rows(struct stream *s, const struct sfile *f, size_t a, size_t b,
                          size_t at, struct dmlp_error *err)
{
    const int fd = open(f->path, O_RDONLY);
    struct stat now;
    if (fd < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", f->path, strerror(errno));
    int rc = DMLP_OK;
    if (fstat(fd, &now) != 0 || now.st_size != f->size ||
        now.st_mtim.tv_sec != f->mtime.tv_sec || now.st_mtim.tv_nsec != f->mtime.tv_nsec)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: the file changed while training (size or "
                       "modification time); the streamed placement reads it from disk every "
                       "epoch and needs it unchanged", f->path);
    const size_t d = s->st.d, yc = s->ycols, m = b - a;
    struct dataset *r = s->res;
    if (rc == DMLP_OK)
        rc = pread_all(fd, r->features + at * d, m * d * 4, f->off_x + (off_t)(a * d * 4),
                       f->path, "/features", err);
    if (rc == DMLP_OK)
        rc = s->st.has_labels
                 ? pread_all(fd, r->labels + at, m * 4, f->off_y + (off_t)(a * 4), f->path,
                             "/labels", err)
                 : pread_all(fd, r->targets + at * yc, m * yc * 4,
                             f->off_y + (off_t)(a * yc * 4), f->path, "/targets", err);
    if (rc == DMLP_OK && f->off_w >= 0)
        rc = pread_all(fd, r->weights + at, m * 4, f->off_w + (off_t)(a * 4), f->path,
                       "/weights", err);
    close(fd);
    return rc;
}

/* Rows [a, b) of the concatenation into resident row at. */
static int read_rows(struct stream *s, size_t a, size_t b, size_t at, struct dmlp_error *err)
{
    for (size_t i = 0; i < s->nfiles && a < b; i++) {
        const struct sfile *f = &s->file[i];
        if (a >= f->row0 + f->n)
            continue;
        const size_t hi = b < f->row0 + f->n ? b : f->row0 + f->n;
        const int rc = read_file_rows(s, f, a - f->row0, hi - f->row0, at, err);
        if (rc != DMLP_OK)
            return rc;
        at += hi - a;
        a = hi;
    }
    return DMLP_OK;
}

/* ---- opening: layouts, offsets, and one pass over the values ------------------------------ */

/* Where an array of the open file lies, if plain reads can take it: contiguous storage of
 * the native type. */
static int array_offset(hid_t file, const char *path, const char *name, hid_t native,
                        const char *type_name, off_t *out, struct dmlp_error *err)
{
    const hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot open", path, name);
    const hid_t type = H5Dget_type(ds);
    const haddr_t at = H5Dget_offset(ds);
    const int same = type >= 0 && H5Tequal(type, native) > 0;
    if (type >= 0)
        H5Tclose(type);
    H5Dclose(ds);
    if (!same || at == HADDR_UNDEF)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: the streamed placement reads %s "
                         "contiguous, uncompressed %s arrays; this one is %s (rewrite the file "
                         "with h5repack -l CONTI, or dmlp import)", path, name,
                         "plain", type_name, !same ? "of another type" : "chunked or compact");
    *out = (off_t)at;
    return DMLP_OK;
}

/* dataset_files_survey's visit: where file i's arrays lie (plain reads need them
 * contiguous and of the native type), its rows and num_classes, and what it looked like. */
static int visit_file(hid_t file, const char *path, const struct layout *lo, size_t i,
                      size_t row0, void *ctx, struct dmlp_error *err)
{
    struct stream *s = ctx;
    struct sfile *f = &s->file[i];
    struct stat st;
    f->row0 = row0;
    f->n = lo->n;
    f->has_nc = lo->has_nc;
    f->nc = lo->nc;
    f->off_w = -1;
    int rc = array_offset(file, path, "/features", H5T_NATIVE_FLOAT, "float32", &f->off_x,
                          err);
    if (rc == DMLP_OK)
        rc = lo->has_labels ? array_offset(file, path, "/labels", H5T_NATIVE_INT32, "int32",
                                           &f->off_y, err)
                            : array_offset(file, path, "/targets", H5T_NATIVE_FLOAT, "float32",
                                           &f->off_y, err);
    if (rc == DMLP_OK && lo->wds >= 0)
        rc = array_offset(file, path, "/weights", H5T_NATIVE_FLOAT, "float32", &f->off_w, err);
    if (rc == DMLP_OK && stat(path, &st) != 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (rc == DMLP_OK) {
        f->size = st.st_size;
        f->mtime = st.st_mtim;
    }
    return rc;
}

/* The checks of dataset_read on rows [a, a + m) of file f (resident rows from at), and
 * their sums into s->st. *kmax: the largest label + 1 so far. */
static int check_and_sum(struct stream *s, const struct sfile *f, size_t a, size_t m,
                         size_t at, size_t *kmax, struct dmlp_error *err)
{
    const struct dataset *r = s->res;
    const size_t d = s->st.d, yc = s->ycols;
    const float *x = r->features + at * d;
    int rc = dsr_check_finite(x, m, d, a, f->path, "/features", err);
    if (rc != DMLP_OK)
        return rc;
    kernel_vec()->feature_sums(s->st.fsum, s->st.fsumsq, x, m, d);
    if (!s->st.has_labels) {
        const float *t = r->targets + at * yc;
        if ((rc = dsr_check_finite(t, m, yc, a, f->path, "/targets", err)) != DMLP_OK)
            return rc;
        kernel_vec()->feature_sums(s->st.tsum, s->st.tsumsq, t, m, yc);
    }
    if (s->st.has_weights &&
        (rc = dsr_check_weights(r->weights + at, m, a, f->path, err)) != DMLP_OK)
        return rc;
    for (size_t i = 0; s->st.has_labels && i < m; i++) {
        const int32_t y = r->labels[at + i];
        if (y < 0)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: value %" PRId32 " at row %zu "
                             "is negative", f->path, y, a + i);
        if (f->has_nc && y >= f->nc)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: num_classes attribute is %"
                             PRId64 ", but label %" PRId32 " at row %zu is not below it",
                             f->path, f->nc, y, a + i);
        if ((size_t)y + 1 > *kmax)
            *kmax = (size_t)y + 1;
        if ((size_t)y < s->st.k)
            s->st.class_count[y]++;
    }
    for (size_t i = 0; s->st.has_weights && i < m; i++)
        s->st.weight_sum += (double)r->weights[at + i];
    if (!s->st.has_weights)
        s->st.weight_sum += (double)m;
    return DMLP_OK;
}

/* The geometry from the row count, and the budget's check. */
static int plan(struct stream *s, struct dmlp_error *err)
{
    const struct stream_params *p = &s->p;
    const size_t n = s->st.n;
    s->nb = (n + p->block_rows - 1) / p->block_rows;
    s->nfull = n / p->block_rows;
    s->nw = windows_of(p, n);
    s->cap = s->nw == 1 ? n : p->window_blocks * p->block_rows;
    s->nslots = s->nw == 1 ? 1 : 2;
    if (s->nw > 1 && s->cap < p->batch)
        return dmlp_fail(err, DMLP_ERR_INPUT, "data.block_rows × data.shuffle_window = %zu "
                         "rows is less than training.batch_size %zu: a step must fit in two "
                         "windows", s->cap, p->batch);
    const size_t row = 4 * (s->st.d + s->ycols + (s->st.has_weights ? 1 : 0)) + 4 + 8;
    const double need = (double)s->nslots * (double)s->cap * (double)row;
    if (need > (double)p->memory_bytes)
        return dmlp_fail(err, DMLP_ERR_INPUT, "data.memory_mb %.0f cannot hold the %zu "
                         "window%s of %zu rows that streaming keeps (%.0f MiB); raise "
                         "data.memory_mb, or lower data.block_rows or data.shuffle_window",
                         (double)p->memory_bytes / 1048576.0, s->nslots,
                         s->nslots == 1 ? "" : "s", s->cap, need / 1048576.0 + 0.5);
    return DMLP_OK;
}

static int alloc_resident(struct stream *s, struct dmlp_error *err)
{
    const size_t rows = s->nslots * s->cap;
    struct dataset_shape sh = {.n = rows, .d = s->st.d, .k = s->st.k,
                               .has_labels = s->st.has_labels,
                               .has_weights = s->st.has_weights};
    const size_t bytes = dataset_bytes(&sh, rows);
    if (!(s->mem = dmlp_alloc_aligned(bytes)) || dataset_place(&s->res, &sh, rows, s->mem, err))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for %zu resident rows", rows);
    for (size_t i = 0; i < s->nslots; i++)
        if (!(s->slot[i].perm = malloc((s->cap ? s->cap : 1) * sizeof(uint64_t))))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for %zu rows", s->cap);
    if (!(s->sigma = malloc((s->nb ? s->nb : 1) * sizeof *s->sigma)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    s->sigma_epoch = UINT64_MAX;
    s->perm_epoch = UINT64_MAX;
    return DMLP_OK;
}

/* Every row once, file by file, in chunks of a block: values checked, sums taken. One
 * window: straight into its slot, which then needs no second read. */
static int first_pass(struct stream *s, struct dmlp_error *err)
{
    const size_t R = s->p.block_rows, d = s->st.d, yc = s->ycols;
    size_t kmax = 0;
    /* K: the largest num_classes (the survey's k); without one, the classes are counted up
     * to 2^20 (which bounds the count array), and K is the largest label + 1 (a larger
     * label is still found, and refused by the network's check). */
    const size_t declared = s->st.has_labels ? s->st.k : 0;
    if (s->st.has_labels)
        s->st.k = declared ? declared : (size_t)1 << 20;
    if (!(s->st.fsum = calloc(2 * d, sizeof(double))) ||
        (!s->st.has_labels && !(s->st.tsum = calloc(2 * yc, sizeof(double)))) ||
        (s->st.has_labels && !(s->st.class_count = calloc(s->st.k + 1, sizeof(uint64_t)))))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for the statistics");
    s->st.fsumsq = s->st.fsum + d;
    if (s->st.tsum)
        s->st.tsumsq = s->st.tsum + yc;
    const double t0 = dmlp_now();
    for (size_t i = 0; i < s->nfiles; i++) {
        const struct sfile *f = &s->file[i];
        for (size_t a = 0; a < f->n; a += R) {
            const size_t m = f->n - a < R ? f->n - a : R, at = s->nw == 1 ? f->row0 + a : 0;
            int rc = read_file_rows(s, f, a, a + m, at, err);
            if (rc == DMLP_OK)
                rc = check_and_sum(s, f, a, m, at, &kmax, err);
            if (rc != DMLP_OK)
                return rc;
        }
    }
    if (s->st.has_labels && !declared)
        s->st.k = kmax;
    s->st.pass_seconds = dmlp_now() - t0;
    s->st.pass_bytes = (double)s->st.n * 4.0 *
                       (double)(d + yc + (s->st.has_weights ? 1 : 0));
    return DMLP_OK;
}

static int open_stream(struct stream *s, const struct dataset_files *f, struct dmlp_error *err)
{
    if (!(s->file = calloc(f->n, sizeof *s->file)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    s->nfiles = f->n;
    for (size_t i = 0; i < f->n; i++)
        if (!(s->file[i].path = strdup(f->path[i])))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    struct dataset_shape sh;
    int rc = dataset_files_survey(f, visit_file, s, &sh, err);
    if (rc != DMLP_OK)
        return rc;
    s->st.n = sh.n;
    s->st.d = sh.d;
    s->st.k = sh.k;
    s->st.has_labels = sh.has_labels;
    s->st.has_weights = sh.has_weights;
    s->ycols = s->st.has_labels ? 1 : s->st.k;
    rc = plan(s, err);
    if (rc == DMLP_OK)
        rc = alloc_resident(s, err);
    if (rc == DMLP_OK)
        rc = first_pass(s, err);
    return rc;
}

int stream_open(struct stream **out, const struct dataset_files *f,
                const struct stream_params *p, struct dmlp_error *err)
{
    *out = NULL;
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    s->p = *p;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc;
    H5UTIL_QUIETLY(rc, open_stream(s, f, err));
    if (rc != DMLP_OK) {
        stream_close(&s);
        return rc;
    }
    s->res->k = s->st.k;
    *out = s;
    return DMLP_OK;
}

/* ---- the reader -------------------------------------------------------------------------- */

/* The weights of rows [base, base + m), as the other placements compute them once. */
static void weigh(struct stream *s, size_t base, size_t m)
{
    const struct dataset *r = s->res;
    for (size_t i = base; s->w && i < base + m; i++) {
        const double wi = (r->weights ? (double)r->weights[i] : 1.0) *
                          (s->class_w ? s->class_w[r->labels[i]] : 1.0);
        s->w[i] = (float)wi;
    }
}

/* Global window g into slot i: its blocks read in the epoch's block order, transformed,
 * and its order of positions. Runs on the reader thread (or, for one window, at start). */
static int load_window(struct stream *s, size_t i, uint64_t g, struct dmlp_error *err)
{
    const uint64_t e = g / s->nw, w = g % s->nw;
    const size_t base = i * s->cap, R = s->p.block_rows, W = s->p.window_blocks;
    if (s->sigma_epoch != e) {
        block_order(s->sigma, &s->p, s->st.n, s->nw, e);
        s->sigma_epoch = e;
    }
    size_t m = 0;
    for (uint64_t b = w * W; b < s->nb && b < (w + 1) * W; b++) {
        const size_t len = block_len(&s->p, s->st.n, s->sigma[b]);
        const int rc = read_rows(s, (size_t)s->sigma[b] * R, (size_t)s->sigma[b] * R + len,
                                 base + m, err);
        if (rc != DMLP_OK)
            return rc;
        m += len;
    }
    weigh(s, base, m);
    struct slot *sl = &s->slot[i];
    window_perm(sl->perm, m, &s->p, s->nw, e, w);
    for (size_t j = 0; j < m; j++)
        sl->perm[j] += base;
    sl->rows = m;
    return DMLP_OK;
}

static int pending_slot(const struct stream *s)
{
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slot[i].state == SLOT_PENDING)
            return (int)i;
    return -1;
}

static void *reader_main(void *arg)
{
    struct stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int i;
        while (!s->quit && (i = pending_slot(s)) < 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit)
            break;
        struct slot *sl = &s->slot[i];
        const uint64_t g = sl->g;
        sl->state = SLOT_LOADING;
        pthread_mutex_unlock(&s->mu);
        struct dmlp_error e = {0};
        const int rc = load_window(s, (size_t)i, g, &e);
        pthread_mutex_lock(&s->mu);
        sl->err = e;
        sl->state = rc == DMLP_OK ? SLOT_READY : SLOT_FAILED;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Asks for global window g in its slot, unless the slot has it or is getting it. The
 * caller holds the mutex. */
static void request(struct stream *s, uint64_t g)
{
    struct slot *sl = &s->slot[g % 2];
    if (sl->g == g && sl->state != SLOT_EMPTY)
        return;
    while (sl->state == SLOT_LOADING) /* another window: let it land first */
        pthread_cond_wait(&s->cv, &s->mu);
    sl->g = g;
    sl->state = SLOT_PENDING;
    pthread_cond_broadcast(&s->cv);
}

/* ---- the interface ---------------------------------------------------------------------- */

const struct stream_stats *stream_stats(const struct stream *s)
{
    return &s->st;
}

struct dataset *stream_resident(struct stream *s)
{
    return s->res;
}

size_t stream_window_rows(const struct stream *s)
{
    return s->cap;
}

uint64_t stream_windows(const struct stream *s)
{
    return s->nw;
}

size_t stream_resident_bytes(const struct stream *s)
{
    return s->nslots * s->cap *
           (4 * (s->st.d + s->ycols + (s->st.has_weights ? 1 : 0)) + 4 + 8);
}

void stream_weigh(struct stream *s, const double *class_w, float *w)
{
    s->class_w = class_w;
    s->w = w;
}

int stream_start(struct stream *s, uint64_t seed, struct dmlp_error *err)
{
    s->p.seed = seed;
    if (s->nw == 1) { /* the first pass left the whole set in slot 0 */
        weigh(s, 0, s->st.n);
        s->slot[0].rows = s->st.n;
        s->slot[0].state = SLOT_READY;
        return DMLP_OK;
    }
    if (pthread_create(&s->thread, NULL, reader_main, s) != 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "cannot start the reader thread");
    s->started = 1;
    return DMLP_OK;
}

int stream_positions(struct stream *s, uint64_t epoch, uint64_t lo, uint64_t hi,
                     uint64_t *idx, double *waited, struct dmlp_error *err)
{
    if (s->nw == 1) {
        struct slot *sl = &s->slot[0];
        if (s->perm_epoch != epoch) {
            window_perm(sl->perm, s->st.n, &s->p, 1, epoch, 0);
            s->perm_epoch = epoch;
        }
        memcpy(idx, sl->perm + lo, (size_t)(hi - lo) * sizeof *idx);
        return DMLP_OK;
    }
    const double t0 = dmlp_now();
    int rc = DMLP_OK;
    pthread_mutex_lock(&s->mu);
    for (uint64_t p = lo; p < hi && rc == DMLP_OK;) {
        const uint64_t w = p / s->cap, g = epoch * s->nw + w, end = (w + 1) * s->cap;
        struct slot *sl = &s->slot[g % 2];
        request(s, g);
        while (sl->state == SLOT_PENDING || sl->state == SLOT_LOADING)
            pthread_cond_wait(&s->cv, &s->mu);
        if (sl->state == SLOT_FAILED) {
            *err = sl->err;
            sl->state = SLOT_EMPTY; /* the next request reads it again */
            rc = err->code;
            break;
        }
        for (; p < hi && p < end; p++)
            *idx++ = sl->perm[p - w * s->cap];
    }
    if (rc == DMLP_OK) /* read ahead: the window after lo's (the next epoch's first after the
                          last), into the slot of the window before lo's, now done with */
        request(s, epoch * s->nw + lo / s->cap + 1);
    pthread_mutex_unlock(&s->mu);
    *waited = dmlp_now() - t0;
    return rc;
}

void stream_close(struct stream **sp)
{
    struct stream *s = *sp;
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    for (size_t i = 0; i < s->nfiles; i++)
        free(s->file[i].path);
    free(s->file);
    for (size_t i = 0; i < 2; i++)
        free(s->slot[i].perm);
    free(s->sigma);
    free(s->st.fsum);
    free(s->st.tsum);
    free(s->st.class_count);
    dataset_free(&s->res);
    dmlp_free_aligned(s->mem);
    free(s);
    *sp = NULL;
}
