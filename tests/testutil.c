#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <CUnit/Basic.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/checkpoint.h"
#include "par/dist.h"
#include "nn/model.h"

int tu_run(CU_SuiteInfo *suites)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    if (CU_register_suites(suites) != CUE_SUCCESS) {
        fprintf(stderr, "suite registration failed: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return (failed == 0 && run > 0) ? 0 : 1;
}

int tu_mpi_begin(int *argc, char ***argv, int *rank, int *size, char *dir, size_t cap,
                 const char *tag)
{
    struct dmlp_error e = {0};
    if (dist_init(argc, argv, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    if (*rank == 0)
        tu_mkdtemp(dir, cap, tag);
    MPI_Bcast(dir, (int)cap, MPI_CHAR, 0, MPI_COMM_WORLD);
    return 0;
}

int tu_run_mpi(CU_SuiteInfo *suites, int rank, const char *scratch)
{
    unsigned failures = 1;
    if (CU_initialize_registry() == CUE_SUCCESS && CU_register_suites(suites) == CUE_SUCCESS) {
        CU_basic_set_mode(rank == 0 ? CU_BRM_VERBOSE : CU_BRM_SILENT);
        CU_basic_run_tests();
        failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
        if (CU_get_number_of_tests_run() == 0)
            failures++;
        CU_cleanup_registry();
    }
    unsigned total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_UNSIGNED, MPI_SUM, MPI_COMM_WORLD);
    if (failures)
        fprintf(stderr, "rank %d: %u failure(s)\n", rank, failures);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0 && scratch)
        tu_rmtree(scratch);
    return total ? 1 : 0;
}

char tu_out[1 << 16];

int tu_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const int rc = tu_run_cmd(cmd, tu_out, sizeof tu_out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("\n    $ %.300s  -> %d (%.1f s)\n", cmd, rc,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return rc;
}

int tu_has(const char *needle)
{
    if (strstr(tu_out, needle))
        return 1;
    printf("    output lacks '%s':\n%s\n", needle, tu_out);
    return 0;
}

double tu_max_rel_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - (double)b[i]));
        den = fmax(den, fabs((double)a[i]));
    }
    return den > 0 ? num / den : num;
}

void tu_mkdtemp(char *out, size_t n, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, n, "%s/dmlp-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        abort();
    }
}

void tu_rmtree(const char *path)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
}

int tu_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int tu_run_cmd(const char *cmd, char *out, size_t cap)
{
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t used = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && used + 1 < cap) {
            size_t take = got < cap - 1 - used ? got : cap - 1 - used;
            memcpy(out + used, buf, take);
            used += take;
        }
    }
    if (out && cap)
        out[used] = '\0';
    int st = pclose(p);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

double tu_reldiff(double a, double b, double floor)
{
    double m = fmax(fmax(fabs(a), fabs(b)), floor);
    return fabs(a - b) / m;
}

double tu_act_ref(enum dmlp_activation act, double z)
{
    switch (act) {
    case DMLP_ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-z));
    case DMLP_ACT_TANH:
        return tanh(z);
    case DMLP_ACT_RELU:
        return z > 0.0 ? z : 0.0;
    case DMLP_ACT_LEAKY_RELU:
        return z > 0.0 ? z : 0.01 * z;
    case DMLP_ACT_LINEAR:
    case DMLP_ACT_SOFTMAX:
        break;
    }
    return z;
}

struct model *tu_load_model(const char *path)
{
    size_t in, n;
    struct config_layer *ls = NULL;
    enum dmlp_loss loss;
    struct model *m = NULL;
    struct dmlp_error e = {0};
    if (checkpoint_read_network(path, &in, &ls, &n, &loss, &e) ||
        model_create(&m, in, ls, n, loss, &e) || checkpoint_load_layers(path, m, &e)) {
        printf("    cannot load %s: %s\n", path, e.msg);
        model_free(&m);
    }
    free(ls);
    return m;
}

int tu_same_params(const struct model *a, const struct model *b)
{
    return a && b && a->n_params == b->n_params &&
           memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0;
}

double tu_checkpoint_diff(const char *a, const char *b)
{
    struct model *ma = tu_load_model(a), *mb = tu_load_model(b);
    double d = -1.0;
    if (ma && mb && ma->n_params == mb->n_params)
        d = memcmp(ma->params, mb->params, ma->n_params * sizeof(float))
                ? fmax(tu_max_rel_diff(ma->params, mb->params, ma->n_params), 1e-300)
                : 0.0; /* bits differ (if only by −0 vs +0): never 0 */
    model_free(&ma);
    model_free(&mb);
    return d;
}

const char *tu_fmt(const char *fmt, ...)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    return b;
}

float *tu_read_floats(const char *path, const char *name, size_t *count)
{
    *count = 0;
    float *v = NULL;
    const hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t d = f >= 0 ? H5Dopen2(f, name, H5P_DEFAULT) : H5I_INVALID_HID;
    const hid_t s = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    const hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (n > 0 && (v = malloc((size_t)n * sizeof *v)) &&
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0) {
        *count = (size_t)n;
    } else {
        free(v);
        v = NULL;
        printf("\n  cannot read %s from %s\n", name, path);
    }
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0)
        H5Fclose(f);
    return v;
}
