#define _POSIX_C_SOURCE 200809L
/* Tests of the atomic-file publisher (publish.h), which every writer uses: a commit replaces
 * an existing destination whole and leaves no temporary file; an abort, or a failed write,
 * leaves the destination as it was; a temporary file left by a dead writer of the same name
 * is replaced; a destination in a missing directory fails naming the file and the reason. */
#include "core/publish.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PATH_CAP 1024

static char g_dir[512];

static int suite_init(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "publish");
    return 0;
}

static int suite_clean(void)
{
    tu_rmtree(g_dir);
    return 0;
}

static void tpath(char *out, const char *name) { snprintf(out, PATH_CAP, "%s/%s", g_dir, name); }

/* The whole content of path ("" when it cannot be read). */
static const char *content(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "rb");
    const size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

static int leftover_tmp_files(void)
{
    DIR *d = opendir(g_dir);
    int count = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        count += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return count;
}

static void test_temp_name(void)
{
    char tmp[PATH_CAP], small[8];
    CU_ASSERT_EQUAL(publish_temp_name(tmp, sizeof tmp, "runs/x/step-1.h5"), 0);
    CU_ASSERT_EQUAL(strncmp(tmp, "runs/x/.step-1.h5.tmp.", 22), 0);
    CU_ASSERT_EQUAL(publish_temp_name(tmp, sizeof tmp, "out.h5"), 0);
    CU_ASSERT_EQUAL(strncmp(tmp, ".out.h5.tmp.", 12), 0);
    CU_ASSERT_EQUAL(publish_temp_name(small, sizeof small, "out.h5"), -1);
}

static void test_commit_replaces(void)
{
    char path[PATH_CAP];
    tpath(path, "replace.bin");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(path, "old"), 0);
    struct publish p;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(publish_begin(&p, path, &e), DMLP_OK);
    CU_ASSERT_STRING_EQUAL(content(path), "old"); /* untouched until the commit */
    CU_ASSERT_EQUAL(publish_write(&p, "new bytes", 9, "test file", &e), DMLP_OK);
    CU_ASSERT_EQUAL(publish_commit(&p, &e), DMLP_OK);
    CU_ASSERT_STRING_EQUAL(content(path), "new bytes");
    CU_ASSERT_EQUAL(leftover_tmp_files(), 0);
}

static void test_abort_keeps(void)
{
    char path[PATH_CAP];
    tpath(path, "keep.bin");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(path, "old"), 0);
    struct publish p;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(publish_begin(&p, path, &e), DMLP_OK);
    CU_ASSERT_EQUAL(publish_write(&p, "half", 4, "test file", &e), DMLP_OK);
    publish_abort(&p);
    CU_ASSERT_STRING_EQUAL(content(path), "old");
    CU_ASSERT_EQUAL(leftover_tmp_files(), 0);
}

/* A dead writer with this host and pid (a restarted container) left its temporary file. */
static void test_leftover_replaced(void)
{
    char path[PATH_CAP], tmp[PATH_CAP];
    tpath(path, "leftover.bin");
    CU_ASSERT_EQUAL_FATAL(publish_temp_name(tmp, sizeof tmp, path), 0);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tmp, "stale and longer"), 0);
    struct publish p;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(publish_begin(&p, path, &e), DMLP_OK);
    CU_ASSERT_EQUAL(publish_write(&p, "fresh", 5, "test file", &e), DMLP_OK);
    CU_ASSERT_EQUAL(publish_commit(&p, &e), DMLP_OK);
    CU_ASSERT_STRING_EQUAL(content(path), "fresh");
    CU_ASSERT_EQUAL(leftover_tmp_files(), 0);
}

static void test_missing_directory(void)
{
    char path[PATH_CAP];
    tpath(path, "no/such/dir/out.bin");
    struct publish p;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL(publish_begin(&p, path, &e), DMLP_ERR_RUNTIME);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "No such file or directory"));
}

static CU_TestInfo tests[] = {
    {"temporary name: hidden, beside the destination, bounded", test_temp_name},
    {"commit replaces the destination whole", test_commit_replaces},
    {"abort leaves the destination as it was", test_abort_keeps},
    {"a dead writer's temporary file is replaced", test_leftover_replaced},
    {"a missing directory names the file and the reason", test_missing_directory},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"publish", suite_init, suite_clean, NULL, NULL, tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
