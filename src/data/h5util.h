/* h5util: the small HDF5 helpers every HDF5 module needs (dataset, checkpoint, predict):
 * silencing HDF5's own error printer while our code runs, the most specific reason HDF5
 * gives for a failure (for the tail of our messages), the writers of arrays and scalar
 * attributes, and the checked readers through which every attribute and dataset of an input
 * file is read. A reader looks at the metadata first (class, element size, rank, dimensions,
 * and for a dataset where its bytes live) and refuses, naming the file and the object,
 * anything that would not fit the caller's buffer or could not be read as stored, so no
 * file can make HDF5 write past a buffer or hand back zeros for data that is not there.
 * An I/O module: it includes hdf5.h; it never opens or closes files itself. */
#ifndef DMLP_H5UTIL_H
#define DMLP_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* HDF5's automatic error printer, saved and switched off while a public function runs so
 * that only our messages reach the user, then restored (the setting is per process, and
 * other modules may want it). */
struct h5util_quiet {
    H5E_auto2_t func;
    void *data;
};

void h5util_quiet_begin(struct h5util_quiet *q);
void h5util_quiet_end(const struct h5util_quiet *q);

/* rc = expr, evaluated with HDF5's error printer off (dmlp's messages say what failed) and
 * the caller's setting restored afterwards: the body of a public entry point. */
#define H5UTIL_QUIETLY(rc, expr)                                                              \
    do {                                                                                      \
        struct h5util_quiet h5util_q_;                                                        \
        h5util_quiet_begin(&h5util_q_);                                                       \
        (rc) = (expr);                                                                        \
        h5util_quiet_end(&h5util_q_);                                                         \
    } while (0)

/* The innermost description on HDF5's error stack (e.g. "required filter 'blosc' is not
 * registered"), written into buf as one line (an MPI error string may span several: its
 * line breaks and runs of blanks become single spaces); returns buf. */
const char *h5util_reason(char *buf, size_t cap);

/* Creates (truncating) the file tmp, the temporary of the output path, for writing; a
 * negative id with "PATH: cannot create TMP: REASON" on failure. */
hid_t h5util_create_file(const char *tmp, const char *path, struct dmlp_error *err);

/* Ends the writing of file (the temporary tmp of the output path): flushes it (when rc is
 * still DMLP_OK) and closes it. Returns rc, or the first failure, "PATH: flushing TMP
 * failed: REASON" or "... closing ...". */
int h5util_finish_file(hid_t file, const char *path, const char *tmp, int rc,
                       struct dmlp_error *err);

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
/* A 1-D attribute of n variable-length UTF-8 strings (h5py reads it as a list of str). */
int h5util_write_str_list_attr(hid_t loc, const char *path, const char *obj,
                               const char *name, const char *const *names, size_t n,
                               struct dmlp_error *err);

/* ---- checked readers ------------------------------------------------------------------- */

/* What an attribute or dataset holds, from its metadata alone. */
struct h5util_info {
    H5T_class_t cls;          /* H5T_INTEGER, H5T_FLOAT, H5T_STRING, ... */
    size_t size;              /* bytes per element (a variable-length string: its handle) */
    int is_signed;            /* integers: signed */
    int rank;                 /* 0: a scalar; -1: a null dataspace (no value at all) */
    hsize_t dims[H5S_MAX_RANK];
    hsize_t npoints;          /* elements (1 for a scalar, 0 for a null dataspace) */
    char type_name[32];       /* "float32", "uint64", "string", "compound", ... */
};

/* Every attribute reader below reads the attribute `name` of the object obj, a path from
 * loc that also names it in messages (loc a file and obj "/layers/0", or "/" for the root
 * group). With present == NULL the attribute is required; otherwise *present tells whether
 * it exists, and a missing one is no error. The value must be a single element (a scalar or
 * a one-element array) of the expected class and an element size that converts exactly;
 * anything else is DMLP_ERR_INPUT naming path, object, attribute, what it is and what was
 * expected, before a byte of it is read:
 *     run/latest.h5: /layers/0 attribute 'activation' is a 3-element array, expected a
 *     scalar string */

/* An integer (signed or unsigned, up to 64 bits) in [min, max]; the value is checked as
 * stored, never clipped by a conversion first. */
int h5util_read_uint_attr(hid_t loc, const char *path, const char *obj, const char *name,
                          uint64_t min, uint64_t max, uint64_t *value, int *present,
                          struct dmlp_error *err);

/* A number: a float (up to 64 bits) or an integer, as double. */
int h5util_read_float_attr(hid_t loc, const char *path, const char *obj, const char *name,
                           double *value, int *present, struct dmlp_error *err);

/* A string, fixed-length or variable-length, in either character set (h5py writes
 * variable-length UTF-8, dmlp fixed-length ASCII), into *out (malloc'd, NUL-terminated;
 * free() it). *out is NULL unless DMLP_OK with the attribute present. */
int h5util_read_str_attr(hid_t loc, const char *path, const char *obj, const char *name,
                         char **out, int *present, struct dmlp_error *err);

/* Element classes a dataset reader accepts, or'ed: floats of 2, 4 or 8 bytes, integers of
 * 1 to 8 bytes (HDF5 converts either to the caller's memory type exactly, or to the
 * nearest float). */
enum { H5UTIL_FLOAT = 1u, H5UTIL_INTEGER = 2u };

/* Opens the dataset name (a path from loc, as messages name it) and checks, before any of
 * its data is read: it exists and is a dataset; its elements are of one of kinds (what
 * describes them in messages: "float array", "integer class labels"); it has rank
 * dimensions, equal to dims[] when dims is not NULL; and its data lives in this file and
 * can be decoded here: not a virtual dataset (whose source files may be gone), no external
 * raw-data files (which may be shorter than declared: HDF5 reads the rest as zeros), every
 * filter of its pipeline available with decoding enabled (a compression plugin that is not
 * installed is named, with the way out). On DMLP_OK *dset is open (H5Dclose it) and info,
 * when not NULL, describes it; otherwise DMLP_ERR_INPUT naming path and dataset. */
int h5util_open_dataset(hid_t loc, const char *path, const char *name, unsigned kinds,
                        const char *what, int rank, const hsize_t *dims, hid_t *dset,
                        struct h5util_info *info, struct dmlp_error *err);

/* h5util_open_dataset with exact dims (not NULL), then the whole dataset read as mem_type
 * into buf (room for the product of dims elements of mem_type). A failed read (a checksum
 * mismatch, damaged data) is DMLP_ERR_INPUT with HDF5's reason. */
int h5util_read_dataset(hid_t loc, const char *path, const char *name, unsigned kinds,
                        const char *what, int rank, const hsize_t *dims, hid_t mem_type,
                        void *buf, struct dmlp_error *err);

#endif
