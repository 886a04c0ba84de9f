/* dmlp.h: the public umbrella header of libdmlp, for programs that link the library.
 *
 *     #include <dmlp/dmlp.h>
 *
 * with `find_package(dmlp)` + `target_link_libraries(app PRIVATE dmlp::dmlp)`, or
 * `pkg-config --cflags --libs dmlp`. It brings in every public module header (each is
 * described at its top; DESIGN §3 gives the picture): configs (config.h), datasets and
 * checkpoints (dataset.h, checkpoint.h), the network and its numerics (model.h, kernels.h),
 * optimizers and learning-rate schedules (optim.h, schedule.h), training and evaluation
 * (train.h, metrics.h, predict.h), MPI (dist.h), and the whole command line as one call
 * (cli.h). None of them includes mpi.h or hdf5.h. Programs using dist, train, predict or cli
 * must initialise MPI first (dist_init). DMLP_VERSION (util.h) is the library's version. */
#ifndef DMLP_DMLP_H
#define DMLP_DMLP_H

/* The headers are C11; from C++ (g++/clang++), map its two keywords they use. */
#ifdef __cplusplus
#define DMLP_CXX_SHIMS
#define restrict __restrict__
#define _Noreturn [[noreturn]]
extern "C" {
#endif

#include "util.h"
#include "rng.h"
#include "config.h"
#include "schedule.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "metrics.h"
#include "dataset.h"
#include "checkpoint.h"
#include "predict.h"
#include "dist.h"
#include "stop.h"
#include "train.h"
#include "cli.h"

#ifdef DMLP_CXX_SHIMS
}
#undef restrict
#undef _Noreturn
#undef DMLP_CXX_SHIMS
#endif

#endif
