/* Helpers shared by the CUnit test programs: running suites, scratch directories,
 * running the dmlp binary and capturing what it prints. */
#ifndef DMLP_TESTUTIL_H
#define DMLP_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stddef.h>

#include "app/config.h"

/* Runs the suites with the basic interface (verbose) and returns the process exit code:
 * 0 when every test passed, 1 otherwise. */
int tu_run(CU_SuiteInfo *suites);

/* Creates a fresh scratch directory under $TMPDIR (or /tmp) named after tag; returns a
 * static path valid until the next call with the same buffer, into out (size n). */
void tu_mkdtemp(char *out, size_t n, const char *tag);

/* Removes a directory tree (rm -rf). */
void tu_rmtree(const char *path);

/* Writes text to a file; returns 0 on success. */
int tu_write_file(const char *path, const char *text);

/* Runs a shell command, captures stdout+stderr (up to cap-1 bytes) into out, returns
 * the command's exit status (or -1 if it could not run / was killed). */
int tu_run_cmd(const char *cmd, char *out, size_t cap);

/* Starts an MPI test program: MPI with dmlp's threading level, this rank and the rank
 * count, and a scratch directory made by rank 0 and shared with all (dir, cap bytes).
 * Returns 0, or 1 (printed) when MPI cannot start. */
int tu_mpi_begin(int *argc, char ***argv, int *rank, int *size, char *dir, size_t cap,
                 const char *tag);

/* Runs the suites in an MPI program: verbose on rank 0, silent elsewhere; failures are
 * summed over MPI_COMM_WORLD (every rank must call this), then rank 0 removes the scratch
 * directory (NULL: none). Returns the exit code, the same on every rank. */
int tu_run_mpi(CU_SuiteInfo *suites, int rank, const char *scratch);

/* printf into one of 8 rotating static buffers, for building paths inline in a call:
 * a result stays valid for the next 7 calls only. */
const char *tu_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* What the last tu_sh command printed (stdout and stderr). */
extern char tu_out[1 << 16];

/* Runs the printf-formatted shell command, capturing its output into tu_out; prints the
 * command, its exit status and its time; returns the exit status (see tu_run_cmd). */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 1 when tu_out contains needle; otherwise prints what it holds and returns 0. */
int tu_has(const char *needle);

/* The network a checkpoint holds, loaded (NULL, with the reason printed, on failure); free
 * it with model_free. */
struct model *tu_load_model(const char *checkpoint);

/* max |a − b| / max |a| over the parameters of the networks in two checkpoints: 0 when
 * they are bit-identical, -1 when either cannot be loaded or their shapes differ. */
double tu_checkpoint_diff(const char *a, const char *b);

/* 1 when both models exist and hold the same parameters, bit for bit. */
struct model;
int tu_same_params(const struct model *a, const struct model *b);

/* A whole float dataset `name` of an HDF5 file, malloc'd (free()), its element count in
 * *count; NULL (and *count 0) when it cannot be read. */
float *tu_read_floats(const char *path, const char *name, size_t *count);

/* max |a − b| / max |a| over n values (max |a − b| when a is all zero). */
double tu_max_rel_diff(const float *a, const float *b, size_t n);

/* Relative difference |a-b| / max(|a|,|b|,floor). */
double tu_reldiff(double a, double b, double floor);

/* f(z) in double, straight from the definitions of docs/architecture.md, "The math", for the
 * elementwise activations (softmax, a per-row function, returns z: callers handle it by row).
 */
double tu_act_ref(enum dmlp_activation act, double z);

#endif
