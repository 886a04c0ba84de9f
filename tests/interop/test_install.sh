#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then a tiny C program built against it twice:
# with CMake's find_package(dmlp) (target dmlp::dmlp, the static library) and with
# pkg-config (dmlp.pc, the shared library, moved to another prefix to check that it is
# relocatable). The program prints the library's version and runs the installed example
# config through dmlp_main's `inspect`-free path: `train` for a few steps. Also checks that
# the libraries export nothing but the dmlp_* interface, and that only include/dmlp's
# headers are installed.
#
#   tests/interop/test_install.sh BUILD_DIR        (an already built build tree)
set -euo pipefail
BUILD=$(cd "${1:?usage: test_install.sh BUILD_DIR}" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

PREFIX=$WORK/prefix
cmake --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log" || { cat "$WORK/install.log"; fail "cmake --install"; }
for f in bin/dmlp lib/libdmlp.a lib/libdmlp.so include/dmlp/dmlp.h \
         share/dmlp/configs/xor.yaml share/dmlp/configs/fashion_mnist.yaml \
         lib/cmake/dmlp/dmlpConfig.cmake lib/cmake/dmlp/dmlpConfigVersion.cmake \
         lib/cmake/dmlp/dmlpTargets.cmake lib/pkgconfig/dmlp.pc; do
  [[ -f $PREFIX/$f ]] || fail "not installed: $f"
done
echo "installed: $(cd "$PREFIX" && find . -type f | sort | tr '\n' ' ')"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$PREFIX/bin/dmlp" --version ||
  fail "the installed dmlp does not run"

mkdir -p "$WORK/app"
# Nothing but the interface is installed or exported: a program's own model_create or
# csv_open cannot collide with the library's.
internal=$(cd "$PREFIX/include/dmlp" && ls | grep -v '^dmlp\.h$' | grep -v '^infer\.h$' || true)
[[ -z $internal ]] || fail "internal headers installed: $internal"
exported() { nm "$@" 2>/dev/null | awk '$2 ~ /^[A-TV-Z]$/ {print $3}' | sort -u; }
leaks=$(exported "$PREFIX/lib/libdmlp.a" | grep -v '^dmlp_' || true)
[[ -z $leaks ]] || fail "libdmlp.a exports non-dmlp_ symbols: $(echo $leaks | head -c 400)"
leaks=$(exported -D --defined-only "$PREFIX/lib/libdmlp.so" | grep -v '^dmlp_' || true)
[[ -z $leaks ]] || fail "libdmlp.so exports non-dmlp_ symbols: $(echo $leaks | head -c 400)"
exported "$PREFIX/lib/libdmlp.a" | grep -qx dmlp_main || fail "libdmlp.a lacks dmlp_main"
exported -D --defined-only "$PREFIX/lib/libdmlp.so" | grep -qx dmlp_main ||
  fail "libdmlp.so lacks dmlp_main"
echo "exported: $(exported "$PREFIX/lib/libdmlp.a" | tr '\n' ' ')"

cat > "$WORK/app/app.c" <<'C'
#include <dmlp/dmlp.h>
#include <stdio.h>
#include <string.h>

/* Names the library also uses internally: with its internals hidden, no clash. */
int model_create(void) { return 0; }
int csv_open(void) { return 0; }

int main(int argc, char **argv)
{
    printf("dmlp %s\n", dmlp_version());
    if (argc < 2 || strncmp(dmlp_version(), DMLP_VERSION, strlen(DMLP_VERSION)) != 0)
        return 1;
    /* app CONFIG KEY=VALUE...: dmlp train CONFIG --set KEY=VALUE... --quiet */
    char *args[32] = {"dmlp", "train", argv[1]};
    int n = 3;
    for (int i = 2; i < argc && n < 29; i++) {
        args[n++] = "--set";
        args[n++] = argv[i];
    }
    args[n++] = "--quiet";
    return dmlp_main(n, args) + model_create() + csv_open();
}
C
# The inference consumers, built below through find_package(dmlp) and through pkg-config.
cat > "$WORK/app/infer.c" <<'C'
#include <dmlp/infer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* infer CHECKPOINT THREADS: the four XOR points, one row per call from THREADS OpenMP
 * threads; prints each output's bits. */
int main(int argc, char **argv)
{
    char err[256];
    dmlp_net *net = dmlp_net_load(argc > 1 ? argv[1] : "", err, sizeof err);
    if (!net) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const float x[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    float y[4];
    int failed = 0;
    const int threads = argc > 2 ? atoi(argv[2]) : 1;
#pragma omp parallel for num_threads(threads) reduction(| : failed)
    for (int i = 0; i < 4; i++)
        failed |= dmlp_net_predict(net, 1, x[i], &y[i], NULL, 0);
    for (int i = 0; i < 4 && !failed; i++) {
        uint32_t bits;
        memcpy(&bits, &y[i], sizeof bits);
        printf("%08x\n", (unsigned)bits);
    }
    dmlp_net_free(net);
    return failed;
}
C
cat > "$WORK/app/infer.f90" <<'F'
program infer
  use dmlp
  implicit none
  type(dmlp_net) :: net
  real(c_float) :: x(2, 4), y(1, 4)
  integer :: stat, i, failed, threads
  character(len=256) :: errmsg, path, arg
  call get_command_argument(1, path)
  call get_command_argument(2, arg)
  read (arg, *) threads
  call net%load(path, stat, errmsg)
  if (stat /= 0) then
    print '(a)', trim(errmsg)
    stop 1
  end if
  x = reshape([0., 0., 0., 1., 1., 0., 1., 1.], [2, 4])
  failed = 0
  !$omp parallel do num_threads(threads) private(stat) reduction(max:failed)
  do i = 1, 4
    call net%predict(x(:, i:i), y(:, i:i), stat)
    failed = max(failed, stat)
  end do
  !$omp end parallel do
  if (failed /= 0) stop 1
  do i = 1, 4
    print '(z8.8)', transfer(y(1, i), 0)
  end do
  call net%predict(x, y(:, 1:2), stat, errmsg)   ! 4 columns in, 2 out: refused
  if (stat == 0 .or. index(errmsg, "do not fit") == 0) stop 2
  call net%free()
  call net%load(trim(path) // ".missing", stat, errmsg)
  if (stat == 0 .or. index(errmsg, ".missing") == 0) stop 3
end program infer
F
cat > "$WORK/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(dmlp_consumer LANGUAGES C)
find_package(dmlp 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE dmlp::dmlp)
find_package(OpenMP REQUIRED COMPONENTS C)
add_executable(infer infer.c)
target_link_libraries(infer PRIVATE dmlp::dmlp OpenMP::OpenMP_C)
if(TARGET dmlp::dmlp_fortran)
  enable_language(Fortran)
  find_package(OpenMP REQUIRED COMPONENTS Fortran)
  add_executable(infer_f infer.f90)
  target_link_libraries(infer_f PRIVATE dmlp::dmlp_fortran OpenMP::OpenMP_Fortran)
endif()
CM
# The XOR problem as a dataset, through the installed executable.
printf 'a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n' > "$WORK/xor.csv"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$PREFIX/bin/dmlp" import csv \
  "$WORK/xor.csv" --target-columns y --output "$WORK/xor.h5" > /dev/null || fail "import csv"
echo "== find_package(dmlp)"
cmake -S "$WORK/app" -B "$WORK/app/build" -DCMAKE_PREFIX_PATH="$PREFIX" > "$WORK/cm.log" 2>&1 ||
  { cat "$WORK/cm.log"; fail "configuring a find_package(dmlp) consumer"; }
cmake --build "$WORK/app/build" > "$WORK/cmb.log" 2>&1 || { cat "$WORK/cmb.log"; fail "building it"; }
(cd "$WORK" && "$WORK/app/build/app" "$PREFIX/share/dmlp/configs/xor.yaml" \
   "data.train=$WORK/xor.h5" "checkpoint.dir=$WORK/run-static") || fail "the find_package consumer"
[[ -f $WORK/run-static/latest.h5 ]] || fail "the find_package consumer wrote no checkpoint"

echo "== pkg-config dmlp (prefix moved to check relocation)"
mv "$PREFIX" "$WORK/moved"
export PKG_CONFIG_PATH=$WORK/moved/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pkg-config --modversion dmlp
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$WORK/app/app_pc" "$WORK/app/app.c" \
   $(pkg-config --cflags --libs dmlp) || fail "building with pkg-config"
(cd "$WORK" && LD_LIBRARY_PATH=$WORK/moved/lib "$WORK/app/app_pc" \
   "$WORK/moved/share/dmlp/configs/xor.yaml" "data.train=$WORK/xor.h5" \
   "checkpoint.dir=$WORK/run-shared") ||
  fail "the pkg-config consumer"
weights() { h5dump -d /layers/0/weight -d /layers/1/weight "$1" | tail -n +3; }
weights "$WORK/run-static/latest.h5" > "$WORK/w-static.txt" || fail "no weights in run-static"
weights "$WORK/run-shared/latest.h5" > "$WORK/w-shared.txt" || fail "no weights in run-shared"
grep -q DATA "$WORK/w-static.txt" || fail "h5dump printed no weights"
cmp "$WORK/w-static.txt" "$WORK/w-shared.txt" ||
  fail "the static and shared libraries trained different weights"

echo "== the inference interface (infer.h) from OpenMP threads, against dmlp predict"
# shellcheck disable=SC2046
cc -std=c11 -fopenmp -Wall -Wextra -Wpedantic -Werror -o "$WORK/app/infer" "$WORK/app/infer.c" \
   $(pkg-config --cflags --libs dmlp) || fail "building the inference consumer"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$WORK/moved/bin/dmlp" predict \
  --checkpoint "$WORK/run-shared/latest.h5" --input "$WORK/xor.h5" --output "$WORK/pred.h5" \
  > /dev/null || fail "dmlp predict"
# %.9g identifies a float exactly; its bits, as the consumers print them.
h5dump -y -m %.9g -d /predictions "$WORK/pred.h5" | sed -n '/DATA {/,/}/p' | tr -s ' ,' '\n' |
  grep -E '^-?[0-9]' | python3 -c '
import struct, sys
for line in sys.stdin:
    print(struct.pack(">f", float(line)).hex())' > "$WORK/want.txt"
[[ $(wc -l < "$WORK/want.txt") == 4 ]] || fail "dmlp predict wrote $(cat "$WORK/want.txt")"
same_bits() { # what, then the command: its output must be want.txt
  local what=$1; shift
  LD_LIBRARY_PATH=$WORK/moved/lib "$@" | tr 'A-F' 'a-f' > "$WORK/got.txt" ||
    fail "$what (exit ${PIPESTATUS[0]})"
  cmp -s "$WORK/got.txt" "$WORK/want.txt" ||
    fail "$what differs from dmlp predict: $(paste "$WORK/got.txt" "$WORK/want.txt" | tr '\n' ' ')"
  echo "same bits as dmlp predict: $what"
}
for t in 1 2; do
  same_bits "C, pkg-config (shared), $t thread(s)" "$WORK/app/infer" "$WORK/run-shared/latest.h5" $t
  same_bits "C, find_package (static), $t thread(s)" "$WORK/app/build/infer" \
    "$WORK/run-shared/latest.h5" $t
done

if [[ -f $WORK/moved/lib/libdmlp_fortran.a ]]; then
  echo "== the Fortran module (use dmlp) from OpenMP threads, against dmlp predict"
  # shellcheck disable=SC2046
  gfortran -std=f2008 -fopenmp -Wall -Werror -o "$WORK/app/infer_f" "$WORK/app/infer.f90" \
    -I"$WORK/moved/include" "$WORK/moved/lib/libdmlp_fortran.a" $(pkg-config --libs dmlp) ||
    fail "building the Fortran consumer"
  [[ -x $WORK/app/build/infer_f ]] || fail "find_package(dmlp) gave no dmlp::dmlp_fortran"
  for t in 1 2; do
    same_bits "Fortran, pkg-config, $t thread(s)" "$WORK/app/infer_f" "$WORK/run-shared/latest.h5" $t
    same_bits "Fortran, find_package, $t thread(s)" "$WORK/app/build/infer_f" \
      "$WORK/run-shared/latest.h5" $t
  done
elif command -v gfortran >/dev/null; then
  fail "gfortran is here but the Fortran module was not installed (libdmlp_fortran.a)"
else
  echo "no Fortran compiler: the Fortran module was not built"
fi

echo "== README's examples (Using a trained network in your code), built and run"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
example() { # the README code block after <!-- example: $1 -->
  awk -v tag="<!-- example: $1 -->" '
    $0 == tag { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$ROOT/README.md"
}
CKPT=$WORK/run-shared/latest.h5
example c > "$WORK/app/example.c"
example python > "$WORK/app/example.py"
[[ -s $WORK/app/example.c && -s $WORK/app/example.py ]] || fail "README's examples not found"
# shellcheck disable=SC2046
cc -std=c11 -fopenmp -Wall -Wextra -Werror -o "$WORK/app/example" "$WORK/app/example.c" \
   $(pkg-config --cflags --libs dmlp) || fail "README's C example does not build"
c_out=$(LD_LIBRARY_PATH=$WORK/moved/lib "$WORK/app/example" "$CKPT") || fail "README's C example"
py=/usr/bin/python3
[[ -x $py ]] || py=python3
outs=("$c_out")
# An AddressSanitizer build's library cannot be loaded into an uninstrumented python3.
if "$WORK/moved/bin/dmlp" --version 2>/dev/null | grep -q "sanitizers ON"; then
  echo "sanitizer build: README's Python example is left to the Release suite"
else
  outs+=("$(DMLP_LIBRARY=$WORK/moved/lib/libdmlp.so PYTHONPATH=$ROOT/python "$py" \
            "$WORK/app/example.py" "$CKPT")") || fail "README's Python example"
fi
if [[ -f $WORK/moved/lib/libdmlp_fortran.a ]]; then
  example fortran > "$WORK/app/example.f90"
  # shellcheck disable=SC2046
  gfortran -std=f2018 -fopenmp -Wall -Werror -o "$WORK/app/example_f" "$WORK/app/example.f90" \
    -I"$WORK/moved/include" "$WORK/moved/lib/libdmlp_fortran.a" $(pkg-config --libs dmlp) ||
    fail "README's Fortran example does not build"
  outs+=("$(LD_LIBRARY_PATH=$WORK/moved/lib "$WORK/app/example_f" "$CKPT")") ||
    fail "README's Fortran example"
fi
echo "README examples print: ${outs[*]}"
[[ ${#outs[@]} -ge 2 ]] || fail "only ${#outs[@]} of README's examples ran: nothing to compare"
"$py" -c 'import sys; v = [float(a) for a in sys.argv[1:]]
assert all(abs(x - v[0]) <= 1e-5 * abs(v[0]) for x in v), v' "${outs[@]}" ||
  fail "README's examples disagree: ${outs[*]}"

echo "PASSED: install, interface-only exports, find_package(dmlp) and pkg-config consumers, C and Fortran inference, README examples"
