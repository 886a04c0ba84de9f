/* dmlp.h: the public interface of libdmlp, for programs that link the library.
 *
 *     #include <dmlp/dmlp.h>
 *
 * with `find_package(dmlp)` + `target_link_libraries(app PRIVATE dmlp::dmlp)`, or
 * `pkg-config --cflags --libs dmlp`. Everything the library exports is declared under
 * include/dmlp/ and named dmlp_*; the rest of it is hidden (local symbols of the static
 * library, hidden visibility in the shared one), so nothing in it can collide with a name
 * in the program that links it. The interface is small on purpose: the whole command line
 * as one call (training, evaluation, prediction, import, inspection: README), and the
 * version. docs/architecture.md describes what lies behind it. */
#ifndef DMLP_DMLP_H
#define DMLP_DMLP_H

#ifdef __cplusplus
extern "C" {
#endif

#define DMLP_VERSION "0.1.0"

/* What a symbol of the interface carries: visible from the shared library. */
#if defined(__GNUC__)
#define DMLP_API __attribute__((visibility("default")))
#else
#define DMLP_API
#endif

/* The exit codes of the command line, and the status every fallible call returns. */
enum dmlp_status {
    DMLP_OK = 0,
    DMLP_ERR_RUNTIME = 1, /* something failed while running (I/O, memory, numerics) */
    DMLP_ERR_INPUT = 2,   /* bad usage, config or input file */
    DMLP_STOPPED = 75     /* stopped by a signal after writing a checkpoint */
};

/* The library's version and build ("0.1.0 (GNU 12.2.0; Release: -O3 ...)"): what a bug
 * report needs. A static string. */
DMLP_API const char *dmlp_version(void);

/* The dmlp command line in-process, exactly as the executable runs it: argv[0] is the
 * program name, argv[1] the command ("train", "eval", "predict", "import", "inspect";
 * "--help" lists them). Initialises MPI when the caller has not (and then finalises it on
 * return, so call it once per process), catches SIGTERM/SIGUSR1 for a checkpointed stop
 * during "train", prints results on stdout and errors on stderr. Every rank of the job
 * calls it with the same arguments. Returns the exit code (enum dmlp_status). */
DMLP_API int dmlp_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
