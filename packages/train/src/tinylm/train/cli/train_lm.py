"""`train-lm`: train a language model from a TOML config plus `--section.key value` overrides.

    train-lm                                   # the embedded default run on the bundled corpus
    train-lm --config my.toml --optim.lr 1e-3  # a config file, one value overridden
    train-lm --config modern                   # a bundled config by name (Muon + WSD + recipe)
    train-lm --run.name exp1 --resume          # continue runs/exp1 from its newest checkpoint
    torchrun --nproc_per_node=4 -m tinylm.train.cli.train_lm --config big.toml   # DDP

Exit status: 0 done, 2 bad input (one `error: ...` line, before any work), 1 the run failed
(diverged, I/O error; the line names the last good checkpoint), 130/143/129 interrupted by
SIGINT/SIGTERM/SIGHUP (after writing a checkpoint, if training had started). See errors.py.
"""

from __future__ import annotations

import signal
import sys

from tinylm.train.cli.command_line import split_command_line
from tinylm.train.config import (
    MOVED_KEYS,
    SECTIONS,
    _field_types,
    bundled_configs,
    default_config_path,
    load_config,
)
from tinylm.train.errors import run_cli
from tinylm.train.run.directory import resume_command, resumed_step
from tinylm.train.trainer import train

USAGE = """usage: train-lm [--config FILE|NAME] [--resume] [--compile] [--device DEV]
                [--no-progress] [--section.key VALUE ...]

Train a tinylm language model. Options:
  --config FILE     TOML config file, or the name of a bundled one ({bundled});
                    default: the shipped default.toml, below
  --resume          continue the run in <run.root>/<run.name> from its newest checkpoint
                    (its saved config.toml is used unless --config is given)
  --compile         torch.compile the model (same as --compute.compile true)
  --device DEV      auto | cpu | cuda | cuda:N | mps (same as --train.device DEV;
                    default: auto)
  --no-progress     no progress bar (on a terminal) or progress lines (redirected)
  --section.key V   override any config key, e.g. --optim.lr 1e-3 --train.max_steps=500

Default config ({path}):

{default}"""


def parse_args(argv: list[str]) -> tuple[str | None, bool, bool, dict[str, str]]:
    """Split argv into (config path, resume, progress, {dotted key: raw value})."""
    valid = [f"{s}.{n}" for s, kind in SECTIONS.items() for n in _field_types(kind)]
    valid += list(MOVED_KEYS)  # the loader names their new place
    options, overrides = split_command_line(
        argv,
        value_options={"--config": None, "--device": "train.device"},
        switches={
            "--resume": None,
            "--compile": "compute.compile",
            "--no-progress": None,
            "--help": None,
        },
        config_keys=valid,
    )
    config_path = options.get("--config")
    return config_path, "--resume" in options, "--no-progress" not in options, overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        path = default_config_path()
        bundled = ", ".join(bundled_configs())
        print(USAGE.format(path=path, default=path.read_text(), bundled=bundled))
        return 0

    def run() -> int:
        config_path, resume, progress, overrides = parse_args(argv)
        config = load_config(config_path, overrides)
        saved = config.run_dir / "config.toml"
        if resume and config_path is None and saved.is_file():
            config = load_config(saved, overrides)  # a resumed run keeps its own config
        done = resumed_step(config.run_dir) if resume else None
        if done is not None and done >= config.train.max_steps:
            # Nothing to train: say so and how to go on, and touch nothing (no data, no files).
            more = max(2 * done, done + 1)
            extend = resume_command(
                config.run.root, config.run.name, "--train.max_steps", str(more)
            )
            print(
                f"{config.run_dir} is already at step {done} (train.max_steps "
                f"{config.train.max_steps}); nothing to do. To train on, raise train.max_steps "
                f"(any N > {done}), e.g.: {extend}"
            )
            return 0
        result = train(config, resume=resume, progress=progress)
        if result.stopped == "interrupted":  # checkpointed; the status says it was interrupted
            return 128 + signal.Signals[result.signal].value
        return 0

    return run_cli(run, abort_message="interrupted before training started (nothing saved)")


if __name__ == "__main__":
    raise SystemExit(main())
