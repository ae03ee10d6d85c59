"""Unigram baseline, the JSONL log and the loss plot."""

import math

import numpy as np

from tinylm.train import MetricsLog, plot_losses, unigram_entropy


def test_unigram_entropy_matches_direct_formula():
    tokens = np.array([0, 0, 1, 2, 2, 2, 5], dtype=np.uint16)
    counts = {0: 2, 1: 1, 2: 3, 5: 1}
    expected = -sum(c / 7 * math.log(c / 7) for c in counts.values())
    assert math.isclose(unigram_entropy(tokens, vocab_size=8), expected, rel_tol=1e-12)
    assert unigram_entropy(np.zeros(10, dtype=np.uint16), 4) == 0.0
    uniform = np.arange(256, dtype=np.uint16)
    assert math.isclose(unigram_entropy(uniform, 256), math.log(256))


def test_metrics_log_append_read_truncate(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in (10, 20, 30):
        log.write({"step": step, "train_loss": 1.0 / step})
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"step": 40, "trai')  # a line cut short by a crash
    assert [r["step"] for r in log.read()] == [10, 20, 30]
    log.truncate_after(20)
    assert [r["step"] for r in log.read()] == [10, 20]


def test_plot_writes_png(tmp_path):
    records = [
        {
            "step": s,
            "wallclock": s * 0.1,
            "train_loss": 5 - s / 10,
            "val_loss": None if s % 20 else 5 - s / 11,
        }
        for s in range(10, 110, 10)
    ]
    records.append({"step": 110, "wallclock": 11.0, "train_loss": float("nan"), "val_loss": None})
    plot_losses(records, tmp_path / "loss.png", title="t")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "loss.png.tmp").exists()
