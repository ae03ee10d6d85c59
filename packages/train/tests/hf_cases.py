"""Shared helpers of the import-hf / export-hf input tests (test_hf_inputs, test_hf_files_inputs).

A plain module, not a test file: imported as `packages.train.tests.hf_cases` (the repository
root is on pytest's pythonpath); the `tokenizer` and `hf_dir` fixtures are in conftest.py.
"""

from pathlib import Path

import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import TransformerLM
from tinylm.train import TrainConfig, save_checkpoint

EOT = "<|endoftext|>"


def make_run(root: Path, tokenizer: Tokenizer) -> Path:
    """A run directory as train-lm leaves it (d_model 32, d_ff 48: no square MLP weights)."""
    model = {"context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4, "d_ff": 48}
    cfg = TrainConfig.from_dict(
        {
            "data": {"vocab_size": len(tokenizer), "special_tokens": [EOT]},
            "model": model,
            "run": {"root": str(root), "name": "run"},
        }
    )
    torch.manual_seed(0)
    net = TransformerLM(cfg.model)
    run = cfg.run_dir
    (run / "checkpoints").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    tokenizer.save(run / "tokenizer" / "vocab.json", run / "tokenizer" / "merges.txt")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    path = run / "checkpoints" / "step_0000007.pt"
    save_checkpoint(net, optimizer, 7, path, config=cfg.to_dict())
    cfg.save(run / "config.toml")
    return run


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    """Temporary names the atomic writers leave behind if they fail to clean up."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))
