#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c) with clang and
# -fsanitize=fuzzer,address,undefined against the library sources (src/*/*.c but main.c),
# replays the checked-in corpora (tests/fuzz/corpus/<harness>/, crash regressions
# included), then fuzzes each harness for SECONDS. Exits non-zero on any crash, leak,
# sanitizer report or timeout; the reproducer lands in BUILD_DIR/fuzz/artifacts/<harness>/.
# Prints "SKIPPED: ..." and exits 0 only when clang or libFuzzer cannot be installed.
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [HARNESS...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS [HARNESS...]}
seconds=${2:?usage: run_fuzzers.sh BUILD_DIR SECONDS [HARNESS...]}
shift 2
harnesses=("$@")
[[ ${#harnesses[@]} -gt 0 ]] || harnesses=(fuzz_config fuzz_idx fuzz_csv fuzz_dataset)
mkdir -p "$build"
out=$(cd "$build" && pwd)/fuzz
mkdir -p "$out/obj" "$out/work" "$out/artifacts"

# ---- clang with libFuzzer ------------------------------------------------------------------
probe() {
  local cc=$1
  command -v "$cc" >/dev/null 2>&1 || return 1
  printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n'\
'{ (void)d; (void)n; return 0; }\n' > "$out/probe.c"
  "$cc" -fsanitize=fuzzer,address,undefined "$out/probe.c" -o "$out/probe" 2>/dev/null
}
CC=${FUZZ_CC:-}
for c in $CC clang clang-19 clang-16 clang-15 clang-14; do
  if probe "$c"; then CC=$c; break; fi
  CC=
done
if [[ -z $CC ]] && command -v apt-get >/dev/null 2>&1; then
  sudo=; [[ $(id -u) -eq 0 ]] || sudo=sudo
  rt=$(apt-cache search --names-only '^libclang-rt-[0-9]+-dev$' 2>/dev/null |
       awk '{print $1}' | sort -V | head -1 || true)
  ver=${rt#libclang-rt-}; ver=${ver%-dev}
  if [[ -n $rt ]] && $sudo apt-get install -y "clang-$ver" "$rt" >/dev/null 2>&1; then
    for c in "clang-$ver" clang; do
      if probe "$c"; then CC=$c; break; fi
    done
  fi
fi
if [[ -z $CC ]]; then
  echo "SKIPPED: no clang with libFuzzer (-fsanitize=fuzzer) could be found or installed"
  exit 0
fi
echo "== fuzzing with $($CC --version | head -1), $seconds s per harness"

# ---- build ---------------------------------------------------------------------------------
INC="-I$root/src -I$root/include -I$root/tests/fuzz -I/usr/include/hdf5/openmpi
     -I/usr/lib/x86_64-linux-gnu/openmpi/include"
LIBS="-L/usr/lib/x86_64-linux-gnu/hdf5/openmpi -lhdf5 -L/usr/lib/x86_64-linux-gnu/openmpi/lib
      -lmpi -lyaml -lz -lm -fopenmp
      -Wl,-rpath,/usr/lib/x86_64-linux-gnu/hdf5/openmpi:/usr/lib/x86_64-linux-gnu/openmpi/lib"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -O1 -g -Wall -Wextra -Wpedantic -Wno-psabi -fopenmp $SAN"
objs=()
for src in "$root"/src/*/*.c; do
  # As CMakeLists.txt builds them: the GEMM and the loops once per instruction set, OpenBLAS
  # not at all.
  isa=()
  case $(basename "$src") in
    main.c|gemm_blas.c) continue ;;
    gemm_avx2.c|gemm_wide16.c|vec_avx2.c) isa=(-mavx2 -mfma) ;;
    gemm_avx512.c|vec_avx512.c) isa=(-mavx512f -mavx512dq -mavx512vl -mavx2 -mfma) ;;
  esac
  obj=$out/obj/$(basename "${src%.c}").o
  # shellcheck disable=SC2086
  $CC $CFLAGS "${isa[@]}" -fsanitize=fuzzer-no-link $INC -c "$src" -o "$obj" &
  objs+=("$obj")
done
wait
for h in "${harnesses[@]}"; do
  # shellcheck disable=SC2086
  $CC $CFLAGS -fsanitize=fuzzer $INC "$root/tests/fuzz/$h.c" "${objs[@]}" $LIBS -o "$out/$h"
done

# ---- run -----------------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export HDF5_USE_FILE_LOCKING=FALSE
failed=()
for h in "${harnesses[@]}"; do
  corpus=$root/tests/fuzz/corpus/$h
  work=$out/work/$h
  art=$out/artifacts/$h
  mkdir -p "$work" "$art"
  dict=(); [[ -f $root/tests/fuzz/$h.dict ]] && dict=(-dict="$root/tests/fuzz/$h.dict")
  echo "== $h: replaying $(ls "$corpus" 2>/dev/null | wc -l) corpus files"
  if ! (cd "$work" && "$out/$h" -rss_limit_mb=4096 -timeout=20 "${dict[@]}" \
                        "$corpus"/* >"$out/$h.replay.log" 2>&1); then
    echo "FAILED: $h on its checked-in corpus (log: $out/$h.replay.log)"
    tail -40 "$out/$h.replay.log"
    failed+=("$h")
    continue
  fi
  echo "== $h: fuzzing for $seconds s"
  if ! (cd "$work" && "$out/$h" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 \
                        -max_len=8192 -print_final_stats=1 -artifact_prefix="$art/" \
                        "${dict[@]}" "$work" "$corpus" >"$out/$h.log" 2>&1); then
    echo "FAILED: $h (log: $out/$h.log; reproducer in $art/)"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$out/$h.log" | head -20 || true
    failed+=("$h")
    continue
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$out/$h.log" |
    tr '\n' ' ' | sed "s/^/   /"; echo
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzzing FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzzing passed: ${harnesses[*]}"
