/* config: YAML -> struct config through one libcyaml schema (DESIGN §6).
 *
 * A load runs in five steps, each reporting "file:line: key.path: problem":
 *   1. index: libyaml's event parser walks the text once and records every key path
 *      ("model.layers[1].units") with its line and, for scalars, its text. It also reports
 *      syntax errors, duplicate keys and aliases.
 *   2. libcyaml loads the text into a struct config. Its complaints (unknown key, wrong
 *      kind of node, missing key, bad enum) arrive through our log_fn as a message plus a
 *      backtrace of mapping fields; we rebuild the key path from the backtrace, take the
 *      line from the index and phrase the message ourselves.
 *   3. Every scalar of the file is parsed again by our own strict parser and written over
 *      libcyaml's value: libcyaml 1.3 reads numbers with strtoll(base 0)/strtod without
 *      checking for trailing text ("1.5" loads as 1, "010" as 8) and takes any string
 *      other than false/no/off/0 as true.
 *   4. Defaults: libcyaml leaves absent optional keys zero, so each documented default is
 *      applied as a "path=value" text through the same setter as --set when the index
 *      shows that the key was absent.
 *   5. Range and cross-field checks, then each --set, then the checks again.
 *
 * The only place that knows the shape of struct config is the schema below; --set, the
 * defaults and the error translation all walk it generically. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* A config is a few hundred bytes; anything this big is the wrong file (a dataset?). */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)
#define CONFIG_PATH_MAX 256

/* ---- schema ------------------------------------------------------------------------- */

static const cyaml_strval_t activation_strings[] = {
    {"sigmoid", DMLP_ACT_SIGMOID}, {"tanh", DMLP_ACT_TANH},
    {"relu", DMLP_ACT_RELU},       {"leaky_relu", DMLP_ACT_LEAKY_RELU},
    {"linear", DMLP_ACT_LINEAR},   {"softmax", DMLP_ACT_SOFTMAX},
};
static const cyaml_strval_t init_strings[] = {
    {"he", DMLP_INIT_HE}, {"xavier", DMLP_INIT_XAVIER},
};
static const cyaml_strval_t loss_strings[] = {
    {"cross_entropy", DMLP_LOSS_CROSS_ENTROPY}, {"mse", DMLP_LOSS_MSE},
};
static const cyaml_strval_t optimizer_strings[] = {
    {"sgd", DMLP_OPT_SGD},
    {"adam", DMLP_OPT_ADAM},
    {"adamw", DMLP_OPT_ADAMW},
};
static const cyaml_strval_t placement_strings[] = {
    {"replicated", DMLP_PLACEMENT_REPLICATED},
    {"sharded", DMLP_PLACEMENT_SHARDED},
};
static const cyaml_strval_t schedule_strings[] = {
    {"constant", DMLP_SCHEDULE_CONSTANT},
    {"step", DMLP_SCHEDULE_STEP},
    {"cosine", DMLP_SCHEDULE_COSINE},
};
static const cyaml_strval_t lr_scaling_strings[] = {
    {"none", DMLP_LR_SCALING_NONE},
    {"linear", DMLP_LR_SCALING_LINEAR},
};
static const cyaml_strval_t normalize_strings[] = {
    {"none", DMLP_NORMALIZE_NONE},
    {"standard", DMLP_NORMALIZE_STANDARD},
};
static const cyaml_strval_t metric_strings[] = {
    {"val_loss", DMLP_METRIC_VAL_LOSS},
    {"val_accuracy", DMLP_METRIC_VAL_ACCURACY},
};

#define ENUM_FIELD(key, flags, type, member, strings)                                   \
    CYAML_FIELD_ENUM(key, (flags) | CYAML_FLAG_STRICT, type, member, strings,          \
                     CYAML_ARRAY_LEN(strings))
#define OPT CYAML_FLAG_OPTIONAL

static const cyaml_schema_field_t layer_fields[] = {
    CYAML_FIELD_UINT("units", CYAML_FLAG_DEFAULT, struct config_layer, units),
    ENUM_FIELD("activation", CYAML_FLAG_DEFAULT, struct config_layer, activation,
               activation_strings),
    CYAML_FIELD_END};
static const cyaml_schema_value_t layer_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct config_layer, layer_fields)};

/* min 0 entries: an empty list gets our own message in validate() rather than libcyaml's. */
static const cyaml_schema_field_t model_fields[] = {
    CYAML_FIELD_SEQUENCE_COUNT("layers", CYAML_FLAG_POINTER, struct config_model, layers,
                               n_layers, &layer_schema, 0, CYAML_UNLIMITED),
    ENUM_FIELD("init", OPT, struct config_model, init, init_strings),
    CYAML_FIELD_END};

static const cyaml_schema_field_t schedule_fields[] = {
    ENUM_FIELD("name", OPT, struct config_schedule, name, schedule_strings),
    CYAML_FIELD_FLOAT("warmup_epochs", OPT, struct config_schedule, warmup_epochs),
    CYAML_FIELD_UINT("step_epochs", OPT, struct config_schedule, step_epochs),
    CYAML_FIELD_FLOAT("gamma", OPT, struct config_schedule, gamma),
    CYAML_FIELD_FLOAT("min_lr", OPT, struct config_schedule, min_lr),
    CYAML_FIELD_END};

static const cyaml_schema_field_t optimizer_fields[] = {
    ENUM_FIELD("name", OPT, struct config_optimizer, name, optimizer_strings),
    CYAML_FIELD_FLOAT("lr", CYAML_FLAG_DEFAULT, struct config_optimizer, lr),
    CYAML_FIELD_FLOAT("momentum", OPT, struct config_optimizer, momentum),
    CYAML_FIELD_BOOL("nesterov", OPT, struct config_optimizer, nesterov),
    CYAML_FIELD_FLOAT("weight_decay", OPT, struct config_optimizer, weight_decay),
    CYAML_FIELD_FLOAT("beta1", OPT, struct config_optimizer, beta1),
    CYAML_FIELD_FLOAT("beta2", OPT, struct config_optimizer, beta2),
    CYAML_FIELD_FLOAT("eps", OPT, struct config_optimizer, eps),
    CYAML_FIELD_FLOAT("clip_norm", OPT, struct config_optimizer, clip_norm),
    ENUM_FIELD("lr_scaling", OPT, struct config_optimizer, lr_scaling, lr_scaling_strings),
    CYAML_FIELD_UINT("base_batch_size", OPT, struct config_optimizer, base_batch_size),
    CYAML_FIELD_MAPPING("schedule", OPT, struct config_optimizer, schedule, schedule_fields),
    CYAML_FIELD_END};

/* data.test accepts ~/null/empty as "no test set"; train and checkpoint.dir take any
 * string and an empty one is refused in validate(). */
static const cyaml_schema_field_t data_fields[] = {
    CYAML_FIELD_STRING_PTR("train", CYAML_FLAG_DEFAULT, struct config_data, train, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("test", OPT | CYAML_FLAG_POINTER_NULL_STR, struct config_data,
                           test, 0, CYAML_UNLIMITED),
    CYAML_FIELD_FLOAT("validation_fraction", OPT, struct config_data, validation_fraction),
    CYAML_FIELD_BOOL("shuffle", OPT, struct config_data, shuffle),
    CYAML_FIELD_BOOL("drop_last", OPT, struct config_data, drop_last),
    ENUM_FIELD("placement", OPT, struct config_data, placement, placement_strings),
    ENUM_FIELD("normalize", OPT, struct config_data, normalize, normalize_strings),
    CYAML_FIELD_END};

static const cyaml_schema_field_t early_stopping_fields[] = {
    CYAML_FIELD_UINT("patience", OPT, struct config_early_stopping, patience),
    ENUM_FIELD("metric", OPT, struct config_early_stopping, metric, metric_strings),
    CYAML_FIELD_FLOAT("min_delta", OPT, struct config_early_stopping, min_delta),
    CYAML_FIELD_END};

static const cyaml_schema_field_t training_fields[] = {
    CYAML_FIELD_UINT("epochs", OPT, struct config_training, epochs),
    CYAML_FIELD_UINT("batch_size", OPT, struct config_training, batch_size),
    CYAML_FIELD_UINT("seed", OPT, struct config_training, seed),
    CYAML_FIELD_UINT("max_steps", OPT, struct config_training, max_steps),
    CYAML_FIELD_BOOL("reproducible", OPT, struct config_training, reproducible),
    CYAML_FIELD_MAPPING("early_stopping", OPT, struct config_training, early_stopping,
                        early_stopping_fields),
    CYAML_FIELD_END};

static const cyaml_schema_field_t checkpoint_fields[] = {
    CYAML_FIELD_STRING_PTR("dir", OPT, struct config_checkpoint, dir, 0, CYAML_UNLIMITED),
    CYAML_FIELD_UINT("every_epochs", OPT, struct config_checkpoint, every_epochs),
    CYAML_FIELD_UINT("keep_last", OPT, struct config_checkpoint, keep_last),
    CYAML_FIELD_END};

static const cyaml_schema_field_t comm_fields[] = {
    CYAML_FIELD_BOOL("shared_memory", OPT, struct config_comm, shared_memory),
    CYAML_FIELD_BOOL("overlap", OPT, struct config_comm, overlap),
    CYAML_FIELD_UINT("bucket_kb", OPT, struct config_comm, bucket_kb),
    CYAML_FIELD_END};

static const cyaml_schema_field_t config_fields[] = {
    CYAML_FIELD_MAPPING("model", CYAML_FLAG_DEFAULT, struct config, model, model_fields),
    ENUM_FIELD("loss", OPT, struct config, loss, loss_strings),
    CYAML_FIELD_MAPPING("optimizer", CYAML_FLAG_DEFAULT, struct config, optimizer,
                        optimizer_fields),
    CYAML_FIELD_MAPPING("data", CYAML_FLAG_DEFAULT, struct config, data, data_fields),
    CYAML_FIELD_MAPPING("training", OPT, struct config, training, training_fields),
    CYAML_FIELD_MAPPING("checkpoint", OPT, struct config, checkpoint, checkpoint_fields),
    CYAML_FIELD_MAPPING("comm", OPT, struct config, comm, comm_fields),
    CYAML_FIELD_END};

static const cyaml_schema_value_t config_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct config, config_fields)};

/* The defaults of config.h that are not zero, applied when the key is absent. */
static const struct {
    const char *path, *value;
} config_defaults[] = {
    {"optimizer.beta1", "0.9"},
    {"optimizer.beta2", "0.999"},
    {"optimizer.eps", "1e-8"},
    {"optimizer.base_batch_size", "128"},
    {"optimizer.schedule.step_epochs", "10"},
    {"optimizer.schedule.gamma", "0.1"},
    {"data.shuffle", "true"},
    {"training.epochs", "10"},
    {"training.batch_size", "128"},
    {"training.seed", "42"},
    {"checkpoint.dir", "runs/default"},
    {"checkpoint.every_epochs", "1"},
    {"checkpoint.keep_last", "3"},
    {"comm.shared_memory", "true"},
    {"comm.bucket_kb", "256"},
};

/* Fields whose range check is ">= 1": their type errors say "positive integer" too, so
 * "units: -8" and "units: 0" read alike. Indices are written as "[]". */
static const char *const positive_fields[] = {
    "model.layers[].units", "training.epochs", "training.batch_size",
    "optimizer.base_batch_size", "optimizer.schedule.step_epochs", "comm.bucket_kb"};

/* ---- the key index ------------------------------------------------------------------ */

enum node_kind { NODE_SCALAR, NODE_MAPPING, NODE_SEQUENCE };

struct index_entry {
    char *path;      /* "model.layers[1].units"; "" is the document's root mapping */
    int key_line;    /* 1-based line of the key (of the entry itself inside a list) */
    int value_line;  /* 1-based line where the value starts */
    enum node_kind kind;
    char *text;      /* scalars: the text as written */
    size_t start, end; /* scalars: byte offsets of the text in the document */
    char *set_arg;   /* non-NULL when the value now comes from this --set argument */
};

struct index {
    struct index_entry *e;
    size_t n, cap;
};

/* Everything a load needs to phrase a message. */
struct load_ctx {
    const char *name;
    struct index idx;
    struct config *cfg;
    struct dmlp_error *err;
};

/* libcyaml's log lines for one call, gathered by log_capture through log_ctx. */
struct log_buf {
    char text[4096];
    size_t len;
};

static const cyaml_config_t *cyaml_cfg_for(cyaml_config_t *c, struct log_buf *log);
static void log_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args);
static int index_build(struct load_ctx *lc, const char *yaml, size_t len);
static void index_free(struct index *idx);
static struct index_entry *index_find(const struct index *idx, const char *path);
static int translate_cyaml_error(struct load_ctx *lc, cyaml_err_t e, const struct log_buf *log);
static int reparse_scalars(struct load_ctx *lc);
static char *pretty_floats(const struct config *cfg, const char *text, size_t len);
static int apply_defaults(struct load_ctx *lc);
static int validate(struct load_ctx *lc);
static int apply_set(struct load_ctx *lc, const char *arg);

/* ---- public functions --------------------------------------------------------------- */

const char *config_activation_name(enum dmlp_activation a)
{
    for (size_t i = 0; i < CYAML_ARRAY_LEN(activation_strings); i++)
        if (activation_strings[i].val == (int64_t)a)
            return activation_strings[i].str;
    return "unknown";
}

const char *config_optimizer_name(enum dmlp_optimizer o)
{
    for (size_t i = 0; i < CYAML_ARRAY_LEN(optimizer_strings); i++)
        if (optimizer_strings[i].val == (int64_t)o)
            return optimizer_strings[i].str;
    return "unknown";
}

const char *config_loss_name(enum dmlp_loss l)
{
    for (size_t i = 0; i < CYAML_ARRAY_LEN(loss_strings); i++)
        if (loss_strings[i].val == (int64_t)l)
            return loss_strings[i].str;
    return "unknown";
}

int config_activation_parse(const char *name, enum dmlp_activation *out)
{
    for (size_t i = 0; name && i < CYAML_ARRAY_LEN(activation_strings); i++) {
        if (strcmp(name, activation_strings[i].str) == 0) {
            *out = (enum dmlp_activation)activation_strings[i].val;
            return 0;
        }
    }
    return -1;
}

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
    struct load_ctx lc = {.name = name ? name : "<string>", .err = err};
    if (len > CONFIG_MAX_BYTES)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: larger than 1 MiB; a config is a short YAML file", lc.name);

    int rc = index_build(&lc, yaml, len);
    if (rc == DMLP_OK) {
        struct log_buf log = {.len = 0};
        cyaml_config_t ccfg;
        void *data = NULL;
        cyaml_err_t e = cyaml_load_data((const uint8_t *)yaml, len, cyaml_cfg_for(&ccfg, &log),
                                        &config_schema, &data, NULL);
        lc.cfg = data;
        if (e != CYAML_OK)
            rc = translate_cyaml_error(&lc, e, &log);
        else if (!lc.cfg) /* index_build already refused an empty document */
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: the document is empty", lc.name);
    }
    if (rc == DMLP_OK)
        rc = reparse_scalars(&lc);
    if (rc == DMLP_OK)
        rc = apply_defaults(&lc);
    if (rc == DMLP_OK)
        rc = validate(&lc);
    for (size_t i = 0; rc == DMLP_OK && i < n_sets; i++)
        rc = apply_set(&lc, sets[i]);
    if (rc == DMLP_OK && n_sets > 0)
        rc = validate(&lc);

    index_free(&lc.idx);
    if (rc != DMLP_OK) {
        config_free(&lc.cfg);
        return rc;
    }
    *out = lc.cfg;
    if (err)
        dmlp_error_clear(err);
    return DMLP_OK;
}

int config_to_yaml(const struct config *cfg, char **out, struct dmlp_error *err)
{
    *out = NULL;
    struct log_buf log = {.len = 0};
    cyaml_config_t ccfg;
    cyaml_cfg_for(&ccfg, &log);
    ccfg.flags = CYAML_CFG_STYLE_BLOCK;
    char *text = NULL;
    size_t len = 0;
    cyaml_err_t e = cyaml_save_data(&text, &len, &ccfg, &config_schema, cfg, 0);
    if (e != CYAML_OK) {
        /* Only a config that skipped validation (an enum out of range, no layers) fails. */
        char *nl = memchr(log.text, '\n', log.len);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "config: cannot serialize to YAML: %s (%.*s)",
                         cyaml_strerror(e), nl ? (int)(nl - log.text) : (int)log.len,
                         log.text);
    }
    char *s = pretty_floats(cfg, text, len);
    ccfg.mem_fn(ccfg.mem_ctx, text, 0);
    if (!s)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "config: out of memory");
    *out = s;
    return DMLP_OK;
}

void config_free(struct config **cfg)
{
    if (!cfg || !*cfg)
        return;
    cyaml_config_t ccfg;
    cyaml_free(cyaml_cfg_for(&ccfg, NULL), &config_schema, *cfg, 0);
    *cfg = NULL;
}

/* ---- libcyaml plumbing -------------------------------------------------------------- */

/* cyaml_mem is realloc/free, so strings that --set and the defaults allocate with
 * cyaml_mem are freed correctly by cyaml_free. Only errors are logged: they carry the
 * message and the backtrace we need, nothing else does. */
static const cyaml_config_t *cyaml_cfg_for(cyaml_config_t *c, struct log_buf *log)
{
    *c = (cyaml_config_t){
        .log_fn = log ? log_capture : NULL,
        .log_ctx = log,
        .mem_fn = cyaml_mem,
        .mem_ctx = NULL,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_DEFAULT,
    };
    return c;
}

static void log_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct log_buf *log = ctx;
    if (level < CYAML_LOG_ERROR || log->len + 1 >= sizeof log->text)
        return;
    int n = vsnprintf(log->text + log->len, sizeof log->text - log->len, fmt, args);
    if (n > 0)
        log->len += (size_t)n < sizeof log->text - log->len ? (size_t)n
                                                            : sizeof log->text - 1 - log->len;
}

/* ---- schema walking ----------------------------------------------------------------- */

/* One step of a key path: "layers[2]" is name "layers" with index 2. */
struct path_step {
    char name[64];
    int has_index;
    uint64_t index;
};

/* Where a path leads: the value's schema, its storage when data was given, and the path
 * written canonically ("model.layers[0].units" for "model.layers[00].units"). */
struct resolved {
    const cyaml_schema_value_t *schema;
    uint8_t *data;
    char path[CONFIG_PATH_MAX];
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

static void list_keys(char *out, size_t cap, const cyaml_schema_field_t *fields)
{
    size_t used = 0;
    out[0] = '\0';
    for (const cyaml_schema_field_t *f = fields; f->key && used < cap; f++) {
        int n = snprintf(out + used, cap - used, "%s%s", f == fields ? "" : ", ", f->key);
        if (n > 0)
            used += (size_t)n;
    }
}

static void list_enum(char *out, size_t cap, const cyaml_schema_value_t *s)
{
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < s->enumeration.count && used < cap; i++) {
        int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "",
                         s->enumeration.strings[i].str);
        if (n > 0)
            used += (size_t)n;
    }
}

static uint64_t read_uint(const uint8_t *p, size_t size)
{
    switch (size) {
    case 1: return *p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

/* Stores v in an integer of size bytes: the low bytes of its two's complement, which is
 * how libcyaml stores its INT, UINT, BOOL and ENUM values too. */
static void write_int(uint8_t *dst, size_t size, uint64_t v)
{
    switch (size) {
    case 1: { uint8_t x = (uint8_t)v; memcpy(dst, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(dst, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(dst, &x, 4); break; }
    default: memcpy(dst, &v, 8); break;
    }
}

/* Walks path through the schema from the config root. With cfg NULL only the schema is
 * followed (indices are not checked). On failure writes why into msg and returns -1. */
static int resolve(const char *path, struct config *cfg, struct resolved *out, char *msg,
                   size_t cap)
{
    const cyaml_schema_value_t *s = &config_schema;
    uint8_t *data = (uint8_t *)cfg;
    char *done = out->path; /* the part of path walked so far, for messages */
    char keys[256];
    const char *p = path;
    done[0] = '\0';
    while (*p) {
        struct path_step st;
        if (next_step(&p, &st) != 0) {
            snprintf(msg, cap, "'%s' is not a key path like optimizer.lr or "
                               "model.layers[0].units", path);
            return -1;
        }
        if (s->type != CYAML_MAPPING) {
            snprintf(msg, cap, "%s is a single value and has no key '%s'", done, st.name);
            return -1;
        }
        const cyaml_schema_field_t *f = s->mapping.fields;
        while (f->key && strcmp(f->key, st.name) != 0)
            f++;
        if (!f->key) {
            list_keys(keys, sizeof keys, s->mapping.fields);
            if (done[0])
                snprintf(msg, cap, "unknown key '%s' in %s (known: %s)", st.name, done, keys);
            else
                snprintf(msg, cap, "unknown top-level key '%s' (known: %s)", st.name, keys);
            return -1;
        }
        size_t dl = strlen(done);
        snprintf(done + dl, CONFIG_PATH_MAX - dl, "%s%s", dl ? "." : "", f->key);
        uint8_t *fd = data ? data + f->data_offset : NULL;
        s = &f->value;
        if (s->type == CYAML_SEQUENCE && !st.has_index && !*p) {
            /* the list itself: its schema, for messages about it */
        } else if (s->type == CYAML_SEQUENCE) {
            if (!st.has_index) {
                snprintf(msg, cap, "%s is a list; name an entry, e.g. %s[0]", done, done);
                return -1;
            }
            if (data) {
                uint64_t count = read_uint(data + f->count_offset, f->count_size);
                if (st.index >= count) {
                    snprintf(msg, cap, "index %" PRIu64 " is out of range: %s has %" PRIu64
                             " entr%s", st.index, done, count, count == 1 ? "y" : "ies");
                    return -1;
                }
                uint8_t *array;
                memcpy(&array, fd, sizeof array);
                fd = array + st.index * s->sequence.entry->data_size;
            }
            dl = strlen(done);
            snprintf(done + dl, CONFIG_PATH_MAX - dl, "[%" PRIu64 "]", st.index);
            s = s->sequence.entry;
        } else if (st.has_index) {
            snprintf(msg, cap, "%s is not a list", done);
            return -1;
        } else if (s->type == CYAML_MAPPING && (s->flags & CYAML_FLAG_POINTER) && fd) {
            uint8_t *target; /* the field holds a pointer to the mapping */
            memcpy(&target, fd, sizeof target);
            fd = target;
        }
        data = fd;
    }
    out->schema = s;
    out->data = data;
    return 0;
}

/* "model.layers[3].units" -> "model.layers[].units", for the positive_fields table. */
static int wants_positive(const char *path)
{
    char norm[CONFIG_PATH_MAX];
    size_t j = 0;
    for (const char *c = path; *c && j + 1 < sizeof norm; c++) {
        norm[j++] = *c;
        if (*c == '[') {
            while (c[1] >= '0' && c[1] <= '9')
                c++;
        }
    }
    norm[j] = '\0';
    for (size_t i = 0; i < CYAML_ARRAY_LEN(positive_fields); i++)
        if (strcmp(norm, positive_fields[i]) == 0)
            return 1;
    return 0;
}

/* What a value of schema s looks like, for "expected ..." messages. */
static void describe(char *out, size_t cap, const cyaml_schema_value_t *s, const char *path)
{
    char list[256];
    switch (s->type) {
    case CYAML_MAPPING:
        list_keys(list, sizeof list, s->mapping.fields);
        snprintf(out, cap, "a mapping (keys: %s)", list);
        break;
    case CYAML_SEQUENCE: snprintf(out, cap, "a list"); break;
    case CYAML_UINT:
        snprintf(out, cap, wants_positive(path) ? "a positive integer"
                                                : "a non-negative integer");
        break;
    case CYAML_INT: snprintf(out, cap, "an integer"); break;
    case CYAML_FLOAT: snprintf(out, cap, "a finite number"); break;
    case CYAML_BOOL: snprintf(out, cap, "true or false"); break;
    case CYAML_ENUM:
        list_enum(list, sizeof list, s);
        snprintf(out, cap, "one of %s", list);
        break;
    case CYAML_STRING: snprintf(out, cap, "a string"); break;
    default: snprintf(out, cap, "a value"); break;
    }
}

/* Parses text as a value of schema s (a scalar) and, when dst is not NULL, stores it
 * there, allocating strings with cyaml_mem. Returns 0, or -1 with the problem in msg
 * ("-8 is not a positive integer"). The one parser for file scalars, --set and defaults. */
static int parse_scalar(const cyaml_schema_value_t *s, const char *path, const char *text,
                        uint8_t *dst, char *msg, size_t cap)
{
    char want[300];
    const char *shown = text[0] ? text : "''";
    switch (s->type) {
    case CYAML_UINT: {
        uint64_t v;
        uint64_t max = s->data_size >= 8 ? UINT64_MAX : (UINT64_C(1) << (8 * s->data_size)) - 1;
        /* libcyaml reads integers through strtoll, so a 64-bit value above INT64_MAX
         * would be written by config_to_yaml and then refused on the way back in. */
        if (max > INT64_MAX)
            max = INT64_MAX;
        if (dmlp_parse_u64(text, &v) != 0) {
            describe(want, sizeof want, s, path);
            snprintf(msg, cap, "%s is not %s", shown, want);
            return -1;
        }
        if (v > max) {
            snprintf(msg, cap, "%s is too large (at most %" PRIu64 ")", text, max);
            return -1;
        }
        if (dst)
            write_int(dst, s->data_size, v);
        return 0;
    }
    case CYAML_INT: {
        int64_t v;
        int64_t max = s->data_size >= 8 ? INT64_MAX : (INT64_C(1) << (8 * s->data_size - 1)) - 1;
        if (dmlp_parse_i64(text, &v) != 0) {
            snprintf(msg, cap, "%s is not an integer", shown);
            return -1;
        }
        if (v > max || v < -max - 1) {
            snprintf(msg, cap, "%s is out of range [%" PRId64 ", %" PRId64 "]", text,
                     -max - 1, max);
            return -1;
        }
        if (dst)
            write_int(dst, s->data_size, (uint64_t)v);
        return 0;
    }
    case CYAML_FLOAT: {
        double v;
        if (dmlp_parse_double(text, &v) != 0) {
            snprintf(msg, cap, "%s is not a finite number", shown);
            return -1;
        }
        if (dst) {
            if (s->data_size == sizeof(float)) {
                float x = (float)v;
                memcpy(dst, &x, sizeof x);
            } else {
                memcpy(dst, &v, sizeof v);
            }
        }
        return 0;
    }
    case CYAML_BOOL: {
        /* YAML 1.1 spellings too: libyaml users write yes/no. */
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[] = {"false", "no", "off"};
        int v = -1;
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(text, yes[i]) == 0)
                v = 1;
            if (strcasecmp(text, no[i]) == 0)
                v = 0;
        }
        if (v < 0) {
            snprintf(msg, cap, "%s is not true or false", shown);
            return -1;
        }
        if (dst)
            write_int(dst, s->data_size, (uint64_t)v);
        return 0;
    }
    case CYAML_ENUM:
        for (uint32_t i = 0; i < s->enumeration.count; i++) {
            if (strcmp(text, s->enumeration.strings[i].str) == 0) {
                if (dst)
                    write_int(dst, s->data_size, (uint64_t)s->enumeration.strings[i].val);
                return 0;
            }
        }
        describe(want, sizeof want, s, path);
        snprintf(msg, cap, "%s is not %s", shown, want);
        return -1;
    case CYAML_STRING: {
        if (!(s->flags & CYAML_FLAG_POINTER)) {
            snprintf(msg, cap, "fixed-size strings are not in this schema");
            return -1;
        }
        char *v = NULL;
        /* An empty value clears an optional string (data.test=) and is refused for
         * required ones by validate(), which knows what the string is for. */
        if (!(text[0] == '\0' && (s->flags & CYAML_FLAG_POINTER_NULL))) {
            size_t n = strlen(text);
            v = cyaml_mem(NULL, NULL, n + 1);
            if (!v) {
                snprintf(msg, cap, "out of memory");
                return -1;
            }
            memcpy(v, text, n + 1);
        }
        if (dst) {
            char *old;
            memcpy(&old, dst, sizeof old);
            cyaml_mem(NULL, old, 0);
            memcpy(dst, &v, sizeof v);
        } else {
            cyaml_mem(NULL, v, 0);
        }
        return 0;
    }
    default:
        describe(want, sizeof want, s, path);
        snprintf(msg, cap, "%s takes %s, not a single value", path, want);
        return -1;
    }
}

/* libcyaml 1.3.1 writes doubles with 17 digits ("5.0000000000000003e-02"); exact, but the
 * config attribute of a checkpoint is read by people. Rewrites each float scalar of the
 * saved text as the shortest "%.*g" that reads back to the same double, so the round trip
 * stays exact. Returns a malloc'd NUL-ended string, or NULL when out of memory. */
static char *pretty_floats(const struct config *cfg, const char *text, size_t len)
{
    struct load_ctx lc = {.name = "config_to_yaml"};
    size_t cap = len + 1;
    if (index_build(&lc, text, len) == DMLP_OK)
        cap += 32 * lc.idx.n; /* room should a short form ever be the longer one */
    char *out = malloc(cap);
    if (!out) {
        index_free(&lc.idx);
        return NULL;
    }
    size_t used = 0, from = 0;
    for (size_t i = 0; i < lc.idx.n; i++) {
        const struct index_entry *e = &lc.idx.e[i];
        struct resolved r;
        char why[256], num[40];
        double v;
        /* resolve() only reads through cfg here; it hands out a writable pointer for --set */
        if (e->kind != NODE_SCALAR || e->start < from || e->end > len ||
            resolve(e->path, (struct config *)cfg, &r, why, sizeof why) != 0 ||
            r.schema->type != CYAML_FLOAT || r.schema->data_size != sizeof(double))
            continue;
        memcpy(&v, r.data, sizeof v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, v);
            if (strtod(num, NULL) == v)
                break;
        }
        memcpy(out + used, text + from, e->start - from);
        used += e->start - from;
        size_t n = strlen(num);
        memcpy(out + used, num, n);
        used += n;
        from = e->end;
    }
    memcpy(out + used, text + from, len - from);
    used += len - from;
    out[used] = '\0';
    index_free(&lc.idx);
    return out;
}

/* ---- messages ----------------------------------------------------------------------- */

static int entry_line(const struct index_entry *e)
{
    return e->kind == NODE_SCALAR ? e->value_line : e->key_line;
}

/* "file:line", "--set a=b" or "file" for a key that is absent (a default). */
static void location(char *out, size_t cap, const struct load_ctx *lc, const char *path)
{
    const struct index_entry *e = index_find(&lc->idx, path);
    if (e && e->set_arg)
        snprintf(out, cap, "--set %s", e->set_arg);
    else if (e)
        snprintf(out, cap, "%s:%d", lc->name, entry_line(e));
    else
        snprintf(out, cap, "%s", lc->name);
}

/* Fails with "<location of path>: <path>: <message>". */
static int fail_at(const struct load_ctx *lc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(const struct load_ctx *lc, const char *path, const char *fmt, ...)
{
    char loc[CONFIG_PATH_MAX + 64], msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    location(loc, sizeof loc, lc, path);
    return dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s: %s%s%s", loc, path, path[0] ? ": " : "",
                     msg);
}

/* ---- step 1: the index -------------------------------------------------------------- */

static void index_free(struct index *idx)
{
    for (size_t i = 0; i < idx->n; i++) {
        free(idx->e[i].path);
        free(idx->e[i].text);
        free(idx->e[i].set_arg);
    }
    free(idx->e);
    *idx = (struct index){0};
}

static struct index_entry *index_find(const struct index *idx, const char *path)
{
    for (size_t i = 0; i < idx->n; i++)
        if (strcmp(idx->e[i].path, path) == 0)
            return &idx->e[i];
    return NULL;
}

static struct index_entry *index_add(struct index *idx, const char *path)
{
    if (idx->n == idx->cap) {
        size_t cap = idx->cap ? 2 * idx->cap : 32;
        struct index_entry *e = realloc(idx->e, cap * sizeof *e);
        if (!e)
            return NULL;
        idx->e = e;
        idx->cap = cap;
    }
    struct index_entry *e = &idx->e[idx->n];
    *e = (struct index_entry){.path = strdup(path)};
    if (!e->path)
        return NULL;
    idx->n++;
    return e;
}

/* One open mapping or sequence while walking the events. */
struct frame {
    enum node_kind kind;
    size_t path_len;  /* the length of the path naming this container */
    int expect_key;   /* mappings: the next scalar is a key */
    char key[128];    /* mappings: the key whose value comes next */
    int key_line;
    uint64_t next;    /* sequences: index of the next entry */
};

#define INDEX_DEPTH 16

static int index_build(struct load_ctx *lc, const char *yaml, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "%s: cannot start the YAML parser",
                         lc->name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);

    struct frame st[INDEX_DEPTH];
    int depth = 0, docs = 0, roots = 0, rc = DMLP_OK, done = 0;
    char path[CONFIG_PATH_MAX] = "";
    while (rc == DMLP_OK && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            int line = (int)(parser.problem_mark.line + 1);
            if (parser.error == YAML_READER_ERROR)
                rc = dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s: YAML error: %s at byte %zu",
                               lc->name, parser.problem, parser.problem_offset);
            else if (parser.context)
                rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                               "%s:%d: %s%sYAML syntax error: %s (%s at line %d)", lc->name,
                               line, path, path[0] ? ": " : "",
                               parser.problem ? parser.problem : "invalid YAML",
                               parser.context, (int)parser.context_mark.line + 1);
            else
                rc = dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s:%d: %s%sYAML syntax error: %s",
                               lc->name, line, path, path[0] ? ": " : "",
                               parser.problem ? parser.problem : "invalid YAML");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        struct frame *top = depth ? &st[depth - 1] : NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                               "%s:%d: a second YAML document ('---'); a config is one "
                               "document", lc->name, line);
            break;
        case YAML_ALIAS_EVENT:
            rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                           "%s:%d: %s%saliases (*name) are not supported in configs",
                           lc->name, line, path, path[0] ? ": " : "");
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            /* Back to the path of the enclosing container. */
            depth--;
            path[depth ? st[depth - 1].path_len : 0] = '\0';
            break;
        case YAML_SCALAR_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT: {
            if (!top) {
                roots++;
                if (ev.type != YAML_MAPPING_START_EVENT) {
                    rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                                   "%s:%d: the config must be a mapping of sections (model, "
                                   "optimizer, data, ...)", lc->name, line);
                    break;
                }
                struct index_entry *e = index_add(&lc->idx, "");
                if (!e) {
                    rc = dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "%s: out of memory", lc->name);
                    break;
                }
                e->kind = NODE_MAPPING;
                e->key_line = e->value_line = line;
                st[depth++] = (struct frame){.kind = NODE_MAPPING, .path_len = 0,
                                             .expect_key = 1};
                break;
            }
            if (top->kind == NODE_MAPPING && top->expect_key) {
                if (ev.type != YAML_SCALAR_EVENT) {
                    rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                                   "%s:%d: %s%sa key must be a plain name", lc->name, line,
                                   path, path[0] ? ": " : "");
                    break;
                }
                snprintf(top->key, sizeof top->key, "%s", (const char *)ev.data.scalar.value);
                top->key_line = line;
                top->expect_key = 0;
                break;
            }
            /* A value: name it after its parent. */
            char child[CONFIG_PATH_MAX];
            int key_line;
            int n;
            if (top->kind == NODE_MAPPING) {
                n = snprintf(child, sizeof child, "%s%s%s", path, top->path_len ? "." : "",
                             top->key);
                key_line = top->key_line;
                top->expect_key = 1;
            } else {
                n = snprintf(child, sizeof child, "%s[%" PRIu64 "]", path, top->next++);
                key_line = line;
            }
            if (n < 0 || (size_t)n >= sizeof child || depth == INDEX_DEPTH) {
                rc = dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s:%d: %s: nested too deeply",
                               lc->name, line, path);
                break;
            }
            const struct index_entry *dup = index_find(&lc->idx, child);
            if (dup) {
                rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                               "%s:%d: %s: duplicate key (first given at line %d)", lc->name,
                               key_line, child, dup->key_line);
                break;
            }
            struct index_entry *e = index_add(&lc->idx, child);
            if (!e) {
                rc = dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "%s: out of memory", lc->name);
                break;
            }
            e->key_line = key_line;
            e->value_line = line;
            if (ev.type == YAML_SCALAR_EVENT) {
                e->kind = NODE_SCALAR;
                e->start = ev.start_mark.index;
                e->end = ev.end_mark.index;
                e->text = strdup((const char *)ev.data.scalar.value);
                if (!e->text)
                    rc = dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "%s: out of memory", lc->name);
            } else {
                e->kind = ev.type == YAML_MAPPING_START_EVENT ? NODE_MAPPING : NODE_SEQUENCE;
                memcpy(path, child, (size_t)n + 1);
                st[depth++] = (struct frame){.kind = e->kind, .path_len = (size_t)n,
                                             .expect_key = 1};
            }
            break;
        }
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc == DMLP_OK && roots == 0)
        rc = dmlp_fail(lc->err, DMLP_ERR_INPUT,
                       "%s: the config is empty; it needs the sections model, optimizer "
                       "and data", lc->name);
    return rc;
}

/* ---- step 2: libcyaml's errors ------------------------------------------------------ */

/* Rebuilds the key path from libcyaml's backtrace, innermost frame first:
 *     "  in mapping field 'units' (line: 2, column: 13)"
 *     "  in sequence entry '2' (line: 3, column: 5)"      (1-based)
 *     "  in mapping (line: 2, column: 28)"                (adds nothing)
 * and returns the first line of the log (libcyaml's message) in msg. *inner_field tells
 * whether the innermost frame was a mapping field. */
static void parse_backtrace(const struct log_buf *log, char *path, size_t cap, char *msg,
                            size_t msg_cap, int *inner_field)
{
    char frames[INDEX_DEPTH][72];
    int n = 0, any_frame = 0;
    msg[0] = '\0';
    *inner_field = 0;
    const char *line = log->text, *end = log->text + log->len;
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(end - line);
        char buf[256];
        snprintf(buf, sizeof buf, "%.*s", (int)ll, line);
        char name[64];
        unsigned long entry;
        if (!msg[0] && strncmp(buf, "  ", 2) != 0) {
            const char *m = strncmp(buf, "Load: ", 6) == 0 ? buf + 6 : buf;
            snprintf(msg, msg_cap, "%s", m);
        } else if (n < INDEX_DEPTH && sscanf(buf, "  in mapping field '%63[^']'", name) == 1) {
            snprintf(frames[n++], sizeof frames[0], ".%s", name);
            if (!any_frame)
                *inner_field = 1;
        } else if (n < INDEX_DEPTH && sscanf(buf, "  in sequence entry '%lu'", &entry) == 1 &&
                   entry > 0) {
            snprintf(frames[n++], sizeof frames[0], "[%lu]", entry - 1);
        }
        if (strncmp(buf, "  in ", 5) == 0)
            any_frame = 1;
        line += ll + 1;
    }
    size_t used = 0;
    path[0] = '\0';
    for (int i = n - 1; i >= 0; i--) {
        const char *f = frames[i];
        if (used == 0 && f[0] == '.')
            f++;
        int w = snprintf(path + used, cap - used, "%s", f);
        if (w > 0 && (size_t)w < cap - used)
            used += (size_t)w;
    }
}

static const char *kind_name(const struct index_entry *e)
{
    if (e->kind == NODE_SCALAR)
        return e->text[0] ? "a single value" : "an empty value";
    return e->kind == NODE_MAPPING ? "a mapping" : "a list";
}

static int translate_cyaml_error(struct load_ctx *lc, cyaml_err_t e, const struct log_buf *log)
{
    char path[CONFIG_PATH_MAX], msg[512], key[128], why[512];
    int inner_field;
    parse_backtrace(log, path, sizeof path, msg, sizeof msg, &inner_field);
    struct resolved r;
    /* For a missing key the innermost frame is some field of the mapping that lacks it
     * (the last one read, or the first of the schema when none was): drop it. */
    int missing = sscanf(msg, "Missing required mapping field: %127[^\n]", key) == 1;
    if (missing && inner_field) {
        char *dot = strrchr(path, '.');
        *(dot ? dot : path) = '\0';
    }
    const struct index_entry *ent = index_find(&lc->idx, path);

    if (sscanf(msg, "Unexpected key: %127[^\n]", key) == 1) {
        char child[CONFIG_PATH_MAX + 130], keys[256];
        snprintf(child, sizeof child, "%s%s%s", path, path[0] ? "." : "", key);
        const struct index_entry *ke = index_find(&lc->idx, child);
        if (resolve(path, NULL, &r, why, sizeof why) == 0 && r.schema->type == CYAML_MAPPING)
            list_keys(keys, sizeof keys, r.schema->mapping.fields);
        else
            snprintf(keys, sizeof keys, "?");
        return dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s:%d: %s: unknown key (known%s%s: %s)",
                         lc->name, ke ? ke->key_line : ent ? entry_line(ent) : 1, child,
                         path[0] ? " in " : "", path, keys);
    }
    if (missing) {
        if (!path[0])
            return dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s:%d: missing required section '%s'",
                             lc->name, ent ? ent->value_line : 1, key);
        return dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s:%d: %s: missing required key '%s'",
                         lc->name, ent ? entry_line(ent) : 1, path, key);
    }
    if (ent && resolve(path, NULL, &r, why, sizeof why) == 0) {
        char want[300];
        int scalar_schema = r.schema->type != CYAML_MAPPING && r.schema->type != CYAML_SEQUENCE;
        if (scalar_schema && ent->kind == NODE_SCALAR) {
            /* Our parser says what is wrong with the text, in the words --set uses. */
            if (parse_scalar(r.schema, path, ent->text, NULL, why, sizeof why) != 0)
                return fail_at(lc, path, "%s", why);
        } else if (scalar_schema != (ent->kind == NODE_SCALAR) ||
                   (r.schema->type == CYAML_MAPPING) != (ent->kind == NODE_MAPPING)) {
            describe(want, sizeof want, r.schema, path);
            return fail_at(lc, path, "expected %s, found %s", want, kind_name(ent));
        }
    }
    return dmlp_fail(lc->err, DMLP_ERR_INPUT, "%s:%d: %s%s%s (%s)", lc->name,
                     ent ? entry_line(ent) : 1, path, path[0] ? ": " : "",
                     msg[0] ? msg : "rejected", cyaml_strerror(e));
}

/* ---- step 3 and 4: strict scalars, defaults ----------------------------------------- */

static int reparse_scalars(struct load_ctx *lc)
{
    char why[512];
    for (size_t i = 0; i < lc->idx.n; i++) {
        const struct index_entry *e = &lc->idx.e[i];
        struct resolved r;
        if (e->kind != NODE_SCALAR || resolve(e->path, lc->cfg, &r, why, sizeof why) != 0)
            continue; /* libcyaml accepted the document, so this cannot happen */
        if (r.schema->type == CYAML_STRING)
            continue; /* libcyaml's strings are exact, and it knows null from "null" */
        if (parse_scalar(r.schema, e->path, e->text, r.data, why, sizeof why) != 0)
            return fail_at(lc, e->path, "%s", why);
    }
    return DMLP_OK;
}

static int apply_defaults(struct load_ctx *lc)
{
    char why[512];
    for (size_t i = 0; i < CYAML_ARRAY_LEN(config_defaults); i++) {
        const char *path = config_defaults[i].path;
        struct resolved r;
        if (index_find(&lc->idx, path))
            continue;
        if (resolve(path, lc->cfg, &r, why, sizeof why) != 0 ||
            parse_scalar(r.schema, path, config_defaults[i].value, r.data, why, sizeof why) != 0)
            return dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "config: default %s: %s", path, why);
    }
    return DMLP_OK;
}

/* ---- step 5: range checks and --set ------------------------------------------------- */

static const char *enum_name(const cyaml_strval_t *strings, size_t n, int64_t val)
{
    for (size_t i = 0; i < n; i++)
        if (strings[i].val == val)
            return strings[i].str;
    return "unknown";
}

/* 1 if s is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): YAML text is UTF-8, so config_to_yaml (the checkpoint's copy of the config)
 * cannot write anything else, and a --set value is the one way other bytes get in. */
static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const unsigned c = *p++;
        int more = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2
                 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
        if (more < 0)
            return 0;
        for (int i = 0; i < more; i++, p++) {
            unsigned lo = 0x80, hi = 0xBF;
            if (i == 0 && c == 0xE0)
                lo = 0xA0;
            else if (i == 0 && c == 0xED)
                hi = 0x9F;
            else if (i == 0 && c == 0xF0)
                lo = 0x90;
            else if (i == 0 && c == 0xF4)
                hi = 0x8F;
            if (*p < lo || *p > hi)
                return 0;
        }
    }
    return 1;
}

static int validate(struct load_ctx *lc)
{
    const struct config *c = lc->cfg;
    const struct {
        const char *key, *value;
    } strings[] = {{"data.train", c->data.train}, {"data.test", c->data.test},
                   {"checkpoint.dir", c->checkpoint.dir}};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (strings[i].value && !utf8_valid(strings[i].value))
            return fail_at(lc, strings[i].key, "'%s' is not valid UTF-8 (config text, and the "
                           "copy kept in checkpoints, is UTF-8)", strings[i].value);
    char p[CONFIG_PATH_MAX];
    const uint32_t n = c->model.n_layers;
    if (n == 0)
        return fail_at(lc, "model.layers", "the list is empty; give at least one layer");
    for (uint32_t i = 0; i < n; i++) {
        const struct config_layer *l = &c->model.layers[i];
        if (l->units == 0) {
            snprintf(p, sizeof p, "model.layers[%" PRIu32 "].units", i);
            return fail_at(lc, p, "0 is not a positive integer");
        }
        if (l->activation == DMLP_ACT_SOFTMAX && i + 1 < n) {
            snprintf(p, sizeof p, "model.layers[%" PRIu32 "].activation", i);
            return fail_at(lc, p, "softmax is only allowed on the last layer (this is layer "
                           "%" PRIu32 " of %" PRIu32 ")", i, n);
        }
    }
    const enum dmlp_activation last = c->model.layers[n - 1].activation;
    snprintf(p, sizeof p, "model.layers[%" PRIu32 "].activation", n - 1);
    if (last == DMLP_ACT_SOFTMAX && c->loss != DMLP_LOSS_CROSS_ENTROPY)
        return fail_at(lc, "loss", "%s cannot follow a softmax output layer: softmax "
                       "requires loss cross_entropy", config_loss_name(c->loss));
    if (c->loss == DMLP_LOSS_CROSS_ENTROPY && last != DMLP_ACT_SOFTMAX)
        return fail_at(lc, p, "%s, but loss cross_entropy requires a softmax output layer "
                       "(use activation softmax here, or loss mse)",
                       config_activation_name(last));

    const struct config_optimizer *o = &c->optimizer;
    if (!(o->lr > 0) || !isfinite(o->lr))
        return fail_at(lc, "optimizer.lr", "%g is not a positive number", o->lr);
    if (!(o->momentum >= 0 && o->momentum < 1))
        return fail_at(lc, "optimizer.momentum", "%g is not in [0, 1)", o->momentum);
    if (o->nesterov && o->momentum == 0)
        return fail_at(lc, "optimizer.nesterov", "true requires optimizer.momentum > 0 "
                       "(momentum is 0)");
    if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay))
        return fail_at(lc, "optimizer.weight_decay", "%g is not a non-negative number",
                       o->weight_decay);
    const char *oname = enum_name(optimizer_strings, CYAML_ARRAY_LEN(optimizer_strings),
                                  o->name);
    if (o->name != DMLP_OPT_SGD && o->momentum != 0)
        return fail_at(lc, "optimizer.momentum", "applies to sgd only; %s uses beta1 "
                       "(remove momentum or use name: sgd)", oname);
    if (o->name != DMLP_OPT_SGD && o->nesterov)
        return fail_at(lc, "optimizer.nesterov", "applies to sgd only, not %s", oname);
    if (!(o->beta1 >= 0 && o->beta1 < 1))
        return fail_at(lc, "optimizer.beta1", "%g is not in [0, 1)", o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1))
        return fail_at(lc, "optimizer.beta2", "%g is not in [0, 1)", o->beta2);
    if (!(o->eps > 0) || !isfinite(o->eps))
        return fail_at(lc, "optimizer.eps", "%g is not a positive number", o->eps);
    if (!(o->clip_norm >= 0) || !isfinite(o->clip_norm))
        return fail_at(lc, "optimizer.clip_norm", "%g is not a non-negative number "
                       "(0 turns clipping off)", o->clip_norm);
    if (o->base_batch_size == 0)
        return fail_at(lc, "optimizer.base_batch_size", "0 is not a positive integer");
    const struct config_schedule *sc = &o->schedule;
    if (!(sc->warmup_epochs >= 0) || !isfinite(sc->warmup_epochs))
        return fail_at(lc, "optimizer.schedule.warmup_epochs", "%g is not a non-negative "
                       "number", sc->warmup_epochs);
    if (sc->warmup_epochs > (double)c->training.epochs)
        return fail_at(lc, "optimizer.schedule.warmup_epochs", "%g is longer than the "
                       "training (%u epochs)", sc->warmup_epochs, c->training.epochs);
    if (sc->step_epochs == 0)
        return fail_at(lc, "optimizer.schedule.step_epochs", "0 is not a positive integer");
    if (!(sc->gamma > 0 && sc->gamma <= 1))
        return fail_at(lc, "optimizer.schedule.gamma", "%g is not in (0, 1]", sc->gamma);
    if (!(sc->min_lr >= 0) || !(sc->min_lr <= o->lr))
        return fail_at(lc, "optimizer.schedule.min_lr", "%g is not in [0, optimizer.lr = "
                       "%g]", sc->min_lr, o->lr);

    if (!c->data.train || !c->data.train[0])
        return fail_at(lc, "data.train", "empty path");
    if (!(c->data.validation_fraction >= 0 && c->data.validation_fraction < 1))
        return fail_at(lc, "data.validation_fraction", "%g is not in [0, 1)",
                       c->data.validation_fraction);
    if (c->training.reproducible && c->data.placement == DMLP_PLACEMENT_SHARDED)
        return fail_at(lc, "training.reproducible", "needs data.placement replicated (with "
                       "sharded data each rank shuffles its own shard, so the trajectory "
                       "depends on the rank count)");
    const struct config_early_stopping *es = &c->training.early_stopping;
    if (!(es->min_delta >= 0) || !isfinite(es->min_delta))
        return fail_at(lc, "training.early_stopping.min_delta", "%g is not a non-negative "
                       "number", es->min_delta);
    if (es->patience > 0 && c->data.validation_fraction == 0)
        return fail_at(lc, "training.early_stopping.patience", "early stopping watches the "
                       "validation set: set data.validation_fraction > 0");
    if (es->metric == DMLP_METRIC_VAL_ACCURACY && c->loss != DMLP_LOSS_CROSS_ENTROPY)
        return fail_at(lc, "training.early_stopping.metric", "val_accuracy needs a "
                       "classifier (loss cross_entropy); use val_loss");
    if (c->training.epochs == 0)
        return fail_at(lc, "training.epochs", "0 is not a positive integer");
    if (c->training.batch_size == 0)
        return fail_at(lc, "training.batch_size", "0 is not a positive integer");
    if (!c->checkpoint.dir || !c->checkpoint.dir[0])
        return fail_at(lc, "checkpoint.dir", "empty path");
    if (c->comm.bucket_kb == 0)
        return fail_at(lc, "comm.bucket_kb", "0 is not a positive integer");
    if (c->comm.bucket_kb > 1u << 22)
        return fail_at(lc, "comm.bucket_kb", "%u KiB is more than 4 GiB per allreduce",
                       (unsigned)c->comm.bucket_kb);
    return DMLP_OK;
}

/* Applies one "key.path=value"; records the argument in the index so that validate()
 * names the --set rather than a line of the file. */
static int apply_set(struct load_ctx *lc, const char *arg)
{
    char why[512], path[CONFIG_PATH_MAX];
    const char *eq = strchr(arg, '=');
    if (!eq)
        return dmlp_fail(lc->err, DMLP_ERR_INPUT,
                         "--set %s: expected key.path=value, e.g. optimizer.lr=0.1", arg);
    size_t plen = (size_t)(eq - arg);
    if (plen == 0 || plen >= sizeof path)
        return dmlp_fail(lc->err, DMLP_ERR_INPUT,
                         "--set %s: expected key.path=value, e.g. optimizer.lr=0.1", arg);
    memcpy(path, arg, plen);
    path[plen] = '\0';
    struct resolved r;
    if (resolve(path, lc->cfg, &r, why, sizeof why) != 0)
        return dmlp_fail(lc->err, DMLP_ERR_INPUT, "--set %s: %s", arg, why);
    if (r.schema->type == CYAML_MAPPING || r.schema->type == CYAML_SEQUENCE) {
        char want[300];
        describe(want, sizeof want, r.schema, path);
        return dmlp_fail(lc->err, DMLP_ERR_INPUT,
                         "--set %s: %s is %s; set one of its values instead", arg, path, want);
    }
    if (parse_scalar(r.schema, path, eq + 1, r.data, why, sizeof why) != 0)
        return dmlp_fail(lc->err, DMLP_ERR_INPUT, "--set %s: %s: %s", arg, path, why);

    /* Under the canonical path, which is how validate() asks for it. */
    struct index_entry *e = index_find(&lc->idx, r.path);
    if (!e) {
        e = index_add(&lc->idx, r.path);
        if (!e)
            return dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "--set %s: out of memory", arg);
        e->kind = NODE_SCALAR;
    }
    free(e->set_arg);
    e->set_arg = strdup(arg);
    if (!e->set_arg)
        return dmlp_fail(lc->err, DMLP_ERR_RUNTIME, "--set %s: out of memory", arg);
    return DMLP_OK;
}

/* ---- key listing -------------------------------------------------------------------- */

/* Every leaf key path of the schema, built once: a mapping adds ".key", a sequence "[]". */
#define CONFIG_KEYS_MAX 128
static char config_key_store[CONFIG_KEYS_MAX][CONFIG_PATH_MAX];
static size_t config_key_count;

static void collect_keys(const cyaml_schema_value_t *s, char *prefix, size_t plen)
{
    if (s->type == CYAML_MAPPING) {
        for (const cyaml_schema_field_t *f = s->mapping.fields; f->key; f++) {
            int n = snprintf(prefix + plen, CONFIG_PATH_MAX - plen, "%s%s", plen ? "." : "",
                             f->key);
            if (n > 0 && (size_t)n < CONFIG_PATH_MAX - plen)
                collect_keys(&f->value, prefix, plen + (size_t)n);
        }
        prefix[plen] = '\0';
    } else if (s->type == CYAML_SEQUENCE || s->type == CYAML_SEQUENCE_FIXED) {
        if (plen + 2 < CONFIG_PATH_MAX) {
            memcpy(prefix + plen, "[]", 3);
            collect_keys(s->sequence.entry, prefix, plen + 2);
        }
        prefix[plen] = '\0';
    } else if (config_key_count < CONFIG_KEYS_MAX) {
        snprintf(config_key_store[config_key_count++], CONFIG_PATH_MAX, "%s", prefix);
    }
}

size_t config_key_paths(const char **out, size_t cap)
{
    if (config_key_count == 0) {
        char prefix[CONFIG_PATH_MAX] = "";
        collect_keys(&config_schema, prefix, 0);
    }
    for (size_t i = 0; i < config_key_count && i < cap; i++)
        out[i] = config_key_store[i];
    return config_key_count;
}
