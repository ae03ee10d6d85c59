"""torch.compile: the training step compiles as one graph (CPU, inductor); GPU fast path."""

import pytest
import torch

from tinylm.nn import ComputeConfig, ModelConfig, TransformerLM, cross_entropy

CONFIG = ModelConfig(
    vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64
)


@pytest.mark.slow
def test_training_step_compiles_fullgraph_and_matches_eager():
    """One compile for the suite (~30 s on CPU): forward + loss + backward, no graph breaks."""
    torch.manual_seed(0)
    eager = TransformerLM(CONFIG)
    model = TransformerLM(CONFIG)
    model.load_state_dict(eager.state_dict())
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: any graph break raises
    ids = torch.randint(0, 64, (2, 16))
    targets = torch.randint(0, 64, (2, 16))

    loss = cross_entropy(compiled(ids), targets)
    loss.backward()
    eager_loss = cross_entropy(eager(ids), targets)
    eager_loss.backward()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)

    # A compiled model's state dict ('_orig_mod.' keys) loads strictly into a plain model.
    state = compiled.state_dict()
    assert all(key.startswith("_orig_mod.") for key in state)
    plain = TransformerLM(CONFIG)
    plain.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(plain(ids), eager(ids))


@pytest.mark.gpu
def test_cuda_bf16_compiled_fast_path_matches_plain_model():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    plain = TransformerLM(CONFIG, device="cuda")
    fast = TransformerLM(CONFIG, ComputeConfig(attention="sdpa", fused_qkv=True), device="cuda")
    fast.load_state_dict(plain.state_dict())
    compiled = torch.compile(fast)
    ids = torch.randint(0, 64, (4, 16), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = cross_entropy(compiled(ids), ids)
    loss.backward()
    reference = cross_entropy(plain(ids), ids)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, reference, rtol=3e-2, atol=3e-2)
