#!/usr/bin/env bash
# test_layers: src/'s includes go down the layers (check_layers.sh), and the check itself
# catches each kind of violation, on small trees made here (an upward include, an include
# that does not name its layer, a file outside the layer folders, a folder that is no layer).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
check=$here/check_layers.sh
fail() { echo "FAIL: $*"; exit 1; }

"$check" "$here/../../src" || fail "src/ breaks the layering (above)"

work=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-layers.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree() { # a minimal valid tree in $work/$1
  rm -rf "${work:?}/$1"
  mkdir -p "$work/$1"/{core,nn,par,data,run,app}
  printf '#include "core/util.h"\n' > "$work/$1/nn/model.c"
  printf '/* util */\n' > "$work/$1/core/util.h"
  printf '#include "nn/model.h"\n#include "core/util.h"\n' > "$work/$1/run/train.c"
  printf '/* model */\n' > "$work/$1/nn/model.h"
}
expect() { # name, message: the check must fail on tree name, saying message
  local out
  if out=$("$check" "$work/$1" 2>&1); then fail "$1: the check passed: $out"; fi
  grep -qF -- "$2" <<<"$out" || fail "$1: expected \"$2\" in: $out"
  echo "caught ($1): $(head -1 <<<"$out")"
}
tree ok
"$check" "$work/ok" > /dev/null || fail "a valid tree was refused"
tree up
printf '#include "run/train.h"\n' >> "$work/up/nn/model.c"
printf '/* train */\n' > "$work/up/run/train.h"
expect up 'goes up from nn to run'
tree bare
printf '#include "util.h"\n' >> "$work/bare/nn/model.c"
expect bare 'does not name its layer'
tree stray
printf '/* stray */\n' > "$work/stray/loose.c"
expect stray 'outside the layer folders'
tree odd
mkdir "$work/odd/misc"
expect odd 'src/misc: not a layer'
tree missing
printf '#include "core/nothere.h"\n' >> "$work/missing/nn/model.c"
expect missing 'no such file'
echo "PASSED: the layering holds, and its check catches all five kinds of violation"
