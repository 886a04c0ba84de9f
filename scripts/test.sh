#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest: first the Release
# build (build/), then the same suite built with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/), so the sanitizer configuration never rots.
#   scripts/test.sh                       both suites
#   DMLP_SANITIZE=0 scripts/test.sh       the Release suite only
#   scripts/test.sh -R mpi                extra arguments go to ctest
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/install-deps.sh"
source "$here/env.sh"

run_suite() {
  dmlp_build "$@"
  (cd "$DMLP_BUILD" && ctest --output-on-failure --timeout 600 "${ctest_args[@]}")
}
ctest_args=("$@")

echo "== Release build ($DMLP_BUILD)"
# With the OpenBLAS backend built in, so test_kernels checks it beside dmlp's own kernels
# (which stay the default).
run_suite -DDMLP_WERROR=ON -DDMLP_BLAS=openblas

# libFuzzer harnesses for the config loader, the IDX and CSV importers and the dataset
# validator: a short, bounded run each; their corpora hold every crash found so far.
if [[ "${DMLP_FUZZ:-1}" != 0 ]]; then
  echo "== libFuzzer harnesses (${DMLP_FUZZ_SECONDS:-10} s each)"
  "$DMLP_ROOT/tests/fuzz/run_fuzzers.sh" "$DMLP_BUILD" "${DMLP_FUZZ_SECONDS:-10}"
fi

if [[ "${DMLP_SANITIZE:-1}" != 0 ]]; then
  export DMLP_BUILD=$DMLP_ROOT/build-asan
  # Open MPI's own allocations outlive MPI_Finalize, so leak detection would only report
  # the MPI library; memory errors and undefined behaviour abort the test.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build ($DMLP_BUILD)"
  # Everything again, MPI tests included, except the SLURM test: it starts a scheduler's
  # daemons around the same dmlp code the other tests already run under the sanitizers.
  ctest_args=(-E 'test_slurm' "${ctest_args[@]}")
  run_suite -DDMLP_WERROR=ON -DDMLP_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
