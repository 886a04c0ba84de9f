#define _POSIX_C_SOURCE 200809L
#include "data/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/h5util.h"
#include "nn/lbfgs.h"
#include "core/publish.h"

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

/* ---- checked reads -------------------------------------------------------------------- */
/* Every attribute and dataset of a checkpoint is read through h5util's checked readers,
 * which look at class, element size, rank, dimensions and storage before reading a byte
 * (a hostile file cannot make HDF5 write past a buffer); obj names the object from the
 * file's root, as messages do. */

/* A string attribute into out (cut at cap - 1 bytes: every value compared is short);
 * out is left alone when the attribute is optional and missing. */
static int attr_str(hid_t f, const char *path, const char *obj, const char *name, char *out,
                    size_t cap, int *present, struct dmlp_error *err)
{
    char *s = NULL;
    const int rc = h5util_read_str_attr(f, path, obj, name, &s, present, err);
    if (rc == DMLP_OK && s)
        snprintf(out, cap, "%s", s);
    free(s);
    return rc;
}

static int attr_u64(hid_t f, const char *path, const char *obj, const char *name,
                    uint64_t *v, int *present, struct dmlp_error *err)
{
    return h5util_read_uint_attr(f, path, obj, name, 0, UINT64_MAX, v, present, err);
}

static int attr_f64(hid_t f, const char *path, const char *obj, const char *name, double *v,
                    int *present, struct dmlp_error *err)
{
    return h5util_read_float_attr(f, path, obj, name, v, present, err);
}

/* Reads the float array name (the full path in the file), whose shape must be exactly dims
 * (rank 1 or 2), and refuses a NaN or an infinity in it: training never saves a
 * non-finite step (its divergence guard stops first), so one in a file is damage or a
 * foreign writer, and loaded it would poison every later step and checkpoint. */
static int read_floats(hid_t f, const char *name, float *out, int rank, const hsize_t *dims,
                       const char *path, struct dmlp_error *err)
{
    int rc = h5util_read_dataset(f, path, name, H5UTIL_FLOAT, "float array", rank, dims,
                                 H5T_NATIVE_FLOAT, out, err);
    if (rc != DMLP_OK)
        return rc;
    const size_t cols = rank > 1 ? (size_t)dims[1] : 1, n = (size_t)dims[0] * cols;
    const size_t i = dmlp_first_nonfinite(out, n);
    if (i == n)
        return DMLP_OK;
    if (rank > 1)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: element [%zu, %zu] is %s; a checkpoint "
                         "must hold finite values", path, name, i / cols, i % cols,
                         dmlp_nonfinite_name(out[i]));
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: element [%zu] is %s; a checkpoint must hold "
                     "finite values", path, name, i, dmlp_nonfinite_name(out[i]));
}

/* Which parameter the flat index i of m's parameter layout (which the optimizer's state
 * buffers mirror) is: "layer 1 weight [3, 4]", "layer 1 bias [3]" or "padding". */
static void param_location(const struct model *m, size_t i, char *buf, size_t cap)
{
    snprintf(buf, cap, "padding");
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        const size_t w0 = (size_t)(L->W - m->params), b0 = (size_t)(L->b - m->params);
        if (i >= w0 && i - w0 < L->out * L->in)
            snprintf(buf, cap, "layer %zu weight [%zu, %zu]", l, (i - w0) / L->in,
                     (i - w0) % L->in);
        else if (i >= b0 && i - b0 < L->out)
            snprintf(buf, cap, "layer %zu bias [%zu]", l, i - b0);
    }
}

/* ---- save ----------------------------------------------------------------------------- */

/* The root attributes: format, position in training, config, version, loss, input width. */
static int write_root_attributes(hid_t f, const struct model *m,
                                 const struct checkpoint_state *st, const char *config_yaml)
{
    int bad = 0;
    bad |= attr_write_str(f, "format", FORMAT_NAME);
    bad |= attr_write_u64(f, "format_version", FORMAT_VERSION);
    bad |= attr_write_u64(f, "epoch", st->epoch);
    bad |= attr_write_u64(f, "step_in_epoch", st->step_in_epoch);
    bad |= attr_write_u64(f, "step", st->step);
    bad |= attr_write_u64(f, "samples_seen", st->samples_seen);
    bad |= attr_write_str(f, "config", config_yaml ? config_yaml : "");
    bad |= attr_write_str(f, "dmlp_version", DMLP_VERSION);
    bad |= attr_write_str(f, "loss", dmlp_loss_name(m->loss));
    if (m->loss == DMLP_LOSS_HUBER)
        bad |= attr_write_f64(f, "loss_delta", m->loss_delta);
    if (m->loss_weights) {
        hsize_t k[1] = {model_output_dim(m)};
        bad |= write_floats(f, "loss_weights", m->loss_weights, 1, k);
    }
    bad |= attr_write_u64(f, "input_dim", model_input_dim(m));
    return bad;
}

/* /layers/<i>/weight and /bias, with the activation as an attribute. */
static int write_layers(hid_t f, const struct model *m)
{
    hid_t layers = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = layers < 0;
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
        bad |= attr_write_str(g, "activation", dmlp_activation_name(L->act));
        H5Gclose(g);
    }
    if (layers >= 0)
        H5Gclose(layers);
    return bad;
}

/* /optimizer/lbfgs: what PyTorch's LBFGS keeps between steps: the iteration and
 * evaluation counts, the last step length t, H's diagonal, the last loss, the last
 * direction d and gradient, and the (s, y) pairs oldest first with their 1/yᵀs. */
static int write_lbfgs(hid_t og, const struct lbfgs *lb)
{
    hid_t g = H5Gcreate2(og, "lbfgs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return 1;
    int bad = attr_write_u64(g, "n_iter", lb->n_iter);
    bad |= attr_write_u64(g, "func_evals", lb->func_evals);
    bad |= attr_write_f64(g, "t", lb->t);
    bad |= attr_write_f64(g, "h_diag", lb->h_diag);
    bad |= attr_write_f64(g, "prev_loss", lb->prev_loss);
    hsize_t n[1] = {lb->n}, pairs[2] = {lb->count, lb->n};
    bad |= write_floats(g, "d", lb->d, 1, n);
    bad |= write_floats(g, "prev_grad", lb->prev_grad, 1, n);
    hid_t space = H5Screate_simple(2, pairs, NULL);
    hid_t sd = H5Dcreate2(g, "s", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t yd = H5Dcreate2(g, "y", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= sd < 0 || yd < 0;
    for (uint32_t i = 0; !bad && i < lb->count; i++) { /* one row per pair, oldest first */
        hsize_t start[2] = {i, 0}, count[2] = {1, lb->n};
        hid_t fs = H5Dget_space(sd), ms = H5Screate_simple(1, n, NULL);
        bad |= H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
               H5Dwrite(sd, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, lbfgs_pair_s(lb, i)) < 0 ||
               H5Dwrite(yd, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, lbfgs_pair_y(lb, i)) < 0;
        H5Sclose(ms);
        H5Sclose(fs);
    }
    double *ro = malloc((lb->count ? lb->count : 1) * sizeof *ro); /* oldest first */
    bad |= !ro;
    for (uint32_t i = 0; ro && i < lb->count; i++)
        ro[i] = lb->ro[(lb->first + i) % lb->history];
    hsize_t rd[1] = {lb->count};
    hid_t rs = H5Screate_simple(1, rd, NULL);
    hid_t rds = H5Dcreate2(g, "ro", H5T_IEEE_F64LE, rs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= rds < 0 || (ro && lb->count && H5Dwrite(rds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                                                   H5P_DEFAULT, ro) < 0);
    free(ro);
    if (rds >= 0)
        H5Dclose(rds);
    H5Sclose(rs);
    if (sd >= 0)
        H5Dclose(sd);
    if (yd >= 0)
        H5Dclose(yd);
    H5Sclose(space);
    H5Gclose(g);
    return bad;
}

/* /optimizer: its name, its step count and its state buffers ("none" without one). */
static int write_optimizer(hid_t f, const struct optim *o)
{
    hid_t og = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = og < 0;
    if (og < 0)
        return bad;
    bad |= attr_write_str(og, "name", o ? dmlp_optimizer_name(o->cfg.name) : "none");
    bad |= attr_write_u64(og, "steps", o ? o->steps : 0);
    const char *names[OPTIM_MAX_STATE];
    float *bufs[OPTIM_MAX_STATE];
    const size_t nb = o ? optim_state_buffers(o, names, bufs) : 0;
    for (size_t i = 0; i < nb; i++) {
        hsize_t n[1] = {o->n};
        bad |= write_floats(og, names[i], bufs[i], 1, n);
    }
    if (o && o->lbfgs)
        bad |= write_lbfgs(og, o->lbfgs);
    H5Gclose(og);
    return bad;
}

/* /normalization: mean and std when the model standardises its inputs, target_mean and
 * target_std when it standardises its targets (either pair alone, or both). */
static int write_normalization(hid_t f, const struct model *m)
{
    if (!m->norm_mean && !m->target_mean)
        return 0;
    int bad = 0;
    hid_t ng = H5Gcreate2(f, "normalization", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ng < 0)
        return 1;
    if (m->norm_mean) {
        hsize_t d[1] = {model_input_dim(m)};
        bad |= write_floats(ng, "mean", m->norm_mean, 1, d);
        bad |= write_floats(ng, "std", m->norm_std, 1, d);
        bad |= attr_write_str(ng, "formula", "x' = (x - mean) / std");
    }
    if (m->target_mean) {
        hsize_t k[1] = {model_output_dim(m)};
        bad |= write_floats(ng, "target_mean", m->target_mean, 1, k);
        bad |= write_floats(ng, "target_std", m->target_std, 1, k);
        bad |= attr_write_str(ng, "target_formula",
                              "t' = (t - target_mean) / target_std; y = y' * target_std + "
                              "target_mean");
    }
    H5Gclose(ng);
    return bad;
}

/* /normalization, /early_stopping and /rng. */
static int write_run_state(hid_t f, const struct model *m, const struct checkpoint_state *st)
{
    int bad = write_normalization(f, m);
    hid_t eg = H5Gcreate2(f, "early_stopping", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= eg < 0;
    if (eg >= 0) {
        bad |= attr_write_f64(eg, "best_metric", st->best_metric);
        bad |= attr_write_u64(eg, "best_epoch", st->best_epoch);
        bad |= attr_write_u64(eg, "bad_epochs", st->bad_epochs);
        H5Gclose(eg);
    }
    hid_t pg = H5Gcreate2(f, "plateau", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= pg < 0;
    if (pg >= 0) {
        bad |= attr_write_f64(pg, "lr_scale", st->plateau_scale);
        bad |= attr_write_f64(pg, "best_loss", st->plateau_best);
        bad |= attr_write_u64(pg, "bad_epochs", st->plateau_bad);
        H5Gclose(pg);
    }
    hid_t rg = H5Gcreate2(f, "rng", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= rg < 0;
    if (rg >= 0) {
        bad |= attr_write_u64(rg, "seed", st->seed);
        bad |= attr_write_f64(rg, "fixed_point_shift", (double)st->fx_shift);
        bad |= attr_write_str(rg, "shuffle", SHUFFLE_SCHEME);
        H5Gclose(rg);
    }
    return bad;
}

/* An in-memory file growing in steps of about one copy of the parameters (at least 1 MiB). */
static hid_t create_image_file(const struct model *m)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    size_t grow = (m->n_params * 3 + 1) * sizeof(float);
    grow = grow < ((size_t)1 << 20) ? (size_t)1 << 20 : grow;
    if (fapl < 0 || H5Pset_fapl_core(fapl, grow, 0) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    hid_t f = H5Fcreate("checkpoint-image", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

/* Builds the checkpoint as an HDF5 file image in memory (the core driver, no backing
 * store) and returns it in *image (malloc'd, *bytes long). HDF5 never touches the disk: a
 * full disk or a quota is met by write_image's plain write(), which fails cleanly, not
 * inside H5Fclose, which would leave a half-closed file that crashes HDF5's shutdown. */
static int build_image(const struct model *m, const struct optim *o,
                       const struct checkpoint_state *st, const char *config_yaml,
                       void **image, size_t *bytes)
{
    *image = NULL;
    hid_t f = create_image_file(m);
    if (f < 0)
        return -1;
    int bad = write_root_attributes(f, m, st, config_yaml);
    bad |= write_layers(f, m);
    bad |= write_optimizer(f, o);
    bad |= write_run_state(f, m, st);
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        bad = 1;
    const ssize_t size = bad ? -1 : H5Fget_file_image(f, NULL, 0);
    if (size <= 0 || !(*image = malloc((size_t)size)) ||
        H5Fget_file_image(f, *image, (size_t)size) != size)
        bad = 1;
    if (H5Fclose(f) < 0)
        bad = 1;
    if (bad) {
        free(*image);
        *image = NULL;
        errno = size > 0 ? ENOMEM : 0;
        return -1;
    }
    *bytes = (size_t)size;
    return 0;
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
/* The steps of dir's step-N.h5 files, ascending (malloc'd; NULL when dir cannot be read
 * or on a failed allocation: callers then leave the files alone). */
static uint64_t *list_steps(const char *dir, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    size_t cap = 16;
    uint64_t *steps = malloc(cap * sizeof *steps);
    struct dirent *e;
    while (steps && (e = readdir(d))) {
        uint64_t s;
        if (!parse_step_name(e->d_name, &s))
            continue;
        if (*n == cap) {
            uint64_t *t = realloc(steps, 2 * cap * sizeof *steps);
            if (!t)
                break;
            steps = t;
            cap *= 2;
        }
        steps[(*n)++] = s;
    }
    closedir(d);
    if (steps)
        qsort(steps, *n, sizeof *steps, cmp_u64);
    return steps;
}

static void prune(const char *dir, uint32_t keep_last, uint64_t newest)
{
    DIR *d;
    struct dirent *e;
    /* Temporary files (publish.h names them) of writers that died (SIGKILL, node failure)
     * before their rename: under the directory lock (rundir.h) only one writer runs at a
     * time, so any other writer's are a dead one's. */
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
    size_t n;
    uint64_t *steps = list_steps(dir, &n);
    if (!steps)
        return;
    /* Only checkpoints older than the one just written are candidates: a higher step in the
     * directory is not of this run's making (another lineage, or a run restarted from
     * scratch there), and this run has nothing newer to replace it with. */
    size_t older = 0;
    for (size_t i = 0; i < n; i++)
        if (steps[i] < newest)
            steps[older++] = steps[i];
    n = older; /* still ascending */
    /* keep_last counts the newest, which is not in the list. */
    for (size_t i = 0; i + keep_last < n + 1; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/step-%08llu.h5", dir, (unsigned long long)steps[i]);
        unlink(path);
    }
    free(steps);
}

/* Builds the checkpoint in memory and publishes it as final (publish.h): a crash leaves
 * either the old file or the new one, never half of one. The image is built first so that a
 * full disk shows as a failed write() with its errno, not somewhere inside HDF5. */
static int write_atomically(const char *final, const struct model *m, const struct optim *o,
                            const struct checkpoint_state *st, const char *config_yaml,
                            struct dmlp_error *err)
{
    void *image;
    size_t bytes = 0;
    errno = 0;
    if (build_image(m, o, st, config_yaml, &image, &bytes)) {
        const int e = errno;
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot write checkpoint%s%s", final,
                         e ? ": " : "", e ? strerror(e) : "");
    }
    struct publish p;
    int rc = publish_begin(&p, final, err);
    if (rc == DMLP_OK && (rc = publish_write(&p, image, bytes, "checkpoint", err)) != DMLP_OK)
        publish_abort(&p);
    else if (rc == DMLP_OK)
        rc = publish_commit(&p, err);
    free(image);
    return rc;
}

/* A latest.h5 that is a regular file (a run directory copied with cp -L, say) is a state
 * that may exist nowhere else: before the symlink replaces it, it moves to step-N.h5 of its
 * own step when that name is free, else to latest-kept-<time>.h5. */
static void keep_regular_latest(const char *dir, const char *latest)
{
    struct stat sb;
    if (lstat(latest, &sb) || !S_ISREG(sb.st_mode))
        return;
    char to[PATH_MAX] = "";
    uint64_t step = 0;
    hid_t f = H5Fopen(latest, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        struct dmlp_error e = {0};
        if (h5util_read_uint_attr(f, latest, "/", "step", 0, UINT64_MAX, &step, NULL, &e) ==
            DMLP_OK)
            snprintf(to, sizeof to, "%s/step-%08llu.h5", dir, (unsigned long long)step);
        H5Fclose(f);
    }
    if (!to[0] || access(to, F_OK) == 0)
        snprintf(to, sizeof to, "%s/latest-kept-%lld.h5", dir, (long long)sb.st_mtime);
    if (rename(latest, to) == 0)
        dmlp_fsync_path(dir, 1);
}

static int save_quietly(const char *dir, const struct model *m, const struct optim *o,
                        const struct checkpoint_state *st, const char *config_yaml,
                        uint32_t keep_last, char *path_out, size_t path_cap,
                        struct dmlp_error *err)
{
    if (dmlp_mkdir_p(dir))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "checkpoint.dir %s: cannot create: %s", dir,
                         strerror(errno));
    char name[64], final[PATH_MAX], link_tmp[PATH_MAX], latest[PATH_MAX];
    snprintf(name, sizeof name, "step-%08llu.h5", (unsigned long long)st->step);
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
        snprintf(latest, sizeof latest, "%s/latest.h5", dir) >= (int)sizeof latest ||
        publish_temp_name(link_tmp, sizeof link_tmp, latest))
        return dmlp_fail(err, DMLP_ERR_INPUT, "checkpoint.dir %s: path too long", dir);

    int rc = write_atomically(final, m, o, st, config_yaml, err);
    if (rc)
        return rc;
    keep_regular_latest(dir, latest);
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
    char final[PATH_MAX];
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final)
        return dmlp_fail(err, DMLP_ERR_INPUT, "checkpoint.dir %s: path too long", dir);
    return write_atomically(final, m, o, st, config_yaml, err);
}

/* ---- load ------------------------------------------------------------------------------ */

static int open_checkpoint(const char *path, hid_t *out, struct dmlp_error *err)
{
    *out = H5I_INVALID_HID;
    const int rc = dmlp_check_input_file(path, err);
    if (rc)
        return rc;
    if (H5Fis_hdf5(path) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file (or truncated)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5 (damaged or truncated?)",
                         path);
    *out = f;
    return DMLP_OK;
}

/* The number of entries in /layers, which must exist and hold at least one. */
static int count_layers(hid_t f, const char *path, size_t *n, struct dmlp_error *err)
{
    if (H5Lexists(f, "layers", H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers is missing (not a dmlp checkpoint?)",
                         path);
    hid_t lg = H5Gopen2(f, "layers", H5P_DEFAULT);
    H5G_info_t info;
    int rc = DMLP_OK;
    if (lg < 0 || H5Gget_info(lg, &info) < 0 || info.nlinks == 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /layers is empty or unreadable", path);
    else
        *n = (size_t)info.nlinks;
    if (lg >= 0)
        H5Gclose(lg);
    return rc;
}

/* /layers/<l>/weight's shape into dims: a non-empty [out, in] with out < 2^32, whose in
 * is the previous layer's out (layer 0's in is the network's input width, *in_dim). */
static int read_weight_shape(hid_t f, const char *path, size_t l, size_t prev_out,
                             size_t *in_dim, hsize_t dims[2], struct dmlp_error *err)
{
    char wname[80];
    snprintf(wname, sizeof wname, "/layers/%zu/weight", l);
    hid_t ds;
    struct h5util_info wi;
    const int rc = h5util_open_dataset(f, path, wname, H5UTIL_FLOAT, "float array", 2, NULL,
                                       &ds, &wi, err);
    if (rc)
        return rc;
    H5Dclose(ds);
    dims[0] = wi.dims[0];
    dims[1] = wi.dims[1];
    if (dims[0] == 0 || dims[1] == 0 || dims[0] > UINT32_MAX)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has shape [%llu, %llu], expected a "
                         "non-empty [out, in] array with out < 2^32", path, wname,
                         (unsigned long long)dims[0], (unsigned long long)dims[1]);
    if (l == 0)
        *in_dim = (size_t)dims[1];
    else if (dims[1] != prev_out)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has %llu inputs but layer %zu has %zu "
                         "outputs", path, wname, (unsigned long long)dims[1], l - 1, prev_out);
    return DMLP_OK;
}

/* Layer l of n as the config would name it: its units from the weight's shape (the bias
 * checked against it) and its activation; *prev_out carries the outputs to layer l + 1. */
static int read_layer_config(hid_t f, const char *path, size_t l, size_t n, size_t *in_dim,
                             size_t *prev_out, struct config_layer *layer,
                             struct dmlp_error *err)
{
    char gname[64];
    snprintf(gname, sizeof gname, "/layers/%zu", l);
    if (H5Lexists(f, gname, H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is missing (layers must be numbered "
                         "0..%zu)", path, gname, n - 1);
    hsize_t dims[2];
    int rc = read_weight_shape(f, path, l, *prev_out, in_dim, dims, err);
    if (rc)
        return rc;
    /* The bias too, so that every reader of the network (inspect included) sees its
     * shape checked: [out]. */
    char bname[80];
    snprintf(bname, sizeof bname, "/layers/%zu/bias", l);
    hid_t ds;
    rc = h5util_open_dataset(f, path, bname, H5UTIL_FLOAT, "float array", 1, dims, &ds, NULL,
                             err);
    if (rc)
        return rc;
    H5Dclose(ds);
    *prev_out = (size_t)dims[0];
    layer->units = (uint32_t)dims[0];
    char act[64] = "";
    rc = attr_str(f, path, gname, "activation", act, sizeof act, NULL, err);
    if (!rc && dmlp_activation_parse(act, &layer->activation))
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s attribute 'activation' is '%s', which "
                       "is not an activation dmlp knows", path, gname, act);
    return rc;
}

/* The root attribute 'loss'; without one, the loss follows the output layer's activation
 * (last): cross_entropy after softmax, mse otherwise. */
static int read_loss(hid_t f, const char *path, enum dmlp_activation last,
                     enum dmlp_loss *loss, struct dmlp_error *err)
{
    char lname[64] = "";
    int has_loss = 0;
    const int rc = attr_str(f, path, "/", "loss", lname, sizeof lname, &has_loss, err);
    if (rc)
        return rc;
    if (!has_loss)
        *loss = last == DMLP_ACT_SOFTMAX ? DMLP_LOSS_CROSS_ENTROPY : DMLP_LOSS_MSE;
    else if (!strcmp(lname, "cross_entropy"))
        *loss = DMLP_LOSS_CROSS_ENTROPY;
    else if (!strcmp(lname, "mse"))
        *loss = DMLP_LOSS_MSE;
    else if (!strcmp(lname, "mae"))
        *loss = DMLP_LOSS_MAE;
    else if (!strcmp(lname, "huber"))
        *loss = DMLP_LOSS_HUBER;
    else
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: root attribute 'loss' is '%s', expected "
                         "cross_entropy, mse, mae or huber", path, lname);
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
    rc = count_layers(f, path, &n, err);
    if (!rc && !(ls = calloc(n, sizeof *ls)))
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    for (size_t l = 0; !rc && l < n; l++)
        rc = read_layer_config(f, path, l, n, in_dim, &prev_out, &ls[l], err);
    if (!rc)
        rc = read_loss(f, path, ls[n - 1].activation, loss, err);
    H5Fclose(f);
    if (rc) {
        free(ls);
        return rc;
    }
    *layers = ls;
    *n_layers = n;
    return DMLP_OK;
}

/* Layer l's weight, bias and (optional here: the config names the activations) activation
 * into m, each checked against the network's shape. */
static int load_layer(hid_t f, const char *path, struct model *m, size_t l,
                      struct dmlp_error *err)
{
    const struct model_layer *L = &m->layers[l];
    char name[64];
    snprintf(name, sizeof name, "/layers/%zu", l);
    if (H5Lexists(f, "layers", H5P_DEFAULT) <= 0 || H5Lexists(f, name, H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s is missing: the checkpoint has fewer "
                         "layers than the network (%zu)", path, name, m->n_layers);
    char act[64] = "";
    hsize_t wd[2] = {L->out, L->in}, bd[1] = {L->out};
    char wname[80], bname[80];
    snprintf(wname, sizeof wname, "%s/weight", name);
    snprintf(bname, sizeof bname, "%s/bias", name);
    int rc = read_floats(f, wname, L->W, 2, wd, path, err);
    if (!rc)
        rc = read_floats(f, bname, L->b, 1, bd, path, err);
    int has_act = 0;
    if (!rc)
        rc = attr_str(f, path, name, "activation", act, sizeof act, &has_act, err);
    if (!rc && has_act && strcmp(act, dmlp_activation_name(L->act)))
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s has activation %s, but the network's "
                       "layer %zu is %s", path, name, act, l, dmlp_activation_name(L->act));
    return rc;
}

/* One pair of /normalization's statistics (mean_name, std_name, each [n]) into mean and
 * sd; every mean finite, every std finite and positive. what names an element in
 * messages ("feature", "output"). */
static int read_stats(hid_t f, const char *path, const char *mean_name, const char *std_name,
                      size_t n, const char *what, float *mean, float *sd,
                      struct dmlp_error *err)
{
    hsize_t dims[1] = {n};
    int rc = read_floats(f, mean_name, mean, 1, dims, path, err);
    if (!rc)
        rc = read_floats(f, std_name, sd, 1, dims, path, err);
    for (size_t j = 0; !rc && j < n; j++)
        if (!isfinite(mean[j]) || !(sd[j] > 0) || !isfinite(sd[j]))
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: %s %zu has mean %g and std %g "
                           "(std must be finite and > 0)", path, std_name, what, j,
                           (double)mean[j], (double)sd[j]);
    return rc;
}

/* /normalization into m: the input statistics (mean, std [inputs]) when present, the
 * target statistics (target_mean, target_std [outputs]) when present; each pair whole or
 * not at all. Checkpoints written before target standardisation have no target pair. */
static int load_normalization(hid_t f, const char *path, struct model *m,
                              struct dmlp_error *err)
{
    const size_t d = model_input_dim(m), k = model_output_dim(m);
    const size_t n = d > k ? d : k;
    float *mean = malloc(n * sizeof(float)), *sd = malloc(n * sizeof(float));
    int rc = mean && sd ? DMLP_OK : dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    const int inputs = H5Lexists(f, "/normalization/mean", H5P_DEFAULT) > 0 ||
                       H5Lexists(f, "/normalization/std", H5P_DEFAULT) > 0;
    const int targets = H5Lexists(f, "/normalization/target_mean", H5P_DEFAULT) > 0 ||
                        H5Lexists(f, "/normalization/target_std", H5P_DEFAULT) > 0;
    if (!rc && !inputs && !targets)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /normalization holds neither mean and std "
                       "nor target_mean and target_std", path);
    if (!rc && inputs &&
        !(rc = read_stats(f, path, "/normalization/mean", "/normalization/std", d, "feature",
                          mean, sd, err)))
        rc = model_set_normalization(m, mean, sd, err);
    if (!rc && targets &&
        !(rc = read_stats(f, path, "/normalization/target_mean", "/normalization/target_std",
                          k, "output", mean, sd, err)))
        rc = model_set_target_normalization(m, mean, sd, err);
    free(mean);
    free(sd);
    return rc;
}

/* The loss's parameters: the root attribute loss_delta (huber; finite, > 0; default 1)
 * and /loss_weights (one finite weight >= 0 per output; default all 1). */
static int load_loss_params(hid_t f, const char *path, struct model *m, struct dmlp_error *err)
{
    double delta = 1.0;
    int has = 0;
    int rc = attr_f64(f, path, "/", "loss_delta", &delta, &has, err);
    if (!rc && !(isfinite(delta) && delta > 0))
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: root attribute 'loss_delta' is %g; expected "
                       "a finite number > 0", path, delta);
    if (rc || H5Lexists(f, "/loss_weights", H5P_DEFAULT) <= 0)
        return rc ? rc : model_set_loss(m, delta, NULL, err);
    const size_t k = model_output_dim(m);
    float *w = malloc(k * sizeof *w);
    hsize_t dims[1] = {k};
    rc = w ? read_floats(f, "/loss_weights", w, 1, dims, path, err)
           : dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    for (size_t j = 0; !rc && j < k; j++)
        if (w[j] < 0)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /loss_weights: element [%zu] is %g; "
                           "weights must be >= 0", path, j, (double)w[j]);
    if (!rc)
        rc = model_set_loss(m, delta, w, err);
    free(w);
    return rc;
}

static int load_layers(hid_t f, const char *path, struct model *m, struct dmlp_error *err)
{
    for (size_t l = 0; l < m->n_layers; l++) {
        const int rc = load_layer(f, path, m, l, err);
        if (rc)
            return rc;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "/layers/%zu", m->n_layers);
    if (H5Lexists(f, extra, H5P_DEFAULT) > 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: the checkpoint has more layers than the "
                         "network (%zu)", path, m->n_layers);
    const int rc = load_loss_params(f, path, m, err);
    if (!rc && H5Lexists(f, "normalization", H5P_DEFAULT) > 0)
        return load_normalization(f, path, m, err);
    return rc;
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

/* The root attributes format and format_version: a dmlp checkpoint this dmlp reads. */
static int check_format(hid_t f, const char *path, struct dmlp_error *err)
{
    char fmt[64] = "";
    uint64_t version = 0;
    int has = 0;
    int rc = attr_str(f, path, "/", "format", fmt, sizeof fmt, &has, err);
    if (rc)
        return rc;
    if (strcmp(fmt, FORMAT_NAME))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not a dmlp checkpoint (root attribute "
                         "format is '%s', expected '%s')", path, fmt, FORMAT_NAME);
    if ((rc = attr_u64(f, path, "/", "format_version", &version, NULL, err)))
        return rc;
    if (version != FORMAT_VERSION)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: checkpoint format_version %llu is not "
                         "supported (this dmlp reads version %d)", path,
                         (unsigned long long)version, FORMAT_VERSION);
    return DMLP_OK;
}

/* Where training stood (root attributes), /early_stopping when present and /rng into st. */
static int read_run_state(hid_t f, const char *path, struct checkpoint_state *st,
                          struct dmlp_error *err)
{
    memset(st, 0, sizeof *st);
    st->best_metric = st->plateau_best = NAN;
    int has = 0, rc;
    if ((rc = attr_u64(f, path, "/", "epoch", &st->epoch, NULL, err)) ||
        (rc = attr_u64(f, path, "/", "step", &st->step, NULL, err)) ||
        (rc = attr_u64(f, path, "/", "samples_seen", &st->samples_seen, NULL, err)) ||
        (rc = attr_u64(f, path, "/", "step_in_epoch", &st->step_in_epoch, &has, err)))
        return rc;
    if (H5Lexists(f, "early_stopping", H5P_DEFAULT) > 0 &&
        ((rc = attr_f64(f, path, "/early_stopping", "best_metric", &st->best_metric, &has,
                        err)) ||
         (rc = attr_u64(f, path, "/early_stopping", "best_epoch", &st->best_epoch, &has,
                        err)) ||
         (rc = attr_u64(f, path, "/early_stopping", "bad_epochs", &st->bad_epochs, &has,
                        err))))
        return rc;
    if (H5Lexists(f, "plateau", H5P_DEFAULT) > 0 &&
        ((rc = attr_f64(f, path, "/plateau", "lr_scale", &st->plateau_scale, &has, err)) ||
         (rc = attr_f64(f, path, "/plateau", "best_loss", &st->plateau_best, &has, err)) ||
         (rc = attr_u64(f, path, "/plateau", "bad_epochs", &st->plateau_bad, &has, err))))
        return rc;
    if (!(st->plateau_scale >= 0 && st->plateau_scale <= 1))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /plateau: lr_scale %g is not in [0, 1] "
                         "(0: no cut yet)", path, st->plateau_scale);
    if (H5Lexists(f, "rng", H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /rng is missing (it holds the seed)", path);
    double shift = 0;
    if ((rc = attr_f64(f, path, "/rng", "fixed_point_shift", &shift, &has, err)) ||
        (rc = attr_u64(f, path, "/rng", "seed", &st->seed, NULL, err)))
        return rc;
    if (fabs(shift) < 4096)
        st->fx_shift = (int32_t)shift;
    return DMLP_OK;
}

/* The optimizer's state buffer /optimizer/<name> into buf (o->n floats), when the file
 * has it: a missing one stays zero (e.g. momentum raised from 0). */
static int read_state_buffer(hid_t f, const char *path, const struct model *m,
                             const struct optim *o, const char *name, float *buf,
                             struct dmlp_error *err)
{
    char dname[96];
    snprintf(dname, sizeof dname, "/optimizer/%s", name);
    if (H5Lexists(f, dname, H5P_DEFAULT) <= 0)
        return DMLP_OK;
    hsize_t n[1] = {o->n};
    const int rc = h5util_read_dataset(f, path, dname, H5UTIL_FLOAT, "float array", 1, n,
                                       H5T_NATIVE_FLOAT, buf, err);
    /* The state mirrors the parameters' layout: a bad value is named by the parameter it
     * belongs to. */
    const size_t j = rc ? o->n : dmlp_first_nonfinite(buf, o->n);
    if (j == o->n)
        return rc;
    char where[96];
    param_location(m, j, where, sizeof where);
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: element [%zu] (%s) is %s; a checkpoint "
                     "must hold finite values", path, dname, j, where,
                     dmlp_nonfinite_name(buf[j]));
}

/* /optimizer/lbfgs's attributes: the counts, t, h_diag and the last loss. */
static int read_lbfgs_scalars(hid_t f, const char *path, struct lbfgs *lb,
                              struct dmlp_error *err)
{
    const char *g = "/optimizer/lbfgs";
    int rc = attr_u64(f, path, g, "n_iter", &lb->n_iter, NULL, err);
    if (!rc)
        rc = attr_u64(f, path, g, "func_evals", &lb->func_evals, NULL, err);
    if (!rc)
        rc = attr_f64(f, path, g, "t", &lb->t, NULL, err);
    if (!rc)
        rc = attr_f64(f, path, g, "h_diag", &lb->h_diag, NULL, err);
    if (!rc)
        rc = attr_f64(f, path, g, "prev_loss", &lb->prev_loss, NULL, err);
    if (rc)
        return rc;
    if (!isfinite(lb->t) || !(lb->h_diag > 0) || !isfinite(lb->h_diag) ||
        !isfinite(lb->prev_loss))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: t %g, h_diag %g, prev_loss %g: expected "
                         "finite values, h_diag > 0", path, g, lb->t, lb->h_diag,
                         lb->prev_loss);
    return DMLP_OK;
}

/* /optimizer/lbfgs into lb (write_lbfgs's layout), every shape and value checked: the
 * pairs no more than the history holds, every vector finite, t, h_diag and 1/yᵀs finite
 * and positive. */
static int read_lbfgs(hid_t f, const char *path, struct lbfgs *lb, struct dmlp_error *err)
{
    hsize_t n[1] = {lb->n};
    int rc = read_lbfgs_scalars(f, path, lb, err);
    if (rc || (rc = read_floats(f, "/optimizer/lbfgs/d", lb->d, 1, n, path, err)) ||
        (rc = read_floats(f, "/optimizer/lbfgs/prev_grad", lb->prev_grad, 1, n, path, err)))
        return rc;
    struct h5util_info info;
    hid_t ds;
    if ((rc = h5util_open_dataset(f, path, "/optimizer/lbfgs/s", H5UTIL_FLOAT, "float array",
                                  2, NULL, &ds, &info, err)))
        return rc;
    H5Dclose(ds);
    if (info.dims[1] != lb->n || info.dims[0] > lb->history)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /optimizer/lbfgs/s: [%llu, %llu]; expected "
                         "at most optimizer.history = %u pairs of %zu", path,
                         (unsigned long long)info.dims[0], (unsigned long long)info.dims[1],
                         lb->history, lb->n);
    lb->count = (uint32_t)info.dims[0];
    lb->first = 0;
    hsize_t pairs[2] = {lb->count, lb->n}, rd[1] = {lb->count};
    if (lb->count &&
        ((rc = read_floats(f, "/optimizer/lbfgs/s", lb->stps, 2, pairs, path, err)) ||
         (rc = read_floats(f, "/optimizer/lbfgs/y", lb->dirs, 2, pairs, path, err)) ||
         (rc = h5util_read_dataset(f, path, "/optimizer/lbfgs/ro", H5UTIL_FLOAT, "float array",
                                   1, rd, H5T_NATIVE_DOUBLE, lb->ro, err))))
        return rc;
    for (uint32_t i = 0; i < lb->count; i++)
        if (!(lb->ro[i] > 0) || !isfinite(lb->ro[i]))
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /optimizer/lbfgs/ro: element [%u] is "
                             "%g; expected finite and > 0", path, i, lb->ro[i]);
    return DMLP_OK;
}

/* /optimizer into o: its step count and state buffers, or zero state when it names
 * another optimizer. */
static int read_optimizer(hid_t f, const char *path, const struct model *m, struct optim *o,
                          struct dmlp_error *err)
{
    if (H5Lexists(f, "optimizer", H5P_DEFAULT) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /optimizer is missing", path);
    char name[64] = "";
    int has = 0;
    int rc = attr_str(f, path, "/optimizer", "name", name, sizeof name, &has, err);
    if (rc)
        return rc;
    /* The config governs: state is restored only when it belongs to the same
     * optimizer; a changed optimizer starts from zero state, as a fresh one would. */
    const int same = !strcmp(name, dmlp_optimizer_name(o->cfg.name)) ||
                     (!name[0] && o->cfg.name == DMLP_OPT_SGD);
    const char *names[OPTIM_MAX_STATE];
    float *bufs[OPTIM_MAX_STATE];
    const size_t nb = optim_state_buffers(o, names, bufs);
    o->steps = 0;
    for (size_t i = 0; i < nb; i++)
        memset(bufs[i], 0, o->n * sizeof(float));
    if (same)
        rc = attr_u64(f, path, "/optimizer", "steps", &o->steps, &has, err);
    for (size_t i = 0; same && i < nb && !rc; i++)
        rc = read_state_buffer(f, path, m, o, names[i], bufs[i], err);
    if (!rc && same && o->lbfgs && H5Lexists(f, "/optimizer/lbfgs", H5P_DEFAULT) > 0)
        rc = read_lbfgs(f, path, o->lbfgs, err);
    return rc;
}

static int load_quietly(const char *path, struct model *m, struct optim *o,
                        struct checkpoint_state *st, struct dmlp_error *err)
{
    hid_t f;
    int rc = open_checkpoint(path, &f, err);
    if (rc)
        return rc;
    rc = check_format(f, path, err);
    if (!rc)
        rc = load_layers(f, path, m, err);
    if (!rc && st)
        rc = read_run_state(f, path, st, err);
    if (!rc && o)
        rc = read_optimizer(f, path, m, o, err);
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

/* Appends a copy of path to the list (a failed allocation drops it: one candidate fewer). */
static void list_add(char ***paths, size_t *n, size_t *cap, const char *path)
{
    if (*n == *cap) {
        const size_t c = *cap ? 2 * *cap : 8;
        char **t = realloc(*paths, c * sizeof *t);
        if (!t)
            return;
        *paths = t;
        *cap = c;
    }
    char *copy = malloc(strlen(path) + 1);
    if (copy) {
        strcpy(copy, path);
        (*paths)[(*n)++] = copy;
    }
}

void checkpoint_candidates(const char *dir, char ***paths, size_t *n, char *broken,
                           size_t broken_cap)
{
    *paths = NULL;
    *n = 0;
    broken[0] = '\0';
    size_t cap = 0;
    char first[PATH_MAX] = "", latest[PATH_MAX];
    snprintf(latest, sizeof latest, "%s/latest.h5", dir);
    struct stat sb;
    if (checkpoint_latest(dir, first, sizeof first))
        list_add(paths, n, &cap, first);
    else if (lstat(latest, &sb) == 0) {
        char target[PATH_MAX] = "?";
        const ssize_t len = readlink(latest, target, sizeof target - 1);
        if (len > 0)
            target[len] = '\0';
        const int e = stat(latest, &sb) ? errno : 0;
        snprintf(broken, broken_cap, "%s points at %s: %s", latest, target,
                 e == ELOOP ? "a loop of links" : strerror(e));
    }
    size_t ns;
    uint64_t *steps = list_steps(dir, &ns);
    if (!steps)
        return;
    for (size_t i = ns; i-- > 0;) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/step-%08llu.h5", dir, (unsigned long long)steps[i]);
        if (!first[0] || !dmlp_same_file(path, first))
            list_add(paths, n, &cap, path);
    }
    free(steps);
}

void checkpoint_candidates_free(char ***paths, size_t n)
{
    for (size_t i = 0; *paths && i < n; i++)
        free((*paths)[i]);
    free(*paths);
    *paths = NULL;
}

static int is_checkpoint_quietly(const char *path)
{
    struct dmlp_error e0;
    if (dmlp_check_input_file(path, &e0) || H5Fis_hdf5(path) <= 0) /* a FIFO would block */
        return 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return 0;
    /* A format attribute that cannot be read as a string counts as a checkpoint's: the
     * description then names what is wrong with it, where a dataset's would only say that
     * /features is missing. */
    char fmt[64] = "";
    struct dmlp_error e;
    int yes = attr_str(f, path, "/", "format", fmt, sizeof fmt, NULL, &e) != DMLP_OK
                  ? H5Aexists(f, "format") > 0 : !strcmp(fmt, FORMAT_NAME);
    if (!yes)
        yes = H5Lexists(f, "layers", H5P_DEFAULT) > 0;
    H5Fclose(f);
    return yes;
}

/* What describe prints besides the network, read in full before anything is printed. */
struct described {
    char format[256], version[256], opt_name[64], *yaml;
    uint64_t num[5], opt_steps, seed;
    int has_format, has_version, has_num[5], has_opt, has_seed;
};

static const char *const described_nums[5] = {"format_version", "epoch", "step_in_epoch",
                                              "step", "samples_seen"};

/* Every attribute is read before anything is printed, so a bad one is reported alone
 * rather than after half a description. */
static int read_described(hid_t f, const char *path, struct described *d,
                          struct dmlp_error *err)
{
    int has = 0, has_config = 0;
    d->has_opt = H5Lexists(f, "optimizer", H5P_DEFAULT) > 0;
    const int has_rng = H5Lexists(f, "rng", H5P_DEFAULT) > 0;
    int rc = attr_str(f, path, "/", "format", d->format, sizeof d->format, &d->has_format, err);
    if (!rc)
        rc = attr_str(f, path, "/", "dmlp_version", d->version, sizeof d->version,
                      &d->has_version, err);
    for (size_t i = 0; !rc && i < 5; i++)
        rc = attr_u64(f, path, "/", described_nums[i], &d->num[i], &d->has_num[i], err);
    if (!rc && d->has_opt)
        rc = attr_str(f, path, "/optimizer", "name", d->opt_name, sizeof d->opt_name, &has, err);
    if (!rc && d->has_opt)
        rc = attr_u64(f, path, "/optimizer", "steps", &d->opt_steps, &has, err);
    if (!rc && has_rng)
        rc = attr_u64(f, path, "/rng", "seed", &d->seed, &d->has_seed, err);
    if (!rc)
        rc = h5util_read_str_attr(f, path, "/", "config", &d->yaml, &has_config, err);
    return rc;
}

static void print_root_attributes(FILE *out, const char *path, const struct described *d,
                                  enum dmlp_loss loss)
{
    fprintf(out, "checkpoint %s\n", path);
    if (d->has_format)
        fprintf(out, "  %-14s %s\n", "format", d->format);
    if (d->has_version)
        fprintf(out, "  %-14s %s\n", "dmlp_version", d->version);
    for (size_t i = 0; i < 5; i++)
        if (d->has_num[i])
            fprintf(out, "  %-14s %llu\n", described_nums[i], (unsigned long long)d->num[i]);
    fprintf(out, "  %-14s %s\n", "loss", dmlp_loss_name(loss));
}

static void print_layers(FILE *out, size_t in_dim, const struct config_layer *ls, size_t n)
{
    size_t total = 0, prev = in_dim;
    fprintf(out, "  layers (input width %zu):\n", in_dim);
    for (size_t l = 0; l < n; l++) {
        fprintf(out, "    %zu  weight [%u, %zu]  bias [%u]  %s\n", l, ls[l].units, prev,
                ls[l].units, dmlp_activation_name(ls[l].activation));
        total += (size_t)ls[l].units * prev + ls[l].units;
        prev = ls[l].units;
    }
    fprintf(out, "  parameters     %zu\n", total);
}

/* The optimizer, the normalization and the seed: what resuming restores. */
static void print_training_state(FILE *out, hid_t f, const struct described *d, size_t in_dim,
                                 size_t out_dim)
{
    const int norm = H5Lexists(f, "normalization", H5P_DEFAULT) > 0;
    if (d->has_opt) {
        fprintf(out, "  optimizer      %s, %llu steps", d->opt_name,
                (unsigned long long)d->opt_steps);
        const char *bufs[] = {"/optimizer/momentum", "/optimizer/exp_avg",
                              "/optimizer/exp_avg_sq"};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (H5Lexists(f, bufs[i], H5P_DEFAULT) > 0)
                fprintf(out, ", %s", bufs[i] + strlen("/optimizer/"));
        fprintf(out, "\n");
    }
    if (norm && H5Lexists(f, "/normalization/mean", H5P_DEFAULT) > 0)
        fprintf(out, "  normalization  standard: x' = (x - mean) / std, [%zu] each\n", in_dim);
    if (norm && H5Lexists(f, "/normalization/target_mean", H5P_DEFAULT) > 0)
        fprintf(out, "  targets        standard: t' = (t - target_mean) / target_std, [%zu] "
                "each; outputs mapped back\n", out_dim);
    if (d->has_seed)
        fprintf(out, "  seed           %llu\n", (unsigned long long)d->seed);
}

/* The config the run was trained with, as stored (effective values after --set). */
static void print_config(FILE *out, const char *yaml)
{
    if (!yaml || !yaml[0])
        return;
    fprintf(out, "  config:\n    ");
    for (const char *p = yaml; *p; p++) {
        fputc(*p, out);
        if (*p == '\n' && p[1])
            fputs("    ", out);
    }
    if (yaml[strlen(yaml) - 1] != '\n')
        fputc('\n', out);
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
    struct described d = {.opt_name = "?"};
    rc = read_described(f, path, &d, err);
    if (!rc) {
        print_root_attributes(out, path, &d, loss);
        print_layers(out, in_dim, ls, n);
        print_training_state(out, f, &d, in_dim, ls[n - 1].units);
        print_config(out, d.yaml);
    }
    free(d.yaml);
    H5Fclose(f);
    free(ls);
    return rc;
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
    int rc;
    H5UTIL_QUIETLY(rc, save_quietly(dir, m, o, st, config_yaml, keep_last, path_out,
                                    path_cap, err));
    return rc;
}

int checkpoint_save_as(const char *dir, const char *name, const struct model *m,
                       const struct optim *o, const struct checkpoint_state *st,
                       const char *config_yaml, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, save_as_quietly(dir, name, m, o, st, config_yaml, err));
    return rc;
}

int checkpoint_read_network(const char *path, size_t *in_dim, struct config_layer **layers,
                            size_t *n_layers, enum dmlp_loss *loss, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, read_network_quietly(path, in_dim, layers, n_layers, loss, err));
    return rc;
}

int checkpoint_load_layers(const char *path, struct model *m, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, load_layers_quietly(path, m, err));
    return rc;
}

int checkpoint_load(const char *path, struct model *m, struct optim *o,
                    struct checkpoint_state *st, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, load_quietly(path, m, o, st, err));
    return rc;
}

int checkpoint_is_checkpoint(const char *path)
{
    int rc;
    H5UTIL_QUIETLY(rc, is_checkpoint_quietly(path));
    return rc;
}

int checkpoint_describe(FILE *out, const char *path, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, describe_quietly(out, path, err));
    return rc;
}
