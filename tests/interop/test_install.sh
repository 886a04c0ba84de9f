#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then a tiny C program built against it twice:
# with CMake's find_package(dmlp) (target dmlp::dmlp) and with pkg-config (dmlp.pc, moved
# to another prefix to check that it is relocatable). The program loads the installed
# example config, lists the config keys and runs `dmlp --version`'s library twin.
#
#   tests/interop/test_install.sh BUILD_DIR        (an already built build tree)
set -euo pipefail
BUILD=$(cd "${1:?usage: test_install.sh BUILD_DIR}" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

PREFIX=$WORK/prefix
cmake --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log" || { cat "$WORK/install.log"; fail "cmake --install"; }
for f in bin/dmlp lib/libdmlp.a include/dmlp/dmlp.h include/dmlp/config.h \
         share/dmlp/configs/xor.yaml share/dmlp/configs/fashion_mnist.yaml \
         lib/cmake/dmlp/dmlpConfig.cmake lib/cmake/dmlp/dmlpConfigVersion.cmake \
         lib/cmake/dmlp/dmlpTargets.cmake lib/pkgconfig/dmlp.pc; do
  [[ -f $PREFIX/$f ]] || fail "not installed: $f"
done
echo "installed: $(cd "$PREFIX" && find . -type f | sort | tr '\n' ' ')"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$PREFIX/bin/dmlp" --version ||
  fail "the installed dmlp does not run"

mkdir -p "$WORK/app"
cat > "$WORK/app/app.c" <<'C'
#include <dmlp/dmlp.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    struct dmlp_error err = {0};
    struct config *cfg = NULL;
    if (config_load(&cfg, argv[1], NULL, 0, &err) != DMLP_OK) {
        fprintf(stderr, "config_load: %s\n", err.msg);
        return 1;
    }
    const char *keys[128];
    size_t n = config_key_paths(keys, 128);
    printf("dmlp %s: %s has %u layers, lr %g; %zu config keys, first %s\n", DMLP_VERSION,
           argv[1], (unsigned)cfg->model.n_layers, cfg->optimizer.lr, n, keys[0]);
    config_free(&cfg);
    return n > 10 ? 0 : 1;
}
C
cat > "$WORK/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(dmlp_consumer LANGUAGES C)
find_package(dmlp 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE dmlp::dmlp)
CM
echo "== find_package(dmlp)"
cmake -S "$WORK/app" -B "$WORK/app/build" -DCMAKE_PREFIX_PATH="$PREFIX" > "$WORK/cm.log" 2>&1 ||
  { cat "$WORK/cm.log"; fail "configuring a find_package(dmlp) consumer"; }
cmake --build "$WORK/app/build" > "$WORK/cmb.log" 2>&1 || { cat "$WORK/cmb.log"; fail "building it"; }
"$WORK/app/build/app" "$PREFIX/share/dmlp/configs/xor.yaml" || fail "the find_package consumer"

echo "== pkg-config dmlp (prefix moved to check relocation)"
mv "$PREFIX" "$WORK/moved"
export PKG_CONFIG_PATH=$WORK/moved/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pkg-config --modversion dmlp
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$WORK/app/app_pc" "$WORK/app/app.c" \
   $(pkg-config --cflags --libs dmlp) || fail "building with pkg-config"
"$WORK/app/app_pc" "$WORK/moved/share/dmlp/configs/fashion_mnist.yaml" || fail "the pkg-config consumer"
echo "PASSED: install, find_package(dmlp) and pkg-config consumers"
