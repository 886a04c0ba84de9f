#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5util.h"

#define FORMAT_NAME "dmlp-checkpoint"
#define FORMAT_VERSION 1
#define SHUFFLE_SCHEME "xoshiro256** seeded by splitmix64(seed, 1 + epoch); Fisher-Yates"

/* ---- small HDF5 helpers ----------------------------------------------------------- */

/* Attribute writers for write_file, which reports one failure for the whole file (the
 * message of h5util's writer is not needed there). */
static int attr_write_str(hid_t obj, const char *name, const char *value)
{
    struct dmlp_error e;
    return h5util_write_str_attr(obj, "", ".", name, value, &e) ? -1 : 0;
}

static int attr_write_u64(hid_t obj, const char *name, uint64_t v)
{
    struct dmlp_error e;
    return h5util_write_num_attr(obj, "", ".", name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, &e)
               ? -1 : 0;
}

static int attr_write_f64(hid_t obj, const char *name, double v)
{
    struct dmlp_error e;
    return h5util_write_num_attr(obj, "", ".", name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, &e)
               ? -1 : 0;
}

/* Reads a numeric attribute of the given class (H5T_INTEGER or H5T_FLOAT) converted to
 * mem_type; -1 if absent or of another class. */
static int attr_read_num(hid_t obj, const char *name, H5T_class_t cls, hid_t mem_type, void *v)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    int ok = H5Tget_class(ft) == cls && H5Aread(a, mem_type, v) >= 0;
    H5Tclose(ft);
    H5Aclose(a);
    return ok ? 0 : -1;
}

static int attr_read_f64(hid_t obj, const char *name, double *v)
{
    return attr_read_num(obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

static int attr_read_u64(hid_t obj, const char *name, uint64_t *v)
{
    return attr_read_num(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, v);
}

/* Reads a string attribute (fixed or variable length) into out; -1 if absent/not a string. */
static int attr_read_str(hid_t obj, const char *name, char *out, size_t cap)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft)); /* h5py writes UTF-8: no ASCII<->UTF-8 path */
            char *s = NULL;
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(out, cap, "%s", s);
                H5free_memory(s);
                rc = 0;
            }
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(ft);
            char *buf = calloc(sz + 1, 1);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, sz + 1);
            H5Tset_cset(mt, H5Tget_cset(ft));
            if (buf && H5Aread(a, mt, buf) >= 0) {
                snprintf(out, cap, "%s", buf);
                rc = 0;
            }
            H5Tclose(mt);
            free(buf);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}


/* A float32 dataset of rank 1 or 2, chunked (one chunk up to ~1 GiB) so that it can carry
 * the Fletcher-32 checksum, which HDF5 verifies on every read. */
static int write_floats(hid_t loc, const char *name, const float *data, int rank,
                        const hsize_t *dims)
{
    hsize_t chunk[2] = {dims[0], rank > 1 ? dims[1] : 1};
    const hsize_t max_chunk = (hsize_t)1 << 28; /* elements: 1 GiB of float32 */
    if (rank == 2 && chunk[0] * chunk[1] > max_chunk)
        chunk[0] = max_chunk / chunk[1] ? max_chunk / chunk[1] : 1;
    if (rank == 1 && chunk[0] > max_chunk)
        chunk[0] = max_chunk;
    if (chunk[0] == 0)
        chunk[0] = 1;
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int empty = dims[0] == 0 || (rank > 1 && dims[1] == 0);
    if (!empty) {
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_fletcher32(dcpl);
    }
    hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : (empty ? 0 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                                                       H5P_DEFAULT, data));
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    return st < 0 ? -1 : 0;
}

/* Reads a float dataset whose shape must be exactly dims (rank 1 or 2). */
static int read_floats(hid_t loc, const char *name, float *out, int rank, const hsize_t *dims,
                       const char *path, struct dmlp_error *err)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is missing", path, name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s cannot be opened", path, name);
    hid_t space = H5Dget_space(ds);
    int frank = H5Sget_simple_extent_ndims(space);
    hsize_t fd[2] = {0, 0};
    if (frank == rank)
        H5Sget_simple_extent_dims(space, fd, NULL);
    H5Sclose(space);
    int shape_ok = frank == rank && fd[0] == dims[0] && (rank < 2 || fd[1] == dims[1]);
    if (!shape_ok) {
        H5Dclose(ds);
        if (rank == 2)
            return dmlp_fail(err, DMLP_ERR_INPUT,
                             "%s: %s has shape [%llu, %llu] (rank %d), expected [%llu, %llu]",
                             path, name, (unsigned long long)fd[0], (unsigned long long)fd[1],
                             frank, (unsigned long long)dims[0], (unsigned long long)dims[1]);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has %d dimension(s) of length %llu, "
                         "expected 1 of length %llu", path, name, frank,
                         (unsigned long long)fd[0], (unsigned long long)dims[0]);
    }
    herr_t st = 0;
    if (dims[0] && (rank < 2 || dims[1]))
        st = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(ds);
    if (st < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: %s cannot be read (damaged file or checksum mismatch)", path, name);
    return DMLP_OK;
}



/* ---- save ----------------------------------------------------------------------------- */

static int write_file(const char *tmp, const struct model *m, const struct optim *o,
                      const struct checkpoint_state *st, const char *config_yaml)
{
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return -1;
    int bad = 0;
    bad |= attr_write_str(f, "format", FORMAT_NAME);
    bad |= attr_write_u64(f, "format_version", FORMAT_VERSION);
    bad |= attr_write_u64(f, "epoch", st->epoch);
    bad |= attr_write_u64(f, "step_in_epoch", st->step_in_epoch);
    bad |= attr_write_u64(f, "step", st->step);
    bad |= attr_write_u64(f, "samples_seen", st->samples_seen);
    bad |= attr_write_str(f, "config", config_yaml ? config_yaml : "");
    bad |= attr_write_str(f, "dmlp_version", DMLP_VERSION);
    bad |= attr_write_str(f, "loss", config_loss_name(m->loss));
    bad |= attr_write_u64(f, "input_dim", model_input_dim(m));

    hid_t layers = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= layers < 0;
    for (size_t l = 0; !bad && l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        char name[32];
        snprintf(name, sizeof name, "%zu", l);
        hid_t g = H5Gcreate2(layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            bad = 1;
            break;
        }
        hsize_t wd[2] = {L->out, L->in}, bd[1] = {L->out};
        bad |= write_floats(g, "weight", L->W, 2, wd);
        bad |= write_floats(g, "bias", L->b, 1, bd);
        bad |= attr_write_str(g, "activation", config_activation_name(L->act));
        H5Gclose(g);
    }
    if (layers >= 0)
        H5Gclose(layers);

    hid_t og = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= og < 0;
    if (og >= 0) {
        bad |= attr_write_str(og, "name", o ? config_optimizer_name(o->cfg.name) : "none");
        bad |= attr_write_u64(og, "steps", o ? o->steps : 0);
        const char *names[OPTIM_MAX_STATE];
        float *bufs[OPTIM_MAX_STATE];
        const size_t nb = o ? optim_state_buffers(o, names, bufs) : 0;
        for (size_t i = 0; i < nb; i++) {
            hsize_t n[1] = {o->n};
            bad |= write_floats(og, names[i], bufs[i], 1, n);
        }
        H5Gclose(og);
    }
    if (m->norm_mean) {
        hid_t ng = H5Gcreate2(f, "normalization", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        bad |= ng < 0;
        if (ng >= 0) {
            hsize_t d[1] = {model_input_dim(m)};
            bad |= write_floats(ng, "mean", m->norm_mean, 1, d);
            bad |= write_floats(ng, "std", m->norm_std, 1, d);
            bad |= attr_write_str(ng, "formula", "x' = (x - mean) / std");
            H5Gclose(ng);
        }
    }
    hid_t eg = H5Gcreate2(f, "early_stopping", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= eg < 0;
    if (eg >= 0) {
        bad |= attr_write_f64(eg, "best_metric", st->best_metric);
        bad |= attr_write_u64(eg, "best_epoch", st->best_epoch);
        bad |= attr_write_u64(eg, "bad_epochs", st->bad_epochs);
        H5Gclose(eg);
    }
    hid_t rg = H5Gcreate2(f, "rng", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= rg < 0;
    if (rg >= 0) {
        bad |= attr_write_u64(rg, "seed", st->seed);
        bad |= attr_write_f64(rg, "fixed_point_shift", (double)st->fx_shift);
        bad |= attr_write_str(rg, "shuffle", SHUFFLE_SCHEME);
        H5Gclose(rg);
    }
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        bad = 1;
    if (H5Fclose(f) < 0)
        bad = 1;
    return bad ? -1 : 0;
}

/* Parses "step-NNNNNNNN.h5"; returns 1 and the step when the name matches. */
static int parse_step_name(const char *name, uint64_t *step)
{
    size_t len = strlen(name);
    if (len < 9 || strncmp(name, "step-", 5) != 0 || strcmp(name + len - 3, ".h5") != 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 5; i < len - 3; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *step = v;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Removes the oldest step-*.h5 beyond keep_last; never the one just written (newest). */
static void prune(const char *dir, uint32_t keep_last, uint64_t newest)
{
    DIR *d;
    struct dirent *e;
    /* Temporary files of writers that died (SIGKILL, node failure) before their rename. */
    if ((d = opendir(dir))) {
        while ((e = readdir(d))) {
            const char *nm = e->d_name;
            if ((strncmp(nm, ".step-", 6) == 0 || strncmp(nm, ".latest.h5", 10) == 0 ||
                 strncmp(nm, ".best.h5", 8) == 0) &&
                strstr(nm, ".tmp.")) {
                char path[PATH_MAX];
                snprintf(path, sizeof path, "%s/%s", dir, nm);
                unlink(path);
            }
        }
        closedir(d);
    }
    if (keep_last == 0)
        return;
    d = opendir(dir);
    if (!d)
        return;
    size_t n = 0, cap = 16;
    uint64_t *steps = malloc(cap * sizeof *steps);
    while (steps && (e = readdir(d))) {
        uint64_t s;
        if (!parse_step_name(e->d_name, &s))
            continue;
        if (n == cap) {
            uint64_t *t = realloc(steps, 2 * cap * sizeof *steps);
            if (!t)
                break;
            steps = t;
            cap *= 2;
        }
        steps[n++] = s;
    }
    closedir(d);
    if (!steps)
        return;
    qsort(steps, n, sizeof *steps, cmp_u64);
    for (size_t i = 0; i + keep_last < n; i++) {
        if (steps[i] == newest)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/step-%08llu.h5", dir, (unsigned long long)steps[i]);
        unlink(path);
    }
    free(steps);
}

/* Writes the checkpoint to final through tmp: write, flush, fsync, rename, fsync the
 * directory. A crash leaves either the old file or the new one, never half of one. */
static int write_atomically(const char *dir, const char *tmp, const char *final,
                            const struct model *m, const struct optim *o,
                            const struct checkpoint_state *st, const char *config_yaml,
                            struct dmlp_error *err)
{
    errno = 0;
    if (write_file(tmp, m, o, st, config_yaml) || dmlp_fsync_path(tmp, 0)) {
        int e = errno;
        unlink(tmp);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot write checkpoint%s%s", final,
                         e ? ": " : "", e ? strerror(e) : "");
    }
    if (rename(tmp, final)) {
        int e = errno;
        unlink(tmp);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot rename into place: %s", final,
                         strerror(e));
    }
    dmlp_fsync_path(dir, 1);
    return DMLP_OK;
}

static int save_quietly(const char *dir, const struct model *m, const struct optim *o,
                        const struct checkpoint_state *st, const char *config_yaml,
                        uint32_t keep_last, char *path_out, size_t path_cap,
                        struct dmlp_error *err)
{
    if (dmlp_mkdir_p(dir))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "checkpoint.dir %s: cannot create: %s", dir,
                         strerror(errno));
    char name[64], final[PATH_MAX], tmp[PATH_MAX], link_tmp[PATH_MAX], latest[PATH_MAX];
    snprintf(name, sizeof name, "step-%08llu.h5", (unsigned long long)st->step);
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid()) >= (int)sizeof tmp ||
        snprintf(link_tmp, sizeof link_tmp, "%s/.latest.h5.tmp.%ld", dir, (long)getpid()) >=
            (int)sizeof link_tmp ||
        snprintf(latest, sizeof latest, "%s/latest.h5", dir) >= (int)sizeof latest)
        return dmlp_fail(err, DMLP_ERR_INPUT, "checkpoint.dir %s: path too long", dir);

    int rc = write_atomically(dir, tmp, final, m, o, st, config_yaml, err);
    if (rc)
        return rc;
    /* latest.h5 → step-N.h5 (relative, so the run directory can be moved): a new symlink
     * renamed over the old one, so a reader sees either the old or the new target. */
    unlink(link_tmp);
    if (symlink(name, link_tmp) || rename(link_tmp, latest)) {
        int e = errno;
        unlink(link_tmp);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot point latest.h5 at %s: %s", dir,
                         name, strerror(e));
    }
    dmlp_fsync_path(dir, 1);
    prune(dir, keep_last, st->step);
    if (path_out)
        snprintf(path_out, path_cap, "%s", final);
    return DMLP_OK;
}

static int save_as_quietly(const char *dir, const char *name, const struct model *m,
                           const struct optim *o, const struct checkpoint_state *st,
                           const char *config_yaml, struct dmlp_error *err)
{
    if (dmlp_mkdir_p(dir))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "checkpoint.dir %s: cannot create: %s", dir,
                         strerror(errno));
    char final[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid()) >= (int)sizeof tmp)
        return dmlp_fail(err, DMLP_ERR_INPUT, "checkpoint.dir %s: path too long", dir);
    return write_atomically(dir, tmp, final, m, o, st, config_yaml, err);
}

/* ---- load ------------------------------------------------------------------------------ */

static int open_checkpoint(const char *path, hid_t *out, struct dmlp_error *err)
{
    struct stat sb;
    if (stat(path, &sb))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not a regular file", path);
    if (H5Fis_hdf5(path) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file (or truncated)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5 (damaged or truncated?)",
                         path);
    *out = f;
    return DMLP_OK;
}

static int read_network_quietly(const char *path, size_t *in_dim, struct config_layer **layers,
                                size_t *n_layers, enum dmlp_loss *loss, struct dmlp_error *err)
{
    *layers = NULL;
    *n_layers = 0;
    hid_t f;
    int rc = open_checkpoint(path, &f, err);
    if (rc)
        return rc;
    struct config_layer *ls = NULL;
    size_t n = 0, prev_out = 0;
    rc = DMLP_OK;
    if (H5Lexists(f, "layers", H5P_DEFAULT) <= 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers is missing (not a dmlp checkpoint?)",
                       path);
        goto done;
    }
    hid_t lg = H5Gopen2(f, "layers", H5P_DEFAULT);
    H5G_info_t info;
    if (lg < 0 || H5Gget_info(lg, &info) < 0 || info.nlinks == 0) {
        if (lg >= 0)
            H5Gclose(lg);
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers is empty or unreadable", path);
        goto done;
    }
    n = (size_t)info.nlinks;
    ls = calloc(n, sizeof *ls);
    for (size_t l = 0; ls && l < n && !rc; l++) {
        char name[64];
        snprintf(name, sizeof name, "%zu/weight", l);
        if (H5Lexists(lg, name, H5P_DEFAULT) <= 0) {
            snprintf(name, sizeof name, "%zu", l);
            if (H5Lexists(lg, name, H5P_DEFAULT) <= 0)
                rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers/%zu is missing (layers must "
                               "be numbered 0..%zu)", path, l, n - 1);
            else
                rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers/%zu/weight is missing", path, l);
            break;
        }
        hid_t ds = H5Dopen2(lg, name, H5P_DEFAULT);
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[2] = {0, 0};
        int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (r == 2)
            H5Sget_simple_extent_dims(sp, dims, NULL);
        if (sp >= 0)
            H5Sclose(sp);
        if (ds >= 0)
            H5Dclose(ds);
        if (r != 2 || dims[0] == 0 || dims[1] == 0 || dims[0] > UINT32_MAX) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers/%zu/weight must be a non-empty "
                           "2-D [out, in] array", path, l);
            break;
        }
        if (l == 0)
            *in_dim = (size_t)dims[1];
        else if (dims[1] != prev_out) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers/%zu/weight has %llu inputs but "
                           "layer %zu has %zu outputs", path, l, (unsigned long long)dims[1],
                           l - 1, prev_out);
            break;
        }
        prev_out = (size_t)dims[0];
        ls[l].units = (uint32_t)dims[0];
        snprintf(name, sizeof name, "%zu", l);
        hid_t g = H5Gopen2(lg, name, H5P_DEFAULT);
        char act[64];
        if (g < 0 || attr_read_str(g, "activation", act, sizeof act) ||
            config_activation_parse(act, &ls[l].activation))
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers/%zu: missing or unknown "
                           "activation attribute", path, l);
        if (g >= 0)
            H5Gclose(g);
    }
    H5Gclose(lg);
    if (!ls && !rc)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    if (!rc) {
        char lname[64];
        if (attr_read_str(f, "loss", lname, sizeof lname) == 0) {
            if (!strcmp(lname, "cross_entropy"))
                *loss = DMLP_LOSS_CROSS_ENTROPY;
            else if (!strcmp(lname, "mse"))
                *loss = DMLP_LOSS_MSE;
            else
                rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: unknown loss attribute '%s'", path,
                               lname);
        } else {
            *loss = ls[n - 1].activation == DMLP_ACT_SOFTMAX ? DMLP_LOSS_CROSS_ENTROPY
                                                             : DMLP_LOSS_MSE;
        }
    }
done:
    H5Fclose(f);
    if (rc) {
        free(ls);
        return rc;
    }
    *layers = ls;
    *n_layers = n;
    return DMLP_OK;
}

static int load_layers(hid_t f, const char *path, struct model *m, struct dmlp_error *err)
{
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        char name[64];
        snprintf(name, sizeof name, "/layers/%zu", l);
        if (H5Lexists(f, "layers", H5P_DEFAULT) <= 0 || H5Lexists(f, name, H5P_DEFAULT) <= 0)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is missing: the checkpoint has fewer "
                             "layers than the network (%zu)", path, name, m->n_layers);
        hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
        char act[64] = "";
        attr_read_str(g, "activation", act, sizeof act);
        hsize_t wd[2] = {L->out, L->in}, bd[1] = {L->out};
        char wname[80], bname[80];
        snprintf(wname, sizeof wname, "%s/weight", name);
        snprintf(bname, sizeof bname, "%s/bias", name);
        int rc = read_floats(f, wname, L->W, 2, wd, path, err);
        if (!rc)
            rc = read_floats(f, bname, L->b, 1, bd, path, err);
        if (!rc && act[0] && strcmp(act, config_activation_name(L->act)))
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has activation %s, but the network's "
                           "layer %zu is %s", path, name, act, l,
                           config_activation_name(L->act));
        H5Gclose(g);
        if (rc)
            return rc;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "/layers/%zu", m->n_layers);
    if (H5Lexists(f, extra, H5P_DEFAULT) > 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: the checkpoint has more layers than the "
                         "network (%zu)", path, m->n_layers);
    if (H5Lexists(f, "normalization", H5P_DEFAULT) > 0) {
        const size_t d = model_input_dim(m);
        float *mean = malloc(d * sizeof(float)), *sd = malloc(d * sizeof(float));
        hsize_t dims[1] = {d};
        int rc = mean && sd ? DMLP_OK : dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
        if (!rc)
            rc = read_floats(f, "/normalization/mean", mean, 1, dims, path, err);
        if (!rc)
            rc = read_floats(f, "/normalization/std", sd, 1, dims, path, err);
        for (size_t j = 0; !rc && j < d; j++)
            if (!isfinite(mean[j]) || !(sd[j] > 0) || !isfinite(sd[j]))
                rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /normalization: feature %zu has mean "
                               "%g and std %g (std must be finite and > 0)", path, j,
                               (double)mean[j], (double)sd[j]);
        if (!rc)
            rc = model_set_normalization(m, mean, sd, err);
        free(mean);
        free(sd);
        return rc;
    }
    return DMLP_OK;
}

static int load_layers_quietly(const char *path, struct model *m, struct dmlp_error *err)
{
    hid_t f;
    int rc = open_checkpoint(path, &f, err);
    if (rc)
        return rc;
    rc = load_layers(f, path, m, err);
    H5Fclose(f);
    return rc;
}

static int load_quietly(const char *path, struct model *m, struct optim *o,
                        struct checkpoint_state *st, struct dmlp_error *err)
{
    hid_t f;
    int rc = open_checkpoint(path, &f, err);
    if (rc)
        return rc;
    char fmt[64] = "";
    uint64_t version = 0;
    if (attr_read_str(f, "format", fmt, sizeof fmt) || strcmp(fmt, FORMAT_NAME)) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: not a dmlp checkpoint (root attribute "
                       "format is '%s', expected '%s')", path, fmt, FORMAT_NAME);
        goto done;
    }
    if (attr_read_u64(f, "format_version", &version) || version != FORMAT_VERSION) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: checkpoint format_version %llu is not "
                       "supported (this dmlp reads version %d)", path,
                       (unsigned long long)version, FORMAT_VERSION);
        goto done;
    }
    rc = load_layers(f, path, m, err);
    if (rc)
        goto done;
    if (st) {
        memset(st, 0, sizeof *st);
        if (attr_read_u64(f, "epoch", &st->epoch) || attr_read_u64(f, "step", &st->step) ||
            attr_read_u64(f, "samples_seen", &st->samples_seen)) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: the root attributes epoch, step and "
                           "samples_seen are required", path);
            goto done;
        }
        attr_read_u64(f, "step_in_epoch", &st->step_in_epoch);
        st->best_metric = NAN;
        if (H5Lexists(f, "early_stopping", H5P_DEFAULT) > 0) {
            hid_t eg = H5Gopen2(f, "early_stopping", H5P_DEFAULT);
            attr_read_f64(eg, "best_metric", &st->best_metric);
            attr_read_u64(eg, "best_epoch", &st->best_epoch);
            attr_read_u64(eg, "bad_epochs", &st->bad_epochs);
            H5Gclose(eg);
        }
        hid_t rg = H5Lexists(f, "rng", H5P_DEFAULT) > 0 ? H5Gopen2(f, "rng", H5P_DEFAULT) : -1;
        double shift = 0;
        if (rg >= 0 && attr_read_f64(rg, "fixed_point_shift", &shift) == 0 && fabs(shift) < 4096)
            st->fx_shift = (int32_t)shift;
        if (rg < 0 || attr_read_u64(rg, "seed", &st->seed)) {
            if (rg >= 0)
                H5Gclose(rg);
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /rng seed is missing", path);
            goto done;
        }
        H5Gclose(rg);
    }
    if (o) {
        hid_t og = H5Lexists(f, "optimizer", H5P_DEFAULT) > 0
                       ? H5Gopen2(f, "optimizer", H5P_DEFAULT) : -1;
        if (og < 0) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /optimizer is missing", path);
            goto done;
        }
        char name[64] = "";
        attr_read_str(og, "name", name, sizeof name);
        /* The config governs: state is restored only when it belongs to the same
         * optimizer; a changed optimizer starts from zero state, as a fresh one would. */
        const int same = !strcmp(name, config_optimizer_name(o->cfg.name)) ||
                         (!name[0] && o->cfg.name == DMLP_OPT_SGD);
        const char *names[OPTIM_MAX_STATE];
        float *bufs[OPTIM_MAX_STATE];
        const size_t nb = optim_state_buffers(o, names, bufs);
        o->steps = 0;
        for (size_t i = 0; i < nb; i++)
            memset(bufs[i], 0, o->n * sizeof(float));
        if (same) {
            attr_read_u64(og, "steps", &o->steps);
            for (size_t i = 0; i < nb && !rc; i++) {
                if (H5Lexists(og, names[i], H5P_DEFAULT) <= 0)
                    continue; /* e.g. momentum raised from 0: its buffer starts at zero */
                char dname[96];
                snprintf(dname, sizeof dname, "/optimizer/%s", names[i]);
                hsize_t n[1] = {o->n};
                rc = read_floats(f, dname, bufs[i], 1, n, path, err);
            }
        }
        H5Gclose(og);
    }
done:
    H5Fclose(f);
    return rc;
}

int checkpoint_latest(const char *dir, char *out, size_t cap)
{
    char latest[PATH_MAX];
    snprintf(latest, sizeof latest, "%s/latest.h5", dir);
    struct stat sb;
    if (stat(latest, &sb) != 0) /* follows the link: a dangling link counts as none */
        return 0;
    char target[PATH_MAX];
    ssize_t len = readlink(latest, target, sizeof target - 1);
    if (len > 0) {
        target[len] = '\0';
        if (target[0] == '/')
            snprintf(out, cap, "%s", target);
        else
            snprintf(out, cap, "%s/%s", dir, target);
    } else {
        snprintf(out, cap, "%s", latest);
    }
    return 1;
}

static int is_checkpoint_quietly(const char *path)
{
    if (H5Fis_hdf5(path) <= 0)
        return 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return 0;
    char fmt[64] = "";
    int yes = attr_read_str(f, "format", fmt, sizeof fmt) == 0 && !strcmp(fmt, FORMAT_NAME);
    if (!yes)
        yes = H5Lexists(f, "layers", H5P_DEFAULT) > 0;
    H5Fclose(f);
    return yes;
}

static int describe_quietly(FILE *out, const char *path, struct dmlp_error *err)
{
    size_t in_dim = 0, n = 0;
    struct config_layer *ls = NULL;
    enum dmlp_loss loss;
    int rc = read_network_quietly(path, &in_dim, &ls, &n, &loss, err);
    if (rc)
        return rc;
    hid_t f;
    rc = open_checkpoint(path, &f, err);
    if (rc) {
        free(ls);
        return rc;
    }
    fprintf(out, "checkpoint %s\n", path);
    const char *names[] = {"format", "dmlp_version"};
    for (size_t i = 0; i < 2; i++) {
        char v[256];
        if (attr_read_str(f, names[i], v, sizeof v) == 0)
            fprintf(out, "  %-14s %s\n", names[i], v);
    }
    const char *nums[] = {"format_version", "epoch", "step_in_epoch", "step", "samples_seen"};
    for (size_t i = 0; i < 5; i++) {
        uint64_t v;
        if (attr_read_u64(f, nums[i], &v) == 0)
            fprintf(out, "  %-14s %llu\n", nums[i], (unsigned long long)v);
    }
    fprintf(out, "  %-14s %s\n", "loss", config_loss_name(loss));
    size_t total = 0, prev = in_dim;
    fprintf(out, "  layers (input width %zu):\n", in_dim);
    for (size_t l = 0; l < n; l++) {
        fprintf(out, "    %zu  weight [%u, %zu]  bias [%u]  %s\n", l, ls[l].units, prev,
                ls[l].units, config_activation_name(ls[l].activation));
        total += (size_t)ls[l].units * prev + ls[l].units;
        prev = ls[l].units;
    }
    fprintf(out, "  parameters     %zu\n", total);
    if (H5Lexists(f, "optimizer", H5P_DEFAULT) > 0) {
        hid_t og = H5Gopen2(f, "optimizer", H5P_DEFAULT);
        char name[64] = "?";
        uint64_t steps = 0;
        attr_read_str(og, "name", name, sizeof name);
        attr_read_u64(og, "steps", &steps);
        fprintf(out, "  optimizer      %s, %llu steps", name, (unsigned long long)steps);
        const char *bufs[] = {"momentum", "exp_avg", "exp_avg_sq"};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (H5Lexists(og, bufs[i], H5P_DEFAULT) > 0)
                fprintf(out, ", %s", bufs[i]);
        fprintf(out, "\n");
        H5Gclose(og);
    }
    if (H5Lexists(f, "normalization", H5P_DEFAULT) > 0)
        fprintf(out, "  normalization  standard: x' = (x - mean) / std, [%zu] each\n", in_dim);
    if (H5Lexists(f, "rng", H5P_DEFAULT) > 0) {
        hid_t rg = H5Gopen2(f, "rng", H5P_DEFAULT);
        uint64_t seed;
        if (attr_read_u64(rg, "seed", &seed) == 0)
            fprintf(out, "  seed           %llu\n", (unsigned long long)seed);
        H5Gclose(rg);
    }
    /* The config the run was trained with, as stored (effective values after --set). */
    if (H5Aexists(f, "config") > 0) {
        hid_t a = H5Aopen(f, "config", H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        size_t sz = H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) <= 0
                        ? H5Tget_size(t) : 0;
        char *yaml = sz ? calloc(sz + 1, 1) : NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        if (yaml && H5Aread(a, mt, yaml) >= 0 && yaml[0]) {
            fprintf(out, "  config:\n    ");
            for (const char *p = yaml; *p; p++) {
                fputc(*p, out);
                if (*p == '\n' && p[1])
                    fputs("    ", out);
            }
            if (yaml[strlen(yaml) - 1] != '\n')
                fputc('\n', out);
        }
        H5Tclose(mt);
        free(yaml);
        H5Tclose(t);
        H5Aclose(a);
    }
    H5Fclose(f);
    free(ls);
    return DMLP_OK;
}

void checkpoint_hdf5_version(char *out, size_t cap)
{
    unsigned major = 0, minor = 0, release = 0;
    H5get_libversion(&major, &minor, &release);
#ifdef H5_HAVE_PARALLEL
    const char *kind = "parallel";
#else
    const char *kind = "serial";
#endif
    snprintf(out, cap, "%u.%u.%u (%s)", major, minor, release, kind);
}

/* ---- public entry points ---------------------------------------------------------------- */
/* Each runs its work with HDF5's own error printer off, so that only dmlp's messages reach
 * the user, and restores the caller's setting afterwards. */

int checkpoint_save(const char *dir, const struct model *m, const struct optim *o,
                    const struct checkpoint_state *st, const char *config_yaml,
                    uint32_t keep_last, char *path_out, size_t path_cap,
                    struct dmlp_error *err)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = save_quietly(dir, m, o, st, config_yaml, keep_last, path_out, path_cap, err);
    h5util_quiet_end(&q);
    return rc;
}

int checkpoint_save_as(const char *dir, const char *name, const struct model *m,
                       const struct optim *o, const struct checkpoint_state *st,
                       const char *config_yaml, struct dmlp_error *err)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = save_as_quietly(dir, name, m, o, st, config_yaml, err);
    h5util_quiet_end(&q);
    return rc;
}

int checkpoint_read_network(const char *path, size_t *in_dim, struct config_layer **layers,
                            size_t *n_layers, enum dmlp_loss *loss, struct dmlp_error *err)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = read_network_quietly(path, in_dim, layers, n_layers, loss, err);
    h5util_quiet_end(&q);
    return rc;
}

int checkpoint_load_layers(const char *path, struct model *m, struct dmlp_error *err)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = load_layers_quietly(path, m, err);
    h5util_quiet_end(&q);
    return rc;
}

int checkpoint_load(const char *path, struct model *m, struct optim *o,
                    struct checkpoint_state *st, struct dmlp_error *err)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = load_quietly(path, m, o, st, err);
    h5util_quiet_end(&q);
    return rc;
}

int checkpoint_is_checkpoint(const char *path)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = is_checkpoint_quietly(path);
    h5util_quiet_end(&q);
    return rc;
}

int checkpoint_describe(FILE *out, const char *path, struct dmlp_error *err)
{
    struct h5util_quiet q;
    h5util_quiet_begin(&q);
    const int rc = describe_quietly(out, path, err);
    h5util_quiet_end(&q);
    return rc;
}
