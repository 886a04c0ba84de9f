/* libFuzzer harness: config_load_string on arbitrary bytes. An input whose first line starts
 * with "@set " carries --set arguments (space-separated) on that line; the rest is the YAML.
 * A config that loads must serialize with config_to_yaml, and that text must load again. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *yaml = (const char *)data;
    size_t len = size;
    char *line = NULL;
    const char *sets[8];
    size_t n_sets = 0;
    if (size > 5 && !memcmp(data, "@set ", 5)) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t l = nl ? (size_t)(nl - data) : size;
        line = malloc(l + 1);
        if (!line)
            return 0;
        memcpy(line, data, l);
        line[l] = '\0';
        for (char *tok = strtok(line + 5, " "); tok && n_sets < 8; tok = strtok(NULL, " "))
            sets[n_sets++] = tok;
        yaml += nl ? l + 1 : l;
        len -= nl ? l + 1 : l;
    }
    struct config *cfg = NULL;
    struct dmlp_error err = {0};
    if (config_load_string(&cfg, yaml, len, "fuzz.yaml", sets, n_sets, &err) == DMLP_OK) {
        char *text = NULL;
        if (config_to_yaml(cfg, &text, &err) != DMLP_OK) {
            fprintf(stderr, "a valid config does not serialize: %s\n", err.msg);
            abort();
        }
        struct config *again = NULL;
        if (config_load_string(&again, text, strlen(text), "roundtrip.yaml", NULL, 0, &err) !=
            DMLP_OK) {
            fprintf(stderr, "round trip failed: %s\n--\n%s\n", err.msg, text);
            abort(); /* and load again */
        }
        config_free(&again);
        free(text);
    } else if (cfg != NULL || err.msg[0] == '\0') {
        abort(); /* a failure leaves *out NULL and says why */
    }
    config_free(&cfg);
    free(line);
    return 0;
}
