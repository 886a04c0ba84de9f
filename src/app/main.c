/* The dmlp executable: the library's command line (include/dmlp/dmlp.h). */
#include "dmlp/dmlp.h"

int main(int argc, char **argv)
{
    return dmlp_main(argc, argv);
}
