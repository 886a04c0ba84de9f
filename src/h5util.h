/* h5util: the small HDF5 helpers every HDF5 module needs (dataset, checkpoint, predict):
 * silencing HDF5's own error printer while our code runs, and the most specific reason
 * HDF5 gives for a failure, for the tail of our messages. An I/O module: it includes
 * hdf5.h; nothing else here touches files. */
#ifndef DMLP_H5UTIL_H
#define DMLP_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#include "util.h"

/* HDF5's automatic error printer, saved and switched off while a public function runs so
 * that only our messages reach the user, then restored (the setting is per process, and
 * other modules may want it). */
struct h5util_quiet {
    H5E_auto2_t func;
    void *data;
};

void h5util_quiet_begin(struct h5util_quiet *q);
void h5util_quiet_end(const struct h5util_quiet *q);

/* The innermost description on HDF5's error stack (e.g. "required filter 'blosc' is not
 * registered"), written into buf; returns buf. */
const char *h5util_reason(char *buf, size_t cap);

/* Writes a whole contiguous, uncompressed dataset name [dims] into file. A fresh file
 * refuses nothing, so a failure is I/O (disk full, quota): DMLP_ERR_RUNTIME naming path and
 * name with HDF5's reason. */
int h5util_write_array(hid_t file, const char *path, const char *name, hid_t file_type,
                       hid_t mem_type, int rank, const hsize_t *dims, const void *data,
                       struct dmlp_error *err);

/* Writes a scalar attribute `name` on the object `obj` (a path from loc: "/" for the root
 * group of a file, "." for loc itself): a fixed-length, NUL-terminated string (text), or
 * one number read as mem_type from value and stored as file_type. A failure is I/O:
 * DMLP_ERR_RUNTIME naming path, attribute and object with HDF5's reason. */
int h5util_write_str_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          const char *text, struct dmlp_error *err);
int h5util_write_num_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          hid_t file_type, hid_t mem_type, const void *value,
                          struct dmlp_error *err);

#endif
