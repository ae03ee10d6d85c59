#!/usr/bin/env bash
# Build tinylm.bpe's C extensions with AddressSanitizer + UndefinedBehaviorSanitizer into a
# throwaway directory and run the bpe tests on the native path against them.
#
#   packages/bpe/scripts/sanitize.sh [pytest args...]     (from anywhere in the repository)
#
# The project's own build (the .so files next to the sources) is not touched: the sanitized
# copy of the package goes first on PYTHONPATH, and the script checks that the tests imported
# it. Any ASan/UBSan report aborts the run (exit status != 0).
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
PKG=$ROOT/packages/bpe
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bpe-sanitize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g"
echo "sanitize: building with $FLAGS in $WORK" >&2
cp -r "$PKG/src" "$WORK/src"
find "$WORK/src" -name '*.so' -delete
(cd "$PKG" && TINYLM_BPE_CFLAGS="$FLAGS" uv run --no-sync python setup.py -q build_ext \
    --build-lib "$WORK/src" --build-temp "$WORK/tmp" >"$WORK/build.log" 2>&1) || {
    cat "$WORK/build.log" >&2
    exit 1
}
# The extensions are optional in setup.py: a failed compile would be skipped silently.
for folder in "$PKG"/csrc/*/; do
    name=$(basename "$folder")
    module=$([ "$name" = core ] && echo _core || echo "_${name}_core")
    if ls "$folder"*.c >/dev/null 2>&1 && ! ls "$WORK/src/tinylm/bpe/$module".*.so >/dev/null 2>&1; then
        cat "$WORK/build.log" >&2
        echo "sanitize: $module did not build" >&2
        exit 1
    fi
done
if ! nm -D "$WORK"/src/tinylm/bpe/_core.*.so | grep -q __asan_init; then
    echo "sanitize: _core is not instrumented" >&2
    exit 1
fi

export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc # ASan sees every allocation, not pymalloc's arenas
export PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}"
export TINYLM_BPE_TEST_PATHS=native # the reference half runs no C code
cd "$ROOT"
uv run --no-sync python - "$WORK" <<'PY'
import sys
import tinylm.bpe._core as core
assert core.__file__.startswith(sys.argv[1]), f"imported the unsanitized build {core.__file__}"
print(f"sanitize: testing {core.__file__}", file=sys.stderr)
PY
uv run --no-sync pytest -q -p no:cacheprovider packages/bpe/tests "$@"
