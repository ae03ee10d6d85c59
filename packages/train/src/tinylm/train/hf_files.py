"""The files of a Hugging Face model directory: safetensors weights, JSON configs, tokenizer files.

    save_safetensors(tensors, "hf/x/model.safetensors")    load_hf_weights("hf/x") -> tensors
    save_hf_tokenizer(tokenizer, specials, context, out)   load_hf_tokenizer("hf/x") -> Tokenizer
    generation_config(sample, eos) -> dict                 sample_settings("hf/x") -> dict

The safetensors format is written and read here from scratch (an 8-byte little-endian header
length, a JSON header of name -> dtype/shape/byte range, then the raw bytes), so exporting needs
no extra dependency; the tests check it against the `safetensors` library. Every file is written
atomically (`tinylm.train.files.atomic_open`). What the tensors and config.json mean is `hf`.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from tinylm.bpe import Tokenizer
from tinylm.train.files import atomic_open
from tinylm.train.prepare import load_tokenizer

__all__ = [
    "generation_config",
    "load_hf_tokenizer",
    "load_hf_weights",
    "load_safetensors",
    "sample_settings",
    "save_hf_tokenizer",
    "save_safetensors",
    "special_ids",
    "write_json",
]

# -- safetensors -----------------------------------------------------------------------------

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_TORCH_DTYPES = {name: dtype for dtype, name in _DTYPES.items()}


def save_safetensors(
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write `tensors` as a .safetensors file, atomically (each tensor stored once, in full)."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": _DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with atomic_open(path) as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for data in blobs:
            f.write(data)


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read every tensor of a .safetensors file onto the CPU."""
    raw = Path(path).read_bytes()
    try:
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + length])
        base = 8 + length
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = _TORCH_DTYPES[info["dtype"]]
            buffer = bytearray(raw[base + start : base + end])
            flat = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
            out[name] = flat.reshape(info["shape"])
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from None
    return out


def load_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors, a sharded index of them, or pytorch_model.bin."""
    single = hf_dir / "model.safetensors"
    index = hf_dir / "model.safetensors.index.json"
    if single.is_file():
        return load_safetensors(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(load_safetensors(hf_dir / shard))
        return tensors
    if (hf_dir / "pytorch_model.bin").is_file():
        return torch.load(hf_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors (or pytorch_model.bin) in {hf_dir}")


def write_json(path: str | os.PathLike, value: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


# -- generation_config.json ------------------------------------------------------------------


def generation_config(sample: dict[str, Any], eos: int | None) -> dict[str, Any]:
    """generation_config.json for a run's [sample] table (temperature 0 = greedy)."""
    config: dict[str, Any] = {"bos_token_id": eos, "eos_token_id": eos}
    temperature = float(sample.get("temperature", 0.8))
    if temperature > 0:
        config.update(
            do_sample=True, temperature=temperature, top_p=float(sample.get("top_p", 1.0))
        )
    else:
        config["do_sample"] = False
    return config


def sample_settings(hf_dir: Path) -> dict[str, float]:
    """The [sample] temperature/top_p a directory's generation_config.json asks for, if any."""
    generation = hf_dir / "generation_config.json"
    if not generation.is_file():
        return {}
    gen = json.loads(generation.read_text(encoding="utf-8"))
    if gen.get("do_sample") and "temperature" in gen:
        return {"temperature": float(gen["temperature"]), "top_p": float(gen.get("top_p", 1.0))}
    return {}


# -- tokenizer files -------------------------------------------------------------------------


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Special token -> id (a registered special encodes to exactly its own id)."""
    return {text: tokenizer.encode(text)[0] for text in tokenizer.special_tokens}


def save_hf_tokenizer(tokenizer: Tokenizer, specials: list[str], context: int, out: Path) -> None:
    """tokenizer.json, vocab.json + merges.txt, special_tokens_map.json, tokenizer_config.json;
    the first special token is bos and eos (tinylm separates documents with it)."""
    tokenizer.save_hf(out / "tokenizer.json")
    tokenizer.save(out / "vocab.json", out / "merges.txt")
    named = {}
    if specials:
        named = {"bos_token": specials[0], "eos_token": specials[0]}
    extra = specials[1:]
    write_json(out / "special_tokens_map.json", {**named, "additional_special_tokens": extra})
    decoder = {
        str(token_id): {
            "content": text,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for text, token_id in sorted(special_ids(tokenizer).items(), key=lambda item: item[1])
    }
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": context,
            "add_bos_token": False,
            "add_eos_token": False,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": decoder,
            "additional_special_tokens": extra,
            **named,
        },
    )


def load_hf_tokenizer(hf_dir: Path) -> Tokenizer:
    """A byte-level BPE tokenizer from tokenizer.json, else vocab.json + merges.txt (with the
    special tokens of special_tokens_map.json)."""
    if (hf_dir / "tokenizer.json").is_file():
        return Tokenizer.from_hf(hf_dir / "tokenizer.json")
    if (hf_dir / "vocab.json").is_file() and (hf_dir / "merges.txt").is_file():
        named = {}
        if (hf_dir / "special_tokens_map.json").is_file():
            named = json.loads((hf_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
        specials = [v if isinstance(v, str) else v.get("content") for v in named.values()]
        return load_tokenizer(hf_dir, [s for s in specials if isinstance(s, str)])
    raise FileNotFoundError(
        f"no byte-level BPE tokenizer in {hf_dir} (tokenizer.json, or vocab.json + merges.txt)"
    )
