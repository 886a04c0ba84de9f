#define _GNU_SOURCE /* gethostname, O_CLOEXEC */
#include "data/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Room the names written into the directory need after "dir/": the longest is a
 * checkpoint's temporary file, ".step-<20 digits>.h5.tmp.<host>.<pid>". */
enum { NAME_ROOM = 128 };

struct rundir {
    int fd; /* the lock file, locked; -1 where the file system has no locks */
};

static const char LOCK_NAME[] = ".dmlp.lock";

static int fail_dir(struct dmlp_error *err, const char *dir, const char *why, int e)
{
    return dmlp_fail(err, DMLP_ERR_INPUT, "checkpoint.dir %s: %s%s%s; checkpoints could not "
                     "be saved there (set checkpoint.dir to a directory this run can write)",
                     dir, why, e ? ": " : "", e ? strerror(e) : "");
}

/* The holder line a lock file holds ("" when empty), without its newline. */
static void read_holder(int fd, char *out, size_t cap)
{
    const ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

/* dir exists (created when missing), is a directory, and its path leaves room for the
 * names written into it. */
static int make_dir(const char *dir, struct dmlp_error *err)
{
    if (strlen(dir) + 1 + NAME_ROOM >= PATH_MAX)
        return fail_dir(err, dir, "the path is too long for the checkpoint files in it", 0);
    if (dmlp_mkdir_p(dir))
        return fail_dir(err, dir, errno == ENOTDIR        ? "cannot be created under a file"
                                  : errno == ENAMETOOLONG ? "the path is too long"
                                                          : "cannot be created", errno);
    struct stat st;
    if (stat(dir, &st))
        return fail_dir(err, dir, "cannot be read", errno);
    if (!S_ISDIR(st.st_mode))
        return fail_dir(err, dir, "is a file, not a directory", 0);
    return DMLP_OK;
}

/* Creating a file is what every save does: try it now (root passes permission checks, so
 * only a real creation tells a read-only file system apart). */
static int probe_create(const char *dir, struct dmlp_error *err)
{
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/.dmlp.probe.%ld", dir, (long)getpid());
    const int pfd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (pfd < 0)
        return fail_dir(err, dir, "cannot create files in it", errno);
    close(pfd);
    unlink(probe);
    return DMLP_OK;
}

/* Locks the lock file fd (named lock); refuses a directory another training holds. A file
 * system without locks, or a lock left by a training that died, only gets a line in log. */
static int take_lock(int fd, const char *dir, const char *lock, FILE *log,
                     struct dmlp_error *err)
{
    char holder[256];
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl)) {
        const int e = errno;
        if (e == EACCES || e == EAGAIN) {
            read_holder(fd, holder, sizeof holder);
            return dmlp_fail(err, DMLP_ERR_INPUT, "checkpoint.dir %s is in use by another "
                             "training (%s; lock %s): wait for it to end, or give this run "
                             "another checkpoint.dir", dir,
                             holder[0] ? holder : "its holder did not say who", lock);
        }
        if (log) /* ENOLCK, EOPNOTSUPP, ...: the file system has no locks */
            fprintf(log, "warning: checkpoint.dir %s: cannot lock %s (%s); a second training "
                    "pointed at this directory would not be refused\n", dir, lock,
                    strerror(e));
    } else {
        read_holder(fd, holder, sizeof holder);
        if (holder[0] && log)
            fprintf(log, "checkpoint.dir %s: took over the lock of a training that ended "
                    "without releasing it (%s)\n", dir, holder);
    }
    return DMLP_OK;
}

/* Writes "host H, pid P, since T" into the lock file, for the next run to report; -1 with
 * errno on a failed write. */
static int write_holder(int fd)
{
    char host[256] = "unknown", when[32] = "";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    const time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[512];
    const int len = snprintf(line, sizeof line, "host %s, pid %ld, since %s\n", host,
                             (long)getpid(), when);
    return ftruncate(fd, 0) || pwrite(fd, line, (size_t)len, 0) != len ? -1 : 0;
}

int rundir_open(struct rundir **out, const char *dir, FILE *log, struct dmlp_error *err)
{
    *out = NULL;
    int rc = make_dir(dir, err);
    if (!rc)
        rc = probe_create(dir, err);
    if (rc)
        return rc;
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s/%s", dir, LOCK_NAME);
    const int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail_dir(err, dir, "cannot create its lock file", errno);
    rc = take_lock(fd, dir, lock, log, err);
    if (!rc && write_holder(fd))
        rc = fail_dir(err, dir, "cannot write its lock file", errno);
    struct rundir *rd = rc ? NULL : malloc(sizeof *rd);
    if (!rc && !rd)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    if (rc) {
        close(fd);
        return rc;
    }
    rd->fd = fd;
    *out = rd;
    return DMLP_OK;
}

void rundir_close(struct rundir **rd)
{
    if (!*rd)
        return;
    /* Empty: the next run finds no holder to report. Closing drops the lock. */
    if (ftruncate((*rd)->fd, 0)) {
        /* nothing to do: the lock goes with the descriptor either way */
    }
    close((*rd)->fd);
    free(*rd);
    *rd = NULL;
}
