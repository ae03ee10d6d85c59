"""The three commands end to end on toy data: BPE → .npy → training → report; resume; budget.

Each run is the real command (`run_command(name, argv)`, what the console scripts call) with
toy overrides: a 300-token BPE on ~150 KB of the bundled corpus, a 2-layer d_model 32 model at
context 32, a handful of steps on the CPU.
"""

import importlib
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tinylm.apps.cli as cli_module
import tinylm.apps.report as report_module
from tinylm.apps import (
    H100_BF16_PEAK_FLOPS,
    load_run_config,
    main,
    run_command,
    write_report,
)
from tinylm.apps.budget import describe_plan
from tinylm.nn import model_stats
from tinylm.train import bundled_corpus, load_tokenizer, prepare_text_files

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "packages" / "train" / "src" / "tinylm" / "train" / "data" / "openprose_4M.txt"
EOT = "<|endoftext|>"

TINY = [
    "--no-progress",
    "--data.vocab_size", "300",
    "--model.context_length", "32",
    "--model.d_model", "32",
    "--model.num_layers", "2",
    "--model.num_heads", "2",
    "--model.d_ff", "64",
    "--compute.attention", "naive",
    "--compute.fused_qkv", "false",
    "--train.device", "cpu",
    "--compute.dtype", "float32",
    "--compute.compile", "false",
    "--train.batch_size", "4",
    "--train.grad_accum", "1",
    "--train.max_steps", "10",
    "--train.log_interval", "2",
    "--optim.warmup_steps", "5",
    "--eval.interval", "5",
    "--eval.iters", "2",
    "--run.checkpoint_interval", "5",
    "--sample.max_new_tokens", "12",
]  # fmt: skip


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """~150 KB of whole documents for training, ~15 KB for validation."""
    # One-off imports (seconds on a loaded 2-core box) would otherwise land inside the first
    # run's few-second budget; a real budget is hours, where they are noise.
    import matplotlib.pyplot  # noqa: F401
    import torch._dynamo  # noqa: F401

    with open(CORPUS, encoding="utf-8") as f:
        docs = f.read(400_000).split(EOT)[:-1]
    train, val, size = [], [], 0
    for doc in docs:
        if size < 150_000:
            train.append(doc)
            size += len(doc)
        elif sum(map(len, val)) < 15_000:
            val.append(doc)
    root = tmp_path_factory.mktemp("texts")
    (root / "train.txt").write_text(EOT.join(train) + EOT, encoding="utf-8")
    (root / "val.txt").write_text(EOT.join(val), encoding="utf-8")
    return root / "train.txt", root / "val.txt"


# A 9 s budget, 4 calibration steps, and a step ceiling the planner must bring down.
CALIBRATED = [
    "--budget-hours", "0.0025",
    "--model.value_embeddings", "1",  # the recipe's 3 tables need 6 layers
    "--app.calibrate_steps", "4",
    "--app.budget_margin", "0.1",  # slack for a loaded CI box; real runs keep 3%
    "--train.log_interval", "1",
    "--train.max_steps", "100000",
    "--run.checkpoint_interval", "1000",
]  # fmt: skip


def _args(texts, out, *extra):
    train, val = texts
    return ["--train-text", str(train), "--val-text", str(val), "--out", str(out), *TINY, *extra]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tinystories_end_to_end_then_resume_reuses_preprocessing(texts, tmp_path, capsys):
    out = tmp_path / "ts"
    assert run_command("tinystories", _args(texts, out)) == 0
    first_log = capsys.readouterr().out
    assert "tokenizer: training a 300-token BPE" in first_log

    # Tokenizer files and token files, which decode back to the text.
    tok_dir = out / "data" / "tokenizer"
    assert (tok_dir / "vocab.json").is_file() and (tok_dir / "merges.txt").is_file()
    tokenizer = load_tokenizer(tok_dir, [EOT])
    for split, source in zip(("train", "val"), texts, strict=True):
        ids = np.load(out / "data" / f"{split}.npy", mmap_mode="r")
        assert ids.dtype == np.uint16
        assert tokenizer.decode(ids.tolist()) == source.read_text(encoding="utf-8")

    # Training outputs: metrics with val loss, curve, sample, report.
    records = _metrics(out)
    evals = [r for r in records if r["val_loss"] is not None]
    assert [r["step"] for r in evals] == [5, 10]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    sample = (out / "sample.txt").read_text()
    assert sample.startswith("Once upon a time") and len(sample) > len("Once upon a time")
    report = (out / "report.md").read_text()
    assert f"final val loss: **{evals[-1]['val_loss']:.4f}**" in report
    assert "![loss curve](loss.png)" in report
    assert "17M" in report.splitlines()[0]
    assert "tokens seen: 1,280" in report  # 10 steps × 4 × 32
    assert "non-embedding" in report and sample.strip().splitlines()[0] in report

    # A second run over the same --out refuses to overwrite, before any preprocessing.
    assert run_command("tinystories", _args(texts, out)) == 2
    assert "pass --resume" in capsys.readouterr().err

    # --resume with a longer schedule: preprocessing is skipped, training continues to step 14.
    mtimes = {p.name: p.stat().st_mtime_ns for p in [*tok_dir.iterdir(), *out.glob("data/*.npy")]}
    assert run_command("tinystories", _args(texts, out, "--resume", "--train.max_steps", "14")) == 0
    log = capsys.readouterr().out
    assert "tokenizer: reusing" in log and "(300 tokens, cached)" in log
    assert log.count("encode: reusing") == 2 and "tokenizer: training" not in log
    assert {
        p.name: p.stat().st_mtime_ns for p in [*tok_dir.iterdir(), *out.glob("data/*.npy")]
    } == mtimes
    assert "resumed from" in log
    assert _metrics(out)[-1]["step"] == 14
    assert "steps: 14 of 14" in (out / "report.md").read_text()
    assert "(cached from an earlier run)" in (out / "report.md").read_text()


def test_owt_end_to_end_with_a_tokenizer_slice_and_mfu(texts, tmp_path, monkeypatch):
    out = tmp_path / "owt"
    argv = _args(texts, out, "--train.max_steps", "6", "--data.tokenizer_bytes", "50000")
    assert run_command("owt", argv) == 0
    meta = json.loads((out / "data" / "tokenizer" / "meta.json").read_text())
    assert meta["vocab_size"] == 300 and meta["vocab_len"] == 300
    assert 40_000 < meta["trained_on_bytes"] <= 50_000  # cut after the last whole document
    assert not (out / "data" / "tokenizer" / "tokenizer_train.txt").exists()
    assert any(r["val_loss"] is not None for r in _metrics(out))
    report = (out / "report.md").read_text()
    assert report.startswith("# OpenWebText") and "val loss" in report
    assert "MFU: " in report and "median of metrics.jsonl" in report  # logged on every device
    assert (out / "sample.txt").is_file() and (out / "run.toml").is_file()

    # A run from before train-lm logged MFU, on CUDA: median tokens/s × FLOPs/token ÷ 989 TFLOP/s.
    records = _metrics(out)
    assert all(r["mfu"] > 0 and r["flops_per_s"] > 0 for r in records)
    old = [{k: v for k, v in r.items() if k not in ("mfu", "flops_per_s")} for r in records]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    app, config = load_run_config(out / "run.toml")
    median = statistics.median(r["tokens_per_s"] for r in _metrics(out)[1:])
    result = SimpleNamespace(
        train_loss=1.0, unigram_entropy=2.0, step=6, tokens=768, wallclock=1.0,
        stopped="finished", sample=None,
    )  # fmt: skip
    prepared = prepare_text_files(app.train_text, app.val_text, config.data, out / "data")
    assert all(step["cached"] for step in prepared.steps.values())  # the run's data/, reused
    monkeypatch.setattr(report_module, "_device", lambda train: ("cuda (fake)", True))
    path = write_report(
        out,
        app=app,
        model=config.model,
        compute=config.compute,
        optim=config.optim,
        train=config.train,
        evaluation=config.eval,
        sample=config.sample,
        result=result,
        prepared=prepared,
        preprocess_seconds=0.0,
    )
    mfu = median * model_stats(config.model).train_flops_per_token / H100_BF16_PEAK_FLOPS
    assert f"MFU: {100 * mfu:.1f}%" in path.read_text()
    assert H100_BF16_PEAK_FLOPS == 989e12


class FakeClock:
    """Stands in for the `time` module where budgets are measured: every perf_counter() reading
    advances `tick` seconds, so a budgeted run sees the same clock on any machine, loaded or not
    (the budget tests assert on planned steps and the verdict, never on real speed)."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def fake_clock(monkeypatch):
    clock = FakeClock(tick=0.02)
    for module in ("tinylm.apps.pipeline", "tinylm.train.trainer.trainer",
                   "tinylm.train.trainer.clock", "tinylm.train.trainer.launch",
                   "tinylm.train.runtime"):  # fmt: skip
        monkeypatch.setattr(importlib.import_module(module), "time", clock)
    return clock


def test_leaderboard_fits_its_schedule_into_the_budget(texts, tmp_path, capsys, fake_clock):
    out = tmp_path / "lb"
    budget = 0.0025 * 3600
    argv = _args(texts, out, *CALIBRATED)
    assert run_command("leaderboard", argv) == 0
    log = capsys.readouterr().out
    assert "timing the first 4 steps" in log
    record = json.loads((out / "budget.json").read_text())
    plan = record["plan"]
    # One plan line, on the budget's clock (describe_plan), not train's loop clock beside it.
    assert [line for line in log.splitlines() if "ms/step" in line] == [describe_plan(plan)]
    assert "training clock" not in log
    assert plan["max_steps"] > 4  # the step count came from the measured speed ...
    config = (out / "config.toml").read_text()
    assert f"max_steps = {plan['max_steps']}" in config  # ... and the cosine ends there
    assert f"cosine_steps = {plan['max_steps']}" in config
    assert record["used_seconds"] <= budget and record["respected"]
    report = (out / "report.md").read_text()
    assert "## Time budget" in report and "**respected**" in report
    assert "tokenizer training and encoding are preprocessing" in report
    # the modern recipe is visible: optimizer per role, schedule, switches, kernels
    assert "- optimizer: muon: matrix Muon lr 0.05" in report and "embedding AdamW lr 0.3" in report
    assert "- schedule: wsd (5 warmup steps, decay over the last 40%" in report
    assert "- recipe switches: ReLU², QK-norm, logit softcap 15, 1 value-embedding tables" in report
    assert "- compute: attention naive, fused QKV False" in report
    lrs = {k for r in _metrics(out) for k in r if k.startswith("lr_")}
    assert lrs == {"lr_matrix", "lr_embedding", "lr_head", "lr_scalar"}
    assert (out / "sample.txt").is_file()


def test_leaderboard_hard_stop_without_calibration(texts, tmp_path, fake_clock):
    out = tmp_path / "lb_hard"
    argv = _args(
        texts,
        out,
        "--budget-hours", "0.0015",
        "--model.value_embeddings", "1",
        "--app.calibrate_steps", "0",
        "--train.max_steps", "100000",
    )  # fmt: skip
    assert run_command("leaderboard", argv) == 0
    record = json.loads((out / "budget.json").read_text())
    assert record["stopped"] == "time budget"
    assert record["respected"] and record["used_seconds"] <= 0.0015 * 3600
    report = (out / "report.md").read_text()
    assert "stopped: time budget" in report and "**respected**" in report
    assert (out / "sample.txt").read_text().startswith("The")  # sampled after the budget

    # --resume with a larger budget: continues from the checkpoint, the time used carries over.
    step = _metrics(out)[-1]["step"]
    resume = ["--out", str(out), "--resume", "--no-progress", "--budget-hours", "0.003"]
    assert run_command("leaderboard", resume) == 0
    again = json.loads((out / "budget.json").read_text())
    assert again["used_seconds"] > record["used_seconds"]
    assert again["respected"] and again["used_seconds"] <= 0.003 * 3600
    assert _metrics(out)[-1]["step"] > step


def test_missing_data_is_one_clear_error(texts, tmp_path, capsys):
    train, val = texts
    missing = tmp_path / "nope.txt"
    argv = ["--train-text", str(missing), "--val-text", str(val), "--out", str(tmp_path / "x")]
    assert run_command("tinystories", argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: text file not found:") and "nope.txt" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    assert run_command("owt", ["--val-text", str(val), "--out", str(tmp_path / "y")]) == 2
    assert "--train-text is required" in capsys.readouterr().err
    assert run_command("tinystories", ["--train-txt", str(train)]) == 2
    assert "did you mean '--train-text'" in capsys.readouterr().err
    assert (
        run_command(
            "tinystories",
            ["--resume", "--out", str(tmp_path / "none"), *_args(texts, tmp_path / "none")[:4]],
        )
        == 2
    )
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["tinystory"]) == 2
    assert "did you mean 'tinystories'" in capsys.readouterr().err
    assert run_command("leaderboard", ["--help"]) == 0
    assert "calibrate_steps" in capsys.readouterr().out


def test_no_room_after_calibration_leaves_configs_that_match_the_plan(texts, tmp_path, capsys,
                                                                      monkeypatch):  # fmt: skip
    """Calibration so slow (fake clock) that no further step fits: the run ends at the
    calibration checkpoint, and config.toml / run.toml say max_steps = calibrate_steps (they
    used to keep 100000 while the plan said 4), with the cosine the calibration ran with."""
    clock = FakeClock(tick=0.2)
    for module in ("tinylm.apps.pipeline", "tinylm.train.trainer.trainer",
                   "tinylm.train.trainer.clock", "tinylm.train.trainer.launch",
                   "tinylm.train.runtime"):  # fmt: skip
        monkeypatch.setattr(importlib.import_module(module), "time", clock)
    out = tmp_path / "lb_full"
    argv = _args(texts, out, *CALIBRATED)
    assert run_command("leaderboard", argv) == 0
    log = capsys.readouterr().out
    record = json.loads((out / "budget.json").read_text())
    plan = record["plan"]
    assert plan["max_steps"] == 4 and record["stopped"] == "time budget"
    assert [line for line in log.splitlines() if "ms/step" in line] == [describe_plan(plan)]
    assert "no further step fits" in log
    for name in ("config.toml", "run.toml"):
        _, config = load_run_config(out / name)
        assert config.train.max_steps == plan["max_steps"] == 4, name
        assert config.optim.cosine_steps == 100000, name  # the schedule the 4 steps ran on
    assert _metrics(out)[-1]["step"] == 4
    assert "steps: 4 of 4" in (out / "report.md").read_text()


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_run_exits_like_train_lm(monkeypatch, tmp_path, signal_name, status):
    """A run a signal stopped (checkpointed) ends with 128 + signal, as train-lm does."""
    result = SimpleNamespace(stopped="interrupted", signal=signal_name)
    monkeypatch.setattr(cli_module, "run_pipeline", lambda *a, **k: SimpleNamespace(result=result))
    argv = ["--train-text", "t", "--val-text", "v", "--out", str(tmp_path / "x")]
    assert run_command("tinystories", argv) == status
    result.stopped, result.signal = "finished", None
    assert run_command("tinystories", argv) == 0


def test_tinystories_without_data_runs_on_the_bundled_sample(tmp_path, capsys):
    """No --train-text/--val-text: the TinyStories sample tinylm.train ships, split by whole
    stories, end to end (BPE → tokens → train → eval → sample → report), through tinylm-run."""
    out = tmp_path / "ts"
    argv = ["tinystories", "--out", str(out), *TINY, "--data.tokenizer_bytes", "50000"]
    assert main(argv) == 0
    assert "bundled tinystories sample" in capsys.readouterr().out

    source = bundled_corpus("tinystories").read_text(encoding="utf-8")
    train = (out / "data" / "bundled" / "train.txt").read_text(encoding="utf-8")
    val = (out / "data" / "bundled" / "val.txt").read_text(encoding="utf-8")
    assert train + val == source  # a split, nothing lost or added
    assert val.count(f"{EOT}\n") == round(source.count(f"{EOT}\n") * 0.05) > 0
    assert train.endswith(f"{EOT}\n") and val.startswith(source[len(train) :][:200])

    app, config = load_run_config(out / "run.toml")
    assert (
        app.bundled == "tinystories"
        and Path(app.train_text) == out / "data" / "bundled" / "train.txt"
    )
    assert config.model.d_model == 32  # the command line still wins over the bundled overlay
    evals = [r for r in _metrics(out) if r["val_loss"] is not None]
    assert [r["step"] for r in evals] == [5, 10]
    assert (out / "sample.txt").read_text().startswith("Once upon a time")
    report = (out / "report.md").read_text()
    assert "bundled 2 MB sample" in report.splitlines()[0]
    assert f"final val loss: **{evals[-1]['val_loss']:.4f}**" in report

    # --resume reads the same split (run.toml), so nothing is re-encoded.
    assert main([*argv, "--resume", "--train.max_steps", "12"]) == 0
    assert "tokenizer: training" not in capsys.readouterr().out
    assert _metrics(out)[-1]["step"] == 12
