"""The `generate` command line: options and their defaults, seeds, one-line warnings and errors.

The run directory is made without training (an untrained tiny model's checkpoint beside a BPE
trained on a few KB): the command line is under test here, not the samples' quality.
"""

import re
import shutil

import pytest
import torch

from tinylm.nn import TransformerLM
from tinylm.train import TrainConfig, checkpoint_path, prepare_data, save_checkpoint
from tinylm.train.cli.generate import main
from tinylm.train.config import MAX_SEED

SEED_LINE = re.compile(r"^seed (\d+) \(--seed \1 repeats this sample\)$")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    text = root / "corpus.txt"
    text.write_text("Once upon a time there was a cat.<|endoftext|>The dog ran.\n" * 80)
    cfg = TrainConfig.from_dict(
        {
            "data": {"text": str(text), "text_bytes": 0, "vocab_size": 280, "num_workers": 1},
            "model": {
                "context_length": 16,
                "d_model": 16,
                "num_layers": 1,
                "num_heads": 2,
                "d_ff": 32,
            },
            "run": {"root": str(root / "runs"), "name": "tiny"},
        }
    )
    data = prepare_data(cfg.data, root / "cache", log=lambda *a: None)
    run = cfg.run_dir
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(data.tokenizer_dir, run / "tokenizer")
    torch.manual_seed(0)
    model = TransformerLM(cfg.model, cfg.compute)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(model, optimizer, 0, checkpoint_path(run, 0), config=cfg.to_dict())
    return run


def _generate(capsys, *args):
    status = main(["--device", "cpu", *args])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def test_help_shows_every_default(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--max-new-tokens N, --max-tokens N" in text
    for default in ("200", "0.8", "0.95", "0", "auto", "1", "float32"):
        assert f"(default: {default})" in text
    assert "(default: a fresh one, printed to stderr)" in text
    assert "(default: None)" not in text


def test_max_new_tokens_and_its_alias_and_the_printed_seed(run_dir, capsys):
    """--max-new-tokens (the config key's and HF's name) = --max-tokens; a fresh seed is drawn
    and printed unless --seed is given, and the printed seed reproduces the sample."""
    base = ["--run", str(run_dir), "--prompt", "Once", "--temperature", "1"]
    status, first, err = _generate(capsys, *base, "--max-new-tokens", "12")
    assert status == 0 and len(err) == 1
    seed = SEED_LINE.match(err[0])
    assert seed, err
    status, again, err = _generate(capsys, *base, "--max-tokens", "12", "--seed", seed[1])
    assert status == 0 and again == first
    assert err == [f"seed {seed[1]} (--seed {seed[1]} repeats this sample)"]
    seeds = set()
    for _ in range(3):
        status, _out, err = _generate(capsys, *base, "--max-new-tokens", "2")
        seeds.add(SEED_LINE.match(err[0])[1])
    assert len(seeds) > 1  # fresh each call (three equal 32-bit draws: p = 2**-64)


@pytest.mark.parametrize("seed", [str(2**64), str(MAX_SEED + 1), "-1"])
def test_seed_out_of_range_is_one_line_naming_the_option(run_dir, capsys, seed):
    """--seed 2**64 ended in torch's `Overflow when unpacking long long`; 2**63 was accepted but
    cannot be written to a TOML config."""
    status, out, err = _generate(capsys, "--run", str(run_dir), "--seed", seed)
    assert status == 2 and out == ""
    assert err == [f"error: --seed must be an integer in [0, {MAX_SEED}], got {seed}"]


def test_top_seed_is_accepted(run_dir, capsys):
    status, _out, err = _generate(capsys, "--run", str(run_dir), "--seed", str(MAX_SEED))
    assert status == 0 and err == [f"seed {MAX_SEED} (--seed {MAX_SEED} repeats this sample)"]


def test_long_prompt_warning_is_one_line(run_dir, capsys):
    """The prompt-longer-than-context warning was `.../jaxtyping/_decorator.py:465: UserWarning:
    ...` plus a source line; now one `warning:` line."""
    prompt = "Once upon a time there was a cat. " * 20  # far more than 16 tokens
    args = ["--run", str(run_dir), "--prompt", prompt, "--max-new-tokens", "3", "--seed", "1"]
    status, out, err = _generate(capsys, *args)
    assert status == 0 and out.startswith(prompt)
    warnings_ = [line for line in err if not line.startswith("seed ")]
    assert len(warnings_) == 1
    assert re.fullmatch(
        r"warning: prompt of \d+ tokens is longer than context_length=16; "
        r"the model sees only its last 16 tokens",
        warnings_[0],
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-new-tokens", "-1"], "error: --max-new-tokens must be >= 0, got -1"),
        (["--max-tokens", "-1"], "error: --max-new-tokens must be >= 0, got -1"),
        (["--max-new-tokens", "lots"], "error: argument --max-new-tokens/--max-tokens: invalid"),
        (["--seed", "2**64"], "error: argument --seed: invalid int value: '2**64'"),
        (["--temprature", "1"], "error: unrecognized arguments: --temprature 1"),
    ],
)
def test_bad_arguments_are_one_error_line(run_dir, capsys, args, message):
    status, out, err = _generate(capsys, "--run", str(run_dir), *args)
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith(message)
