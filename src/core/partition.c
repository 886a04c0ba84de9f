/* partition: the rules of partition.h. */
#include "core/partition.h"

void dmlp_slice(uint64_t count, int n, int r, uint64_t *offset, uint64_t *len)
{
    const uint64_t base = count / (uint64_t)n, rem = count % (uint64_t)n, ur = (uint64_t)r;
    *len = base + (ur < rem);
    *offset = ur * base + (ur < rem ? ur : rem);
}

/* Where rank i's slice of step s starts in its own shard: floor(s·B·rows_i / N), capped at
 * the shard's end. */
static uint64_t shard_take(const uint64_t *rows, uint64_t N, int i, uint64_t s, uint64_t B)
{
    __extension__ typedef unsigned __int128 u128;
    const u128 t = (u128)s * B * rows[i] / N;
    return t < rows[i] ? (uint64_t)t : rows[i];
}

void dmlp_shard_step(const uint64_t *rows, int n, int rank, uint64_t B, uint64_t s,
                     uint64_t steps_per_epoch, int drop_last, uint64_t *offset,
                     uint64_t *len, uint64_t *count)
{
    uint64_t N = 0;
    for (int i = 0; i < n; i++)
        N += rows[i];
    const int last = s + 1 == steps_per_epoch && !drop_last;
    *count = *offset = *len = 0;
    for (int i = 0; i < n && N; i++) {
        const uint64_t a = shard_take(rows, N, i, s, B);
        const uint64_t b = last ? rows[i] : shard_take(rows, N, i, s + 1, B);
        *count += b - a;
        if (i == rank) {
            *offset = a;
            *len = b - a;
        }
    }
}
