"""tinylm.optim: AdamW, Muon, cosine/WSD schedules, optimizer sets by parameter role, clipping.

opt, sched = OptimConfig(optimizer="muon", schedule="wsd").build(model.parameter_groups(), 5000)
# or piece by piece:
opt = build_optimizers(model.parameter_groups(), "muon", OptimizerHParams(muon_lr=0.02))
sched = LRSchedule(opt, "wsd", total_iters=5000, warmup_iters=100, decay_fraction=0.3,
                   min_lr_ratio=0.0, momentum_warmup_iters=300)
loss.backward(); norm = clip_grad_norm(model.parameters(), 1.0); opt.step(); sched.step()
"""

from tinylm.optim.adamw import AdamW
from tinylm.optim.build import OPTIMIZER_KINDS, ROLES, OptimizerHParams, build_optimizers
from tinylm.optim.clip import clip_grad_norm
from tinylm.optim.config import OptimConfig
from tinylm.optim.lr_schedule import SCHEDULE_KINDS, LRSchedule
from tinylm.optim.muon import Muon, newton_schulz
from tinylm.optim.optimizer_set import OptimizerSet
from tinylm.optim.schedule import CosineSchedule, cosine_lr, wsd_lr

__all__ = [
    "OPTIMIZER_KINDS",
    "ROLES",
    "SCHEDULE_KINDS",
    "AdamW",
    "CosineSchedule",
    "LRSchedule",
    "Muon",
    "OptimConfig",
    "OptimizerHParams",
    "OptimizerSet",
    "build_optimizers",
    "clip_grad_norm",
    "cosine_lr",
    "newton_schulz",
    "wsd_lr",
]
