"""Model configuration, parameter counts and FLOPs per token.

`ModelConfig` is the single description of a `TransformerLM`: a frozen dataclass that round-trips
through plain dicts and JSON, validated on construction so a bad value fails at once with one line.
`model_stats(config)` counts parameters and matmul FLOPs; the training loop uses it for MFU.
"""

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

NORMS = ("pre", "post", "none")
POSITIONS = ("rope", "none")
FFNS = ("swiglu", "silu")
ATTENTIONS = ("naive", "sdpa")


@dataclass(frozen=True)
class ModelConfig:
    """Shape and ablation switches of a `TransformerLM`.

    `d_ff` is the literal hidden width of whichever feed-forward is chosen; `default_d_ff` gives
    the usual sizes (SwiGLU ≈ 8/3·d_model rounded to a multiple of 64, SiLU 4·d_model) and
    `with_ffn` switches the FFN while keeping the parameter count.

    Fast-path switches (`attention`, `fused_qkv`) default to the plain from-scratch path and change
    only how the same function is computed, never the weights or the state-dict keys.
    """

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    rope_theta: float = 10000.0
    norm: Literal["pre", "post", "none"] = "pre"
    position: Literal["rope", "none"] = "rope"
    ffn: Literal["swiglu", "silu"] = "swiglu"
    tie_embeddings: bool = False
    # Fast path: "sdpa" calls torch's fused scaled_dot_product_attention kernel.
    attention: Literal["naive", "sdpa"] = "naive"
    # Fast path: one matmul for Q, K and V by concatenating the three weights at compute time.
    fused_qkv: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, int | float):
            raise ValueError(f"ModelConfig.rope_theta must be a number, got {self.rope_theta!r}")
        if self.rope_theta <= 0:
            raise ValueError(f"ModelConfig.rope_theta must be > 0, got {self.rope_theta!r}")
        object.__setattr__(self, "rope_theta", float(self.rope_theta))  # JSON may give an int
        for name, allowed in (
            ("norm", NORMS),
            ("position", POSITIONS),
            ("ffn", FFNS),
            ("attention", ATTENTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        for name in ("tie_embeddings", "fused_qkv"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.position == "rope" and self.head_dim % 2 != 0:
            raise ValueError(f"RoPE needs an even head dim d_model/num_heads, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def with_ffn(self, ffn: str) -> "ModelConfig":
        """Switch the FFN kind, rescaling d_ff so the parameter count stays (about) the same.

        SwiGLU has three d_model×d_ff matrices and the SiLU FFN two, so d_ff scales by 3/2.
        """
        if ffn == self.ffn:
            return self
        if ffn not in FFNS:
            raise ValueError(f"ffn must be one of {FFNS}, got {ffn!r}")
        d_ff = round(self.d_ff * 3 / 2) if ffn == "silu" else round(self.d_ff * 2 / 3)
        return dataclasses.replace(self, ffn=ffn, d_ff=d_ff)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a dict; unknown keys fail with the closest valid name suggested."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown ModelConfig key {key!r}{hint}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.name not in d
        ]
        if required:
            raise ValueError(f"ModelConfig is missing required key(s): {', '.join(required)}")
        return cls(**d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, source: "str | os.PathLike[str]") -> "ModelConfig":
        """Parse JSON text, or read a JSON file (a `Path`, or a `str` not starting with '{')."""
        is_text = isinstance(source, str) and source.lstrip().startswith("{")
        text = source if is_text else Path(source).read_text()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"ModelConfig JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)


def default_d_ff(d_model: int, ffn: str = "swiglu") -> int:
    """Usual FFN width: SwiGLU 8/3·d_model rounded to a multiple of 64; SiLU 4·d_model."""
    if ffn == "silu":
        return 4 * d_model
    if ffn != "swiglu":
        raise ValueError(f"ffn must be one of {FFNS}, got {ffn!r}")
    return max(64, 64 * round(8 * d_model / 3 / 64))


@dataclass(frozen=True)
class ModelStats:
    """Parameter counts and matmul FLOPs per token of a `ModelConfig`."""

    params: int
    non_embedding_params: int
    forward_flops_per_token: int
    train_flops_per_token: int


def model_stats(config: ModelConfig) -> ModelStats:
    """Count parameters and FLOPs per token.

    - `params`: every parameter once (a tied embedding/lm_head matrix counts once).
    - `non_embedding_params`: `params` minus the input embedding table (vocab_size·d_model);
      an untied lm_head is compute, so it stays in.
    - FLOPs count matmuls only, 2·m·n·k, with the attention score (QKᵀ) and value (AV) matmuls
      taken at the full context length; training = 3× forward (backward costs two forwards).
    """
    d, d_ff, v, t = config.d_model, config.d_ff, config.vocab_size, config.context_length
    ffn_mats = 3 if config.ffn == "swiglu" else 2
    norms_per_layer = 0 if config.norm == "none" else 2
    per_layer = 4 * d * d + ffn_mats * d * d_ff + norms_per_layer * d
    embedding = v * d
    params = embedding + config.num_layers * per_layer
    params += 0 if config.norm == "none" else d  # ln_final
    params += 0 if config.tie_embeddings else v * d  # lm_head

    flops_per_layer = 2 * (4 * d * d) + 2 * (ffn_mats * d * d_ff) + 2 * (2 * t * d)
    forward = config.num_layers * flops_per_layer + 2 * d * v
    return ModelStats(
        params=params,
        non_embedding_params=params - embedding,
        forward_flops_per_token=forward,
        train_flops_per_token=3 * forward,
    )
