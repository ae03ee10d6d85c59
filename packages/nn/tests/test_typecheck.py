"""jaxtyping + beartype checks on public entry points, and the TINYLM_TYPECHECK=0 switch."""

import os
import subprocess
import sys

import pytest
import torch
from jaxtyping import TypeCheckError
from torch.overrides import TorchFunctionMode

import tinylm.nn
from tinylm.nn import (
    CausalSelfAttention,
    Linear,
    ModelConfig,
    RMSNorm,
    TransformerLM,
    cross_entropy,
    scaled_dot_product_attention,
)
from tinylm.nn.loss import linear_cross_entropy
from tinylm.nn.typecheck import STRICT, value_checks_enabled

checks_on = pytest.mark.skipif(not tinylm.nn.TYPECHECK, reason="TINYLM_TYPECHECK=0 in env")


@checks_on
def test_wrong_dtype_is_rejected_naming_the_argument():
    model = TransformerLM(ModelConfig(10, 8, 16, 1, 2, 32))
    with pytest.raises(TypeCheckError, match="token_ids"):
        model(torch.zeros(1, 4))  # float ids
    with pytest.raises(TypeCheckError, match="x"):
        Linear(4, 4)(torch.zeros(2, 4, dtype=torch.long))


@checks_on
def test_inconsistent_dimensions_are_rejected():
    Q, K, V = torch.randn(2, 3, 8), torch.randn(2, 5, 4), torch.randn(2, 5, 8)
    with pytest.raises(TypeCheckError, match="d_k"):
        scaled_dot_product_attention(Q, K, V)


def test_env_switch_turns_checks_off():
    code = (
        "import torch, tinylm.nn as nn\n"
        "assert nn.TYPECHECK is False\n"
        "try:\n"
        "    q, k, v = torch.randn(3, 8), torch.randn(5, 4), torch.randn(5, 8)\n"
        "    nn.scaled_dot_product_attention(q, k, v)\n"
        "except RuntimeError:\n"  # torch's own matmul error, not a TypeCheckError
        "    print('unchecked')\n"
    )
    env = {**os.environ, "TINYLM_TYPECHECK": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unchecked"


# --- host syncs: which checks read tensor data (see the table in tinylm.nn.typecheck) ----------

# Tensor methods that copy device data to the host, i.e. block on an accelerator.
SYNCING = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy", "nonzero"}


class SyncRecorder(TorchFunctionMode):
    """Records every syncing tensor method called while active (a CPU stand-in for
    torch.cuda.set_sync_debug_mode, which only exists on CUDA)."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            self.syncs.append(name)
        return func(*args, **(kwargs or {}))


def test_recorder_sees_a_sync():
    with SyncRecorder() as rec:
        int(torch.arange(3).max())
    assert rec.syncs == ["__int__"]


@checks_on
def test_shape_and_dtype_checks_never_read_tensor_data():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 2)  # no RoPE: its position check is a value check
    norm, linear = RMSNorm(16), Linear(16, 16)  # (init itself reads values: trunc_normal_)
    x = torch.randn(2, 5, 16)
    with SyncRecorder() as rec:
        scaled_dot_product_attention(x, x, x)
        norm(linear(x))
        attn(x)
    assert rec.syncs == []


@checks_on
def test_loss_value_checks_run_on_cpu_and_skip_off_cpu():
    # Meta tensors stand in for accelerator tensors: any data read on them would raise.
    for device, expected in (("cpu", 2), ("meta", 0)):
        hidden = torch.randn(2, 3, 8, device=device, requires_grad=True)
        weight = torch.randn(11, 8, device=device, requires_grad=True)
        targets = torch.zeros(2, 3, dtype=torch.long, device=device)
        with SyncRecorder() as rec:
            cross_entropy(hidden @ weight.t(), targets)
        assert rec.syncs.count("__int__") == expected, device
        with SyncRecorder() as rec:
            linear_cross_entropy(hidden, weight, targets, chunk_size=4)
        assert rec.syncs.count("__int__") == expected, device


@checks_on
def test_value_checks_policy():
    cpu, meta = torch.zeros(1), torch.zeros(1, device="meta")
    assert value_checks_enabled(cpu) and value_checks_enabled()
    assert value_checks_enabled(meta) is STRICT
    assert value_checks_enabled(meta, boundary=True)


def test_strict_level_checks_accelerator_tensors_too():
    code = (
        "import torch, tinylm.nn.typecheck as t\n"
        "assert t.TYPECHECK and t.STRICT\n"
        "assert t.value_checks_enabled(torch.zeros(1, device='meta'))\n"
    )
    env = {**os.environ, "TINYLM_TYPECHECK": "strict"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@checks_on
def test_training_hot_path_does_not_sync_off_cpu():
    config = ModelConfig(50, 16, 32, 2, 2, 64)
    model = TransformerLM(config, device="meta")
    ids = torch.zeros(2, 16, dtype=torch.long, device="meta")
    with SyncRecorder() as rec:
        loss = cross_entropy(model(ids), ids)
        loss.backward()
    assert rec.syncs == []
