"""Console scripts: `tinystories`, `owt`, `leaderboard` (and `tinylm-run NAME`), one run each.

    tinystories            # the bundled 2 MB TinyStories sample, a CPU-sized model: minutes
    tinystories --train-text TinyStoriesV2-GPT4-train.txt --val-text TinyStoriesV2-GPT4-valid.txt
    owt --train-text owt_train.txt --val-text owt_valid.txt --out runs/owt --optim.lr 2e-3
    leaderboard --train-text owt_train.txt --val-text owt_valid.txt --budget-hours 1.5
    tinystories --out runs/tinystories --resume        # continue; the saved run.toml is reused

Bad input ends with one `error: ...` line and exit status 2; no traceback, no lost work. A
SIGINT/SIGTERM stops the run after a checkpoint with status 130/143, as train-lm does.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import signal
import sys

import tomli_w

from tinylm.apps.config import RUNS, bundled_config_path, load_run_config, run_config_path
from tinylm.apps.pipeline import run_pipeline
from tinylm.train import run_cli, split_command_line

__all__ = ["leaderboard", "main", "owt", "run_command", "tinystories", "usage"]

USAGE = """usage: {name} [--train-text FILE --val-text FILE] [--out DIR] [--config FILE] [--resume]
            [--budget-hours H] [--device DEV] [--compile] [--no-progress] [--section.key VALUE ...]

{what}
  --train-text FILE  raw training text (documents separated by <|endoftext|>); default:
                     {train_default}
  --val-text FILE    raw validation text; default: {val_default}
  --out DIR          run directory (default: runs/{name}); everything the run writes goes there
  --config FILE      a TOML overlaid on the shipped config below: it needs only the keys it
                     changes; on --resume the run's own run.toml is used unless --config is given
                     (default: none)
  --resume           continue the run in --out from its newest checkpoint (default: a fresh run)
  --budget-hours H   wall-clock budget of training, app.budget_hours (default: {budget:g}; 0 = none)
  --device DEV       auto | cpu | cuda | cuda:N | mps, train.device (default: {device})
  --compile          torch.compile the model, compute.compile (default: {compile})
  --no-progress      no progress bars (default: progress bars)
  --section.key V    override any config key: data, model, optim, train, eval, run, sample, app
{bundled}
Shipped config ({path}), its `base` chain resolved: every key with its default:

{config}"""

WHAT = {
    "tinystories": "TinyStories: 10K BPE, the 17M-parameter model at context 256, then a report.\n"
    "With no --train-text/--val-text: the 2 MB TinyStories sample tinylm.train bundles, at a size\n"
    "that trains in minutes on a CPU (the overlay below).",
    "owt": "OpenWebText: 32K BPE, the same model body at context 256, then a report.",
    "leaderboard": "Leaderboard: OpenWebText, best val loss at context 512 within a wall-clock "
    "budget (default 1.5 h), enforced by the run.",
}
# Options that stand for a config key; the rest are the command's own.
VALUE_OPTIONS = {
    "--train-text": "app.train_text",
    "--val-text": "app.val_text",
    "--budget-hours": "app.budget_hours",
    "--device": "train.device",
    "--out": None,
    "--config": None,
}
SWITCHES = {"--resume": None, "--compile": "compute.compile", "--no-progress": None, "--help": None}


def parse_args(argv: list[str]) -> tuple[dict[str, str | bool | None], dict[str, str]]:
    """Split argv into ({out, config, resume, progress}, {dotted key: raw value})."""
    flags, overrides = split_command_line(argv, value_options=VALUE_OPTIONS, switches=SWITCHES)
    options: dict[str, str | bool | None] = {
        "out": flags.get("--out"),
        "config": flags.get("--config"),
        "resume": "--resume" in flags,
        "progress": "--no-progress" not in flags,
    }
    return options, overrides


def run_command(name: str, argv: list[str] | None = None) -> int:
    """Run `name` (tinystories | owt | leaderboard) with command-line arguments; exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(usage(name))
        return 0

    def run() -> None:
        options, overrides = parse_args(argv)
        out = options["out"] or os.path.join("runs", name)
        source = options["config"] or name
        saved = os.path.join(out, "run.toml")
        if options["resume"] and not options["config"] and os.path.isfile(saved):
            source = saved  # a resumed run keeps its own config (and its budget plan)
        if options["config"]:
            print(
                f"config: {options['config']} overlaid on the shipped {name}.toml "
                "(keys it does not set keep the shipped values)",
                file=sys.stderr,
            )
        base = name if options["config"] else None
        given = (
            options["config"]
            or options["resume"]
            or ({"app.train_text", "app.val_text"} & set(overrides))
        )
        bundled = bundled_config_path(name)
        if bundled is not None and not given:
            source, base = bundled, name  # no data files: the bundled corpus, at its size
        app, config = load_run_config(source, overrides, base=base)
        done = run_pipeline(
            app, config, out, resume=bool(options["resume"]), progress=bool(options["progress"])
        )
        return interrupted_status(done.result)

    return run_cli(run)


def usage(name: str) -> str:
    """The --help text: every option with its default, then the shipped config (and overlay)."""
    path = run_config_path(name)
    app, config = load_run_config(name)
    bundled = bundled_config_path(name)
    missing = "none, required" if bundled is None else "the bundled corpus (below)"
    overlay_text = ""
    if bundled is not None:
        overlay_text = (
            "\nWith no --train-text/--val-text (and no --config/--resume), this overlay on the\n"
            f"shipped config is used ({bundled}):\n\n{bundled.read_text()}"
        )
    return USAGE.format(
        name=name,
        what=WHAT[name],
        train_default=app.train_text or missing,
        val_default=app.val_text or missing,
        budget=app.budget_hours,
        device=config.train.device,
        compile=str(config.compute.compile).lower(),
        bundled=overlay_text,
        path=path,
        config=tomli_w.dumps({"app": dataclasses.asdict(app), **config.to_dict()}),
    )


def interrupted_status(result) -> int:
    """0, or 130/143 for a run a signal stopped (after its checkpoint), as train-lm exits."""
    if result.stopped == "interrupted" and result.signal:
        return 128 + signal.Signals[result.signal].value
    return 0


def main(argv: list[str] | None = None) -> int:
    """`tinylm-run NAME [options]`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: tinylm-run {{{','.join(RUNS)}}} [options]\n")
        for name in RUNS:
            print(f"  {name:<12} {WHAT[name].splitlines()[0]}")
        print("\ntinylm-run NAME --help lists NAME's options with their defaults and its config.")
        return 0 if argv else 2
    if argv[0] not in RUNS:
        close = difflib.get_close_matches(argv[0], RUNS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"error: unknown run '{argv[0]}' (known: {', '.join(RUNS)}){hint}", file=sys.stderr)
        return 2
    return run_command(argv[0], argv[1:])


def tinystories() -> int:
    return run_command("tinystories")


def owt() -> int:
    return run_command("owt")


def leaderboard() -> int:
    return run_command("leaderboard")


if __name__ == "__main__":
    raise SystemExit(main())
