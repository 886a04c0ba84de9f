/* libFuzzer harness: the dataset reader and validator (dataset_read, dataset_read_rows,
 * dataset_describe). HDF5 itself is not hardened against arbitrary bytes (a damaged file
 * can crash inside the library), so by default the input does not become the file: it is a
 * recipe for a small, structurally valid HDF5 file built with the HDF5 API (shapes, ranks,
 * element types, chunking, header-only datasets claiming huge sizes, the num_classes
 * attribute and every value — NaN, inf, negative or huge labels — come from the input).
 * With DMLP_FUZZ_RAW_HDF5=1, inputs starting with 'R' are written verbatim instead. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct reader {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t take64(struct reader *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | take(r);
    return v;
}

/* A dimension: mostly small, sometimes 0 or a huge claim (2^40 .. 2^54: more than any
 * test machine's memory, so the reader must refuse it up front; smaller claims that fit in
 * memory are legitimate and would only measure the machine). */
static hsize_t take_dim(struct reader *r)
{
    const unsigned b = take(r);
    if (b >= 0xF8)
        return (hsize_t)1 << (40 + (b & 7) * 2);
    return b % 9;
}

static hid_t take_type(struct reader *r, int for_labels)
{
    static const hid_t *const feature_types[] = {&H5T_NATIVE_FLOAT_g, &H5T_NATIVE_DOUBLE_g,
                                                 &H5T_NATIVE_INT32_g, &H5T_NATIVE_UINT8_g,
                                                 &H5T_NATIVE_INT64_g};
    static const hid_t *const label_types[] = {&H5T_NATIVE_INT32_g, &H5T_NATIVE_INT64_g,
                                               &H5T_NATIVE_UINT64_g, &H5T_NATIVE_INT8_g,
                                               &H5T_NATIVE_FLOAT_g};
    const unsigned b = take(r);
    if (b == 0xFF) { /* a string type: not numeric */
        hid_t s = H5Tcopy(H5T_C_S1);
        H5Tset_size(s, 4);
        return s;
    }
    return H5Tcopy(for_labels ? *label_types[b % 5] : *feature_types[b % 5]);
}

/* Creates name with rank, dims and type from the recipe; writes the input's bytes as its
 * contents when it is small (else leaves it header-only, chunked and never written). */
static void put(hid_t f, const char *name, struct reader *r, int for_labels, hsize_t n_hint)
{
    int rank = 1 + (int)(take(r) % 3);
    if (take(r) % 4 != 0) /* mostly the expected rank */
        rank = for_labels == 1 ? 1 : 2;
    hsize_t dims[3];
    for (int i = 0; i < rank; i++)
        dims[i] = take_dim(r);
    if (n_hint != (hsize_t)-1 && take(r) % 4 != 0)
        dims[0] = n_hint; /* mostly rows that agree with /features */
    hid_t type = take_type(r, for_labels);
    hsize_t count = 1;
    int huge = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] && count > (hsize_t)4096 / dims[i])
            huge = 1;
        count *= dims[i] ? dims[i] : 1;
    }
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const int chunked = huge || (take(r) & 1);
    if (chunked) {
        hsize_t chunk[3];
        for (int i = 0; i < rank; i++)
            chunk[i] = dims[i] == 0 ? 1 : dims[i] < 16 ? dims[i] : 16;
        H5Pset_chunk(dcpl, rank, chunk);
        if (take(r) & 1)
            H5Pset_deflate(dcpl, 1);
    }
    hid_t ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds >= 0 && !huge && count > 0) {
        const size_t bytes = (size_t)count * H5Tget_size(type);
        uint8_t *buf = calloc(bytes, 1);
        if (buf) {
            for (size_t i = 0; i < bytes; i++)
                buf[i] = (uint8_t)take(r);
            H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            free(buf);
        }
    }
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Tclose(type);
}

static void put_num_classes(hid_t f, struct reader *r)
{
    const unsigned kind = take(r) % 5;
    if (kind == 0 || H5Lexists(f, "labels", H5P_DEFAULT) <= 0)
        return;
    hid_t o = H5Oopen(f, "labels", H5P_DEFAULT);
    if (o < 0)
        return;
    hsize_t two = 2;
    hid_t space = kind == 4 ? H5Screate_simple(1, &two, NULL) : H5Screate(H5S_SCALAR);
    hid_t type = kind == 2 ? H5Tcopy(H5T_NATIVE_DOUBLE) : H5Tcopy(H5T_NATIVE_INT64);
    if (kind == 3) {
        H5Tclose(type);
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, 8);
    }
    uint8_t buf[16];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)take(r);
    if (kind == 1) { /* a small count, the common case */
        int64_t v = (int64_t)(buf[0] % 12) - 1;
        memcpy(buf, &v, sizeof v);
    }
    hid_t a = H5Acreate2(o, "num_classes", type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, type, buf);
        H5Aclose(a);
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Oclose(o);
}

static void build(const char *path, struct reader *r)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        abort();
    const unsigned layout = take(r);
    hsize_t n = (hsize_t)-1;
    if (layout % 8 != 0) { /* /features, usually present */
        put(f, "features", r, 0, (hsize_t)-1);
        hid_t ds = H5Dopen2(f, "features", H5P_DEFAULT);
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[3] = {0, 0, 0};
        if (sp >= 0 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 1)
            n = dims[0];
        if (sp >= 0)
            H5Sclose(sp);
        if (ds >= 0)
            H5Dclose(ds);
    }
    const unsigned y = (layout >> 3) % 8;
    if (y < 5 || y == 7)
        put(f, "labels", r, 1, n);
    if (y >= 5)
        put(f, "targets", r, 2, n);
    if ((layout >> 6) == 3) /* a group where a dataset belongs */
        H5Gclose(H5Gcreate2(f, H5Lexists(f, "labels", H5P_DEFAULT) > 0 ? "extra" : "labels",
                            H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    put_num_classes(f, r);
    H5Fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = 1;
    }
    const char *path = fuzz_path(0, "data.h5");
    const char *raw = getenv("DMLP_FUZZ_RAW_HDF5");
    struct reader r = {data, size};
    if (raw && raw[0] == '1' && size && data[0] == 'R') {
        fuzz_write(path, data + 1, size - 1);
    } else {
        build(path, &r);
    }
    struct dataset *ds = NULL;
    struct dmlp_error err = {0};
    if (dataset_read(&ds, path, &err) == DMLP_OK) {
        /* what the validator promises */
        if (!ds->n || !ds->d || !ds->features || !ds->labels == !ds->targets)
            abort();
        for (size_t i = 0; i < ds->n * ds->d; i++)
            if (ds->features[i] != ds->features[i] || ds->features[i] - ds->features[i] != 0)
                abort(); /* non-finite got through */
        for (size_t i = 0; ds->labels && i < ds->n; i++)
            if (ds->labels[i] < 0 || (size_t)ds->labels[i] >= ds->k)
                abort();
        dataset_free(&ds);
    } else if (ds != NULL || err.msg[0] == '\0') {
        abort();
    }
    const uint64_t row0 = take64(&r) % 12, nrows = take(&r) % 2 ? SIZE_MAX : take(&r) % 12;
    size_t total = 0;
    if (dataset_read_rows(&ds, path, (size_t)row0, (size_t)nrows, &total, &err) == DMLP_OK)
        dataset_free(&ds);
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        dataset_describe(devnull, path, &err);
        fclose(devnull);
    }
    return 0;
}
