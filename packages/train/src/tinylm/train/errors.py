"""How a run fails, and how the command lines report it: one `error: ...` line and an exit status.

    ValueError, FileNotFoundError, PermissionError   bad input, found before training    exit 2
    TrainingDiverged                                  the loss stopped being finite        exit 1
    KeyboardInterrupt                                 a second Ctrl-C (the first stops     exit 130
                                                      the run cleanly, with a checkpoint)

Every CLI of the project (`train-lm`, `generate`, the apps' `tinystories`/`owt`/`leaderboard`)
runs its body through `run_cli`, so they agree on messages and statuses. Set TINYLM_DEBUG=1 to
get the traceback of a bad-input error instead of the one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["TrainingDiverged", "run_cli"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


def run_cli(
    body: Callable[[], object], *, abort_message: str = "aborted by a second interrupt"
) -> int:
    """Run a CLI's `body`: 0 when it returns, else one `error: ...` line and its status.

    `abort_message` is what a second interrupt prints after `error: ` (the CLIs word it apart).
    """
    try:
        body()
    except (ValueError, FileNotFoundError, PermissionError) as e:
        if os.environ.get("TINYLM_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {abort_message}", file=sys.stderr)
        return 130
    return 0
