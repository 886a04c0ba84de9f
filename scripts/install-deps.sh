#!/usr/bin/env bash
# The one list of Debian packages dmlp needs; installs those that are missing.
#   scripts/install-deps.sh          build and test dependencies
#   scripts/install-deps.sh --demo   the same (the demo's dataset is a test dependency too)
#   scripts/install-deps.sh --bench  also what bench/run.sh and bench/surrogate.sh compare
#                                    against (PyTorch, scikit-learn)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev        # MPI
  libhdf5-openmpi-dev               # parallel HDF5 (datasets, checkpoints)
  libyaml-dev                       # configs
  libcunit1-dev                     # tests
  zlib1g-dev                        # gzip-compressed IDX files
  hdf5-tools iproute2               # tests: h5dump/h5diff, network namespaces (two hosts)
  strace                            # tests: a sweep opens its data once per node
  python3-numpy python3-h5py python3-matplotlib   # tests: numpy interop, plots
  clang libclang-rt-14-dev valgrind # tests: libFuzzer harnesses, memcheck
  libopenblas-dev                   # tests + benchmarks: the OpenBLAS GEMM backend
  qemu-user binutils                # tests: older CPUs emulated (Haswell, Westmere), objdump
  gfortran                          # the Fortran module (fortran/dmlp.f90) and its test
  python3-pip python3-setuptools    # tests: pip install ./python
  python3-onnx python3-opencv       # tests: the ONNX export, checked and run independently
  dataset-fashion-mnist             # tests (ONNX on real data) and the demo
)
case "${1:-}" in
  --demo) ;;
  --bench) packages+=(time python3-torch python3-sklearn) ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "install-deps: not root and no sudo; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
