/* dist: everything MPI. The only module that includes mpi.h: initialisation, the
 * gradient allreduce, metric reductions, and agreement on errors so that every rank
 * leaves a phase the same way (no rank waits forever in a collective another skipped).
 * A dist wraps a communicator: the world for real runs, or MPI_COMM_SELF, which lets a
 * test compute the one-process trajectory inside an n-rank job. */
#ifndef DMLP_DIST_H
#define DMLP_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct dist;

/* MPI_Init_thread with MPI_THREAD_FUNNELED (only the main thread calls MPI; OpenMP
 * threads never do). Safe to call when MPI is already initialised. */
int dist_init(int *argc, char ***argv, struct dmlp_error *err);
void dist_finalize(void);
/* 1 once MPI is initialised (by dist_init or by the program that calls the library). */
int dist_is_initialized(void);

/* Communicator handles; free with dist_free (the underlying communicator is duplicated
 * so library traffic never mixes with the caller's). */
int dist_create_world(struct dist **out, struct dmlp_error *err);
int dist_create_self(struct dist **out, struct dmlp_error *err);
void dist_free(struct dist **d);

/* The ranks of d with the same color, as a dist of their own, ranked as in d. Collective
 * over d. */
int dist_split(const struct dist *d, int color, struct dist **out, struct dmlp_error *err);

/* A counter on rank 0 of d that any rank takes numbers from without the others: the queue
 * of a sweep. create and free are collective over d; next is not (an atomic fetch-and-add
 * through a one-sided MPI window), and returns 0, 1, 2, ... across all callers. */
struct dist_counter;
int dist_counter_create(struct dist_counter **out, const struct dist *d,
                        struct dmlp_error *err);
uint64_t dist_counter_next(struct dist_counter *c);
void dist_counter_free(struct dist_counter **c);

/* buf[i] <- the maximum over ranks of buf[i] (bytes): gathers what one rank each filled in
 * where the others left zeros. Collective. */
void dist_allreduce_max_bytes(const struct dist *d, unsigned char *buf, size_t n);

int dist_rank(const struct dist *d);
int dist_size(const struct dist *d);

/* In-place sum across ranks (one MPI_Allreduce, chunked only past INT_MAX elements). */
void dist_allreduce_sum_double(const struct dist *d, double *buf, size_t n);
void dist_allreduce_sum_u64(const struct dist *d, uint64_t *buf, size_t n);

/* The gradient sum: an in-place float sum across all ranks of d, as MPI_Allreduce, made
 * for one buffer summed every step. With shared_memory set and several ranks per node (the
 * same number on every node), the ranks of a node add through an MPI shared-memory
 * window: each copies in the parts of its buffer the others add, adds its 1/k slice of
 * all k buffers (in node-rank order, its own read in place), MPI_Allreduce adds that slice
 * across nodes (ranks with the same node rank), and each copies the other slices' totals
 * back: memory-speed within a node, one k-th of the data on the network per rank.
 * Otherwise (one rank per node, uneven nodes, or when the window cannot be had), one
 * MPI_Allreduce. Collective create/sum/free (create ends the job if it cannot allocate its
 * few bytes: other ranks would be waiting in its collectives); no allocation in sum. */
struct dist_sum;
void dist_sum_create(struct dist_sum **out, const struct dist *d, size_t capacity,
                     int shared_memory);
/* n <= capacity. Returns the seconds spent waiting for the node's other ranks to arrive
 * (the shared-memory path; 0 otherwise, where MPI hides the wait inside the sum). */
double dist_sum_float(struct dist_sum *s, float *buf, size_t n);
void dist_sum_free(struct dist_sum **s);
/* How the sums are done, for the placement report, e.g. "shared memory (2 ranks on each
 * of 1 node) + MPI_Allreduce across nodes". */
const char *dist_sum_method(const struct dist_sum *s);

/* One block of memory shared by the ranks of each node (an MPI-3 shared-memory window of
 * MPI_Comm_split_type SHARED): node rank 0 allocates `bytes`, and every rank of the node
 * maps the same block, at *base (64-byte aligned). It holds what the ranks of a node only
 * read (the replicated training set), once per node. Collective over d, and agreed: when
 * any node cannot have its block (a small /dev/shm in a container), no rank gets one, and
 * the call fails everywhere with DMLP_ERR_RUNTIME and the reason, so that the caller falls
 * back to private copies on every rank alike. bytes must be the same on every rank. */
struct dist_shm;
int dist_shm_alloc(struct dist_shm **out, const struct dist *d, size_t bytes, void **base,
                   struct dmlp_error *err);
/* This rank's place on its node: node rank 0 writes the block, the others wait for it. */
int dist_shm_node_rank(const struct dist_shm *s);
int dist_shm_node_size(const struct dist_shm *s);
/* A barrier of the node's ranks that also makes every write to the block before it visible
 * to every read after it. */
void dist_shm_sync(const struct dist_shm *s);
/* Collective over the node's ranks (every rank of d, as for alloc). NULL: nothing. */
void dist_shm_free(struct dist_shm **s);

/* Non-blocking sums for overlapping communication with computation: a set of at most
 * `capacity` outstanding in-place MPI_Iallreduce sums of float ranges, started in the same
 * order with the same sizes on every rank (MPI requires it), progressed by dist_pending_test
 * between kernels and completed by dist_pending_wait. No allocation after create. */
struct dist_pending;
int dist_pending_create(struct dist_pending **out, const struct dist *d, size_t capacity,
                        struct dmlp_error *err);
void dist_pending_free(struct dist_pending **p);
/* Starts the sum of buf[0..n) (n <= INT_MAX); the buffer must not be touched until wait. */
void dist_pending_start(struct dist_pending *p, float *buf, size_t n);
void dist_pending_test(struct dist_pending *p); /* lets MPI progress; never blocks */
void dist_pending_wait(struct dist_pending *p); /* completes all; the set is empty after */

/* Collective: every rank passes its own status in err (code DMLP_OK when fine). Returns
 * the agreed code: the code of the lowest-numbered failing rank, whose message (prefixed
 * with "rank R: " when the job has several ranks) is copied into every rank's err. */
int dist_agree(const struct dist *d, struct dmlp_error *err);

/* Gathers the ranks' float arrays to root, in rank order: rank r sends its n floats (send),
 * and root receives them at recv + Σ_{q<r} counts[q]. counts [size] (every rank's n) and
 * recv are used on root only, where counts[root] must equal n. Point-to-point messages of
 * at most INT_MAX floats each, so any size works (MPI counts are int). Collective. */
void dist_gatherv_float(const struct dist *d, const float *send, size_t n, float *recv,
                        const size_t *counts, int root);

/* For each of n local values: the minimum, mean and maximum across ranks, and the rank
 * holding the maximum (the straggler). Collective. */
void dist_spread(const struct dist *d, const double *local, size_t n, double *min,
                 double *mean, double *max, int *max_rank);

/* Gathers n bytes from every rank into all (n × size bytes, rank order) on root. */
void dist_gather_bytes(const struct dist *d, const void *mine, size_t n, void *all, int root);

/* Broadcasts n bytes from rank root. */
void dist_bcast(const struct dist *d, void *buf, size_t n, int root);

void dist_barrier(const struct dist *d);

/* Ends the whole job with a message on stderr: for failures that cannot be agreed on. */
_Noreturn void dist_abort(const struct dist *d, int code, const char *msg);

/* The MPI library's own version string (first line). */
void dist_library_version(char *out, size_t n);

/* Host name of this process (for reports). */
void dist_hostname(char *out, size_t n);

/* In-place maximum across ranks (for counts that ranks must agree on, e.g. a class count
 * taken from each rank's own rows). */
void dist_allreduce_max_u64(const struct dist *d, uint64_t *buf, size_t n);

/* The communicator, as a pointer to its MPI_Comm, for the one other library that takes
 * one: parallel HDF5 (H5Pset_fapl_mpio in dataset_read.c). Valid until dist_free. */
const void *dist_mpi_comm(const struct dist *d);

#endif
