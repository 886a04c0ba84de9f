/* api: the public interface of include/dmlp/dmlp.h around the command line. */
#include <stdio.h>
#include <string.h>

#include "dmlp/dmlp.h"

#include "app/cli.h"
#include "par/dist.h"
#include "run/stop.h"

#if __has_include("dmlp_build_info.h")
#include "dmlp_build_info.h" /* written by CMake */
#endif
#ifndef DMLP_BUILD_INFO
#define DMLP_BUILD_INFO "unknown build"
#endif

const char *dmlp_version(void)
{
    return DMLP_VERSION " (" DMLP_BUILD_INFO ")";
}

int dmlp_main(int argc, char **argv)
{
    struct dmlp_error err = {0};
    /* A preemption signal may come at any moment, even during start-up: training (and a
     * sweep's) takes it as a request to checkpoint and stop, from the first instruction
     * on. */
    if (argc > 1 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "sweep")))
        stop_install();
    const int owned = !dist_is_initialized(); /* a caller's MPI stays the caller's */
    if (dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "dmlp: error: %s\n", err.msg);
        return DMLP_ERR_RUNTIME;
    }
    const int code = cli_main(argc, argv, stdout, stderr);
    if (owned)
        dist_finalize();
    return code;
}
