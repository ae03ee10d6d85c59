"""Fault injection for train-lm: SIGKILL at random moments, then --resume; kills mid-write.

    uv run --no-sync python -m bench.faults                  # 20 kills + 40 kills mid-write
    uv run --no-sync python -m bench.faults --kills 4 --writes 20 --steps 12 --in-process

Prints `faults: K/N identical, M unloadable`: K of N killed-and-resumed runs ended with weights
bit-identical to an uninterrupted reference run, and M of the checkpoints left by processes
killed while writing them could not be loaded (the target must always load: old or new, never
half). tests/test_faults.py runs the same functions at CI size.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODEL = [
    "--model.d_model", "32", "--model.num_layers", "1", "--model.num_heads", "2",
    "--model.d_ff", "64", "--model.context_length", "32",
]  # fmt: skip


def make_tokens(directory: Path, vocab: int = 512) -> tuple[Path, Path]:
    """Zipf-ish ids, like text: train.npy / val.npy in `directory`."""
    rng = np.random.default_rng(0)
    paths = []
    for name, n in (("train", 200_000), ("val", 20_000)):
        path = directory / f"{name}.npy"
        np.save(path, (rng.zipf(1.3, n) % vocab).astype(np.uint16))
        paths.append(path)
    return paths[0], paths[1]


def train_argv(data: Path, root: Path, name: str, steps: int, interval: int) -> list[str]:
    return [
        *MODEL,
        "--train.max_steps", str(steps), "--train.batch_size", "8", "--train.log_interval", "5",
        "--run.checkpoint_interval", str(interval), "--eval.interval", "1000",
        "--eval.iters", "1", "--train.device", "cpu", "--data.vocab_size", "512",
        "--data.train_tokens", str(data / "train.npy"), "--data.val_tokens", str(data / "val.npy"),
        "--run.root", str(root), "--run.name", name, "--sample.max_new_tokens", "0",
        "--no-progress",
    ]  # fmt: skip


def train_lm(argv: list[str], **kwargs) -> subprocess.Popen:
    env = dict(os.environ, TINYLM_TYPECHECK="0")
    return subprocess.Popen(
        [sys.executable, "-m", "tinylm.train.cli.train_lm", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def final_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    path = run / "checkpoints" / f"step_{step:07d}.pt"
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def run_to_end(argv: list[str], in_process: bool) -> tuple[int, str]:
    """train-lm to completion: (status, stderr tail), in a subprocess or in this process."""
    if in_process:
        from tinylm.train import load_config, run_cli, train

        resume = "--resume" in argv
        flags = [a for a in argv if a not in ("--resume", "--no-progress")]
        overrides = {k[2:]: v for k, v in zip(flags[0::2], flags[1::2], strict=True)}
        body = lambda: train(load_config(overrides=overrides), resume=resume, progress=False)  # noqa: E731
        return run_cli(body), ""
    proc = train_lm(argv)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err[-2000:]


def kill_and_resume(
    data: Path,
    root: Path,
    kills: int,
    steps: int = 60,
    interval: int = 5,
    seed: int = 0,
    in_process: bool = False,
) -> tuple[int, int]:
    """`kills` runs, each SIGKILLed once at a random moment after its first checkpoint and
    resumed to the end; returns (identical to the reference, total). The killed runs are always
    subprocesses; `in_process` runs the reference and the resumes here (faster, for CI)."""
    rng = random.Random(seed)
    status, err = run_to_end(train_argv(data, root, "reference", steps, interval), in_process)
    assert status == 0, err
    reference = final_weights(root / "reference", steps)
    identical = 0
    for k in range(kills):
        name = f"kill{k}"
        argv = train_argv(data, root, name, steps, interval)
        proc = train_lm(argv)
        ckpts = root / name / "checkpoints"
        deadline = time.monotonic() + 600  # a timeout only: nothing is asserted on speed
        while proc.poll() is None and time.monotonic() < deadline:
            if ckpts.is_dir() and any(p.suffix == ".pt" for p in ckpts.iterdir()):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=600)
        status, err = run_to_end([*argv, "--resume"], in_process)
        if status != 0:
            print(f"  kill {k}: resume failed ({err.strip().splitlines()[-1:]})", file=sys.stderr)
            continue
        weights = final_weights(root / name, steps)
        identical += all(torch.equal(reference[n], weights[n]) for n in reference)
    return identical, kills


WRITER = """
import sys, torch
from tinylm.train import save_checkpoint
model = torch.nn.Linear(512, 512)
opt = torch.optim.AdamW(model.parameters())
i = 0
while True:
    i += 1
    with torch.no_grad():
        model.weight.fill_(float(i))
    save_checkpoint(model, opt, i, sys.argv[1])
    print(i, flush=True)
"""


def kill_mid_write(directory: Path, kills: int, seed: int = 0) -> tuple[int, int]:
    """A process rewrites one checkpoint in a loop; SIGKILL it at random moments after its first
    complete write. Returns (unloadable targets, total). The target must always load, and its
    weights must be one whole write (every weight equal to the iteration it records)."""
    from tinylm.train import read_checkpoint

    rng = random.Random(seed)
    target = directory / "target.pt"
    unloadable = 0
    for _ in range(kills):
        target.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # the first write is complete
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        try:
            payload = read_checkpoint(target)
            weight = payload["model"]["weight"]
            if not bool((weight == float(payload["iteration"])).all()):
                unloadable += 1
        except ValueError:
            unloadable += 1
    return unloadable, kills


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILL + resume trials")
    p.add_argument("--writes", type=int, default=40, help="kills while writing a checkpoint")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument(
        "--in-process", action="store_true", help="reference and resumes in this process (faster)"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tokens(tmp)
        start = time.perf_counter()
        identical, total = kill_and_resume(
            tmp, tmp / "runs", args.kills, steps=args.steps, in_process=args.in_process
        )
        unloadable, writes = kill_mid_write(tmp, args.writes)
        elapsed = time.perf_counter() - start
    print(
        f"faults: {identical}/{total} identical, {unloadable} unloadable "
        f"(of {writes} kills mid-write), {elapsed:.0f} s, {torch.get_num_threads()} threads"
    )
    return 0 if identical == total and unloadable == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
