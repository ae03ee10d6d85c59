"""A run on a corpus bundled with tinylm.train when no data files are given.

`tinystories` with no `--train-text`/`--val-text` trains on the 2 MB TinyStories sample that
tinylm.train ships (`app.bundled = "tinystories"`, set by configs/tinystories_bundled.toml). The
pipeline reads two text files, so the sample is split once into `<out>/data/bundled/train.txt`
and `val.txt` by whole stories (the last 5 % validate), and those paths become the run's
`app.train_text`/`app.val_text`: report.md names them and a --resume reads the same files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tinylm.apps.config import AppConfig
from tinylm.train import atomic_write, bundled_corpus

__all__ = ["VAL_FRACTION", "split_bundled"]

VAL_FRACTION = 0.05


def split_bundled(app: AppConfig, directory: str | Path, separator: str, log=print) -> AppConfig:
    """`app` with train_text/val_text set to a split of the bundled corpus `app.bundled`.

    Documents end with a line holding only `separator` (the first special token). The files are
    rewritten only when their content would change: the token cache is keyed on file identity,
    and a rewrite with equal bytes would still cost a fresh encoding."""
    source = bundled_corpus(app.bundled)
    marker = f"{separator}\n"
    docs = [doc + marker for doc in source.read_text(encoding="utf-8").split(marker) if doc]
    if len(docs) < 2:
        raise ValueError(f"bundled corpus {source} holds fewer than two documents")
    n_val = max(1, round(len(docs) * VAL_FRACTION))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in (("train", docs[:-n_val]), ("val", docs[-n_val:])):
        path, text = directory / f"{name}.txt", "".join(part)
        if not (path.is_file() and path.read_text(encoding="utf-8") == text):
            atomic_write(path, text)
        paths[name] = str(path)
    log(
        f"data: no --train-text/--val-text, so the bundled {app.bundled} sample ({source.name}, "
        f"{len(docs):,} documents; licence in tinylm.train's data/LICENSES.md): "
        f"{len(docs) - n_val:,} train, {n_val:,} validation"
    )
    return dataclasses.replace(app, train_text=paths["train"], val_text=paths["val"])
