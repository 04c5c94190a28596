#!/usr/bin/env bash
# Fetches the third-party sources the build needs, by package name only (no git host):
#   * CUTLASS/CuTe headers from the PyPI wheel nvidia-cutlass (pinned) -> include/cutlass/{include,tools/util/include}
#   * GoogleTest sources copied from the system (Debian `googletest`) -> .deps/googletest, so that a machine
#     without GoogleTest installed (the GPU machine has no network) can build the tests from source.
# Both destinations are gitignored. Idempotent.
set -euo pipefail
CUTLASS_VERSION="${INT8HYBRID_CUTLASS_VERSION:-4.2.0.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${INT8HYBRID_CUTLASS_DIR:-$ROOT/include/cutlass}"
PY="${PYTHON:-python3}"

if [[ -f "$DEST/include/cutlass/cutlass.h" && -f "$DEST/VERSION" && "$(cat "$DEST/VERSION")" == "$CUTLASS_VERSION" ]]; then
  echo "[fetch_deps] CUTLASS $CUTLASS_VERSION already in $DEST"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "[fetch_deps] downloading nvidia-cutlass==$CUTLASS_VERSION from PyPI"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: "nvidia-cutlass==$CUTLASS_VERSION" -d "$tmp"
  whl="$(ls "$tmp"/nvidia_cutlass-*.whl)"
  "$PY" - "$whl" "$tmp/x" <<'PYEOF'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
prefixes = ("cutlass_library/source/include/", "cutlass_library/source/tools/util/include/")
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefixes)]
    if not names:
        sys.exit("nvidia-cutlass wheel has no cutlass_library/source/include: unexpected layout")
    z.extractall(out, names)
PYEOF
  rm -rf "$DEST"
  mkdir -p "$DEST/tools/util"
  mv "$tmp/x/cutlass_library/source/include" "$DEST/include"
  mv "$tmp/x/cutlass_library/source/tools/util/include" "$DEST/tools/util/include"
  echo "$CUTLASS_VERSION" > "$DEST/VERSION"
  echo "[fetch_deps] CUTLASS $CUTLASS_VERSION headers in $DEST"
fi

if [[ ! -f "$ROOT/.deps/googletest/CMakeLists.txt" ]]; then
  if [[ -f /usr/src/googletest/CMakeLists.txt ]]; then
    mkdir -p "$ROOT/.deps"
    cp -r /usr/src/googletest "$ROOT/.deps/googletest"
    echo "[fetch_deps] GoogleTest sources copied to .deps/googletest"
  else
    echo "[fetch_deps] note: /usr/src/googletest not found (apt-get install googletest); tests need an installed GTest"
  fi
fi
