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
# The Release build of the dmlp command that benchmarks use (build-bench, or
# $DMLP_BUILD_BENCH), after installing what the demo needs; prints the build folder.
dmlp_bench_cli() {
  "$DMLP_ROOT/scripts/install-deps.sh" --demo >&2
  local b=${DMLP_BUILD_BENCH:-$DMLP_ROOT/build-bench}
  cmake -S "$DMLP_ROOT" -B "$b" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$b" -j"$(nproc)" --target dmlp_cli >/dev/null
  echo "$b"
}
# Fashion-MNIST's training set as data/fashion_mnist_train.h5 (imported from Debian's
# dataset-fashion-mnist with the dmlp at $1 when it is not there yet); prints its path.
dmlp_fashion_train() {
  local out=$DMLP_ROOT/data/fashion_mnist_train.h5 src=/usr/share/datasets/fashion-mnist
  mkdir -p "$DMLP_ROOT/data"
  [ -s "$out" ] || "$1" import idx --images "$src/train-images-idx3-ubyte.gz" \
    --labels "$src/train-labels-idx1-ubyte.gz" --output "$out" >&2
  echo "$out"
}
