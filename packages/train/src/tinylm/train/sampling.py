"""Text in, text out: prompt a trained model through its tokenizer (train-lm and generate)."""

from __future__ import annotations

from pathlib import Path

import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import generate
from tinylm.train.config import SampleConfig
from tinylm.train.files import atomic_write

__all__ = ["sample_text", "write_sample"]


def sample_text(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    *,
    temperature: float = 0.8,
    top_p: float = 0.95,
    top_k: int = 0,
    seed: int = 0,
    stop_at_eos: bool = True,
    eos_token: str = "<|endoftext|>",
    compile: bool | None = None,
) -> str:
    """Prompt + continuation as text. Deterministic for a given seed on a given device.

    `top_k` > 0 keeps the k most likely tokens (before `top_p`); 0 = off. `compile` goes to
    `tinylm.nn.generate` (None = its auto rule); compiled and eager steps give the same tokens.
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    device = next(model.parameters()).device
    prompt_ids = tokenizer.encode(prompt) if prompt else []
    eos_ids = tokenizer.encode(eos_token) if stop_at_eos else []
    eos_id = eos_ids[0] if len(eos_ids) == 1 else None
    if not prompt_ids:  # condition on a document boundary when there is no prompt
        if eos_id is None:
            raise ValueError("an empty prompt needs an end-of-text special token to start from")
        prompt_ids = [eos_id]
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generate(
        model,
        torch.tensor(prompt_ids, dtype=torch.long, device=device),
        max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_id=eos_id,
        generator=generator,
        top_k=top_k or None,  # generate's "off" is None
        compile=compile,
    )
    ids = out.tolist()
    if not prompt:
        ids = ids[1:]
    if eos_id is not None and ids and ids[-1] == eos_id:
        ids = ids[:-1]
    return tokenizer.decode(ids)


def write_sample(
    path: Path, model: torch.nn.Module, tokenizer: Tokenizer, cfg: SampleConfig
) -> str:
    """The end-of-run sample `cfg` asks for, written atomically to `path`; returns its text."""
    sample = sample_text(
        model,
        tokenizer,
        cfg.prompt,
        cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        seed=cfg.seed,
    )
    atomic_write(path, sample + "\n")
    return sample
