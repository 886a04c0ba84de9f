#define _GNU_SOURCE /* sched_getaffinity */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

int dmlp_fail(struct dmlp_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void dmlp_error_prefix(struct dmlp_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Compose in a buffer large enough for both, then truncate into msg. */
    char both[sizeof prefix + sizeof old + 2];
    snprintf(both, sizeof both, "%s: %s", prefix, old);
    size_t len = strlen(both);
    if (len >= sizeof err->msg)
        len = sizeof err->msg - 1;
    memcpy(err->msg, both, len);
    err->msg[len] = '\0';
}

void dmlp_error_clear(struct dmlp_error *err)
{
    if (err) {
        err->code = DMLP_OK;
        err->msg[0] = '\0';
    }
}

void *dmlp_alloc_aligned(size_t n)
{
    if (n == 0 || n > SIZE_MAX - 63)
        return NULL;
    size_t bytes = (n + 63u) & ~(size_t)63u;
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void dmlp_free_aligned(void *p) { free(p); }

int dmlp_mul_size(size_t *out, size_t a, size_t b)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int dmlp_add_size(size_t *out, size_t a, size_t b)
{
    if (b > SIZE_MAX - a)
        return -1;
    *out = a + b;
    return 0;
}

int dmlp_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int dmlp_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

double dmlp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int dmlp_affinity(char *out, size_t cap)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        snprintf(out, cap, "?");
        return -1;
    }
    /* "0-3,8,10-11" */
    size_t used = 0;
    int count = 0;
    out[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        int end = c;
        while (end + 1 < CPU_SETSIZE && CPU_ISSET(end + 1, &set))
            end++;
        count += end - c + 1;
        int n = end > c ? snprintf(out + used, used < cap ? cap - used : 0, "%s%d-%d",
                                   used ? "," : "", c, end)
                        : snprintf(out + used, used < cap ? cap - used : 0, "%s%d",
                                   used ? "," : "", c);
        if (n > 0)
            used += (size_t)n;
        c = end;
    }
    if (used >= cap && cap > 4)
        memcpy(out + cap - 4, "...", 4);
    return count;
}

int dmlp_cores_online(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

size_t dmlp_phys_mem(void)
{
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    size_t bytes;
    if (pages <= 0 || page <= 0 || dmlp_mul_size(&bytes, (size_t)pages, (size_t)page))
        return SIZE_MAX;
    return bytes;
}

int dmlp_mkdir_p(const char *dir)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}

int dmlp_fsync_path(const char *path, int directory)
{
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int dmlp_check_input_file(const char *path, struct dmlp_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0 || (S_ISREG(st.st_mode) && access(path, R_OK) != 0))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode))
        return DMLP_OK;
    const char *what = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                                              : "not a file";
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s: is %s, not a regular file", path, what);
}

int dmlp_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

size_t dmlp_first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

const char *dmlp_nonfinite_name(float x) { return isnan(x) ? "NaN" : x > 0 ? "+inf" : "-inf"; }
