/* stop: graceful stop requests. SIGUSR1, SIGTERM and SIGINT only set a flag (the handler
 * does nothing else, so it is async-signal-safe); training reads the flag at each step
 * boundary and the ranks agree on it inside the step's gradient allreduce. Installed by
 * the command line (the library never takes signals behind a caller's back). */
#ifndef DMLP_STOP_H
#define DMLP_STOP_H

/* Installs the handlers (SA_RESTART, so interrupted system calls resume). */
void stop_install(void);

/* The signal number received since the handlers were installed, or 0. */
int stop_requested(void);

/* "SIGUSR1", "SIGTERM", "SIGINT" or "signal N". */
const char *stop_signal_name(int sig);

#endif
