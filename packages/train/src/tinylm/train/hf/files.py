"""The files of a Hugging Face model directory: safetensors weights, JSON configs, tokenizer files.

    save_safetensors(tensors, "hf/x/model.safetensors")    load_hf_weights("hf/x") -> tensors
    save_hf_tokenizer(tokenizer, specials, context, out)   load_hf_tokenizer("hf/x") -> Tokenizer
    generation_config(sample, eos) -> dict                 sample_settings("hf/x") -> dict

The safetensors format is written and read here from scratch (an 8-byte little-endian header
length, a JSON header of name -> dtype/shape/byte range, then the raw bytes), so exporting needs
no extra dependency; the tests check it against the `safetensors` library. Every file is written
atomically (`tinylm.train.files.atomic_open`). Reading trusts nothing: a safetensors header is
checked against the file's size before a byte of data is read, shards of an index stay inside
its directory and must be regular files, and pytorch_model.bin (a pickle) goes through the
checkpoint loader's weights_only refusal. What the tensors and config.json mean is `hf`.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from tinylm.bpe import Tokenizer
from tinylm.train.data import load_tokenizer
from tinylm.train.files import atomic_open
from tinylm.train.run.checkpoint import load_weights_only

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
    """Read every tensor of a .safetensors file onto the CPU.

    The file must be a regular file (not a device or pipe that never ends), and the header is
    checked against the file's size before any tensor is read: each tensor's byte range lies in
    the data and matches its dtype and shape. So a damaged or hostile file costs at most its own
    size in memory, and fails with one ValueError line naming it.
    """
    path = Path(path)
    try:  # non-blocking: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file; safetensors weights are files")
    with os.fdopen(fd, "rb") as f:
        header, base = _safetensors_header(f, path, info.st_size)
        out = {}
        for name, (dtype, shape, start, end) in header.items():
            buffer = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buffer) != len(buffer):
                raise ValueError(f"{path} is truncated (tensor {name!r})")
            flat = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
            out[name] = flat.reshape(shape)
    return out


_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header


def _safetensors_header(f, path: Path, size: int) -> tuple[dict[str, tuple], int]:
    """{name: (dtype, shape, start, end)} and the data's offset, each range checked."""

    def bad(reason: str) -> ValueError:
        return ValueError(f"{path} is not a readable safetensors file ({reason})")

    if size < 8:
        raise bad(f"{size} bytes, shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", f.read(8))
    if length > min(size - 8, _MAX_HEADER):
        raise bad(f"header length {length} but the file has {size} bytes")
    try:
        raw = json.loads(f.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise bad("header is not a JSON object")
    data_size = size - 8 - length
    header = {}
    for name, entry in raw.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _TORCH_DTYPES[entry["dtype"]]
            shape, (start, end) = list(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"tensor {name!r}: no valid dtype/shape/data_offsets ({e!r})") from None
        if not all(_is_size(n) for n in (*shape, start, end)):
            raise bad(f"tensor {name!r}: shape {shape} / data_offsets must be integers >= 0")
        numel = 1
        for n in shape:
            numel *= n
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if not 0 <= start <= end <= data_size or end - start != numel * itemsize:
            raise bad(
                f"tensor {name!r} ({entry['dtype']} {shape}) claims bytes {start}..{end} of "
                f"{data_size}"
            )
        header[name] = (dtype, shape, start, end)
    return header, 8 + length


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors, a sharded index of them, or pytorch_model.bin."""
    single = hf_dir / "model.safetensors"
    index = hf_dir / "model.safetensors.index.json"
    if single.exists():
        return load_safetensors(single)
    if index.exists():
        tensors = {}
        for shard in _shard_paths(index):
            tensors.update(load_safetensors(shard))
        return tensors
    if (hf_dir / "pytorch_model.bin").exists():
        # A pickle: read with weights_only, refused (not run) if it would import or call code.
        bin_path = hf_dir / "pytorch_model.bin"
        state = load_weights_only(
            bin_path,
            kind="weights file",
            advice="Import weights saved as model.safetensors, or as tensors only",
        )
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise ValueError(f"{bin_path} is not a state dict (names -> tensors)")
        return state
    raise FileNotFoundError(f"no model.safetensors (or pytorch_model.bin) in {hf_dir}")


def _shard_paths(index: Path) -> list[Path]:
    """The shard files a model.safetensors.index.json names, each confined to its directory.

    A shard is a file name (subfolders allowed) inside the index's directory: no absolute paths,
    no `..`; the file itself may be a symlink (the Hugging Face cache links into its blobs/),
    as long as it leads to a regular file, which `load_safetensors` checks.
    """
    try:
        raw = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{index} is not valid JSON ({e})") from None
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index}: 'weight_map' must map tensor names to shard file names")
    paths = []
    for shard in sorted(set(weight_map.values())):
        parts = PurePosixPath(shard).parts
        if not parts or PurePosixPath(shard).is_absolute() or "\\" in shard or ".." in parts:
            raise ValueError(
                f"{index} names shard {shard!r}; shards must be files inside {index.parent}"
            )
        path = index.parent.joinpath(*parts)
        if not path.exists():
            raise FileNotFoundError(f"{index} names shard {shard!r}, which does not exist")
        paths.append(path)
    return paths


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
