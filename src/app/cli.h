/* cli: the command line of README ("Commands") (train, eval, import, inspect) as a library
 * call, so that tests and other programs can drive it in-process. MPI must be initialised (see
 * dist_init); every rank calls cli_main with the same arguments and gets the same exit code.
 * Rank 0 prints results; an error agreed across ranks is printed once, by rank 0, naming the
 * rank that found it. */
#ifndef DMLP_CLI_H
#define DMLP_CLI_H

#include <stdio.h>

/* Runs one command; returns the exit code (0, 1, 2 of README ("Commands")). out receives results
 * (stdout), errout errors and progress (stderr). */
int cli_main(int argc, char **argv, FILE *out, FILE *errout);

#endif
