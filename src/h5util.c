#include "h5util.h"

#include <stdio.h>
#include <string.h>

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
    if (n == 0 && e->desc)
        snprintf(r->buf, r->cap, "%s", e->desc);
    return 0;
}

/* Walking upward starts at the most specific entry. */
const char *h5util_reason(char *buf, size_t cap)
{
    struct reason_buf r = {buf, cap};
    snprintf(buf, cap, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_walk, &r);
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
 * owned), mem_type and value what H5Awrite takes. */
static int write_attr(hid_t loc, const char *path, const char *obj, const char *name,
                      hid_t type, int owned, hid_t mem_type, const void *value,
                      struct dmlp_error *err)
{
    char why[256];
    hid_t space = type >= 0 ? H5Screate(H5S_SCALAR) : H5I_INVALID_HID;
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
    return write_attr(loc, path, obj, name, type, 1, type, text, err);
}

int h5util_write_num_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          hid_t file_type, hid_t mem_type, const void *value,
                          struct dmlp_error *err)
{
    return write_attr(loc, path, obj, name, file_type, 0, mem_type, value, err);
}
