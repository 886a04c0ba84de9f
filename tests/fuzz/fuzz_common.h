/* Shared by the libFuzzer harnesses: a private scratch directory per process and writing
 * the fuzz input (or parts of it) to files there, since the importers and readers under test
 * take paths. */
#ifndef DMLP_FUZZ_COMMON_H
#define DMLP_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir_name[512];
static char fuzz_paths[4][640];

/* Removes the files the harness wrote, then the directory (at exit; a crashing input
 * leaves them for inspection). */
static void fuzz_cleanup(void)
{
    for (int i = 0; i < 4; i++)
        if (fuzz_paths[i][0])
            remove(fuzz_paths[i]);
    rmdir(fuzz_dir_name);
}

/* The scratch directory, created on first use. */
static const char *fuzz_dir(void)
{
    char *dir = fuzz_dir_name;
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof fuzz_dir_name, "%s/dmlp-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return dir;
}

/* <fuzz_dir>/<name>, in a static buffer per slot (0..3). */
static const char *fuzz_path(int slot, const char *name)
{
    const char *dir = fuzz_dir();
    snprintf(fuzz_paths[slot], sizeof fuzz_paths[slot], "%s/%s", dir, name);
    return fuzz_paths[slot];
}

static void fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
