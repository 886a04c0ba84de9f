/* libFuzzer harness: dataset_import_idx. The input is split in two: the first byte b picks
 * the split point (b / 255 of the rest) between the images file and the labels file (both
 * written plain; zlib reads plain files through). A successful import must read back. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>

#include "data/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const size_t rest = size - 1, cut = rest * data[0] / 255;
    const char *img = fuzz_path(0, "images.idx"), *lab = fuzz_path(1, "labels.idx");
    const char *out = fuzz_path(2, "out.h5");
    fuzz_write(img, data + 1, cut);
    fuzz_write(lab, data + 1 + cut, rest - cut);
    struct dmlp_error err = {0};
    if (dataset_import_idx(img, lab, out, &err) == DMLP_OK) {
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
    return 0;
}
