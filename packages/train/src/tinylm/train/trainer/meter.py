"""What the loop measures between two reports: the mean train loss and the throughput.

The loss stays on the device and is summed there; `LossMean.read` is the one host sync of an
interval (averaged over DDP ranks). Throughput is host arithmetic on tokens and seconds; MFU is
tokens/s × train FLOPs per token over the peak of all devices (see flops.py), so it costs no sync.
"""

from __future__ import annotations

import torch

from tinylm.train.runtime import Distributed

__all__ = ["LossMean", "Throughput", "momentum_record"]


class LossMean:
    """The running mean of the step losses since the last report, kept on the device."""

    def __init__(self, device: torch.device) -> None:
        self.total, self.count = torch.zeros((), device=device), 0

    def add(self, step_loss: torch.Tensor) -> None:
        self.total += step_loss
        self.count += 1

    def read(self, dist: Distributed) -> float:
        """The mean over the steps and the ranks (a host sync; the sum keeps running)."""
        return dist.mean(self.total).item() / self.count

    def reset(self) -> None:
        self.total.zero_()
        self.count = 0


class Throughput:
    """Tokens per second and MFU over the steps since the last report."""

    def __init__(self, flops_per_token: float, peak_total: float) -> None:
        """`peak_total`: the peak FLOP/s of one device times the number of processes."""
        self.flops_per_token, self.peak_total = flops_per_token, peak_total
        self.tokens, self.seconds = 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def mfu(self) -> float:
        return self.tokens_per_s * self.flops_per_token / self.peak_total

    def record(self) -> dict[str, float]:
        """The metrics.jsonl fields, rounded as the log keeps them."""
        flops_per_s = self.tokens_per_s * self.flops_per_token
        return {
            "tokens_per_s": round(self.tokens_per_s, 1),
            "flops_per_s": float(f"{flops_per_s:.4g}"),
            "mfu": round(flops_per_s / self.peak_total, 5),
        }

    def reset(self) -> None:
        self.tokens, self.seconds = 0, 0.0


def momentum_record(optimizer) -> dict[str, float]:
    """{"momentum": Muon's current momentum} when the set has a Muon group (momentum warmup)."""
    for group in optimizer.param_groups:
        if "momentum" in group:
            return {"momentum": group["momentum"]}
    return {}
