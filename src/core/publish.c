#define _POSIX_C_SOURCE 200809L
/* publish: the one atomic-file sequence of every writer (see publish.h). */
#include "core/publish.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- public functions -------------------------------------------------------------------- */

int publish_temp_name(char *out, size_t cap, const char *path)
{
    /* Host and pid: no two live writers share a name, on one host or on several that share
     * the directory; the leading dot keeps it out of listings and *.h5 globs. */
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    const char *slash = strrchr(path, '/');
    const int dir_len = slash ? (int)(slash - path + 1) : 0;
    const int n = snprintf(out, cap, "%.*s.%s.tmp.%s.%ld", dir_len, path,
                           slash ? slash + 1 : path, host, (long)getpid());
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int publish_begin(struct publish *p, const char *path, struct dmlp_error *err)
{
    p->path = path;
    if (publish_temp_name(p->tmp, sizeof p->tmp, path)) {
        p->tmp[0] = '\0'; /* a cut-short name is no file of ours */
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: the path is too long for a temporary "
                         "file beside it", path);
    }
    unlink(p->tmp);
    /* O_EXCL after the unlink: the name is never followed through a symbolic link, and the
     * system's reason (missing directory, permissions) is reported rather than HDF5's. */
    const int fd = open(p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot create %s: %s", path, p->tmp,
                         strerror(errno));
    close(fd);
    return DMLP_OK;
}

int publish_write(struct publish *p, const void *data, size_t bytes, const char *what,
                  struct dmlp_error *err)
{
    const int fd = open(p->tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
    int e = fd < 0 ? errno : 0;
    const char *at = data;
    for (size_t done = 0; !e && done < bytes;) {
        const ssize_t n = write(fd, at + done, bytes - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            e = n < 0 ? errno : EIO;
        else
            done += (size_t)n;
    }
    /* close() can be where a network file system reports a failed write. */
    if (fd >= 0 && close(fd) && !e)
        e = errno;
    if (e)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot write %s: %s", p->path, what,
                         strerror(e));
    return DMLP_OK;
}

int publish_commit(struct publish *p, struct dmlp_error *err)
{
    int rc = DMLP_OK;
    if (dmlp_fsync_path(p->tmp, 0) != 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: fsync of %s failed: %s", p->path, p->tmp,
                       strerror(errno));
    else if (rename(p->tmp, p->path) != 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot rename %s into place: %s", p->path,
                       p->tmp, strerror(errno));
    if (rc != DMLP_OK) {
        publish_abort(p);
        return rc;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", p->path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    (void)dmlp_fsync_path(dir, 1);
    return DMLP_OK;
}

void publish_abort(struct publish *p) { unlink(p->tmp); }
