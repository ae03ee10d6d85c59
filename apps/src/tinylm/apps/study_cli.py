"""`study NAME`: run a study's train-lm points (resumable, skipped when done) and write report.md.

    study lr                                   # CPU sweep on the bundled corpus -> runs/studies/lr
    study batch --jobs 2                       # two points at once (on CUDA: one per GPU)
    study ablations --print-commands > jobs.txt    # one train-lm command per line, for a scheduler
    study all --scale h100 --train-text TinyStoriesV2-GPT4-train.txt --val-text ...-valid.txt
    study lr --model.d_model 64 --train.max_steps 100   # any train-lm key, for every point
    study accounting                           # the handout's resource answers (no training)

Bad input ends with one `error: ...` line and exit status 2; a diverged point is a result.
"""

from __future__ import annotations

import dataclasses
import difflib
import shlex
import sys
import time
from pathlib import Path

from tinylm.apps.study import SCALES, STUDIES, plan_study
from tinylm.apps.study_report import write_study_report
from tinylm.apps.study_run import (
    FINAL,
    point_command,
    point_config,
    point_state,
    prepare_study_data,
    run_study,
)
from tinylm.train import atomic_write, run_cli, split_command_line

__all__ = ["main"]

NAMES = (*STUDIES, "all", "accounting")
USAGE = f"""usage: study {{{",".join(NAMES)}}} [--scale cpu|h100] [--train-text F --val-text F]
             [--out DIR] [--jobs N] [--print-commands] [--memory-gb G] [--max-batch B]
             [--only P1,P2] [--tokenizer DIR] [--corpus FILE] [--section.key VALUE ...]

Runs a study's points (ordinary train-lm runs, one directory each under <out>/<study>), skips
finished ones, resumes cut-short ones, and writes <out>/<study>/report.md.
  lr          log-spaced peak lr sweep, up to rates that diverge
  batch       batch 1, 2, 4, ... up to the largest that fits, lr ∝ sqrt(batch), equal tokens
  ablations   no RMSNorm (also at lr/10), post-norm, NoPE, SiLU at SwiGLU's parameter count
  recipe      baseline vs train-lm --config modern at equal wall-clock
  all         the four above, one after the other
  accounting  parameters/FLOPs/memory/MFU-days and tokenizer numbers (no training)
  --scale S         {" | ".join(SCALES)} (default: cpu: the bundled openprose corpus and the
                    default run's model)
  --train-text F    raw text for the tokenizer and training (needed by --scale h100; default:
                    the bundled corpus)
  --val-text F      raw validation text (goes with --train-text; default: none)
  --out DIR         parent of the study directories (default runs/studies)
  --jobs N          points run at once (default: 1; CUDA: one per visible GPU)
  --print-commands  print the train-lm command of every unfinished point, one per line, and exit
                    (the data is prepared first, so the commands only train)
  --memory-gb G     batch study: memory budget that caps the batch (default 2 on cpu, 80 h100)
  --max-batch B     batch study: the largest batch to try (overrides the memory budget;
                    default: none)
  --only P1,P2      run (or print) only these points, by directory name (e.g. lr-1e-3;
                    default: every point)
  --tokenizer DIR   accounting: vocab.json + merges.txt to measure (default: train one here)
  --corpus FILE     accounting: text to sample documents from (default: the bundled openprose)
  --section.key V   any train-lm config key, applied to every point (swept keys stay the study's)
"""
VALUE_OPTIONS = dict.fromkeys(
    ["--scale", "--train-text", "--val-text", "--out", "--jobs", "--memory-gb", "--max-batch",
     "--tokenizer", "--corpus", "--only"]
)  # fmt: skip
SWITCHES = {"--print-commands": None, "--help": None}


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def _number(options, flag: str, kind):
    if flag not in options:
        return None
    try:
        return kind(options[flag])
    except ValueError:
        raise ValueError(f"{flag} must be a number, got {options[flag]!r}") from None


def run_one(study: str, options: dict, overrides: dict[str, str]) -> Path | None:
    """Plan, prepare data, run (or print) one study and write its report."""
    scale = str(options.get("--scale", "cpu"))
    plan = plan_study(
        study,
        scale,
        overrides,
        max_batch=_number(options, "--max-batch", int),
        memory_gb=_number(options, "--memory-gb", float),
    )
    if "--only" in options:  # a subset of the points, by name
        wanted = [n for n in str(options["--only"]).split(",") if n]
        names = [p.name for p in plan.points]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(
                f"--only: no point {unknown[0]!r} in study {study} ({', '.join(names)})"
            )
        plan = dataclasses.replace(plan, points=tuple(p for p in plan.points if p.name in wanted))
    study_dir = (Path(str(options.get("--out", "runs/studies"))) / study).resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    for point in plan.points:
        if point.config:  # e.g. recipe's `modern`: fail before any work if train lacks it
            try:
                point_config(plan, study_dir, point, {})
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(
                    f"study {study} needs train-lm's --config {point.config}, which this "
                    f"tinylm.train does not provide ({e})"
                ) from None
    data = prepare_study_data(
        plan,
        study_dir,
        str(options.get("--train-text", "")),
        str(options.get("--val-text", "")),
        log=_log,
    )
    if "--print-commands" in options:
        for point in plan.points:
            state = point_state(point_config(plan, study_dir, point, data))
            if state.status in FINAL:
                _log(f"# {point.name}: {state.status}, not printed")
                continue
            cmd = point_command(plan, study_dir, point, data, resume=state.status == "partial")
            print(shlex.join(cmd), flush=True)
        return None
    start = time.perf_counter()
    _log(f"study {study} ({scale}): {len(plan.points)} point(s) in {study_dir}")
    jobs = _number(options, "--jobs", int) or 1
    states = run_study(plan, study_dir, data, jobs=jobs, log=_log, progress=True)
    report = write_study_report(plan, study_dir, states)
    _log(f"study {study}: {time.perf_counter() - start:.0f} s; report {report}")
    return report


def accounting(options: dict) -> None:
    from tinylm.apps.accounting_report import accounting_markdown

    text = accounting_markdown(options.get("--tokenizer"), options.get("--corpus"), log=_log)
    print(text)
    if "--out" in options:
        out = Path(str(options["--out"])) / "accounting"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "report.md", text)
        _log(f"written {out / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if "-h" in rest or "--help" in rest:
        print(USAGE)
        return 0

    def body() -> None:
        if name not in NAMES:
            close = difflib.get_close_matches(name, NAMES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown study '{name}' (known: {', '.join(NAMES)}){hint}")
        options, overrides = split_command_line(
            rest, value_options=VALUE_OPTIONS, switches=SWITCHES
        )
        if name == "accounting":
            return accounting(options)
        for study in STUDIES if name == "all" else (name,):
            try:
                run_one(study, options, overrides)
            except ValueError as e:
                if name != "all" or study != "recipe":
                    raise
                _log(f"study recipe skipped: {e}")

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
