"""Shared helpers of train-lm's run-loop tests (test_run_output, test_run_progress,
test_reliability).

A plain module, not a test file: imported as `packages.train.tests.run_cases` (the repository
root is on pytest's pythonpath); the `tokens` fixture (random ids of VOCAB) is in conftest.py.
"""

from tinylm.train import load_config

VOCAB = 512


def _argv(tokens, root, name="r", steps=8, *extra):
    return [
        "--model.d_model", "32", "--model.num_layers", "1", "--model.num_heads", "2",
        "--model.d_ff", "64", "--model.context_length", "32", "--train.max_steps", str(steps),
        "--train.batch_size", "4", "--train.log_interval", "2", "--run.checkpoint_interval", "4",
        "--eval.interval", "4", "--eval.iters", "1", "--train.device", "cpu",
        "--data.vocab_size", str(VOCAB), "--data.train_tokens", str(tokens / "train.npy"),
        "--data.val_tokens", str(tokens / "val.npy"), "--run.root", str(root),
        "--run.name", name, "--sample.max_new_tokens", "0", "--no-progress", *extra,
    ]  # fmt: skip


def _config(tokens, root, name="r", steps=8, **overrides):
    argv = _argv(tokens, root, name, steps)[:-1]
    pairs = dict(zip(argv[0::2], argv[1::2], strict=True))
    values = {k[2:]: v for k, v in pairs.items()}
    values.update(overrides)
    return load_config(overrides=values)


def _quiet(*args, **kwargs):
    pass
