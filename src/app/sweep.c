#define _POSIX_C_SOURCE 200809L
/* sweep: dmlp sweep (sweep.h). */
#include "app/sweep.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "app/config.h"
#include "core/json.h"
#include "core/publish.h"
#include "run/stop.h"
#include "run/train.h"

enum { MEMBER_NONE, MEMBER_DONE, MEMBER_FAILED, MEMBER_STOPPED };
static const char *const status_names[] = {"none", "done", "failed", "stopped"};

/* One member's figures, as doubles so that one sum gathers them from the groups (each
 * member is filled by the one group that trained it, zeros elsewhere). */
enum { F_STATUS, F_SECONDS, F_EPOCHS, F_TRAIN, F_VAL, F_TEST, F_BEST, F_BEST_EPOCH, N_FIELDS };
enum { MESSAGE = 512, SETTINGS = 512 };

struct grid {
    char *key;
    char **values;
    size_t n;
};

struct sweep {
    const struct sweep_options *o;
    const struct train_cache *cache; /* the base config's data, read once per node */
    struct grid *grid;
    size_t n_members;
    struct config *base;       /* the config with the sweep's --set values: its seed and
                                  checkpoint.dir are the members' base, its data the
                                  node's copy */
    double *fig;               /* [n_members][N_FIELDS] */
    unsigned char *message;    /* [n_members][MESSAGE] */
};

/* ---- the grid and the members ---------------------------------------------------------- */

/* "key=v1,v2,[1,2]": the key, and the values split at the commas outside brackets. */
static int parse_grid(const char *arg, struct grid *g, struct dmlp_error *err)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return dmlp_fail(err, DMLP_ERR_INPUT, "--grid %s: expected key=v1,v2,... (e.g. "
                         "--grid optimizer.lr=0.01,0.1)", arg);
    if (!(g->key = strndup(arg, (size_t)(eq - arg))))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    const char *v = eq + 1;
    size_t cap = strlen(v) / 2 + 2;
    if (!(g->values = calloc(cap, sizeof *g->values)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    int depth = 0;
    for (const char *p = v, *start = v;; p++) {
        depth += (*p == '[' || *p == '{') - (*p == ']' || *p == '}');
        if (*p && (*p != ',' || depth > 0))
            continue;
        if (p == start)
            return dmlp_fail(err, DMLP_ERR_INPUT, "--grid %s: value %zu is empty", arg,
                             g->n + 1);
        if (!(g->values[g->n++] = strndup(start, (size_t)(p - start))))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
        if (!*p)
            break;
        start = p + 1;
    }
    return DMLP_OK;
}

static void free_grids(struct grid *g, size_t n)
{
    for (size_t i = 0; g && i < n; i++) {
        for (size_t j = 0; j < g[i].n; j++)
            free(g[i].values[j]);
        free(g[i].values);
        free(g[i].key);
    }
    free(g);
}

/* Member m's value index in grid i and its seed offset: the seeds vary fastest, then the
 * last grid. */
static size_t value_of(const struct sweep *s, size_t m, size_t i)
{
    size_t rest = m / s->o->seeds;
    for (size_t j = s->o->n_grids; j-- > i + 1;)
        rest /= s->grid[j].n;
    return rest % s->grid[i].n;
}

/* Member m's training.seed: the base's, plus its place among the seeds. */
static unsigned long long member_seed(const struct sweep *s, size_t m)
{
    return (unsigned long long)s->base->training.seed + m % s->o->seeds;
}

/* The --set list of member m (the caller frees each string and the array): the sweep's
 * own --set values, then the member's grid values, its seed and its checkpoint.dir. */
static char **member_sets(const struct sweep *s, size_t m, size_t *n)
{
    const struct sweep_options *o = s->o;
    char **v = calloc(o->n_sets + o->n_grids + 2, sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    int bad = 0;
    for (size_t i = 0; i < o->n_sets; i++)
        bad |= !(v[(*n)++] = strdup(o->sets[i]));
    for (size_t i = 0; i < o->n_grids; i++) {
        const struct grid *g = &s->grid[i];
        const char *val = g->values[value_of(s, m, i)];
        const size_t len = strlen(g->key) + strlen(val) + 2;
        if ((v[*n] = malloc(len)))
            snprintf(v[*n], len, "%s=%s", g->key, val);
        bad |= !v[(*n)++];
    }
    char buf[4200];
    if (o->seeds > 1) {
        snprintf(buf, sizeof buf, "training.seed=%llu", member_seed(s, m));
        bad |= !(v[(*n)++] = strdup(buf));
    }
    snprintf(buf, sizeof buf, "checkpoint.dir=%s/member-%03zu", s->base->checkpoint.dir, m);
    bad |= !(v[(*n)++] = strdup(buf));
    if (bad) {
        for (size_t i = 0; i < *n; i++)
            free(v[i]);
        free(v);
        return NULL;
    }
    return v;
}

static void free_sets(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* "optimizer.lr=0.1 training.seed=43": what sets member m apart, for reports. */
static void member_settings(const struct sweep *s, size_t m, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < s->o->n_grids && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s=%s", i ? " " : "",
                                 s->grid[i].key, s->grid[i].values[value_of(s, m, i)]);
    if (s->o->seeds > 1 && used < cap)
        snprintf(out + used, cap - used, "%straining.seed=%llu", used ? " " : "",
                 member_seed(s, m));
}

/* Member m's config and its YAML (for its checkpoints); an error names the member. */
static int member_config(const struct sweep *s, size_t m, struct config **cfg, char **yaml,
                         struct dmlp_error *err)
{
    size_t n;
    char **sets = member_sets(s, m, &n);
    *cfg = NULL;
    *yaml = NULL;
    if (!sets)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    int rc = config_load(cfg, s->o->config_path, (const char *const *)sets, n, err);
    if (rc == DMLP_OK)
        rc = config_to_yaml(*cfg, yaml, err);
    free_sets(sets, n);
    if (rc != DMLP_OK) {
        char who[SETTINGS];
        member_settings(s, m, who, sizeof who);
        dmlp_error_prefix(err, "sweep: member %zu (%s)", m, who);
        config_free(cfg);
    }
    return rc;
}

/* The grids parsed, the base config's seed and directory, and every member's config
 * checked before anything runs. The same on every rank: no MPI. */
static int plan(struct sweep *s, struct dmlp_error *err)
{
    const struct sweep_options *o = s->o;
    if (!(s->grid = calloc(o->n_grids ? o->n_grids : 1, sizeof *s->grid)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    s->n_members = o->seeds;
    for (size_t i = 0; i < o->n_grids; i++) {
        int rc = parse_grid(o->grids[i], &s->grid[i], err);
        if (rc != DMLP_OK)
            return rc;
        if (s->n_members > 100000 / s->grid[i].n)
            return dmlp_fail(err, DMLP_ERR_INPUT, "--grid: more than 100000 members");
        s->n_members *= s->grid[i].n;
    }
    if (config_load(&s->base, o->config_path, o->sets, o->n_sets, err) != DMLP_OK)
        return err->code;
    for (size_t m = 0; m < s->n_members; m++) {
        struct config *cfg;
        char *yaml;
        if (member_config(s, m, &cfg, &yaml, err) != DMLP_OK)
            return err->code;
        config_free(&cfg);
        free(yaml);
    }
    s->fig = calloc(s->n_members * N_FIELDS, sizeof *s->fig);
    s->message = calloc(s->n_members, MESSAGE);
    if (!s->fig || !s->message)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    return DMLP_OK;
}

/* ---- a member's result file ------------------------------------------------------------ */

static void result_path(const struct sweep *s, size_t m, char *out, size_t cap)
{
    snprintf(out, cap, "%s/member-%03zu/result.txt", s->base->checkpoint.dir, m);
}

/* Member m's figures into its result file (by the group's first rank), through a
 * temporary file renamed into place. */
static void write_result(const struct sweep *s, size_t m)
{
    char path[4200], dir[4200];
    snprintf(dir, sizeof dir, "%s/member-%03zu", s->base->checkpoint.dir, m);
    mkdir(s->base->checkpoint.dir, 0777);
    mkdir(dir, 0777);
    result_path(s, m, path, sizeof path);
    const double *f = s->fig + m * N_FIELDS;
    char text[MESSAGE + 512];
    const int len = snprintf(text, sizeof text, "status %s\nseconds %.17g\nepochs %.17g\n"
                             "train_loss %.17g\nval_loss %.17g\ntest_accuracy %.17g\n"
                             "best_metric %.17g\nbest_epoch %.17g\nmessage %s\n",
                             status_names[(int)f[F_STATUS]], f[F_SECONDS], f[F_EPOCHS],
                             f[F_TRAIN], f[F_VAL], f[F_TEST], f[F_BEST], f[F_BEST_EPOCH],
                             (const char *)s->message + m * MESSAGE);
    struct publish p;
    struct dmlp_error e = {0};
    if (publish_begin(&p, path, &e) == DMLP_OK &&
        publish_write(&p, text, (size_t)len, "the result", &e) == DMLP_OK)
        publish_commit(&p, &e);
    if (e.code && s->o->log)
        fprintf(s->o->log, "sweep: warning: %s\n", e.msg);
}

/* A finished member's figures from its result file; 0 when there is none (or it is not a
 * finished member's). */
static int read_result(struct sweep *s, size_t m)
{
    char path[4200], line[MESSAGE + 64], name[32];
    result_path(s, m, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    double *fig = s->fig + m * N_FIELDS;
    static const char *const keys[N_FIELDS] = {"status", "seconds", "epochs", "train_loss",
                                               "val_loss", "test_accuracy", "best_metric",
                                               "best_epoch"};
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "%31s", name) != 1)
            continue;
        const char *v = line + strlen(name) + (line[strlen(name)] == ' ');
        if (!strcmp(name, "message"))
            snprintf((char *)s->message + m * MESSAGE, MESSAGE, "%s", v);
        else if (!strcmp(name, "status"))
            fig[F_STATUS] = !strcmp(v, "done") ? MEMBER_DONE : !strcmp(v, "failed")
                                                                   ? MEMBER_FAILED : 0;
        else
            for (int k = 1; k < N_FIELDS; k++)
                if (!strcmp(name, keys[k]))
                    fig[k] = strtod(v, NULL);
    }
    fclose(f);
    return fig[F_STATUS] == MEMBER_DONE || fig[F_STATUS] == MEMBER_FAILED;
}

/* ---- running ------------------------------------------------------------------------- */

/* Trains member m on the group g (or, resumed, takes its finished result). The group's
 * first rank keeps the figures and reports. Returns the member's status, the same on
 * every rank of g. */
static int run_member(struct sweep *s, const struct dist *g, size_t m)
{
    const int leader = dist_rank(g) == 0;
    double *fig = s->fig + m * N_FIELDS;
    char *msg = (char *)s->message + m * MESSAGE, who[SETTINGS];
    member_settings(s, m, who, sizeof who);
    int finished = s->o->resume && leader && read_result(s, m);
    dist_bcast(g, &finished, sizeof finished, 0);
    if (finished) {
        if (leader && s->o->log)
            fprintf(s->o->log, "sweep: member %03zu [%s]: %s already\n", m, who,
                    status_names[(int)fig[F_STATUS]]);
        return MEMBER_DONE;
    }
    struct config *cfg = NULL;
    char *yaml = NULL;
    struct dmlp_error e = {0};
    struct train_result res;
    memset(&res, 0, sizeof res);
    res.train_loss = res.val_loss = res.test_accuracy = res.best_metric = NAN;
    const struct train_options opt = {.resume = s->o->resume ? "auto" : NULL, .log = NULL,
                                      .save_checkpoints = 1, .verbosity = 0,
                                      .cache = s->cache};
    const double t0 = dmlp_now();
    /* Agreed: a rank that could not build the config (out of memory) must not leave the
     * others alone in train_run's collectives. */
    member_config(s, m, &cfg, &yaml, &e);
    int rc = dist_agree(g, &e);
    if (rc == DMLP_OK)
        rc = train_run(g, cfg, yaml, &opt, &res, &e);
    fig[F_SECONDS] = dmlp_now() - t0;
    const int status = rc == DMLP_OK ? MEMBER_DONE : rc == DMLP_STOPPED ? MEMBER_STOPPED
                                                                      : MEMBER_FAILED;
    fig[F_STATUS] = status;
    fig[F_EPOCHS] = (double)res.epochs_done;
    fig[F_TRAIN] = rc == DMLP_OK ? res.train_loss : NAN; /* a failed run's are not figures */
    fig[F_VAL] = rc == DMLP_OK ? res.val_loss : NAN;
    fig[F_TEST] = rc == DMLP_OK ? res.test_accuracy : NAN;
    fig[F_BEST] = rc == DMLP_OK ? res.best_metric : NAN;
    fig[F_BEST_EPOCH] = rc == DMLP_OK ? (double)res.best_epoch : 0.0;
    snprintf(msg, MESSAGE, "%.*s", MESSAGE - 1, rc == DMLP_OK ? "" : e.msg);
    model_free(&res.model);
    config_free(&cfg);
    free(yaml);
    if (!leader) {
        memset(fig, 0, N_FIELDS * sizeof *fig); /* the leader's copy is the one summed */
        memset(msg, 0, MESSAGE);
        return status;
    }
    if (fig[F_STATUS] != MEMBER_STOPPED)
        write_result(s, m);
    if (s->o->log) {
        if (rc == DMLP_OK)
            fprintf(s->o->log, "sweep: member %03zu [%s]: done in %.1f s, train_loss %.6g, "
                    "val_loss %.6g\n", m, who, fig[F_SECONDS], fig[F_TRAIN], fig[F_VAL]);
        else
            fprintf(s->o->log, "sweep: member %03zu [%s]: %s: %s\n", m, who,
                    status_names[(int)fig[F_STATUS]], msg);
        fflush(s->o->log);
    }
    return status;
}

/* The group's members, one after another, from the queue until it is empty or a stop
 * comes (a member stopped by it, or a request on the group's first rank). Collective
 * over g. */
static void run_group(struct sweep *s, const struct dist *g, struct dist_counter *queue)
{
    for (;;) {
        uint64_t m = UINT64_MAX;
        if (dist_rank(g) == 0 && !stop_requested())
            m = dist_counter_next(queue);
        dist_bcast(g, &m, sizeof m, 0);
        if (m >= s->n_members || run_member(s, g, (size_t)m) == MEMBER_STOPPED)
            return;
    }
}

/* ---- the report -------------------------------------------------------------------------- */

/* The metric members are ranked by: the validation loss, else the training loss; failed
 * and unfinished members last. */
static double rank_key(const double *f)
{
    if (f[F_STATUS] != MEMBER_DONE)
        return INFINITY;
    return isnan(f[F_VAL]) ? (isnan(f[F_TRAIN]) ? INFINITY : f[F_TRAIN]) : f[F_VAL];
}

static const double *g_sort_fig;

static int by_metric(const void *a, const void *b)
{
    const size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const double x = rank_key(g_sort_fig + i * N_FIELDS), y = rank_key(g_sort_fig + j * N_FIELDS);
    return x < y ? -1 : x > y ? 1 : (i > j) - (i < j);
}

/* checkpoint.dir/sweep.jsonl: one line per member, in member order. */
static void write_jsonl(const struct sweep *s, struct dmlp_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.jsonl", s->base->checkpoint.dir);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", path);
        return;
    }
    static const char *const names[N_FIELDS] = {"status", "seconds", "epochs", "train_loss",
                                                "val_loss", "test_accuracy", "best_metric",
                                                "best_epoch"};
    for (size_t m = 0; m < s->n_members; m++) {
        const double *fig = s->fig + m * N_FIELDS;
        fprintf(f, "{\"member\": %zu, \"dir\": ", m);
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/member-%03zu", s->base->checkpoint.dir, m);
        json_put_string(f, dir);
        fputs(", \"settings\": {", f);
        for (size_t i = 0; i < s->o->n_grids; i++) {
            fputs(i ? ", " : "", f);
            json_put_string(f, s->grid[i].key);
            fputs(": ", f);
            json_put_string(f, s->grid[i].values[value_of(s, m, i)]);
        }
        if (s->o->seeds > 1)
            fprintf(f, "%s\"training.seed\": \"%llu\"", s->o->n_grids ? ", " : "",
                    member_seed(s, m));
        fputs("}, \"status\": ", f);
        json_put_string(f, status_names[(int)fig[F_STATUS]]);
        for (int k = 1; k < N_FIELDS; k++) {
            fprintf(f, ", \"%s\": ", names[k]);
            json_put_number(f, fig[k]);
        }
        fputs(", \"message\": ", f);
        json_put_string(f, (const char *)s->message + m * MESSAGE);
        fputs("}\n", f);
    }
    fclose(f);
    struct publish p;
    mkdir(s->base->checkpoint.dir, 0777);
    if (publish_begin(&p, path, err) == DMLP_OK &&
        publish_write(&p, buf, len, "the sweep's results", err) == DMLP_OK)
        publish_commit(&p, err);
    free(buf);
}

/* The members sorted by their metric. */
static void print_table(const struct sweep *s, FILE *out)
{
    size_t *order = malloc(s->n_members * sizeof *order);
    if (!order)
        return;
    for (size_t m = 0; m < s->n_members; m++)
        order[m] = m;
    g_sort_fig = s->fig;
    qsort(order, s->n_members, sizeof *order, by_metric);
    fprintf(out, "sweep: %zu members, sorted by validation loss (else training loss); "
            "results in %s/sweep.jsonl\n", s->n_members, s->base->checkpoint.dir);
    fprintf(out, "%6s  %-8s %12s %12s %10s %9s  %s\n", "member", "status", "val_loss",
            "train_loss", "test_acc", "seconds", "settings");
    for (size_t r = 0; r < s->n_members; r++) {
        const size_t m = order[r];
        const double *f = s->fig + m * N_FIELDS;
        char who[SETTINGS];
        member_settings(s, m, who, sizeof who);
        fprintf(out, "%6zu  %-8s %12.6g %12.6g %10.4g %9.1f  %s\n", m,
                status_names[(int)f[F_STATUS]], f[F_VAL], f[F_TRAIN], f[F_TEST],
                f[F_SECONDS], who);
    }
    free(order);
}

/* A finished member of a sweep.jsonl line: its directory and ranking metric. */
struct ranked {
    char *dir;
    double key;
};

static int by_key(const void *a, const void *b)
{
    const double x = ((const struct ranked *)a)->key, y = ((const struct ranked *)b)->key;
    return x < y ? -1 : x > y;
}

/* A number field of one of sweep.jsonl's lines (null: NaN). */
static double field(const char *line, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\": ", name);
    const char *p = strstr(line, key);
    if (!p || !strncmp(p + strlen(key), "null", 4))
        return NAN;
    return strtod(p + strlen(key), NULL);
}

int sweep_best_members(const char *dir, size_t top, char ***paths, size_t *n,
                       struct dmlp_error *err)
{
    char path[4200], line[8192];
    snprintf(path, sizeof path, "%s/sweep.jsonl", dir);
    *paths = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s (is %s a sweep's "
                         "checkpoint.dir?)", path, strerror(errno), dir);
    struct ranked *r = NULL;
    size_t count = 0, cap = 0;
    int rc = DMLP_OK;
    while (rc == DMLP_OK && fgets(line, sizeof line, f)) {
        const char *d = strstr(line, "\"dir\": \"");
        if (!d || !strstr(line, "\"status\": \"done\""))
            continue;
        d += 8;
        const size_t len = strcspn(d, "\"");
        const double v = field(line, "val_loss"), t = field(line, "train_loss");
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            struct ranked *g = realloc(r, cap * sizeof *r);
            if (!g) {
                rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
                break;
            }
            r = g;
        }
        r[count].key = isnan(v) ? (isnan(t) ? INFINITY : t) : v;
        if (!(r[count].dir = strndup(d, len)))
            rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
        else
            count++;
    }
    fclose(f);
    if (rc == DMLP_OK && count == 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: no finished member", path);
    if (rc == DMLP_OK) {
        qsort(r, count, sizeof *r, by_key); /* stable enough: keys tie only by chance */
        *n = top < count ? top : count;
        if (!(*paths = calloc(*n, sizeof **paths)))
            rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
        for (size_t i = 0; rc == DMLP_OK && i < *n; i++) {
            const size_t len = strlen(r[i].dir) + 16;
            if (((*paths)[i] = malloc(len)))
                snprintf((*paths)[i], len, "%s/latest.h5", r[i].dir);
            else
                rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
        }
    }
    for (size_t i = 0; i < count; i++)
        free(r[i].dir);
    free(r);
    return rc;
}

int sweep_run(const struct dist *d, const struct sweep_options *o, struct dmlp_error *err)
{
    struct sweep s = {.o = o};
    struct dist *group = NULL;
    struct dist_counter *queue = NULL;
    struct dmlp_error e = {0};
    struct train_cache cache = {0};
    struct train_cache_store *store = NULL;
    plan(&s, &e);
    if (!e.code && dist_size(d) % o->group_size)
        dmlp_fail(&e, DMLP_ERR_INPUT, "--group-size %d does not divide the %d ranks",
                  o->group_size, dist_size(d));
    /* The base config's data, read once per node for every member that uses them. */
    if (!dist_agree(d, &e) && train_cache_open(d, s.base, &store, &cache, &e) == DMLP_OK)
        dist_split(d, dist_rank(d) / o->group_size, &group, &e);
    if (!dist_agree(d, &e) && dist_counter_create(&queue, d, &e) == DMLP_OK) {
        s.cache = store ? &cache : NULL;
        if (dist_rank(d) == 0 && o->log)
            fprintf(o->log, "sweep: %zu members on %d groups of %d rank%s\n", s.n_members,
                    dist_size(d) / o->group_size, o->group_size, o->group_size > 1 ? "s" : "");
        if (dist_rank(d) == 0 && o->log && store)
            fprintf(o->log, "sweep: data read once per node (%zu training rows), shared by "
                    "the node's ranks; members with these files copy them\n",
                    cache.set[0]->n);
        run_group(&s, group, queue);
        /* every member was filled by one group's first rank: sums gather them */
        dist_allreduce_sum_double(d, s.fig, s.n_members * N_FIELDS);
        dist_allreduce_max_bytes(d, s.message, s.n_members * MESSAGE);
        int stopped = 0;
        for (size_t m = 0; m < s.n_members; m++)
            stopped |= s.fig[m * N_FIELDS + F_STATUS] != MEMBER_DONE &&
                       s.fig[m * N_FIELDS + F_STATUS] != MEMBER_FAILED;
        if (dist_rank(d) == 0) {
            write_jsonl(&s, &e);
            if (o->log)
                print_table(&s, o->log);
        }
        if (!dist_agree(d, &e) && stopped)
            dmlp_fail(&e, DMLP_STOPPED, "sweep stopped by a signal; the running members "
                      "wrote checkpoints: rerun with --resume auto to continue");
    }
    dist_counter_free(&queue);
    dist_free(&group);
    train_cache_close(&store);
    config_free(&s.base);
    free_grids(s.grid, o->n_grids);
    free(s.fig);
    free(s.message);
    *err = e;
    return e.code;
}
