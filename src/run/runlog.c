#define _POSIX_C_SOURCE 200809L
#include "run/runlog.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/json.h"

const char *const runlog_timer_names[TIMER_COUNT] = {
    "data", "forward", "backward", "sync", "allreduce", "update", "eval", "checkpoint"};

struct runlog {
    FILE *f;
    char path[PATH_MAX];
};


int runlog_open(struct runlog **out, const char *dir, struct dmlp_error *err)
{
    *out = NULL;
    struct runlog *r = calloc(1, sizeof *r);
    if (!r)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    snprintf(r->path, sizeof r->path, "%s/metrics.jsonl", dir);
    if (dmlp_mkdir_p(dir) || !(r->f = fopen(r->path, "a"))) {
        int e = errno;
        free(r);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s/metrics.jsonl: cannot open for writing: %s",
                         dir, strerror(e));
    }
    *out = r;
    return DMLP_OK;
}

void runlog_close(struct runlog **log)
{
    if (!*log)
        return;
    fclose((*log)->f);
    free(*log);
    *log = NULL;
}

static void put_number(FILE *f, const char *key, double v)
{
    fprintf(f, ", \"%s\": ", key);
    json_put_number(f, v);
}

void runlog_start(struct runlog *log, const char *config_yaml, int ranks, int threads,
                  uint64_t epoch, uint64_t step, const char *resumed_from)
{
    FILE *f = log->f;
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "{\"event\": \"start\", \"time\": \"%s\", \"dmlp_version\": \"%s\", "
            "\"ranks\": %d, \"threads\": %d, \"epoch\": %llu, \"step\": %llu, \"resumed_from\": ",
            when, DMLP_VERSION, ranks, threads, (unsigned long long)epoch,
            (unsigned long long)step);
    if (resumed_from)
        json_put_string(f, resumed_from);
    else
        fputs("null", f);
    fputs(", \"config\": ", f);
    json_put_string(f, config_yaml ? config_yaml : "");
    fputs("}\n", f);
    fflush(f);
}

void runlog_epoch(struct runlog *log, const struct runlog_epoch *e)
{
    FILE *f = log->f;
    fprintf(f, "{\"event\": \"epoch\", \"epoch\": %llu, \"step\": %llu",
            (unsigned long long)e->epoch, (unsigned long long)e->step);
    put_number(f, "lr", e->lr);
    put_number(f, "train_loss", e->train_loss);
    put_number(f, "train_accuracy", e->train_accuracy);
    put_number(f, "val_loss", e->val_loss);
    put_number(f, "val_accuracy", e->val_accuracy);
    put_number(f, "test_loss", e->test_loss);
    put_number(f, "test_accuracy", e->test_accuracy);
    put_number(f, "samples_per_second", e->samples_per_second);
    put_number(f, "epoch_seconds", e->epoch_seconds);
    fputs(", \"timers\": {", f);
    for (int t = 0; t < TIMER_COUNT; t++)
        fprintf(f, "%s\"%s\": {\"min\": %.6g, \"mean\": %.6g, \"max\": %.6g, "
                "\"max_rank\": %d}", t ? ", " : "", runlog_timer_names[t], e->t_min[t],
                e->t_mean[t], e->t_max[t], e->t_max_rank[t]);
    fputs("}}\n", f);
    fflush(f);
}

void runlog_progress(FILE *f, uint64_t epoch, uint32_t epochs, uint64_t step, uint64_t steps,
                     double loss, double samples_per_second, double eta_seconds)
{
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    const size_t filled = steps ? (size_t)(WIDTH * step / steps) : 0;
    for (size_t i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[WIDTH] = '\0';
    fprintf(f, "\repoch %llu/%u [%s] %llu/%llu  loss %.4f  %.0f samples/s  ETA %.0fs\033[K",
            (unsigned long long)epoch, epochs, bar, (unsigned long long)step,
            (unsigned long long)steps, loss, samples_per_second,
            eta_seconds > 0 ? eta_seconds : 0.0);
    fflush(f);
}

void runlog_progress_clear(FILE *f)
{
    fputs("\r\033[K", f);
    fflush(f);
}
