#define _POSIX_C_SOURCE 200809L
/* import_idx: `dmlp import idx`, MNIST-style IDX files (gzip-compressed or plain) into a
 * dataset file: images (uint8 [N, rows, cols]) become features pixel / 255, labels (uint8
 * [N]) class ids. A header is checked against the file's size before anything is allocated
 * for it, and every message names the file and what is wrong with it. */
#include "data/dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum { IDX_MAGIC_LABELS = 0x00000801, IDX_MAGIC_IMAGES = 0x00000803 };

/* Pixels and labels go through a small staging buffer of this many bytes, so memory stays
 * at the float array alone. */
enum { IDX_STAGE = 1 << 16 };

/* One open IDX file: its header, and the stream positioned at the first data byte. */
struct idx_file {
    const char *path;
    gzFile gz;
    size_t header_bytes;
    uint32_t dims[3];
    off_t file_bytes; /* on disk (compressed, if gzip) */
};

static int idx_open(struct idx_file *f, const char *path, uint32_t magic, int ndims,
                    struct dmlp_error *err);
static int idx_read(struct idx_file *f, unsigned char *buf, size_t len, size_t *got,
                    struct dmlp_error *err);
static int idx_check_size(const struct idx_file *f, size_t need, const char *what,
                          struct dmlp_error *err);
static int idx_check_end(struct idx_file *f, const char *what, struct dmlp_error *err);
static void idx_close(struct idx_file *f);
static int alloc_for(const struct idx_file *im, const struct idx_file *lb,
                     struct dataset **ds, struct dmlp_error *err);
static int read_pixels(struct idx_file *im, struct dataset *ds, unsigned char *buf,
                       struct dmlp_error *err);
static int read_labels(struct idx_file *lb, struct dataset *ds, unsigned char *buf,
                       size_t *max_label, struct dmlp_error *err);

/* ---- public functions -------------------------------------------------------------------- */

int dataset_import_idx(const char *images, const char *labels, const char *output,
                       struct dmlp_error *err)
{
    struct idx_file im = {0}, lb = {0};
    struct dataset *ds = NULL;
    unsigned char *buf = NULL;
    size_t max_label = 0;
    int rc = idx_open(&im, images, IDX_MAGIC_IMAGES, 3, err);
    if (rc == DMLP_OK)
        rc = idx_open(&lb, labels, IDX_MAGIC_LABELS, 1, err);
    if (rc == DMLP_OK)
        rc = alloc_for(&im, &lb, &ds, err);
    if (rc == DMLP_OK && !(buf = malloc(IDX_STAGE)))
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", images);
    if (rc == DMLP_OK)
        rc = read_pixels(&im, ds, buf, err);
    if (rc == DMLP_OK)
        rc = read_labels(&lb, ds, buf, &max_label, err);
    if (rc == DMLP_OK) {
        /* MNIST-style sets have ten classes even when a small file misses some of them. */
        ds->k = max_label + 1 > 10 ? max_label + 1 : 10;
        idx_close(&im);
        idx_close(&lb);
        rc = dataset_write(ds, output, err);
    }
    free(buf);
    idx_close(&im);
    idx_close(&lb);
    dataset_free(&ds);
    return rc;
}

/* ---- helpers ----------------------------------------------------------------------------- */

/* Checks that the two headers agree and promise no more than the files can hold, then
 * allocates the dataset (labels, 10 classes until the labels are read). */
static int alloc_for(const struct idx_file *im, const struct idx_file *lb,
                     struct dataset **ds, struct dmlp_error *err)
{
    const size_t n = im->dims[0], rows = im->dims[1], cols = im->dims[2];
    if (n == 0 || rows == 0 || cols == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: header says %zu images of %zu x %zu; "
                         "expected at least one non-empty image", im->path, n, rows, cols);
    if (lb->dims[0] != n)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s has %" PRIu32 " labels, but %s has %zu "
                         "images", lb->path, lb->dims[0], im->path, n);
    size_t d, nd;
    if (dmlp_mul_size(&d, rows, cols) || dmlp_mul_size(&nd, n, d))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: header says %zu images of %zu x %zu, "
                         "which overflows size_t", im->path, n, rows, cols);
    /* Reject a header that promises more than the file can hold before allocating for it. */
    int rc;
    if ((rc = idx_check_size(im, nd, "pixels", err)) != DMLP_OK ||
        (rc = idx_check_size(lb, n, "labels", err)) != DMLP_OK)
        return rc;
    if ((rc = dataset_alloc(ds, n, d, 10, 1, err)) != DMLP_OK)
        dmlp_error_prefix(err, "%s", im->path);
    return rc;
}

/* features = pixel / 255, in [0, 1]. */
static int read_pixels(struct idx_file *im, struct dataset *ds, unsigned char *buf,
                       struct dmlp_error *err)
{
    const size_t nd = ds->n * ds->d; /* checked by alloc_for */
    for (size_t at = 0; at < nd;) {
        size_t want = nd - at < IDX_STAGE ? nd - at : IDX_STAGE, got;
        int rc = idx_read(im, buf, want, &got, err);
        if (rc != DMLP_OK)
            return rc;
        for (size_t i = 0; i < got; i++)
            ds->features[at + i] = (float)buf[i] / 255.0f;
        at += got;
        if (got < want)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated: expected %zu bytes of pixels "
                             "(%zu images of %zu x %zu) after the %zu-byte header, found %zu",
                             im->path, nd, ds->n, (size_t)im->dims[1], (size_t)im->dims[2],
                             im->header_bytes, at);
    }
    return idx_check_end(im, "images", err);
}

static int read_labels(struct idx_file *lb, struct dataset *ds, unsigned char *buf,
                       size_t *max_label, struct dmlp_error *err)
{
    const size_t n = ds->n;
    for (size_t at = 0; at < n;) {
        size_t want = n - at < IDX_STAGE ? n - at : IDX_STAGE, got;
        int rc = idx_read(lb, buf, want, &got, err);
        if (rc != DMLP_OK)
            return rc;
        for (size_t i = 0; i < got; i++) {
            ds->labels[at + i] = buf[i];
            *max_label = buf[i] > *max_label ? buf[i] : *max_label;
        }
        at += got;
        if (got < want)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated: expected %zu bytes of labels "
                             "after the %zu-byte header, found %zu", lb->path, n,
                             lb->header_bytes, at);
    }
    return idx_check_end(lb, "labels", err);
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads up to len bytes; *got < len means end of data (a truncated gzip stream ends the
 * same way). Corrupt compressed data and read errors are failures. */
static int idx_read(struct idx_file *f, unsigned char *buf, size_t len, size_t *got,
                    struct dmlp_error *err)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        unsigned chunk = want > (1u << 30) ? 1u << 30 : (unsigned)want;
        int r = gzread(f->gz, buf + *got, chunk);
        if (r < 0) {
            int zerr = Z_OK;
            const char *msg = gzerror(f->gz, &zerr);
            if (zerr == Z_BUF_ERROR)
                break;
            if (zerr == Z_ERRNO)
                return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: read error: %s", f->path,
                                 strerror(errno));
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: corrupt gzip data: %s", f->path, msg);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return DMLP_OK;
}

static int idx_open(struct idx_file *f, const char *path, uint32_t magic, int ndims,
                    struct dmlp_error *err)
{
    const char *what = magic == IDX_MAGIC_IMAGES ? "images: uint8, 3 dimensions"
                                                 : "labels: uint8, 1 dimension";
    f->path = path;
    f->header_bytes = 4 + 4 * (size_t)ndims;
    int rc = dmlp_check_input_file(path, err);
    if (rc != DMLP_OK)
        return rc;
    struct stat st;
    f->file_bytes = stat(path, &st) == 0 ? st.st_size : 0;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(f->gz, 1u << 17);
    unsigned char hdr[16];
    size_t got;
    if ((rc = idx_read(f, hdr, f->header_bytes, &got, err)) != DMLP_OK)
        return rc;
    if (got >= 4 && be32(hdr) != magic) {
        uint32_t found = be32(hdr);
        const char *hint = found == IDX_MAGIC_IMAGES   ? " (an images file; swapped?)"
                           : found == IDX_MAGIC_LABELS ? " (a labels file; swapped?)"
                                                       : "";
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: bad magic 0x%08" PRIx32 "%s, expected 0x%08" PRIx32 " (IDX %s)",
                         path, found, hint, magic, what);
    }
    if (got < f->header_bytes)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: truncated: expected a %zu-byte IDX header, found %zu bytes",
                         path, f->header_bytes, got);
    for (int i = 0; i < ndims; i++)
        f->dims[i] = be32(hdr + 4 + 4 * (size_t)i);
    return DMLP_OK;
}

/* A file cannot hold more data than its size allows: exactly for a plain file, and at most
 * 1032 bytes per compressed byte (deflate's limit) for gzip. Checked before allocating, so
 * a corrupt header cannot ask for terabytes. */
static int idx_check_size(const struct idx_file *f, size_t need, const char *what,
                          struct dmlp_error *err)
{
    size_t disk = f->file_bytes > 0 ? (size_t)f->file_bytes : 0;
    size_t have = disk > f->header_bytes ? disk - f->header_bytes : 0;
    if (gzdirect(f->gz)) {
        if (have < need)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated: expected %zu bytes of %s "
                             "after the %zu-byte header, found %zu", f->path, need, what,
                             f->header_bytes, have);
    } else if (disk <= SIZE_MAX / 1032 && disk * 1032 < need) {
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated: the header promises %zu bytes "
                         "of %s, more than %zu compressed bytes can hold", f->path, need,
                         what, disk);
    }
    return DMLP_OK;
}

/* Data after the promised count means the header's dimensions are wrong. */
static int idx_check_end(struct idx_file *f, const char *what, struct dmlp_error *err)
{
    unsigned char extra;
    size_t got;
    int rc = idx_read(f, &extra, 1, &got, err);
    if (rc == DMLP_OK && got > 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: more data after the %" PRIu32 " %s the header "
                       "announces; are its dimensions right?", f->path, f->dims[0], what);
    return rc;
}

static void idx_close(struct idx_file *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}
