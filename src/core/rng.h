/* rng: our own seeded generator (xoshiro256**, seeded through splitmix64), so runs are
 * reproducible across machines and libcs. State is a struct passed in: no globals. */
#ifndef DMLP_RNG_H
#define DMLP_RNG_H

#include <stddef.h>
#include <stdint.h>

struct rng {
    uint64_t s[4];
};

/* Seeds from (seed, stream): distinct streams give independent sequences, e.g. the
 * weight initialisation and each epoch's shuffle. */
void rng_seed(struct rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, bound), unbiased (Lemire's method); bound > 0. */
uint64_t rng_below(struct rng *r, uint64_t bound);
/* Uniform double in [0, 1) with 53 random bits. */
double rng_uniform(struct rng *r);
/* Standard normal (Box–Muller, both values used in turn is not kept: one per call). */
double rng_normal(struct rng *r);
/* perm[i] = π(i): a uniformly random permutation of 0..n-1 (Fisher–Yates). */
void rng_permutation(struct rng *r, uint64_t *perm, size_t n);

#endif
