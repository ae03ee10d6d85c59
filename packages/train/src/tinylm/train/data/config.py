"""The [data] section: where a run's tokens come from (see `prepare_data`)."""

from __future__ import annotations

from dataclasses import dataclass

from tinylm.train.data.cache import DEFAULT_CORPUS

__all__ = ["DataConfig"]


@dataclass(frozen=True)
class DataConfig:
    # raw text: a file path, or a bundled corpus's name (tinystories, openprose); "" is the
    # spelling of openprose from before TinyStories was bundled, kept so old runs resume on it
    text: str = DEFAULT_CORPUS
    # A separate validation file (e.g. TinyStories' valid.txt): with it, `text` is the train file
    # and nothing is split; both are used whole and streamed (text_bytes and val_fraction are
    # for a single `text`), and the BPE is trained on the first `tokenizer_bytes` of `text`.
    val_text: str = ""
    text_bytes: int = 2_000_000  # use only the first N bytes of `text` (0 = all)
    val_fraction: float = 0.05  # last fraction of the documents held out for validation
    vocab_size: int = 2000  # BPE vocabulary trained on the text
    tokenizer_bytes: int = 1_000_000  # BPE is trained on the first N bytes of the train split
    special_tokens: tuple[str, ...] = ("<|endoftext|>",)
    train_tokens: str = ""  # pre-encoded train ids (.npy); when set, `text` is ignored
    val_tokens: str = ""  # pre-encoded validation ids (.npy)
    tokenizer_dir: str = ""  # vocab.json + merges.txt for pre-encoded data (samples need it)
    dtype: str = ""  # id dtype of raw .bin token files (e.g. "uint16"); .npy files know theirs
    cache_dir: str = ""  # where tokenizer and .npy files are cached; "" = <run.root>/_data
    num_workers: int = 0  # encoding processes; 0 = all cores
    text_errors: str = "strict"  # invalid UTF-8 in `text`: "strict" = error, "replace" = U+FFFD
