"""Settings shared by every test in the workspace (pytest loads this rootdir conftest first).

Test models are tiny, and on a busy 2-core machine torch's OpenMP pool stalls on them: a 2×32 @
32×64 matmul took 13 ms with 2 threads at load 5 against 0.05 ms with one. So tests run torch on
one thread, and the train-lm/bench subprocesses they start inherit OMP_NUM_THREADS=1. Tests about
thread counts set their own (e.g. test_reliability's determinism test uses 2 threads).

Hypothesis: no per-example deadline anywhere (a loaded CI box must not fail a property test for
being slow), and under CI (`CI` set) a derandomized search, so a CI run draws the same examples
every time and cannot turn red on a new random draw; local runs keep exploring, and an edge case
they find is pinned with `@example` (as in optim's test_lr_schedule).

Both are set only where installed: bpe's own suite (`uv run --package bpe pytest packages/bpe`)
runs in an environment without torch, and must not need it.
"""

import importlib.util
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

if importlib.util.find_spec("torch") is not None:
    import torch  # after the variable, so that torch's pool starts with it

    torch.set_num_threads(1)

if importlib.util.find_spec("hypothesis") is not None:
    from hypothesis import settings

    settings.register_profile("tinylm", deadline=None, derandomize=bool(os.environ.get("CI")))
    settings.load_profile("tinylm")
