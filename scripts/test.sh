#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
#   scripts/test.sh                 the Release build in build/
#   DMLP_SANITIZE=1 scripts/test.sh the same suite built with ASan + UBSan in build-asan/
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/install-deps.sh"
source "$here/env.sh"

extra=(-DDMLP_WERROR=ON)
if [[ "${DMLP_SANITIZE:-0}" == 1 ]]; then
  export DMLP_BUILD=$DMLP_ROOT/build-asan
  extra+=(-DDMLP_SANITIZE=ON)
  # Open MPI's own allocations outlive MPI_Finalize; leaks are checked with valgrind on
  # the unit tests instead.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
dmlp_build "${extra[@]}"
cd "$DMLP_BUILD"
ctest --output-on-failure --timeout 600 "$@"
