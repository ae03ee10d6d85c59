"""The run directory: its checkpoint files, and the checks made before a run writes anything."""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_checkpoints", "prepare_run_dir"]


def find_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first (by step number in the name)."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(directory.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Create the run directory, prove it writable, and refuse to clobber or resume nothing."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(
            f"cannot write to run directory {run_dir}: {e.strerror or e}"
        ) from None
    existing = find_checkpoints(run_dir)
    if resume and not existing:
        raise FileNotFoundError(
            f"--resume: no checkpoint in {run_dir / 'checkpoints'} to resume from"
        )
    if not resume and existing:
        raise ValueError(
            f"{run_dir} already holds checkpoints; pass --resume to continue it, or choose another "
            "--run.name (existing work is never overwritten)"
        )
