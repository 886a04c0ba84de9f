#define _POSIX_C_SOURCE 200809L
#include "app/cli.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "data/checkpoint.h"
#include "app/config.h"
#include "app/sweep.h"
#include "data/dataset.h"
#include "data/onnx.h"
#include "par/dist.h"
#include "nn/kernels.h"
#include "run/metrics.h"
#include "nn/model.h"
#include "run/predict.h"
#include "run/ensemble.h"
#include "run/stop.h"
#include "run/train.h"
#include "core/util.h"

static const char USAGE[] =
    "usage: dmlp <command> [options]\n"
    "\n"
    "Data-parallel multilayer-perceptron training over MPI + OpenMP, with HDF5 data and\n"
    "checkpoints. Every command runs alone or under `mpirun -np N`.\n"
    "\n"
    "commands:\n"
    "  train CONFIG.yaml [--set key=value]... [--resume PATH|auto] [--init-from PATH]\n"
    "  sweep CONFIG.yaml --grid key=v1,v2... [--seeds N] [--group-size G] [--resume auto]\n"
    "  eval --checkpoint PATH --data PATH [--json]\n"
    "  predict --checkpoint PATH --input PATH --output PATH\n"
    "  import idx --images PATH --labels PATH --output PATH\n"
    "  import csv PATH --label-column NAME|--target-columns A,B --output PATH\n"
    "  inspect PATH                     (a checkpoint or a dataset)\n"
    "  export onnx --checkpoint PATH --output PATH\n"
    "  help config                      every config key: type, range, default, meaning\n"
    "  help COMMAND                     the same as dmlp COMMAND --help\n"
    "  --version\n"
    "\n"
    "`dmlp <command> --help` describes each. Exit codes: 0 done, 1 runtime failure,\n"
    "2 bad usage, config or input file.\n"
    "\n"
    "environment:\n"
    "  DMLP_KERNEL=NAME   the kernel build, matrix products and loops alike: avx512,\n"
    "                     avx2, generic (or openblas when built with it; wide16, the\n"
    "                     avx512 code on AVX2, is for testing); default auto, the\n"
    "                     fastest this CPU runs (--version)\n";

static const char TRAIN_HELP[] =
    "usage: dmlp train CONFIG.yaml [--set key.path=value]... [--resume PATH|auto]\n"
    "                  [--init-from PATH] [--quiet | --verbose]\n"
    "\n"
    "Trains the network CONFIG.yaml describes (`dmlp help config` lists every key). The\n"
    "global batch (training.batch_size) is split across the ranks: rank r computes the\n"
    "r-th contiguous slice of each batch, so the trajectory does not depend on the rank\n"
    "count.\n"
    "\n"
    "  --set key.path=value  override a config value, e.g. --set optimizer.lr=0.1,\n"
    "                        --set model.layers[0].units=512, --set data.test=\n"
    "  --resume PATH|auto    continue from a checkpoint (weights, optimizer state,\n"
    "                        position); auto: checkpoint.dir/latest.h5 if it exists,\n"
    "                        else a fresh start. The config given now governs, so\n"
    "                        training.epochs can be raised; a different network is an error.\n"
    "  --init-from PATH      start from the /layers of a checkpoint (shapes checked),\n"
    "                        with a fresh optimizer and position\n"
    "  --quiet               print only errors and the final checkpoint\n"
    "  --verbose             also list every rank's host, threads and cores\n"
    "\n"
    "Rank 0 prints one line per epoch (and, on a terminal, a progress bar). Checkpoints\n"
    "go to checkpoint.dir/step-NNNNNNNN.h5, latest.h5 names the newest, and\n"
    "checkpoint.dir/metrics.jsonl gets one JSON line per epoch (appended on resume).\n"
    "SIGUSR1, SIGTERM or SIGINT: finish the step, write a checkpoint, exit 75.\n"
    "\n"
    "examples:\n"
    "  dmlp train configs/xor.yaml\n"
    "  mpirun -np 4 dmlp train configs/fashion_mnist.yaml --set training.epochs=20\n"
    "  mpirun -np 4 dmlp train configs/fashion_mnist.yaml --resume auto\n";

static const char EVAL_HELP[] =
    "usage: dmlp eval --checkpoint PATH [--checkpoint PATH]... --data PATH [--json]\n"
    "       dmlp eval --sweep DIR [--top K] --data PATH [--json]\n"
    "\n"
    "Several checkpoints (or a sweep's K best finished members, by validation loss) are\n"
    "evaluated as one ensemble: the mean of their outputs, each member standardising the\n"
    "data as it was trained to.\n"
    "\n"
    "Evaluates a checkpoint's network on a dataset (split across the ranks; the result is\n"
    "the same for any rank count). Classifiers: mean loss, accuracy, per-class accuracy\n"
    "and the confusion matrix (rows: true class, columns: predicted). Regression: mean\n"
    "loss, MSE, MAE and R^2 (per target and averaged). The checkpoint's input\n"
    "standardisation, if it has one, is applied to the data first; with target\n"
    "standardisation, outputs are mapped back and every figure is in original units.\n"
    "  --json   print one JSON object: samples, loss, correct, accuracy,\n"
    "           per_class_accuracy, confusion_matrix (or mse, mae, r2, r2_per_target,\n"
    "           mse_per_target, mae_per_target)\n"
    "\n"
    "example:\n"
    "  dmlp eval --checkpoint runs/fashion_mnist/latest.h5 --data data/fashion_mnist_test.h5\n";

static const char PREDICT_HELP[] =
    "usage: dmlp predict --checkpoint PATH [--checkpoint PATH]... --input PATH --output PATH\n"
    "       dmlp predict --sweep DIR [--top K] --input PATH --output PATH\n"
    "\n"
    "Several checkpoints (or a sweep's K best finished members) predict as an ensemble:\n"
    "/predictions holds the members' mean, /std their standard deviation per output\n"
    "(population, ddof 0) and, for classifiers, /entropy the entropy of the mean\n"
    "probabilities; /labels is the mean's argmax.\n"
    "\n"
    "Runs a checkpoint's network on the /features of an HDF5 file (labels or targets, if\n"
    "present, are ignored) and writes /predictions float32 [N, K] (class probabilities,\n"
    "or regression outputs) and, for classifiers, /labels int32 [N] (the argmax). The\n"
    "rows are split across the ranks and gathered into one file, written by rank 0 to a\n"
    "temporary name and renamed into place.\n"
    "\n"
    "example:\n"
    "  mpirun -np 4 dmlp predict --checkpoint runs/fashion_mnist/latest.h5 \\\n"
    "                            --input data/fashion_mnist_test.h5 --output preds.h5\n";

static const char IMPORT_HELP[] =
    "usage: dmlp import idx --images PATH --labels PATH --output PATH\n"
    "       dmlp import csv PATH (--label-column NAME | --target-columns A,B,...) --output PATH\n"
    "\n"
    "idx: converts MNIST-style IDX files (gzip-compressed or plain) into a dmlp dataset:\n"
    "/features float32 [N, rows*cols] with pixels scaled to [0, 1], /labels int32 [N].\n"
    "csv: converts a CSV file with a header row (plain or gzip). --label-column names the\n"
    "class column (integers >= 0, or class names, numbered in order of first appearance and\n"
    "kept in the attribute class_names); --target-columns names the regression targets.\n"
    "Every other column is a feature. Errors name the line and column.\n"
    "The output is written to a temporary file and renamed into place.\n"
    "\n"
    "examples:\n"
    "  dmlp import idx --images train-images-idx3-ubyte.gz \\\n"
    "                  --labels train-labels-idx1-ubyte.gz --output data/train.h5\n"
    "  dmlp import csv iris.csv --label-column species --output data/iris.h5\n"
    "  dmlp import csv houses.csv --target-columns price --output data/houses.h5\n";

static const char INSPECT_HELP[] =
    "usage: dmlp inspect PATH\n"
    "\n"
    "Describes a checkpoint (layers, shapes, activations, attributes, optimizer state) or a\n"
    "dataset (shapes, label kind, classes and their counts).\n"
    "\n"
    "example:\n"
    "  dmlp inspect runs/fashion_mnist/latest.h5\n";

static const char EXPORT_HELP[] =
    "usage: dmlp export onnx --checkpoint PATH --output PATH\n"
    "\n"
    "Writes a checkpoint's network as an ONNX model (opset 13) for other runtimes (ONNX\n"
    "Runtime, OpenCV's dnn, TensorRT, ...): input x [N, inputs] float32, output\n"
    "y [N, outputs]. The input standardisation becomes Sub and Div nodes, each layer a\n"
    "Gemm and its activation; a classifier ends in Softmax, so y holds probabilities.\n"
    "Written by rank 0 to a temporary name and renamed into place.\n"
    "\n"
    "example:\n"
    "  dmlp export onnx --checkpoint runs/fashion_mnist/best.h5 --output fashion.onnx\n";

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* Parses "--name value" or "--name=value" at argv[*i]; returns 1 when it matched. */
static int take_value(int argc, char **argv, int *i, const char *name, const char **value,
                      struct dmlp_error *err)
{
    const char *a = argv[*i];
    const size_t len = strlen(name);
    if (strncmp(a, name, len) != 0)
        return 0;
    if (a[len] == '=') {
        *value = a + len + 1;
        return 1;
    }
    if (a[len] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        dmlp_fail(err, DMLP_ERR_INPUT, "%s needs a value", name);
        return 1;
    }
    *value = argv[++*i];
    return 1;
}

struct ctx {
    struct dist *d;
    int rank;
    FILE *out, *errout;
};

/* Agrees on e across ranks; rank 0 prints an agreed error once. Returns the code. */
static int finish(struct ctx *c, struct dmlp_error *e)
{
    int code = dist_agree(c->d, e);
    if (code && c->rank == 0)
        fprintf(c->errout, "dmlp: error: %s\n", e->msg);
    return code;
}

static int usage_error(struct ctx *c, const char *help, const char *fmt, const char *arg)
{
    if (c->rank == 0) {
        fprintf(c->errout, "dmlp: ");
        fprintf(c->errout, fmt, arg);
        fprintf(c->errout, "\n\n%s", help);
    }
    return DMLP_ERR_INPUT;
}

/* The checkpoints a predict or eval command names: each --checkpoint, or the --top K best
 * finished members of --sweep DIR. */
struct ckpt_list {
    const char **v;     /* [n] */
    size_t n;
    char **owned;       /* --sweep's paths */
    size_t n_owned;
    const char *sweep;
    const char *top;
    char joined[4096];  /* "a.h5, b.h5", for the predictions file */
};

/* Takes --checkpoint, --sweep and --top; returns 1 when argv[*i] was one of them. */
static int take_ckpt(int argc, char **argv, int *i, struct ckpt_list *l, struct dmlp_error *e)
{
    const char *v = NULL;
    if (take_value(argc, argv, i, "--checkpoint", &v, e)) {
        if (v)
            l->v[l->n++] = v;
        return 1;
    }
    return take_value(argc, argv, i, "--sweep", &l->sweep, e) ||
           take_value(argc, argv, i, "--top", &l->top, e);
}

/* --sweep's members into the list (every rank reads the same sweep.jsonl); the joined
 * names. Not agreed. */
static int resolve_ckpts(struct ckpt_list *l, struct dmlp_error *e)
{
    if (l->sweep) {
        char *end = NULL;
        const long top = l->top ? strtol(l->top, &end, 10) : -1;
        if (l->n)
            return dmlp_fail(e, DMLP_ERR_INPUT, "give --checkpoint or --sweep, not both");
        if (l->top && (*end || top < 1))
            return dmlp_fail(e, DMLP_ERR_INPUT, "--top %s: expected a positive count", l->top);
        if (sweep_best_members(l->sweep, top > 0 ? (size_t)top : SIZE_MAX, &l->owned,
                               &l->n_owned, e) != DMLP_OK)
            return e->code;
        const char **v = realloc(l->v, (l->n_owned + 1) * sizeof *v);
        if (!v)
            return dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory");
        l->v = v;
        for (size_t i = 0; i < l->n_owned; i++)
            l->v[l->n++] = l->owned[i];
    } else if (l->top) {
        return dmlp_fail(e, DMLP_ERR_INPUT, "--top needs --sweep DIR");
    }
    size_t used = 0;
    for (size_t i = 0; i < l->n && used < sizeof l->joined; i++)
        used += (size_t)snprintf(l->joined + used, sizeof l->joined - used, "%s%s",
                                 i ? ", " : "", l->v[i]);
    return DMLP_OK;
}

static void free_ckpts(struct ckpt_list *l)
{
    for (size_t i = 0; i < l->n_owned; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->v);
}

/* Applies the network's input standardisation to ds, as training did. */
static int standardize_for(const struct model *m, struct dataset *ds, const char *what,
                           struct dmlp_error *e)
{
    if (ds->d != model_input_dim(m))
        return dmlp_fail(e, DMLP_ERR_INPUT, "%s: samples have %zu features, but the network "
                         "takes %zu inputs", what, ds->d, model_input_dim(m));
    if (m->norm_mean)
        dataset_standardize(ds, m->norm_mean, m->norm_std);
    return DMLP_OK;
}

/* What train's command line asks for. */
struct train_args {
    const char *config_path, *resume, *init_from;
    const char **sets; /* the --set values, n_sets of them */
    size_t n_sets;
    int verbosity, help;
};

/* The combinations of train's options that cannot run. */
static int check_train_args(struct ctx *c, const struct train_args *a)
{
    if (!a->config_path)
        return usage_error(c, TRAIN_HELP, "train: %s", "missing CONFIG.yaml");
    if (a->resume && a->init_from)
        return usage_error(c, TRAIN_HELP, "train: %s", "--resume and --init-from exclude "
                           "each other");
    if (a->resume && !a->resume[0])
        return usage_error(c, TRAIN_HELP, "train: %s", "--resume needs a path or 'auto'");
    return DMLP_OK;
}

/* Fills a from train's arguments. Returns a usage error's code, or DMLP_OK; a->help is set
 * when --help was asked for (and printed). */
static int parse_train_args(struct ctx *c, int argc, char **argv, struct train_args *a)
{
    struct dmlp_error e = {0};
    for (int i = 0; i < argc && !e.code; i++) {
        const char *v = NULL;
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(TRAIN_HELP, c->out);
            a->help = 1;
            return DMLP_OK;
        } else if (take_value(argc, argv, &i, "--set", &v, &e)) {
            if (v)
                a->sets[a->n_sets++] = v;
        } else if (take_value(argc, argv, &i, "--resume", &v, &e)) {
            a->resume = v;
        } else if (take_value(argc, argv, &i, "--init-from", &v, &e)) {
            a->init_from = v;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            a->verbosity = 0;
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            a->verbosity = 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error(c, TRAIN_HELP, "train: unknown option '%s'", argv[i]);
        } else if (a->config_path) {
            return usage_error(c, TRAIN_HELP, "train: unexpected argument '%s' (one config "
                               "file only)", argv[i]);
        } else {
            a->config_path = argv[i];
        }
    }
    if (e.code)
        return usage_error(c, TRAIN_HELP, "train: %s", e.msg);
    return check_train_args(c, a);
}

/* The config with the --set overrides applied, and its effective YAML; agreed across
 * ranks. */
static int load_train_config(struct ctx *c, const struct train_args *a, struct config **cfg,
                             char **yaml)
{
    struct dmlp_error e = {0};
    if (config_load(cfg, a->config_path, a->sets, a->n_sets, &e) == DMLP_OK)
        config_to_yaml(*cfg, yaml, &e);
    return finish(c, &e);
}

static int run_training(struct ctx *c, const struct train_args *a, const struct config *cfg,
                        const char *yaml)
{
    struct train_options opt = {.resume = a->resume, .init_from = a->init_from,
                                .log = c->errout, .save_checkpoints = 1,
                                .verbosity = a->verbosity};
    struct train_result res;
    struct dmlp_error e = {0};
    /* SIGUSR1/SIGTERM/SIGINT (handlers installed by main, first thing): finish the step,
     * checkpoint, exit 75 (requeue me). */
    const int code = train_run(c->d, cfg, yaml, &opt, &res, &e);
    if (code == DMLP_STOPPED && c->rank == 0)
        fprintf(c->errout, "dmlp: %s\n", e.msg);
    else if (code && c->rank == 0)
        fprintf(c->errout, "dmlp: error: %s\n", e.msg);
    model_free(&res.model);
    return code;
}

static int cmd_train(struct ctx *c, int argc, char **argv)
{
    struct train_args a = {.verbosity = 1, .sets = calloc((size_t)argc + 1, sizeof *a.sets)};
    if (!a.sets)
        return DMLP_ERR_RUNTIME;
    int code = parse_train_args(c, argc, argv, &a);
    if (code || a.help) {
        free(a.sets);
        return code;
    }
    struct config *cfg = NULL;
    char *yaml = NULL;
    code = load_train_config(c, &a, &cfg, &yaml);
    free(a.sets);
    if (!code)
        code = run_training(c, &a, cfg, yaml);
    config_free(&cfg);
    free(yaml);
    return code;
}

static const char SWEEP_HELP[] =
    "usage: dmlp sweep CONFIG.yaml [--grid key=v1,v2,...]... [--seeds N] [--group-size G]\n"
    "                  [--set key=value]... [--resume auto] [--quiet]\n"
    "\n"
    "Trains many models in one MPI job: the cross product of the grids, times N seeds\n"
    "(training.seed, training.seed + 1, ...). The ranks form groups of G (default 1); each\n"
    "group takes the next member from a queue and trains it exactly as `dmlp train CONFIG\n"
    "--set ...` would on G ranks, into checkpoint.dir/member-NNN/. A member that fails is\n"
    "recorded and the sweep goes on; a bad grid key or value is refused before anything\n"
    "runs (exit 2). SIGUSR1/SIGTERM: every running member checkpoints, exit 75; --resume\n"
    "auto then skips finished members and resumes the others. At the end:\n"
    "checkpoint.dir/sweep.jsonl and a table sorted by validation (else training) loss.\n"
    "  --grid key=v1,v2,...   values of one config key (commas inside [...] stay in a value)\n"
    "  --seeds N              N seeds per grid point (default 1: the config's seed)\n"
    "  --group-size G         ranks per member; must divide the rank count\n";

/* dmlp sweep: the arguments into sweep_options, then the sweep. */
static int cmd_sweep(struct ctx *c, int argc, char **argv)
{
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    const char **grids = calloc((size_t)argc + 1, sizeof *grids);
    struct sweep_options o = {.sets = sets, .grids = grids, .seeds = 1, .group_size = 1,
                              .log = c->errout};
    struct dmlp_error e = {0};
    int code = !sets || !grids ? DMLP_ERR_RUNTIME : DMLP_OK;
    for (int i = 0; i < argc && !code && !e.code; i++) {
        const char *v = NULL;
        char *end;
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(SWEEP_HELP, c->out);
            free(sets);
            free(grids);
            return DMLP_OK;
        } else if (take_value(argc, argv, &i, "--set", &v, &e)) {
            if (v)
                sets[o.n_sets++] = v;
        } else if (take_value(argc, argv, &i, "--grid", &v, &e)) {
            if (v)
                grids[o.n_grids++] = v;
        } else if (take_value(argc, argv, &i, "--seeds", &v, &e)) {
            const long n = v ? strtol(v, &end, 10) : 0;
            if (v && (*end || n < 1 || n > 100000))
                code = usage_error(c, SWEEP_HELP, "sweep: --seeds %s: expected a count from "
                                   "1 to 100000", v);
            o.seeds = (unsigned)n;
        } else if (take_value(argc, argv, &i, "--group-size", &v, &e)) {
            const long n = v ? strtol(v, &end, 10) : 0;
            if (v && (*end || n < 1 || n > 1 << 20))
                code = usage_error(c, SWEEP_HELP, "sweep: --group-size %s: expected a "
                                   "positive rank count", v);
            o.group_size = (int)n;
        } else if (take_value(argc, argv, &i, "--resume", &v, &e)) {
            if (v && strcmp(v, "auto"))
                code = usage_error(c, SWEEP_HELP, "sweep: --resume %s: only 'auto' (each "
                                   "member continues from its own latest.h5)", v);
            o.resume = 1;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            o.log = NULL;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            code = usage_error(c, SWEEP_HELP, "sweep: unknown option '%s'", argv[i]);
        } else if (o.config_path) {
            code = usage_error(c, SWEEP_HELP, "sweep: unexpected argument '%s' (one config "
                               "file only)", argv[i]);
        } else {
            o.config_path = argv[i];
        }
    }
    if (!code && e.code)
        code = usage_error(c, SWEEP_HELP, "sweep: %s", e.msg);
    if (!code && !o.config_path)
        code = usage_error(c, SWEEP_HELP, "sweep: %s", "missing CONFIG.yaml");
    if (!code) {
        code = sweep_run(c->d, &o, &e);
        if (code && c->rank == 0)
            fprintf(c->errout, "dmlp: %s%s\n", code == DMLP_STOPPED ? "" : "error: ", e.msg);
    }
    free(sets);
    free(grids);
    return code;
}

/* eval of an ensemble: the mean of the members' outputs on the raw rows. */
static int eval_ensemble(struct ctx *c, const struct ckpt_list *l, const char *data,
                         struct metrics **mt, struct dmlp_error *e)
{
    struct ensemble ens;
    struct dataset *ds = NULL;
    if (ensemble_open(&ens, l->v, l->n, ENSEMBLE_CALL_ROWS, e) == DMLP_OK &&
        dataset_read(&ds, data, e) == DMLP_OK)
        dataset_check_network(ds, ens.m[0], data, e);
    if (e->code)
        dmlp_error_prefix(e, "eval");
    int code = finish(c, e);
    if (!code) {
        code = metrics_evaluate_ensemble(c->d, &ens, ds, mt, e);
        if (code && c->rank == 0)
            fprintf(c->errout, "dmlp: error: eval: %s: %s\n", data, e->msg);
    }
    ensemble_close(&ens);
    dataset_free(&ds);
    return code;
}

static int cmd_eval(struct ctx *c, int argc, char **argv)
{
    const char *data = NULL;
    int json = 0;
    struct dmlp_error e = {0};
    struct ckpt_list l = {.v = calloc((size_t)argc + 1, sizeof(char *))};
    if (!l.v)
        return DMLP_ERR_RUNTIME;
    int code = DMLP_OK;
    for (int i = 0; i < argc && !e.code && !code; i++) {
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(EVAL_HELP, c->out);
            free_ckpts(&l);
            return DMLP_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (take_ckpt(argc, argv, &i, &l, &e) ||
                   take_value(argc, argv, &i, "--data", &data, &e)) {
        } else {
            code = usage_error(c, EVAL_HELP, "eval: unexpected argument '%s'", argv[i]);
        }
    }
    if (!code && e.code)
        code = usage_error(c, EVAL_HELP, "eval: %s", e.msg);
    if (!code && ((!l.n && !l.sweep) || !data))
        code = usage_error(c, EVAL_HELP, "eval: %s", "--checkpoint (or --sweep) and --data "
                           "are required");
    if (code) {
        free_ckpts(&l);
        return code;
    }
    resolve_ckpts(&l, &e);
    if ((code = finish(c, &e))) {
        free_ckpts(&l);
        return code;
    }
    struct model *m = NULL;
    struct dataset *ds = NULL;
    struct metrics *mt = NULL;
    if (l.n > 1) {
        code = eval_ensemble(c, &l, data, &mt, &e);
    } else {
        if (model_load_checkpoint(l.v[0], &m, &e) == DMLP_OK &&
            dataset_read(&ds, data, &e) == DMLP_OK)
            standardize_for(m, ds, data, &e);
        if (e.code)
            dmlp_error_prefix(&e, "eval");
        code = finish(c, &e);
        if (!code) {
            code = metrics_evaluate(c->d, m, ds, &mt, &e);
            if (code && c->rank == 0)
                fprintf(c->errout, "dmlp: error: eval: %s: %s\n", data, e.msg);
        }
    }
    if (!code && c->rank == 0) {
        const char *fields[] = {"checkpoint", l.joined, "data", data, NULL};
        if (json)
            metrics_print_json(c->out, mt, fields, &e);
        else
            metrics_print_text(c->out, mt, &e);
        fflush(c->out);
    }
    metrics_free(&mt);
    model_free(&m);
    dataset_free(&ds);
    free_ckpts(&l);
    return code;
}

/* What a command writes must not be what it reads (the same file by inode: a hard link or
 * a symbolic link is caught too), nor a checkpoint, which may be a run's latest.h5: the
 * write would destroy its own input, or a run's state. */
static int check_output(const char *output, const char *const *inputs, size_t n,
                        struct dmlp_error *e)
{
    for (size_t i = 0; i < n; i++)
        if (inputs[i] && dmlp_same_file(output, inputs[i]))
            return dmlp_fail(e, DMLP_ERR_INPUT, "--output %s is the input %s: writing it would "
                             "destroy the input; choose another output path", output,
                             inputs[i]);
    if (checkpoint_is_checkpoint(output))
        return dmlp_fail(e, DMLP_ERR_INPUT, "--output %s is a dmlp checkpoint: a run's "
                         "checkpoints are never overwritten; choose another output path",
                         output);
    return DMLP_OK;
}

static int cmd_predict(struct ctx *c, int argc, char **argv)
{
    const char *input = NULL, *output = NULL;
    struct dmlp_error e = {0};
    struct ckpt_list l = {.v = calloc((size_t)argc + 1, sizeof(char *))};
    if (!l.v)
        return DMLP_ERR_RUNTIME;
    int code = DMLP_OK;
    for (int i = 0; i < argc && !e.code && !code; i++) {
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(PREDICT_HELP, c->out);
            free_ckpts(&l);
            return DMLP_OK;
        } else if (take_ckpt(argc, argv, &i, &l, &e) ||
                   take_value(argc, argv, &i, "--input", &input, &e) ||
                   take_value(argc, argv, &i, "--output", &output, &e)) {
        } else {
            code = usage_error(c, PREDICT_HELP, "predict: unexpected argument '%s'", argv[i]);
        }
    }
    if (!code && e.code)
        code = usage_error(c, PREDICT_HELP, "predict: %s", e.msg);
    if (!code && ((!l.n && !l.sweep) || !input || !output))
        code = usage_error(c, PREDICT_HELP, "predict: %s",
                           "--checkpoint (or --sweep), --input and --output are required");
    if (code) {
        free_ckpts(&l);
        return code;
    }
    struct model *m = NULL;
    struct dataset *ds = NULL;
    struct ensemble ens = {0};
    if (resolve_ckpts(&l, &e) == DMLP_OK) {
        const char **inputs = l.v; /* the checkpoints, then the input */
        inputs[l.n] = input;
        const int ok = check_output(output, inputs, l.n + 1, &e) == DMLP_OK;
        const int loaded = ok && (l.n > 1 ? ensemble_open(&ens, l.v, l.n,
                                                          ENSEMBLE_CALL_ROWS, &e)
                                          : model_load_checkpoint(l.v[0], &m, &e)) == DMLP_OK;
        if (loaded &&
            dataset_read_features(&ds, input, &e) == DMLP_OK && l.n == 1)
            standardize_for(m, ds, input, &e);
    }
    if (e.code)
        dmlp_error_prefix(&e, "predict");
    code = finish(c, &e);
    if (!code) {
        code = l.n > 1 ? predict_run_ensemble(c->d, &ens, ds, output, l.joined, input, &e)
                       : predict_run(c->d, m, ds, output, l.v[0], input, &e);
        if (code && c->rank == 0)
            fprintf(c->errout, "dmlp: error: %s\n", e.msg);
        else if (c->rank == 0)
            fprintf(c->errout, "predicted %zu rows of %s -> %s%s\n", ds->n, input, output,
                    l.n > 1 ? " (an ensemble's mean, std and entropy)" : "");
    }
    ensemble_close(&ens);
    model_free(&m);
    dataset_free(&ds);
    free_ckpts(&l);
    return code;
}

/* What import's command line asks for. */
struct import_args {
    int csv, help;
    const char *images, *labels, *output, *input, *label_col, *target_cols;
};

/* The arguments each format requires. */
static int check_import_args(struct ctx *c, const struct import_args *a)
{
    if (!a->csv && (!a->images || !a->labels || !a->output))
        return usage_error(c, IMPORT_HELP, "import idx: %s",
                           "--images, --labels and --output are required");
    if (a->csv && (!a->input || !a->output))
        return usage_error(c, IMPORT_HELP, "import csv: %s", "PATH and --output are required");
    if (a->csv && !a->label_col == !a->target_cols)
        return usage_error(c, IMPORT_HELP, "import csv: %s",
                           "give exactly one of --label-column and --target-columns");
    return DMLP_OK;
}

/* Fills a from the arguments after the format (argv[0]). Returns a usage error's code, or
 * DMLP_OK; a->help is set when --help was asked for (and printed). */
static int parse_import_args(struct ctx *c, int argc, char **argv, struct import_args *a)
{
    const int csv = a->csv;
    struct dmlp_error e = {0};
    for (int i = 1; i < argc && !e.code; i++) {
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(IMPORT_HELP, c->out);
            a->help = 1;
            return DMLP_OK;
        } else if (take_value(argc, argv, &i, "--output", &a->output, &e)) {
        } else if (!csv && (take_value(argc, argv, &i, "--images", &a->images, &e) ||
                            take_value(argc, argv, &i, "--labels", &a->labels, &e))) {
        } else if (csv && (take_value(argc, argv, &i, "--label-column", &a->label_col, &e) ||
                           take_value(argc, argv, &i, "--target-columns", &a->target_cols,
                                      &e))) {
        } else if (csv && !a->input && argv[i][0] != '-') {
            a->input = argv[i];
        } else {
            return usage_error(c, IMPORT_HELP, "import: unexpected argument '%s'", argv[i]);
        }
    }
    if (e.code)
        return usage_error(c, IMPORT_HELP, "import: %s", e.msg);
    return check_import_args(c, a);
}

/* Rank 0's part: the import itself, and its one line of report. */
static void import_dataset(struct ctx *c, const struct import_args *a, struct dmlp_error *e)
{
    const char *inputs[] = {a->input, a->images, a->labels};
    if (check_output(a->output, inputs, 3, e) != DMLP_OK)
        return;
    const int rc = a->csv ? dataset_import_csv(a->input, a->label_col, a->target_cols,
                                               a->output, e)
                          : dataset_import_idx(a->images, a->labels, a->output, e);
    if (rc == DMLP_OK && a->csv)
        fprintf(c->errout, "imported %s -> %s\n", a->input, a->output);
    else if (rc == DMLP_OK)
        fprintf(c->errout, "imported %s + %s -> %s\n", a->images, a->labels, a->output);
}

static int cmd_import(struct ctx *c, int argc, char **argv)
{
    if (argc < 1 || is_help(argv[0])) {
        if (argc < 1)
            return usage_error(c, IMPORT_HELP, "import: %s", "which format? (idx)");
        if (c->rank == 0)
            fputs(IMPORT_HELP, c->out);
        return DMLP_OK;
    }
    struct import_args a = {.csv = !strcmp(argv[0], "csv")};
    if (!a.csv && strcmp(argv[0], "idx") != 0)
        return usage_error(c, IMPORT_HELP, "import: unknown format '%s' (supported: idx, csv)",
                           argv[0]);
    const int code = parse_import_args(c, argc, argv, &a);
    if (code || a.help)
        return code;
    /* One writer: rank 0 imports, the others wait for its verdict. */
    struct dmlp_error e = {0};
    if (c->rank == 0)
        import_dataset(c, &a, &e);
    return finish(c, &e);
}

static int cmd_inspect(struct ctx *c, int argc, char **argv)
{
    if (argc >= 1 && is_help(argv[0])) {
        if (c->rank == 0)
            fputs(INSPECT_HELP, c->out);
        return DMLP_OK;
    }
    if (argc != 1)
        return usage_error(c, INSPECT_HELP, "inspect: %s", "expected exactly one PATH");
    struct dmlp_error e = {0};
    if (c->rank == 0 && dmlp_check_input_file(argv[0], &e) == DMLP_OK) {
        if (checkpoint_is_checkpoint(argv[0]))
            checkpoint_describe(c->out, argv[0], &e);
        else
            dataset_describe(c->out, argv[0], &e);
        fflush(c->out);
    }
    return finish(c, &e);
}

#if defined(__has_include)
#if __has_include("dmlp_build_info.h")
#include "dmlp_build_info.h" /* written by CMake */
#endif
#endif
#ifndef DMLP_BUILD_INFO
#define DMLP_BUILD_INFO "unknown"
#endif

/* The version and how this binary was built: what a bug report needs first. */
static void print_version(FILE *out)
{
    char mpi[256], h5[64];
    dist_library_version(mpi, sizeof mpi);
    checkpoint_hdf5_version(h5, sizeof h5);
    fprintf(out, "dmlp %s\n", DMLP_VERSION);
    fprintf(out, "  MPI       %s\n", mpi);
    fprintf(out, "  HDF5      %s\n", h5);
#ifdef _OPENMP
    fprintf(out, "  OpenMP    %d (%d threads available)\n", _OPENMP, omp_get_max_threads());
#endif
    fprintf(out, "  kernels   %s: %s (of %s; DMLP_KERNEL picks one)\n", kernel_backend(),
            kernel_backend_description(), kernel_backend_list());
    fprintf(out, "  compiler  %s\n", __VERSION__);
    fprintf(out, "  build     %s\n", DMLP_BUILD_INFO);
}

/* More OpenMP threads than 8 per core this process may use never pays, and an absurd
 * OMP_NUM_THREADS (100000, say) makes the OpenMP runtime fail to create its threads and
 * abort at the first parallel region: cap it, with a warning, before any runs. */
enum { THREADS_PER_CORE_MAX = 8 };
static void cap_threads(const struct ctx *c)
{
    char cpus[256];
    int cores = dmlp_affinity(cpus, sizeof cpus);
    if (cores < 1)
        cores = dmlp_cores_online();
    if (cores < 1)
        cores = 1;
    const int want = omp_get_max_threads(), cap = THREADS_PER_CORE_MAX * cores;
    if (want <= cap)
        return;
    omp_set_num_threads(cap);
    if (c->rank == 0)
        fprintf(c->errout, "dmlp: warning: OMP_NUM_THREADS asks for %d threads, more than %d "
                "per core this rank may use (%d): using %d\n", want, THREADS_PER_CORE_MAX,
                cores, cap);
}

/* A kernel named in the environment that this node's CPU cannot run is an error on every
 * rank (nodes of a mixed cluster may differ), agreed before any work starts. */
static int agree_on_kernel(struct ctx *c)
{
    struct dmlp_error e = {0};
    const char *bad_kernel;
    if (kernel_init(&bad_kernel))
        dmlp_fail(&e, DMLP_ERR_INPUT, "DMLP_KERNEL=%s: not a kernel this CPU runs (it runs "
                  "%s; or auto)", bad_kernel, kernel_backend_list());
    return finish(c, &e);
}

/* export onnx: rank 0 writes the file; every rank learns how it went. */
static int cmd_export(struct ctx *c, int argc, char **argv)
{
    if (argc < 1 || is_help(argv[0])) {
        if (argc < 1)
            return usage_error(c, EXPORT_HELP, "%s", "export: which format? (onnx)");
        if (c->rank == 0)
            fputs(EXPORT_HELP, c->out);
        return DMLP_OK;
    }
    if (strcmp(argv[0], "onnx"))
        return usage_error(c, EXPORT_HELP, "export: unknown format '%s' (onnx)", argv[0]);
    const char *ckpt = NULL, *output = NULL;
    struct dmlp_error e = {0};
    for (int i = 1; i < argc && !e.code; i++) {
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(EXPORT_HELP, c->out);
            return DMLP_OK;
        } else if (take_value(argc, argv, &i, "--checkpoint", &ckpt, &e) ||
                   take_value(argc, argv, &i, "--output", &output, &e)) {
        } else {
            return usage_error(c, EXPORT_HELP, "export: unexpected argument '%s'", argv[i]);
        }
    }
    if (e.code)
        return usage_error(c, EXPORT_HELP, "export: %s", e.msg);
    if (!ckpt || !output)
        return usage_error(c, EXPORT_HELP, "export: %s",
                           "--checkpoint and --output are required");
    struct model *m = NULL;
    const char *inputs[] = {ckpt};
    if (check_output(output, inputs, 1, &e) == DMLP_OK)
        model_load_checkpoint(ckpt, &m, &e);
    int code = finish(c, &e);
    if (!code && c->rank == 0)
        onnx_export(m, output, ckpt, &e);
    if (!code && !(code = finish(c, &e)) && c->rank == 0)
        fprintf(c->errout, "exported %s -> %s (ONNX, opset 13)\n", ckpt, output);
    model_free(&m);
    return code;
}

/* dmlp help TOPIC: the config keys, or a command's --help. */
static int help_topic(struct ctx *c, const char *topic)
{
    static const struct {
        const char *name, *text;
    } topics[] = {
        {"train", TRAIN_HELP},   {"sweep", SWEEP_HELP},     {"eval", EVAL_HELP},
        {"predict", PREDICT_HELP}, {"import", IMPORT_HELP}, {"inspect", INSPECT_HELP},
        {"export", EXPORT_HELP},
    };
    if (!strcmp(topic, "config")) {
        if (c->rank == 0)
            config_write_key_table(c->out);
        return DMLP_OK;
    }
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        if (!strcmp(topic, topics[i].name)) {
            if (c->rank == 0)
                fputs(topics[i].text, c->out);
            return DMLP_OK;
        }
    return usage_error(c, USAGE, "help: no topic '%s' (config, or a command)", topic);
}

/* Runs the command argv[1] names (help and --version included). */
static int run_command(struct ctx *c, int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd)
        return usage_error(c, USAGE, "%s", "missing command");
    if (!strcmp(cmd, "help") && argc > 2)
        return help_topic(c, argv[2]);
    if (is_help(cmd) || !strcmp(cmd, "help")) {
        if (c->rank == 0)
            fputs(USAGE, c->out);
        return DMLP_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        if (c->rank == 0)
            print_version(c->out);
        return DMLP_OK;
    }
    if (!strcmp(cmd, "train"))
        return cmd_train(c, argc - 2, argv + 2);
    if (!strcmp(cmd, "eval"))
        return cmd_eval(c, argc - 2, argv + 2);
    if (!strcmp(cmd, "sweep"))
        return cmd_sweep(c, argc - 2, argv + 2);
    if (!strcmp(cmd, "predict"))
        return cmd_predict(c, argc - 2, argv + 2);
    if (!strcmp(cmd, "import"))
        return cmd_import(c, argc - 2, argv + 2);
    if (!strcmp(cmd, "inspect"))
        return cmd_inspect(c, argc - 2, argv + 2);
    if (!strcmp(cmd, "export"))
        return cmd_export(c, argc - 2, argv + 2);
    return usage_error(c, USAGE, "unknown command '%s'", cmd);
}

int cli_main(int argc, char **argv, FILE *out, FILE *errout)
{
    struct ctx c = {.out = out, .errout = errout};
    struct dmlp_error e = {0};
    if (dist_create_world(&c.d, &e)) {
        fprintf(errout, "dmlp: error: %s\n", e.msg);
        return DMLP_ERR_RUNTIME;
    }
    c.rank = dist_rank(c.d);
    cap_threads(&c);
    int code = agree_on_kernel(&c); /* reported by finish */
    if (!code)
        code = run_command(&c, argc, argv);
    fflush(out);
    fflush(errout);
    dist_free(&c.d);
    return code;
}
