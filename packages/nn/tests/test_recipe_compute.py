"""The recipe switches under every compute kernel, and ComputeConfig / ModelConfig validation."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from packages.nn.tests.recipe_cases import (
    ALL_ON,
    BASE,
    KERNELS,
    build,
    ids_and_targets,
    perturb_scalars,
)
from tinylm.nn import (
    ATTENTION_KERNELS,
    LOSS_KERNELS,
    ComputeConfig,
    ModelConfig,
    TransformerLM,
    cross_entropy,
    generate,
    split_compute_keys,
)

# --------------------------------------------------------------------- compute and kernels


def test_every_kernel_gives_the_same_function_with_all_switches_on():
    reference = build(ALL_ON)
    perturb_scalars(reference)
    ids, targets = ids_and_targets()
    expected = reference(ids)
    reference(ids, targets=targets).backward()
    for compute in KERNELS[1:]:
        fast = build(ALL_ON, compute)
        fast.load_state_dict(reference.state_dict())
        torch.testing.assert_close(fast(ids), expected, rtol=1e-4, atol=1e-5)
        fast(ids, targets=targets).backward()
        for (name, p), q in zip(fast.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)
        with torch.no_grad():  # no-grad path of fused_qkv (cached stacked weight)
            torch.testing.assert_close(fast(ids), expected, rtol=1e-4, atol=1e-5)
    # set_compute swaps kernels in place; an in-place weight update refreshes the fused cache.
    model = build(ALL_ON)
    model.load_state_dict(reference.state_dict())
    model.set_compute(ComputeConfig(attention="sdpa", fused_qkv=True))
    assert model.compute.fused_qkv
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected, rtol=1e-4, atol=1e-5)
        for m in (model, reference):
            m.layers[0].attn.v_proj.weight.mul_(2.0)
        torch.testing.assert_close(model(ids), reference(ids), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "compute",
    KERNELS,
    ids=lambda c: f"{c.attention},fused={c.fused_qkv},{c.pointwise},{c.loss}",
)
def test_cached_greedy_generation_equals_uncached_with_all_switches_on(compute):
    model = build(ALL_ON, compute)
    perturb_scalars(model)
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(3))
    n = 20  # 5 + 20 > context_length: the window slides
    cached = generate(model, prompt, n, temperature=0)
    uncached = generate(model, prompt, n, temperature=0, use_kv_cache=False)
    assert cached.shape == (2, 25)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("config", [BASE, ALL_ON], ids=["plain", "all-on"])
def test_forward_with_targets_is_the_mean_cross_entropy_of_the_logits(config):
    model = build(config)
    perturb_scalars(model)
    ids, targets = ids_and_targets()
    loss = model(ids, targets=targets)
    logits = model(ids)
    assert loss.shape == () and loss.dtype == torch.float32
    assert torch.equal(loss, cross_entropy(logits, targets))  # "full" is exactly this
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(loss, expected)
    assert set(LOSS_KERNELS) == {"full", "fused", "chunked", "fused_linear"}
    assert set(ATTENTION_KERNELS) == {"naive", "sdpa"}


@pytest.mark.parametrize("kernel", ["chunked", "fused_linear"])
@pytest.mark.parametrize("config", [BASE, ALL_ON], ids=["plain", "all-on"])
def test_chunked_loss_kernel_equals_full_in_value_and_gradient(config, kernel):
    full = build(config)
    perturb_scalars(full)
    chunked = build(config, ComputeConfig(loss=kernel))
    chunked.load_state_dict(full.state_dict())
    ids, targets = ids_and_targets()
    loss_full, loss_chunked = full(ids, targets=targets), chunked(ids, targets=targets)
    torch.testing.assert_close(loss_chunked, loss_full, rtol=1e-5, atol=1e-6)
    loss_full.backward()
    loss_chunked.backward()
    grads = dict(chunked.named_parameters())
    for name, p in full.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("attention", ["naive", "sdpa"])
def test_bf16_autocast_with_all_switches_on_is_finite_and_close(attention):
    model = build(ALL_ON, ComputeConfig(attention=attention, fused_qkv=True))
    perturb_scalars(model)
    ids, targets = ids_and_targets()
    loss32 = model(ids, targets=targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, targets=targets)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, loss32, rtol=3e-2, atol=3e-2)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["sdpa", "naive"])  # naive: the blocked, torch-softmax one
def test_training_step_with_all_switches_compiles_fullgraph_and_matches_eager(attention):
    eager = build(ALL_ON)
    perturb_scalars(eager)
    fast = ComputeConfig(attention=attention, fused_qkv=True, pointwise="torch", loss="fused")
    model = build(ALL_ON, fast)
    model.load_state_dict(eager.state_dict())
    compiled = torch.compile(model, fullgraph=True)  # any graph break raises
    ids, targets = ids_and_targets()
    loss = compiled(ids, targets=targets)
    loss.backward()
    eager_loss = eager(ids, targets=targets)
    eager_loss.backward()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)


# ------------------------------------------------------------------------------- configs


def test_compute_config_round_trips_and_names_bad_keys():
    compute = ComputeConfig(attention="sdpa", fused_qkv=True, loss="chunked", pointwise="torch")
    assert ComputeConfig.from_dict(compute.to_dict()) == compute
    assert ComputeConfig.from_json(compute.to_json()) == compute
    assert json.loads(ComputeConfig().to_json()) == {
        "attention": "naive",
        "fused_qkv": False,
        "loss": "full",
        "pointwise": "naive",
    }
    with pytest.raises(ValueError, match="unknown ComputeConfig key 'atention'; did you mean"):
        ComputeConfig.from_dict({"atention": "sdpa"})
    # torch.compile and the autocast dtype are the run's (train's [compute]), not a kernel choice
    for run_key in ("compile", "dtype"):
        with pytest.raises(ValueError, match=f"unknown ComputeConfig key '{run_key}'"):
            ComputeConfig.from_dict({run_key: True})
    with pytest.raises(ValueError, match="attention must be one of"):
        ComputeConfig(attention="flash")
    with pytest.raises(ValueError, match="pointwise must be one of"):
        ComputeConfig(pointwise="triton")
    with pytest.raises(ValueError, match="fused_qkv must be a bool"):
        ComputeConfig(fused_qkv=1)
    with pytest.raises(TypeError, match="compute must be a ComputeConfig"):
        TransformerLM(BASE, "cpu")


def test_model_config_refuses_kernel_keys_and_old_dicts_split_cleanly():
    old = {**BASE.to_dict(), "attention": "sdpa", "fused_qkv": True}
    with pytest.raises(ValueError, match=r"'attention' moved to ComputeConfig.*\[compute\]"):
        ModelConfig.from_dict(old)
    model_dict, compute_dict = split_compute_keys(old)
    assert ModelConfig.from_dict(model_dict) == BASE
    assert ComputeConfig.from_dict(compute_dict) == ComputeConfig(attention="sdpa", fused_qkv=True)
    assert ModelConfig.from_json(ALL_ON.to_json()) == ALL_ON


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"qk_norm": 1}, "qk_norm must be a bool"),
        ({"logit_softcap": -1.0}, "logit_softcap must be a number >= 0"),
        ({"value_embeddings": -1}, "value_embeddings must be an int >= 0"),
        ({"unet_skips": "yes"}, "unet_skips must be a bool"),
        ({"ffn": "gelu"}, "ffn must be one of"),
    ],
)
def test_recipe_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(BASE, **changes)
