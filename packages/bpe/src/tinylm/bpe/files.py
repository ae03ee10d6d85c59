"""GPT-2 tokenizer files: `vocab.json` + `merges.txt`, and atomic writes.

GPT-2 stores byte strings as text through a fixed byte-to-unicode alphabet: printable bytes map to
themselves, the other bytes to code points from U+0100 upwards (so a space becomes "Ġ" and a
newline "Ċ"). Using the same alphabet makes our files readable by GPT-2 code and HF `tokenizers`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (256 entries)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    next_code_point = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(next_code_point)
            next_code_point += 1
    return table


@functools.cache
def _unicode_to_bytes() -> dict[str, int]:
    return {char: b for b, char in bytes_to_unicode().items()}


def token_to_text(token: bytes) -> str:
    """Write a token's bytes in the GPT-2 alphabet."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def text_to_token(text: str, *, where: str) -> bytes:
    """Inverse of `token_to_text`; `where` names the offending file entry in the error."""
    table = _unicode_to_bytes()
    try:
        return bytes(table[char] for char in text)
    except KeyError as err:
        raise ValueError(
            f"{where}: token {text!r} has character {err.args[0]!r} outside the GPT-2 byte alphabet"
        ) from None


def load_vocab(path: str | os.PathLike) -> dict[int, bytes]:
    """Read a GPT-2 `vocab.json` ({token text: id}) into {id: token bytes}."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"vocab file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: malformed vocab file, not valid JSON ({err})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: malformed vocab file, expected a non-empty JSON object")
    vocab: dict[int, bytes] = {}
    for text, token_id in raw.items():
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise ValueError(f"{path}: token {text!r} has id {token_id!r}, not an integer >= 0")
        if token_id in vocab:
            raise ValueError(f"{path}: id {token_id} is used by more than one token")
        vocab[token_id] = text_to_token(text, where=str(path))
    return vocab


def load_merges(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """Read a GPT-2 `merges.txt`: one merge per line, two tokens separated by one space."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise FileNotFoundError(f"merges file not found: {path}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: malformed merges file, not valid UTF-8") from None
    merges = []
    for line_number, line in enumerate(lines, start=1):
        # Raw "\r" never occurs inside a token (the alphabet maps it to "č"), so CRLF is safe.
        line = line.rstrip("\r")
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(
                f"{path}:{line_number}: malformed merge {line!r}, expected two tokens "
                "separated by one space"
            )
        where = f"{path}:{line_number}"
        merges.append((text_to_token(parts[0], where=where), text_to_token(parts[1], where=where)))
    return merges


def save_vocab_and_merges(
    vocab: dict[int, bytes],
    merges: list[tuple[bytes, bytes]],
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
) -> None:
    """Write both files atomically (each appears complete or not at all)."""
    vocab_json = {token_to_text(token): token_id for token_id, token in sorted(vocab.items())}
    merge_lines = "".join(f"{token_to_text(a)} {token_to_text(b)}\n" for a, b in merges)
    with atomic_write(vocab_path, "w") as f:
        json.dump(vocab_json, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with atomic_write(merges_path, "w") as f:
        f.write("#version: 0.2\n" + merge_lines)


def new_file_mode() -> int:
    """The mode `open()` gives a new file under this process's umask (0o644 under 022).

    mkstemp creates its files 0600 whatever the umask; a published output should read like any
    other file. Linux shows the umask in /proc (no change to process state); elsewhere it is
    read by setting and restoring it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to `path`; on success rename it over `path`, on error delete it.

    The file gets the mode an ordinary `open()` would give it (`new_file_mode`).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            os.fchmod(f.fileno(), new_file_mode())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
