"""End to end across packages: BPE training → encoding → train-lm → SIGINT → --resume → generate.

Everything runs as a user would run it (the CLIs in subprocesses), at toy sizes: a 100 KB corpus,
a 350-token vocabulary, a 2-layer d_model 32 model.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tinylm.bpe import Tokenizer, train_bpe
from tinylm.train import TrainConfig, find_checkpoints, load_config

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "packages" / "bpe" / "tests" / "fixtures" / "corpus.en"


def _cli(module: str, *args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, TINYLM_TYPECHECK="0")
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_tokenize_train_interrupt_resume_generate(tmp_path):
    _tokenize(tmp_path)
    run = tmp_path / "runs" / "pipe"
    stopped_at = _train_then_interrupt(_config_file(tmp_path), run)
    _resume(run, stopped_at, extra_steps=15)
    _generate(run)


def _tokenize(tmp_path: Path) -> None:
    """1. Tokenizer and token files, straight from tinylm.bpe."""
    text = CORPUS.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    (tmp_path / "train.txt").write_text(text[:cut], encoding="utf-8")
    (tmp_path / "val.txt").write_text(text[cut:], encoding="utf-8")
    vocab, merges = train_bpe(tmp_path / "train.txt", 350, ["<|endoftext|>"])
    tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
    (tmp_path / "tok").mkdir()
    tok.save(tmp_path / "tok" / "vocab.json", tmp_path / "tok" / "merges.txt")
    train_ids = tok.encode_file(tmp_path / "train.txt", tmp_path / "train.npy")
    tok.encode_file(tmp_path / "val.txt", tmp_path / "val.npy")
    assert np.load(tmp_path / "train.npy").max() < 350 and len(train_ids) > 10_000


def _config_file(tmp_path: Path) -> Path:
    """A long run's config (100 000 steps) on those files, run `<tmp>/runs/pipe`."""
    config = load_config().to_dict()
    config["data"].update(
        train_tokens=str(tmp_path / "train.npy"),
        val_tokens=str(tmp_path / "val.npy"),
        tokenizer_dir=str(tmp_path / "tok"),
        vocab_size=350,
    )
    config["model"].update(
        vocab_size=350, context_length=32, d_model=32, num_layers=2, num_heads=2, d_ff=64
    )
    config["optim"].update(lr=1e-2, min_lr=1e-3, warmup_steps=5)
    config["train"].update(max_steps=100_000, batch_size=8, device="cpu", log_interval=5)
    config["eval"].update(interval=20, iters=2)
    config["run"].update(root=str(tmp_path / "runs"), name="pipe", checkpoint_interval=1000)
    config["sample"].update(max_new_tokens=16)
    TrainConfig.from_dict(config).save(tmp_path / "pipe.toml")
    return tmp_path / "pipe.toml"


def _train_then_interrupt(config: Path, run: Path) -> int:
    """2. The long run, interrupted with SIGINT once it has trained a little; the step of the
    checkpoint it saved."""
    proc = _cli("tinylm.train.cli.train_lm", "--config", str(config), "--no-progress")
    try:
        deadline = time.monotonic() + 600  # a timeout, not a speed check
        while time.monotonic() < deadline and proc.poll() is None:
            records = _metrics(run)
            if records and records[-1]["step"] >= 40:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]  # interrupted, after saving a checkpoint
    assert "interrupted by SIGINT" in out
    stopped_at = int(find_checkpoints(run)[-1].stem.split("_")[1])
    assert stopped_at >= 40
    records = _metrics(run)
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 0.5  # the loss fell
    assert records[-1]["step"] == stopped_at  # nothing was logged past the checkpoint
    return stopped_at


def _resume(run: Path, stopped_at: int, extra_steps: int) -> None:
    """3. Resume: it continues from the saved step (a shorter schedule is given on the command
    line)."""
    end = stopped_at + extra_steps
    args = ["--run.root", str(run.parent), "--run.name", run.name, "--resume"]
    resume = _cli(
        "tinylm.train.cli.train_lm", *args, "--train.max_steps", str(end), "--no-progress"
    )
    out, err = resume.communicate(timeout=600)
    assert resume.returncode == 0, err[-2000:]
    checkpoint = run / "checkpoints" / f"step_{stopped_at:07d}.pt"
    assert f"resumed from {checkpoint} at step {stopped_at}" in out
    assert f"done: step {end}" in out
    steps = [r["step"] for r in _metrics(run)]
    assert steps == sorted(set(steps)) and steps[-1] == end
    assert (run / "loss.png").is_file() and (run / "sample.txt").is_file()


def _generate(run: Path) -> None:
    """4. Generate from the finished run."""
    args = ["--run", str(run), "--prompt", "The ", "--max-tokens", "20", "--seed", "1"]
    gen = _cli("tinylm.train.cli.generate", *args)
    out, err = gen.communicate(timeout=600)
    assert gen.returncode == 0, err[-2000:]
    assert out.startswith("The ") and len(out) > len("The ") + 5
