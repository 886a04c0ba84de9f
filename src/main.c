/* The dmlp executable: MPI set-up around the library's command line. */
#include <stdio.h>

#include <string.h>

#include "cli.h"
#include "dist.h"
#include "stop.h"

int main(int argc, char **argv)
{
    struct dmlp_error err = {0};
    /* A preemption signal may come at any moment, even during start-up: training takes
     * it as a request to checkpoint and stop, from the first instruction on. */
    if (argc > 1 && !strcmp(argv[1], "train"))
        stop_install();
    if (dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "dmlp: error: %s\n", err.msg);
        return DMLP_ERR_RUNTIME;
    }
    const int code = cli_main(argc, argv, stdout, stderr);
    dist_finalize();
    return code;
}
