"""The run directory: its checkpoint files, its lock, and the checks made before a run writes.

Checkpoints are exactly the names the loop writes, `step_<7+ digits>.pt`; anything else in
`checkpoints/` (`step_best.pt`, `step_0000020_backup.pt`) is the user's and is never listed,
rotated or deleted. A run holds an exclusive `flock` on `<run dir>/.lock` for its lifetime: the
kernel drops it when the process dies however it dies, so there is no stale lock to clean up,
and a second run in the same directory is refused at once instead of interleaving with the first.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against each other
    fcntl = None

__all__ = [
    "CHECKPOINT_NAME",
    "RunLock",
    "check_resume",
    "checkpoint_path",
    "checkpoint_step",
    "find_checkpoints",
    "prepare_run_dir",
    "remove_stale_temporaries",
    "resume_command",
    "resumed_step",
]

CHECKPOINT_NAME = re.compile(r"^step_(\d{7,})\.pt$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """Where the loop writes the checkpoint of `step`."""
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def checkpoint_step(path: str | Path) -> int:
    """The step in a checkpoint name the loop wrote; ValueError for any other name."""
    match = CHECKPOINT_NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{Path(path).name} is not a train-lm checkpoint name (step_NNNNNNN.pt)")
    return int(match.group(1))


def find_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's own checkpoints (exact `step_NNNNNNN.pt` names only), oldest first."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if CHECKPOINT_NAME.match(p.name) and p.is_file()]
    return sorted(found, key=checkpoint_step)


def resumed_step(run_dir: str | Path) -> int | None:
    """The step `--resume` would continue from (the newest checkpoint's name), or None."""
    found = find_checkpoints(run_dir)
    return checkpoint_step(found[-1]) if found else None


def resume_command(root: str, name: str, *extra: str) -> str:
    """The exact `train-lm` command that continues the run `<root>/<name>`: --resume reads the
    run's own config.toml, so only the directory must be named (defaults left out)."""
    args = ["train-lm"]
    if root != "runs":
        args += ["--run.root", root]
    if name != "default":
        args += ["--run.name", name]
    return shlex.join([*args, "--resume", *extra])


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete `step_*.pt.tmp` left by a process killed mid-write (call it holding the lock)."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.endswith(".pt.tmp") and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class RunLock:
    """Exclusive lock on a run directory, held from `acquire()` to `release()` (or death)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a directory (or other non-file) where the lock file belongs
            what = "a directory" if self.path.is_dir() else f"not usable ({e.strerror or e})"
            raise ValueError(
                f"lock file {self.path} is {what}; the run directory holds it to keep out a "
                "second run: remove it, or choose another --run.name"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ValueError(
                f"run directory {self.path.parent} is in use by {holder}; wait for it to end, "
                "or choose another --run.name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def check_resume(run_dir: str | Path, resume: bool, flag: str = "--run.name") -> None:
    """The one refusal rule: --resume needs a checkpoint, a fresh run needs none (existing work
    is never overwritten). `flag` is the option that picks another directory."""
    run_dir = Path(run_dir)
    existing = find_checkpoints(run_dir)
    if resume and not existing:
        raise FileNotFoundError(
            f"--resume: no checkpoint in {run_dir / 'checkpoints'} to resume from"
        )
    if not resume and existing:
        raise ValueError(
            f"{run_dir} already holds checkpoints; pass --resume to continue it, or choose "
            f"another {flag} (existing work is never overwritten)"
        )


def prepare_run_dir(run_dir: Path, resume: bool) -> RunLock:
    """Create the run directory, prove it writable, lock it, and refuse to clobber or resume
    nothing. Returns the held lock; stale checkpoint temporaries are removed under it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write_test.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(
            f"cannot write to run directory {run_dir}: {e.strerror or e}"
        ) from None
    lock = RunLock(run_dir).acquire()
    try:
        check_resume(run_dir, resume)
        remove_stale_temporaries(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock
