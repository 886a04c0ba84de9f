#define _POSIX_C_SOURCE 200809L
/* import_csv: `dmlp import csv`, a CSV file with a header row into a dataset file: the
 * column roles (features, the label column or the target columns), numbers checked field by
 * field, and class names turned into ids by a table of names in order of first appearance
 * (written as the class_names attribute). Tokenising is csv.c's; every message names the
 * file, line and column. */
#include "data/dataset.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "data/dataset_internal.h"

enum csv_role { CSV_FEATURE, CSV_LABEL, CSV_TARGET };
enum csv_label_kind { LABELS_UNDECIDED, LABELS_NUMBERS, LABELS_NAMES };

/* Class names seen so far, ids in order of first appearance; an open-addressing hash table
 * (slots hold id + 1, 0 = empty) keeps lookups O(1) for many classes. */
struct name_table {
    char **names; /* [n] by id */
    size_t n, cap;
    size_t *slots;
    size_t n_slots;
};

/* Everything the import accumulates; rows grow by doubling. */
struct csv_import {
    const char *path;
    size_t n_cols;
    char **header;        /* [n_cols] trimmed column names */
    int *role;            /* [n_cols] enum csv_role */
    size_t *slot;         /* [n_cols] index among the features or the targets */
    size_t label_col;
    size_t d, k_targets;
    size_t n, cap;        /* rows stored, rows allocated */
    float *features;      /* [cap, d] */
    float *targets;       /* [cap, k_targets] */
    int32_t *labels;      /* [cap] */
    int label_kind;
    size_t first_label_line;
    char first_label[64]; /* the first row's label, for the numbers-or-names message */
    int32_t max_label;
    struct name_table classes;
};

/* The largest class id, so that K = id + 1 still fits the int32 num_classes attribute; and
 * how many class names fit the class_names attribute (HDF5 keeps attributes in the object
 * header, at most 64 KiB, 16 bytes per variable-length string). */
enum { CSV_MAX_LABEL = INT32_MAX - 1, CSV_MAX_CLASS_NAMES = 4000 };

static char *trim(char *s);
static int csv_header(struct csv_import *im, const struct csv_record *rec,
                      const char *label_column, const char *target_columns,
                      struct dmlp_error *err);
static int csv_row(struct csv_import *im, const struct csv_record *rec, struct dmlp_error *err);
static int csv_finish(struct csv_import *im, const char *output, struct dmlp_error *err);
static void csv_import_free(struct csv_import *im);

/* ---- public functions -------------------------------------------------------------------- */

int dataset_import_csv(const char *path, const char *label_column, const char *target_columns,
                       const char *output, struct dmlp_error *err)
{
    if (!label_column == !target_columns)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: give exactly one of --label-column NAME "
                         "(classification) and --target-columns A,B,... (regression)", path);
    struct csv_reader *r = NULL;
    struct csv_import im = {.path = path};
    const struct csv_record *rec = NULL;
    int rc = csv_open(&r, path, err);
    if (rc == DMLP_OK)
        rc = csv_next(r, &rec, err);
    if (rc == DMLP_OK && !rec)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: empty file: expected a header row naming "
                       "the columns", path);
    if (rc == DMLP_OK)
        rc = csv_header(&im, rec, label_column, target_columns, err);
    size_t header_line = rec ? rec->line : 0;
    while (rc == DMLP_OK && (rc = csv_next(r, &rec, err)) == DMLP_OK && rec)
        rc = csv_row(&im, rec, err);
    if (rc == DMLP_OK && im.n == 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: no data rows after the header (line %zu)",
                       path, header_line);
    if (rc == DMLP_OK)
        rc = csv_finish(&im, output, err);
    csv_close(&r);
    csv_import_free(&im);
    return rc;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Strips surrounding whitespace in place (a quoted field may hold line breaks). */
static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && is_space(s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* "a, b, c" (cut short with "..." past about 600 characters) for "no such column" messages. */
static void column_list(const struct csv_import *im, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < im->n_cols; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", im->header[i]);
        if (w < 0 || (size_t)w >= cap - used || used + (size_t)w > 600) {
            snprintf(out + used, cap - used, "%s... (%zu columns)", i ? ", " : "", im->n_cols);
            return;
        }
        used += (size_t)w;
    }
}

/* Finds the column called name; exactly one must have it. */
static int find_column(const struct csv_import *im, const char *option, const char *name,
                       size_t *col, struct dmlp_error *err)
{
    size_t found = 0, first = 0;
    for (size_t i = 0; i < im->n_cols; i++) {
        if (strcmp(im->header[i], name) == 0) {
            if (found == 0)
                first = i;
            else
                return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s %s: columns %zu and %zu both "
                                 "have this name", im->path, option, name, first + 1, i + 1);
            found++;
        }
    }
    if (!found) {
        char list[700];
        column_list(im, list, sizeof list);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s %s: no such column (columns: %s)",
                         im->path, option, name, list);
    }
    *col = first;
    return DMLP_OK;
}

/* The header's column names, trimmed, and the per-column role and slot arrays. */
static int read_column_names(struct csv_import *im, const struct csv_record *rec,
                             struct dmlp_error *err)
{
    im->n_cols = rec->n_fields;
    im->header = calloc(im->n_cols, sizeof *im->header);
    im->role = calloc(im->n_cols, sizeof *im->role);
    im->slot = calloc(im->n_cols, sizeof *im->slot);
    if (!im->header || !im->role || !im->slot)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", im->path);
    for (size_t i = 0; i < im->n_cols; i++)
        if (!(im->header[i] = strdup(trim(rec->fields[i]))))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", im->path);
    return DMLP_OK;
}

/* One name of --target-columns (the whole list is target_columns, for messages) becomes
 * the next /targets column. */
static int add_target_column(struct csv_import *im, const char *target_columns,
                             const char *name, struct dmlp_error *err)
{
    size_t col = 0;
    int rc;
    if (!*name)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: --target-columns %s: empty column name in "
                         "the list", im->path, target_columns);
    if ((rc = find_column(im, "--target-columns", name, &col, err)) != DMLP_OK)
        return rc;
    if (im->role[col] == CSV_TARGET)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: --target-columns %s: column %s is listed "
                         "twice", im->path, target_columns, name);
    im->role[col] = CSV_TARGET;
    im->slot[col] = im->k_targets++;
    return DMLP_OK;
}

/* Each listed name, in the order given, becomes the next /targets column. */
static int mark_target_columns(struct csv_import *im, const char *target_columns,
                               struct dmlp_error *err)
{
    char *list = strdup(target_columns);
    if (!list)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", im->path);
    int rc;
    for (char *p = list;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        rc = add_target_column(im, target_columns, trim(p), err);
        if (rc != DMLP_OK || !comma)
            break;
        p = comma + 1;
    }
    free(list);
    return rc;
}

static int csv_header(struct csv_import *im, const struct csv_record *rec,
                      const char *label_column, const char *target_columns,
                      struct dmlp_error *err)
{
    int rc = read_column_names(im, rec, err);
    if (rc)
        return rc;
    if (label_column) {
        if ((rc = find_column(im, "--label-column", label_column, &im->label_col, err)))
            return rc;
        im->role[im->label_col] = CSV_LABEL;
    } else if ((rc = mark_target_columns(im, target_columns, err))) {
        return rc;
    }
    for (size_t i = 0; i < im->n_cols; i++)
        if (im->role[i] == CSV_FEATURE)
            im->slot[i] = im->d++;
    if (im->d == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: no feature columns: the header has only "
                         "the %s", im->path, rec->line,
                         label_column ? "label column" : "target columns");
    return DMLP_OK;
}

static int add_rows(struct csv_import *im, struct dmlp_error *err)
{
    size_t cap = im->cap ? 2 * im->cap : 1024, fbytes, ybytes;
    if (cap < im->cap || dmlp_mul_size(&fbytes, cap, im->d * sizeof(float)) ||
        dmlp_mul_size(&ybytes, cap, im->k_targets ? im->k_targets * sizeof(float)
                                                  : sizeof(int32_t)))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: too many rows (size overflow)", im->path);
    float *f = realloc(im->features, fbytes);
    if (f)
        im->features = f;
    void *y = f ? realloc(im->k_targets ? (void *)im->targets : (void *)im->labels, ybytes)
                : NULL;
    if (!y)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory at %zu rows", im->path,
                         im->n);
    if (im->k_targets)
        im->targets = y;
    else
        im->labels = y;
    im->cap = cap;
    return DMLP_OK;
}

/* Parses a whole field as a finite number; *is_number = 0 when it is not one at all. */
static int parse_number(const char *s, double *v, int *is_number, int *in_range)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    *is_number = end != s && *end == '\0';
    /* strtod flags underflow with ERANGE too; only overflow is out of range. */
    *in_range = !(errno == ERANGE && fabs(*v) > 1.0);
    return *is_number && *in_range && isfinite(*v);
}

static int csv_float(const struct csv_import *im, size_t line, size_t col, char *field,
                     float *out, struct dmlp_error *err)
{
    const char *s = trim(field), *name = im->header[col];
    double v;
    int is_number, in_range;
    if (!*s)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': empty field (missing "
                         "value)", im->path, line, name);
    if (!parse_number(s, &v, &is_number, &in_range)) {
        if (!is_number)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a number",
                             im->path, line, name, s);
        if (in_range)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a finite "
                             "number", im->path, line, name, s);
    }
    if (!in_range || fabs(v) > FLT_MAX)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is outside the "
                         "float32 range (about 3.4e38)", im->path, line, name, s);
    *out = (float)v;
    return DMLP_OK;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The id of name, adding it as the next id if new; -1 when out of memory. */
static int name_id(struct name_table *t, const char *name, size_t *id)
{
    if (2 * (t->n + 1) > t->n_slots) {
        size_t n_slots = t->n_slots ? 2 * t->n_slots : 64;
        size_t *slots = calloc(n_slots, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = (size_t)hash_name(t->names[i]) & (n_slots - 1);
            while (slots[h])
                h = (h + 1) & (n_slots - 1);
            slots[h] = i + 1;
        }
        free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
    }
    size_t h = (size_t)hash_name(name) & (t->n_slots - 1);
    while (t->slots[h]) {
        if (strcmp(t->names[t->slots[h] - 1], name) == 0) {
            *id = t->slots[h] - 1;
            return 0;
        }
        h = (h + 1) & (t->n_slots - 1);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **names = realloc(t->names, cap * sizeof *names);
        if (!names)
            return -1;
        t->names = names;
        t->cap = cap;
    }
    if (!(t->names[t->n] = strdup(name)))
        return -1;
    t->slots[h] = t->n + 1;
    *id = t->n++;
    return 0;
}

/* A label: a class number (a non-negative integer, "3" or "3.0"), or a class name when the
 * first row's label is not a number. Mixing the two is refused: a typo in a numeric column
 * must not quietly become a class of its own. */
static int csv_label(struct csv_import *im, size_t line, char *field, int32_t *out,
                     struct dmlp_error *err)
{
    const char *s = trim(field), *name = im->header[im->label_col];
    if (!*s)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': empty field (missing "
                         "label)", im->path, line, name);
    double v;
    int is_number, in_range;
    parse_number(s, &v, &is_number, &in_range);
    if (im->label_kind == LABELS_UNDECIDED) {
        im->label_kind = is_number ? LABELS_NUMBERS : LABELS_NAMES;
        im->first_label_line = line;
        snprintf(im->first_label, sizeof im->first_label, "%s", s);
    }
    if (im->label_kind == LABELS_NUMBERS) {
        if (!is_number)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a class "
                             "number (line %zu has the number '%s'; a label column holds "
                             "class numbers or class names, not both)", im->path, line, name,
                             s, im->first_label_line, im->first_label);
        if (!(v >= 0.0) || v != floor(v) || v > (double)CSV_MAX_LABEL)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a class "
                             "number (an integer from 0 to %d)", im->path, line, name, s,
                             CSV_MAX_LABEL);
        *out = (int32_t)v;
        if (*out > im->max_label)
            im->max_label = *out;
        return DMLP_OK;
    }
    if (is_number)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is a number, but the "
                         "labels are class names (line %zu has '%s'; a label column holds "
                         "class numbers or class names, not both)", im->path, line, name, s,
                         im->first_label_line, im->first_label);
    size_t id;
    if (name_id(&im->classes, s, &id))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory for class names", im->path);
    if (im->classes.n > CSV_MAX_CLASS_NAMES)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': more than %d distinct "
                         "class names, the most the class_names attribute holds; number "
                         "the classes instead", im->path, line, name, CSV_MAX_CLASS_NAMES);
    *out = (int32_t)id;
    return DMLP_OK;
}

static int csv_row(struct csv_import *im, const struct csv_record *rec, struct dmlp_error *err)
{
    if (rec->n_fields != im->n_cols)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: %zu field%s, header has %zu", im->path,
                         rec->line, rec->n_fields, rec->n_fields == 1 ? "" : "s", im->n_cols);
    int rc;
    if (im->n == im->cap && (rc = add_rows(im, err)) != DMLP_OK)
        return rc;
    float *x = im->features + im->n * im->d;
    float *t = im->k_targets ? im->targets + im->n * im->k_targets : NULL;
    for (size_t c = 0; c < im->n_cols; c++) {
        switch (im->role[c]) {
        case CSV_FEATURE:
            rc = csv_float(im, rec->line, c, rec->fields[c], x + im->slot[c], err);
            break;
        case CSV_TARGET:
            rc = csv_float(im, rec->line, c, rec->fields[c], t + im->slot[c], err);
            break;
        default:
            rc = csv_label(im, rec->line, rec->fields[c], im->labels + im->n, err);
            break;
        }
        if (rc != DMLP_OK)
            return rc;
    }
    im->n++;
    return DMLP_OK;
}

static int csv_finish(struct csv_import *im, const char *output, struct dmlp_error *err)
{
    const int with_labels = im->k_targets == 0;
    const size_t k = !with_labels                       ? im->k_targets
                     : im->label_kind == LABELS_NAMES ? im->classes.n
                                                        : (size_t)im->max_label + 1;
    struct dataset *ds = NULL;
    int rc = dataset_alloc(&ds, im->n, im->d, k, with_labels, err);
    if (rc != DMLP_OK) {
        dmlp_error_prefix(err, "%s", im->path);
        return rc;
    }
    memcpy(ds->features, im->features, im->n * im->d * sizeof(float));
    if (with_labels)
        memcpy(ds->labels, im->labels, im->n * sizeof(int32_t));
    else
        memcpy(ds->targets, im->targets, im->n * k * sizeof(float));
    ds->k = k;
    rc = dataset_write_named(ds, output, im->label_kind == LABELS_NAMES
                                             ? (const char *const *)im->classes.names
                                             : NULL, err);
    dataset_free(&ds);
    return rc;
}

static void csv_import_free(struct csv_import *im)
{
    for (size_t i = 0; im->header && i < im->n_cols; i++)
        free(im->header[i]);
    free(im->header);
    free(im->role);
    free(im->slot);
    free(im->features);
    free(im->targets);
    free(im->labels);
    for (size_t i = 0; i < im->classes.n; i++)
        free(im->classes.names[i]);
    free(im->classes.names);
    free(im->classes.slots);
}
