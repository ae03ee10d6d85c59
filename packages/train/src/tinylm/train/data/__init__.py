"""Data: raw text -> BPE tokenizer -> cached .npy token files -> batches.

    config.py      the [data] section, `DataConfig`
    cache.py       the bundled corpora, a cache entry (`PreparedData`), loading its tokenizer
    prepare.py     `prepare_data(DataConfig, cache_root)`: one entry point for every source
    text_files.py  two text files (train + validation), streamed and encoded in parallel
    tokens.py      opening and checking token files, `get_batch` (a pure function of its RNG)

The corpora shipped with the package (TinyStories, openprose) live in this folder too.
"""

from tinylm.train.data.cache import (
    BUNDLED_CORPORA,
    DEFAULT_CORPUS,
    PreparedData,
    bundled_corpus,
    load_tokenizer,
)
from tinylm.train.data.config import DataConfig
from tinylm.train.data.prepare import prepare_data
from tinylm.train.data.text_files import file_fingerprint, prepare_text_files
from tinylm.train.data.tokens import check_tokens, get_batch, open_tokens

__all__ = [
    "BUNDLED_CORPORA",
    "DEFAULT_CORPUS",
    "DataConfig",
    "PreparedData",
    "bundled_corpus",
    "check_tokens",
    "file_fingerprint",
    "get_batch",
    "load_tokenizer",
    "open_tokens",
    "prepare_data",
    "prepare_text_files",
]
