#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "model.h"
#include "train.h"
#include "util.h"

static const char USAGE[] =
    "usage: dmlp <command> [options]\n"
    "\n"
    "Data-parallel multilayer-perceptron training over MPI + OpenMP, with HDF5 data and\n"
    "checkpoints. Every command runs alone or under `mpirun -np N`.\n"
    "\n"
    "commands:\n"
    "  train CONFIG.yaml [--set key=value]... [--resume PATH|auto] [--init-from PATH]\n"
    "  eval --checkpoint PATH --data PATH [--json]\n"
    "  import idx --images PATH --labels PATH --output PATH\n"
    "  inspect PATH                     (a checkpoint or a dataset)\n"
    "  --version\n"
    "\n"
    "`dmlp <command> --help` describes each. Exit codes: 0 done, 1 runtime failure,\n"
    "2 bad usage, config or input file.\n";

static const char TRAIN_HELP[] =
    "usage: dmlp train CONFIG.yaml [--set key.path=value]... [--resume PATH|auto]\n"
    "                  [--init-from PATH]\n"
    "\n"
    "Trains the network CONFIG.yaml describes (see README.md for every key). The global\n"
    "batch (training.batch_size) is split across the ranks: rank r computes the r-th\n"
    "contiguous slice of each batch, so the trajectory does not depend on the rank count.\n"
    "\n"
    "  --set key.path=value  override a config value, e.g. --set optimizer.lr=0.1,\n"
    "                        --set model.layers[0].units=512, --set data.test=\n"
    "  --resume PATH|auto    continue from a checkpoint (weights, optimizer state,\n"
    "                        position); auto: checkpoint.dir/latest.h5 if it exists,\n"
    "                        else a fresh start. The config given now governs, so\n"
    "                        training.epochs can be raised; a different network is an error.\n"
    "  --init-from PATH      start from the /layers of a checkpoint (shapes checked),\n"
    "                        with a fresh optimizer and position\n"
    "\n"
    "Rank 0 prints one line per epoch. Checkpoints go to checkpoint.dir/step-NNNNNNNN.h5;\n"
    "latest.h5 names the newest.\n"
    "\n"
    "examples:\n"
    "  dmlp train configs/xor.yaml\n"
    "  mpirun -np 4 dmlp train configs/fashion_mnist.yaml --set training.epochs=20\n"
    "  mpirun -np 4 dmlp train configs/fashion_mnist.yaml --resume auto\n";

static const char EVAL_HELP[] =
    "usage: dmlp eval --checkpoint PATH --data PATH [--json]\n"
    "\n"
    "Evaluates a checkpoint's network on a dataset (split across the ranks; the result is\n"
    "the same for any rank count): mean loss, and accuracy for classifiers.\n"
    "  --json   print one JSON object {\"samples\":..,\"loss\":..,\"accuracy\":..}\n"
    "\n"
    "example:\n"
    "  dmlp eval --checkpoint runs/fashion_mnist/latest.h5 --data data/fashion_mnist_test.h5\n";

static const char IMPORT_HELP[] =
    "usage: dmlp import idx --images PATH --labels PATH --output PATH\n"
    "\n"
    "Converts MNIST-style IDX files (gzip-compressed or plain) into a dmlp dataset:\n"
    "/features float32 [N, rows*cols] with pixels scaled to [0, 1], /labels int32 [N].\n"
    "The output is written to a temporary file and renamed into place.\n"
    "\n"
    "example:\n"
    "  dmlp import idx --images train-images-idx3-ubyte.gz \\\n"
    "                  --labels train-labels-idx1-ubyte.gz --output data/train.h5\n";

static const char INSPECT_HELP[] =
    "usage: dmlp inspect PATH\n"
    "\n"
    "Describes a checkpoint (layers, shapes, activations, attributes, optimizer state) or a\n"
    "dataset (shapes, label kind, classes and their counts).\n"
    "\n"
    "example:\n"
    "  dmlp inspect runs/fashion_mnist/latest.h5\n";

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

static int cmd_train(struct ctx *c, int argc, char **argv)
{
    const char *config_path = NULL, *resume = NULL, *init_from = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    size_t n_sets = 0;
    struct dmlp_error e = {0};
    if (!sets)
        return DMLP_ERR_RUNTIME;
    for (int i = 0; i < argc && !e.code; i++) {
        const char *v = NULL;
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(TRAIN_HELP, c->out);
            free(sets);
            return DMLP_OK;
        } else if (take_value(argc, argv, &i, "--set", &v, &e)) {
            if (v)
                sets[n_sets++] = v;
        } else if (take_value(argc, argv, &i, "--resume", &v, &e)) {
            resume = v;
        } else if (take_value(argc, argv, &i, "--init-from", &v, &e)) {
            init_from = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(sets);
            return usage_error(c, TRAIN_HELP, "train: unknown option '%s'", argv[i]);
        } else if (config_path) {
            free(sets);
            return usage_error(c, TRAIN_HELP, "train: unexpected argument '%s' (one config "
                               "file only)", argv[i]);
        } else {
            config_path = argv[i];
        }
    }
    if (e.code) {
        free(sets);
        return usage_error(c, TRAIN_HELP, "train: %s", e.msg);
    }
    if (!config_path) {
        free(sets);
        return usage_error(c, TRAIN_HELP, "train: %s", "missing CONFIG.yaml");
    }
    if (resume && init_from) {
        free(sets);
        return usage_error(c, TRAIN_HELP, "train: %s", "--resume and --init-from exclude "
                           "each other");
    }
    if (resume && !resume[0]) {
        free(sets);
        return usage_error(c, TRAIN_HELP, "train: %s", "--resume needs a path or 'auto'");
    }

    struct config *cfg = NULL;
    char *yaml = NULL;
    if (config_load(&cfg, config_path, sets, n_sets, &e) == DMLP_OK)
        config_to_yaml(cfg, &yaml, &e);
    free(sets);
    int code = finish(c, &e);
    if (code) {
        config_free(&cfg);
        free(yaml);
        return code;
    }
    struct train_options opt = {.resume = resume, .init_from = init_from, .log = c->errout,
                                .save_checkpoints = 1};
    struct train_result res;
    code = train_run(c->d, cfg, yaml, &opt, &res, &e);
    if (code && c->rank == 0)
        fprintf(c->errout, "dmlp: error: %s\n", e.msg);
    model_free(&res.model);
    config_free(&cfg);
    free(yaml);
    return code;
}

static int cmd_eval(struct ctx *c, int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL;
    int json = 0;
    struct dmlp_error e = {0};
    for (int i = 0; i < argc && !e.code; i++) {
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(EVAL_HELP, c->out);
            return DMLP_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (take_value(argc, argv, &i, "--checkpoint", &ckpt, &e) ||
                   take_value(argc, argv, &i, "--data", &data, &e)) {
        } else {
            return usage_error(c, EVAL_HELP, "eval: unexpected argument '%s'", argv[i]);
        }
    }
    if (e.code)
        return usage_error(c, EVAL_HELP, "eval: %s", e.msg);
    if (!ckpt || !data)
        return usage_error(c, EVAL_HELP, "eval: %s", "--checkpoint and --data are required");

    size_t in_dim = 0, n_layers = 0;
    struct config_layer *layers = NULL;
    enum dmlp_loss loss = DMLP_LOSS_CROSS_ENTROPY;
    struct model *m = NULL;
    struct dataset *ds = NULL;
    if (checkpoint_read_network(ckpt, &in_dim, &layers, &n_layers, &loss, &e) == DMLP_OK &&
        model_create(&m, in_dim, layers, n_layers, loss, &e) == DMLP_OK &&
        checkpoint_load_layers(ckpt, m, &e) == DMLP_OK)
        dataset_read(&ds, data, &e);
    if (e.code)
        dmlp_error_prefix(&e, "eval");
    int code = finish(c, &e);
    struct eval_result r = {0};
    if (!code) {
        code = train_evaluate(c->d, m, ds, &r, &e);
        if (code && c->rank == 0)
            fprintf(c->errout, "dmlp: error: %s\n", e.msg);
    }
    if (!code && c->rank == 0) {
        if (json) {
            fprintf(c->out, "{\"checkpoint\": \"%s\", \"data\": \"%s\", \"samples\": %llu, "
                    "\"loss\": %.9g", ckpt, data, (unsigned long long)r.samples, r.loss);
            if (!isnan(r.accuracy))
                fprintf(c->out, ", \"correct\": %llu, \"accuracy\": %.9g",
                        (unsigned long long)r.correct, r.accuracy);
            fprintf(c->out, "}\n");
        } else {
            fprintf(c->out, "samples   %llu\nloss      %.6f\n", (unsigned long long)r.samples,
                    r.loss);
            if (!isnan(r.accuracy))
                fprintf(c->out, "accuracy  %.4f (%llu correct)\n", r.accuracy,
                        (unsigned long long)r.correct);
        }
        fflush(c->out);
    }
    free(layers);
    model_free(&m);
    dataset_free(&ds);
    return code;
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
    if (strcmp(argv[0], "idx") != 0)
        return usage_error(c, IMPORT_HELP, "import: unknown format '%s' (supported: idx)",
                           argv[0]);
    const char *images = NULL, *labels = NULL, *output = NULL;
    struct dmlp_error e = {0};
    for (int i = 1; i < argc && !e.code; i++) {
        if (is_help(argv[i])) {
            if (c->rank == 0)
                fputs(IMPORT_HELP, c->out);
            return DMLP_OK;
        } else if (take_value(argc, argv, &i, "--images", &images, &e) ||
                   take_value(argc, argv, &i, "--labels", &labels, &e) ||
                   take_value(argc, argv, &i, "--output", &output, &e)) {
        } else {
            return usage_error(c, IMPORT_HELP, "import idx: unexpected argument '%s'", argv[i]);
        }
    }
    if (e.code)
        return usage_error(c, IMPORT_HELP, "import idx: %s", e.msg);
    if (!images || !labels || !output)
        return usage_error(c, IMPORT_HELP, "import idx: %s",
                           "--images, --labels and --output are required");
    /* One writer: rank 0 imports, the others wait for its verdict. */
    if (c->rank == 0 && dataset_import_idx(images, labels, output, &e) == DMLP_OK)
        fprintf(c->errout, "imported %s + %s -> %s\n", images, labels, output);
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
    if (c->rank == 0) {
        if (checkpoint_is_checkpoint(argv[0]))
            checkpoint_describe(c->out, argv[0], &e);
        else
            dataset_describe(c->out, argv[0], &e);
        fflush(c->out);
    }
    return finish(c, &e);
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
    int code;
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd) {
        code = usage_error(&c, USAGE, "%s", "missing command");
    } else if (is_help(cmd) || !strcmp(cmd, "help")) {
        if (c.rank == 0)
            fputs(USAGE, out);
        code = DMLP_OK;
    } else if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        if (c.rank == 0)
            fprintf(out, "dmlp %s\n", DMLP_VERSION);
        code = DMLP_OK;
    } else if (!strcmp(cmd, "train")) {
        code = cmd_train(&c, argc - 2, argv + 2);
    } else if (!strcmp(cmd, "eval")) {
        code = cmd_eval(&c, argc - 2, argv + 2);
    } else if (!strcmp(cmd, "import")) {
        code = cmd_import(&c, argc - 2, argv + 2);
    } else if (!strcmp(cmd, "inspect")) {
        code = cmd_inspect(&c, argc - 2, argv + 2);
    } else {
        code = usage_error(&c, USAGE, "unknown command '%s'", cmd);
    }
    fflush(out);
    fflush(errout);
    dist_free(&c.d);
    return code;
}
