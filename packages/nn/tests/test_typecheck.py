"""jaxtyping + beartype checks on public entry points, and the TINYLM_TYPECHECK=0 switch."""

import os
import subprocess
import sys

import pytest
import torch
from jaxtyping import TypeCheckError

import tinylm.nn
from tinylm.nn import Linear, ModelConfig, TransformerLM, scaled_dot_product_attention

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
