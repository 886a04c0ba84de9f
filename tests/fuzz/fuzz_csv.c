/* libFuzzer harness: dataset_import_csv. The input is the CSV text; the column options come
 * from its own first line, so that most inputs get past the header: even first byte, the
 * last header field is --label-column; odd, the last two fields are --target-columns. A
 * successful import must read back. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *csv = fuzz_path(0, "in.csv"), *out = fuzz_path(1, "out.h5");
    fuzz_write(csv, data, size);
    /* the first line, without a trailing CR */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t l = nl ? (size_t)(nl - data) : size;
    char *head = malloc(l + 1);
    if (!head)
        return 0;
    memcpy(head, data, l);
    head[l] = '\0';
    if (l && head[l - 1] == '\r')
        head[--l] = '\0';
    const char *label = NULL, *targets = NULL;
    char *last = strrchr(head, ',');
    if (size && (data[0] & 1) && last) {
        *last = '\0';
        char *prev = strrchr(head, ',');
        *last = ',';
        targets = prev ? prev + 1 : head;
    } else {
        label = last ? last + 1 : head;
    }
    struct dmlp_error err = {0};
    if (dataset_import_csv(csv, label, targets, out, &err) == DMLP_OK) {
        struct dataset *ds = NULL;
        if (dataset_read(&ds, out, &err) != DMLP_OK) {
            fprintf(stderr, "imported file does not read back: %s\n", err.msg);
            abort();
        }
        dataset_free(&ds);
        remove(out);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(head);
    return 0;
}
