"""How a run fails, and how the command lines report it: one `error: ...` line and an exit status.

    status  raised as                                   meaning
    0       (returns)                                   done
    2       ValueError, FileNotFoundError,              bad input or config, found before any
            PermissionError                             work could be lost
    1       RunFailed (TrainingDiverged, I/O errors),   the run failed; the line names the cause
            any other exception                         and the last good checkpoint
    130     RunInterrupted(SIGINT), KeyboardInterrupt   interrupted (after saving, if training ran)
    143     RunInterrupted(SIGTERM)
    129     RunInterrupted(SIGHUP)                      the terminal closed: handled like SIGTERM

Every CLI of the project (`train-lm`, `generate`, the apps' `tinystories`/`owt`/`leaderboard`)
runs its body through `run_cli`, so they agree on messages and statuses. A traceback is printed
only with TINYLM_DEBUG=1 (then the exception propagates). Messages are stripped of terminal
escape sequences, so a message quoting a library's coloured text stays one plain line.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "STOP_SIGNALS",
    "RunFailed",
    "RunInterrupted",
    "TrainingDiverged",
    "exit_status",
    "one_line",
    "run_cli",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# The signals that stop a run with a checkpoint: Ctrl-C, kill/schedulers, a closed terminal or
# ssh session (SIGHUP, whose default action would kill the run with nothing saved or said).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


class RunFailed(RuntimeError):
    """The run failed after it started (I/O error, divergence): exit status 1."""


class TrainingDiverged(RunFailed):
    """The loss became NaN/inf or blew up; the run stopped without writing a checkpoint."""


class RunInterrupted(Exception):
    """A signal ended the command; status 128 + signal number (130 SIGINT, 143 SIGTERM,
    129 SIGHUP)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def status(self) -> int:
        return 128 + self.signum


def one_line(text: object) -> str:
    """First non-empty line of `text`, without terminal escape sequences."""
    clean = _ANSI.sub("", str(text))
    lines = [line.strip() for line in clean.splitlines() if line.strip()]
    return lines[0] if lines else ""


def exit_status(error: BaseException) -> int:
    """The exit status `run_cli` gives for `error` (see the table in the module doc)."""
    if isinstance(error, RunInterrupted):
        return error.status
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if isinstance(error, ValueError | FileNotFoundError | PermissionError):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


@contextmanager
def _signals_raise():
    """Until the training loop installs its own handler: SIGINT/SIGTERM/SIGHUP end the command
    with RunInterrupted (one line, 130/143/129) instead of a bare -15 or a KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:  # a forked worker: die the default way
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        raise RunInterrupted(signum, f"interrupted by {name}")

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _say(line: str) -> None:
    """The one error line; a closed terminal (SIGHUP) must not turn the status into 1."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


@contextmanager
def _one_line_warnings():
    """Warnings as one `warning: ...` line on stderr, never a file:line pointer into a library
    (e.g. a prompt longer than the context, warned about inside jaxtyping-checked code)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        _say(f"warning: {one_line(message)}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run_cli(body: Callable[[], object], *, abort_message: str = "interrupted") -> int:
    """Run a CLI's `body`: its int return value (or 0), else one `error: ...` line and a status.

    `abort_message` is printed after `error: ` for a bare KeyboardInterrupt.
    """
    debug = bool(os.environ.get("TINYLM_DEBUG"))
    try:
        with _signals_raise(), _one_line_warnings():
            result = body()
    except KeyboardInterrupt:
        _say(f"error: {abort_message}")
        return exit_status(KeyboardInterrupt())
    except Exception as e:
        if debug:
            raise
        message = one_line(e) or type(e).__name__
        known = (RunFailed, RunInterrupted, ValueError, FileNotFoundError, PermissionError)
        if not isinstance(e, known):
            # Not anticipated: name the type, and how to see where it came from.
            message = f"{type(e).__name__}: {message} (TINYLM_DEBUG=1 shows the traceback)"
        _say(f"error: {message}")
        return exit_status(e)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
