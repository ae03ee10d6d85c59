"""Study planning: which ordinary `train-lm` runs (points) a study is made of (apps README).

A study is a list of `Point`s, each a set of `--section.key value` overrides on one base config.
Planning is pure: it reads the base config with the scale's and the user's overrides applied (the
"reference" run) and derives every point from it, so `--model.d_model 16 --train.max_steps 4`
shrinks a whole study, and nothing here trains or touches the disk.

    lr         log-spaced peak rates (×√10-ish: 1, 3, 10, ...), min_lr = lr/10 each, same steps
    batch      1, 2, 4, ... up to the largest batch that fits, the same number of tokens each,
               lr = ref_lr·sqrt(B / ref_B) (square-root scaling, as for Adam-type optimizers)
    ablations  baseline, no RMSNorm (at the reference lr and at lr/10), post-norm, NoPE, and SiLU
               with d_ff ×3/2 so it matches SwiGLU's parameter count (`ModelConfig.with_ffn`)
    recipe     the baseline vs train's `--config modern` (at the reference's shape, data, batch),
               both stopped by the same wall clock
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tinylm.train import TrainConfig, default_config_path, load_config

__all__ = [
    "SCALES",
    "STUDIES",
    "Point",
    "StudyPlan",
    "base_config_path",
    "batch_sizes",
    "lr_grid",
    "plan_study",
    "scale_overrides",
    "sqrt_scaled_lr",
]

STUDIES = ("lr", "batch", "ablations", "recipe")
SCALES = ("cpu", "h100")

# Per scale: overrides on the base config that size a study (the user's own come after them).
# cpu: the default run's model (1.4M params) for 300 steps: ~1 min per point on an idle 2-core
# CPU (the default 600-step run takes about two), so each study stays near 10-20 minutes.
_SCALE = {
    "cpu": {
        # Prose, as every measured study so far (README numbers); the default run's own corpus
        # is TinyStories.
        "data.text": "openprose",
        "train.max_steps": "300",
        "eval.interval": "50",
        "run.checkpoint_interval": "100",
        "sample.max_new_tokens": "256",
    },
    "h100": {},  # configs/study_h100.toml is the CS336 TinyStories run as it stands
}
RECIPE_SECONDS = {"cpu": 120.0, "h100": 1800.0}  # equal wall-clock per recipe point
MEMORY_GB = {"cpu": 2.0, "h100": 80.0}  # batch study: a planning cap (CUDA also tries and sees)
MAX_BATCH = 1024


@dataclass(frozen=True)
class Point:
    """One run of a study: its directory name, its overrides, how it is labelled and plotted."""

    name: str
    overrides: dict[str, str] = field(default_factory=dict)
    label: str = ""
    value: float | None = None  # the swept number (lr, batch size), for the x axes
    config: str = ""  # a different base config for this point (recipe: "modern")


@dataclass(frozen=True)
class StudyPlan:
    study: str
    scale: str
    config: Path  # the base TOML every point starts from
    overrides: dict[str, str]  # scale + user overrides, shared by every point
    reference: TrainConfig  # the base config with those overrides: what points are derived from
    points: tuple[Point, ...]
    sweep: str = ""  # "optim.lr" | "train.batch_size" | ""


def base_config_path(scale: str) -> Path:
    if scale == "cpu":
        return default_config_path()
    return Path(str(resources.files("tinylm.apps") / "configs" / "study_h100.toml"))


def scale_overrides(scale: str) -> dict[str, str]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}' (known: {', '.join(SCALES)})")
    return dict(_SCALE[scale])


def lr_grid(low: float, high: float) -> list[float]:
    """1, 3, 10, 30, ... × powers of ten from `low` to `high` (inclusive): log-spaced, round."""
    out, decade = [], math.floor(math.log10(low))
    while True:
        for mantissa in (1.0, 3.0):
            value = float(f"{mantissa}e{decade}")
            if value > high * (1 + 1e-9):
                return out
            if value >= low * (1 - 1e-9):
                out.append(value)
        decade += 1


def sqrt_scaled_lr(ref_lr: float, ref_batch: int, batch: int) -> float:
    """Square-root scaling: the gradient noise falls as 1/sqrt(B), so the lr may grow as sqrt(B)."""
    return ref_lr * math.sqrt(batch / ref_batch)


def batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to `max_batch` (its largest power of two below or at it)."""
    return [2**k for k in range(int(math.log2(max(1, max_batch))) + 1)]


def _fmt(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _value(x: float) -> str:
    """A derived float as an override: 12 significant digits, so lr/10 prints 3e-05, not the
    float artefact 2.9999999999999997e-05, and still reads back as a float."""
    return repr(float(f"{x:.12g}"))


def _steps_overrides(steps: int, cfg: TrainConfig) -> dict[str, str]:
    """`steps` steps with the reference's intervals scaled to match: the same number of logs,
    evaluations and checkpoints, and warmup over the same fraction of the run."""
    scale = steps / cfg.train.max_steps

    def scaled(n: int) -> str:
        return str(max(1, round(n * scale)))

    return {
        "train.max_steps": str(steps),
        "optim.warmup_steps": scaled(cfg.optim.warmup_steps),
        "train.log_interval": scaled(cfg.train.log_interval),
        "eval.interval": scaled(cfg.eval.interval),
        "run.checkpoint_interval": scaled(cfg.run.checkpoint_interval),
    }


def _lr_points(cfg: TrainConfig, scale: str) -> list[Point]:
    low, high = (1e-4, 1.0) if scale == "cpu" else (1e-4, 3e-1)
    return [
        Point(
            f"lr-{_fmt(lr)}",
            {"optim.lr": _value(lr), "optim.min_lr": _value(lr / 10)},
            f"lr {_fmt(lr)}",
            lr,
        )
        for lr in lr_grid(low, high)
    ]


def _batch_points(cfg: TrainConfig, max_batch: int) -> list[Point]:
    ref_b, ref_lr = cfg.train.batch_size, cfg.optim.lr
    tokens = cfg.train.max_steps * ref_b * cfg.train.grad_accum  # sequences; equal for every point
    points = []
    for b in batch_sizes(max_batch):
        lr = sqrt_scaled_lr(ref_lr, ref_b, b)
        steps = max(1, tokens // b)
        # Evaluation at the reference batch, so every point's val loss sees the same tokens.
        over = {"train.batch_size": str(b), "train.grad_accum": "1"}
        over["eval.batch_size"] = str(cfg.eval.batch_size or ref_b)
        over |= {"optim.lr": f"{lr:.4g}", "optim.min_lr": f"{lr / 10:.4g}"}
        over |= _steps_overrides(steps, cfg)
        points.append(Point(f"batch-{b:04d}", over, f"batch {b} (lr {lr:.2g})", float(b)))
    return points


def _ablation_points(cfg: TrainConfig) -> list[Point]:
    m, lr = cfg.model, cfg.optim.lr
    silu = m.with_ffn("silu") if m.ffn == "swiglu" else m
    low = {"optim.lr": _value(lr / 10), "optim.min_lr": _value(lr / 100)}
    return [
        Point("baseline", {}, f"baseline (pre-norm, RoPE, SwiGLU d_ff {m.d_ff})"),
        Point("no-norm", {"model.norm": "none"}, "no RMSNorm"),
        Point("no-norm-low-lr", {"model.norm": "none", **low}, f"no RMSNorm, lr {lr / 10:g}"),
        Point("post-norm", {"model.norm": "post"}, "post-norm"),
        Point("nope", {"model.position": "none"}, "NoPE (no position encoding)"),
        Point(
            "silu",
            {"model.ffn": "silu", "model.d_ff": str(silu.d_ff)},
            f"SiLU FFN, d_ff {silu.d_ff} (matched params)",
        ),
    ]


def _recipe_points(cfg: TrainConfig, scale: str) -> list[Point]:
    seconds = cfg.train.max_seconds or RECIPE_SECONDS[scale]
    # The clock stops both; max_steps is only an upper bound (the schedule runs to it).
    # The clock should stop both: the step bound (the schedule's length) is twice the reference's
    # (cpu: 600 steps, about two idle minutes); the report shows the steps each one reached.
    steps = cfg.train.max_steps * (2 if scale == "cpu" else 1)
    over = {"train.max_seconds": repr(seconds), "train.max_steps": str(steps)}
    # The modern config brings its own switches and optimizer; shape, data, batch and eval are
    # the reference's, so the two points differ by the recipe only.
    same = {f"model.{k}": str(getattr(cfg.model, k)) for k in _SHAPE}
    # The recipe may use another FFN (ReLU² has two matrices): match the reference's parameter
    # count rather than its literal width.
    modern_ffn = load_config("modern").model.ffn
    same["model.d_ff"] = str(cfg.model.with_ffn(modern_ffn).d_ff)
    same |= {k: str(_get(cfg, k)) for k in _SHARED}
    return [
        Point("baseline", over, f"baseline (AdamW + cosine), {seconds:g} s"),
        Point("modern", same | over, f"modern recipe, {seconds:g} s", config="modern"),
    ]


_SHAPE = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff")
_SHARED = (
    "data.vocab_size", "data.text_bytes", "data.tokenizer_bytes", "train.batch_size",
    "train.grad_accum", "eval.interval", "eval.iters", "sample.prompt",
    "sample.max_new_tokens",
)  # fmt: skip


def _get(cfg: TrainConfig, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def plan_study(
    study: str,
    scale: str = "cpu",
    overrides: dict[str, str] | None = None,
    *,
    max_batch: int | None = None,
    memory_gb: float | None = None,
) -> StudyPlan:
    """The points of `study` at `scale`, with the user's `{"section.key": value}` overrides.

    The batch study's largest size is `max_batch`, else the largest power of two whose AdamW
    training memory (see `accounting.training_memory`) fits in `memory_gb`.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study '{study}' (known: {', '.join(STUDIES)}, all, accounting)")
    shared = scale_overrides(scale) | dict(overrides or {})
    path = base_config_path(scale)
    cfg = load_config(path, shared)
    sweep = ""
    if study == "lr":
        points, sweep = _lr_points(cfg, scale), "optim.lr"
    elif study == "batch":
        if max_batch is None:
            from tinylm.apps.accounting import largest_batch

            gb = memory_gb if memory_gb is not None else MEMORY_GB[scale]
            max_batch = min(MAX_BATCH, largest_batch(cfg.model, gb * 1e9))
        points, sweep = _batch_points(cfg, max(1, max_batch)), "train.batch_size"
    elif study == "ablations":
        points = _ablation_points(cfg)
    else:
        points = _recipe_points(cfg, scale)
    return StudyPlan(study, scale, path, shared, cfg, tuple(points), sweep)
