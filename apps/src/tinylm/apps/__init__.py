"""tinylm.apps: end-to-end runs (SPEC §6), one command each: TinyStories, OpenWebText, leaderboard.

    app, config = load_run_config("tinystories", {"app.train_text": "train.txt",
                                                  "app.val_text": "valid.txt"})
    result = run_pipeline(app, config, "runs/tinystories")   # BPE → .npy → train → report.md
    print(result.report.read_text())

Console scripts: `tinystories`, `owt`, `leaderboard`, `tinylm-run NAME` (see `cli.py`).
"""

from tinylm.apps.budget import BudgetPlan, fit_steps, plan_budget
from tinylm.apps.cli import main, run_command
from tinylm.apps.config import RUNS, AppConfig, load_run_config, run_config_path, save_run_config
from tinylm.apps.pipeline import PipelineResult, run_pipeline
from tinylm.apps.prepare import Prepared, file_fingerprint, prepare_tokens
from tinylm.apps.report import H100_BF16_PEAK_FLOPS, write_report

__all__ = [
    "H100_BF16_PEAK_FLOPS",
    "RUNS",
    "AppConfig",
    "BudgetPlan",
    "PipelineResult",
    "Prepared",
    "file_fingerprint",
    "fit_steps",
    "load_run_config",
    "main",
    "plan_budget",
    "prepare_tokens",
    "run_command",
    "run_config_path",
    "run_pipeline",
    "save_run_config",
    "write_report",
]
