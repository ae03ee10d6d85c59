"""Smoke test of bench.recipe_bench: a toy run prints its table and last line, finite numbers.

Runs the bench as a user would (`python -m bench.recipe_bench` from the repository root, in a
subprocess: the bench switches shape checks off for its own process), at `--quick` sizes with a
sub-second budget per contender, one contender of each kind. It asserts on the output's structure
and finiteness, never on speed or on which contender wins.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.recipe_parts import SHAPES, parse_variant
from bench.recipes import differences, recipe_config
from tinylm.train import load_config

REPO = Path(__file__).resolve().parent.parent
NUM = r"(-?[0-9.]+|[+-][0-9.]+)"
LAST = re.compile(
    rf"^recipe-bench: peer {NUM} \(lr ([0-9.e+-]+)\), baseline {NUM}, modern {NUM} nats at "
    rf"{NUM} s; modern − baseline = {NUM}; modern − peer = {NUM}; baseline tok/s / peer = {NUM}$"
)


def _bench(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "bench.recipe_bench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


def test_quick_run_prints_table_and_last_line(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = _bench(
        "--quick",
        "--seconds",
        "0.3",
        "--slice",
        "0.1",
        "--text-bytes",
        "30000",
        "--contenders",
        "peer@3e-3,baseline,modern",
        "--variant",
        "v2:muon_lr=0.0123,warmup_steps=3,qk_norm=off",
        "--cache",
        str(tmp_path / "cache"),
        "--json",
        str(out_json),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    m = LAST.match(lines[-1])
    assert m, lines[-1]
    numbers = [float(g) for i, g in enumerate(m.groups()) if i != 1]
    assert all(math.isfinite(x) for x in numbers), lines[-1]
    assert m.group(2) == "0.003" and float(m.group(5)) == 0.3

    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["contender", "params"])
    rows = [line.split() for line in lines[header + 1 : -1]]
    assert [r[0] for r in rows] == ["peer@0.003", "baseline", "modern", "v2"]
    for r in rows:
        steps, tokens = int(r[2]), int(r[3].replace(",", ""))
        assert steps >= 1 and tokens == steps * 4 * 64  # batch 4 x context 64 (the quick shape)
        losses = [float(x) for x in r[5:9]]  # val loss at 25/50/75/100%
        assert all(math.isfinite(x) and 0 < x < 20 for x in losses)

    payload = json.loads(out_json.read_text())
    assert payload["last_line"] == lines[-1]
    assert [r["name"] for r in payload["rows"]] == [r[0] for r in rows]
    assert payload["variants"]["v2"] == {  # bare keys name their section's key
        "optim.muon_lr": 0.0123,
        "optim.warmup_steps": 3,
        "model.qk_norm": False,
    }
    assert payload["modern"]["config"] == "modern.toml"
    assert payload["modern"]["optim"] == load_config("modern").to_dict()["optim"]
    assert set(payload["rows"][2]["val_loss"]) == {"25%", "50%", "75%", "100%"}

    # A second run finds the tokenizer and ids in the cache: it writes none of them again.
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert sum(p.suffix == ".npy" for p in cached) == 2 and any(
        p.name == "vocab.json" for p in cached
    )
    again = _bench(
        "--quick", "--seconds", "0.1", "--text-bytes", "30000", "--contenders", "baseline",
        "--cache", str(tmp_path / "cache"), tmp_path=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    now = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert now == cached
    assert again.stdout.strip().splitlines()[-1].startswith("recipe-bench: peer n/a (lr n/a)")


def test_bad_contender_is_one_error_line(tmp_path):
    proc = _bench("--quick", "--contenders", "baseline,nope", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown contender 'nope' (peer, peer@LR, baseline, modern, or a --variant name)"
    ]


SIZE_KEYS = {
    "model.vocab_size",
    "model.context_length",
    "model.d_model",
    "model.num_layers",
    "model.num_heads",
    "model.d_ff",
    "train.batch_size",
    "compute.fused_qkv",  # speed only: the same function
}


@pytest.mark.parametrize(("contender", "config"), [("modern", "modern"), ("baseline", "default")])
@pytest.mark.parametrize("shape", ["cpu", "tune", "quick", "leaderboard"])
def test_contenders_are_the_bundled_configs_resized(contender, config, shape):
    """The bench's contenders are train's bundled configs with only size overrides: the recipe
    it proves is the one `train-lm --config modern` runs ([optim] key for key)."""
    got, _ = recipe_config(contender, SHAPES[shape], 4096)
    shipped = load_config(config)
    assert set(differences(got, shipped)) <= SIZE_KEYS
    assert got.optim == shipped.optim
    assert got.model.ffn == shipped.model.ffn and got.model.qk_norm == shipped.model.qk_norm


def test_variants_are_config_overrides_of_modern():
    name, overrides = parse_variant("wd:optim.weight_decay=0.05,muon_weight_decay=0,ffn=swiglu")
    assert name == "wd"
    got, _ = recipe_config(name, SHAPES["cpu"], 4096, overrides)
    modern, _ = recipe_config("modern", SHAPES["cpu"], 4096)
    assert differences(got, modern) == {
        "optim.weight_decay": 0.05,
        "optim.muon_weight_decay": 0.0,
        "model.ffn": "swiglu",
        "model.d_ff": 512,  # the SwiGLU width of d_model 192 (ReLU²: 768, same parameters)
    }
    with pytest.raises(ValueError, match=r"is in train, sample; write it as section\.key"):
        parse_variant("x:seed=3")


def test_bad_variant_is_one_error_line(tmp_path):
    proc = _bench("--quick", "--variant", "v:optim.muon_lrr=1", tmp_path=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: --variant: unknown config key 'optim.muon_lrr'; did you mean")
