#!/usr/bin/env bash
# Writes the config key table of README.md from the code: the lines between the
# config-keys markers become the output of `dmlp help config`, which prints the table of
# src/app/config.c. test_readme_keys fails while README.md and the code disagree.
#   scripts/config_table.sh [BUILD_DIR]      (default: build; the dmlp there must be built)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dmlp=${1:-$root/build}/bin/dmlp
# On its own line, so that a dmlp that fails stops the script before README is touched
# (a failing substitution in a command's prefix assignment would not).
table=$("$dmlp" help config)
[[ -n $table ]] || { echo "config_table.sh: $dmlp help config printed nothing" >&2; exit 1; }
TABLE=$table awk '
  /^<!-- config-keys:/ { print; print ENVIRON["TABLE"]; skip = 1; next }
  /^<!-- end config-keys -->/ { skip = 0 }
  !skip' "$root/README.md" > "$root/README.md.tmp"
mv "$root/README.md.tmp" "$root/README.md"
