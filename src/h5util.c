#include "h5util.h"

#include <stdio.h>

void h5util_quiet_begin(struct h5util_quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5util_quiet_end(const struct h5util_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

struct reason_buf {
    char *buf;
    size_t cap;
};

static herr_t reason_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    struct reason_buf *r = data;
    if (n == 0 && e->desc)
        snprintf(r->buf, r->cap, "%s", e->desc);
    return 0;
}

/* Walking upward starts at the most specific entry. */
const char *h5util_reason(char *buf, size_t cap)
{
    struct reason_buf r = {buf, cap};
    snprintf(buf, cap, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_walk, &r);
    return buf;
}
