/* bench_train: training throughput of the demo network (784-256-128-10, relu, softmax,
 * SGD with Nesterov momentum) through the real training loop (train_run), at the rank
 * count of mpirun and the thread count of OMP_NUM_THREADS. For each global batch it runs a
 * few epochs and reports the fastest epoch (the first pays for page faults and caches),
 * samples per second, and where the last epoch's time went (max over ranks): `data` is
 * copying the batch's rows, `fwd` and `bwd` the passes, `sync` waiting for the node's
 * slowest rank before the shared-memory gradient sum, `allred` the sum itself (with one
 * rank: the check for non-finite values), `update` the optimizer, and the sum's share of
 * the epoch. With more than one rank it runs each batch with comm.overlap off and on.
 * Prints a table and one JSON line per run; asserts nothing.
 *
 *   mpirun -np 2 build/bench/bench_train [--data train.h5] [--epochs 3] [--batch 32,128,512]
 *
 * Without --data it trains on 60,000 synthetic rows of 784 features (the shape of
 * Fashion-MNIST; throughput does not depend on the values), written to a temporary file. */
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/config.h"
#include "data/dataset.h"
#include "par/dist.h"
#include "nn/kernels.h"
#include "core/rng.h"
#include "run/train.h"

static int make_synthetic(const char *path, struct dmlp_error *e)
{
    struct dataset *ds;
    if (dataset_alloc(&ds, 60000, 784, 10, 1, e))
        return -1;
    struct rng r;
    rng_seed(&r, 1, 0);
    for (size_t i = 0; i < ds->n * ds->d; i++)
        ds->features[i] = (float)rng_uniform(&r);
    for (size_t i = 0; i < ds->n; i++)
        ds->labels[i] = (int32_t)(rng_next(&r) % 10);
    const int rc = dataset_write(ds, path, e);
    dataset_free(&ds);
    return rc;
}

static void usage(void)
{
    printf("usage: bench_train [--data FILE.h5] [--epochs N] [--batch B[,B...]]\n"
           "  trains the demo network through train_run and prints samples/s per batch;\n"
           "  ranks from mpirun, threads from OMP_NUM_THREADS; default: synthetic\n"
           "  60000x784 data, 3 epochs, batches 32,128,512\n");
}

int main(int argc, char **argv)
{
    struct dmlp_error e = {0};
    if (dist_init(&argc, &argv, &e)) {
        fprintf(stderr, "bench_train: %s\n", e.msg);
        return 1;
    }
    const char *data = NULL, *batches = "32,128,512";
    unsigned epochs = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) {
            epochs = (unsigned)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batches = argv[++i];
        } else {
            int rank;
            MPI_Comm_rank(MPI_COMM_WORLD, &rank);
            if (rank == 0)
                usage();
            dist_finalize();
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    struct dist *d;
    dist_create_world(&d, &e);
    const int rank = dist_rank(d), ranks = dist_size(d);
    char tmp[64] = "";
    if (!data) {
        snprintf(tmp, sizeof tmp, "/tmp/bench_train_%d.h5", (int)getpid());
        dist_bcast(d, tmp, sizeof tmp, 0);
        if (rank == 0 && make_synthetic(tmp, &e))
            fprintf(stderr, "bench_train: %s\n", e.msg);
        data = tmp;
    }
    if (dist_agree(d, &e)) {
        dist_free(&d);
        dist_finalize();
        return 1;
    }
    if (rank == 0) {
        printf("bench_train: %d rank(s) x %d thread(s), kernels %s, %u epochs, data %s\n",
               ranks, omp_get_max_threads(), kernel_backend(), epochs,
               tmp[0] ? "synthetic 60000x784" : data);
        printf("%6s %7s %10s %12s %9s %9s %9s %9s %9s %9s %10s\n", "batch", "overlap",
               "epoch s", "samples/s", "data s", "fwd s", "bwd s", "sync s", "allred s",
               "update s", "allred %");
    }
    char list[256];
    snprintf(list, sizeof list, "%s", batches);
    int status = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        for (int overlap = 0; overlap <= (ranks > 1); overlap++) {
            char yaml[1024];
            snprintf(yaml, sizeof yaml,
                     "model:\n  layers:\n    - {units: 256, activation: relu}\n"
                     "    - {units: 128, activation: relu}\n"
                     "    - {units: 10, activation: softmax}\n"
                     "optimizer: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, "
                     "weight_decay: 1.0e-3}\n"
                     "data: {train: %s}\n"
                     "training: {epochs: %u, batch_size: %s, seed: 1}\n"
                     "comm: {overlap: %s}\n",
                     data, epochs, tok, overlap ? "true" : "false");
            struct config *cfg = NULL;
            struct train_options opt = {.save_checkpoints = 0};
            struct train_result res;
            if (config_load_string(&cfg, yaml, strlen(yaml), "bench_train", NULL, 0, &e) ||
                train_run(d, cfg, yaml, &opt, &res, &e)) {
                if (rank == 0)
                    fprintf(stderr, "bench_train: %s\n", e.msg);
                config_free(&cfg);
                status = 1;
                break;
            }
            const struct runlog_epoch *le = &res.last_epoch;
            const double samples = (double)res.last_epoch.samples_per_second *
                                   res.last_epoch.epoch_seconds;
            const double best = res.fastest_epoch_seconds;
            const double share = le->t_max[TIMER_ALLREDUCE] / le->epoch_seconds * 100.0;
            if (rank == 0) {
                printf("%6s %7s %10.3f %12.0f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.1f%%\n",
                       tok, overlap ? "on" : "off", best, samples / best,
                       le->t_max[TIMER_DATA], le->t_max[TIMER_FORWARD], le->t_max[TIMER_BACKWARD],
                       le->t_max[TIMER_SYNC], le->t_max[TIMER_ALLREDUCE],
                       le->t_max[TIMER_UPDATE], share);
                printf("JSON {\"bench\":\"train\",\"ranks\":%d,\"threads\":%d,\"batch\":%s,"
                       "\"overlap\":%s,\"epoch_s\":%.4f,\"samples_per_s\":%.0f,"
                       "\"data_s\":%.4f,\"forward_s\":%.4f,\"backward_s\":%.4f,\"sync_s\":%.4f,"
                       "\"allreduce_s\":%.4f,"
                       "\"update_s\":%.4f,\"allreduce_share\":%.4f,\"kernels\":\"%s\"}\n",
                       ranks, omp_get_max_threads(), tok, overlap ? "true" : "false", best,
                       samples / best, le->t_max[TIMER_DATA], le->t_max[TIMER_FORWARD],
                       le->t_max[TIMER_BACKWARD],
                       le->t_max[TIMER_SYNC], le->t_max[TIMER_ALLREDUCE],
                       le->t_max[TIMER_UPDATE], share / 100.0,
                       kernel_backend());
                fflush(stdout);
            }
            model_free(&res.model);
            config_free(&cfg);
        }
        if (status)
            break;
    }
    if (tmp[0] && rank == 0)
        unlink(tmp);
    dist_free(&d);
    dist_finalize();
    return status;
}
