/* rundir: a training's hold on its checkpoint.dir. Checked and locked at the start, so an
 * unusable directory is found before any work rather than at the first save hours in, and
 * two trainings pointed at one directory cannot destroy each other's files: the second is
 * refused at once, naming the first. Rank 0 only (it writes the checkpoints); never MPI.
 *
 * The lock is an fcntl write lock on checkpoint.dir/.dmlp.lock, which holds the holder's
 * host, pid and start time. The kernel drops the lock when its process ends, however it
 * ends, so a lock file with a holder in it but no lock on it was left by a run that died:
 * it is taken over, and that is reported. NFS and Lustre carry fcntl locks to the server;
 * where a file system has no locks at all, the run goes on with a warning. */
#ifndef DMLP_RUNDIR_H
#define DMLP_RUNDIR_H

#include <stdio.h>

#include "core/util.h"

struct rundir;

/* Creates dir if missing (mkdir -p), checks that it is a directory this process can
 * create files in and that its path leaves room for the checkpoint names, and takes the
 * lock. DMLP_ERR_INPUT names the path and the reason (a file, under a file, read-only,
 * too long, or locked by another training: host and pid). Notes on a taken-over or
 * unsupported lock go to log (may be NULL). */
int rundir_open(struct rundir **out, const char *dir, FILE *log, struct dmlp_error *err);

/* Releases the lock (the file stays, empty) and frees; accepts a NULL *rd. */
void rundir_close(struct rundir **rd);

#endif
