"""bench/gpu_check.sh runs end to end on CPU (--device cpu --tiny) and writes the report fields.

The GPU numbers themselves can only come from a CUDA machine; this test keeps the script working
until one is lent, so that a session with a GPU spends its device time measuring, not debugging.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_writes_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    table = (tmp_path / "gpu_check.md").read_text()
    assert report["device"] == "cpu" and report["tiny"] is True
    assert report["pytest"]["status"] == "skipped"  # no CUDA here
    assert report["peak_flops"] > 0

    train = [r for r in report["train"] if r["impl"] != "ratio"]
    assert {(r["impl"], r["batch"]) for r in train} == {
        ("tinylm", 2),
        ("tinylm", 4),
        ("hf", 2),
        ("hf", 4),
    }
    for r in train:
        assert r["status"] == "ok" and r["tokens_per_s"] > 0 and r["flops_per_token"] > 0
    ratios = {r["batch"]: r["ratio"] for r in report["train"] if r["impl"] == "ratio"}
    by = {(r["impl"], r["batch"]): r["tokens_per_s"] for r in train}
    for batch, ratio in ratios.items():
        assert ratio == pytest.approx(by["tinylm", batch] / by["hf", batch])

    decode = {r["impl"]: r for r in report["decode"]}
    assert decode["tinylm"]["tokens_per_s"] > 0 and decode["hf"]["tokens_per_s"] > 0
    assert decode["ratio"]["ratio"] == pytest.approx(
        decode["tinylm"]["tokens_per_s"] / decode["hf"]["tokens_per_s"]
    )

    loss = report["loss_check"]
    assert loss["status"] == "ok" and loss["steps"] == 50 and loss["finite"]
    assert loss["abs_diff"] == pytest.approx(abs(loss["loss_fp32"] - loss["loss_bf16"]))
    assert loss["loss_fp32"] < loss["initial_loss_ln_vocab"]  # 50 steps on a bigram walk learn
    assert loss["passed"], loss
    assert "| training" in table and "| decoding" in table and "loss after 50 steps" in table
