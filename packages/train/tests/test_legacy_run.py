"""A run directory written by an older train-lm still loads, generates, exports and resumes.

fixtures/legacy_run was written by commit a195016 (the main of 2026-12-07) with

    train-lm --data.text_bytes 200000 --data.tokenizer_bytes 100000 --data.vocab_size 300
        --model.context_length 32 --model.d_model 32 --model.num_layers 2 --model.num_heads 2
        --model.d_ff 64 --train.max_steps 6 --train.batch_size 4 --eval.interval 3 --eval.iters 1
        --run.checkpoint_interval 3 --run.name legacy --sample.max_new_tokens 10

and is never rewritten: a change to the checkpoint or config format that needs a migration
(`tinylm.train.run.migrate`) fails here until the migration exists. The oracles are the files
themselves (read with torch.load and tomllib) and Hugging Face transformers.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from tinylm.train import export_hf, find_checkpoints, load_run, read_checkpoint
from tinylm.train.cli.generate import main as generate_main
from tinylm.train.cli.train_lm import main as train_main

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_run"


@pytest.fixture
def legacy(tmp_path) -> Path:
    """A copy of the fixture (tests never write into the repository)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "legacy"))


def test_load_run_gives_the_saved_model_tokenizer_and_config(legacy):
    saved = tomllib.loads((legacy / "config.toml").read_text())
    raw = torch.load(legacy / "checkpoints" / "step_0000006.pt", weights_only=True)
    before = torch.get_rng_state()

    run = load_run(legacy)
    model, tokenizer, config = run

    assert torch.equal(torch.get_rng_state(), before)  # loading leaves the caller's RNG alone
    assert run.checkpoint == legacy / "checkpoints" / "step_0000006.pt" and run.step == 6
    assert config.model.to_dict() == saved["model"]
    assert config.compute.attention == saved["compute"]["attention"]
    assert not model.training
    state = model.state_dict()
    assert state.keys() == raw["model"].keys()
    assert all(torch.equal(state[k], raw["model"][k]) for k in state)
    vocab = json.loads((legacy / "tokenizer" / "vocab.json").read_text())
    assert len(tokenizer.vocab) == len(vocab) == config.model.vocab_size
    text = "Once upon a time, the cat sat."
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_generate_from_it_is_deterministic_with_a_seed(legacy, capsys):
    args = ["--run", str(legacy), "--seed", "7", "--max-new-tokens", "12", "--device", "cpu"]
    assert generate_main([*args, "--prompt", "The"]) == 0
    first = capsys.readouterr()
    assert generate_main([*args, "--prompt", "The"]) == 0
    second = capsys.readouterr()
    assert first.out == second.out and first.out.startswith("The")
    assert first.err.strip() == "seed 7 (--seed 7 repeats this sample)"


def test_export_hf_gives_our_logits_in_transformers(legacy, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = export_hf(legacy, tmp_path / "hf")
    theirs = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ours, tokenizer, _ = load_run(legacy)
    ids = torch.tensor([tokenizer.encode("The little dog ran home.")])
    with torch.no_grad():
        expected = ours(ids)
        got = theirs(ids).logits
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_resume_it_for_two_more_steps(legacy, tmp_path, capsys):
    root = str(legacy.parent)
    args = ["--resume", "--run.root", root, "--run.name", "legacy", "--train.max_steps", "8"]
    args += ["--train.device", "cpu", "--data.num_workers", "1", "--no-progress"]
    assert train_main(args) == 0, capsys.readouterr().err
    assert "resumed from" in capsys.readouterr().out
    # Its config says data.text = "", which meant the bundled openprose when it was written: the
    # resumed run must read that corpus (and its cached tokens), not today's default corpus.
    assert [p.name.split("-")[0] for p in (tmp_path / "_data").iterdir()] == ["openprose_4M"]
    assert [p.name for p in find_checkpoints(legacy)][-1] == "step_0000008.pt"
    steps = [json.loads(line)["step"] for line in (legacy / "metrics.jsonl").open()]
    assert steps[-1] == 8 and steps[: steps.index(6) + 1] == [3, 6]
    resumed = read_checkpoint(legacy / "checkpoints" / "step_0000008.pt")
    old = torch.load(FIXTURE / "checkpoints" / "step_0000006.pt", weights_only=True)
    assert resumed["iteration"] == 8 and resumed["optimizer"].keys() == old["optimizer"].keys()
    assert any(not torch.equal(resumed["model"][k], old["model"][k]) for k in old["model"])
