# Sourced by the scripts: settings that let Open MPI run here without a reader knowing them.
# Running as root (containers, CI) needs explicit consent from Open MPI, and running more
# ranks than cores needs oversubscription allowed. Both are harmless elsewhere.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Idle OpenMP threads sleep instead of spinning, so ranks sharing cores don't starve.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
DMLP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DMLP_ROOT
DMLP_BUILD=${DMLP_BUILD:-$DMLP_ROOT/build}
export DMLP_BUILD
dmlp_build() {
  cmake -S "$DMLP_ROOT" -B "$DMLP_BUILD" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$DMLP_BUILD" -j"$(nproc)"
}
