/* util: error reporting, exit codes, aligned allocation and overflow-checked sizes.
 * Owns nothing global. Never calls exit(), never touches MPI or HDF5. */
#ifndef DMLP_UTIL_H
#define DMLP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "dmlp/dmlp.h" /* DMLP_VERSION, enum dmlp_status */

/* An error: a status code and a message that names the file, key or value at fault. */
struct dmlp_error {
    int code;
    char msg[1024];
};

/* Fills err (if not NULL) with code and a printf-formatted message; returns code. */
int dmlp_fail(struct dmlp_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (for adding file names on the way up). */
void dmlp_error_prefix(struct dmlp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void dmlp_error_clear(struct dmlp_error *err);

/* 64-byte aligned, zeroed allocation of n bytes (n rounded up); NULL on failure or n == 0. */
void *dmlp_alloc_aligned(size_t n);
void dmlp_free_aligned(void *p);

/* *out = a * b; returns 0, or -1 when the product overflows size_t. */
int dmlp_mul_size(size_t *out, size_t a, size_t b);
/* *out = a + b; returns 0, or -1 on overflow. */
int dmlp_add_size(size_t *out, size_t a, size_t b);

/* Rounds n up to a multiple of 16 floats (64 bytes), so every view into a flat
 * buffer starts on a cache line. */
static inline size_t dmlp_pad16(size_t n) { return (n + 15u) & ~(size_t)15u; }

/* The index of the first NaN or infinity in x [n] (n when all are finite), and how
 * messages name such a value: "NaN", "+inf" or "-inf". */
size_t dmlp_first_nonfinite(const float *x, size_t n);
const char *dmlp_nonfinite_name(float x);

/* Parses a whole string as a number; returns 0 on success, -1 on junk or range error. */
int dmlp_parse_u64(const char *s, uint64_t *out);
int dmlp_parse_double(const char *s, double *out);

/* The CPUs this process may run on, as a list ("0-3,8"), into out; returns their number
 * (or -1 when unknown). */
int dmlp_affinity(char *out, size_t cap);

/* The machine's physical memory in bytes (SIZE_MAX when unknown). Buffers that would need
 * more are refused before allocating (an input error naming the size), rather than left to
 * malloc, which overcommits, or to the OOM killer. */
size_t dmlp_phys_mem(void);

/* Cores online on this host. */
int dmlp_cores_online(void);

/* An input file must be a regular file (a symbolic link to one is fine): a FIFO would block
 * its reader forever, a directory or device is no input. Returns DMLP_OK, or
 * DMLP_ERR_INPUT naming the path and what it is ("cannot open: ..." when it is missing). */
int dmlp_check_input_file(const char *path, struct dmlp_error *err);

/* 1 when both paths exist and name the same file (hard links and symbolic links included). */
int dmlp_same_file(const char *a, const char *b);

/* mkdir -p; returns 0, or -1 with errno set. */
int dmlp_mkdir_p(const char *dir);

/* fsync a file (directory = 0) or a directory (1); returns 0, or -1 with errno set. */
int dmlp_fsync_path(const char *path, int directory);

/* Monotonic wall-clock seconds. */
double dmlp_now(void);

#endif
