"""What a person watching a run sees while it trains: a bar on a terminal, plain lines elsewhere.

    terminal (stderr is a TTY)   one tqdm bar, redrawn in place, left on screen once at the end
    redirected (a log file, CI)  one line every train.log_interval steps, like nanoGPT's
    --no-progress                neither (the eval lines and the summary remain)

    step 120/600 | loss 4.113 | lr 2.9e-03 | 14.2k tok/s | mfu 51% | eta 1m05s

A bar written to a file is a pile of carriage returns and repeated final states; a line per
interval reads and greps. The clock and the TTY test are injectable, so tests need neither.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

__all__ = ["Progress", "format_duration", "format_rate", "progress_line"]


def format_rate(value: float) -> str:
    """14234 -> '14.2k', 812 -> '812', 3.1e6 -> '3.1M'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"


def format_duration(seconds: float) -> str:
    """65 -> '1m05s', 42 -> '42s', 3720 -> '1h02m'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _percent(fraction: float) -> str:
    """0.51 -> '51%', 0.042 -> '4.2%', 0.0004 -> '0.04%' (a tiny CPU model's MFU is not 0)."""
    digits = 0 if fraction >= 0.1 else 1 if fraction >= 0.01 else 2
    return f"{fraction:.{digits}%}"


def progress_line(
    step: int, total: int, loss: float, lr: float, tokens_per_s: float, mfu: float, eta: float
) -> str:
    return (
        f"step {step}/{total} | loss {loss:.3f} | lr {lr:.1e} | {format_rate(tokens_per_s)} tok/s"
        f" | mfu {_percent(mfu)} | eta {format_duration(eta)}"
    )


class Progress:
    """The run's progress display (see the module doc); `update` once per step."""

    def __init__(
        self,
        total: int,
        initial: int,
        *,
        enabled: bool,
        log: Callable[[str], None],
        tty: bool | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        tty = sys.stderr.isatty() if tty is None else tty
        self.mode = "off" if not enabled else ("bar" if tty else "lines")
        self.total, self.initial, self.log, self.clock = total, initial, log, clock
        self.start = clock()
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(
        self,
        step: int,
        loss: float,
        lr: float,
        tokens_per_s: float,
        mfu: float,
        *,
        report: bool,
    ) -> None:
        """Advance to `step`; `report` marks a log step (the loss is the mean since the last)."""
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.3f}",
                lr=f"{lr:.2e}",
                tok_s=format_rate(tokens_per_s),
                mfu=_percent(mfu),
                refresh=False,
            )
            self.bar.update(1)
            if step >= self.total:
                # Drawn once, finished, before the last eval line: a bar closed after it is
                # redrawn below that line, and the run ends with its final state twice.
                self.close()
        elif self.mode == "lines" and report:
            done = step - self.initial
            per_step = (self.clock() - self.start) / max(done, 1)
            eta = per_step * (self.total - step)
            self.log(progress_line(step, self.total, loss, lr, tokens_per_s, mfu, eta))

    def write(self, message: str) -> None:
        """A line of the run's log (an eval result) that must not tear the bar."""
        if self.bar is not None:
            with contextlib.suppress(OSError):  # tqdm.write: plain sys.stdout, maybe gone
                self.bar.write(message)
        else:
            self.log(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
