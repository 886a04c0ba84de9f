/* config: the run configuration (README, "Config"), read from YAML (libyaml) against one table
 * of keys (app/config.c) that also gives the defaults, ranges, --set paths and help text. Every
 * error names the file, line and key path ("runs/x.yaml:7: model.layers[1].units: -8 is not a
 * positive integer"). Never touches MPI or HDF5; each rank loads its own copy. */
#ifndef DMLP_CONFIG_H
#define DMLP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/settings.h"
#include "core/util.h"

/* Loads and validates the YAML file at path, then applies each "key.path=value" in sets
 * (e.g. "optimizer.lr=0.1", "model.layers[0].units=64", "data.test=" clears a string)
 * and validates again. Relative data paths stay as written (relative to the cwd).
 * On error returns DMLP_ERR_INPUT with a message naming file, line and key; *out is NULL. */
int config_load(struct config **out, const char *path, const char *const *sets, size_t n_sets,
                struct dmlp_error *err);

/* Same, from YAML text in memory; name is used in messages in place of the file name. */
int config_load_string(struct config **out, const char *yaml, size_t len, const char *name,
                       const char *const *sets, size_t n_sets, struct dmlp_error *err);

/* Serializes the effective config (after --set) back to YAML text (malloc'd, NUL-ended),
 * for the checkpoint's config attribute. Loading that text gives an equal config. */
int config_to_yaml(const struct config *cfg, char **out, struct dmlp_error *err);

/* Frees a config from config_load* and sets *cfg to NULL. */
void config_free(struct config **cfg);

/* Every key path the table accepts, one per scalar value, in table order, with list
 * indices written "[]" ("model.layers[].units", "optimizer.schedule.name", ...). Stores up
 * to cap static strings into out (out may be NULL when cap is 0) and returns the total
 * count. */
size_t config_key_paths(const char **out, size_t cap);

/* Writes the key table as Markdown: one row per key (and one for each list) with its
 * type and range, default and meaning. `dmlp help config` prints it, and README.md holds
 * a copy that test_readme_keys compares with it. */
void config_write_key_table(FILE *out);

#endif
