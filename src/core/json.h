/* json: the two pieces every JSON line dmlp writes is made of (metrics.jsonl, eval --json):
 * a string literal with its escapes, and a number. No MPI, no allocation. */
#ifndef DMLP_JSON_H
#define DMLP_JSON_H

#include <stdio.h>

/* s as a JSON string literal: quotes, backslashes and control characters escaped. */
void json_put_string(FILE *f, const char *s);

/* v with up to 9 significant digits (enough to tell float32 values apart); JSON has no NaN
 * or infinity, so those are written as null. */
void json_put_number(FILE *f, double v);

#endif
