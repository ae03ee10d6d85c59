"""Where and how a run executes: device, mixed precision, DDP process groups, signals, timers."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tinylm.train.errors import STOP_SIGNALS, RunInterrupted

__all__ = [
    "Distributed",
    "StopFlag",
    "Timer",
    "autocast_context",
    "determinism",
    "resolve_device",
    "setup_distributed",
]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average a scalar tensor over ranks (identity when single-process)."""
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on any rank (keeps ranks stepping together)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device_kind: str) -> Distributed:
    """Join the process group torchrun describes in RANK/WORLD_SIZE (nccl on CUDA, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        owns = True
    return Distributed(rank, local_rank, world_size, owns)


def device_type(name: str) -> str:
    """The device type `name` resolves to ('auto': cuda, then mps, then cpu), with no side
    effect: the process group needs it before the rank's device can be set."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return name.split(":")[0]


def resolve_device(name: str, local_rank: int = 0, option: str = "train.device") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; under torchrun each rank gets cuda:LOCAL_RANK."""
    if name == "auto":
        name = device_type(name)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option} must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{option} must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} is cuda but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} is mps but MPS is not available")
    return device


def uses_bf16(device: torch.device, dtype: str) -> bool:
    """Whether compute.dtype means bf16 autocast on this device ("auto": on CUDA only)."""
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"compute.dtype must be auto, float32 or bfloat16, got {dtype!r}")
    return dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda")


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast on CUDA by default (TF32 for what stays float32); float32 elsewhere."""
    use_bf16 = uses_bf16(device, dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if not use_bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class StopFlag:
    """SIGINT/SIGTERM/SIGHUP handling for one run, by phase (each path: one line, a defined
    status). SIGHUP (the terminal or ssh session closed) is treated like SIGTERM: a run started
    from a terminal that goes away keeps its work.

    setup      nothing to save yet: raise RunInterrupted at once (130 / 143 / 129)
    training   the first signal sets `signal`: the loop finishes the step, checkpoints, stops;
               a second one raises RunInterrupted at once, naming the last checkpoint
    finishing  after the last checkpoint: raise RunInterrupted at once, naming it
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self.signum: int | None = None
        self.pid = os.getpid()
        self.phase = "setup"
        self._last_checkpoint = lambda: None

    def training(self, last_checkpoint) -> None:
        """Enter the training phase; `last_checkpoint()` names what a hard abort leaves."""
        self.phase, self._last_checkpoint = "training", last_checkpoint

    def finishing(self) -> None:
        self.phase = "finishing"

    def __call__(self, signum, frame) -> None:
        if os.getpid() != self.pid:  # a forked worker (e.g. of the encoder pool): die normally
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        if self.phase == "setup":
            raise RunInterrupted(
                signum,
                f"interrupted by {name} during setup, before training started; nothing saved",
            )
        last = self._last_checkpoint()
        kept = f"last checkpoint {last}" if last else "no checkpoint was written yet"
        if self.phase == "finishing":
            raise RunInterrupted(signum, f"interrupted by {name} after training; {kept}")
        if self.signal is not None:
            raise RunInterrupted(
                signum, f"aborted by a second {name} before the step ended; {kept}"
            )
        self.signal, self.signum = name, signum

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@contextmanager
def determinism(device: torch.device, deterministic: bool):
    """`torch.use_deterministic_algorithms` for the run on CPU when asked, restored afterwards.

    Measured here (README, Determinism): fresh CPU runs and killed-and-resumed ones are bit-exact
    at the default thread count with it on; it makes any kernel without a deterministic CPU
    implementation warn instead of silently differing. Accelerators keep their fast kernels.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(deterministic and device.type == "cpu", warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


class Timer:
    """Accumulated wall time per named phase (data, eval, checkpoint, ...)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
