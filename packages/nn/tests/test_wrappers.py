"""unwrap / strip_wrapper_prefixes: the plain model under compile and data-parallel wrappers."""

import pytest
import torch
import torch.distributed as dist

from tinylm.nn import ModelConfig, TransformerLM, generate, strip_wrapper_prefixes, unwrap

CONFIG = ModelConfig(
    vocab_size=32, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32
)


@pytest.fixture
def model() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(CONFIG)


def test_unwrap_compile_and_data_parallel_in_any_nesting(model):
    assert unwrap(model) is model
    assert unwrap(torch.compile(model)) is model  # wrapping does not compile yet: cheap
    assert unwrap(torch.nn.DataParallel(model)) is model
    assert unwrap(torch.compile(torch.nn.DataParallel(torch.compile(model)))) is model


def test_unwrap_leaves_a_model_that_merely_has_a_module_attribute():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Linear(2, 2)

    holder = Holder()
    assert unwrap(holder) is holder


def test_unwrap_distributed_data_parallel(model, tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        assert unwrap(ddp) is model and unwrap(torch.compile(ddp)) is model
    finally:
        dist.destroy_process_group()


def test_strip_wrapper_prefixes_gives_the_plain_keys(model):
    plain = model.state_dict()
    wrapped = {f"module._orig_mod.module.{k}": v for k, v in plain.items()}
    stripped = strip_wrapper_prefixes(wrapped)
    assert list(stripped) == list(plain)
    assert all(stripped[k] is plain[k] for k in plain)
    # only leading wrapper names go: a key that merely contains one keeps it
    assert strip_wrapper_prefixes({"blocks.module.w": 1}) == {"blocks.module.w": 1}
    assert list(strip_wrapper_prefixes(torch.compile(model).state_dict())) == list(plain)


def test_generate_decodes_through_the_wrappers(model):
    prompt = torch.tensor([1, 2, 3])
    want = generate(model, prompt, 4, temperature=0)
    got = generate(torch.nn.DataParallel(model), prompt, 4, temperature=0)
    assert torch.equal(got, want)
    with pytest.raises(TypeError, match="generate needs a TransformerLM"):
        generate(torch.nn.Linear(2, 2), prompt, 4, temperature=0)
