"""DDP on CPU with gloo: two processes stay identical and match one process with grad_accum=2.

The ranks are separate Python processes started the way torchrun starts them (RANK, WORLD_SIZE,
MASTER_ADDR/PORT in the environment), each running a small worker script written to tmp_path.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from tinylm.train import train

WORKER = textwrap.dedent(
    """
    import sys, torch
    from tinylm.train import load_config, train
    torch.set_num_threads(1)
    result = train(load_config(sys.argv[1]), progress=False, log=lambda *a: None)
    torch.save(result.model.state_dict(), sys.argv[2])
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run_dir) -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"]) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_two_cpu_ranks_match_single_process(tiny_config, tmp_path):
    base = tiny_config.replace(
        train={"max_steps": 8, "log_interval": 2, "batch_size": 4},
        eval={"interval": 4},
        run={"checkpoint_interval": 4},
        sample={"max_new_tokens": 0},
    )
    ddp_cfg = base.replace(run={"name": "ddp"})
    ddp_cfg.save(tmp_path / "ddp.toml")
    (tmp_path / "worker.py").write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            TINYLM_TYPECHECK="0",
        )
        cmd = [
            sys.executable,
            str(tmp_path / "worker.py"),
            str(tmp_path / "ddp.toml"),
            str(tmp_path / f"rank{rank}.pt"),
        ]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    # Wait for every rank before judging any: a rank that finished first must not get the
    # others killed while they still write their weights. Kill only on timeout or error.
    errors = []
    try:
        for proc in procs:
            errors.append(proc.communicate(timeout=600)[1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (proc, err) in enumerate(zip(procs, errors, strict=True)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{err[-3000:]}"

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # replicas identical

    single = train(
        base.replace(run={"name": "single"}, train={"grad_accum": 2}),
        progress=False,
        log=lambda *a: None,
    )
    ddp_losses, single_losses = _losses(ddp_cfg.run_dir), _losses(single.run_dir)
    assert [s for s, _ in ddp_losses] == [s for s, _ in single_losses] == [2, 4, 6, 8]
    for (_, a), (_, b) in zip(ddp_losses, single_losses, strict=True):
        assert abs(a - b) < 1e-4
    ref = single.model.state_dict()
    for key in ref:
        torch.testing.assert_close(rank0[key], ref[key], atol=1e-4, rtol=1e-4)
    # Only rank 0 writes checkpoints.
    names = [p.name for p in (ddp_cfg.run_dir / "checkpoints").iterdir()]
    assert sorted(names) == ["step_0000004.pt", "step_0000008.pt"]
