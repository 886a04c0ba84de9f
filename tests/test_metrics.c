/* metrics: the accumulators and the report against hand-worked cases.
 * - a 4-class, 7-sample classifier batch whose outputs fix every argmax, ties included
 *   (first max wins), with one class never seen: confusion matrix, per-class accuracy
 *   (NaN for the unseen class), accuracy and mean loss against values written out here;
 * - splitting the rows over two accumulators and adding their raw arrays (what the rank
 *   reduction does) gives the same arrays as one accumulator;
 * - regression: MSE, MAE and R² per column and averaged against fractions worked by hand,
 *   and a constant target column whose R² is undefined (NaN, null in JSON);
 * - the JSON reports parse (a small JSON checker), hold the agreed fields, and a few numbers
 *   read back equal the report's;
 * - bad input: out-of-range labels, a missing label array, k = 0. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/kernels.h"
#include "run/metrics.h"
#include "testutil.h"

/* ---- the hand-made classifier case ------------------------------------------------------- */

enum { CK = 4, CN = 7 };

/* Row i's outputs and label; the comment gives the argmax and why. */
static const float cls_Y[CN * CK] = {
    0.70f, 0.20f, 0.10f, 0.00f,  /* 0: label 0, predicted 0 */
    0.10f, 0.20f, 0.10f, 0.60f,  /* 1: label 0, predicted 3 */
    0.40f, 0.40f, 0.20f, 0.00f,  /* 2: label 1, tie 0/1 -> predicted 0 (first max) */
    0.20f, 0.30f, 0.50f, 0.00f,  /* 3: label 2, predicted 2 */
    0.25f, 0.25f, 0.25f, 0.25f,  /* 4: label 2, four-way tie -> predicted 0 */
    0.10f, 0.45f, 0.45f, 0.00f,  /* 5: label 2, tie 1/2 -> predicted 1 */
    0.20f, 0.60f, 0.20f, 0.00f,  /* 6: label 1, predicted 1 */
};
static const int32_t cls_labels[CN] = {0, 0, 1, 2, 2, 2, 1};

/* Row = true class, column = predicted. Class 3 has no samples but is predicted once. */
static const uint64_t cls_confusion[CK][CK] = {
    {1, 0, 0, 1},
    {1, 1, 0, 0},
    {1, 1, 1, 0},
    {0, 0, 0, 0},
};

static struct metrics *classifier_metrics(void)
{
    struct metrics *m = NULL;
    struct dmlp_error e = {0};
    if (metrics_create(&m, CK, 1, &e) != DMLP_OK)
        return NULL;
    /* Two batches (rows 0-2, 3-6) with loss sums 1.5 and 2.0: mean loss 3.5 / 7 = 0.5. */
    if (metrics_add_batch(m, cls_Y, cls_labels, NULL, 3, 1.5, &e) != DMLP_OK ||
        metrics_add_batch(m, cls_Y + 3 * CK, cls_labels + 3, NULL, 4, 2.0, &e) != DMLP_OK)
        metrics_free(&m);
    return m;
}

static void test_classifier_hand_case(void)
{
    struct metrics *m = classifier_metrics();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    for (size_t t = 0; t < CK; t++)
        for (size_t p = 0; p < CK; p++)
            CU_ASSERT_EQUAL(metrics_confusion(m, t, p), cls_confusion[t][p]);
    struct metrics_report r;
    metrics_finish(m, &r);
    CU_ASSERT_EQUAL(r.is_classifier, 1);
    CU_ASSERT_EQUAL(r.k, CK);
    CU_ASSERT_EQUAL(r.samples, CN);
    CU_ASSERT_EQUAL(r.correct, 3);
    /* Exact: the report divides the same integers. */
    CU_ASSERT_EQUAL(r.accuracy, 3.0 / 7.0);
    CU_ASSERT_EQUAL(r.loss, 0.5);
    CU_ASSERT(isnan(r.mse) && isnan(r.mae) && isnan(r.r2));
    /* The trace agrees with the training loop's own count (same tie rule). */
    CU_ASSERT_EQUAL(kernel_count_correct(cls_Y, cls_labels, CN, CK), r.correct);
    CU_ASSERT_EQUAL(metrics_class_accuracy(m, 0), 0.5);
    CU_ASSERT_EQUAL(metrics_class_accuracy(m, 1), 0.5);
    CU_ASSERT_EQUAL(metrics_class_accuracy(m, 2), 1.0 / 3.0);
    CU_ASSERT(isnan(metrics_class_accuracy(m, 3)));
    CU_ASSERT(isnan(metrics_target_r2(m, 0)));
    metrics_free(&m);
    CU_ASSERT_PTR_NULL(m);
}

/* What a two-rank reduction does: rank 0 holds rows 0-3, rank 1 rows 4-6; adding their raw
 * arrays element by element must give the one-accumulator arrays. */
static void test_classifier_merge(void)
{
    struct metrics *whole = classifier_metrics(), *a = NULL, *b = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_PTR_NOT_NULL_FATAL(whole);
    CU_ASSERT_EQUAL_FATAL(metrics_create(&a, CK, 1, &e), DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(metrics_create(&b, CK, 1, &e), DMLP_OK);
    CU_ASSERT_EQUAL(metrics_add_batch(a, cls_Y, cls_labels, NULL, 4, 1.75, &e), DMLP_OK);
    CU_ASSERT_EQUAL(metrics_add_batch(b, cls_Y + 4 * CK, cls_labels + 4, NULL, 3, 1.75, &e),
                    DMLP_OK);
    size_t nc, ns, nca, nsa, ncb, nsb;
    uint64_t *cw = metrics_counts(whole, &nc), *ca = metrics_counts(a, &nca),
             *cb = metrics_counts(b, &ncb);
    double *sw = metrics_sums(whole, &ns), *sa = metrics_sums(a, &nsa), *sb = metrics_sums(b, &nsb);
    /* The documented layout: k×k confusion then samples; one loss sum. */
    CU_ASSERT_EQUAL(nc, CK * CK + 1);
    CU_ASSERT_EQUAL(ns, 1);
    CU_ASSERT_EQUAL(cw[CK * CK], CN);
    CU_ASSERT(nca == nc && ncb == nc && nsa == ns && nsb == ns);
    for (size_t i = 0; i < nc; i++)
        ca[i] += cb[i];
    for (size_t i = 0; i < ns; i++)
        sa[i] += sb[i];
    CU_ASSERT_EQUAL(memcmp(ca, cw, nc * sizeof *cw), 0);
    CU_ASSERT_EQUAL(sa[0], sw[0]);
    metrics_reset(a);
    struct metrics_report r;
    metrics_finish(a, &r);
    CU_ASSERT_EQUAL(r.samples, 0);
    CU_ASSERT(isnan(r.accuracy) && isnan(r.loss));
    metrics_free(&whole);
    metrics_free(&a);
    metrics_free(&b);
}

static void test_classifier_bad_input(void)
{
    struct metrics *m = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL(metrics_create(&m, 0, 1, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL_FATAL(metrics_create(&m, CK, 1, &e), DMLP_OK);
    const int32_t bad[3] = {0, 4, 1};
    CU_ASSERT_EQUAL(metrics_add_batch(m, cls_Y, bad, NULL, 3, 1.0, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "label 4 at row 1"));
    const int32_t neg[2] = {0, -1};
    CU_ASSERT_EQUAL(metrics_add_batch(m, cls_Y, neg, NULL, 2, 1.0, &e), DMLP_ERR_INPUT);
    CU_ASSERT_EQUAL(metrics_add_batch(m, cls_Y, NULL, cls_Y, 2, 1.0, &e), DMLP_ERR_INPUT);
    /* A refused batch adds nothing. */
    struct metrics_report r;
    metrics_finish(m, &r);
    CU_ASSERT_EQUAL(r.samples, 0);
    size_t ns;
    CU_ASSERT_EQUAL(metrics_sums(m, &ns)[0], 0.0);
    metrics_free(&m);
}

/* ---- the hand-made regression case -------------------------------------------------------- */

/* Y and T [3 × 2]. Errors y − t: column 0: −0.5, 1, 0; column 1: 0, 0, −2.
 *   SS_res = 1.25 and 4; Σ|e| = 1.5 and 2 -> MSE = 5.25/6, MAE = 3.5/6; per target
 *   MSE 1.25/3 and 4/3, MAE 1.5/3 and 2/3.
 *   column 0: t = 1.5, 2, 5: Σt² = 31.25, (Σt)²/N = 72.25/3, SS_tot = 43/6,
 *             R² = 1 − 1.25/(43/6) = 71/86;
 *   column 1: t = 2, 4, 8: Σt² = 84, (Σt)²/N = 196/3, SS_tot = 56/3, R² = 1 − 4/(56/3) = 11/14.
 * Loss sum per sample Σ_k (y−t)²: 0.25 + 1 + 4 = 5.25 over 3 samples -> 1.75. */
static const float reg_Y[6] = {1, 2, 3, 4, 5, 6};
static const float reg_T[6] = {1.5f, 2, 2, 4, 5, 8};

static struct metrics *regression_metrics(void)
{
    struct metrics *m = NULL;
    struct dmlp_error e = {0};
    if (metrics_create(&m, 2, 0, &e) != DMLP_OK)
        return NULL;
    if (metrics_add_batch(m, reg_Y, NULL, reg_T, 1, 0.25, &e) != DMLP_OK ||
        metrics_add_batch(m, reg_Y + 2, NULL, reg_T + 2, 2, 5.0, &e) != DMLP_OK)
        metrics_free(&m);
    return m;
}

static void test_regression_hand_case(void)
{
    struct metrics *m = regression_metrics();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    struct metrics_report r;
    metrics_finish(m, &r);
    CU_ASSERT_EQUAL(r.is_classifier, 0);
    CU_ASSERT_EQUAL(r.samples, 3);
    /* Every input is a small dyadic number, so the sums are exact; only the final divisions
     * and the SS_tot formula round: 1e-14 relative covers a few double roundings. */
    CU_ASSERT(tu_reldiff(r.loss, 1.75, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(r.mse, 5.25 / 6.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(r.mae, 3.5 / 6.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(metrics_target_r2(m, 0), 71.0 / 86.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(metrics_target_r2(m, 1), 11.0 / 14.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(r.r2, (71.0 / 86.0 + 11.0 / 14.0) / 2.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(metrics_target_mse(m, 0), 1.25 / 3.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(metrics_target_mse(m, 1), 4.0 / 3.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(metrics_target_mae(m, 0), 1.5 / 3.0, 1e-300) <= 1e-14);
    CU_ASSERT(tu_reldiff(metrics_target_mae(m, 1), 2.0 / 3.0, 1e-300) <= 1e-14);
    CU_ASSERT(isnan(metrics_target_mse(m, 2)));
    CU_ASSERT(isnan(r.accuracy));
    CU_ASSERT_EQUAL(r.correct, 0);
    CU_ASSERT(isnan(metrics_class_accuracy(m, 0)));
    CU_ASSERT_EQUAL(metrics_confusion(m, 0, 0), 0);
    size_t nc, ns;
    metrics_counts(m, &nc);
    metrics_sums(m, &ns);
    CU_ASSERT_EQUAL(nc, 1);
    CU_ASSERT_EQUAL(ns, 1 + 4 * 2);
    metrics_free(&m);
}

/* Column 0 constant (t = 0.1 twice, not exactly representable: the one-pass SS_tot leaves
 * at most a rounding residue), column 1 ordinary (t = 0, 2; y = 1, 1: SS_res = 2,
 * SS_tot = 2, R² = 0). R² of column 0 is undefined, and the average is column 1's alone. */
static void test_regression_constant_column(void)
{
    const float Y[4] = {0.1f, 1, 0.2f, 1}, T[4] = {0.1f, 0, 0.1f, 2};
    struct metrics *m = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(metrics_create(&m, 2, 0, &e), DMLP_OK);
    CU_ASSERT_EQUAL(metrics_add_batch(m, Y, NULL, T, 2, 0.0, &e), DMLP_OK);
    CU_ASSERT(isnan(metrics_target_r2(m, 0)));
    CU_ASSERT(fabs(metrics_target_r2(m, 1)) <= 1e-15);
    struct metrics_report r;
    metrics_finish(m, &r);
    CU_ASSERT(fabs(r.r2) <= 1e-15);
    metrics_free(&m);

    /* Only a constant column: no R² at all. */
    CU_ASSERT_EQUAL_FATAL(metrics_create(&m, 1, 0, &e), DMLP_OK);
    const float y1[3] = {1, 2, 3}, t1[3] = {0.1f, 0.1f, 0.1f};
    CU_ASSERT_EQUAL(metrics_add_batch(m, y1, NULL, t1, 3, 0.0, &e), DMLP_OK);
    metrics_finish(m, &r);
    CU_ASSERT(isnan(r.r2));
    CU_ASSERT_EQUAL(metrics_add_batch(m, y1, NULL, NULL, 3, 0.0, &e),
                    DMLP_ERR_INPUT);
    metrics_free(&m);
}

/* ---- JSON --------------------------------------------------------------------------------- */

/* A strict little JSON checker (RFC 8259 grammar, no extensions): returns the end of one
 * value starting at p, or NULL on a syntax error. */
static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *json_string_end(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p && *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return *p == '"' ? p + 1 : NULL;
}

static const char *json_number_end(const char *p)
{
    const char *s = p;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (isdigit((unsigned char)*p))
        while (isdigit((unsigned char)*p))
            p++;
    else
        return NULL;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p > s ? p : NULL;
}

static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        const char close = *p == '{' ? '}' : ']';
        const int object = *p == '{';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (object) {
                if (!(p = json_string_end(json_ws(p))))
                    return NULL;
                p = json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            if (!(p = json_value(p)))
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    if (*p == '"')
        return json_string_end(p);
    if (!strncmp(p, "null", 4) || !strncmp(p, "true", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    return json_number_end(p);
}

/* 1 if text is exactly one JSON value (plus whitespace). */
static int json_valid(const char *text)
{
    const char *end = json_value(text);
    return end && *json_ws(end) == '\0';
}

static char *print_json(const struct metrics *m, const char *const *fields)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    struct dmlp_error e = {0};
    int rc = metrics_print_json(f, m, fields, &e);
    fclose(f);
    if (rc != DMLP_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The number after "key": in text (NaN if the key is missing or not followed by one). */
static double json_get(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = strstr(text, pat);
    if (!at)
        return NAN;
    char *end;
    double v = strtod(at + strlen(pat), &end);
    return end == at + strlen(pat) ? NAN : v;
}

static void test_json_classifier(void)
{
    struct metrics *m = classifier_metrics();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const char *fields[] = {"checkpoint", "runs/a \"b\"\\c.h5", "data", "x\ty.h5", NULL};
    char *js = print_json(m, fields);
    CU_ASSERT_PTR_NOT_NULL_FATAL(js);
    printf("\n    %s", js);
    CU_ASSERT(json_valid(js));
    CU_ASSERT_EQUAL(js[strlen(js) - 1], '\n');
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"checkpoint\": \"runs/a \\\"b\\\"\\\\c.h5\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"data\": \"x\\ty.h5\""));
    CU_ASSERT_EQUAL(json_get(js, "samples"), 7.0);
    CU_ASSERT_EQUAL(json_get(js, "correct"), 3.0);
    CU_ASSERT_EQUAL(json_get(js, "loss"), 0.5);
    /* %.9g keeps 9 significant digits: rounding the 9th costs at most half a unit there,
     * under 5e-9 relative whatever the leading digit. */
    CU_ASSERT(tu_reldiff(json_get(js, "accuracy"), 3.0 / 7.0, 1e-300) <= 5e-9);
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"per_class_accuracy\": [0.5, 0.5, 0.333333333, null]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"confusion_matrix\": [[1, 0, 0, 1], [1, 1, 0, 0], "
                                      "[1, 1, 1, 0], [0, 0, 0, 0]]"));
    CU_ASSERT_PTR_NULL(strstr(js, "nan"));
    CU_ASSERT_PTR_NULL(strstr(js, "\"mse\""));
    free(js);
    js = print_json(m, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(js);
    CU_ASSERT(json_valid(js));
    CU_ASSERT_EQUAL(strncmp(js, "{\"samples\": 7, ", 15), 0);
    free(js);
    metrics_free(&m);
}

static void test_json_regression(void)
{
    struct metrics *m = regression_metrics();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    char *js = print_json(m, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(js);
    printf("\n    %s", js);
    CU_ASSERT(json_valid(js));
    CU_ASSERT_EQUAL(json_get(js, "samples"), 3.0);
    CU_ASSERT(tu_reldiff(json_get(js, "loss"), 1.75, 1e-300) <= 5e-9);
    CU_ASSERT(tu_reldiff(json_get(js, "mse"), 0.875, 1e-300) <= 5e-9);
    CU_ASSERT(tu_reldiff(json_get(js, "mae"), 3.5 / 6.0, 1e-300) <= 5e-9);
    CU_ASSERT(tu_reldiff(json_get(js, "r2"), (71.0 / 86.0 + 11.0 / 14.0) / 2.0, 1e-300) <= 5e-9);
    const char *arr = strstr(js, "\"r2_per_target\": [");
    CU_ASSERT_PTR_NOT_NULL_FATAL(arr);
    char *end;
    /* Same 5e-9: the printed 9 significant digits. */
    const double r0 = strtod(arr + strlen("\"r2_per_target\": ["), &end);
    CU_ASSERT(tu_reldiff(r0, 71.0 / 86.0, 1e-300) <= 5e-9);
    CU_ASSERT_EQUAL(strncmp(end, ", ", 2), 0);
    CU_ASSERT(tu_reldiff(strtod(end + 2, NULL), 11.0 / 14.0, 1e-300) <= 5e-9);
    const char *per[] = {"\"mse_per_target\": [", "\"mae_per_target\": ["};
    const double want[2][2] = {{1.25 / 3.0, 4.0 / 3.0}, {1.5 / 3.0, 2.0 / 3.0}};
    for (int i = 0; i < 2; i++) {
        arr = strstr(js, per[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(arr);
        CU_ASSERT(tu_reldiff(strtod(arr + strlen(per[i]), &end), want[i][0], 1e-300) <= 5e-9);
        CU_ASSERT_EQUAL(strncmp(end, ", ", 2), 0);
        CU_ASSERT(tu_reldiff(strtod(end + 2, NULL), want[i][1], 1e-300) <= 5e-9);
    }
    CU_ASSERT_PTR_NULL(strstr(js, "accuracy"));
    free(js);
    metrics_free(&m);

    /* Non-finite values are null: a constant column, and an empty accumulator. */
    CU_ASSERT_EQUAL_FATAL(metrics_create(&m, 1, 0, NULL), DMLP_OK);
    js = print_json(m, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(js);
    CU_ASSERT(json_valid(js));
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"samples\": 0, \"loss\": null, \"mse\": null, "
                                      "\"mae\": null, \"r2\": null, \"r2_per_target\": [null]"));
    free(js);
    metrics_free(&m);
}

/* The JSON checker itself must reject what a careless printer produces. */
static void test_json_checker(void)
{
    CU_ASSERT(json_valid("{\"a\": [1, 2.5e-3, null], \"b\": \"x\\\"y\"}\n"));
    CU_ASSERT(!json_valid("{\"a\": nan}"));
    CU_ASSERT(!json_valid("{\"a\": inf}"));
    CU_ASSERT(!json_valid("{\"a\": 1,}"));
    CU_ASSERT(!json_valid("{\"a\": [1 2]}"));
    CU_ASSERT(!json_valid("{\"a\": \"tab\there\"}"));
    CU_ASSERT(!json_valid("{\"a\": 1} {}"));
}

static void test_text_report(void)
{
    struct metrics *m = classifier_metrics();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL(metrics_print_text(f, m, &e), DMLP_OK);
    fclose(f);
    printf("\n%s", buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "samples   7\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "accuracy  0.4286 (3 correct)\n"));
    /* class 2: support 3, 1 correct; class 3: no support. */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "       2          3          1    0.3333\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "       3          0          0       n/a\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "       2        1        1        1        0\n"));
    free(buf);
    metrics_free(&m);
}

static CU_TestInfo metrics_tests[] = {
    {"classifier: hand-made confusion matrix, recall, accuracy", test_classifier_hand_case},
    {"classifier: raw arrays add like a rank reduction", test_classifier_merge},
    {"classifier: bad labels refused, nothing added", test_classifier_bad_input},
    {"regression: MSE, MAE, R2 against hand-worked fractions", test_regression_hand_case},
    {"regression: constant target column has no R2", test_regression_constant_column},
    {"json checker rejects invalid JSON", test_json_checker},
    {"json: classifier fields and values", test_json_classifier},
    {"json: regression fields, values and null", test_json_regression},
    {"text report", test_text_report},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"metrics", NULL, NULL, NULL, NULL, metrics_tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
