"""Hugging Face interop: a run <-> a `LlamaForCausalLM` directory.

convert.py  configs and weights between tinylm and Llama (RoPE row order, key names)
files.py    safetensors read/write of our own, HF tokenizer and generation files
cli.py      `export_hf` / `import_hf` and the `export-hf` / `import-hf` commands
"""

from tinylm.train.hf.cli import export_hf, import_hf

__all__ = ["export_hf", "import_hf"]
