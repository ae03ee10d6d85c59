"""tinylm.bpe: byte-level BPE tokenizer (training, encoding, GPT-2 file format).

vocab, merges = train_bpe("corpus.txt", 10_000, ["<|endoftext|>"])
tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
ids = tok.encode("Hello world<|endoftext|>")
assert tok.decode(ids) == "Hello world<|endoftext|>"
tok.save_hf("tokenizer.json"); tok = Tokenizer.from_hf("tokenizer.json")  # HF tokenizers
"""

from tinylm.bpe.files import bytes_to_unicode
from tinylm.bpe.native import native_available
from tinylm.bpe.pretokenize import GPT2_PATTERN, find_chunk_boundaries
from tinylm.bpe.tokenizer import Tokenizer
from tinylm.bpe.train import train_bpe

__all__ = [
    "GPT2_PATTERN",
    "Tokenizer",
    "bytes_to_unicode",
    "find_chunk_boundaries",
    "native_available",
    "train_bpe",
]
