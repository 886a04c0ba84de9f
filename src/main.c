/* The dmlp executable: MPI set-up around the library's command line. */
#include <stdio.h>

#include "cli.h"
#include "dist.h"

int main(int argc, char **argv)
{
    struct dmlp_error err = {0};
    if (dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "dmlp: error: %s\n", err.msg);
        return DMLP_ERR_RUNTIME;
    }
    const int code = cli_main(argc, argv, stdout, stderr);
    dist_finalize();
    return code;
}
