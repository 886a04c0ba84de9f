/* metrics: evaluation accumulators (plain count and sum arrays, summable across ranks),
 * the figures derived from them, their JSON and text reports, and the split-reduce
 * evaluation of a model on a dataset. */
#include "run/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/activation.h"
#include "core/json.h"
#include "run/ensemble.h"
#include "core/partition.h"

struct metrics {
    size_t k;
    int is_classifier;
    size_t n_counts, n_sums;
    uint64_t *counts;  /* classifier: [k×k confusion, samples]; regression: [samples] */
    double *sums;      /* [loss] or [loss, sq[k], abs[k], t[k], t2[k]] */
};

enum { METRICS_EVAL_CHUNK = 512, METRICS_TEXT_MAX_CLASSES = 20 };
_Static_assert((int)METRICS_EVAL_CHUNK <= (int)ENSEMBLE_CALL_ROWS,
               "an ensemble takes a chunk per call");

/* Relative size below which SS_tot counts as zero (see metrics_target_r2). */
static const double R2_CONSTANT_REL = 1e-12;

static uint64_t samples_of(const struct metrics *m);
static const char *text_number(char *buf, size_t cap, const char *fmt, double v);
static void json_fields(FILE *f, const char *const *fields);
static void json_classifier(FILE *f, const struct metrics *m, const struct metrics_report *r);
static void json_regression(FILE *f, const struct metrics *m, const struct metrics_report *r);

/* ---- public functions -------------------------------------------------------------------- */

int metrics_create(struct metrics **out, size_t k, int is_classifier, struct dmlp_error *err)
{
    *out = NULL;
    if (k == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "metrics: need at least one %s",
                         is_classifier ? "class" : "target column");
    size_t n_counts = 1, n_sums = 1;
    if (is_classifier) {
        if (dmlp_mul_size(&n_counts, k, k) || dmlp_add_size(&n_counts, n_counts, 1) ||
            n_counts > SIZE_MAX / sizeof(uint64_t))
            return dmlp_fail(err, DMLP_ERR_INPUT, "metrics: a confusion matrix of %zu classes "
                             "overflows size_t", k);
    } else if (k > (SIZE_MAX / sizeof(double) - 1) / 4) {
        return dmlp_fail(err, DMLP_ERR_INPUT, "metrics: %zu target columns overflow size_t",
                         k);
    } else {
        n_sums = 1 + 4 * k;
    }
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "metrics: out of memory");
    m->k = k;
    m->is_classifier = is_classifier != 0;
    m->n_counts = n_counts;
    m->n_sums = n_sums;
    m->counts = calloc(n_counts, sizeof *m->counts);
    m->sums = calloc(n_sums, sizeof *m->sums);
    if (!m->counts || !m->sums) {
        metrics_free(&m);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "metrics: out of memory for %zu counts and "
                         "%zu sums", n_counts, n_sums);
    }
    *out = m;
    return DMLP_OK;
}

void metrics_free(struct metrics **m)
{
    if (!m || !*m)
        return;
    free((*m)->counts);
    free((*m)->sums);
    free(*m);
    *m = NULL;
}


void metrics_reset(struct metrics *m)
{
    memset(m->counts, 0, m->n_counts * sizeof *m->counts);
    memset(m->sums, 0, m->n_sums * sizeof *m->sums);
}

int metrics_add_batch(struct metrics *m, const float *Y, const int32_t *labels,
                      const float *targets, size_t b, double loss_sum,
                      struct dmlp_error *err)
{
    const size_t k = m->k;
    if (m->is_classifier) {
        if (!labels)
            return dmlp_fail(err, DMLP_ERR_INPUT, "metrics: a classifier's batch needs labels");
        /* Validate the whole batch first, so a bad batch adds nothing. */
        for (size_t i = 0; i < b; i++)
            if (labels[i] < 0 || (size_t)labels[i] >= k)
                return dmlp_fail(err, DMLP_ERR_INPUT, "metrics: label %" PRId32 " at row %zu "
                                 "of the batch is outside [0, %zu)", labels[i], i, k);
        for (size_t i = 0; i < b; i++)
            m->counts[(size_t)labels[i] * k + dmlp_argmax(Y + i * k, k)]++;
        m->counts[k * k] += b;
    } else {
        if (!targets)
            return dmlp_fail(err, DMLP_ERR_INPUT, "metrics: a regression batch needs targets");
        double *sq = m->sums + 1, *ab = sq + k, *ts = ab + k, *t2 = ts + k;
        for (size_t i = 0; i < b; i++) {
            for (size_t j = 0; j < k; j++) {
                const double y = Y[i * k + j], t = targets[i * k + j], e = y - t;
                sq[j] += e * e;
                ab[j] += fabs(e);
                ts[j] += t;
                t2[j] += t * t;
            }
        }
        m->counts[0] += b;
    }
    m->sums[0] += loss_sum;
    return DMLP_OK;
}

uint64_t *metrics_counts(struct metrics *m, size_t *n)
{
    *n = m->n_counts;
    return m->counts;
}

double *metrics_sums(struct metrics *m, size_t *n)
{
    *n = m->n_sums;
    return m->sums;
}

void metrics_finish(const struct metrics *m, struct metrics_report *r)
{
    const size_t k = m->k;
    const uint64_t n = samples_of(m);
    memset(r, 0, sizeof *r);
    r->is_classifier = m->is_classifier;
    r->k = k;
    r->samples = n;
    r->loss = n ? m->sums[0] / (double)n : NAN;
    r->accuracy = r->mse = r->mae = r->r2 = NAN;
    if (m->is_classifier) {
        for (size_t c = 0; c < k; c++)
            r->correct += m->counts[c * k + c];
        if (n)
            r->accuracy = (double)r->correct / (double)n;
        return;
    }
    const double *sq = m->sums + 1, *ab = sq + k;
    double sq_all = 0.0, ab_all = 0.0, r2_sum = 0.0;
    size_t r2_defined = 0;
    for (size_t j = 0; j < k; j++) {
        sq_all += sq[j];
        ab_all += ab[j];
        const double r2 = metrics_target_r2(m, j);
        if (!isnan(r2)) {
            r2_sum += r2;
            r2_defined++;
        }
    }
    if (n) {
        const double cells = (double)n * (double)k;
        r->mse = sq_all / cells;
        r->mae = ab_all / cells;
    }
    if (r2_defined)
        r->r2 = r2_sum / (double)r2_defined;
}

uint64_t metrics_confusion(const struct metrics *m, size_t t, size_t p)
{
    if (!m->is_classifier || t >= m->k || p >= m->k)
        return 0;
    return m->counts[t * m->k + p];
}

double metrics_class_accuracy(const struct metrics *m, size_t c)
{
    if (!m->is_classifier || c >= m->k)
        return NAN;
    uint64_t support = 0;
    for (size_t p = 0; p < m->k; p++)
        support += m->counts[c * m->k + p];
    return support ? (double)m->counts[c * m->k + c] / (double)support : NAN;
}

double metrics_target_r2(const struct metrics *m, size_t j)
{
    const uint64_t n = samples_of(m);
    if (m->is_classifier || j >= m->k || n == 0)
        return NAN;
    const size_t k = m->k;
    const double ss_res = m->sums[1 + j], t_sum = m->sums[1 + 2 * k + j],
                 t2_sum = m->sums[1 + 3 * k + j];
    /* SS_tot = Σ(t − t̄)² = Σt² − (Σt)²/N, from sums that add across ranks. */
    const double ss_tot = t2_sum - t_sum * t_sum / (double)n;
    if (!(ss_tot > R2_CONSTANT_REL * t2_sum))
        return NAN;
    return 1.0 - ss_res / ss_tot;
}

double metrics_target_mse(const struct metrics *m, size_t j)
{
    const uint64_t n = samples_of(m);
    if (m->is_classifier || j >= m->k || n == 0)
        return NAN;
    return m->sums[1 + j] / (double)n;
}

double metrics_target_mae(const struct metrics *m, size_t j)
{
    const uint64_t n = samples_of(m);
    if (m->is_classifier || j >= m->k || n == 0)
        return NAN;
    return m->sums[1 + m->k + j] / (double)n;
}

int metrics_print_json(FILE *f, const struct metrics *m, const char *const *fields,
                       struct dmlp_error *err)
{
    struct metrics_report r;
    metrics_finish(m, &r);
    fputc('{', f);
    json_fields(f, fields);
    fprintf(f, "\"samples\": %" PRIu64 ", \"loss\": ", r.samples);
    json_put_number(f, r.loss);
    if (m->is_classifier)
        json_classifier(f, m, &r);
    else
        json_regression(f, m, &r);
    fputs("}\n", f);
    if (fflush(f) != 0 || ferror(f))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "writing the JSON report failed: %s",
                         strerror(errno));
    return DMLP_OK;
}

int metrics_print_text(FILE *f, const struct metrics *m, struct dmlp_error *err)
{
    struct metrics_report r;
    metrics_finish(m, &r);
    const size_t k = m->k;
    char b[64];
    fprintf(f, "samples   %" PRIu64 "\n", r.samples);
    fprintf(f, "loss      %s\n", text_number(b, sizeof b, "%.6f", r.loss));
    if (m->is_classifier) {
        fprintf(f, "accuracy  %s (%" PRIu64 " correct)\n",
                text_number(b, sizeof b, "%.4f", r.accuracy), r.correct);
        fprintf(f, "per-class accuracy (recall):\n  %6s %10s %10s %9s\n", "class", "support",
                "correct", "accuracy");
        for (size_t c = 0; c < k; c++) {
            uint64_t support = 0;
            for (size_t p = 0; p < k; p++)
                support += m->counts[c * k + p];
            fprintf(f, "  %6zu %10" PRIu64 " %10" PRIu64 " %9s\n", c, support,
                    m->counts[c * k + c],
                    text_number(b, sizeof b, "%.4f", metrics_class_accuracy(m, c)));
        }
        if (k <= METRICS_TEXT_MAX_CLASSES) {
            fprintf(f, "confusion matrix (rows: true class, columns: predicted):\n  %6s", "");
            for (size_t p = 0; p < k; p++)
                fprintf(f, " %8zu", p);
            fputc('\n', f);
            for (size_t t = 0; t < k; t++) {
                fprintf(f, "  %6zu", t);
                for (size_t p = 0; p < k; p++)
                    fprintf(f, " %8" PRIu64, m->counts[t * k + p]);
                fputc('\n', f);
            }
        } else {
            fprintf(f, "confusion matrix: %zu classes, not shown (see the JSON report)\n", k);
        }
    } else {
        fprintf(f, "mse       %s\n", text_number(b, sizeof b, "%.6g", r.mse));
        fprintf(f, "mae       %s\n", text_number(b, sizeof b, "%.6g", r.mae));
        fprintf(f, "r2        %s\n", text_number(b, sizeof b, "%.6f", r.r2));
        for (size_t j = 0; k > 1 && j < k; j++) {
            fprintf(f, "  r2[%zu]   %s", j,
                    text_number(b, sizeof b, "%.6f", metrics_target_r2(m, j)));
            fprintf(f, "  mse %s", text_number(b, sizeof b, "%.6g", metrics_target_mse(m, j)));
            fprintf(f, "  mae %s\n", text_number(b, sizeof b, "%.6g", metrics_target_mae(m, j)));
        }
    }
    if (fflush(f) != 0 || ferror(f))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "writing the report failed: %s",
                         strerror(errno));
    return DMLP_OK;
}

void metrics_reduce(const struct dist *d, struct metrics *m)
{
    size_t nc, ns;
    uint64_t *counts = metrics_counts(m, &nc);
    double *sums = metrics_sums(m, &ns);
    dist_allreduce_sum_u64(d, counts, nc);
    dist_allreduce_sum_double(d, sums, ns);
}

/* The one evaluation path: this rank evaluates rows [off, off + len) of ds, then the
 * accumulators are summed across the ranks of d. Collective, agreed. */
static int evaluate_rows(const struct dist *d, struct model *m, struct ensemble *ens,
                         const struct dataset *ds, uint64_t off, uint64_t len,
                         struct metrics **out, struct dmlp_error *err)
{
    *out = NULL;
    struct dmlp_error e = {0};
    struct metrics *acc = NULL;
    float *mean = NULL;
    if (ens && !(mean = malloc(METRICS_EVAL_CHUNK * model_output_dim(m) * sizeof *mean)))
        dmlp_fail(&e, DMLP_ERR_RUNTIME, "out of memory");
    const size_t k = model_output_dim(m);
    const int classifier = m->loss == DMLP_LOSS_CROSS_ENTROPY;
    if (!e.code && model_reserve(m, METRICS_EVAL_CHUNK, &e) == DMLP_OK &&
        dataset_check_network(ds, m, "evaluation data", &e) == DMLP_OK)
        metrics_create(&acc, k, classifier, &e);
    /* Labels outside [0, k) would index past the loss kernel's rows: check this rank's
     * slice before any forward pass (dataset_check_network bounds only the class count). */
    for (uint64_t i = off; !e.code && classifier && i < off + len; i++)
        if (ds->labels[i] < 0 || (size_t)ds->labels[i] >= k)
            dmlp_fail(&e, DMLP_ERR_INPUT, "evaluation data: label %" PRId32 " at row %" PRIu64
                      " is outside [0, %zu)", ds->labels[i], i, k);
    if (dist_agree(d, &e)) {
        metrics_free(&acc);
        free(mean);
        if (err)
            *err = e;
        return e.code;
    }
    for (uint64_t i = off; i < off + len && !e.code; i += METRICS_EVAL_CHUNK) {
        const size_t b = (size_t)(off + len - i < METRICS_EVAL_CHUNK ? off + len - i
                                                                     : METRICS_EVAL_CHUNK);
        const int32_t *lb = ds->labels ? ds->labels + i : NULL;
        const float *tb = ds->targets ? ds->targets + i * ds->k : NULL;
        const float *Y;
        if (ens) { /* the members' mean, scored with the first member's loss */
            ensemble_forward(ens, ds->features + i * ds->d, b, mean, NULL);
            Y = mean;
        } else {
            Y = model_forward(m, ds->features + i * ds->d, b);
            /* Trained on standardised targets: the loss and every figure in original
             * units (Y is the last layer's activations). */
            model_unscale_outputs(m, m->layers[m->n_layers - 1].A, b);
        }
        const double loss = model_loss_of(m, Y, lb, tb, NULL, b, 0);
        metrics_add_batch(acc, Y, lb, tb, b, loss, &e);
    }
    free(mean);
    if (dist_agree(d, &e)) {
        metrics_free(&acc);
        if (err)
            *err = e;
        return e.code;
    }
    metrics_reduce(d, acc);
    *out = acc;
    return DMLP_OK;
}

int metrics_evaluate(const struct dist *d, struct model *m, const struct dataset *ds,
                     struct metrics **out, struct dmlp_error *err)
{
    uint64_t off = 0, len = 0;
    dmlp_slice(ds->n, dist_size(d), dist_rank(d), &off, &len);
    return evaluate_rows(d, m, NULL, ds, off, len, out, err);
}

int metrics_evaluate_ensemble(const struct dist *d, struct ensemble *ens,
                              const struct dataset *ds, struct metrics **out,
                              struct dmlp_error *err)
{
    uint64_t off = 0, len = 0;
    dmlp_slice(ds->n, dist_size(d), dist_rank(d), &off, &len);
    return evaluate_rows(d, ens->m[0], ens, ds, off, len, out, err);
}

int metrics_evaluate_report(const struct dist *d, struct model *m, const struct dataset *ds,
                            int own_rows, struct metrics_report *rep, struct dmlp_error *err)
{
    struct metrics *mt = NULL;
    const int rc = own_rows ? evaluate_rows(d, m, NULL, ds, 0, ds->n, &mt, err)
                            : metrics_evaluate(d, m, ds, &mt, err);
    if (rc)
        return rc;
    metrics_finish(mt, rep);
    metrics_free(&mt);
    return DMLP_OK;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t samples_of(const struct metrics *m)
{
    return m->counts[m->n_counts - 1];
}


/* v formatted with fmt (one double conversion), or "n/a" when it is not finite (a class
 * with no samples, a constant target column, no samples at all). */
static const char *text_number(char *buf, size_t cap, const char *fmt, double v)
{
    if (!isfinite(v))
        return "n/a";
    snprintf(buf, cap, fmt, v);
    return buf;
}

/* The caller's name/value pairs (fields: name, value or NULL for null, ...; NULL-ended),
 * each followed by ", ". */
static void json_fields(FILE *f, const char *const *fields)
{
    for (size_t i = 0; fields && fields[i]; i += 2) {
        json_put_string(f, fields[i]);
        fputs(": ", f);
        if (fields[i + 1])
            json_put_string(f, fields[i + 1]);
        else
            fputs("null", f);
        fputs(", ", f);
    }
}

/* ", \"correct\": ..., \"accuracy\": ..., per-class accuracy and the k × k confusion
 * matrix (rows: true class, columns: predicted). */
static void json_classifier(FILE *f, const struct metrics *m, const struct metrics_report *r)
{
    const size_t k = m->k;
    fprintf(f, ", \"correct\": %" PRIu64 ", \"accuracy\": ", r->correct);
    json_put_number(f, r->accuracy);
    fputs(", \"per_class_accuracy\": [", f);
    for (size_t c = 0; c < k; c++) {
        if (c)
            fputs(", ", f);
        json_put_number(f, metrics_class_accuracy(m, c));
    }
    fputs("], \"confusion_matrix\": [", f);
    for (size_t t = 0; t < k; t++) {
        fputs(t ? ", [" : "[", f);
        for (size_t p = 0; p < k; p++)
            fprintf(f, p ? ", %" PRIu64 : "%" PRIu64, m->counts[t * k + p]);
        fputc(']', f);
    }
    fputc(']', f);
}

/* ", \"mse\": ..., \"mae\": ..., \"r2\": ..." and R² per target. */
static void json_regression(FILE *f, const struct metrics *m, const struct metrics_report *r)
{
    fputs(", \"mse\": ", f);
    json_put_number(f, r->mse);
    fputs(", \"mae\": ", f);
    json_put_number(f, r->mae);
    fputs(", \"r2\": ", f);
    json_put_number(f, r->r2);
    fputs(", \"r2_per_target\": [", f);
    for (size_t j = 0; j < m->k; j++) {
        if (j)
            fputs(", ", f);
        json_put_number(f, metrics_target_r2(m, j));
    }
    fputs("], \"mse_per_target\": [", f);
    for (size_t j = 0; j < m->k; j++) {
        if (j)
            fputs(", ", f);
        json_put_number(f, metrics_target_mse(m, j));
    }
    fputs("], \"mae_per_target\": [", f);
    for (size_t j = 0; j < m->k; j++) {
        if (j)
            fputs(", ", f);
        json_put_number(f, metrics_target_mae(m, j));
    }
    fputc(']', f);
}
