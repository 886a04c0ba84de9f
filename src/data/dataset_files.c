#define _POSIX_C_SOURCE 200809L
/* dataset_files: a data set given as several files (data.train: [a.h5, b.h5], or a glob,
 * "runs/step-*.h5"), read as the concatenation of the files in order: whole, a row range of the
 * concatenation, or one rank's shard of it. Every file's layout is validated before any
 * value is read (the same width, the same kind of answer, /weights in all or none), and
 * every message names the file at fault with its own row numbers. */
#include "data/dataset.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "core/partition.h"
#include "data/dataset_internal.h"
#include "par/dist.h"

/* ---- expansion ------------------------------------------------------------------------- */

static int is_pattern(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends s (copied) to f's paths; cap is the room in f->path. */
static int push(struct dataset_files *f, size_t *cap, const char *s)
{
    if (f->n == *cap) {
        const size_t c = *cap ? 2 * *cap : 8;
        char **p = realloc(f->path, c * sizeof *p);
        if (!p)
            return -1;
        f->path = p;
        *cap = c;
    }
    if (!(f->path[f->n] = strdup(s)))
        return -1;
    f->n++;
    return 0;
}

/* The matches of one pattern, sorted by name (bytewise, whatever the locale), appended. */
static int expand_pattern(struct dataset_files *f, size_t *cap, const char *pattern,
                          const char *key, struct dmlp_error *err)
{
    glob_t g;
    const int rc = glob(pattern, GLOB_ERR | GLOB_NOSORT, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        globfree(&g);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: '%s' matches no file", key, pattern);
    }
    if (rc != 0) {
        globfree(&g);
        return dmlp_fail(err, rc == GLOB_NOSPACE ? DMLP_ERR_RUNTIME : DMLP_ERR_INPUT,
                         "%s: '%s': %s", key, pattern,
                         rc == GLOB_NOSPACE ? "out of memory" : "a directory cannot be read");
    }
    qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, by_name);
    int bad = 0;
    for (size_t i = 0; i < g.gl_pathc && !bad; i++)
        bad = push(f, cap, g.gl_pathv[i]);
    globfree(&g);
    return bad ? dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", key) : DMLP_OK;
}

int dataset_files_expand(struct dataset_files *out, char *const *entries, size_t n,
                         const char *key, struct dmlp_error *err)
{
    struct dataset_files f = {0};
    size_t cap = 0;
    int rc = DMLP_OK;
    for (size_t i = 0; i < n && rc == DMLP_OK; i++) {
        if (is_pattern(entries[i]))
            rc = expand_pattern(&f, &cap, entries[i], key, err);
        else if (push(&f, &cap, entries[i]))
            rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", key);
    }
    if (rc == DMLP_OK && f.n) {
        /* "a.h5", or "a.h5 and 11 more files" where a message names the set. */
        const size_t len = strlen(f.path[0]) + 48;
        if (!(f.name = malloc(len)))
            rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", key);
        else if (f.n == 1)
            snprintf(f.name, len, "%s", f.path[0]);
        else
            snprintf(f.name, len, "%s and %zu more file%s", f.path[0], f.n - 1,
                     f.n == 2 ? "" : "s");
    }
    if (rc != DMLP_OK)
        dataset_files_free(&f);
    *out = f;
    return rc;
}

void dataset_files_free(struct dataset_files *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->path[i]);
    free(f->path);
    free(f->name);
    memset(f, 0, sizeof *f);
}

/* ---- the survey: every file's layout, before any value is read ---------------------------- */

/* What the files of a set have in common, and where each begins in the concatenation. */
struct survey {
    size_t n, d, k;     /* all rows; columns; targets' width (labels: see nc) */
    int has_labels, has_weights;
    size_t nc;          /* the largest num_classes attribute of any file, 0 if none */
    size_t *row0;       /* [files + 1]: file i holds rows [row0[i], row0[i + 1]) */
    dataset_file_visit *visit; /* called on each file that passes, or NULL */
    void *ctx;
};

/* Fails: file i's <what> is mine, where the set's first file has first. */
static int differs(const struct dataset_files *f, size_t i, const char *what, size_t mine,
                   size_t first, struct dmlp_error *err)
{
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s %zu, but %s (the first file of the set) "
                     "has %zu; every file of a set must have the same", f->path[i], what,
                     mine, f->path[0], first);
}

/* File i's layout against the set's so far (its first file's). */
static int survey_file(const struct dataset_files *f, size_t i, struct survey *s,
                       struct dmlp_error *err)
{
    hid_t file;
    struct layout lo;
    int rc = dsr_open_file(f->path[i], &file, err);
    if (rc != DMLP_OK)
        return rc;
    if ((rc = dsr_layout_open(file, f->path[i], &lo, err)) == DMLP_OK) {
        const int has_w = lo.wds >= 0;
        if (i == 0) {
            s->d = lo.d;
            s->k = lo.k;
            s->has_labels = lo.has_labels;
            s->has_weights = has_w;
        }
        if (lo.has_labels != s->has_labels)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: has %s, but %s (the first file of the "
                           "set) has %s; every file of a set must have the same",
                           f->path[i], lo.has_labels ? "/labels" : "/targets", f->path[0],
                           s->has_labels ? "/labels" : "/targets");
        else if (lo.d != s->d)
            rc = differs(f, i, "/features: columns", lo.d, s->d, err);
        else if (!lo.has_labels && lo.k != s->k)
            rc = differs(f, i, "/targets: columns", lo.k, s->k, err);
        else if (has_w != s->has_weights)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s /weights, but %s (the first file of "
                           "the set) %s; give every file of a set /weights, or none",
                           f->path[i], has_w ? "has" : "has no", f->path[0],
                           has_w ? "has none" : "has them");
        if (rc == DMLP_OK && lo.has_nc && (size_t)lo.nc > s->nc)
            s->nc = (size_t)lo.nc;
        if (rc == DMLP_OK && s->visit)
            rc = s->visit(file, f->path[i], &lo, i, s->row0[i], s->ctx, err);
        s->row0[i + 1] = s->row0[i] + lo.n;
        dsr_layout_close(&lo);
    }
    struct dataset *none = NULL;
    return dsr_close_file(file, f->path[i], rc, &none, err);
}

/* s->visit and s->ctx are the caller's; the rest is filled. */
static int survey(const struct dataset_files *f, struct survey *s, struct dmlp_error *err)
{
    dataset_file_visit *visit = s->visit;
    void *ctx = s->ctx;
    memset(s, 0, sizeof *s);
    s->visit = visit;
    s->ctx = ctx;
    if (!(s->row0 = calloc(f->n + 1, sizeof *s->row0)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", f->name);
    int rc = DMLP_OK;
    for (size_t i = 0; i < f->n && rc == DMLP_OK; i++)
        rc = survey_file(f, i, s, err);
    s->n = s->row0[f->n];
    return rc;
}

/* ---- reading rows of the concatenation ---------------------------------------------------- */

/* ds's rows [at, at + n) as a dataset of their own (the arrays point into ds). */
static struct dataset rows_of(const struct dataset *ds, size_t at, size_t n)
{
    return (struct dataset){
        .n = n, .d = ds->d, .k = ds->k,
        .features = ds->features + at * ds->d,
        .labels = ds->labels ? ds->labels + at : NULL,
        .targets = ds->targets ? ds->targets + at * ds->k : NULL,
        .weights = ds->weights ? ds->weights + at : NULL,
    };
}

/* File i's rows [r0, r0 + view->n) into view, checked; *k_rows as dsr_check_block. */
static int read_part(const char *path, size_t r0, struct dataset *view, int64_t *wide,
                     size_t *k_rows, struct dmlp_error *err)
{
    hid_t file;
    struct layout lo;
    int rc = dsr_open_file(path, &file, err);
    if (rc != DMLP_OK)
        return rc;
    if ((rc = dsr_layout_open(file, path, &lo, err)) == DMLP_OK) {
        if (r0 + view->n > lo.n) /* it shrank since the survey */
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features now has %zu rows; it changed "
                           "while it was being read", path, lo.n);
        else if ((rc = dsr_read_block(&lo, path, r0, view, wide, H5P_DEFAULT, NULL, err)) ==
                 DMLP_OK)
            rc = dsr_check_block(&lo, path, r0, view, wide, k_rows, err);
        dsr_layout_close(&lo);
    }
    struct dataset *none = NULL;
    return dsr_close_file(file, path, rc, &none, err);
}

/* Rows [row0, row0 + ds->n) of the concatenation s surveyed into ds (which has room for
 * them), in this process alone; sets ds->k. */
static int read_range_into(struct dataset *ds, const struct dataset_files *f,
                           const struct survey *s, size_t row0, struct dmlp_error *err)
{
    const size_t nrows = ds->n;
    int64_t *wide = NULL;
    int rc = DMLP_OK;
    if (s->has_labels && !(wide = malloc((nrows ? nrows : 1) * sizeof *wide)))
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory for %zu labels", f->name,
                       nrows);
    size_t k = s->has_labels ? s->nc : s->k;
    for (size_t i = 0; i < f->n && rc == DMLP_OK; i++) {
        const size_t lo = s->row0[i] > row0 ? s->row0[i] : row0;
        const size_t hi = s->row0[i + 1] < row0 + nrows ? s->row0[i + 1] : row0 + nrows;
        if (lo >= hi)
            continue;
        struct dataset view = rows_of(ds, lo - row0, hi - lo);
        size_t k_part = 0;
        rc = read_part(f->path[i], lo - s->row0[i], &view, wide ? wide + (lo - row0) : NULL,
                       &k_part, err);
        if (k_part > k)
            k = k_part;
    }
    free(wide);
    ds->k = k;
    return rc;
}

/* Rows [row0, row0 + nrows) of the concatenation s surveyed, in this process alone. */
static int read_range(struct dataset **out, const struct dataset_files *f,
                      const struct survey *s, size_t row0, size_t nrows,
                      struct dmlp_error *err)
{
    struct dataset *ds = NULL;
    int rc = dataset_alloc_rows(&ds, nrows, s->d, s->k, s->has_labels, err);
    if (rc == DMLP_OK && s->has_weights)
        rc = dataset_alloc_weights(ds, err);
    if (rc != DMLP_OK)
        dmlp_error_prefix(err, "%s", f->name);
    else
        rc = read_range_into(ds, f, s, row0, err);
    if (rc != DMLP_OK)
        dataset_free(&ds);
    *out = ds;
    return rc;
}

static int read_files(struct dataset **out, const struct dataset_files *f,
                      struct dmlp_error *err)
{
    struct survey s = {0};
    *out = NULL;
    int rc = survey(f, &s, err);
    if (rc == DMLP_OK)
        rc = read_range(out, f, &s, 0, s.n, err);
    free(s.row0);
    return rc;
}

int dataset_files_shape(const struct dataset_files *f, struct dataset_shape *out,
                        struct dmlp_error *err)
{
    return dataset_files_survey(f, NULL, NULL, out, err);
}

int dataset_files_survey(const struct dataset_files *f, dataset_file_visit *visit, void *ctx,
                         struct dataset_shape *out, struct dmlp_error *err)
{
    struct survey s = {.visit = visit, .ctx = ctx};
    int rc;
    H5UTIL_QUIETLY(rc, survey(f, &s, err));
    free(s.row0);
    *out = (struct dataset_shape){.n = s.n, .d = s.d, .k = s.has_labels ? s.nc : s.k,
                                  .has_labels = s.has_labels, .has_weights = s.has_weights};
    return rc;
}

static int read_files_into(struct dataset *ds, const struct dataset_files *f,
                           struct dmlp_error *err)
{
    struct survey s = {0};
    int rc = survey(f, &s, err);
    if (rc == DMLP_OK && (s.n != ds->n || s.d != ds->d || s.has_labels != !!ds->labels ||
                          s.has_weights != !!ds->weights))
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: the files changed while they were being "
                       "read (%zu rows of %zu columns, room was made for %zu of %zu)",
                       f->name, s.n, s.d, ds->n, ds->d);
    if (rc == DMLP_OK)
        rc = read_range_into(ds, f, &s, 0, err);
    free(s.row0);
    return rc;
}

int dataset_read_files_into(struct dataset *ds, const struct dataset_files *f,
                            struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, read_files_into(ds, f, err));
    return rc;
}

int dataset_read_files(struct dataset **out, const struct dataset_files *f,
                       struct dmlp_error *err)
{
    if (f->n == 1)
        return dataset_read(out, f->path[0], err);
    int rc;
    H5UTIL_QUIETLY(rc, read_files(out, f, err));
    return rc;
}

/* Every rank surveys the files itself (they must agree on the row count) and reads its
 * slice of the concatenation with independent reads: a collective transfer spans one
 * file, and a slice may span several. */
static int read_files_shard(struct dataset **out, const struct dataset_files *f,
                            const struct dist *d, struct dataset_shard *info,
                            struct dmlp_error *err)
{
    struct survey s = {0};
    *out = NULL;
    survey(f, &s, err);
    if (dist_agree(d, err) != DMLP_OK) {
        free(s.row0);
        return err->code;
    }
    uint64_t row0, len;
    dmlp_slice(s.n, dist_size(d), dist_rank(d), &row0, &len);
    *info = (struct dataset_shard){.row0 = (size_t)row0, .global_rows = s.n, .collective = 0};
    read_range(out, f, &s, (size_t)row0, (size_t)len, err);
    free(s.row0);
    if (dist_agree(d, err) != DMLP_OK) {
        dataset_free(out);
        return err->code;
    }
    if (s.has_labels) { /* K: the largest over every rank's rows (and num_classes) */
        uint64_t k = (*out)->k;
        dist_allreduce_max_u64(d, &k, 1);
        (*out)->k = (size_t)k;
    }
    return DMLP_OK;
}

int dataset_read_files_shard(struct dataset **out, const struct dataset_files *f,
                             const struct dist *d, struct dataset_shard *shard,
                             struct dmlp_error *err)
{
    if (f->n == 1)
        return dataset_read_shard(out, f->path[0], d, shard, err);
    struct dmlp_error e;
    struct dataset_shard info = {0};
    dmlp_error_clear(&e);
    int rc;
    H5UTIL_QUIETLY(rc, read_files_shard(out, f, d, &info, &e));
    if (shard)
        *shard = info;
    if (err)
        *err = e;
    return rc;
}
