"""tinylm.optim: AdamW, the cosine learning-rate schedule with warmup, gradient clipping.

opt = AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
sched = CosineSchedule(opt, max_lr=3e-4, min_lr=3e-5, warmup_iters=100, cosine_cycle_iters=5000)
loss.backward(); norm = clip_grad_norm(model.parameters(), 1.0); opt.step(); sched.step()
"""

from tinylm.optim.adamw import AdamW
from tinylm.optim.clip import clip_grad_norm
from tinylm.optim.schedule import CosineSchedule, cosine_lr

__all__ = ["AdamW", "CosineSchedule", "clip_grad_norm", "cosine_lr"]
