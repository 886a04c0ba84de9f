/* config: YAML -> struct config through one table of keys (README, "Config").
 *
 * keys[] names every key once: its path, type, place in struct config, default, range and
 * help text. Everything else walks that table: the loader, --set, the range checks,
 * config_to_yaml, config_key_paths and the key table that README.md and `dmlp help
 * config` show. What one key cannot say alone (softmax only on the last layer, min_lr <= lr,
 * ...) is check_rules(), run after the table's own checks.
 *
 * A load: libyaml builds the document tree, whose nodes carry their lines; check_tree()
 * refuses aliases, duplicate keys and odd keys anywhere in it; the defaults are stored;
 * walk() matches the tree against the table (unknown and missing keys, types, values);
 * check() runs the ranges and rules; then each --set, and check() again. Every error reads
 * "file:line: key.path: problem", or "--set arg: key.path: problem" for a value a --set
 * wrote. */
#define _POSIX_C_SOURCE 200809L
#include "app/config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* A config is a few hundred bytes; anything this big is the wrong file (a dataset?). */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)
#define CONFIG_PATH_MAX 256
#define CONFIG_DEPTH 16

/* ---- the table ---------------------------------------------------------------------- */

_Static_assert(sizeof(enum dmlp_activation) == sizeof(int) &&
               sizeof(enum dmlp_loss) == sizeof(int), "enum fields are stored as int");

enum key_type {
    KEY_U32,
    KEY_U64,
    KEY_DOUBLE,
    KEY_BOOL,
    KEY_ENUM,
    KEY_PATH, /* a string (char *); empty only where OPTIONAL, and then it means none */
    KEY_LIST, /* a pointer to entries and a uint32_t count; its entries' keys follow it */
    KEY_NUMBERS, /* struct config_numbers: a list of numbers, or one of names (a word);
                    OPTIONAL, no default; the range applies to each number */
    KEY_FILES /* struct config_files: a path or glob, or a list of them; no default */
};

/* A number's range. One-sided ranges start at 0: "positive" (for integers, >= 1) or
 * "non-negative"; HI adds an upper bound (the range is then [0 or (0, hi] or hi)). */
enum {
    LO = 1,      /* >= 0 */
    LO_OPEN = 2, /* with LO: > 0 */
    HI = 4,      /* <= hi */
    HI_OPEN = 8, /* with HI: < hi */
    OPTIONAL = 16 /* a KEY_PATH that may be absent (NULL); no default */
};
#define POSITIVE .flags = LO | LO_OPEN
#define NON_NEGATIVE .flags = LO
#define FRACTION .flags = LO | HI | HI_OPEN, .hi = 1 /* [0, 1) */

struct key {
    const char *path;         /* "optimizer.schedule.gamma"; list entries "model.layers[].units" */
    enum key_type type;
    size_t offset;            /* in struct config; for a list's entries, in one entry */
    const char *def;          /* the default as YAML text; NULL: required (unless OPTIONAL) */
    unsigned flags;
    double hi;
    const char *const *names; /* KEY_ENUM */
    size_t count_offset, entry_size; /* KEY_LIST */
    const char *help;         /* one line, Markdown (README.md shows it) */
};

#define AT(member) offsetof(struct config, member)
#define IN_LAYER(member) offsetof(struct config_layer, member)

/* In schema order, which is the order config_to_yaml writes and "known keys" lists. */
static const struct key keys[] = {
    {"model.layers", KEY_LIST, AT(model.layers), .count_offset = AT(model.n_layers),
     .entry_size = sizeof(struct config_layer),
     .help = "the layers, input side first; the input width comes from the data"},
    {"model.layers[].units", KEY_U32, IN_LAYER(units), POSITIVE, .help = "outputs of the layer"},
    {"model.layers[].activation", KEY_ENUM, IN_LAYER(activation), .names = dmlp_activation_names,
     .help = "`leaky_relu` has slope 0.01; `softmax` only on the last layer, with "
             "`cross_entropy`"},
    {"model.layers[].dropout", KEY_DOUBLE, IN_LAYER(dropout), "0", FRACTION,
     .help = "hidden layers: zero each output with this probability while training (scaled "
             "by 1/(1 − p)); the mask depends on (seed, step, sample, layer, unit) only"},
    {"model.init", KEY_ENUM, AT(model.init), "he", .names = dmlp_init_names,
     .help = "weights drawn from N(0, 2/in) (`he`) or N(0, 2/(in+out)) (`xavier`); biases 0"},
    {"loss", KEY_ENUM, AT(loss), "cross_entropy", .names = dmlp_loss_names,
     .help = "`cross_entropy` (softmax output, `/labels`); `mse`, `mae` or `huber` "
             "(`/targets`), summed over outputs, averaged over samples"},
    {"loss_delta", KEY_DOUBLE, AT(loss_delta), "1", POSITIVE,
     .help = "huber: quadratic below δ, linear above (in the units the network learns)"},
    {"loss_weights", KEY_NUMBERS, AT(loss_weights), .flags = OPTIONAL | LO,
     .help = "regression: one weight ≥ 0 per output, multiplying its term of the loss"},
    {"optimizer.name", KEY_ENUM, AT(optimizer.name), "sgd", .names = dmlp_optimizer_names,
     .help = "with PyTorch's update formulas"},
    {"optimizer.lr", KEY_DOUBLE, AT(optimizer.lr), POSITIVE,
     .help = "learning rate (the schedule's peak)"},
    {"optimizer.momentum", KEY_DOUBLE, AT(optimizer.momentum), "0", FRACTION,
     .help = "sgd only"},
    {"optimizer.nesterov", KEY_BOOL, AT(optimizer.nesterov), "false",
     .help = "sgd: Nesterov momentum (needs momentum > 0)"},
    {"optimizer.weight_decay", KEY_DOUBLE, AT(optimizer.weight_decay), "0", NON_NEGATIVE,
     .help = "L2 penalty added to the gradient (sgd, adam); decoupled decay (adamw)"},
    {"optimizer.beta1", KEY_DOUBLE, AT(optimizer.beta1), "0.9", FRACTION,
     .help = "adam, adamw: decay of the gradient's running mean"},
    {"optimizer.beta2", KEY_DOUBLE, AT(optimizer.beta2), "0.999", FRACTION,
     .help = "adam, adamw: decay of the squared gradient's running mean"},
    {"optimizer.eps", KEY_DOUBLE, AT(optimizer.eps), "1e-8", POSITIVE,
     .help = "adam, adamw: added to the denominator"},
    {"optimizer.clip_norm", KEY_DOUBLE, AT(optimizer.clip_norm), "0", NON_NEGATIVE,
     .help = "clip the global gradient norm (after the allreduce) to this; 0 = off"},
    {"optimizer.history", KEY_U32, AT(optimizer.history), "100", POSITIVE,
     .help = "lbfgs: the (s, y) pairs kept (memory: 2 × history × parameters floats)"},
    {"optimizer.max_iter", KEY_U32, AT(optimizer.max_iter), "20", POSITIVE,
     .help = "lbfgs: iterations per epoch, each a strong-Wolfe line search over the whole "
             "training set"},
    {"optimizer.lr_scaling", KEY_ENUM, AT(optimizer.lr_scaling), "none",
     .names = dmlp_lr_scaling_names,
     .help = "`linear`: lr × batch_size / base_batch_size (Goyal et al.)"},
    {"optimizer.base_batch_size", KEY_U32, AT(optimizer.base_batch_size), "128", POSITIVE,
     .help = "the batch size the learning rate was tuned for"},
    {"optimizer.schedule.name", KEY_ENUM, AT(optimizer.schedule.name), "constant",
     .names = dmlp_schedule_names,
     .help = "`step`: × gamma every step_epochs; `cosine`: down to min_lr; applied per "
             "step; `plateau`: × factor after patience epochs without improvement"},
    {"optimizer.schedule.warmup_epochs", KEY_DOUBLE, AT(optimizer.schedule.warmup_epochs),
     "0", NON_NEGATIVE,
     .help = "linear warm-up from 0 (fractions allowed; at most training.epochs)"},
    {"optimizer.schedule.step_epochs", KEY_U32, AT(optimizer.schedule.step_epochs), "10",
     POSITIVE, .help = "step: epochs between two decays"},
    {"optimizer.schedule.gamma", KEY_DOUBLE, AT(optimizer.schedule.gamma), "0.1",
     .flags = LO | LO_OPEN | HI, .hi = 1, .help = "step: the factor of each decay"},
    {"optimizer.schedule.min_lr", KEY_DOUBLE, AT(optimizer.schedule.min_lr), "0",
     NON_NEGATIVE, .help = "cosine: the final learning rate; plateau: the floor (at most "
                           "optimizer.lr)"},
    {"optimizer.schedule.factor", KEY_DOUBLE, AT(optimizer.schedule.factor), "0.1",
     .flags = LO | LO_OPEN | HI | HI_OPEN, .hi = 1, .help = "plateau: the factor of each cut"},
    {"optimizer.schedule.patience", KEY_U32, AT(optimizer.schedule.patience), "10",
     .help = "plateau: epochs without improvement before a cut"},
    {"optimizer.schedule.threshold", KEY_DOUBLE, AT(optimizer.schedule.threshold), "1e-4",
     FRACTION, .help = "plateau: an improvement is a loss below best × (1 − threshold)"},
    {"optimizer.schedule.metric", KEY_ENUM, AT(optimizer.schedule.metric), "val_loss",
     .names = dmlp_plateau_metric_names,
     .help = "plateau: the loss watched; `val_loss` needs data.validation_fraction > 0"},
    {"data.train", KEY_FILES, AT(data.train),
     .help = "training data (HDF5): a file, a glob (`runs/*.h5`, sorted) or a list of "
             "either, read as one concatenation in that order"},
    {"data.test", KEY_FILES, AT(data.test), .flags = OPTIONAL,
     .help = "evaluated after every epoch; a file, a glob or a list, as data.train"},
    {"data.validation", KEY_FILES, AT(data.validation), .flags = OPTIONAL,
     .help = "a validation set of its own (file, glob or list), instead of "
             "validation_fraction: val loss and accuracy every epoch, `best.h5`"},
    {"data.validation_fraction", KEY_DOUBLE, AT(data.validation_fraction), "0", FRACTION,
     .help = "a seeded random part of the training file held out; val loss and accuracy "
             "every epoch, `best.h5`"},
    {"data.shuffle", KEY_BOOL, AT(data.shuffle), "true",
     .help = "a permutation drawn from (seed, epoch) each epoch"},
    {"data.drop_last", KEY_BOOL, AT(data.drop_last), "false",
     .help = "skip the short last batch of an epoch"},
    {"data.placement", KEY_ENUM, AT(data.placement), "replicated", .names = dmlp_placement_names,
     .help = "every rank holds the whole training set (one copy per node), or (`sharded`) "
             "1/n of the rows, or (`streamed`) reads it from disk in windows as it trains"},
    {"data.block_rows", KEY_U32, AT(data.block_rows), "4096", POSITIVE,
     .help = "streamed: rows per block; the epoch permutes the blocks"},
    {"data.shuffle_window", KEY_U32, AT(data.shuffle_window), "8", POSITIVE,
     .help = "streamed: blocks per window, whose rows are shuffled together (a window "
             "covering the set: the replicated order)"},
    {"data.memory_mb", KEY_U32, AT(data.memory_mb), "1024", POSITIVE,
     .help = "streamed: the budget for the two resident windows (one when a window covers "
             "the set); refused at start when they do not fit"},
    {"data.share_node", KEY_BOOL, AT(data.share_node), "true",
     .help = "replicated: the ranks of a node share one read-only copy of the data (an MPI "
             "shared-memory window), read once per node; `false`: a copy per rank"},
    {"data.normalize", KEY_ENUM, AT(data.normalize), "none", .names = dmlp_normalize_names,
     .help = "`standard`: (x − mean) / std per feature, from the training rows (across "
             "ranks); stored in checkpoints, applied by eval and predict"},
    {"data.normalize_targets", KEY_BOOL, AT(data.normalize_targets), "false",
     .help = "regression: train on (t − mean) / std per output, from the training "
             "rows (across ranks); stored in checkpoints; eval, predict, the inference "
             "library and ONNX give values in the original units"},
    {"data.class_weights", KEY_NUMBERS, AT(data.class_weights), .flags = OPTIONAL | LO,
     .names = dmlp_class_weight_words,
     .help = "cross_entropy: one weight ≥ 0 per class, or `balanced` (N / (K · count), "
             "counted across ranks); the loss is Σ w·ℓ / Σ w"},
    {"training.epochs", KEY_U32, AT(training.epochs), "10", POSITIVE,
     .help = "passes over the training set"},
    {"training.batch_size", KEY_U32, AT(training.batch_size), "128", POSITIVE,
     .help = "the **global** batch, split across ranks"},
    {"training.seed", KEY_U64, AT(training.seed), "42",
     .help = "seeds initialisation and shuffling"},
    {"training.max_steps", KEY_U64, AT(training.max_steps), "0",
     .help = "stop after this many steps (0: no limit)"},
    {"training.reproducible", KEY_BOOL, AT(training.reproducible), "false",
     .help = "weights bit-identical for any rank count (fixed-point gradient sums; needs "
             "replicated or streamed placement; costs speed)"},
    {"training.early_stopping.patience", KEY_U32, AT(training.early_stopping.patience), "0",
     .help = "stop after this many epochs without improvement (0: off; needs "
             "data.validation_fraction > 0)"},
    {"training.early_stopping.metric", KEY_ENUM, AT(training.early_stopping.metric),
     "val_loss", .names = dmlp_metric_names, .help = "`val_accuracy` needs `cross_entropy`"},
    {"training.early_stopping.min_delta", KEY_DOUBLE, AT(training.early_stopping.min_delta),
     "0", NON_NEGATIVE, .help = "a smaller change is no improvement"},
    {"checkpoint.dir", KEY_PATH, AT(checkpoint.dir), "runs/default",
     .help = "where checkpoints go"},
    {"checkpoint.every_epochs", KEY_U32, AT(checkpoint.every_epochs), "1",
     .help = "0: only the final checkpoint"},
    {"checkpoint.keep_last", KEY_U32, AT(checkpoint.keep_last), "3",
     .help = "older checkpoints are deleted (0: keep all); never the newest"},
    {"comm.shared_memory", KEY_BOOL, AT(comm.shared_memory), "true",
     .help = "ranks on one node add their gradients through an MPI shared-memory window "
             "(then `MPI_Allreduce` across nodes) instead of one `MPI_Allreduce`; falls back "
             "by itself where it cannot"},
    {"comm.overlap", KEY_BOOL, AT(comm.overlap), "false",
     .help = "start each bucket's gradient allreduce (`MPI_Iallreduce`) as soon as backward "
             "has produced it, and finish before the update; same weights as without (bit "
             "for bit at 2 ranks)"},
    {"comm.bucket_kb", KEY_U32, AT(comm.bucket_kb), "256", POSITIVE,
     .help = "gradient per allreduce when overlapping, in KiB (at most 4 GiB)"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* ---- a load in progress ------------------------------------------------------------- */

struct load {
    const char *name;
    struct config *cfg;
    yaml_document_t doc;
    /* The --set arguments applied so far, and the path each wrote (written canonically):
     * a message about that path names the last of them instead of a line of the file. */
    const char *const *sets;
    char (*set_paths)[CONFIG_PATH_MAX];
    size_t n_set;
    struct dmlp_error *err;
};

static int parse_document(struct load *ld, const char *yaml, size_t len);
static int check_tree(struct load *ld, yaml_node_t *node, const char *path, int line,
                      int depth, unsigned char *seen);
static int walk(struct load *ld, yaml_node_t *node, const char *path, int line, void *base);
static int store_defaults(struct load *ld, void *base, const char *prefix);
static int check(struct load *ld);
static int apply_set(struct load *ld, const char *arg);
static int emit_mapping(yaml_emitter_t *em, const void *base, const char *prefix);

/* ---- public functions --------------------------------------------------------------- */

int config_load(struct config **out, const char *path, const char *const *sets, size_t n_sets,
                struct dmlp_error *err)
{
    *out = NULL;
    const int bad = dmlp_check_input_file(path, err);
    if (bad)
        return bad;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    /* Read one byte past the limit so an oversized file is told apart from a full one. */
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", path);
    }
    size_t len = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    int read_errno = ferror(f) ? errno : 0;
    fclose(f);
    int rc;
    if (read_errno)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot read: %s", path, strerror(read_errno));
    else if (len > CONFIG_MAX_BYTES)
        rc = dmlp_fail(err, DMLP_ERR_INPUT,
                       "%s: larger than 1 MiB; a config is a short YAML file (wrong path?)",
                       path);
    else
        rc = config_load_string(out, buf, len, path, sets, n_sets, err);
    free(buf);
    return rc;
}

int config_load_string(struct config **out, const char *yaml, size_t len, const char *name,
                       const char *const *sets, size_t n_sets, struct dmlp_error *err)
{
    *out = NULL;
    struct load ld = {.name = name ? name : "<string>", .sets = sets, .err = err};
    if (len > CONFIG_MAX_BYTES)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: larger than 1 MiB; a config is a short YAML file", ld.name);
    ld.cfg = calloc(1, sizeof *ld.cfg);
    ld.set_paths = calloc(n_sets ? n_sets : 1, sizeof *ld.set_paths);
    int rc = ld.cfg && ld.set_paths ? parse_document(&ld, yaml, len)
                                    : dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory",
                                                ld.name);
    if (rc == DMLP_OK)
        rc = store_defaults(&ld, ld.cfg, "");
    if (rc == DMLP_OK) {
        yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
        rc = walk(&ld, root, "", (int)root->start_mark.line + 1, ld.cfg);
    }
    if (rc == DMLP_OK)
        rc = check(&ld);
    for (size_t i = 0; rc == DMLP_OK && i < n_sets; i++)
        rc = apply_set(&ld, sets[i]);
    if (rc == DMLP_OK && n_sets > 0)
        rc = check(&ld);
    yaml_document_delete(&ld.doc);
    free(ld.set_paths);
    if (rc != DMLP_OK) {
        config_free(&ld.cfg);
        return rc;
    }
    *out = ld.cfg;
    if (err)
        dmlp_error_clear(err);
    return DMLP_OK;
}

/* The emitter's output, grown as it writes. */
struct text {
    char *s;
    size_t len, cap;
};

static int text_write(void *ctx, unsigned char *buf, size_t n)
{
    struct text *t = ctx;
    if (t->len + n + 1 > t->cap) {
        size_t cap = 2 * (t->len + n + 1);
        char *s = realloc(t->s, cap);
        if (!s)
            return 0;
        t->s = s;
        t->cap = cap;
    }
    memcpy(t->s + t->len, buf, n);
    t->len += n;
    t->s[t->len] = '\0';
    return 1;
}

/* libyaml's emitter writes the text, so every string comes out quoted as YAML needs. */
int config_to_yaml(const struct config *cfg, char **out, struct dmlp_error *err)
{
    *out = NULL;
    yaml_emitter_t em;
    struct text t = {0};
    if (!yaml_emitter_initialize(&em))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "config: out of memory");
    yaml_emitter_set_output(&em, text_write, &t);
    yaml_event_t ev;
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
             yaml_emitter_emit(&em, &ev) && emit_mapping(&em, cfg, "") &&
             yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
             yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev) &&
             yaml_emitter_flush(&em);
    int rc = DMLP_OK;
    if (!ok) {
        /* Only a config that skipped validation (an enum out of range) gets here. */
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "config: cannot serialize to YAML: %s",
                       em.problem ? em.problem : "a value out of range, or out of memory");
        free(t.s);
    } else {
        *out = t.s;
    }
    yaml_emitter_delete(&em);
    return rc;
}

/* Sets the files at dst to the n entries of v (taking v and its strings), freeing the old. */
static void files_set(struct config_files *dst, char **v, uint32_t n)
{
    for (uint32_t i = 0; i < dst->n; i++)
        free(dst->v[i]);
    free(dst->v);
    dst->v = v;
    dst->n = n;
}

void config_free(struct config **cfg)
{
    if (!cfg || !*cfg)
        return;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].type == KEY_FILES)
            files_set((struct config_files *)((char *)*cfg + keys[i].offset), NULL, 0);
        if (keys[i].type == KEY_PATH || keys[i].type == KEY_LIST ||
            keys[i].type == KEY_NUMBERS) { /* the numbers' pointer comes first */
            void *p;
            memcpy(&p, (char *)*cfg + keys[i].offset, sizeof p);
            free(p);
        }
    }
    free(*cfg);
    *cfg = NULL;
}

size_t config_key_paths(const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].type == KEY_LIST)
            continue; /* its entries' keys are the values */
        if (n < cap)
            out[n] = keys[i].path;
        n++;
    }
    return n;
}

static void want_text(const struct key *k, int md, char *out, size_t cap);

void config_write_key_table(FILE *out)
{
    fputs("| key | type, range | default | meaning |\n|---|---|---|---|\n", out);
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        char type[256], def[64];
        want_text(k, 1, type, sizeof type);
        if (k->def)
            snprintf(def, sizeof def, "`%s`", k->def);
        else
            snprintf(def, sizeof def, "%s", k->flags & OPTIONAL ? "none" : "required");
        fprintf(out, "| `%s` | %s | %s | %s |\n", k->path, type, def, k->help);
    }
}

/* ---- the table, read -------------------------------------------------------------------- */

static const struct key *find_key(const char *schema_path)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].path, schema_path) == 0)
            return &keys[i];
    return NULL;
}

/* The length of the name that k has directly under prefix ("" or a schema path ending in
 * '.': "optimizer." -> "schedule" for optimizer.schedule.gamma), 0 when k is not under it. */
static size_t child_len(const struct key *k, const char *prefix)
{
    const size_t plen = strlen(prefix);
    if (strncmp(k->path, prefix, plen) != 0)
        return 0;
    return strcspn(k->path + plen, ".[");
}

/* The next name directly under prefix, from row *i on: returns its first row (NULL past
 * the end) with the name's length in *n, and moves *i past its rows, which follow each
 * other in the table ("layers", then "layers[].units", ...). */
static const struct key *next_child(const char *prefix, size_t *i, size_t *n)
{
    const size_t plen = strlen(prefix);
    while (*i < N_KEYS && !(*n = child_len(&keys[*i], prefix)))
        ++*i;
    if (*i == N_KEYS)
        return NULL;
    const struct key *first = &keys[*i];
    while (*i < N_KEYS && child_len(&keys[*i], prefix) == *n &&
           !strncmp(keys[*i].path + plen, first->path + plen, *n))
        ++*i;
    return first;
}

/* The first key of the table under prefix whose child name there is name, or NULL. */
static const struct key *find_child(const char *prefix, const char *name)
{
    const struct key *k;
    size_t i = 0, n;
    while ((k = next_child(prefix, &i, &n)))
        if (n == strlen(name) && !strncmp(k->path + strlen(prefix), name, n))
            return k;
    return NULL;
}

/* "name, lr, momentum, ...": the names directly under prefix, in table order. */
static void list_children(const char *prefix, char *out, size_t cap)
{
    const struct key *k;
    size_t i = 0, n, used = 0;
    out[0] = '\0';
    while (used < cap && (k = next_child(prefix, &i, &n)))
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", used ? ", " : "", (int)n,
                                 k->path + strlen(prefix));
}

/* "model.layers[12].units" -> "model.layers[].units": the table's form of a path. */
static void schema_path(const char *path, char *out, size_t cap)
{
    size_t j = 0;
    for (const char *c = path; *c && j + 1 < cap; c++) {
        out[j++] = *c;
        if (*c == '[')
            while (c[1] >= '0' && c[1] <= '9')
                c++;
    }
    out[j] = '\0';
}

/* The field at offset off of base (a struct config, or a list entry) as an lvalue of type T:
 * the table's offsets come from offsetof on fields of that type. */
#define FIELD(T, base, off) (*(T *)((char *)(base) + (off)))

/* List k's entries in base, and their count in *n. */
static char *list_entries(const void *base, const struct key *k, uint32_t *n)
{
    char *entries;
    memcpy(&entries, (const char *)base + k->offset, sizeof entries);
    *n = FIELD(uint32_t, base, k->count_offset);
    return entries;
}

static int required(const struct key *k) { return !k->def && !(k->flags & OPTIONAL); }

/* What a value of k must be: for messages ("a positive integer", "in [0, 1)", "one of he,
 * xavier"), or with md for the key table ("int ≥ 1", "float [0, 1)", "`he`, `xavier`"). */
static void want_text(const struct key *k, int md, char *out, size_t cap)
{
    static const char *const type[] = {"int", "int64", "float", "bool", "", "path", "list",
                                       "list of floats ≥ 0", "path, glob or list"};
    static const char *const word[] = {"integer", "integer", "number", "true or false", "",
                                       "a string", "a list", "a list of numbers ≥ 0",
                                       "a path, a glob or a list of them"};
    const int integer = k->type == KEY_U32 || k->type == KEY_U64;
    const unsigned f = k->flags;
    const char *what = md ? type[k->type] : word[k->type];
    if (k->type == KEY_NUMBERS) {
        snprintf(out, cap, "%s%s%s%s%s", what, k->names ? ", or " : "", md ? "`" : "",
                 k->names ? k->names[0] : "", md && k->names ? "`" : "");
    } else if (k->type == KEY_ENUM) {
        size_t used = (size_t)snprintf(out, cap, "%s", md ? "" : "one of ");
        for (int i = 0; k->names[i] && used < cap; i++)
            used += (size_t)snprintf(out + used, cap - used, md ? "%s`%s`" : "%s%s",
                                     i ? ", " : "", k->names[i]);
    } else if (k->type > KEY_DOUBLE) {
        snprintf(out, cap, "%s", what);
    } else if (f & HI) {
        snprintf(out, cap, "%s %c0, %g%c", md ? what : "in", f & LO_OPEN ? '(' : '[', k->hi,
                 f & HI_OPEN ? ')' : ']');
    } else if (md) {
        snprintf(out, cap, "%s%s", what, f & LO_OPEN ? (integer ? " ≥ 1" : " > 0")
                                         : (f & LO) || integer ? " ≥ 0" : "");
    } else {
        snprintf(out, cap, "a %s %s", f & LO_OPEN ? "positive" : "non-negative", what);
    }
}

/* "a mapping (keys: name, lr, ...)": what the section under prefix must be. */
static void section_text(const char *prefix, char *out, size_t cap)
{
    char names[400];
    list_children(prefix, names, sizeof names);
    snprintf(out, cap, "a mapping (keys: %s)", names);
}

/* The list that holds the entry key k ("model.layers[].units" -> model.layers), or NULL. */
static const struct key *list_of(const struct key *k)
{
    const char *brackets = strstr(k->path, "[]");
    if (!brackets)
        return NULL;
    char path[CONFIG_PATH_MAX];
    snprintf(path, sizeof path, "%.*s", (int)(brackets - k->path), k->path);
    return find_key(path);
}

/* ---- scalars ------------------------------------------------------------------------ */

/* 1 if s is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): YAML text is UTF-8, so config_to_yaml (the checkpoint's copy of the config)
 * cannot write anything else, and a --set value is the one way other bytes get in. */
static int utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        const unsigned c = *p++;
        const int more = c < 0x80 ? 0 : c < 0xC2 ? -1 : c < 0xE0 ? 1 : c < 0xF0 ? 2
                       : c < 0xF5 ? 3 : -1;
        /* The second byte's bounds rule out overlong forms, surrogates and > U+10FFFF. */
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (more < 0)
            return 0;
        for (int i = 0; i < more; i++, p++, lo = 0x80, hi = 0xBF)
            if (*p < lo || *p > hi)
                return 0;
    }
    return 1;
}

/* YAML's spellings of "no value". For an OPTIONAL path they mean none, however quoted and
 * from a file or a --set alike, so that config_to_yaml never writes a path that reads back
 * as none. */
static int is_null_text(const char *s)
{
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static int parse_bool(const char *text)
{
    /* YAML 1.1 spellings too: libyaml users write yes/no. */
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return 1;
        if (strcasecmp(text, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Writes a reason into why and returns -1: the failure of the parsers below. */
static int why_fail(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_fail(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* A KEY_PATH's text into dst, replacing (and freeing) what was there. */
static int parse_path(const struct key *k, const char *text, char **dst, char *why, size_t cap)
{
    if (!utf8_valid(text))
        return why_fail(why, cap, "'%s' is not valid UTF-8 (config text, and the copy kept "
                        "in checkpoints, is UTF-8)", text);
    char *v = NULL;
    /* An empty value is refused for a required path by check(), which says why. */
    if (!((k->flags & OPTIONAL) && is_null_text(text)) && !(v = strdup(text)))
        return why_fail(why, cap, "out of memory");
    free(*dst);
    *dst = v;
    return 0;
}

/* Sets the numbers at dst to the n values of v (taking v), or to the word w (1 + index). */
static void numbers_set(struct config_numbers *dst, double *v, uint32_t n, int w)
{
    free(dst->v);
    dst->v = v;
    dst->n = n;
    dst->word = w;
}

/* A KEY_NUMBERS value as text (a --set value): none (null), a word of k, or numbers
 * separated by commas, in brackets or not: "[1, 10]", "1,10". */
static int parse_numbers(const struct key *k, const char *text, struct config_numbers *dst,
                         char *why, size_t cap)
{
    char buf[4096], *save = NULL;
    while (*text == ' ')
        text++;
    size_t len = strlen(text);
    while (len && text[len - 1] == ' ')
        len--;
    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        text++;
        len -= 2;
    }
    if (len >= sizeof buf)
        return why_fail(why, cap, "a list of %zu characters is too long", len);
    snprintf(buf, sizeof buf, "%.*s", (int)len, text);
    if (is_null_text(buf) || strspn(buf, " ") == len) {
        numbers_set(dst, NULL, 0, 0);
        return 0;
    }
    for (int i = 0; k->names && k->names[i]; i++)
        if (!strcmp(buf, k->names[i])) {
            numbers_set(dst, NULL, 0, i + 1);
            return 0;
        }
    double *v = malloc((len / 2 + 1) * sizeof *v);
    uint32_t n = 0;
    if (!v)
        return why_fail(why, cap, "out of memory");
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        for (size_t e = strlen(t); e && t[e - 1] == ' ';)
            t[--e] = '\0';
        if (dmlp_parse_double(t, &v[n]) != 0) {
            free(v);
            char want[256];
            want_text(k, 0, want, sizeof want);
            return why_fail(why, cap, "'%s' is not a finite number (expected %s)", t, want);
        }
        n++;
    }
    numbers_set(dst, v, n, 0);
    return 0;
}

/* A KEY_FILES value as text: none (null, for an optional key), a list in brackets whose
 * entries are separated by commas ("[a.h5, b.h5]", from --set), or one path or glob.
 * Entries are kept as given; check() refuses empty ones. */
static int parse_files(const struct key *k, const char *text, struct config_files *dst,
                       char *why, size_t cap)
{
    if (!utf8_valid(text))
        return why_fail(why, cap, "'%s' is not valid UTF-8 (config text, and the copy kept "
                        "in checkpoints, is UTF-8)", text);
    if ((k->flags & OPTIONAL) && is_null_text(text)) {
        files_set(dst, NULL, 0);
        return 0;
    }
    size_t len = strlen(text);
    const int list = len >= 2 && text[0] == '[' && text[len - 1] == ']';
    uint32_t n = 1;
    for (size_t i = 0; list && i < len; i++)
        n += text[i] == ',';
    char **v = calloc(n, sizeof *v);
    if (!v)
        return why_fail(why, cap, "out of memory");
    const char *p = text + list, *end = text + len - list;
    for (uint32_t i = 0; i < n; i++) {
        const char *q = list ? memchr(p, ',', (size_t)(end - p)) : NULL;
        const char *e = q ? q : end;
        while (list && p < e && *p == ' ')
            p++;
        size_t m = (size_t)(e - p);
        while (list && m && p[m - 1] == ' ')
            m--;
        if (!(v[i] = strndup(p, m))) {
            files_set(&(struct config_files){v, i}, NULL, 0);
            return why_fail(why, cap, "out of memory");
        }
        p = e + 1;
    }
    files_set(dst, v, n);
    return 0;
}

/* Parses text as a value of k into dst (k's field in its struct). Returns 0, or -1 with
 * the problem in why ("-8 is not a positive integer"). The one parser for file scalars,
 * --set values and the table's defaults. Ranges are check()'s: they hold after --set. */
static int parse_scalar(const struct key *k, const char *text, void *dst, char *why, size_t cap)
{
    const char *shown = text[0] ? text : "''";
    char want[256];
    want_text(k, 0, want, sizeof want);
    uint64_t u;
    double d;
    int v = 0;
    switch (k->type) {
    case KEY_U32:
    case KEY_U64: {
        /* 64-bit values stop at INT64_MAX, as they always have in dmlp configs (libcyaml
         * read them with strtoll), so every config written so far still loads. */
        const uint64_t max = k->type == KEY_U32 ? UINT32_MAX : INT64_MAX;
        if (dmlp_parse_u64(text, &u) != 0)
            return why_fail(why, cap, "%s is not %s", shown, want);
        if (u > max)
            return why_fail(why, cap, "%s is too large (at most %" PRIu64 ")", text, max);
        if (k->type == KEY_U32)
            *(uint32_t *)dst = (uint32_t)u;
        else
            *(uint64_t *)dst = u;
        return 0;
    }
    case KEY_DOUBLE:
        if (dmlp_parse_double(text, &d) != 0)
            return why_fail(why, cap, "%s is not a finite number", shown);
        *(double *)dst = d;
        return 0;
    case KEY_BOOL:
        if ((v = parse_bool(text)) < 0)
            return why_fail(why, cap, "%s is not true or false", shown);
        *(bool *)dst = v;
        return 0;
    case KEY_ENUM:
        while (k->names[v] && strcmp(text, k->names[v]) != 0)
            v++;
        if (!k->names[v])
            return why_fail(why, cap, "%s is not %s", shown, want);
        *(int *)dst = v;
        return 0;
    case KEY_NUMBERS:
        return parse_numbers(k, text, dst, why, cap);
    case KEY_FILES:
        return parse_files(k, text, dst, why, cap);
    default:
        return parse_path(k, text, (char **)dst, why, cap);
    }
}

/* k's value at src as YAML text, in buf or static; NULL for an enum out of range. */
static const char *format_value(const struct key *k, const void *src, char *buf, size_t cap)
{
    switch (k->type) {
    case KEY_U32: snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)src); return buf;
    case KEY_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)src); return buf;
    case KEY_DOUBLE:
        /* The shortest text that reads back as the same double: exact, and readable. */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, cap, "%.*g", prec, *(const double *)src);
            if (strtod(buf, NULL) == *(const double *)src)
                break;
        }
        /* A whole number as one ("10", not "1e+01"), while that is no longer. */
        if (strchr(buf, 'e') && fabs(*(const double *)src) < 1e15 &&
            *(const double *)src == floor(*(const double *)src))
            snprintf(buf, cap, "%.0f", *(const double *)src);
        return buf;
    case KEY_BOOL: return *(const bool *)src ? "true" : "false";
    case KEY_ENUM: {
        const char *name = dmlp_name_of(k->names, *(const int *)src);
        return strcmp(name, "unknown") ? name : NULL;
    }
    default: return *(char *const *)src;
    }
}

/* ---- key paths and messages --------------------------------------------------------- */

/* One step of a key path: "layers[2]" is name "layers" with index 2. */
struct path_step {
    char name[64];
    int has_index;
    uint64_t index;
};

/* Parses one step at *p (advancing it); returns 0, or -1 on a malformed path. */
static int next_step(const char **p, struct path_step *st)
{
    const char *s = *p;
    size_t n = strcspn(s, ".[");
    if (n == 0 || n >= sizeof st->name)
        return -1;
    memcpy(st->name, s, n);
    st->name[n] = '\0';
    s += n;
    st->has_index = 0;
    if (*s == '[') {
        char *end;
        if (s[1] < '0' || s[1] > '9')
            return -1;
        errno = 0;
        unsigned long long v = strtoull(s + 1, &end, 10);
        if (errno || *end != ']')
            return -1;
        st->has_index = 1;
        st->index = v;
        s = end + 1;
    }
    if (*s == '.')
        s++;
    else if (*s != '\0')
        return -1;
    *p = s;
    return 0;
}

static int node_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static size_t n_children(const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (n->type == YAML_MAPPING_NODE)
        return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    return 0;
}

/* Child i of a list or mapping node: returns its value, and its key in *key (NULL in a
 * list). */
static yaml_node_t *child(yaml_document_t *doc, const yaml_node_t *n, size_t i,
                          yaml_node_t **key)
{
    if (n->type == YAML_SEQUENCE_NODE) {
        *key = NULL;
        return yaml_document_get_node(doc, n->data.sequence.items.start[i]);
    }
    *key = yaml_document_get_node(doc, n->data.mapping.pairs.start[i].key);
    return yaml_document_get_node(doc, n->data.mapping.pairs.start[i].value);
}

/* The path of the child with key (or, in a list, index i) under path: "a.b", "a[3]".
 * Returns 0, or -1 when it does not fit in CONFIG_PATH_MAX. */
static int child_path(const yaml_node_t *key, size_t i, const char *path, char *out)
{
    const int w = key ? snprintf(out, CONFIG_PATH_MAX, "%s%s%s", path, path[0] ? "." : "",
                                 (const char *)key->data.scalar.value)
                      : snprintf(out, CONFIG_PATH_MAX, "%s[%zu]", path, i);
    return w >= 0 && w < CONFIG_PATH_MAX ? 0 : -1;
}

/* The value of the key called name (as a C string, as the walk reads keys) in n, with the
 * key in *key; NULL when n is not a mapping or has no such key. */
static yaml_node_t *mapping_get(yaml_document_t *doc, const yaml_node_t *n, const char *name,
                                yaml_node_t **key)
{
    for (size_t i = 0; n->type == YAML_MAPPING_NODE && i < n_children(n); i++) {
        yaml_node_t *v = child(doc, n, i, key);
        if (strcmp((const char *)(*key)->data.scalar.value, name) == 0)
            return v;
    }
    *key = NULL;
    return NULL;
}

/* The line of the file that the value at path came from: the value's own for a scalar,
 * else that of its key or list entry; 0 when the file does not give it (a default). */
static int line_of(struct load *ld, const char *path)
{
    yaml_node_t *n = yaml_document_get_root_node(&ld->doc), *key;
    int line = 0;
    struct path_step st;
    for (const char *p = path; n && *p && next_step(&p, &st) == 0;) {
        n = mapping_get(&ld->doc, n, st.name, &key);
        line = key ? node_line(key) : 0;
        if (n && st.has_index) {
            const int in = n->type == YAML_SEQUENCE_NODE && st.index < n_children(n);
            n = in ? child(&ld->doc, n, st.index, &key) : NULL;
            line = n ? node_line(n) : 0;
        }
    }
    return !n ? 0 : n->type == YAML_SCALAR_NODE ? node_line(n) : line;
}

/* Fails with "<where path's value came from>: <path>: <message>": "--set a=b" for a value
 * a --set wrote, else "file:line", or the file alone for a default. */
static int fail_at(struct load *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct load *ld, const char *path, const char *fmt, ...)
{
    char loc[CONFIG_PATH_MAX + 64], msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t s = ld->n_set;
    while (s > 0 && strcmp(ld->set_paths[s - 1], path) != 0)
        s--;
    const int line = s ? 0 : line_of(ld, path);
    if (s)
        snprintf(loc, sizeof loc, "--set %s", ld->sets[s - 1]);
    else if (line)
        snprintf(loc, sizeof loc, "%s:%d", ld->name, line);
    else
        snprintf(loc, sizeof loc, "%s", ld->name);
    return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s: %s: %s", loc, path, msg);
}

/* ---- the document ------------------------------------------------------------------- */

static int syntax_error(struct load *ld, const yaml_parser_t *p)
{
    if (p->error == YAML_READER_ERROR)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s: YAML error: %s at byte %zu", ld->name,
                         p->problem, p->problem_offset);
    const char *problem = p->problem ? p->problem : "invalid YAML";
    /* The composer's errors are about anchors: an undefined alias, a repeated anchor. */
    if (p->error == YAML_COMPOSER_ERROR)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: aliases (*name) are not supported "
                         "in configs (%s)", ld->name, (int)p->problem_mark.line + 1, problem);
    if (p->context)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: YAML syntax error: %s (%s at line %d)",
                         ld->name, (int)p->problem_mark.line + 1, problem, p->context,
                         (int)p->context_mark.line + 1);
    return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: YAML syntax error: %s", ld->name,
                     (int)p->problem_mark.line + 1, problem);
}

/* Parses the text into ld->doc: one document whose root is a mapping, passed by
 * check_tree(). What follows the document must be the end of the text. */
static int parse_document(struct load *ld, const char *yaml, size_t len)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "%s: cannot start the YAML parser",
                         ld->name);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    int rc = yaml_parser_load(&p, &ld->doc) ? DMLP_OK : syntax_error(ld, &p);
    yaml_node_t *root = rc ? NULL : yaml_document_get_root_node(&ld->doc);
    unsigned char *seen = NULL;
    if (rc == DMLP_OK && !root)
        rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s: the config is empty; it needs the "
                       "sections model, optimizer and data", ld->name);
    else if (rc == DMLP_OK && root->type != YAML_MAPPING_NODE)
        rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: the config must be a mapping of "
                       "sections (model, optimizer, data, ...)", ld->name, node_line(root));
    else if (rc == DMLP_OK && !(seen = calloc((size_t)(ld->doc.nodes.top -
                                                       ld->doc.nodes.start), 1)))
        rc = dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "%s: out of memory", ld->name);
    if (rc == DMLP_OK) {
        seen[0] = 1; /* the root */
        rc = check_tree(ld, root, "", node_line(root), 0, seen);
    }
    free(seen);
    yaml_event_t ev;
    if (rc == DMLP_OK && !yaml_parser_parse(&p, &ev)) {
        rc = syntax_error(ld, &p);
    } else if (rc == DMLP_OK) {
        if (ev.type != YAML_STREAM_END_EVENT)
            rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: a second YAML document ('---'); "
                           "a config is one document", ld->name, (int)ev.start_mark.line + 1);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return rc;
}

/* Marks node as seen; an alias is a node reached a second time. */
static int visit(struct load *ld, const yaml_node_t *node, const char *path, int line,
                 unsigned char *seen)
{
    const size_t id = (size_t)(node - ld->doc.nodes.start);
    if (seen[id])
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s%saliases (*name) are not "
                         "supported in configs", ld->name, line, path, path[0] ? ": " : "");
    seen[id] = 1;
    return DMLP_OK;
}

/* What the table walk would not notice, anywhere in the tree (under unknown keys too):
 * aliases, keys that are not plain scalars, duplicate keys, and nesting past CONFIG_DEPTH.
 * node is at path, whose key (or entry) is on line. */
static int check_tree(struct load *ld, yaml_node_t *node, const char *path, int line,
                      int depth, unsigned char *seen)
{
    char sub[CONFIG_PATH_MAX];
    yaml_node_t *k, *kj;
    if (depth > CONFIG_DEPTH)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: nested too deeply", ld->name,
                         line, path);
    int rc = DMLP_OK;
    for (size_t i = 0; rc == DMLP_OK && i < n_children(node); i++) {
        yaml_node_t *v = child(&ld->doc, node, i, &k);
        const int at = node_line(k ? k : v); /* of the key, or of the list entry */
        rc = k ? visit(ld, k, path, at, seen) : visit(ld, v, path, line, seen);
        /* A key with an escaped NUL ("momentum\0x") would read as the name before it. */
        if (rc == DMLP_OK && k && (k->type != YAML_SCALAR_NODE ||
                                   strlen((const char *)k->data.scalar.value) !=
                                       k->data.scalar.length))
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s%sa key must be a plain name",
                             ld->name, at, path, path[0] ? ": " : "");
        if (rc == DMLP_OK && child_path(k, i, path, sub) != 0)
            rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: nested too deeply", ld->name,
                           at, path);
        for (size_t j = 0; rc == DMLP_OK && k && j < i; j++) {
            child(&ld->doc, node, j, &kj);
            if (strcmp((const char *)kj->data.scalar.value,
                       (const char *)k->data.scalar.value) == 0)
                rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: duplicate key (first "
                               "given at line %d)", ld->name, at, sub, node_line(kj));
        }
        if (rc == DMLP_OK && k)
            rc = visit(ld, v, path, at, seen);
        if (rc == DMLP_OK)
            rc = check_tree(ld, v, sub, at, depth + 1, seen);
    }
    return rc;
}

/* ---- the table walk ----------------------------------------------------------------- */

static const char *found_text(const yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE)
        return n->data.scalar.length ? "a single value" : "an empty value";
    return n->type == YAML_MAPPING_NODE ? "a mapping" : "a list";
}

/* Fails with "file:line: path: expected <what the table wants there>, found <node>". */
static int expected(struct load *ld, const yaml_node_t *n, const char *path, int line,
                    const struct key *k, const char *prefix)
{
    char want[512];
    if (k)
        want_text(k, 0, want, sizeof want);
    else
        section_text(prefix, want, sizeof want);
    return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: expected %s, found %s", ld->name,
                     line, path, want, found_text(n));
}

/* A list of numbers for key k (a KEY_NUMBERS), stored into base. */
static int walk_numbers(struct load *ld, const yaml_node_t *n, const char *path,
                        const struct key *k, void *base)
{
    const size_t count = n_children(n);
    double *v = malloc((count ? count : 1) * sizeof *v);
    yaml_node_t *key;
    if (!v)
        return dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "%s: out of memory", ld->name);
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *e = child(&ld->doc, n, i, &key);
        const char *text = e->type == YAML_SCALAR_NODE ? (const char *)e->data.scalar.value : "";
        if (e->type != YAML_SCALAR_NODE || dmlp_parse_double(text, &v[i]) != 0) {
            free(v);
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s[%zu]: %s%s%s is not a finite "
                             "number", ld->name, node_line(e), path, i,
                             e->type == YAML_SCALAR_NODE ? "'" : "", e->type == YAML_SCALAR_NODE
                             ? text : found_text(e), e->type == YAML_SCALAR_NODE ? "'" : "");
        }
    }
    numbers_set((struct config_numbers *)((char *)base + k->offset), v, (uint32_t)count, 0);
    return DMLP_OK;
}

/* A list of paths or globs for key k (a KEY_FILES), stored into base. */
static int walk_files(struct load *ld, const yaml_node_t *n, const char *path,
                      const struct key *k, void *base)
{
    const size_t count = n_children(n);
    char **v = calloc(count ? count : 1, sizeof *v);
    yaml_node_t *key;
    if (!v)
        return dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "%s: out of memory", ld->name);
    int rc = DMLP_OK;
    for (size_t i = 0; i < count && rc == DMLP_OK; i++) {
        const yaml_node_t *e = child(&ld->doc, n, i, &key);
        const char *text = e->type == YAML_SCALAR_NODE ? (const char *)e->data.scalar.value : "";
        if (e->type != YAML_SCALAR_NODE)
            rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s[%zu]: expected a path or a "
                           "glob, found %s", ld->name, node_line(e), path, i, found_text(e));
        else if (strlen(text) != e->data.scalar.length)
            rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s[%zu]: the value holds a NUL "
                           "character", ld->name, node_line(e), path, i);
        else if (!utf8_valid(text))
            rc = dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s[%zu]: '%s' is not valid UTF-8",
                           ld->name, node_line(e), path, i, text);
        else if (!(v[i] = strdup(text)))
            rc = dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "%s: out of memory", ld->name);
    }
    if (rc == DMLP_OK)
        files_set((struct config_files *)((char *)base + k->offset), v, (uint32_t)count);
    else
        files_set(&(struct config_files){v, (uint32_t)count}, NULL, 0);
    return rc;
}

/* A scalar value for key k, stored into base. */
static int walk_value(struct load *ld, const yaml_node_t *n, const char *path, int line,
                      const struct key *k, void *base)
{
    if (k->type == KEY_NUMBERS && n->type == YAML_SEQUENCE_NODE)
        return walk_numbers(ld, n, path, k, base);
    if (k->type == KEY_FILES && n->type == YAML_SEQUENCE_NODE)
        return walk_files(ld, n, path, k, base);
    if (n->type != YAML_SCALAR_NODE)
        return expected(ld, n, path, line, k, "");
    const char *text = (const char *)n->data.scalar.value;
    char why[600];
    if (strlen(text) != n->data.scalar.length)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: the value holds a NUL "
                         "character", ld->name, line, path);
    if (parse_scalar(k, text, (char *)base + k->offset, why, sizeof why) != 0)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: %s", ld->name, line, path, why);
    return DMLP_OK;
}

/* Fresh entries for list k in base, replacing its old ones; NULL when out of memory. */
static char *new_entries(const struct key *k, uint32_t count, void *base)
{
    char *entries = calloc(count ? count : 1, k->entry_size), *old;
    if (!entries)
        return NULL;
    memcpy(&old, (char *)base + k->offset, sizeof old);
    free(old);
    memcpy((char *)base + k->offset, &entries, sizeof entries);
    FIELD(uint32_t, base, k->count_offset) = count;
    return entries;
}

/* The names under schema prefix that a key without a default needs must be keys of the
 * mapping n (at path, whose key is on line). */
static int check_required(struct load *ld, const yaml_node_t *n, const char *path, int line,
                          const char *prefix)
{
    char name[CONFIG_PATH_MAX];
    yaml_node_t *key;
    for (size_t i = 0; i < N_KEYS; i++) {
        const size_t len = child_len(&keys[i], prefix);
        /* A name is required when a key directly under it (not in a list) has no default. */
        if (!len || !required(&keys[i]) || strstr(keys[i].path + strlen(prefix), "[]"))
            continue;
        snprintf(name, sizeof name, "%.*s", (int)len, keys[i].path + strlen(prefix));
        if (mapping_get(&ld->doc, n, name, &key) && key->data.scalar.length == len)
            continue;
        if (!path[0])
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: missing required section "
                             "'%s'", ld->name, line, name);
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: missing required key '%s'",
                         ld->name, line, path, name);
    }
    return DMLP_OK;
}

/* Stores node, found at path (whose key or entry is on line), where the table puts it;
 * base is the struct config, or the list entry that path is in. A list's entries and a
 * section's keys are walked alike: each entry gets its defaults first, a section's keys
 * must be in the table, and its required ones present. */
static int walk(struct load *ld, yaml_node_t *node, const char *path, int line, void *base)
{
    char sp[CONFIG_PATH_MAX], prefix[CONFIG_PATH_MAX + 3], sub[CONFIG_PATH_MAX], names[400];
    schema_path(path, sp, sizeof sp);
    const struct key *list = find_key(sp);
    if (list && list->type != KEY_LIST)
        return walk_value(ld, node, path, line, list, base);
    snprintf(prefix, sizeof prefix, "%s%s", sp, list ? "[]." : sp[0] ? "." : "");
    if (node->type != (list ? YAML_SEQUENCE_NODE : YAML_MAPPING_NODE))
        return expected(ld, node, path, line, list, prefix);
    char *entries = list ? new_entries(list, (uint32_t)n_children(node), base) : NULL;
    if (list && !entries)
        return dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "%s: out of memory", ld->name);
    int rc = DMLP_OK;
    for (size_t i = 0; rc == DMLP_OK && i < n_children(node); i++) {
        yaml_node_t *k, *v = child(&ld->doc, node, i, &k);
        void *at = list ? entries + i * list->entry_size : base;
        child_path(k, i, path, sub);
        if (k && !find_child(prefix, (const char *)k->data.scalar.value)) {
            list_children(prefix, names, sizeof names);
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "%s:%d: %s: unknown key (known%s%s: %s)",
                             ld->name, node_line(k), sub, path[0] ? " in " : "", path, names);
        }
        if (list)
            rc = store_defaults(ld, at, prefix);
        if (rc == DMLP_OK)
            rc = walk(ld, v, sub, node_line(v->type == YAML_SCALAR_NODE || !k ? v : k), at);
    }
    return rc == DMLP_OK && !list ? check_required(ld, node, path, line, prefix) : rc;
}

/* Stores the default of every key directly under prefix (not in a list) into base. */
static int store_defaults(struct load *ld, void *base, const char *prefix)
{
    char why[600];
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (!k->def || strncmp(k->path, prefix, strlen(prefix)) != 0 ||
            strstr(k->path + strlen(prefix), "[]"))
            continue;
        if (parse_scalar(k, k->def, (char *)base + k->offset, why, sizeof why) != 0)
            return dmlp_fail(ld->err, DMLP_ERR_RUNTIME, "config: default %s: %s", k->path,
                             why);
    }
    return DMLP_OK;
}

/* ---- checks ------------------------------------------------------------------------- */

/* The table's own checks for k's value in base (named path): range, non-empty. */
static int check_value(struct load *ld, const struct key *k, const char *base,
                       const char *path)
{
    const char *src = base + k->offset;
    char text[64], want[256];
    if (k->type == KEY_LIST)
        return FIELD(uint32_t, base, k->count_offset)
                   ? DMLP_OK : fail_at(ld, path, "the list is empty; give at least one entry");
    if (k->type == KEY_PATH) {
        const char *s = *(char *const *)src;
        return (s && s[0]) || (k->flags & OPTIONAL) ? DMLP_OK : fail_at(ld, path, "empty path");
    }
    if (k->type == KEY_FILES) {
        const struct config_files *f = (const struct config_files *)src;
        char at[CONFIG_PATH_MAX + 16];
        if (f->n == 0 && !(k->flags & OPTIONAL))
            return fail_at(ld, path, "the list is empty; give at least one file");
        for (uint32_t i = 0; i < f->n; i++) {
            if (f->n > 1)
                snprintf(at, sizeof at, "%s[%" PRIu32 "]", path, i);
            if (!f->v[i][0])
                return fail_at(ld, f->n > 1 ? at : path, "empty path");
        }
        return DMLP_OK;
    }
    if (k->type == KEY_NUMBERS) {
        const struct config_numbers *nb = (const struct config_numbers *)src;
        for (uint32_t i = 0; i < nb->n; i++)
            if (nb->v[i] < 0) {
                char at[CONFIG_PATH_MAX + 16];
                snprintf(at, sizeof at, "%s[%" PRIu32 "]", path, i);
                return fail_at(ld, at, "%g is negative; weights are ≥ 0", nb->v[i]);
            }
        return DMLP_OK;
    }
    if (k->type > KEY_DOUBLE)
        return DMLP_OK; /* bools and enums: their parse is their check */
    const double v = k->type == KEY_U32   ? *(const uint32_t *)src
                   : k->type == KEY_U64 ? (double)*(const uint64_t *)src
                                        : *(const double *)src;
    const unsigned f = k->flags;
    if (((f & LO) && (v < 0 || ((f & LO_OPEN) && v == 0))) ||
        ((f & HI) && (v > k->hi || ((f & HI_OPEN) && v == k->hi)))) {
        want_text(k, 0, want, sizeof want);
        return fail_at(ld, path, "%s is not %s", format_value(k, src, text, sizeof text),
                       want);
    }
    return DMLP_OK;
}

static int check_rules(struct load *ld);

/* Every key's own checks, in table order (each entry of a list), then the rules. */
static int check(struct load *ld)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i], *list = list_of(k);
        if (!list) {
            int rc = check_value(ld, k, (const char *)ld->cfg, k->path);
            if (rc)
                return rc;
            continue;
        }
        char path[CONFIG_PATH_MAX];
        uint32_t n;
        char *entries = list_entries(ld->cfg, list, &n);
        const size_t stem = strlen(list->path);
        for (uint32_t e = 0; e < n; e++) {
            snprintf(path, sizeof path, "%s[%" PRIu32 "]%s", list->path, e, k->path + stem + 2);
            int rc = check_value(ld, k, entries + (size_t)e * list->entry_size, path);
            if (rc)
                return rc;
        }
    }
    return check_rules(ld);
}

/* The layers: softmax only last, and only with cross_entropy, which needs it. */
static int check_layers(struct load *ld)
{
    const struct config *c = ld->cfg;
    const uint32_t n = c->model.n_layers;
    char p[CONFIG_PATH_MAX];
    for (uint32_t i = 0; i + 1 < n; i++) {
        if (c->model.layers[i].activation == DMLP_ACT_SOFTMAX) {
            snprintf(p, sizeof p, "model.layers[%" PRIu32 "].activation", i);
            return fail_at(ld, p, "softmax is only allowed on the last layer (this is layer "
                           "%" PRIu32 " of %" PRIu32 ")", i, n);
        }
    }
    const enum dmlp_activation last = c->model.layers[n - 1].activation;
    snprintf(p, sizeof p, "model.layers[%" PRIu32 "].activation", n - 1);
    if (last == DMLP_ACT_SOFTMAX && c->loss != DMLP_LOSS_CROSS_ENTROPY)
        return fail_at(ld, "loss", "%s cannot follow a softmax output layer: softmax "
                       "requires loss cross_entropy", dmlp_loss_name(c->loss));
    if (c->loss == DMLP_LOSS_CROSS_ENTROPY && last != DMLP_ACT_SOFTMAX)
        return fail_at(ld, p, "%s, but loss cross_entropy requires a softmax output layer "
                       "(use activation softmax here, or loss mse)",
                       dmlp_activation_name(last));
    return DMLP_OK;
}

/* The loss and what goes with it: δ for huber, per-output weights for regression, class
 * weights for cross_entropy, each list one number per output. */
static int check_loss(struct load *ld)
{
    const struct config *c = ld->cfg;
    const char *lname = dmlp_loss_name(c->loss);
    const uint32_t out = c->model.layers[c->model.n_layers - 1].units;
    const int classifier = c->loss == DMLP_LOSS_CROSS_ENTROPY;
    if (c->loss != DMLP_LOSS_HUBER && c->loss_delta != 1.0)
        return fail_at(ld, "loss_delta", "applies to loss huber only (loss is %s)", lname);
    if (c->loss_weights.n && classifier)
        return fail_at(ld, "loss_weights", "per-output weights are for regression losses; "
                       "for cross_entropy use data.class_weights");
    if (c->loss_weights.n && c->loss_weights.n != out)
        return fail_at(ld, "loss_weights", "%" PRIu32 " weights for %" PRIu32 " outputs "
                       "(the last layer's units); give one per output", c->loss_weights.n, out);
    const struct config_numbers *cw = &c->data.class_weights;
    if ((cw->n || cw->word) && !classifier)
        return fail_at(ld, "data.class_weights", "needs loss cross_entropy (loss is %s); "
                       "weight regression samples with a /weights dataset", lname);
    if (cw->n && cw->n != out)
        return fail_at(ld, "data.class_weights", "%" PRIu32 " weights for %" PRIu32
                       " classes (the last layer's units); give one per class", cw->n, out);
    if (c->data.normalize_targets && classifier)
        return fail_at(ld, "data.normalize_targets", "true needs a regression loss (mse, mae "
                       "or huber): %s predicts class labels, which have no units to "
                       "standardise", lname);
    char p[CONFIG_PATH_MAX];
    snprintf(p, sizeof p, "model.layers[%" PRIu32 "].dropout", c->model.n_layers - 1);
    if (c->model.layers[c->model.n_layers - 1].dropout > 0)
        return fail_at(ld, p, "dropout goes on hidden layers, not on the output layer");
    return DMLP_OK;
}

/* lbfgs: a deterministic full-batch objective with a fixed rate; what would change the
 * objective between its evaluations or the step after the line search is refused. */
static int check_lbfgs(struct load *ld)
{
    const struct config *c = ld->cfg;
    const struct config_optimizer *o = &c->optimizer;
    if (o->name != DMLP_OPT_LBFGS)
        return DMLP_OK;
    const char *why = "lbfgs searches the step along its direction itself";
    if (o->weight_decay != 0)
        return fail_at(ld, "optimizer.weight_decay", "lbfgs has none (PyTorch's LBFGS "
                       "neither); add the penalty to the loss, or use adamw");
    if (o->clip_norm != 0)
        return fail_at(ld, "optimizer.clip_norm", "not with lbfgs: %s", why);
    if (o->schedule.name != DMLP_SCHEDULE_CONSTANT)
        return fail_at(ld, "optimizer.schedule.name", "not with lbfgs: %s (its lr scales "
                       "the first trial step); use the constant schedule", why);
    if (o->schedule.warmup_epochs != 0)
        return fail_at(ld, "optimizer.schedule.warmup_epochs", "not with lbfgs: %s", why);
    if (o->lr_scaling != DMLP_LR_SCALING_NONE)
        return fail_at(ld, "optimizer.lr_scaling", "not with lbfgs: it takes the whole "
                       "training set every evaluation, whatever training.batch_size");
    if (c->comm.overlap)
        return fail_at(ld, "comm.overlap", "not with lbfgs: its gradient is a full-batch "
                       "sum taken in pieces");
    for (uint32_t i = 0; i < c->model.n_layers; i++)
        if (c->model.layers[i].dropout > 0) {
            char p[CONFIG_PATH_MAX];
            snprintf(p, sizeof p, "model.layers[%" PRIu32 "].dropout", i);
            return fail_at(ld, p, "not with lbfgs: the line search needs one deterministic "
                           "objective");
        }
    return DMLP_OK;
}

/* What no key says alone: the rules between keys. */
static int has_validation(const struct config *c)
{
    return c->data.validation_fraction > 0 || c->data.validation.n > 0;
}

static int check_rules(struct load *ld)
{
    const struct config *c = ld->cfg;
    const struct config_optimizer *o = &c->optimizer;
    const char *oname = dmlp_optimizer_name(o->name);
    int rc = check_layers(ld);
    if (rc)
        return rc;
    if (o->nesterov && o->momentum == 0)
        return fail_at(ld, "optimizer.nesterov", "true requires optimizer.momentum > 0 "
                       "(momentum is 0)");
    if (o->name != DMLP_OPT_SGD && o->momentum != 0)
        return fail_at(ld, "optimizer.momentum", "applies to sgd only; %s uses beta1 "
                       "(remove momentum or use name: sgd)", oname);
    if (o->name != DMLP_OPT_SGD && o->nesterov)
        return fail_at(ld, "optimizer.nesterov", "applies to sgd only, not %s", oname);
    if (o->schedule.warmup_epochs > (double)c->training.epochs)
        return fail_at(ld, "optimizer.schedule.warmup_epochs", "%g is longer than the "
                       "training (%" PRIu32 " epochs)", o->schedule.warmup_epochs,
                       c->training.epochs);
    if (o->schedule.min_lr > o->lr)
        return fail_at(ld, "optimizer.schedule.min_lr", "%g is not in [0, optimizer.lr = "
                       "%g]", o->schedule.min_lr, o->lr);
    if ((rc = check_loss(ld)) != DMLP_OK || (rc = check_lbfgs(ld)) != DMLP_OK)
        return rc;
    if (o->schedule.name == DMLP_SCHEDULE_PLATEAU &&
        o->schedule.metric == DMLP_PLATEAU_VAL_LOSS && !has_validation(c))
        return fail_at(ld, "optimizer.schedule.metric", "val_loss watches the validation "
                       "set: set data.validation_fraction > 0 (or data.validation), or "
                       "metric: train_loss");
    if (c->data.validation_fraction > 0 && c->data.validation.n)
        return fail_at(ld, "data.validation", "give either data.validation or "
                       "data.validation_fraction, not both");
    if (c->data.placement == DMLP_PLACEMENT_STREAMED && c->data.validation_fraction > 0)
        return fail_at(ld, "data.validation_fraction", "is not available with data.placement "
                       "streamed (the held-out rows would have to be picked out of the "
                       "stream); give a held-out file as data.validation instead");
    if (c->data.placement == DMLP_PLACEMENT_STREAMED && o->name == DMLP_OPT_LBFGS)
        return fail_at(ld, "optimizer.name", "lbfgs takes the whole training set in every "
                       "evaluation; with data.placement streamed use sgd, adam or adamw");
    if (c->training.reproducible && c->data.placement == DMLP_PLACEMENT_SHARDED)
        return fail_at(ld, "training.reproducible", "needs data.placement replicated or "
                       "streamed (with sharded data each rank shuffles its own shard, so the "
                       "trajectory depends on the rank count)");
    const struct config_early_stopping *es = &c->training.early_stopping;
    if (es->patience > 0 && !has_validation(c))
        return fail_at(ld, "training.early_stopping.patience", "early stopping watches the "
                       "validation set: set data.validation_fraction > 0 (or "
                       "data.validation)");
    if (es->metric == DMLP_METRIC_VAL_ACCURACY && c->loss != DMLP_LOSS_CROSS_ENTROPY)
        return fail_at(ld, "training.early_stopping.metric", "val_accuracy needs a "
                       "classifier (loss cross_entropy); use val_loss");
    if (c->comm.bucket_kb > 1u << 22)
        return fail_at(ld, "comm.bucket_kb", "%" PRIu32 " KiB is more than 4 GiB per "
                       "allreduce", c->comm.bucket_kb);
    return DMLP_OK;
}

/* ---- --set -------------------------------------------------------------------------- */

/* Follows the key path of the --set arg from the struct config: *k becomes its key (NULL
 * for a section), *base the struct that holds the value, and canon the path written
 * canonically ("model.layers[0].units" for "model.layers[00].units"). */
static int set_target(struct load *ld, const char *arg, const char *path, const struct key **k,
                      char **base, char *canon)
{
    char prefix[CONFIG_PATH_MAX + 1], names[400];
    struct path_step st;
    for (const char *p = path; *p;) {
        if (next_step(&p, &st) != 0)
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: '%s' is not a key path like "
                             "optimizer.lr or model.layers[0].units", arg, path);
        if (*k)
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: %s is a single value and "
                             "has no key '%s'", arg, canon, st.name);
        schema_path(canon, prefix, CONFIG_PATH_MAX);
        strcat(prefix, canon[0] ? "." : "");
        if (!find_child(prefix, st.name)) {
            list_children(prefix, names, sizeof names);
            if (canon[0])
                return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: unknown key '%s' in %s "
                                 "(known: %s)", arg, st.name, canon, names);
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: unknown top-level key '%s' "
                             "(known: %s)", arg, st.name, names);
        }
        sprintf(canon + strlen(canon), "%s%s", canon[0] ? "." : "", st.name);
        *k = find_key(strcat(prefix, st.name));
        const int list = *k && (*k)->type == KEY_LIST;
        uint32_t n = 0;
        char *entries = list ? list_entries(*base, *k, &n) : NULL;
        if (list && st.has_index && st.index >= n)
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: index %" PRIu64 " is out of "
                             "range: %s has %" PRIu32 " entr%s", arg, st.index, canon, n,
                             n == 1 ? "y" : "ies");
        if (list && !st.has_index && *p)
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: %s is a list; name an entry, "
                             "e.g. %s[0]", arg, canon, canon);
        if (*k && ((*k)->type == KEY_NUMBERS || (*k)->type == KEY_FILES) && st.has_index)
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: %s is set whole, e.g. "
                             "--set %s=[%s]", arg, canon, canon,
                             (*k)->type == KEY_FILES ? "a.h5,b.h5" : "1,2");
        if (!list && st.has_index)
            return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: %s is not a list", arg, canon);
        if (list && st.has_index) {
            *base = entries + st.index * (*k)->entry_size;
            sprintf(canon + strlen(canon), "[%" PRIu64 "]", st.index);
            *k = NULL;
        }
    }
    return DMLP_OK;
}

/* Applies one "key.path=value"; records the path it wrote so that check() names the --set
 * rather than a line of the file. */
static int apply_set(struct load *ld, const char *arg)
{
    char why[600], path[CONFIG_PATH_MAX], canon[CONFIG_PATH_MAX] = "", want[512];
    const char *eq = strchr(arg, '=');
    const size_t plen = eq ? (size_t)(eq - arg) : 0;
    const struct key *k = NULL;
    char *base = (char *)ld->cfg;
    if (plen == 0 || plen >= sizeof path)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT,
                         "--set %s: expected key.path=value, e.g. optimizer.lr=0.1", arg);
    snprintf(path, sizeof path, "%.*s", (int)plen, arg);
    int rc = set_target(ld, arg, path, &k, &base, canon);
    if (rc == DMLP_OK && (!k || k->type == KEY_LIST)) {
        schema_path(canon, why, sizeof why);
        strcat(why, canon[0] ? "." : "");
        if (k)
            want_text(k, 0, want, sizeof want);
        else
            section_text(why, want, sizeof want);
        return dmlp_fail(ld->err, DMLP_ERR_INPUT,
                         "--set %s: %s is %s; set one of its values instead", arg, path, want);
    }
    if (rc == DMLP_OK && parse_scalar(k, eq + 1, base + k->offset, why, sizeof why) != 0)
        return dmlp_fail(ld->err, DMLP_ERR_INPUT, "--set %s: %s: %s", arg, path, why);
    if (rc == DMLP_OK)
        snprintf(ld->set_paths[ld->n_set++], CONFIG_PATH_MAX, "%s", canon);
    return rc;
}

/* ---- config_to_yaml ----------------------------------------------------------------- */

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t len)
{
    yaml_event_t ev;
    return yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1,
                                        YAML_ANY_SCALAR_STYLE) &&
           yaml_emitter_emit(em, &ev);
}

/* A KEY_NUMBERS value: its word, or its numbers as a flow list ("[1, 10]"). */
static int emit_numbers(yaml_emitter_t *em, const struct key *k,
                        const struct config_numbers *nb)
{
    yaml_event_t ev;
    const struct key num = {.type = KEY_DOUBLE};
    char buf[64];
    if (nb->word)
        return emit_scalar(em, k->names[nb->word - 1], strlen(k->names[nb->word - 1]));
    int ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  YAML_FLOW_SEQUENCE_STYLE) &&
             yaml_emitter_emit(em, &ev);
    for (uint32_t i = 0; ok && i < nb->n; i++) {
        format_value(&num, &nb->v[i], buf, sizeof buf);
        ok = emit_scalar(em, buf, strlen(buf));
    }
    return ok && yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
}

/* A KEY_FILES value: one entry as a scalar, several as a block list. */
static int emit_files(yaml_emitter_t *em, const struct config_files *f)
{
    yaml_event_t ev;
    if (f->n == 1)
        return emit_scalar(em, f->v[0], strlen(f->v[0]));
    int ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  YAML_BLOCK_SEQUENCE_STYLE) &&
             yaml_emitter_emit(em, &ev);
    for (uint32_t i = 0; ok && i < f->n; i++)
        ok = emit_scalar(em, f->v[i], strlen(f->v[i]));
    return ok && yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
}

/* The entries of list k in base, each a mapping. */
static int emit_list(yaml_emitter_t *em, const void *base, const struct key *k)
{
    yaml_event_t ev;
    char prefix[CONFIG_PATH_MAX];
    uint32_t n;
    char *entries = list_entries(base, k, &n);
    snprintf(prefix, sizeof prefix, "%s[].", k->path);
    int ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  YAML_BLOCK_SEQUENCE_STYLE) &&
             yaml_emitter_emit(em, &ev);
    for (uint32_t i = 0; ok && i < n; i++)
        ok = emit_mapping(em, entries + (size_t)i * k->entry_size, prefix);
    return ok && yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
}

/* The keys under schema prefix, from base, as a block mapping in table order; a path that
 * is none (NULL) is left out. Returns 1, or 0 when the emitter fails. */
static int emit_mapping(yaml_emitter_t *em, const void *base, const char *prefix)
{
    yaml_event_t ev;
    char buf[64], sub[CONFIG_PATH_MAX];
    const struct key *k;
    size_t i = 0, n;
    int ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) &&
             yaml_emitter_emit(em, &ev);
    while (ok && (k = next_child(prefix, &i, &n))) {
        /* The rows of one name: a value, a list (and its entries' keys), or a section. */
        const char *name = k->path + strlen(prefix), *value = NULL;
        if (k->type == KEY_NUMBERS && !name[n]) {
            const struct config_numbers *nb =
                (const struct config_numbers *)((const char *)base + k->offset);
            if (nb->n || nb->word)
                ok = emit_scalar(em, name, n) && emit_numbers(em, k, nb);
            continue;
        }
        if (k->type == KEY_FILES && !name[n]) {
            const struct config_files *f =
                (const struct config_files *)((const char *)base + k->offset);
            if (f->n)
                ok = emit_scalar(em, name, n) && emit_files(em, f);
            continue;
        }
        if (!name[n] && k->type != KEY_LIST) {
            value = format_value(k, (const char *)base + k->offset, buf, sizeof buf);
            if (!value && k->type != KEY_PATH)
                return 0;
            if (!value)
                continue;
        }
        snprintf(sub, sizeof sub, "%.*s.", (int)(name + n - k->path), k->path);
        ok = emit_scalar(em, name, n) &&
             (value ? emit_scalar(em, value, strlen(value))
                    : name[n] ? emit_mapping(em, base, sub) : emit_list(em, base, k));
    }
    return ok && yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
}
