/* publish: making an output file appear under its name only when it is complete, for every
 * writer of dmlp (datasets, predictions, checkpoints). The writer fills a temporary file
 * beside the destination; commit then fsyncs it, renames it over the destination (atomic:
 * same directory, same file system) and fsyncs the directory. A reader, or a crash, sees the
 * old file or the complete new one, never half of one, and a failed write leaves an existing
 * destination as it was. Owns the temporary name, ".NAME.tmp.HOST.PID" beside NAME: hidden,
 * never shared by two live writers (even on hosts sharing a file system), and marked by
 * ".tmp." so that checkpoint's pruning can recognise a dead writer's leftovers. Every
 * message names the destination, the temporary file and the system's reason. Never touches
 * HDF5 or MPI. */
#ifndef DMLP_PUBLISH_H
#define DMLP_PUBLISH_H

#include <limits.h>
#include <stddef.h>

#include "core/util.h"

struct publish {
    const char *path;   /* the destination (not copied: it must outlive the publish) */
    char tmp[PATH_MAX]; /* the temporary file the writer fills */
};

/* The temporary name for path, DIR/.BASE.tmp.HOST.PID, into out (cap bytes); for writers
 * that publish something other than a file's bytes (checkpoint's latest.h5 symlink).
 * Returns 0, or -1 when it does not fit. */
int publish_temp_name(char *out, size_t cap, const char *path);

/* Chooses p->tmp for path and creates it, empty and new. A file already under that name
 * was left by a dead process of this host with this pid, and is replaced. DMLP_ERR_RUNTIME
 * when it cannot be created (a missing directory, no permission). On DMLP_OK the caller
 * writes p->tmp, by name (as HDF5 does) or with publish_write, and ends with publish_commit
 * or publish_abort. */
int publish_begin(struct publish *p, const char *path, struct dmlp_error *err);

/* Writes bytes of data as the whole temporary file: "PATH: cannot write WHAT: REASON" on
 * failure (a full disk: ENOSPC), what naming the content ("checkpoint"). */
int publish_write(struct publish *p, const void *data, size_t bytes, const char *what,
                  struct dmlp_error *err);

/* Makes the finished temporary file the destination: fsync it, rename it over p->path, then
 * fsync the directory (best effort: some file systems refuse it, and the file is complete
 * either way). On failure the temporary file is removed and the destination is untouched. */
int publish_commit(struct publish *p, struct dmlp_error *err);

/* Removes the temporary file of a write that failed; the destination is untouched. */
void publish_abort(struct publish *p);

#endif
