"""The static decode step: equals the full forward, one graph for all positions, compiled = eager.

Oracles: the full (uncached) forward's last position, a nanoGPT-style greedy loop that re-encodes
the cropped sequence every token, and the eager decode step for the compiled one.
"""

import dataclasses

import pytest
import torch

from tinylm.nn import ComputeConfig, ModelConfig, TransformerLM, generate
from tinylm.nn.generate import _CAN_SKIP_GUARDS, COMPILE_ENV, _want_compile

BASE = ModelConfig(vocab_size=50, context_length=12, d_model=32, num_layers=4, num_heads=4, d_ff=64)
ALL_ON = dataclasses.replace(
    BASE,
    qk_norm=True,
    ffn="relu2",
    logit_softcap=2.0,
    value_embeddings=2,
    unet_skips=True,
    zero_init_proj=True,
    parameter_free_norm=True,
    tie_embeddings=True,
)
ABLATED = dataclasses.replace(BASE, norm="post", position="none", ffn="silu")
CONFIGS = {"plain": BASE, "all-on": ALL_ON, "post-norm,nope,silu": ABLATED}
KERNELS = {
    "naive": ComputeConfig(),
    "sdpa,fused": ComputeConfig(attention="sdpa", fused_qkv=True),
}


def build(config: ModelConfig, compute: ComputeConfig | None = None) -> TransformerLM:
    """A model whose every switch matters: gains, gates, skips and zero-init branches perturbed."""
    torch.manual_seed(0)
    model = TransformerLM(config, compute).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameter_groups()["scalar"]:
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        for layer in model.layers:
            for w in (layer.attn.output_proj.weight, layer.ffn.w2.weight):
                if not w.any():
                    w.add_(0.1 * torch.randn(w.shape, generator=g))
    return model


def naive_greedy(model: TransformerLM, ids: torch.Tensor, n: int) -> torch.Tensor:
    """nanoGPT: full forward over the last context_length tokens for every new token."""
    ctx = model.config.context_length
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids[:, -ctx:])[:, -1]
            ids = torch.cat((ids, logits.argmax(-1, keepdim=True)), dim=1)
    return ids


@pytest.mark.parametrize("compute", KERNELS.values(), ids=KERNELS.keys())
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_decode_step_equals_the_last_position_of_a_full_forward(config, compute):
    model = build(config, compute)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    cache = model.new_kv_cache(2)
    with torch.no_grad():
        full = model(ids)
        model(ids[:, :4], kv_cache=cache)  # eager prefill of 4 positions
        for i in range(4, 12):  # then the fixed-shape step, up to the last cache slot
            logits = model.decode_step(ids[:, i : i + 1], cache, torch.tensor(i))
            torch.testing.assert_close(logits, full[:, i], rtol=1e-5, atol=1e-5)


def test_decode_step_ignores_whatever_lies_past_the_position():
    """Attention runs over the whole buffer; the keys/values past `position` must get weight 0
    exactly (a reused cache holds the previous call's, possibly huge, entries there)."""
    model = build(ALL_ON)
    ids = torch.randint(0, 50, (1, 7), generator=torch.Generator().manual_seed(3))
    fresh, stale = model.new_kv_cache(1), model.new_kv_cache(1)
    for layer in stale.layers:
        layer.keys.fill_(1e4)
        layer.values.normal_().mul_(1e4)
    with torch.no_grad():
        model(ids[:, :6], kv_cache=fresh)
        model(ids[:, :6], kv_cache=stale)
        expected = model.decode_step(ids[:, 6:], fresh, torch.tensor(6))
        got = model.decode_step(ids[:, 6:], stale, torch.tensor(6))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_cached_greedy_equals_uncached_and_nanogpt_through_the_sliding_window(config):
    model = build(config)
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(4))
    n = 20  # 5 + 20 > context_length 12: decode steps fill the window, then it slides
    expected = naive_greedy(model, prompt, n)
    cached = generate(model, prompt, n, temperature=0, compile=False)
    uncached = generate(model, prompt, n, temperature=0, use_kv_cache=False)
    assert torch.equal(cached, expected) and torch.equal(uncached, expected)
    long = torch.randint(0, 50, (1, 15), generator=torch.Generator().manual_seed(5))
    with pytest.warns(UserWarning, match="longer than context_length"):
        out = generate(model, long, 6, temperature=0, compile=False)
    assert torch.equal(out[:, 15:], naive_greedy(model, long[:, -12:], 6)[:, 12:])


@pytest.mark.slow  # dynamo import + one trace: ~5 s idle, ~25 s on the loaded dev box
def test_one_graph_serves_every_position():
    """No Python branch or shape depends on the position: dynamo captures the step once
    (fullgraph) and never recompiles as the position moves, value embeddings and skips on."""
    model = build(ALL_ON)
    graphs = []

    def count(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    step = torch.compile(model.decode_step_unchecked, backend=count, fullgraph=True, dynamic=False)
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(6))
    cache = model.new_kv_cache(1)
    position = torch.tensor(3)
    with torch.no_grad():
        full = model(ids)
        model(ids[:, :3], kv_cache=cache)
        for i in range(3, 12):
            logits = step(ids[:, i : i + 1], cache, position)
            torch.testing.assert_close(logits, full[:, i], rtol=1e-5, atol=1e-5)
            position += 1  # in place, as generate does: no host int anywhere
    assert len(graphs) == 1


def test_decode_step_argument_errors():
    model = build(BASE)
    cache = model.new_kv_cache(2)
    with pytest.raises(ValueError, match="position 12 is outside the cache"):
        model.decode_step(torch.zeros(2, 1, dtype=torch.long), cache, torch.tensor(12))
    with pytest.raises(ValueError, match="batch of 1 rows, but the cache was made for 2"):
        model.decode_step(torch.zeros(1, 1, dtype=torch.long), cache, torch.tensor(0))
    with pytest.raises(ValueError, match="decode_position needs a kv_cache"):
        model.layers[0].attn(torch.zeros(1, 2, 32), decode_position=torch.tensor(0))


def test_compile_switch_auto_follows_env_then_device(monkeypatch):
    want = _want_compile
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    assert (want(None, cpu), want(None, cuda)) == (False, True)
    assert (want(True, cpu), want(False, cuda)) == (True, False)
    monkeypatch.setenv(COMPILE_ENV, "1")
    assert want(None, cpu) and not want(False, cpu)
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert not want(None, cuda)


@pytest.mark.slow
@pytest.mark.parametrize("compute", KERNELS.values(), ids=KERNELS.keys())
def test_compiled_decode_gives_the_eager_tokens(compute, monkeypatch):
    """Inductor-compiled step (one compile, ~10-45 s on CPU) vs eager, all switches on, greedy
    through the window slide, then again with the kept cache reused, and alternating with a
    second model: every step after a call's first skips dynamo's guards where torch can, so a
    wrongly chosen graph would show here as different tokens."""
    skipped = []
    set_stance = torch.compiler.set_stance

    def spy(*args, **kwargs):
        skipped.append(kwargs.get("skip_guard_eval_unsafe", False))
        return set_stance(*args, **kwargs)

    monkeypatch.setattr(torch.compiler, "set_stance", spy)
    model = build(ALL_ON, compute)
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(7))
    eager = generate(model, prompt, 20, temperature=0, compile=False)
    compiled = generate(model, prompt, 20, temperature=0, compile=True)
    assert torch.equal(compiled, eager)
    assert torch.equal(generate(model, prompt, 20, temperature=0, compile=True), eager)
    other = build(ALL_ON, compute)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    other_eager = generate(other, prompt, 20, temperature=0, compile=False)
    assert not torch.equal(other_eager, eager)
    assert torch.equal(generate(other, prompt, 20, temperature=0, compile=True), other_eager)
    assert torch.equal(generate(model, prompt, 20, temperature=0, compile=True), eager)
    if _CAN_SKIP_GUARDS:
        assert skipped and all(skipped)
    else:
        assert not skipped


@pytest.mark.gpu
def test_cuda_graph_decode_gives_the_eager_tokens():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    model = TransformerLM(ALL_ON, ComputeConfig(attention="sdpa"), device="cuda").eval()
    prompt = torch.randint(0, 50, (2, 5), device="cuda")
    eager = generate(model, prompt, 20, temperature=0, compile=False)
    for _ in range(2):  # the second call replays the recorded CUDA graph on the kept cache
        assert torch.equal(generate(model, prompt, 20, temperature=0, compile=True), eager)
