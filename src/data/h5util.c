#define _POSIX_C_SOURCE 200809L
#include "data/h5util.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fill_info(hid_t type, hid_t space, struct h5util_info *in);
static const char *shape_text(const struct h5util_info *in, char *buf, size_t cap);
static int storage_ok(hid_t dset, const char *path, const char *name, struct dmlp_error *err);

void h5util_quiet_begin(struct h5util_quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5util_quiet_end(const struct h5util_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

struct reason_buf {
    char *buf;
    size_t cap;
};

static herr_t reason_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    struct reason_buf *r = data;
    if (n == 0 && e->desc && e->desc[0])
        snprintf(r->buf, r->cap, "%s", e->desc);
    return 0;
}

/* Walking upward starts at the most specific entry. That may be an MPI error string, which
 * some MPI-IO layers make a multi-line "error stack" of their own: one line is kept, with
 * every run of blanks and line breaks made one space, so a message stays one line. */
const char *h5util_reason(char *buf, size_t cap)
{
    struct reason_buf r = {buf, cap};
    if (cap == 0)
        return buf;
    snprintf(buf, cap, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_walk, &r);
    size_t o = 0;
    int blank = 1; /* drops leading blanks */
    for (size_t i = 0; buf[i]; i++) {
        const unsigned char c = (unsigned char)buf[i];
        if (isspace(c) || iscntrl(c)) {
            blank = 1;
            continue;
        }
        if (blank && o > 0)
            buf[o++] = ' ';
        blank = 0;
        buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return buf;
}

int h5util_write_array(hid_t file, const char *path, const char *name, hid_t file_type,
                       hid_t mem_type, int rank, const hsize_t *dims, const void *data,
                       struct dmlp_error *err)
{
    char why[256];
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dset = space >= 0 ? H5Dcreate2(file, name, file_type, space, H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT)
                            : H5I_INVALID_HID;
    int ok = dset >= 0 && H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (!ok)
        h5util_reason(why, sizeof why);
    if (dset >= 0 && H5Dclose(dset) < 0 && ok) {
        ok = 0;
        h5util_reason(why, sizeof why);
    }
    if (space >= 0)
        H5Sclose(space);
    return ok ? DMLP_OK
              : dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: writing %s failed: %s", path, name, why);
}

/* The one attribute writer: type is the file type (a copy this function closes when
 * owned), mem_type and value what H5Awrite takes; count 0 makes a scalar, else a 1-D
 * attribute of count elements. */
static int write_attr(hid_t loc, const char *path, const char *obj, const char *name,
                      hid_t type, int owned, hid_t mem_type, const void *value, size_t count,
                      struct dmlp_error *err)
{
    char why[256];
    const hsize_t dims[1] = {count};
    hid_t space = type < 0 ? H5I_INVALID_HID
                  : count  ? H5Screate_simple(1, dims, NULL)
                           : H5Screate(H5S_SCALAR);
    hid_t attr = space >= 0 ? H5Acreate_by_name(loc, obj, name, type, space, H5P_DEFAULT,
                                                H5P_DEFAULT, H5P_DEFAULT)
                            : H5I_INVALID_HID;
    int ok = attr >= 0 && H5Awrite(attr, mem_type, value) >= 0;
    if (!ok)
        h5util_reason(why, sizeof why);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (owned && type >= 0)
        H5Tclose(type);
    return ok ? DMLP_OK
              : dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: writing attribute %s on %s failed: %s",
                          path, name, obj, why);
}

int h5util_write_str_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          const char *text, struct dmlp_error *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type >= 0 && (H5Tset_size(type, strlen(text) + 1) < 0 ||
                      H5Tset_strpad(type, H5T_STR_NULLTERM) < 0)) {
        H5Tclose(type);
        type = H5I_INVALID_HID;
    }
    return write_attr(loc, path, obj, name, type, 1, type, text, 0, err);
}

int h5util_write_str_list_attr(hid_t loc, const char *path, const char *obj,
                               const char *name, const char *const *names, size_t n,
                               struct dmlp_error *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type >= 0 && (H5Tset_size(type, H5T_VARIABLE) < 0 ||
                      H5Tset_cset(type, H5T_CSET_UTF8) < 0)) {
        H5Tclose(type);
        type = H5I_INVALID_HID;
    }
    return write_attr(loc, path, obj, name, type, 1, type, names, n, err);
}

int h5util_write_num_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          hid_t file_type, hid_t mem_type, const void *value,
                          struct dmlp_error *err)
{
    return write_attr(loc, path, obj, name, file_type, 0, mem_type, value, 0, err);
}

/* ---- checked readers ------------------------------------------------------------------- */

/* "root attribute 'x'" or "/layers/0 attribute 'x'": how messages name an attribute. */
static const char *attr_label(const char *obj, const char *name, char *buf, size_t cap)
{
    if (!strcmp(obj, "/") || !strcmp(obj, "."))
        snprintf(buf, cap, "root attribute '%s'", name);
    else
        snprintf(buf, cap, "%s attribute '%s'", obj, name);
    return buf;
}

/* What the attribute readers expect, for their messages. */
enum attr_want { WANT_UINT, WANT_FLOAT, WANT_STRING };

static int class_fits(const struct h5util_info *in, enum attr_want want)
{
    switch (want) {
    case WANT_UINT:
        return in->cls == H5T_INTEGER && in->size >= 1 && in->size <= 8;
    case WANT_FLOAT:
        return (in->cls == H5T_INTEGER && in->size >= 1 && in->size <= 8) ||
               (in->cls == H5T_FLOAT && in->size >= 2 && in->size <= 8);
    case WANT_STRING:
        return in->cls == H5T_STRING;
    }
    return 0;
}

static const char *want_text(enum attr_want want, uint64_t min, uint64_t max, char *buf,
                             size_t cap)
{
    switch (want) {
    case WANT_UINT:
        if (min == 0 && max == UINT64_MAX)
            snprintf(buf, cap, "a scalar non-negative integer");
        else
            snprintf(buf, cap, "a scalar integer from %" PRIu64 " to %" PRIu64, min, max);
        break;
    case WANT_FLOAT:
        snprintf(buf, cap, "a scalar number");
        break;
    case WANT_STRING:
        snprintf(buf, cap, "a scalar string");
        break;
    }
    return buf;
}

/* Opens the attribute and learns what it is. DMLP_OK with *attr open (or, when it is
 * missing and present is not NULL, H5I_INVALID_HID and *present = 0). */
static int attr_open(hid_t loc, const char *path, const char *obj, const char *name,
                     hid_t *attr, struct h5util_info *in, int *present, struct dmlp_error *err)
{
    char why[256], label[160];
    *attr = H5I_INVALID_HID;
    if (present)
        *present = 0;
    attr_label(obj, name, label, sizeof label);
    htri_t has = H5Aexists_by_name(loc, obj, name, H5P_DEFAULT);
    if (has < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be looked up: %s", path, label,
                         h5util_reason(why, sizeof why));
    if (!has)
        return present ? DMLP_OK
                       : dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is missing", path, label);
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    int rc = DMLP_OK;
    if (a < 0 || type < 0 || space < 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be opened: %s", path, label,
                       h5util_reason(why, sizeof why));
    } else {
        fill_info(type, space, in);
        if (in->rank < -1)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has an unreadable dataspace", path,
                           label);
    }
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    if (rc != DMLP_OK) {
        if (a >= 0)
            H5Aclose(a);
        return rc;
    }
    *attr = a;
    if (present)
        *present = 1;
    return DMLP_OK;
}

/* Reads a one-element string attribute a (class H5T_STRING, checked) into *out. */
static int read_str_value(hid_t a, char **out)
{
    *out = NULL;
    hid_t ft = H5Aget_type(a);
    if (ft < 0)
        return -1;
    hid_t mt = H5Tcopy(H5T_C_S1);
    int ok = mt >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) >= 0; /* no ASCII<->UTF-8 path */
    if (ok && H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        ok = H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Aread(a, mt, &s) >= 0;
        if (ok)
            *out = strdup(s ? s : "");
        if (s)
            H5free_memory(s);
        ok = ok && *out;
    } else if (ok) {
        const size_t sz = H5Tget_size(ft);
        char *buf = sz > 0 && sz < SIZE_MAX ? calloc(sz + 1, 1) : NULL;
        ok = buf && H5Tset_size(mt, sz + 1) >= 0 && H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0 &&
             H5Aread(a, mt, buf) >= 0;
        if (ok)
            *out = buf;
        else
            free(buf);
    }
    if (mt >= 0)
        H5Tclose(mt);
    H5Tclose(ft);
    return ok ? 0 : -1;
}

/* "an int32", "a uint8", "a float64", "an enum". */
static const char *article(const char *noun)
{
    return strchr("aeioAEIO", noun[0]) && noun[0] ? "an" : "a";
}

/* The value of a one-element attribute of the wrong class, for the message: a number
 * ("float64 (1.5)"), a string ("string ('abc')"), or the type alone. */
static const char *value_text(hid_t a, const struct h5util_info *in, char *buf, size_t cap)
{
    if (in->npoints == 1 && (in->cls == H5T_FLOAT || in->cls == H5T_INTEGER) &&
        in->size <= 8) {
        double v;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0) {
            snprintf(buf, cap, "%s %s (%.17g)", article(in->type_name), in->type_name, v);
            return buf;
        }
    } else if (in->npoints == 1 && in->cls == H5T_STRING) {
        char *s = NULL;
        if (read_str_value(a, &s) == 0) {
            snprintf(buf, cap, "a string ('%.40s%s')", s, strlen(s) > 40 ? "..." : "");
            free(s);
            return buf;
        }
    }
    snprintf(buf, cap, "%s %s", article(in->type_name), in->type_name);
    return buf;
}

/* The checks every attribute reader shares: one element, of the expected class. */
static int attr_check(hid_t a, const char *path, const char *obj, const char *name,
                      const struct h5util_info *in, enum attr_want want, uint64_t min,
                      uint64_t max, struct dmlp_error *err)
{
    char label[160], wtext[96], got[160];
    attr_label(obj, name, label, sizeof label);
    want_text(want, min, max, wtext, sizeof wtext);
    if (in->rank < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has no value (a null dataspace), "
                         "expected %s", path, label, wtext);
    if (in->npoints != 1)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is %s (%s), expected %s", path, label,
                         shape_text(in, got, sizeof got), in->type_name, wtext);
    if (!class_fits(in, want))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is %s, expected %s", path, label,
                         value_text(a, in, got, sizeof got), wtext);
    return DMLP_OK;
}

int h5util_read_uint_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          uint64_t min, uint64_t max, uint64_t *value, int *present,
                          struct dmlp_error *err)
{
    char label[160], wtext[96], why[256];
    hid_t a;
    struct h5util_info in;
    int rc = attr_open(loc, path, obj, name, &a, &in, present, err);
    if (rc != DMLP_OK || a < 0)
        return rc;
    rc = attr_check(a, path, obj, name, &in, WANT_UINT, min, max, err);
    if (rc == DMLP_OK) {
        /* Read in the stored signedness at 64 bits: every stored value converts exactly
         * (a uint64 2^64 - 1 read as int64 would be clipped to 2^63 - 1). */
        int64_t s = 0;
        uint64_t u = 0;
        const herr_t st = in.is_signed ? H5Aread(a, H5T_NATIVE_INT64, &s)
                                       : H5Aread(a, H5T_NATIVE_UINT64, &u);
        if (in.is_signed && s >= 0)
            u = (uint64_t)s;
        attr_label(obj, name, label, sizeof label);
        want_text(WANT_UINT, min, max, wtext, sizeof wtext);
        if (st < 0)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be read: %s", path, label,
                           h5util_reason(why, sizeof why));
        else if (in.is_signed && s < 0)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is %" PRId64 ", expected %s", path,
                           label, s, wtext);
        else if (u < min || u > max)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is %" PRIu64 ", expected %s", path,
                           label, u, wtext);
        else
            *value = u;
    }
    H5Aclose(a);
    return rc;
}

int h5util_read_float_attr(hid_t loc, const char *path, const char *obj, const char *name,
                           double *value, int *present, struct dmlp_error *err)
{
    char label[160], why[256];
    hid_t a;
    struct h5util_info in;
    int rc = attr_open(loc, path, obj, name, &a, &in, present, err);
    if (rc != DMLP_OK || a < 0)
        return rc;
    rc = attr_check(a, path, obj, name, &in, WANT_FLOAT, 0, 0, err);
    double v;
    if (rc == DMLP_OK && H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be read: %s", path,
                       attr_label(obj, name, label, sizeof label),
                       h5util_reason(why, sizeof why));
    else if (rc == DMLP_OK)
        *value = v;
    H5Aclose(a);
    return rc;
}

int h5util_read_str_attr(hid_t loc, const char *path, const char *obj, const char *name,
                         char **out, int *present, struct dmlp_error *err)
{
    char label[160], why[256];
    hid_t a;
    struct h5util_info in;
    *out = NULL;
    int rc = attr_open(loc, path, obj, name, &a, &in, present, err);
    if (rc != DMLP_OK || a < 0)
        return rc;
    rc = attr_check(a, path, obj, name, &in, WANT_STRING, 0, 0, err);
    if (rc == DMLP_OK && read_str_value(a, out) != 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be read as text: %s", path,
                       attr_label(obj, name, label, sizeof label),
                       h5util_reason(why, sizeof why));
    H5Aclose(a);
    return rc;
}

/* Element classes and sizes HDF5 converts exactly (integers) or to the nearest float. */
static int kind_fits(const struct h5util_info *in, unsigned kinds)
{
    return ((kinds & H5UTIL_FLOAT) && in->cls == H5T_FLOAT &&
            (in->size == 2 || in->size == 4 || in->size == 8)) ||
           ((kinds & H5UTIL_INTEGER) && in->cls == H5T_INTEGER && in->size >= 1 &&
            in->size <= 8);
}

static const char *dims_text(int rank, const hsize_t *dims, char *buf, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? ", " : "",
                              (unsigned long long)dims[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
    return buf;
}

/* The element kind, rank and (when dims is not NULL) dimensions of a dataset. */
static int kind_and_shape_ok(const struct h5util_info *in, const char *path, const char *name,
                             unsigned kinds, const char *what, int rank, const hsize_t *dims,
                             struct dmlp_error *err)
{
    char got[160], want[160];
    if (in->rank < -1)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read its shape", path, name);
    if (in->rank == -1)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: has no data (null dataspace), expected "
                         "a %d-D %s", path, name, rank, what);
    if (!kind_fits(in, kinds))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: expected %s, got %s %s", path, name,
                         what, in->type_name, dims_text(in->rank, in->dims, got, sizeof got));
    if (in->rank != rank)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: expected %d-D %s, got %d-D (%s %s)",
                         path, name, rank, what, in->rank, in->type_name,
                         dims_text(in->rank, in->dims, got, sizeof got));
    for (int i = 0; dims && i < rank; i++)
        if (in->dims[i] != dims[i])
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has shape %s, expected %s", path,
                             name, dims_text(rank, in->dims, got, sizeof got),
                             dims_text(rank, dims, want, sizeof want));
    return DMLP_OK;
}

int h5util_open_dataset(hid_t loc, const char *path, const char *name, unsigned kinds,
                        const char *what, int rank, const hsize_t *dims, hid_t *dset,
                        struct h5util_info *info, struct dmlp_error *err)
{
    char why[256];
    struct h5util_info tmp, *in = info ? info : &tmp;
    *dset = H5I_INVALID_HID;
    /* A path whose parent is missing (or is no group) is missing too. */
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: missing (expected a %d-D %s)", path,
                         name, rank, what);
    hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
    if (obj < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot open: %s", path, name,
                         h5util_reason(why, sizeof why));
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: is a group or named type, expected a "
                         "dataset", path, name);
    }
    hid_t type = H5Dget_type(obj), space = H5Dget_space(obj);
    int rc = DMLP_OK;
    if (type < 0 || space < 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read its type or shape: %s", path,
                       name, h5util_reason(why, sizeof why));
    } else {
        fill_info(type, space, in);
        rc = kind_and_shape_ok(in, path, name, kinds, what, rank, dims, err);
    }
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    if (rc == DMLP_OK)
        rc = storage_ok(obj, path, name, err);
    if (rc != DMLP_OK) {
        H5Dclose(obj);
        return rc;
    }
    *dset = obj;
    return DMLP_OK;
}

int h5util_read_dataset(hid_t loc, const char *path, const char *name, unsigned kinds,
                        const char *what, int rank, const hsize_t *dims, hid_t mem_type,
                        void *buf, struct dmlp_error *err)
{
    char why[256];
    if (!dims)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: %s: reading needs its dimensions", path,
                         name);
    hid_t ds;
    struct h5util_info in;
    int rc = h5util_open_dataset(loc, path, name, kinds, what, rank, dims, &ds, &in, err);
    if (rc != DMLP_OK)
        return rc;
    if (in.npoints > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be read (damaged file or checksum "
                       "mismatch): %s", path, name, h5util_reason(why, sizeof why));
    H5Dclose(ds);
    return rc;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void type_name(hid_t type, char *out, size_t cap)
{
    const size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
    case H5T_FLOAT:
        snprintf(out, cap, "float%zu", bits);
        break;
    case H5T_INTEGER:
        snprintf(out, cap, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_STRING:
        snprintf(out, cap, "string");
        break;
    case H5T_COMPOUND:
        snprintf(out, cap, "compound");
        break;
    case H5T_ENUM:
        snprintf(out, cap, "enum");
        break;
    case H5T_ARRAY:
        snprintf(out, cap, "array type");
        break;
    case H5T_VLEN:
        snprintf(out, cap, "variable-length sequence");
        break;
    case H5T_REFERENCE:
        snprintf(out, cap, "reference");
        break;
    case H5T_OPAQUE:
        snprintf(out, cap, "opaque");
        break;
    case H5T_BITFIELD:
        snprintf(out, cap, "bitfield");
        break;
    default:
        snprintf(out, cap, "non-numeric type");
        break;
    }
}

/* rank -2 when the dataspace cannot be read. */
static void fill_info(hid_t type, hid_t space, struct h5util_info *in)
{
    memset(in, 0, sizeof *in);
    in->cls = H5Tget_class(type);
    in->size = H5Tget_size(type);
    in->is_signed = in->cls == H5T_INTEGER && H5Tget_sign(type) != H5T_SGN_NONE;
    type_name(type, in->type_name, sizeof in->type_name);
    switch (H5Sget_simple_extent_type(space)) {
    case H5S_NULL:
        in->rank = -1;
        break;
    case H5S_SCALAR:
        in->rank = 0;
        in->npoints = 1;
        break;
    case H5S_SIMPLE: {
        const int r = H5Sget_simple_extent_ndims(space);
        const hssize_t np = H5Sget_simple_extent_npoints(space);
        if (r < 0 || r > H5S_MAX_RANK || np < 0 ||
            H5Sget_simple_extent_dims(space, in->dims, NULL) < 0)
            in->rank = -2;
        else {
            in->rank = r;
            in->npoints = (hsize_t)np;
        }
        break;
    }
    default:
        in->rank = -2;
        break;
    }
}

/* "a scalar", "a 3-element array", "a [2, 3] array", "no value (a null dataspace)". */
static const char *shape_text(const struct h5util_info *in, char *buf, size_t cap)
{
    char d[96];
    if (in->rank < 0)
        snprintf(buf, cap, "no value (a null dataspace)");
    else if (in->rank == 0)
        snprintf(buf, cap, "a scalar");
    else if (in->rank == 1)
        snprintf(buf, cap, "a %llu-element array", (unsigned long long)in->dims[0]);
    else
        snprintf(buf, cap, "a %s array", dims_text(in->rank, in->dims, d, sizeof d));
    return buf;
}

/* The usual name of a filter a file may name without its name (h5py's LZF stores one). */
static const char *filter_known_name(H5Z_filter_t id)
{
    switch (id) {
    case H5Z_FILTER_DEFLATE: return "deflate";
    case H5Z_FILTER_SHUFFLE: return "shuffle";
    case H5Z_FILTER_FLETCHER32: return "fletcher32";
    case H5Z_FILTER_SZIP: return "szip";
    case H5Z_FILTER_NBIT: return "nbit";
    case H5Z_FILTER_SCALEOFFSET: return "scaleoffset";
    case 307: return "bzip2";
    case 32000: return "lzf";
    case 32001: return "blosc";
    case 32004: return "lz4";
    case 32008: return "bitshuffle";
    case 32015: return "zstd";
    default: return "unknown";
    }
}

/* Whether a file path named inside path's file (a virtual dataset's source) can be found:
 * as given, or beside the file, where HDF5 looks first. */
static int source_exists(const char *path, const char *src)
{
    if (!strcmp(src, "."))
        return 1;
    if (access(src, F_OK) == 0)
        return 1;
    if (src[0] == '/')
        return 0;
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return 0;
    snprintf(dir, sizeof dir, "%.*s/%s", (int)(slash - path), path, src);
    return access(dir, F_OK) == 0;
}

/* A virtual dataset is refused, naming its first source and whether that can be found. */
static int refuse_virtual(hid_t dcpl, const char *path, const char *name,
                          struct dmlp_error *err)
{
    size_t n = 0;
    char src[PATH_MAX] = "?", sds[256] = "?";
    if (H5Pget_virtual_count(dcpl, &n) >= 0 && n > 0) {
        if (H5Pget_virtual_filename(dcpl, 0, src, sizeof src) < 0)
            snprintf(src, sizeof src, "?");
        if (H5Pget_virtual_dsetname(dcpl, 0, sds, sizeof sds) < 0)
            snprintf(sds, sizeof sds, "?");
    }
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is a virtual dataset: its data is mapped "
                     "from %zu source(s), the first dataset '%s' of '%s'%s; dmlp reads only "
                     "data stored in the file itself (a missing source would read as fill "
                     "values): make a self-contained copy with h5repack -l CONTI %s COPY.h5",
                     path, name, n, sds, src, source_exists(path, src) ? "" : " (missing)",
                     path);
}

/* A dataset kept in n_external external files is refused, naming the first. */
static int refuse_external(hid_t dcpl, int n_external, const char *path, const char *name,
                           struct dmlp_error *err)
{
    char file[PATH_MAX] = "?";
    off_t off = 0;
    hsize_t size = 0;
    if (H5Pget_external(dcpl, 0, sizeof file, file, &off, &size) < 0)
        snprintf(file, sizeof file, "?");
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s keeps its data in %d external file(s), the "
                     "first '%s'; dmlp reads only data stored in the file itself (an external "
                     "file shorter than declared would read as zeros): copy it in with "
                     "h5repack -l CONTI %s COPY.h5", path, name, n_external, file, path);
}

/* Filter i of the dataset's pipeline must be one this library can decode. */
static int filter_decodable(hid_t dcpl, int i, const char *path, const char *name,
                            struct dmlp_error *err)
{
    char why[256];
    unsigned flags = 0, cd[16], config = 0, avail_config = 0;
    size_t n_cd = sizeof cd / sizeof cd[0];
    char fname[128] = "";
    const H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &n_cd, cd, sizeof fname,
                                           fname, &config);
    if (id < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read filter %d of its "
                         "pipeline: %s", path, name, i, h5util_reason(why, sizeof why));
    /* H5Zfilter_avail also tries the plugin directories. */
    const htri_t avail = H5Zfilter_avail(id);
    if (avail > 0 && H5Zget_filter_info(id, &avail_config) >= 0 &&
        (avail_config & H5Z_FILTER_CONFIG_DECODE_ENABLED))
        return DMLP_OK;
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is stored through the HDF5 filter '%s' "
                     "(id %d), which this HDF5 library cannot decode (%s): decompress it "
                     "with h5repack -f NONE %s COPY.h5, or install the filter's plugin "
                     "(HDF5_PLUGIN_PATH)", path, name,
                     fname[0] ? fname : filter_known_name(id), (int)id,
                     avail > 0 ? "its decoder is not built in" : "no plugin for it was found",
                     path);
}

/* Where the dataset's bytes live, and whether this library can decode them. */
static int storage_ok(hid_t dset, const char *path, const char *name, struct dmlp_error *err)
{
    char why[256];
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read its storage properties: %s",
                         path, name, h5util_reason(why, sizeof why));
    int rc = DMLP_OK;
    const H5D_layout_t layout = H5Pget_layout(dcpl);
    const int n_external = H5Pget_external_count(dcpl);
    const int n_filters = H5Pget_nfilters(dcpl);
    if (layout == H5D_VIRTUAL)
        rc = refuse_virtual(dcpl, path, name, err);
    else if (layout < 0 || n_external < 0 || n_filters < 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read its storage properties: %s",
                       path, name, h5util_reason(why, sizeof why));
    else if (n_external > 0)
        rc = refuse_external(dcpl, n_external, path, name, err);
    for (int i = 0; rc == DMLP_OK && i < n_filters; i++)
        rc = filter_decodable(dcpl, i, path, name, err);
    H5Pclose(dcpl);
    return rc;
}

hid_t h5util_create_file(const char *tmp, const char *path, struct dmlp_error *err)
{
    char why[256];
    const hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot create %s: %s", path, tmp,
                  h5util_reason(why, sizeof why));
    return file;
}

int h5util_finish_file(hid_t file, const char *path, const char *tmp, int rc,
                       struct dmlp_error *err)
{
    char why[256];
    if (rc == DMLP_OK && H5Fflush(file, H5F_SCOPE_LOCAL) < 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: flushing %s failed: %s", path, tmp,
                       h5util_reason(why, sizeof why));
    if (H5Fclose(file) < 0 && rc == DMLP_OK)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: closing %s failed: %s", path, tmp,
                       h5util_reason(why, sizeof why));
    return rc;
}
