"""generate: greedy/sampling policy, the KV cache against uncached decoding, cropping, eos."""

import importlib
import math

import pytest
import torch

from tinylm.nn import ModelConfig, TransformerLM, generate, softmax
from tinylm.nn.generate import _nucleus_filter, _top_k_filter

# the module (tinylm.nn.generate, the attribute, is the function)
generate_module = importlib.import_module("tinylm.nn.generate")

CONFIG = ModelConfig(
    vocab_size=40, context_length=12, d_model=32, num_layers=2, num_heads=4, d_ff=64
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TransformerLM(CONFIG)


def fast_model(attention: str) -> TransformerLM:
    """The same model on a fast kernel path, before or after `ComputeConfig` split it off."""
    try:
        from tinylm.nn import ComputeConfig
    except ImportError:  # kernels still live in ModelConfig
        config = ModelConfig(**{**CONFIG.to_dict(), "attention": attention, "fused_qkv": True})
        return TransformerLM(config)
    return TransformerLM(CONFIG, compute=ComputeConfig(attention=attention, fused_qkv=True))


def naive_greedy(model, ids, n):
    """Oracle: nanoGPT-style loop, full forward over the cropped sequence for every token."""
    for _ in range(n):
        logits = model(ids[:, -CONFIG.context_length :])[:, -1]
        ids = torch.cat((ids, logits.argmax(-1, keepdim=True)), dim=1)
    return ids


@pytest.mark.parametrize("attention", ["naive", "sdpa"])
def test_cached_greedy_equals_uncached_past_the_context_window(model, attention):
    fast = fast_model(attention)
    fast.load_state_dict(model.state_dict())
    prompt = torch.randint(0, 40, (3, 5), generator=torch.Generator().manual_seed(1))
    n = 20  # 5 + 20 > context_length: the window slides
    with torch.no_grad():
        expected = naive_greedy(model, prompt, n)
    cached = generate(fast, prompt, n, temperature=0)
    uncached = generate(model, prompt, n, temperature=0, use_kv_cache=False)
    assert cached.shape == (3, 25)
    assert torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, expected)
    assert torch.equal(uncached, expected)


def test_seeded_sampling_is_deterministic_and_cache_independent(model):
    prompt = [[1, 2, 3], [4, 5, 6]]
    runs = [
        generate(
            model,
            prompt,
            15,
            temperature=0.9,
            top_p=0.8,
            generator=torch.Generator().manual_seed(7),
            use_kv_cache=cache,
        )
        for cache in (True, True, False)
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = generate(model, prompt, 15, temperature=0.9, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other, runs[0])


def test_tiny_top_p_is_greedy(model):
    prompt = torch.tensor([3, 1, 4, 1, 5])
    greedy = generate(model, prompt, 8, temperature=0)
    nucleus = generate(
        model, prompt, 8, temperature=1.0, top_p=1e-6, generator=torch.Generator().manual_seed(0)
    )
    assert greedy.ndim == 1 and torch.equal(greedy, nucleus)


def test_nucleus_filter_keeps_smallest_set_with_mass_at_least_p():
    probs = torch.tensor([[0.1, 0.5, 0.15, 0.25], [0.25, 0.25, 0.25, 0.25]])
    filtered = _nucleus_filter(probs, 0.7)
    # Row 0: 0.5 + 0.25 = 0.75 >= 0.7 -> keep {1, 3}; row 1: 0.75 needs three tokens.
    torch.testing.assert_close(filtered[0], torch.tensor([0.0, 0.5, 0.0, 0.25]) / 0.75)
    assert (filtered[1] > 0).sum() == 3
    torch.testing.assert_close(filtered.sum(-1), torch.ones(2))
    torch.testing.assert_close(_nucleus_filter(probs, 0.5)[0], torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_sampling_frequencies_follow_temperature_softmax(model):
    """Many one-token samples of the same prompt match softmax(logits / T)."""
    prompt = torch.tensor([[7, 8, 9]]).repeat(4000, 1)
    out = generate(model, prompt, 1, temperature=2.0, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(out[:, -1], minlength=40).float() / 4000
    with torch.no_grad():
        expected = softmax(model(prompt[:1])[0, -1] / 2.0, dim=-1)
    assert (counts - expected).abs().max() < 0.03


def test_stops_at_eos_and_pads_finished_rows(model):
    prompt = torch.tensor([[1, 2], [3, 4]])
    greedy = generate(model, prompt, 10, temperature=0)
    eos = int(greedy[0, 2])  # the first token row 0 emits
    out = generate(model, prompt, 10, temperature=0, eos_id=eos)
    assert out[0, 2] == eos and (out[0, 2:] == eos).all()
    single = generate(model, prompt[0], 10, temperature=0, eos_id=eos)
    assert single.tolist() == [1, 2, eos]


def test_long_prompt_is_cropped_with_a_warning(model):
    prompt = torch.randint(0, 40, (1, 30), generator=torch.Generator().manual_seed(2))
    with pytest.warns(UserWarning, match="longer than context_length=12") as caught:
        out = generate(model, prompt, 4, temperature=0)
    # It points at this call, not into the type-checking decorator around generate (jaxtyping).
    assert [w.filename for w in caught] == [__file__]
    assert torch.equal(out[:, :30], prompt)
    assert torch.equal(out[:, 30:], generate(model, prompt[:, -12:], 4, temperature=0)[:, 12:])


def test_restores_training_flag_and_needs_no_grad(model):
    model.train()
    out = generate(model, [1, 2], 3, temperature=0)
    assert model.training and not out.requires_grad
    assert not out.is_inference()  # usable as input to a later training forward
    model.eval()
    generate(model, [1, 2], 3, temperature=0)
    assert not model.training
    graphs = []  # a recording backend: generate must decode with the plain module underneath

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(model, backend=record)
    compiled.train()
    assert torch.equal(generate(compiled, [1, 2], 3, temperature=0), out)
    assert graphs == [] and compiled.training and model.training
    model.eval()


def test_argument_errors(model):
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [1], 3, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, [1], 3, top_p=0)
    with pytest.raises(ValueError, match="empty"):
        generate(model, [], 3)
    with pytest.raises(ValueError, match="token id 40"):
        generate(model, [1, 40], 3)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, [1], 3, top_k=0)
    assert generate(model, [1, 2], 0).tolist() == [1, 2]


def test_top_k_filter_keeps_the_k_largest_and_ties():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 2.5], [1.0, 1.0, 1.0, 0.0, 5.0]])
    out = _top_k_filter(logits, 2)
    inf = float("-inf")
    assert out[0].tolist() == [inf, 3.0, inf, inf, 2.5]
    assert out[1].tolist() == [1.0, 1.0, 1.0, inf, 5.0]  # the 2nd largest (1.0) is tied 3 ways
    assert torch.equal(_top_k_filter(logits, 5), logits)


def test_top_k_sampling_frequencies_follow_the_renormalised_top_k(model):
    """Oracle: p_i ∝ exp(z_i / T) for the k largest z_i, 0 elsewhere."""
    prompt = torch.tensor([[7, 8, 9]]).repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    out = generate(model, prompt, 1, temperature=2.0, top_k=5, generator=gen)
    counts = torch.bincount(out[:, -1], minlength=40).float() / 4000
    with torch.no_grad():
        z = model(prompt[:1])[0, -1] / 2.0
    top = z.topk(5).indices
    expected = torch.zeros(40)
    expected[top] = torch.exp(z[top] - z[top].max()) / torch.exp(z[top] - z[top].max()).sum()
    assert set(counts.nonzero().flatten().tolist()) <= set(top.tolist())
    assert (counts - expected).abs().max() < 0.03


def test_top_k_one_is_greedy_and_combines_with_top_p(model):
    prompt = torch.tensor([3, 1, 4])
    greedy = generate(model, prompt, 8, temperature=0)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(generate(model, prompt, 8, temperature=1.5, top_k=1, generator=gen), greedy)
    both = generate(model, prompt, 8, temperature=1.0, top_k=3, top_p=1e-6, generator=gen)
    assert torch.equal(both, greedy)


def test_all_finished_stop_is_exact_although_checked_every_few_tokens(model):
    """The host reads the all-finished flag every EOS_CHECK_EVERY tokens; the output must still
    end at the step where the last row emitted eos, for every position of that step."""
    prompt = torch.tensor([[5, 6], [5, 6]])  # identical rows finish together
    new = generate(model, prompt, 40, temperature=0)[0, 2:].tolist()
    for eos in set(new):
        first = new.index(eos)
        out = generate(model, prompt, 40, temperature=0, eos_id=eos)
        assert out.shape == (2, 2 + first + 1), (eos, first)
        assert out[:, 2:].tolist() == [new[: first + 1]] * 2


def test_output_grows_past_its_first_allocation(model, monkeypatch):
    """The output buffer starts small and doubles: tokens across every growth (and the window
    slide, and eos padding of a finished row) are those of the nanoGPT-style oracle."""
    monkeypatch.setattr(generate_module, "INITIAL_ROOM", 4)  # room 12 (context), 24, 48, 50
    prompt = torch.randint(0, 40, (3, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = naive_greedy(model, prompt, 50)
    assert torch.equal(generate(model, prompt, 50, temperature=0), expected)
    assert torch.equal(generate(model, prompt, 50, temperature=0, use_kv_cache=False), expected)
    eos = int(expected[0, 5 + 30])  # row 0's token at step 30, past two growths
    out = generate(model, prompt, 50, temperature=0, eos_id=eos)
    first = expected[0, 5:].tolist().index(eos)
    assert out[0, 5 + first :].eq(eos).all()
    assert torch.equal(out[0, : 5 + first + 1], expected[0, : 5 + first + 1])


def _largest_request(args, kwargs) -> int:
    size = kwargs.get("size", args)
    if len(size) == 1 and isinstance(size[0], tuple | list | torch.Size):
        size = size[0]
    dims = [d for d in size if isinstance(d, int)]
    return math.prod(dims) if dims else 0


def test_huge_max_new_tokens_allocates_in_proportion_to_what_is_generated(model, monkeypatch):
    """max_new_tokens=10**9 allocated 8 GB of output (+1 GB of flags) before the first token;
    now memory follows the tokens produced. Every tensor allocation generate makes is checked
    before it happens (the spy refuses a big one, so the old code fails without allocating)."""
    prompt = torch.tensor([1, 2, 3])
    eos = int(generate(model, prompt, 1, temperature=0)[-1])  # the first token greedy emits
    limit = 100_000
    for name in ("empty", "zeros", "ones", "full"):
        real = getattr(torch, name)

        def spy(*args, _real=real, **kwargs):
            assert _largest_request(args, kwargs) <= limit, (args, kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch, name, spy)
    for name in ("new_empty", "new_zeros"):
        real = getattr(torch.Tensor, name)

        def method_spy(self, *args, _real=real, **kwargs):
            assert _largest_request(args, kwargs) <= limit, (args, kwargs)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, method_spy)
    out = generate(model, prompt, 10**9, temperature=0, eos_id=eos)
    assert out.tolist() == [1, 2, 3, eos]
    monkeypatch.undo()
    out = generate(model, prompt, 2**62, temperature=0, eos_id=eos)  # bytes would overflow int64
    assert out.tolist() == [1, 2, 3, eos]
