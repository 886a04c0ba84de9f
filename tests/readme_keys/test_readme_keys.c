/* README.md's config table against the parser: the table is, byte for byte, what the code's
 * key table prints (config_write_key_table, `dmlp help config`); and every key documented in
 * it must be a key the parser accepts (config_key_paths), and every such key documented.
 *
 * The table is the block of rows under "## Config" whose first cell holds backticked key
 * names: "| `optimizer.beta1`, `beta2`, `eps` | ...". A name without a dot after a dotted
 * one inherits that one's prefix (`beta2` -> optimizer.beta2). A row for a list
 * (`model.layers`, "list of {units, activation}") documents the list's entries too: the
 * schema's "model.layers[].units" counts as documented by it. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "testutil.h"

#ifndef DMLP_SOURCE_DIR
#define DMLP_SOURCE_DIR "."
#endif

#define MAX_KEYS 256
#define KEY_MAX 256

static char readme_keys[MAX_KEYS][2 * KEY_MAX];
static int readme_lines[MAX_KEYS];
static size_t n_readme;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Parses the first cell of one table row: the backticked names, prefixes inherited. */
static void parse_key_cell(const char *cell, size_t cell_len, int line)
{
    char prefix[KEY_MAX] = "";
    const char *p = cell, *end = cell + cell_len;
    while (p < end) {
        const char *open = memchr(p, '`', (size_t)(end - p));
        if (!open)
            break;
        const char *close = memchr(open + 1, '`', (size_t)(end - open - 1));
        if (!close)
            break;
        size_t n = (size_t)(close - open - 1);
        char name[KEY_MAX];
        if (n == 0 || n >= sizeof name) {
            p = close + 1;
            continue;
        }
        memcpy(name, open + 1, n);
        name[n] = '\0';
        if (n_readme < MAX_KEYS) {
            const char *dot = strrchr(name, '.');
            if (dot) {
                snprintf(readme_keys[n_readme], sizeof readme_keys[0], "%s", name);
                snprintf(prefix, sizeof prefix, "%.*s", (int)(dot - name + 1), name);
            } else {
                snprintf(readme_keys[n_readme], sizeof readme_keys[0], "%s%s", prefix, name);
            }
            readme_lines[n_readme++] = line;
        }
        p = close + 1;
    }
}

/* Reads README.md's config table; returns the number of rows read, -1 if no README. */
static int read_readme_table(const char *path)
{
    char *text = slurp(path);
    if (!text)
        return -1;
    n_readme = 0;
    int in_config = 0, rows = 0, line = 0;
    for (char *s = text; s && *s;) {
        char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        line++;
        if (len >= 3 && !strncmp(s, "## ", 3))
            in_config = len == 9 && !strncmp(s, "## Config", 9);
        else if (in_config && len > 2 && s[0] == '|' && memchr(s + 1, '|', len - 1)) {
            const char *cell = s + 1;
            const char *bar = memchr(cell, '|', len - 1);
            /* The header ("| key | ...") and separator ("|---|") have no backticks. */
            if (memchr(cell, '`', (size_t)(bar - cell))) {
                parse_key_cell(cell, (size_t)(bar - cell), line);
                rows++;
            }
        }
        s = nl ? nl + 1 : NULL;
    }
    free(text);
    return rows;
}

static int in_readme(const char *key)
{
    for (size_t i = 0; i < n_readme; i++) {
        size_t n = strlen(readme_keys[i]);
        if (!strcmp(readme_keys[i], key))
            return 1;
        /* A list row documents its entries: "model.layers" covers "model.layers[]...". */
        if (!strncmp(readme_keys[i], key, n) && !strncmp(key + n, "[]", 2))
            return 1;
    }
    return 0;
}

static int in_parser(const char *key, const char *const *keys, size_t n_keys)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < n_keys; i++)
        if (!strcmp(keys[i], key) || (!strncmp(keys[i], key, n) && !strncmp(keys[i] + n, "[]", 2)))
            return 1;
    return 0;
}

static void test_config_keys_prefix_rule(void)
{
    n_readme = 0;
    const char row[] = " `optimizer.beta1`, `beta2`, `eps` ";
    parse_key_cell(row, sizeof row - 1, 1);
    CU_ASSERT_EQUAL_FATAL(n_readme, 3);
    CU_ASSERT_STRING_EQUAL(readme_keys[0], "optimizer.beta1");
    CU_ASSERT_STRING_EQUAL(readme_keys[1], "optimizer.beta2");
    CU_ASSERT_STRING_EQUAL(readme_keys[2], "optimizer.eps");
    n_readme = 0;
    const char row2[] = " `optimizer.schedule.step_epochs`, `gamma` ";
    parse_key_cell(row2, sizeof row2 - 1, 1);
    CU_ASSERT_EQUAL_FATAL(n_readme, 2);
    CU_ASSERT_STRING_EQUAL(readme_keys[1], "optimizer.schedule.gamma");
    n_readme = 0;
}

static void test_parser_lists_schema(void)
{
    size_t n = config_key_paths(NULL, 0);
    CU_ASSERT(n > 10);
    const char **keys = calloc(n, sizeof *keys);
    CU_ASSERT_FATAL(keys != NULL);
    CU_ASSERT_EQUAL(config_key_paths(keys, n), n);
    const char *want[] = {"model.layers[].units", "model.layers[].activation", "loss",
                          "optimizer.schedule.name", "training.early_stopping.min_delta",
                          "checkpoint.keep_last", "data.train"};
    for (size_t w = 0; w < sizeof want / sizeof *want; w++) {
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found |= !strcmp(keys[i], want[w]);
        if (!found)
            fprintf(stderr, "config_key_paths lacks %s\n", want[w]);
        CU_ASSERT(found);
    }
    /* No duplicates, and only leaves: no key is a prefix-with-dot of another. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            size_t li = strlen(keys[i]);
            if (i != j) {
                CU_ASSERT(strcmp(keys[i], keys[j]) != 0);
                CU_ASSERT(!(strncmp(keys[i], keys[j], li) == 0 && keys[j][li] == '.'));
            }
        }
    /* A short buffer gets the first cap keys and the total. */
    const char *two[2] = {NULL, NULL};
    CU_ASSERT_EQUAL(config_key_paths(two, 2), n);
    CU_ASSERT_PTR_EQUAL(two[0], keys[0]);
    CU_ASSERT_PTR_EQUAL(two[1], keys[1]);
    free(keys);
}

static void test_readme_matches_parser(void)
{
    const char *readme = DMLP_SOURCE_DIR "/README.md";
    int rows = read_readme_table(readme);
    if (rows < 0) {
        fprintf(stderr, "cannot read %s\n", readme);
        CU_FAIL_FATAL("README.md is missing");
    }
    if (rows == 0)
        fprintf(stderr, "%s: no config table found under \"## Config\"\n", readme);
    CU_ASSERT_FATAL(rows > 0);

    size_t n = config_key_paths(NULL, 0);
    const char **keys = calloc(n, sizeof *keys);
    CU_ASSERT_FATAL(keys != NULL);
    config_key_paths(keys, n);

    int missing_doc = 0, missing_parser = 0;
    for (size_t i = 0; i < n; i++)
        if (!in_readme(keys[i])) {
            if (!missing_doc++)
                fprintf(stderr, "\nconfig keys the parser accepts but README.md's config "
                                "table does not document:\n");
            fprintf(stderr, "  %s\n", keys[i]);
        }
    for (size_t i = 0; i < n_readme; i++)
        if (!in_parser(readme_keys[i], keys, n)) {
            if (!missing_parser++)
                fprintf(stderr, "\nconfig keys README.md documents but the parser does not "
                                "accept:\n");
            fprintf(stderr, "  README.md:%d: %s\n", readme_lines[i], readme_keys[i]);
        }
    for (size_t i = 0; i < n_readme; i++)
        for (size_t j = i + 1; j < n_readme; j++)
            if (!strcmp(readme_keys[i], readme_keys[j])) {
                fprintf(stderr, "  README.md:%d: %s is documented twice (also line %d)\n",
                        readme_lines[j], readme_keys[j], readme_lines[i]);
                missing_parser++;
            }
    if (missing_doc || missing_parser)
        fprintf(stderr, "\n");
    else
        printf("\n  %zu parser keys, %zu README keys in %d rows: all match\n", n, n_readme,
               rows);
    CU_ASSERT_EQUAL(missing_doc, 0);
    CU_ASSERT_EQUAL(missing_parser, 0);
    free(keys);
}

/* The lines between README.md's config-keys markers are exactly what
 * config_write_key_table writes, so the README cannot drift from the code. */
static void test_readme_table_is_generated(void)
{
    char *text = slurp(DMLP_SOURCE_DIR "/README.md");
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    const char *begin = strstr(text, "\n<!-- config-keys:");
    const char *end = begin ? strstr(begin + 1, "\n<!-- end config-keys -->") : NULL;
    begin = begin ? strchr(begin + 1, '\n') : NULL;
    if (!begin || !end || begin > end)
        fprintf(stderr, "\nREADME.md has no <!-- config-keys: ... --> <!-- end config-keys "
                        "--> block\n");
    char *code = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&code, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    config_write_key_table(f);
    fclose(f);
    const int same = begin && end && begin <= end && (size_t)(end - begin) == len &&
                     memcmp(begin + 1, code, len) == 0;
    if (!same)
        fprintf(stderr, "\nREADME.md's config key table differs from `dmlp help config`: "
                        "run scripts/config_table.sh\n");
    CU_ASSERT(same);
    free(code);
    free(text);
}

static CU_TestInfo readme_tests[] = {
    {"README key cell parsing (prefix inheritance)", test_config_keys_prefix_rule},
    {"config_key_paths walks the schema", test_parser_lists_schema},
    {"README config table == parser keys", test_readme_matches_parser},
    {"README config table == the code's key table", test_readme_table_is_generated},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"readme_keys", NULL, NULL, NULL, NULL, readme_tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
