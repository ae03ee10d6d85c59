"""tinylm.bpe: byte-level BPE tokenizer (training, encoding, GPT-2 file format).

A compiled core (C, built by `uv sync`) runs pre-tokenization and encoding by default;
`TINYLM_BPE_NATIVE=0` forces the pure-Python reference, and `native_available()` says which runs.

vocab, merges = train_bpe("corpus.txt", 10_000, ["<|endoftext|>"])
tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
ids = tok.encode("Hello world<|endoftext|>")
assert tok.decode(ids) == "Hello world<|endoftext|>"
tok.save_hf("tokenizer.json"); tok = Tokenizer.from_hf("tokenizer.json")  # HF tokenizers
"""

from tinylm.bpe.chunking import find_chunk_boundaries
from tinylm.bpe.file_encoding import encode_file
from tinylm.bpe.files import bytes_to_unicode
from tinylm.bpe.native import native_available
from tinylm.bpe.scanner import GPT2_PATTERN
from tinylm.bpe.tokenizer import Tokenizer
from tinylm.bpe.train import train_bpe

__all__ = [
    "GPT2_PATTERN",
    "Tokenizer",
    "bytes_to_unicode",
    "encode_file",
    "find_chunk_boundaries",
    "native_available",
    "train_bpe",
]
