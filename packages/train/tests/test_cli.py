"""train-lm and generate command lines: overrides, resume, errors without tracebacks."""

import json

import pytest
import torch

from tinylm.train import TrainingDiverged, find_checkpoints, run_cli, sampling
from tinylm.train.cli.generate import main as generate_main
from tinylm.train.cli.train_lm import main as train_main
from tinylm.train.cli.train_lm import parse_args


@pytest.fixture
def config_file(tiny_config, tmp_path):
    path = tmp_path / "tiny.toml"
    tiny_config.replace(train={"max_steps": 10}).save(path)
    return path


def test_parse_args_forms():
    path, resume, progress, overrides = parse_args(
        [
            "--config",
            "x.toml",
            "--optim.lr=1e-3",
            "--train.max_steps",
            "5",
            "--resume",
            "--compile",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert (path, resume, progress) == ("x.toml", True, False)
    assert overrides == {
        "optim.lr": "1e-3",
        "train.max_steps": "5",
        "compute.compile": "true",
        "train.device": "cpu",
    }


def test_help(capsys):
    assert train_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: train-lm" in out and "[optim]" in out


def test_train_resume_generate(config_file, tiny_config, capsys):
    assert train_main(["--config", str(config_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "unigram entropy of the val split" in out and "done: step 10" in out
    run = tiny_config.run_dir
    assert find_checkpoints(run)[-1].name == "step_0000010.pt"

    # --resume continues from the newest checkpoint; a longer schedule comes from the command line.
    assert (
        train_main(
            ["--config", str(config_file), "--resume", "--train.max_steps", "20", "--no-progress"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "resumed from" in out and "step_0000010.pt" in out and "done: step 20" in out
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]

    args = ["--run", str(run), "--prompt", "The", "--max-tokens", "12", "--seed", "3"]
    assert generate_main(args) == 0
    first = capsys.readouterr().out
    assert generate_main(args) == 0
    assert capsys.readouterr().out == first  # seeded: reproducible
    assert first.startswith("The")
    assert generate_main([*args[:-1], "4", "--temperature", "0", "--num-samples", "2"]) == 0
    greedy = capsys.readouterr().out.split("--- sample 2 ---")
    assert generate_main(["--run", str(run), "--max-tokens", "5"]) == 0  # no prompt: a new document
    assert capsys.readouterr().out.strip()
    assert greedy[0].replace("--- sample 1 ---\n", "") == greedy[1].lstrip(
        "\n"
    )  # greedy ignores seed


def test_generate_dtype_and_compile(config_file, tiny_config, capsys, monkeypatch):
    """--dtype bfloat16 samples from a bf16 model; --compile reaches tinylm.nn.generate."""
    assert train_main(["--config", str(config_file), "--no-progress"]) == 0
    capsys.readouterr()
    args = ["--run", str(tiny_config.run_dir), "--prompt", "The", "--max-tokens", "6"]
    assert generate_main([*args, "--temperature", "0", "--dtype", "bfloat16"]) == 0
    assert capsys.readouterr().out.startswith("The")

    seen = []

    def spy_generate(model, *a, **kw):  # what sample_text hands tinylm.nn.generate
        seen.append((next(model.parameters()).dtype, kw.get("compile")))  # absent = auto
        return real_generate(model, *a, **{**kw, "compile": False})

    real_generate = sampling.generate
    monkeypatch.setattr(sampling, "generate", spy_generate)
    for flag in ("on", "off", "auto"):
        assert generate_main([*args, "--compile", flag, "--dtype", "bfloat16"]) == 0
    assert generate_main(args) == 0
    assert seen == [
        (torch.bfloat16, True),
        (torch.bfloat16, False),
        (torch.bfloat16, None),
        (torch.float32, None),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optim.lrr", "1"], "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
        (["--resum"], "error: unknown option --resum; did you mean '--resume'?"),
        (["--optim.lr"], "error: --optim.lr needs a value"),
        (["stray"], "error: unexpected argument 'stray'; options look like --section.key value"),
        (["--config", "/nonexistent.toml"], "error: config file not found: /nonexistent.toml"),
        (
            ["--data.text", "/nonexistent.txt"],
            "error: text file not found: /nonexistent.txt (data.text)",
        ),
    ],
)
def test_errors_are_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == message
    assert "Traceback" not in err


def test_generate_errors(tmp_path, capsys):
    assert generate_main(["--run", str(tmp_path / "none")]) == 2
    assert "error: run directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert generate_main(["--run", str(tmp_path / "empty")]) == 2
    assert "error: no checkpoint in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (None, 0, ""),
        (ValueError("bad value"), 2, "error: bad value"),
        (FileNotFoundError("no such file"), 2, "error: no such file"),
        (PermissionError("read-only"), 2, "error: read-only"),
        (TrainingDiverged("loss became nan"), 1, "error: loss became nan"),
        (KeyboardInterrupt(), 130, "error: interrupted"),
        (
            OSError(28, "No space left on device"),
            1,
            "error: OSError: [Errno 28] No space left on device "
            "(TINYLM_DEBUG=1 shows the traceback)",
        ),
    ],
)
def test_run_cli_maps_errors_to_statuses(error, status, message, capsys, monkeypatch):
    monkeypatch.delenv("TINYLM_DEBUG", raising=False)

    def body():
        if error is not None:
            raise error

    assert run_cli(body) == status
    captured = capsys.readouterr()
    assert captured.err.strip() == message and captured.out == ""


def test_run_cli_abort_message_and_debug(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted, abort_message="aborted (no checkpoint written)") == 130
    assert capsys.readouterr().err == "error: aborted (no checkpoint written)\n"

    def bad_input():
        raise ValueError("bad value")

    monkeypatch.setenv("TINYLM_DEBUG", "1")  # the traceback, not the one line
    with pytest.raises(ValueError, match="bad value"):
        run_cli(bad_input)

    def other():
        raise RuntimeError("a bug")  # not user error: propagates with its traceback

    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(other)


def test_every_command_shows_a_warning_as_one_line(capsys):
    """run_cli (every command's wrapper) prints a warning raised anywhere in the body as one
    `warning:` line, not Python's file:line pointer plus source line (train-lm's sample with a
    prompt longer than the context warned from inside jaxtyping's wrapper)."""
    import warnings

    from tinylm.train import run_cli

    def body() -> int:
        warnings.warn("the prompt is longer than the context", UserWarning, stacklevel=2)
        return 0

    assert run_cli(body) == 0
    err = capsys.readouterr().err
    assert err == "warning: the prompt is longer than the context\n"
