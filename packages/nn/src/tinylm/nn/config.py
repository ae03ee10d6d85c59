"""Model configuration: the architecture of a `TransformerLM`, and nothing about kernels.

`ModelConfig` is the single description of a `TransformerLM`: a frozen dataclass that round-trips
through plain dicts and JSON, validated on construction so a bad value fails at once with one line.
How the model is computed (attention kernel, fused QKV, pointwise and loss kernels) is
`ComputeConfig` (compute.py); parameter and FLOP counts are `model_stats` (stats.py).
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
# Number of d_model×d_ff matrices of each FFN kind (see layers.FFN_VARIANTS).
FFN_MATRICES = {"swiglu": 3, "silu": 2, "relu2": 2}
FFNS = tuple(FFN_MATRICES)
# Kernel choices that used to be ModelConfig fields; they are ComputeConfig's now.
MOVED_TO_COMPUTE = ("attention", "fused_qkv")


@dataclass(frozen=True)
class ModelConfig:
    """Shape, ablation and recipe switches of a `TransformerLM` (every switch off by default).

    `d_ff` is the literal hidden width of whichever feed-forward is chosen; `default_d_ff` gives
    the usual sizes (SwiGLU ≈ 8/3·d_model rounded to a multiple of 64, SiLU/ReLU² 4·d_model) and
    `with_ffn` switches the FFN while keeping the parameter count.

    Recipe switches (formulas in the nn README, "The modern recipe"):
    - `qk_norm`: RMS-normalise q and k per head over the head dim, before RoPE (gain d_k each)
    - `ffn="relu2"`: w2(relu(w1 x)²)
    - `logit_softcap`: > 0: logits = c·tanh(logits/c)
    - `value_embeddings`: k extra token tables; table j is added (gated) to V in layer j and in
      layer num_layers−k+j (the first k and the last k layers); needs 2k ≤ num_layers
    - `unet_skips`: decoder layer num_layers−1−i gets skip_weights[i]·(output of layer i) added
      to its input, for i < num_layers // 2
    - `zero_init_proj`: every attention output_proj and FFN w2 starts at zero
    - `parameter_free_norm`: RMSNorms (ln1, ln2, ln_final, q/k norms) have no gain
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
    ffn: Literal["swiglu", "silu", "relu2"] = "swiglu"
    tie_embeddings: bool = False
    qk_norm: bool = False
    logit_softcap: float = 0.0
    value_embeddings: int = 0
    unet_skips: bool = False
    zero_init_proj: bool = False
    parameter_free_norm: bool = False

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
        for name, allowed in (("norm", NORMS), ("position", POSITIONS), ("ffn", FFNS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        bools = ("tie_embeddings", "qk_norm", "unet_skips", "zero_init_proj", "parameter_free_norm")
        for name in bools:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")
        cap = self.logit_softcap
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not cap >= 0:
            raise ValueError(f"ModelConfig.logit_softcap must be a number >= 0, got {cap!r}")
        object.__setattr__(self, "logit_softcap", float(cap))
        k = self.value_embeddings
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"ModelConfig.value_embeddings must be an int >= 0, got {k!r}")
        if 2 * k > self.num_layers:
            raise ValueError(
                f"ModelConfig.value_embeddings={k} needs 2*{k} <= num_layers={self.num_layers} "
                "(the tables feed the first and the last value_embeddings layers)"
            )
        if self.unet_skips and self.num_layers < 2:
            raise ValueError("ModelConfig.unet_skips needs num_layers >= 2")
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.position == "rope" and self.head_dim % 2 != 0:
            raise ValueError(f"RoPE needs an even head dim d_model/num_heads, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def value_embedding_tables(self) -> tuple[int | None, ...]:
        """Per layer, the value-embedding table it adds to V (None = none).

        Table j feeds layer j and layer num_layers − k + j: the first k and the last k layers
        share the k tables in the same order (modded-nanogpt's 0,1,2 … 0,1,2 layout).
        """
        k, n = self.value_embeddings, self.num_layers
        tables: list[int | None] = [None] * n
        for j in range(k):
            tables[j] = tables[n - k + j] = j
        return tuple(tables)

    @property
    def unet_pairs(self) -> tuple[tuple[int, int], ...]:
        """(encoder layer i, decoder layer num_layers−1−i) for i < num_layers // 2, if on."""
        if not self.unet_skips:
            return ()
        return tuple((i, self.num_layers - 1 - i) for i in range(self.num_layers // 2))

    def with_ffn(self, ffn: str) -> "ModelConfig":
        """Switch the FFN kind, rescaling d_ff so the parameter count stays (about) the same.

        SwiGLU has three d_model×d_ff matrices, SiLU and ReLU² two: d_ff scales by 3/2 from
        SwiGLU to either, by 2/3 back, and stays between SiLU and ReLU².
        """
        if ffn == self.ffn:
            return self
        if ffn not in FFNS:
            raise ValueError(f"ffn must be one of {FFNS}, got {ffn!r}")
        d_ff = round(self.d_ff * FFN_MATRICES[self.ffn] / FFN_MATRICES[ffn])
        return dataclasses.replace(self, ffn=ffn, d_ff=d_ff)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a dict; unknown keys fail with the closest valid name suggested.

        `attention` and `fused_qkv` (ModelConfig fields before the compute split) are refused
        with a pointer to `ComputeConfig`; `split_compute_keys` separates an old saved dict.
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key in MOVED_TO_COMPUTE:
                raise ValueError(
                    f"ModelConfig key {key!r} moved to ComputeConfig (the [compute] section): "
                    "it picks a kernel, not the architecture; for a config saved before the "
                    "split use tinylm.nn.split_compute_keys(d)"
                )
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
    """Usual FFN width: SwiGLU 8/3·d_model rounded to a multiple of 64; SiLU and ReLU² 4·d_model."""
    if ffn in ("silu", "relu2"):
        return 4 * d_model
    if ffn != "swiglu":
        raise ValueError(f"ffn must be one of {FFNS}, got {ffn!r}")
    return max(64, 64 * round(8 * d_model / 3 / 64))
