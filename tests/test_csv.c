#define _POSIX_C_SOURCE 200809L
/* Tests of the CSV importer (dataset_import_csv, over the csv reader): good files with
 * labels, class names and targets come back with exact values; CSV's awkward corners
 * (quotes, commas and line breaks inside quotes, CRLF, a byte-order mark, blank lines,
 * gzip) parse; every bad file is DMLP_ERR_INPUT with the file, line and column in the
 * message, and leaves no output behind. */
#include "data/csv.h"
#include "data/dataset.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define PATH_CAP 1024

static char g_dir[512];

static int suite_init(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "csv");
    return 0;
}

static int suite_clean(void)
{
    tu_rmtree(g_dir);
    return 0;
}

static void tpath(char *out, const char *name) { snprintf(out, PATH_CAP, "%s/%s", g_dir, name); }

/* Writes text to g_dir/name and returns the path in out. */
static void put(char *out, const char *name, const char *text)
{
    tpath(out, name);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(out, text), 0);
}

/* Imports text as name (labels from label or targets from targets) into out.h5 and reads
 * the result back; NULL (with the message printed) on failure. */
static struct dataset *import_text(const char *name, const char *text, const char *label,
                                   const char *targets)
{
    char in[PATH_CAP], out[PATH_CAP];
    put(in, name, text);
    tpath(out, "out.h5");
    unlink(out);
    struct dmlp_error err;
    struct dataset *ds = NULL;
    if (dataset_import_csv(in, label, targets, out, &err) != DMLP_OK ||
        dataset_read(&ds, out, &err) != DMLP_OK) {
        fprintf(stderr, "\n  %s: %s\n", name, err.msg);
        return NULL;
    }
    return ds;
}

static void expect_features(const struct dataset *ds, const float *want, size_t n, size_t d)
{
    CU_ASSERT_EQUAL(ds->n, n);
    CU_ASSERT_EQUAL(ds->d, d);
    if (ds->n == n && ds->d == d)
        for (size_t i = 0; i < n * d; i++)
            CU_ASSERT_EQUAL(ds->features[i], want[i]); /* exact: strtod then one rounding */
}

/* ---- good files ----------------------------------------------------------------------- */

static void test_labels(void)
{
    /* The label column in the middle, spaces around fields, a quoted feature, CRLF line
     * ends, blank lines (one in the middle, two at the end), no final line end. */
    const char *text = "a, label ,b,c\r\n"
                       "1.5,2,-3,1e-3\r\n"
                       "\r\n"
                       " 4 ,0,\"5.25\",6\r\n"
                       "7,1,8,-0.125\r\n"
                       "  \r\n"
                       "\r\n";
    struct dataset *ds = import_text("labels.csv", text, "label", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    const float want[9] = {1.5f, -3.0f, 1e-3f, 4.0f, 5.25f, 6.0f, 7.0f, 8.0f, -0.125f};
    expect_features(ds, want, 3, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds->labels);
    CU_ASSERT_EQUAL(ds->labels[0], 2);
    CU_ASSERT_EQUAL(ds->labels[1], 0);
    CU_ASSERT_EQUAL(ds->labels[2], 1);
    CU_ASSERT_EQUAL(ds->k, 3); /* max + 1 */
    dataset_free(&ds);

    /* "3.0" is the class number 3; the last line has no line end. */
    ds = import_text("float_labels.csv", "x,y\n0.5,3.0\n-1,0", "y", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    CU_ASSERT_EQUAL(ds->n, 2);
    CU_ASSERT_EQUAL(ds->labels[0], 3);
    CU_ASSERT_EQUAL(ds->k, 4);
    dataset_free(&ds);
}

/* Reads the class_names attribute of /labels in path into names (each malloc'ed). */
static size_t read_class_names(const char *path, char **names, size_t cap)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t attr = H5Aopen_by_name(file, "/labels", "class_names", H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) {
        H5Fclose(file);
        return 0;
    }
    hid_t space = H5Aget_space(attr);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    size_t got = 0;
    if (n > 0 && (size_t)n <= cap && H5Aread(attr, type, names) >= 0)
        got = (size_t)n;
    H5Tclose(type);
    H5Sclose(space);
    H5Aclose(attr);
    H5Fclose(file);
    return got;
}

static void test_class_names(void)
{
    /* Names get ids in order of first appearance; a quoted name keeps its comma, a doubled
     * quote and its line break (and the line count goes on correctly after it). */
    const char *text = "\xEF\xBB\xBF" "sepal,species,petal\n"
                       "1,setosa,2\n"
                       "3,\"virginica, var. \"\"x\"\"\",4\n"
                       "5,setosa,6\n"
                       "7,\"two\nlines\",8\n"
                       "9,versicolor,10\n";
    struct dataset *ds = import_text("names.csv", text, "species", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    const float want[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    expect_features(ds, want, 5, 2);
    const int32_t ids[5] = {0, 1, 0, 2, 3};
    for (size_t i = 0; i < 5 && ds->n == 5; i++)
        CU_ASSERT_EQUAL(ds->labels[i], ids[i]);
    CU_ASSERT_EQUAL(ds->k, 4);
    dataset_free(&ds);

    char out[PATH_CAP];
    tpath(out, "out.h5");
    char *names[8] = {0};
    const char *expect[4] = {"setosa", "virginica, var. \"x\"", "two\nlines", "versicolor"};
    size_t n = read_class_names(out, names, 8);
    CU_ASSERT_EQUAL(n, 4);
    for (size_t i = 0; i < n && i < 4; i++) {
        CU_ASSERT_STRING_EQUAL(names[i], expect[i]);
        H5free_memory(names[i]);
    }

    /* Numeric labels write no class_names. */
    ds = import_text("nonames.csv", "x,y\n1,0\n2,1\n", "y", NULL);
    CU_ASSERT_PTR_NOT_NULL(ds);
    dataset_free(&ds);
    CU_ASSERT_EQUAL(read_class_names(out, names, 8), 0);
}

static void test_targets(void)
{
    /* Targets in the order listed (t2 before t1); features are the rest, in file order. */
    const char *text = "t1,f1,t2,f2\n"
                       "0.5,1,-2,2\n"
                       "1.5,3,-4,4\n";
    struct dataset *ds = import_text("targets.csv", text, NULL, "t2, t1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    const float want[4] = {1, 2, 3, 4};
    expect_features(ds, want, 2, 2);
    CU_ASSERT_PTR_NULL(ds->labels);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds->targets);
    CU_ASSERT_EQUAL(ds->k, 2);
    const float t[4] = {-2.0f, 0.5f, -4.0f, 1.5f};
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(ds->targets[i], t[i]);
    dataset_free(&ds);
}

static void test_gzip(void)
{
    char in[PATH_CAP], out[PATH_CAP];
    tpath(in, "gz.csv.gz");
    tpath(out, "gz.h5");
    gzFile gz = gzopen(in, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(gz);
    /* Enough rows to cross the reader's 64 KiB buffer and the importer's first growth. */
    gzprintf(gz, "x0,x1,y\n");
    for (int i = 0; i < 5000; i++)
        gzprintf(gz, "%d,-%d.25,%d\n", i, i, i % 7);
    gzclose(gz);
    struct dmlp_error err;
    struct dataset *ds = NULL;
    CU_ASSERT_EQUAL(dataset_import_csv(in, "y", NULL, out, &err), DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, out, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->n, 5000);
    CU_ASSERT_EQUAL(ds->k, 7);
    int ok = 1;
    for (size_t i = 0; i < 5000 && ds->n == 5000; i++)
        ok &= ds->features[2 * i] == (float)i && ds->features[2 * i + 1] == -((float)i + 0.25f) &&
              ds->labels[i] == (int32_t)(i % 7);
    CU_ASSERT(ok);
    dataset_free(&ds);
}

/* ---- bad files -------------------------------------------------------------------------- */

/* Imports text and asserts DMLP_ERR_INPUT, a message containing every non-NULL needle and
 * no output file. Reports the caller's line. */
static void expect_bad_at(int line, const char *text, const char *label, const char *targets,
                          const char *n1, const char *n2, const char *n3)
{
    char in[PATH_CAP], out[PATH_CAP];
    put(in, "bad.csv", text);
    tpath(out, "bad.h5");
    unlink(out);
    struct dmlp_error err;
    int rc = dataset_import_csv(in, label, targets, out, &err);
    CU_assertImplementation(rc == DMLP_ERR_INPUT, (unsigned)line, "DMLP_ERR_INPUT", __FILE__,
                            "", CU_FALSE);
    if (rc != DMLP_ERR_INPUT) {
        fprintf(stderr, "\n  line %d: rc %d: %s\n", line, rc, rc ? err.msg : "(ok)");
        return;
    }
    const char *needles[4] = {in, n1, n2, n3};
    for (int i = 0; i < 4; i++) {
        if (!needles[i])
            continue;
        int found = strstr(err.msg, needles[i]) != NULL;
        if (!found)
            fprintf(stderr, "\n  line %d: message \"%s\" lacks \"%s\"\n", line, err.msg,
                    needles[i]);
        CU_assertImplementation(found, (unsigned)line, "message names line and column",
                                __FILE__, "", CU_FALSE);
    }
    CU_assertImplementation(access(out, F_OK) != 0, (unsigned)line, "no output written",
                            __FILE__, "", CU_FALSE);
}
#define EXPECT_BAD(text, label, targets, n1, n2, n3) \
    expect_bad_at(__LINE__, text, label, targets, n1, n2, n3)

static void test_exact_messages(void)
{
    /* Two messages in full, as the user sees them. */
    char in[PATH_CAP], out[PATH_CAP], want[2 * PATH_CAP];
    struct dmlp_error err;
    put(in, "iris.csv", "sepal_length,petal_width,species\n1,2,0\n3,abc,1\n");
    tpath(out, "iris.h5");
    CU_ASSERT_EQUAL(dataset_import_csv(in, "species", NULL, out, &err), DMLP_ERR_INPUT);
    snprintf(want, sizeof want, "%s:3: column 'petal_width': 'abc' is not a number", in);
    CU_ASSERT_STRING_EQUAL(err.msg, want);

    CU_ASSERT_EQUAL(dataset_import_csv(in, "kind", NULL, out, &err), DMLP_ERR_INPUT);
    snprintf(want, sizeof want, "%s: --label-column kind: no such column (columns: "
             "sepal_length, petal_width, species)", in);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
}

static void test_errors(void)
{
    /* Structure. */
    EXPECT_BAD("", "y", NULL, "empty file", NULL, NULL);
    EXPECT_BAD("\n  \r\n\n", "y", NULL, "empty file", NULL, NULL);
    EXPECT_BAD("a,b,y\n", "y", NULL, "no data rows after the header (line 1)", NULL, NULL);
    EXPECT_BAD("a,b,c,d,y\n1,2,3,4,0\n1,2,3,4,0\n1,2,3,4,0\n1,2,3,4,0\n1,2,3,4,0\n1,2,3,4,0\n"
               "1,2,3,4,0\n1,2,3,0\n", "y", NULL, ":9: 4 fields, header has 5", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,2,0,7\n", "y", NULL, ":2: 4 fields, header has 3", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,\"2,0\n", "y", NULL, ":2: field 2: the quote opened on this line is "
               "never closed", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,\"2\"x,0\n", "y", NULL, ":2: field 2: unexpected 'x' after a closing "
               "quote", NULL, NULL);
    EXPECT_BAD("y\n0\n1\n", "y", NULL, "no feature columns", NULL, NULL);
    EXPECT_BAD("a,b\n1,2\n", NULL, NULL, "exactly one of --label-column", NULL, NULL);
    EXPECT_BAD("a,b\n1,2\n", "a", "b", "exactly one of --label-column", NULL, NULL);
    EXPECT_BAD("a,b,c\n1,2,3\n", "species", NULL,
               "--label-column species: no such column (columns: a, b, c)", NULL, NULL);
    EXPECT_BAD("a,b,c\n1,2,3\n", NULL, "c,zz", "--target-columns zz: no such column", NULL,
               NULL);
    EXPECT_BAD("a,b,c\n1,2,3\n", NULL, "c,c", "column c is listed twice", NULL, NULL);
    EXPECT_BAD("a,b,c\n1,2,3\n", NULL, "c,,b", "empty column name", NULL, NULL);
    EXPECT_BAD("a,y,y\n1,2,3\n", "y", NULL, "columns 2 and 3 both have this name", NULL, NULL);

    /* Numbers: the line and the column name in each message. A quoted field spanning lines
     * 2-3 shifts the count, so the bad value is on line 5 (and the line break around a
     * quoted number is whitespace, like spaces). */
    EXPECT_BAD("a,y\n1,\"cat\nlynx\"\n2,dog\n3,7\n", "y", NULL, ":5: column 'y': '7' is a "
               "number", NULL, NULL);
    EXPECT_BAD("a,note,y\n1,\"2\n\",0\n2,3,1\n4,five,0\n", "y", NULL, ":5: column 'note': "
               "'five' is not a number", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,2,0\n1,,0\n", "y", NULL, ":3: column 'b': empty field", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,nan,0\n", "y", NULL, ":2: column 'b': 'nan' is not a finite number",
               NULL, NULL);
    EXPECT_BAD("a,b,y\n1,-inf,0\n", "y", NULL, ":2: column 'b': '-inf' is not a finite "
               "number", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,1e39,0\n", "y", NULL, ":2: column 'b': '1e39' is outside the float32 "
               "range", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,1e999,0\n", "y", NULL, ":2: column 'b': '1e999' is outside the "
               "float32 range", NULL, NULL);
    EXPECT_BAD("a,b,y\n1,2x,0\n", "y", NULL, ":2: column 'b': '2x' is not a number", NULL,
               NULL);
    EXPECT_BAD("a,t\n1,2\n3,inf\n", NULL, "t", ":3: column 't': 'inf' is not a finite number",
               NULL, NULL);
    EXPECT_BAD("a,t\n1,2\n3,\n", NULL, "t", ":3: column 't': empty field", NULL, NULL);

    /* Labels. */
    EXPECT_BAD("a,y\n1,0\n2,-1\n", "y", NULL, ":3: column 'y': '-1' is not a class number",
               NULL, NULL);
    EXPECT_BAD("a,y\n1,0\n2,1.5\n", "y", NULL, ":3: column 'y': '1.5' is not a class number",
               NULL, NULL);
    EXPECT_BAD("a,y\n1,0\n2,3000000000\n", "y", NULL, ":3: column 'y': '3000000000' is not a "
               "class number", NULL, NULL);
    EXPECT_BAD("a,y\n1,0\n2,\n", "y", NULL, ":3: column 'y': empty field (missing label)",
               NULL, NULL);
    EXPECT_BAD("a,y\n1,0\n2,cat\n", "y", NULL, ":3: column 'y': 'cat' is not a class number "
               "(line 2 has the number '0'", NULL, NULL);
    EXPECT_BAD("a,y\n1,cat\n2,dog\n3,7\n", "y", NULL, ":4: column 'y': '7' is a number, but "
               "the labels are class names (line 2 has 'cat'", NULL, NULL);

    /* Files that are not there, or not text. */
    char in[PATH_CAP], out[PATH_CAP];
    struct dmlp_error err;
    tpath(in, "missing.csv");
    tpath(out, "missing.h5");
    CU_ASSERT_EQUAL(dataset_import_csv(in, "y", NULL, out, &err), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "missing.csv: cannot open: No such file"));
    tpath(in, "binary.csv");
    FILE *f = fopen(in, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite("a,y\n1,\0\x01\n", 1, 9, f);
    fclose(f);
    CU_ASSERT_EQUAL(dataset_import_csv(in, "y", NULL, out, &err), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "binary.csv:2: NUL byte"));
}

/* The reader alone: fields, quoting flags and line numbers. */
static void test_reader(void)
{
    char in[PATH_CAP];
    put(in, "reader.csv", "a,\"b\"\"c\",\r\n\r\n\"x\ny\",,\"\"\rlast");
    struct csv_reader *r = NULL;
    struct dmlp_error err;
    const struct csv_record *rec = NULL;
    CU_ASSERT_EQUAL_FATAL(csv_open(&r, in, &err), DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(csv_next(r, &rec, &err), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_EQUAL(rec->line, 1);
    CU_ASSERT_EQUAL_FATAL(rec->n_fields, 3);
    CU_ASSERT_STRING_EQUAL(rec->fields[0], "a");
    CU_ASSERT_STRING_EQUAL(rec->fields[1], "b\"c");
    CU_ASSERT_STRING_EQUAL(rec->fields[2], "");
    CU_ASSERT(!rec->quoted[0] && rec->quoted[1] && !rec->quoted[2]);
    CU_ASSERT_EQUAL_FATAL(csv_next(r, &rec, &err), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_EQUAL(rec->line, 3); /* the blank line 2 is skipped */
    CU_ASSERT_EQUAL_FATAL(rec->n_fields, 3);
    CU_ASSERT_STRING_EQUAL(rec->fields[0], "x\ny");
    CU_ASSERT_STRING_EQUAL(rec->fields[1], "");
    CU_ASSERT_STRING_EQUAL(rec->fields[2], "");
    CU_ASSERT(rec->quoted[2]);
    CU_ASSERT_EQUAL_FATAL(csv_next(r, &rec, &err), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_EQUAL(rec->line, 5); /* a lone CR ends line 4 */
    CU_ASSERT_EQUAL_FATAL(rec->n_fields, 1);
    CU_ASSERT_STRING_EQUAL(rec->fields[0], "last");
    CU_ASSERT_EQUAL(csv_next(r, &rec, &err), DMLP_OK);
    CU_ASSERT_PTR_NULL(rec);
    csv_close(&r);
    CU_ASSERT_PTR_NULL(r);
}

static CU_TestInfo good_tests[] = {
    {"labels: exact values, CRLF, spaces, blank lines", test_labels},
    {"class names: ids by first appearance, class_names attribute", test_class_names},
    {"targets: listed order, features in file order", test_targets},
    {"gzip input across buffer boundaries", test_gzip},
    {"reader: quotes, empty fields, line numbers", test_reader},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo bad_tests[] = {
    {"two messages exactly as the user sees them", test_exact_messages},
    {"each bad file names the line and the column", test_errors},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"csv import", suite_init, suite_clean, NULL, NULL, good_tests},
    {"csv errors", suite_init, suite_clean, NULL, NULL, bad_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* read_class_names probes a missing attribute */
    return tu_run(suites);
}
