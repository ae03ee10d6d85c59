"""tinylm.apps: end-to-end runs, one command each: TinyStories, OpenWebText, leaderboard.

    app, config = load_run_config("tinystories", {"app.train_text": "train.txt",
                                                  "app.val_text": "valid.txt"})
    result = run_pipeline(app, config, "runs/tinystories")   # BPE → .npy → train → report.md
    print(result.report.read_text())

    plan = plan_study("lr", "cpu", {"train.max_steps": "100"})   # studies (apps README)

Console scripts: `tinystories`, `owt`, `leaderboard`, `tinylm-run NAME` (see `cli.py`), and
`study NAME` (see `study_cli.py`).
"""

from tinylm.apps.budget import BudgetPlan, fit_steps, plan_budget
from tinylm.apps.cli import main, run_command
from tinylm.apps.config import (
    RUNS,
    AppConfig,
    load_run_config,
    overlay,
    run_config_path,
    save_run_config,
)
from tinylm.apps.pipeline import PipelineResult, run_pipeline
from tinylm.apps.report import H100_BF16_PEAK_FLOPS, report_title, write_report
from tinylm.apps.study import Point, StudyPlan, plan_study
from tinylm.apps.study_report import write_study_report
from tinylm.apps.study_run import PointState, point_command, run_study

__all__ = [
    "H100_BF16_PEAK_FLOPS",
    "RUNS",
    "AppConfig",
    "BudgetPlan",
    "PipelineResult",
    "Point",
    "PointState",
    "StudyPlan",
    "fit_steps",
    "load_run_config",
    "main",
    "overlay",
    "plan_budget",
    "plan_study",
    "point_command",
    "report_title",
    "run_command",
    "run_config_path",
    "run_pipeline",
    "run_study",
    "save_run_config",
    "write_report",
    "write_study_report",
]
