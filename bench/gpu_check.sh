#!/usr/bin/env bash
# One-call GPU check (see bench/gpu_check.py): CUDA tests, tinylm vs HF training and decoding
# tokens/s + MFU, and a bf16-vs-fp32 loss check. Writes gpu_check.json and gpu_check.md to
# $OUT (else ./out). Needs no uv: puts every packages/*/src and apps/src on PYTHONPATH, and
# installs wheels carried in .whl/ (beartype, tqdm, tomli_w, ...) into /tmp/site when present.
#
#   bash bench/gpu_check.sh                      # on a CUDA box, < 8 minutes on an H100/H200
#   bash bench/gpu_check.sh --device cpu --tiny  # anywhere, well under a minute (CI smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import beartype" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
SRC="$(printf '%s:' "$PWD"/packages/*/src "$PWD"/apps/src)"
export PYTHONPATH="${SRC%:}${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PY" -m bench.gpu_check "$@"
