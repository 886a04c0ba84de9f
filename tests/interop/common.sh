# Sourced by the interop test scripts: the one way they pick a Python interpreter.
# find_python MODULES: prints the first of $PYTHON, /usr/bin/python3 (Debian's, where
# install-deps puts numpy, h5py, onnx and cv2) and python3 on PATH that imports MODULES
# (a comma-separated import list); returns 1 when none does.
find_python() {
  local mods=$1 c
  for c in ${PYTHON:-} /usr/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import $mods" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}
