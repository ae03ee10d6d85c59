#!/usr/bin/env bash
# The packages installed one by one outside the workspace, as a user would (README "Installing
# single packages"):
#   1. `pip install ./packages/bpe` alone into a clean venv: bpe-train + bpe-encode work.
#   2. `pip install ./packages/train` alone: a resolver error naming bpe, never an install (the
#      siblings are pinned to 0.1.0+tinylm, a local version PyPI never serves, so the unrelated
#      PyPI projects named bpe/nn/optim cannot stand in).
#   3. the set ./packages/{bpe,nn,optim,train}: pip resolves it to these four (dry run), and an
#      installed copy runs `train-lm --help` and finds its bundled corpora (they ship in the wheel).
# Real pip does 1 and 2 and resolves 3; torch's CUDA wheels are gigabytes, so 3's installation
# is done by `uv pip`, from uv's cache, pinned to the versions the CI venv already holds.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then uv() { python3 -m uv "$@"; }; fi

# pip, run quietly, minus one machine-specific warning (a pip.conf naming missing local indexes).
pip_in() {
    local venv=$1
    shift
    "$venv/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor" >&2)
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
lap=$SECONDS
lap() { echo "   ($((SECONDS - lap)) s)"; lap=$SECONDS; }
python=$(uv run --no-sync python -c 'import sys; print(sys.executable)')

echo "-- pip: ./packages/bpe alone"
uv venv --quiet --seed --python "$python" "$tmp/bpe"
pip_in "$tmp/bpe" install --quiet ./packages/bpe
printf 'the cat sat on the mat.\n<|endoftext|>\nthe dog sat on the log.\n' >"$tmp/text.txt"
"$tmp/bpe/bin/bpe-train" --vocab-size 270 --special-tokens '<|endoftext|>' --no-progress \
    --out-dir "$tmp/tok" "$tmp/text.txt" >/dev/null
"$tmp/bpe/bin/bpe-encode" --vocab "$tmp/tok/vocab.json" --merges "$tmp/tok/merges.txt" \
    --special-tokens '<|endoftext|>' --no-progress "$tmp/text.txt" "$tmp/ids.npy" >/dev/null
"$tmp/bpe/bin/python" - "$tmp" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from tinylm.bpe import Tokenizer

tmp = Path(sys.argv[1])
tok = Tokenizer.from_files(tmp / "tok/vocab.json", tmp / "tok/merges.txt", ["<|endoftext|>"])
ids = np.load(tmp / "ids.npy").tolist()
assert tok.decode(ids) == (tmp / "text.txt").read_text(), "bpe-encode did not round-trip"
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("bpe alone pulled in torch")
from tinylm.bpe import native_available

assert native_available(), "the pip-installed bpe has no native core"
print(f"bpe alone: encode round-trips ({len(ids)} tokens) on the native core, no torch")
EOF
lap

echo "-- pip: ./packages/bpe with no working C compiler: installs, runs the pure-Python path"
uv venv --quiet --seed --python "$python" "$tmp/bpe-nocc"
# setuptools reads CC for the compile step: `false` fails every compile, as a missing gcc would.
# From a copy without build products: the workspace's editable build leaves .so files and a
# build/ folder in packages/bpe, which setuptools would reuse instead of compiling.
cp -r packages/bpe "$tmp/bpe-src"
rm -rf "$tmp/bpe-src/build"
find "$tmp/bpe-src" -name '*.so' -delete
CC=false pip_in "$tmp/bpe-nocc" install --quiet --no-cache-dir "$tmp/bpe-src"
"$tmp/bpe-nocc/bin/python" - "$tmp" 2>"$tmp/nocc.err" <<'EOF'
import sys
from pathlib import Path

from tinylm.bpe import Tokenizer, native_available

tmp = Path(sys.argv[1])
tok = Tokenizer.from_files(tmp / "tok/vocab.json", tmp / "tok/merges.txt", ["<|endoftext|>"])
text = (tmp / "text.txt").read_text()
assert tok.decode(tok.encode(text)) == text and tok.encode(text) == tok.encode(text)
assert not native_available(), "a native core without a compiler?"
print("bpe without a compiler: installed, encodes on the reference path")
EOF
if [ "$(grep -c "warning:" "$tmp/nocc.err")" != 1 ]; then
    cat "$tmp/nocc.err"
    echo "error: the pure-Python fallback must say so exactly once (one warning: line)" >&2
    exit 1
fi
lap

echo "-- pip: ./packages/train alone must be refused (a clean venv)"
uv venv --quiet --seed --python "$python" "$tmp/pipset"
if pip_in "$tmp/pipset" install --dry-run ./packages/train >"$tmp/train.log" 2>&1; then
    cat "$tmp/train.log"
    echo "error: pip install ./packages/train alone resolved (it must not)" >&2
    exit 1
fi
if ! grep -q -E "(bpe|nn|optim)==0.1.0\+tinylm" "$tmp/train.log" || grep -q "Would install" "$tmp/train.log"; then
    cat "$tmp/train.log"
    echo "error: pip failed for another reason than a missing sibling (==0.1.0+tinylm)" >&2
    exit 1
fi
grep -m1 -E "No matching distribution|ResolutionImpossible" "$tmp/train.log"
lap

echo "-- pip: the set ./packages/{bpe,nn,optim,train} resolves to these four (dry run)"
pip_in "$tmp/pipset" install --quiet --dry-run --report "$tmp/report.json" \
    ./packages/bpe ./packages/nn ./packages/optim ./packages/train
"$tmp/pipset/bin/python" - "$tmp/report.json" <<'EOF'
import json
import sys

installs = json.load(open(sys.argv[1]))["install"]
versions = {i["metadata"]["name"]: i["metadata"]["version"] for i in installs}
for name in ("bpe", "nn", "optim", "train"):
    assert versions.get(name) == "0.1.0+tinylm", (name, versions.get(name))
print(f"pip resolves the set: {len(versions)} distributions, the four siblings from this repo")
EOF
lap

echo "-- uv pip: the set installed (non-editable), train-lm --help"
uv pip freeze --python "$python" --exclude-editable >"$tmp/constraints.txt"
uv venv --quiet --python "$python" "$tmp/set"
uv pip install --quiet --python "$tmp/set/bin/python" --constraint "$tmp/constraints.txt" \
    ./packages/bpe ./packages/nn ./packages/optim ./packages/train
"$tmp/set/bin/train-lm" --help >"$tmp/help.txt"
grep -q "^usage: train-lm" "$tmp/help.txt"
(cd "$tmp" && "$tmp/set/bin/python" -c '
import tinylm.train
from tinylm.train import bundled_corpus
assert "site-packages" in tinylm.train.__file__, tinylm.train.__file__
for name in ("tinystories", "openprose"):
    assert bundled_corpus(name).stat().st_size > 1_000_000, name
print("installed set: train-lm --help works; both bundled corpora ship in the train wheel")
')
lap
echo "pip checks: $((SECONDS - start)) s"
