/* Allreduce benchmark: the time of MPI_Allreduce(MPI_IN_PLACE, float, MPI_SUM) - the one
 * collective a data-parallel training step makes - for message sizes from one float to
 * 16 Mi floats (powers of 2), plus the demo networks' gradient sizes (235146 and 269322
 * floats). Each size is warmed up, then repeated for about --min-time seconds (5 to
 * 100000 repetitions); its time is the largest over the ranks of each rank's mean.
 *
 * Prints on rank 0 a table of bytes, time, algorithmic bandwidth (bytes / t) and bus
 * bandwidth (2(p-1)/p * bytes / t, as nccl-tests define it: the link speed a ring
 * allreduce would need), then fits the ring model
 *     t(n) = 2(p-1)·alpha + 2((p-1)/p)·n·beta          (n in bytes)
 * by least squares on the relative error over all sizes, and ends with one line
 *     JSON {"bench":"allreduce","ranks":p,"alpha_s":..,"beta_s_per_byte":..,
 *           "points":[[bytes,seconds],..]}
 * that scripts/scaling_model.py --allreduce-json reads. At one rank the model has no
 * communication term: alpha and beta are null.
 *
 * Before the fit, with more than one rank, it times the demo gradients' sum the way a
 * training step makes it (dist_sum_float: the shared-memory window, and plain
 * MPI_Allreduce) with the buffer rewritten before each sum, as backward rewrites it.
 * Re-summing one buffer, as the table does, keeps its cache lines where the last sum left
 * them; training moves freshly written lines between cores, which costs more. Asserts
 * nothing beyond checking the sums.
 *
 *   mpirun -np P build/bench/bench_allreduce [--max-bytes N] [--min-time S] [--help] */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "par/dist.h"

static const char USAGE[] =
    "usage: mpirun -np P bench_allreduce [--max-bytes N] [--min-time S] [--help]\n"
    "\n"
    "Times MPI_Allreduce(MPI_IN_PLACE, float, MPI_SUM) from 4 bytes up to N bytes (powers\n"
    "of 2, plus 235146 and 269322 floats, the demo networks' gradients) and fits the ring\n"
    "model t(n) = 2(p-1)*alpha + 2((p-1)/p)*n*beta to the times. With several ranks it\n"
    "also times the demo gradients' sum as a training step makes it (shared-memory window\n"
    "and MPI_Allreduce, buffer rewritten before each sum).\n"
    "\n"
    "  --max-bytes N  largest message (default 67108864 = 16 Mi floats)\n"
    "  --min-time S   seconds to spend on each size, after warm-up (default 0.2)\n"
    "  --help         print this and exit\n"
    "\n"
    "The last line printed starts with `JSON ` (see scripts/scaling_model.py).\n";

#define MIN_REPS 5
#define MAX_REPS 100000
#define WARMUP_REPS 3

/* The gradients (floats) of the demo network, 784-256-128-10, and of 784-256-256-10. */
static const long EXTRA_COUNTS[] = {235146, 269322};

struct point {
    long count; /* floats */
    double seconds;
};

static int cmp_long(const void *a, const void *b)
{
    const long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The message sizes, in floats, ascending and without duplicates; returns how many. */
static int message_counts(long max_count, long *counts, int cap)
{
    int n = 0;
    for (long c = 1; c <= max_count && n < cap; c *= 2)
        counts[n++] = c;
    for (size_t i = 0; i < sizeof EXTRA_COUNTS / sizeof EXTRA_COUNTS[0] && n < cap; i++)
        if (EXTRA_COUNTS[i] <= max_count)
            counts[n++] = EXTRA_COUNTS[i];
    qsort(counts, (size_t)n, sizeof counts[0], cmp_long);
    int unique = 0;
    for (int i = 0; i < n; i++)
        if (unique == 0 || counts[unique - 1] != counts[i])
            counts[unique++] = counts[i];
    return unique;
}

/* Repetitions that fill about min_time, given the slowest rank's time for one. */
static int reps_for(double once, double min_time)
{
    const double want = once > 0 ? min_time / once : MAX_REPS;
    return want < MIN_REPS ? MIN_REPS : want > MAX_REPS ? MAX_REPS : (int)want;
}

/* Seconds per allreduce of `count` floats: every rank's mean over the same number of
 * repetitions, and the slowest rank's mean returned (on every rank). */
static double time_allreduce(float *buf, int count, double min_time)
{
    for (int i = 0; i < WARMUP_REPS; i++)
        MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);

    /* One timed call sizes the run; the ranks agree on its repetitions. */
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double once = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &once, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    const int reps = reps_for(once, min_time);

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    for (int i = 0; i < reps; i++)
        MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double mean = (MPI_Wtime() - t0) / reps;
    MPI_Allreduce(MPI_IN_PLACE, &mean, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return mean;
}

/* Seconds per gradient sum of `count` floats as training does it (dist_sum_float, through
 * the node's shared-memory window, or one MPI_Allreduce when shared_memory is 0), with the
 * buffer rewritten before each sum as backward rewrites the gradients. Freshly written
 * cache lines must move between cores, which re-summing one buffer (time_allreduce) never
 * pays. The time leaves out the wait for the other ranks to arrive (training's `sync`);
 * the slowest rank's mean is returned on every rank, and *method says how the sum ran.
 * Ends the job if a sum comes out wrong. */
static double time_gradient_sum(const struct dist *d, float *buf, size_t count,
                                int shared_memory, double min_time, char *method,
                                size_t method_size)
{
    struct dist_sum *sum;
    dist_sum_create(&sum, d, count, shared_memory);
    snprintf(method, method_size, "%s", dist_sum_method(sum));
    double spent = 0.0;
    int reps = WARMUP_REPS + 1, done = 0;
    for (int timed = 0; timed < 2; timed++) {
        /* The untimed pass warms up and sizes the timed one; the ranks agree on it. */
        if (timed) {
            double once = spent / (reps - WARMUP_REPS);
            MPI_Allreduce(MPI_IN_PLACE, &once, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            reps = reps_for(once, min_time);
            spent = 0.0;
        }
        for (int r = 0; r < reps; r++, done++) {
            for (size_t i = 0; i < count; i++) /* small integers: exact sums */
                buf[i] = (float)((i + (size_t)done) & 15);
            const double t0 = MPI_Wtime();
            const double waited = dist_sum_float(sum, buf, count);
            if (timed || r >= WARMUP_REPS)
                spent += MPI_Wtime() - t0 - waited;
        }
    }
    const int ranks = dist_size(d);
    for (size_t i = 0; i < count; i++)
        if (buf[i] != (float)(ranks * (int)((i + (size_t)done - 1) & 15))) {
            fprintf(stderr, "bench_allreduce: rank %d: wrong gradient sum %g at %zu (%s)\n",
                    dist_rank(d), (double)buf[i], i, method);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    dist_sum_free(&sum);
    double mean = spent / reps;
    MPI_Allreduce(MPI_IN_PLACE, &mean, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return mean;
}

/* Least squares of t = a + b·n weighted by 1/t² (relative error), so the small sizes set a
 * and the large ones b. Returns 0, or -1 when the sizes cannot determine a line. */
static int fit_line(const struct point *pts, int n, double *a, double *b)
{
    double s = 0, sx = 0, sxx = 0, st = 0, sxt = 0;
    for (int i = 0; i < n; i++) {
        const double x = 4.0 * (double)pts[i].count, t = pts[i].seconds;
        if (!(t > 0))
            continue;
        const double w = 1.0 / (t * t);
        s += w;
        sx += w * x;
        sxx += w * x * x;
        st += w * t;
        sxt += w * x * t;
    }
    const double det = s * sxx - sx * sx;
    if (!(det > 0))
        return -1;
    *a = (sxx * st - sx * sxt) / det;
    *b = (s * sxt - sx * st) / det;
    return 0;
}

/* Parses the options; returns -1 to exit 0 (--help), 2 on an error, 0 to run. */
static int parse_args(int argc, char **argv, int rank, long *max_bytes, double *min_time)
{
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            if (rank == 0)
                fputs(USAGE, stdout);
            return -1;
        }
        if ((strcmp(opt, "--max-bytes") != 0 && strcmp(opt, "--min-time") != 0) ||
            i + 1 >= argc) {
            if (rank == 0)
                fprintf(stderr, "bench_allreduce: bad or incomplete option '%s'\n%s", opt,
                        USAGE);
            return 2;
        }
        const char *val = argv[++i];
        char *end;
        if (strcmp(opt, "--max-bytes") == 0) {
            *max_bytes = strtol(val, &end, 10);
            if (*end != '\0' || *max_bytes < 4 || *max_bytes / 4 > 0x7fffffffL) {
                if (rank == 0)
                    fprintf(stderr, "bench_allreduce: --max-bytes wants 4 to 2^33, not '%s'\n",
                            val);
                return 2;
            }
        } else {
            *min_time = strtod(val, &end);
            if (*end != '\0' || !(*min_time > 0 && *min_time <= 60)) {
                if (rank == 0)
                    fprintf(stderr, "bench_allreduce: --min-time wants (0, 60] s, not '%s'\n",
                            val);
                return 2;
            }
        }
    }
    return 0;
}

static void print_json(const struct point *pts, int n, int ranks, int fitted, double alpha,
                       double beta)
{
    printf("JSON {\"bench\":\"allreduce\",\"ranks\":%d,", ranks);
    if (fitted)
        printf("\"alpha_s\":%.6g,\"beta_s_per_byte\":%.6g,", alpha, beta);
    else
        printf("\"alpha_s\":null,\"beta_s_per_byte\":null,");
    printf("\"points\":[");
    for (int i = 0; i < n; i++)
        printf("%s[%ld,%.6g]", i ? "," : "", 4 * pts[i].count, pts[i].seconds);
    printf("]}\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);

    long max_bytes = 16L * 1024 * 1024 * 4;
    double min_time = 0.2;
    const int st = parse_args(argc, argv, rank, &max_bytes, &min_time);
    if (st != 0) {
        MPI_Finalize();
        return st < 0 ? 0 : st;
    }

    long counts[64];
    const int n = message_counts(max_bytes / 4, counts, 64);
    float *buf = malloc((size_t)counts[n - 1] * sizeof(float));
    struct point *pts = malloc((size_t)n * sizeof *pts);
    if (!buf || !pts) {
        fprintf(stderr, "bench_allreduce: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    /* A sanity check that also touches every page: ones sum to the rank count. */
    for (long i = 0; i < counts[n - 1]; i++)
        buf[i] = 1.0f;
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)counts[n - 1], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (long i = 0; i < counts[n - 1]; i++)
        if (buf[i] != (float)ranks) {
            fprintf(stderr, "bench_allreduce: rank %d: wrong sum %g at %ld (want %d)\n", rank,
                    (double)buf[i], i, ranks);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    /* Zeros stay zeros under repeated summing: no overflow, no denormals. */
    memset(buf, 0, (size_t)counts[n - 1] * sizeof(float));

    if (rank == 0) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        MPI_Get_library_version(lib, &len);
        lib[strcspn(lib, "\n,")] = '\0';
        printf("# MPI_Allreduce(MPI_IN_PLACE, float, SUM): %d rank(s), %.2g s per size; %s\n",
               ranks, min_time, lib);
        printf("# busbw = algbw * 2(p-1)/p (nccl-tests); time = max over ranks of the mean\n");
        printf("%12s %12s %12s %12s %12s\n", "bytes", "floats", "time(us)", "algbw(GB/s)",
               "busbw(GB/s)");
    }
    const double bus_factor = 2.0 * (ranks - 1) / ranks;
    for (int i = 0; i < n; i++) {
        pts[i].count = counts[i];
        pts[i].seconds = time_allreduce(buf, (int)counts[i], min_time);
        if (rank == 0) {
            const double bytes = 4.0 * (double)counts[i], algbw = bytes / pts[i].seconds;
            printf("%12.0f %12ld %12.2f %12.3f %12.3f\n", bytes, counts[i],
                   pts[i].seconds * 1e6, algbw * 1e-9, bus_factor * algbw * 1e-9);
            fflush(stdout);
        }
    }

    /* The demo networks' gradient sums (with the stop flag training adds) the way a
     * training step makes them. */
    if (ranks > 1) {
        struct dist *d;
        struct dmlp_error err = {0};
        if (dist_create_world(&d, &err) != DMLP_OK) {
            fprintf(stderr, "bench_allreduce: rank %d: %s\n", rank, err.msg);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (rank == 0)
            printf("# gradient sum as a training step makes it: buffer rewritten before each "
                   "sum,\n# time without the wait for the other ranks (max over ranks of "
                   "the mean)\n%12s %12s %12s  %s\n", "bytes", "floats", "time(us)",
                   "method");
        for (size_t i = 0; i < sizeof EXTRA_COUNTS / sizeof EXTRA_COUNTS[0]; i++) {
            const size_t count = (size_t)EXTRA_COUNTS[i] + 1;
            if ((long)count > counts[n - 1])
                continue;
            for (int shared = 0; shared < 2; shared++) {
                char method[128];
                const double t = time_gradient_sum(d, buf, count, shared, min_time, method,
                                                   sizeof method);
                if (rank == 0)
                    printf("%12zu %12zu %12.2f  %s\n", 4 * count, count, t * 1e6, method);
            }
        }
        fflush(stdout);
        dist_free(&d);
    }

    if (rank == 0) {
        double a = 0, b = 0, alpha = 0, beta = 0;
        int fitted = 0;
        if (ranks == 1) {
            printf("# ring model: not fitted (1 rank: t(n) = 0, nothing is communicated)\n");
        } else if (fit_line(pts, n, &a, &b) != 0) {
            printf("# ring model: not fitted (too few distinct sizes)\n");
        } else {
            alpha = a / (2.0 * (ranks - 1));
            beta = b / bus_factor;
            fitted = 1;
            printf("# ring model t(n) = 2(p-1)*alpha + 2((p-1)/p)*n*beta, least squares on "
                   "relative error over all %d sizes:\n", n);
            printf("#   alpha = %.3g us per step, beta = %.3g ns per byte (%.2f GB/s)%s\n",
                   alpha * 1e6, beta * 1e9, beta > 0 ? 1e-9 / beta : 0.0,
                   alpha < 0 || beta < 0 ? "  [negative: the model does not fit these times]"
                                         : "");
        }
        print_json(pts, n, ranks, fitted, alpha, beta);
    }
    free(pts);
    free(buf);
    MPI_Finalize();
    return 0;
}
