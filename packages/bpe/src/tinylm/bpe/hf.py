"""Hugging Face `tokenizer.json` for byte-level BPE: write ours, read ours or GPT-2's.

A `tokenizers` byte-level BPE is the same algorithm as ours, described as a pipeline:

    added_tokens    special tokens, matched first (leftmost, longest), never merged
    pre_tokenizer   ByteLevel with use_regex: the GPT-2 regex, then bytes -> GPT-2 alphabet
    model           BPE: vocab {token in the alphabet: id}, merges [[left, right]] in rank order
    decoder         ByteLevel: alphabet -> bytes -> UTF-8

so the file holds exactly our vocab, merges and special tokens. Special tokens sit in the model
vocab under their raw text (HF looks them up there by content) and in `added_tokens` with their
id. Reading accepts only files that describe this pipeline; anything else (a normalizer, another
pre-tokenizer, BPE dropout, `ignore_merges`, ...) would encode differently, so it is refused with
one line naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tinylm.bpe.files import atomic_write, text_to_token, token_to_text

__all__ = ["hf_tokenizer_dict", "read_hf_tokenizer", "tokenizer_json_path", "write_hf_tokenizer"]

_BYTE_LEVEL = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def tokenizer_json_path(path: str | os.PathLike) -> Path:
    """`path` itself, or `path/tokenizer.json` when `path` is a directory or ends with a slash
    (the way to name a directory that does not exist yet)."""
    is_dir = os.fspath(path).endswith(("/", os.sep))
    path = Path(path)  # drops the trailing slash
    return path / "tokenizer.json" if is_dir or path.is_dir() else path


def hf_tokenizer_dict(
    vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_ids: dict[str, int]
) -> dict[str, Any]:
    """The `tokenizer.json` object for a byte-level BPE (`special_ids`: token text -> id)."""
    by_id = {token_id: text for text, token_id in special_ids.items()}
    model_vocab: dict[str, int] = {}
    for token_id, token in sorted(vocab.items()):
        key = by_id.get(token_id, token_to_text(token))
        # A special whose raw text spells an ordinary token in the alphabet keeps only its
        # added_tokens entry (HF honours that id); the ordinary token keeps the vocab key.
        if key not in model_vocab or token_id not in by_id:
            model_vocab[key] = token_id
    seen: set[tuple[bytes, bytes]] = set()
    merge_list = []
    for pair in merges:
        if pair not in seen:  # a repeated merge never applies in ours; HF would rank it last
            seen.add(pair)
            merge_list.append([token_to_text(pair[0]), token_to_text(pair[1])])
    added = [
        {
            "id": token_id,
            "content": text,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for text, token_id in sorted(special_ids.items(), key=lambda item: item[1])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **_BYTE_LEVEL},
        "post_processor": {"type": "ByteLevel", **_BYTE_LEVEL, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **_BYTE_LEVEL},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": model_vocab,
            "merges": merge_list,
        },
    }


def write_hf_tokenizer(
    vocab: dict[int, bytes],
    merges: list[tuple[bytes, bytes]],
    special_ids: dict[str, int],
    path: str | os.PathLike,
) -> Path:
    """Write `tokenizer.json` atomically (into `path` if it is a directory or ends with a slash,
    creating it); return the file."""
    target = tokenizer_json_path(path)
    if target != Path(path):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(f"{target.parent} exists and is not a directory") from None
    with atomic_write(target, "w") as f:
        json.dump(hf_tokenizer_dict(vocab, merges, special_ids), f, ensure_ascii=False, indent=1)
        f.write("\n")
    return target


def read_hf_tokenizer(
    path: str | os.PathLike,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """(vocab, merges, special tokens) of a byte-level BPE `tokenizer.json` (file or directory)."""
    target = tokenizer_json_path(path)
    try:
        raw = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"tokenizer.json not found: {target}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{target}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise ValueError(f"{target}: not a tokenizers file (no 'model' object)")
    _check_pipeline(raw, target)
    model = raw["model"]

    specials: dict[int, str] = {}
    for entry in raw.get("added_tokens") or []:
        for flag in ("single_word", "lstrip", "rstrip"):
            if entry.get(flag):
                raise ValueError(
                    f"{target}: added token {entry.get('content')!r} sets {flag}, which tinylm "
                    "special tokens do not support"
                )
        specials[int(entry["id"])] = str(entry["content"])

    vocab: dict[int, bytes] = {}
    for text, token_id in model["vocab"].items():
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise ValueError(f"{target}: token {text!r} has id {token_id!r}, not an integer >= 0")
        if token_id in specials:  # stored under its raw text, not in the byte alphabet
            vocab[token_id] = specials[token_id].encode("utf-8")
        else:
            vocab[token_id] = text_to_token(text, where=f"{target} model.vocab")
    for token_id, text in specials.items():
        vocab.setdefault(token_id, text.encode("utf-8"))

    merges = []
    for rank, merge in enumerate(model.get("merges") or []):
        parts = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(parts) != 2:
            raise ValueError(f"{target}: merge {rank} {merge!r} is not a pair of tokens")
        where = f"{target} merge {rank}"
        merges.append((text_to_token(parts[0], where=where), text_to_token(parts[1], where=where)))
    return vocab, merges, [specials[i] for i in sorted(specials)]


def _check_pipeline(raw: dict[str, Any], target: Path) -> None:
    """Refuse, in one line, any setting that would make HF encode differently from us."""
    model = raw["model"]
    pre = raw.get("pre_tokenizer") or {}
    checks = [
        ("model.type", model.get("type"), "BPE"),
        ("normalizer", raw.get("normalizer"), None),
        ("pre_tokenizer.type", pre.get("type"), "ByteLevel"),
        ("pre_tokenizer.add_prefix_space", pre.get("add_prefix_space", False), False),
        ("pre_tokenizer.use_regex", pre.get("use_regex", True), True),
        ("model.dropout", model.get("dropout"), None),
        ("model.continuing_subword_prefix", model.get("continuing_subword_prefix") or None, None),
        ("model.end_of_word_suffix", model.get("end_of_word_suffix") or None, None),
        ("model.byte_fallback", bool(model.get("byte_fallback")), False),
        ("model.ignore_merges", bool(model.get("ignore_merges")), False),
    ]
    for name, value, wanted in checks:
        if value != wanted:
            raise ValueError(
                f"{target}: {name} is {value!r}; tinylm reads only GPT-2 style byte-level BPE "
                f"({name} = {wanted!r})"
            )
    if not isinstance(model.get("vocab"), dict) or not model["vocab"]:
        raise ValueError(f"{target}: model.vocab must be a non-empty object")
